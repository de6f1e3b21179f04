//! Interop with the real client: Prismer's official Python SDK (PyPI `prismer`) against the real
//! `imsync` binary. The SDK is installed into a virtualenv under the cargo target dir, reused
//! while it still imports `prismer`. Needs python3 (>= 3.10) with venv and pip, and access to
//! PyPI on the first run; without them this test fails rather than skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tokio::process::Command;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/prismer_check.py"
);

/// Runs a command to completion within `secs`; panics if it cannot start or times out.
async fn run_timed(cmd: &mut Command, what: &str, secs: u64) -> Output {
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null());
    tokio::time::timeout(Duration::from_secs(secs), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {secs}s"))
        .unwrap_or_else(|e| panic!("{what}: could not start: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// True when `venv` holds a python that imports `prismer`.
async fn has_prismer(venv: &Path) -> bool {
    let python = venv_python(venv);
    if !python.exists() {
        return false;
    }
    let mut cmd = Command::new(&python);
    cmd.args(["-c", "import prismer"]);
    run_timed(&mut cmd, "import prismer", 60)
        .await
        .status
        .success()
}

/// The virtualenv with the SDK, made on first use. It is built in a scratch directory and renamed
/// into place, so a concurrent run never sees a half-installed one.
async fn prismer_venv() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-venv");
    if has_prismer(&venv).await {
        return venv;
    }

    let mut cmd = Command::new("python3");
    cmd.arg("--version");
    let out = run_timed(&mut cmd, "python3 --version (python3 is required)", 60).await;
    assert!(
        out.status.success(),
        "python3 is required for the Prismer interop test:\n{}",
        text(&out)
    );

    let scratch = venv.with_file_name(format!("interop-venv.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "venv"]).arg(&scratch);
    let out = run_timed(&mut cmd, "python3 -m venv", 300).await;
    assert!(
        out.status.success(),
        "python3 -m venv failed (install python3-venv):\n{}",
        text(&out)
    );

    let mut cmd = Command::new(venv_python(&scratch));
    cmd.args(["-m", "pip", "install", "--quiet", "prismer"])
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    let out = run_timed(&mut cmd, "pip install prismer", 900).await;
    assert!(
        out.status.success(),
        "pip install prismer failed (pip and PyPI are required):\n{}",
        text(&out)
    );

    // A venv runs from its new place when its own bin/python is used, as here.
    if has_prismer(&venv).await {
        // Another run put its venv there meanwhile; use that one.
        let _ = std::fs::remove_dir_all(&scratch);
    } else {
        let _ = std::fs::remove_dir_all(&venv);
        if std::fs::rename(&scratch, &venv).is_err() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
    assert!(
        has_prismer(&venv).await,
        "the virtualenv at {} does not import prismer after installing it",
        venv.display()
    );
    venv
}

#[tokio::test]
async fn prismer_python_sdk_against_the_binary() {
    let venv = prismer_venv().await;

    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::ChildServer::spawn(dir.path(), common::free_port()).await;

    let mut cmd = Command::new(venv_python(&venv));
    cmd.arg(SCRIPT)
        .arg(&server.base)
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("PRISMER_BASE_URL")
        .env_remove("PRISMER_API_KEY");
    let out = run_timed(&mut cmd, "prismer_check.py", 300).await;
    let output = text(&out);
    println!("{output}");
    assert!(
        out.status.success(),
        "prismer_check.py failed ({}):\n{output}",
        out.status
    );
}
