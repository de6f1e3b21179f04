//! The release `imsync` binary as a child process on 127.0.0.1 with a free port.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ServerProc {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    log: PathBuf,
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Resident set size of process `pid`, in KiB (`VmRSS` of `/proc/<pid>/status`; Linux only).
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// The soft limit on open files of this process (children inherit it), from `/proc/self/limits`.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl ServerProc {
    /// Starts `bin serve` on `data_dir` and waits until `/healthz` answers. Its log (level
    /// `warn`) goes to `<data_dir>/../<name>.server.log`.
    pub async fn start(bin: &Path, data_dir: &Path, durability: &str) -> Result<ServerProc> {
        Self::start_with(bin, data_dir, durability, &[]).await
    }

    /// `start` with more `serve` flags (e.g. `--database-url`).
    pub async fn start_with(
        bin: &Path,
        data_dir: &Path,
        durability: &str,
        extra: &[String],
    ) -> Result<ServerProc> {
        if !bin.exists() {
            bail!(
                "no imsync binary at {}: build it with `cargo build --release -p imsync` or pass --imsync-bin",
                bin.display()
            );
        }
        std::fs::create_dir_all(data_dir)?;
        let port = free_port()?;
        let log = data_dir.with_extension("server.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--durability", durability, "--rate-limit", "0"])
            // Each scenario measures exactly the conversations it makes: no default channel.
            .args(["--default-channel", ""])
            .args(extra)
            .env("IMSYNC_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut server = ServerProc {
            child,
            base: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_owned(),
            log,
        };
        let http = crate::client::http_client();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!(
                    "imsync exited with {status} before becoming healthy:\n{}",
                    server.log_tail()
                );
            }
            if let Ok(r) = http.get(format!("{}/healthz", server.base)).send().await {
                if r.status().is_success() {
                    return Ok(server);
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!(
            "imsync did not become healthy on port {port}:\n{}",
            server.log_tail()
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Resident set size of the server, in KiB (Linux only).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib_of(self.pid())
    }

    /// Asks the server to stop (SIGTERM, graceful), kills it after 15 s.
    pub fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("imsync did not stop within 15 s; killing it");
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
