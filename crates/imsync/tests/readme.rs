//! The README's walkthrough, run as printed against the real binary, so that it cannot drift from
//! what the server answers.
//!
//! The walkthrough is the part of README.md between the `<!-- walkthrough` and
//! `<!-- walkthrough end -->` comments. Its `sh` blocks run in order in one bash (variables and
//! functions carry over), with the README's address replaced by the test server's; the `text`
//! block right after an `sh` block is what that block prints, line for line, where `…` stands
//! for any text (ids, tokens, times). It runs twice: with the default public channel every
//! account joins, and without one, and must print the same both times.

mod common;

use common::{free_port, ChildServer};
use std::path::Path;
use std::process::Command;

const README: &str = include_str!("../../../README.md");
/// The address the README's commands use.
const README_BASE: &str = "http://127.0.0.1:8080";

/// A command block and what it prints, if the README says.
struct Step {
    commands: String,
    prints: Option<String>,
}

fn walkthrough() -> Vec<Step> {
    let start = README
        .find("<!-- walkthrough:")
        .expect("README.md has no `<!-- walkthrough:` comment");
    let end = README
        .find("<!-- walkthrough end -->")
        .expect("README.md has no `<!-- walkthrough end -->` comment");
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = README[start..end].lines();
    // Whether anything but blank lines came since the last block closed.
    let mut prose_since_block = true;
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            prose_since_block |= !line.trim().is_empty();
            continue;
        };
        let mut body = String::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        match info.trim() {
            "sh" => steps.push(Step {
                commands: body,
                prints: None,
            }),
            "text" => {
                let last = steps.last_mut().filter(|s| s.prints.is_none());
                match last {
                    Some(step) if !prose_since_block => step.prints = Some(body),
                    _ => panic!("a `text` block must follow an `sh` block directly:\n{body}"),
                }
            }
            other => panic!("the walkthrough has a block of {other:?}: only sh and text"),
        }
        prose_since_block = false;
    }
    assert!(steps.len() >= 5, "the walkthrough looks cut short");
    steps
}

/// Whether `line` is `pattern` with each `…` standing for any text.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || line.len() < first.len() + last.len() || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Runs every step in one bash against `base`; answers what each printed.
fn run(steps: &[Step], base: &str, scratch: &Path) -> Vec<String> {
    let mut driver = String::from("set -euo pipefail\n");
    for (i, step) in steps.iter().enumerate() {
        let file = scratch.join(format!("step{i}.sh"));
        std::fs::write(&file, step.commands.replace(README_BASE, base)).unwrap();
        driver.push_str(&format!(
            "echo 'step {i}' >&2\nsource '{}' > '{}'\n",
            file.display(),
            scratch.join(format!("step{i}.out")).display()
        ));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&driver)
        .output()
        .expect("run bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed_at = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("step "))
        .and_then(|n| n.parse::<usize>().ok());
    assert!(
        out.status.success(),
        "the walkthrough failed{}:\n{stderr}",
        failed_at.map_or(String::new(), |i| format!(
            " in this block:\n{}",
            steps[i].commands
        )),
    );
    (0..steps.len())
        .map(|i| std::fs::read_to_string(scratch.join(format!("step{i}.out"))).unwrap())
        .collect()
}

async fn walk(extra: &[&str]) {
    let steps = walkthrough();
    // A fresh data directory (or PostgreSQL schema, named after it) per run.
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::spawn_with(data.path(), free_port(), extra).await;
    let scratch = tempfile::tempdir().unwrap();
    let base = server.base.clone();
    let printed = tokio::task::spawn_blocking(move || run(&walkthrough(), &base, scratch.path()))
        .await
        .unwrap();
    for (step, got) in steps.iter().zip(&printed) {
        let Some(expected) = &step.prints else {
            continue;
        };
        let want: Vec<&str> = expected.lines().collect();
        let have: Vec<&str> = got.lines().collect();
        let same = want.len() == have.len() && want.iter().zip(&have).all(|(w, h)| matches(w, h));
        assert!(
            same,
            "with {extra:?}, this block of the README's walkthrough\n{}\nprinted\n{got}\nwhere \
             the README says\n{expected}",
            step.commands
        );
    }
}

#[tokio::test]
async fn the_walkthrough_prints_what_the_readme_says() {
    walk(&[]).await;
}

#[tokio::test]
async fn the_walkthrough_is_the_same_without_a_default_channel() {
    walk(&["--default-channel", ""]).await;
}

#[test]
fn ellipses_stand_for_any_text() {
    assert!(matches("…", "abc"));
    assert!(matches("…", ""));
    assert!(matches("\"id\": \"…\",", "\"id\": \"x1\","));
    assert!(matches("a…b…c", "a-b-c"));
    assert!(!matches("a…b…c", "a-c"));
    assert!(!matches("ab…ba", "aba"));
    assert!(!matches("hello", "hello, team"));
}
