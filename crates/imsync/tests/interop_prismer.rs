//! Interop with the real client: Prismer's official Python SDK (PyPI `prismer`) against the real
//! `imsync` binary. The SDK is installed into a virtualenv under the cargo target dir, reused
//! while it still imports `prismer`. Needs python3 (>= 3.10) with venv and pip, and access to
//! PyPI on the first run; without them this test fails rather than skips.

mod common;

use common::python::{self, run_timed, text};
use tokio::process::Command;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/prismer_check.py"
);

#[tokio::test]
async fn prismer_python_sdk_against_the_binary() {
    let venv = python::venv_with("interop-venv", "prismer", "prismer").await;

    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::ChildServer::spawn(dir.path(), common::free_port()).await;

    let mut cmd = Command::new(python::python(&venv));
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
