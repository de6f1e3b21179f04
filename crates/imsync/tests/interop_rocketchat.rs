//! Interop with a real Rocket.Chat client: the PyPI `rocketchat_API` package (pinned, see
//! `PACKAGE`) against the real `imsync` binary's Rocket.Chat face: login, post, update, react,
//! delete, `chat_sync_messages`, `chat_sync_thread_messages`. The package is installed into a
//! virtualenv under the cargo target dir, reused while it still imports `rocketchat_API`. Needs
//! python3 with venv and pip, and access to PyPI on the first run; without them this test fails
//! rather than skips.

mod common;

use common::python::{self, run_timed, text};
use tokio::process::Command;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/rocketchat_check.py"
);

/// The client version the checks were written against (docs/rocketchat.md, "Compatibility tests").
const PACKAGE: &str = "rocketchat_API==3.7.1";

#[tokio::test]
async fn rocketchat_api_python_client_against_the_binary() {
    let venv = python::venv_with(
        "interop-venv-rocketchat",
        PACKAGE,
        "rocketchat_API.rocketchat",
    )
    .await;

    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::ChildServer::spawn(dir.path(), common::free_port()).await;

    let mut cmd = Command::new(python::python(&venv));
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
