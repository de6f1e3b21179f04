//! Results: a markdown table on stdout and `bench/results/<scenario>.json`.

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// One scenario's outcome: a table for people, figures for machines.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub figures: Value,
    pub notes: Vec<String>,
}

/// Where and on what the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub commit: String,
    pub cores: usize,
    pub memory_mib: u64,
    pub backend: String,
    pub durability: String,
    pub scale: f64,
    pub imsync_bin: String,
    pub started_at_unix: u64,
}

impl Report {
    pub fn new(scenario: &str, columns: &[&str]) -> Report {
        Report {
            scenario: scenario.to_owned(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
            figures: Value::Object(Default::default()),
            notes: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    pub fn markdown(&self, meta: Option<&Meta>) -> String {
        let mut s = format!("### {}\n\n", self.scenario);
        if let Some(m) = meta {
            s += &format!(
                "commit `{}`, {} cores, {} MiB, storage: {} (durability: {}), scale {}\n\n",
                short(&m.commit),
                m.cores,
                m.memory_mib,
                m.backend,
                m.durability,
                m.scale
            );
        }
        s += &format!("| {} |\n", self.columns.join(" | "));
        s += &format!("|{}\n", "---|".repeat(self.columns.len()));
        for r in &self.rows {
            s += &format!("| {} |\n", r.join(" | "));
        }
        for n in &self.notes {
            s += &format!("\n- {n}");
        }
        if !self.notes.is_empty() {
            s.push('\n');
        }
        s
    }

    /// Writes `<dir>/<scenario>.json` (via a `.tmp` file).
    pub fn write_json(&self, dir: &Path, meta: &Meta) -> Result<std::path::PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.json", self.scenario));
        let tmp = dir.join(format!("{}.json.tmp", self.scenario));
        let doc = serde_json::json!({
            "scenario": self.scenario,
            "meta": meta,
            "figures": self.figures,
            "table": { "columns": self.columns, "rows": self.rows },
            "notes": self.notes,
        });
        std::fs::write(&tmp, serde_json::to_string_pretty(&doc)? + "\n")?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

pub fn git_commit(repo: &Path) -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

pub fn memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Formats a number with at most `d` decimals, for tables.
pub fn f(v: f64, d: usize) -> String {
    format!("{v:.d$}")
}

/// `a / b`, or 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}
