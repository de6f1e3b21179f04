//! The native face's OpenAPI document against third-party validators and the real server:
//! `/openapi.json` of the real `imsync` binary must pass openapi-spec-validator (PyPI
//! `openapi-spec-validator`, which brings `jsonschema`), and the answers of every native endpoint
//! must match the response schemas it documents (tests/interop/openapi_check.py says how). The
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

#[tokio::test]
async fn the_openapi_document_is_valid_and_describes_the_answers() {
    let venv = python::venv_with(
        "interop-venv-openapi",
        "openapi-spec-validator",
        "openapi_spec_validator, jsonschema, referencing",
    )
    .await;

    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::ChildServer::spawn(dir.path(), common::free_port()).await;

    let mut cmd = Command::new(python::python(&venv));
    cmd.arg(SCRIPT)
        .arg(&server.base)
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
