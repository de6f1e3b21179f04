//! The native face's OpenAPI document against third-party validators and the real server:
//! `/openapi.json` of the real `imsync` binary must pass openapi-spec-validator (PyPI
//! `openapi-spec-validator`, which brings `jsonschema`), and the answers of every native endpoint
//! must match the response schemas it documents (tests/interop/openapi_check.py says how), the
//! admin API's as an admin made with `imsync user add --admin`, as an operator would. The
//! validators are installed into a virtualenv under the cargo target dir, reused while it still
//! imports them. Needs python3 with venv and pip, and access to PyPI on the first run; without
//! them this test fails rather than skips.

mod common;

use common::python::{self, run_timed, text};
use tokio::process::Command;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/openapi_check.py"
);

const ADMIN: &str = "openapi-admin";
const ADMIN_PASSWORD: &str = "openapi admin password";

/// `imsync user add NAME --admin` on the database `ChildServer::spawn` will serve.
fn add_admin(data_dir: &std::path::Path, name: &str, password: &str) {
    use std::io::Write;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imsync"));
    cmd.args(["user", "add", name, "--admin", "--data-dir"])
        .arg(data_dir);
    if let Some(url) = common::postgres_url() {
        cmd.args([
            "--database-url",
            &url,
            "--pg-schema",
            &common::schema_for(data_dir),
        ]);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("imsync user add");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success(), "imsync user add failed");
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_describes_the_answers() {
    let venv = python::venv_with(
        "interop-venv-openapi",
        "openapi-spec-validator",
        "openapi_spec_validator, jsonschema, referencing",
    )
    .await;

    let dir = tempfile::tempdir().expect("temp dir");
    // The admin API needs an admin: made as an operator would, before the server starts.
    add_admin(dir.path(), ADMIN, ADMIN_PASSWORD);
    let server = common::ChildServer::spawn(dir.path(), common::free_port()).await;

    let mut cmd = Command::new(python::python(&venv));
    cmd.arg(SCRIPT)
        .arg(&server.base)
        .args([ADMIN, ADMIN_PASSWORD])
        .env("PYTHONUNBUFFERED", "1");
    let out = run_timed(&mut cmd, "openapi_check.py", 300).await;
    let output = text(&out);
    println!("{output}");
    assert!(
        out.status.success(),
        "openapi_check.py failed ({}):\n{output}",
        out.status
    );
}
