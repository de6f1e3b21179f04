//! Real Python clients for the interop tests: one virtualenv per client package under the cargo
//! target dir, made on first use and reused while it still imports the package. Building one
//! needs python3 with venv and pip, and PyPI; without them the test fails rather than skips.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tokio::process::Command;

/// Runs a command to completion within `secs`; panics if it cannot start or times out.
pub async fn run_timed(cmd: &mut Command, what: &str, secs: u64) -> Output {
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    tokio::time::timeout(Duration::from_secs(secs), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {secs}s"))
        .unwrap_or_else(|e| panic!("{what}: could not start: {e}"))
}

/// A command's stdout and stderr together.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// True when `venv` holds a python that imports `module`.
async fn imports(venv: &Path, module: &str) -> bool {
    let python = python(venv);
    if !python.exists() {
        return false;
    }
    let mut cmd = Command::new(&python);
    cmd.args(["-c", &format!("import {module}")]);
    run_timed(&mut cmd, &format!("import {module}"), 60)
        .await
        .status
        .success()
}

/// The virtualenv `<target tmp>/<name>` with `package` installed (checked by importing `module`).
/// It is built in a scratch directory and renamed into place, so a concurrent run never sees a
/// half-installed one.
pub async fn venv_with(name: &str, package: &str, module: &str) -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    if imports(&venv, module).await {
        return venv;
    }
    let mut cmd = Command::new("python3");
    cmd.arg("--version");
    let out = run_timed(&mut cmd, "python3 --version (python3 is required)", 60).await;
    assert!(
        out.status.success(),
        "python3 is required for the interop tests:\n{}",
        text(&out)
    );

    let scratch = venv.with_file_name(format!("{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "venv"]).arg(&scratch);
    let out = run_timed(&mut cmd, "python3 -m venv", 300).await;
    assert!(
        out.status.success(),
        "python3 -m venv failed (install python3-venv):\n{}",
        text(&out)
    );

    let mut cmd = Command::new(python(&scratch));
    cmd.args(["-m", "pip", "install", "--quiet", package])
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    let out = run_timed(&mut cmd, &format!("pip install {package}"), 900).await;
    assert!(
        out.status.success(),
        "pip install {package} failed (pip and PyPI are required):\n{}",
        text(&out)
    );

    // A venv runs from its new place when its own bin/python is used, as here.
    if imports(&venv, module).await {
        // Another run put its venv there meanwhile; use that one.
        let _ = std::fs::remove_dir_all(&scratch);
    } else {
        let _ = std::fs::remove_dir_all(&venv);
        if std::fs::rename(&scratch, &venv).is_err() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
    assert!(
        imports(&venv, module).await,
        "the virtualenv at {} does not import {module} after installing {package}",
        venv.display()
    );
    venv
}
