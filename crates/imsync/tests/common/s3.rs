//! A real S3-compatible server for the object store tests: `s3s-fs` (an S3 server over a
//! directory, built on the s3s crate), installed with cargo under the target dir on first use.
//! Without cargo or crates.io the install fails, and so does the test.

use super::python::{run_timed, text};
use imsync_service::files::S3Config;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

const VERSION: &str = "0.14.1";
pub const BUCKET: &str = "imsync";
const ACCESS_KEY: &str = "imsync-test";
const SECRET_KEY: &str = "imsync-test-secret";

/// `<target>/tools/bin/s3s-fs`, installed (once per run of a test binary) if missing.
async fn binary() -> PathBuf {
    static INSTALLED: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .expect("the target dir")
                .to_path_buf();
            let root = target.join("tools");
            let bin = root.join("bin").join("s3s-fs");
            if bin.exists() {
                return bin;
            }
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            // A debug build: it installs in a fraction of the time and serves tests well.
            cmd.args(["install", "--locked", "--debug", "--features", "binary"])
                .arg(format!("s3s-fs@{VERSION}"))
                .arg("--root")
                .arg(&root)
                .arg("--target-dir")
                .arg(target.join("tools-build"));
            let out = run_timed(&mut cmd, "cargo install s3s-fs", 1800).await;
            assert!(
                out.status.success() && bin.exists(),
                "cargo install s3s-fs failed (cargo and crates.io are required):\n{}",
                text(&out)
            );
            bin
        })
        .await
        .clone()
}

/// An s3s-fs process on a free port over a temp dir, with one bucket; killed on drop.
pub struct S3Server {
    child: tokio::process::Child,
    pub endpoint: String,
    pub root: tempfile::TempDir,
}

impl S3Server {
    pub async fn start() -> S3Server {
        let bin = binary().await;
        let root = tempfile::tempdir().expect("temp dir");
        // s3s-fs keeps a bucket as a directory of its root.
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = super::free_port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start s3s-fs");
        let endpoint = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return S3Server {
                    child,
                    endpoint,
                    root,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("s3s-fs did not listen on port {port}");
    }

    pub fn config(&self) -> S3Config {
        S3Config {
            endpoint: self.endpoint.clone(),
            bucket: BUCKET.to_owned(),
            region: "us-east-1".to_owned(),
            access_key: ACCESS_KEY.to_owned(),
            secret_key: SECRET_KEY.to_owned(),
            path_style: true,
        }
    }

    /// The `imsync serve` flags for this store.
    pub fn flags(&self) -> Vec<String> {
        [
            ("--files-s3-endpoint", self.endpoint.as_str()),
            ("--files-s3-bucket", BUCKET),
            ("--files-s3-access-key", ACCESS_KEY),
            ("--files-s3-secret-key", SECRET_KEY),
        ]
        .iter()
        .flat_map(|(k, v)| [k.to_string(), v.to_string()])
        .collect()
    }

    /// The keys stored under `prefix` (as s3s-fs lays them out: one file per key).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let bucket = self.root.path().join(BUCKET);
        let mut out = Vec::new();
        let mut dirs = vec![bucket.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let key = path.strip_prefix(&bucket).unwrap().to_string_lossy();
                if key.starts_with(prefix) {
                    out.push(key.into_owned());
                }
            }
        }
        out.sort();
        out
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
