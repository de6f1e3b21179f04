//! Interop with a real Rocket.Chat client: the PyPI `rocketchat_API` package (pinned, see
//! `PACKAGE`) against the real `imsync` binary's Rocket.Chat face: login, post, update, react,
//! delete, `chat_sync_messages`, `chat_sync_thread_messages`. The package is installed into a
//! virtualenv under the cargo target dir, reused while it still imports `rocketchat_API`. Needs
//! python3 with venv and pip, and access to PyPI on the first run; without them this test fails
//! rather than skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tokio::process::Command;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/rocketchat_check.py"
);

/// The client version the checks were written against (specs/rocketchat.md §7).
const PACKAGE: &str = "rocketchat_API==3.7.1";

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

/// True when `venv` holds a python that imports `rocketchat_API`.
async fn has_client(venv: &Path) -> bool {
    let python = venv_python(venv);
    if !python.exists() {
        return false;
    }
    let mut cmd = Command::new(&python);
    cmd.args(["-c", "import rocketchat_API.rocketchat"]);
    run_timed(&mut cmd, "import rocketchat_API", 60)
        .await
        .status
        .success()
}

/// The virtualenv with the client, made on first use. It is built in a scratch directory and renamed
/// into place, so a concurrent run never sees a half-installed one.
async fn client_venv() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-venv-rocketchat");
    if has_client(&venv).await {
        return venv;
    }

    let mut cmd = Command::new("python3");
    cmd.arg("--version");
    let out = run_timed(&mut cmd, "python3 --version (python3 is required)", 60).await;
    assert!(
        out.status.success(),
        "python3 is required for the Rocket.Chat interop test:\n{}",
        text(&out)
    );

    let scratch = venv.with_file_name(format!(
        "interop-venv-rocketchat.tmp-{}",
        std::process::id()
    ));
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
    cmd.args(["-m", "pip", "install", "--quiet", PACKAGE])
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    let out = run_timed(&mut cmd, "pip install rocketchat_API", 900).await;
    assert!(
        out.status.success(),
        "pip install {PACKAGE} failed (pip and PyPI are required):\n{}",
        text(&out)
    );

    // A venv runs from its new place when its own bin/python is used, as here.
    if has_client(&venv).await {
        // Another run put its venv there meanwhile; use that one.
        let _ = std::fs::remove_dir_all(&scratch);
    } else {
        let _ = std::fs::remove_dir_all(&venv);
        if std::fs::rename(&scratch, &venv).is_err() {
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
    assert!(
        has_client(&venv).await,
        "the virtualenv at {} does not import rocketchat_API after installing it",
        venv.display()
    );
    venv
}

#[tokio::test]
async fn rocketchat_api_python_client_against_the_binary() {
    let venv = client_venv().await;

    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::ChildServer::spawn(dir.path(), common::free_port()).await;

    let mut cmd = Command::new(venv_python(&venv));
    cmd.arg(SCRIPT)
        .arg(&server.base)
        .env("PYTHONUNBUFFERED", "1");
    let out = run_timed(&mut cmd, "rocketchat_check.py", 300).await;
    let output = text(&out);
    println!("{output}");
    assert!(
        out.status.success(),
        "rocketchat_check.py failed ({}):\n{output}",
        out.status
    );
}
