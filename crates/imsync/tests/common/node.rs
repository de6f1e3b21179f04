//! Real Node clients for the interop tests: one npm install per client under the cargo target
//! dir, made on first use and reused while it still has the package at the pinned version. Needs
//! node and npm, and the npm registry on the first run; without them the test fails rather than
//! skips.

use super::python::{run_timed, text};
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// Whether `dir` has `package` installed at `version`.
fn installed(dir: &Path, package: &str, version: &str) -> bool {
    let manifest = dir.join("node_modules").join(package).join("package.json");
    std::fs::read_to_string(manifest)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["version"] == version)
}

/// The directory `<target tmp>/<name>` where `npm install` ran on `project_dir`'s files (its
/// `package.json` and scripts, copied over on every call), with `package` at `version`. The
/// install runs in a scratch directory renamed into place, so a concurrent run never sees a
/// half-installed one.
pub async fn project(name: &str, project_dir: &Path, package: &str, version: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let copy_files = |to: &Path| {
        std::fs::create_dir_all(to).expect("create the npm project dir");
        for entry in std::fs::read_dir(project_dir).expect("read the npm project files") {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy a file");
            }
        }
    };
    if !installed(&dir, package, version) {
        let scratch = dir.with_file_name(format!("{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        copy_files(&scratch);
        let mut cmd = Command::new("npm");
        cmd.args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&scratch);
        let out = run_timed(&mut cmd, "npm install (node and npm are required)", 900).await;
        assert!(
            out.status.success(),
            "npm install in {} failed (npm and its registry are required):\n{}",
            scratch.display(),
            text(&out)
        );
        assert!(
            installed(&scratch, package, version),
            "npm install did not install {package}@{version}:\n{}",
            text(&out)
        );
        if installed(&dir, package, version) {
            let _ = std::fs::remove_dir_all(&scratch);
        } else {
            let _ = std::fs::remove_dir_all(&dir);
            if std::fs::rename(&scratch, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&scratch);
            }
        }
    }
    assert!(
        installed(&dir, package, version),
        "{} does not hold {package}@{version}",
        dir.display()
    );
    copy_files(&dir);
    dir
}
