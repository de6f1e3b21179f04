//! Administration against the real binary: a server with closed registration bootstrapped by
//! `imsync user add --admin`, the admin API (create, list, disable and enable, role changes,
//! password resets, ending sessions), a disabled account refused by the native, Rocket.Chat and
//! TangSengDaoDao logins and its tokens by every face, and `imsync user` run from another process
//! against a running server, whose tokens and realtime connections it ends; and the password
//! prompt at a terminal.
//!
//! The bootstrap runs on SQLite always, and on PostgreSQL in an ignored test (`.ci/run` runs it
//! with IMSYNC_TEST_DATABASE_URL); the running-server test follows the suite's backend.

mod common;

use common::{free_port, postgres_url, schema_for, ws, Api, ChildServer};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Generous: another process's revocation reaches a running server through its session cache
/// (a few seconds) and its realtime session check (two seconds); CI machines are slow.
const ENDS_WITHIN: Duration = Duration::from_secs(20);

/// The database a server and the CLI share.
enum Db {
    Sqlite(PathBuf),
    Postgres { dir: PathBuf, url: String },
}

impl Db {
    /// SQLite, or PostgreSQL when the suite runs on it.
    fn suite(dir: &Path) -> Db {
        match postgres_url() {
            Some(url) => Db::Postgres {
                dir: dir.to_owned(),
                url,
            },
            None => Db::Sqlite(dir.to_owned()),
        }
    }

    /// The settings that name this database, as `serve` and `user` take them.
    fn args(&self, cmd: &mut Command) {
        cmd.env_remove("IMSYNC_DATABASE_URL");
        match self {
            Db::Sqlite(dir) => {
                cmd.arg("--data-dir").arg(dir);
            }
            Db::Postgres { dir, url } => {
                cmd.arg("--data-dir").arg(dir).args([
                    "--database-url",
                    url,
                    "--pg-schema",
                    &schema_for(dir),
                ]);
            }
        }
    }

    /// `imsync user ARGS` with `stdin` on its standard input.
    fn user(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imsync"));
        cmd.arg("user").args(args);
        self.args(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run imsync user");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().expect("imsync user")
    }

    /// [`Db::user`] that must succeed; answers its standard output.
    fn user_ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.user(args, stdin);
        assert!(out.status.success(), "imsync user {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// The real binary serving this database.
    async fn serve(&self, extra: &[&str]) -> ChildServer {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imsync"));
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra);
        self.args(&mut cmd);
        #[allow(clippy::zombie_processes)] // ChildServer's Drop kills and waits for it.
        let child = cmd
            .env("IMSYNC_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn imsync");
        let server = ChildServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..400 {
            if let Ok(r) = reqwest::get(format!("{}/healthz", server.base)).await {
                if r.status().is_success() {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("imsync did not become healthy on port {port}");
    }
}

/// The one line a refused command prints.
fn refusal(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("imsync: "), "{stderr:?}");
    stderr
}

/// A native password login: its status and body.
async fn login(base: &str, username: &str, password: &str) -> (StatusCode, Value) {
    Api::new(base, None)
        .post(
            "/api/im/users/login",
            json!({"username": username, "password": password}),
        )
        .await
}

/// A native login that must succeed; answers a client acting with its token.
async fn logged_in(base: &str, username: &str, password: &str) -> Api {
    let (s, b) = login(base, username, password).await;
    assert_eq!(s, StatusCode::OK, "login {username}: {b}");
    let mut api = Api::new(base, Some(b["data"]["token"].as_str().unwrap().to_owned()));
    api.user_id = b["data"]["user"]["id"].as_str().unwrap().to_owned();
    api.username = username.to_owned();
    api
}

/// Rocket.Chat's REST login: status, and the user id and token on success.
async fn rc_login(
    base: &str,
    username: &str,
    password: &str,
) -> (StatusCode, Option<(String, String)>) {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"user": username, "password": password}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let b: Value = r.json().await.unwrap();
    let session = (status == StatusCode::OK).then(|| {
        (
            b["data"]["userId"].as_str().unwrap().to_owned(),
            b["data"]["authToken"].as_str().unwrap().to_owned(),
        )
    });
    if status != StatusCode::OK {
        assert_eq!(b["success"], json!(false), "{b}");
    }
    (status, session)
}

/// Rocket.Chat's `me` with a session: its status.
async fn rc_me(base: &str, (user_id, token): &(String, String)) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{base}/api/v1/me"))
        .header("X-User-Id", user_id)
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap()
        .status()
}

/// TangSengDaoDao's login: status and body.
async fn tsdd_login(base: &str, username: &str, password: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/user/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

/// A TangSengDaoDao call with a token: its status.
async fn tsdd_sync(base: &str, token: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/v1/conversation/sync"))
        .header("token", token)
        .json(&json!({"version": 0}))
        .send()
        .await
        .unwrap()
        .status()
}

/// A DDP `login` on `/websocket` with these params: the `result` frame's `error`, `Null` when
/// it succeeded.
async fn ddp_login(base: &str, params: Value) -> Value {
    let url = format!("ws://{}/websocket", base.trim_start_matches("http://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ddp");
    let connect = json!({"msg": "connect", "version": "1", "support": ["1"]});
    ws.send(Message::text(connect.to_string())).await.unwrap();
    let call = json!({"msg": "method", "method": "login", "params": [params], "id": "1"});
    ws.send(Message::text(call.to_string())).await.unwrap();
    loop {
        let frame = tokio::time::timeout(ENDS_WITHIN, ws.next())
            .await
            .expect("a DDP answer")
            .expect("a frame")
            .expect("a frame");
        let Ok(text) = frame.to_text() else { continue };
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        if v["msg"] == "result" && v["id"] == "1" {
            return v.get("error").cloned().unwrap_or(Value::Null);
        }
    }
}

/// Waits until `check` answers true; fails after [`ENDS_WITHIN`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + ENDS_WITHIN;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn bootstrap_and_manage(db: Db) {
    // The first admin, made before the server ever ran: the command creates the database.
    let out = db.user_ok(&["add", "root", "--admin"], "root-password-1\n");
    assert!(out.starts_with("imsync: created root (id "), "{out}");
    assert!(out.trim_end().ends_with(", an admin"), "{out}");
    // A password on the command line is refused: it would show in the process list.
    let out = db.user(&["add", "eve", "--password", "in-the-open"], "");
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    let server = db.serve(&["--registration", "closed"]).await;
    let base = server.base.as_str();
    let (s, b) = Api::new(base, None)
        .post(
            "/api/im/users/register",
            json!({"username": "walk-in", "password": "walk-in-pass"}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("REGISTRATION_CLOSED"))
    );

    let root = logged_in(base, "root", "root-password-1").await;
    let (s, b) = root
        .post(
            "/api/im/admin/users",
            json!({"username": "alice", "password": "alice-pass-1", "displayName": "Alice"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let alice_id = b["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(b["data"]["admin"], json!(false));
    assert_eq!(b["data"]["disabled"], json!(false));
    assert_eq!(b["data"]["hasPassword"], json!(true));
    assert_eq!(b["data"]["displayName"], json!("Alice"));
    let (s, b) = root
        .post(
            "/api/im/admin/users",
            json!({"username": "ALICE", "password": "another-pass"}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("USERNAME_TAKEN"))
    );
    let (s, b) = root
        .post(
            "/api/im/admin/users",
            json!({"username": "bob", "password": "short"}),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_REQUEST")),
        "{b}"
    );

    // Alice is no admin: every admin route refuses her.
    let alice = logged_in(base, "alice", "alice-pass-1").await;
    for (method, path) in [
        ("GET", "/api/im/admin/users".to_owned()),
        ("GET", format!("/api/im/admin/users/{alice_id}")),
        ("POST", format!("/api/im/admin/users/{alice_id}/logout")),
    ] {
        let (s, b) = alice
            .request(method.parse().unwrap(), &path, None, &[])
            .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("FORBIDDEN")),
            "{method} {path}: {b}"
        );
    }
    let (s, _) = Api::new(base, None).get("/api/im/admin/users").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (s, b) = root.get("/api/im/admin/users").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let names: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["root", "alice"]);
    assert_eq!(b["data"][0]["admin"], json!(true));
    assert_eq!(b["meta"]["total"], json!(2));
    let (s, b) = root.get("/api/im/admin/users?limit=1&offset=1").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"][0]["username"], json!("alice"));
    let (s, b) = root.get("/api/im/admin/users?limit=0").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_PARAM"))
    );
    let (s, b) = root.get("/api/im/admin/users/alice").await;
    assert_eq!(
        (s, b["data"]["id"].as_str()),
        (StatusCode::OK, Some(alice_id.as_str()))
    );
    let (s, b) = root.get("/api/im/admin/users/nobody").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );

    // Ending Alice's sessions ends them on every face.
    let (s, rc) = rc_login(base, "alice", "alice-pass-1").await;
    assert_eq!(s, StatusCode::OK);
    let rc = rc.unwrap();
    let (s, b) = tsdd_login(base, "alice", "alice-pass-1").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let tsdd_token = b["token"].as_str().unwrap().to_owned();
    assert_eq!(alice.get("/api/im/me").await.0, StatusCode::OK);
    assert_eq!(rc_me(base, &rc).await, StatusCode::OK);
    assert_eq!(tsdd_sync(base, &tsdd_token).await, StatusCode::OK);
    let (s, b) = root
        .post_empty(&format!("/api/im/admin/users/{alice_id}/logout"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["sessionsEnded"], json!(3));
    assert_eq!(alice.get("/api/im/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(rc_me(base, &rc).await, StatusCode::UNAUTHORIZED);
    assert_eq!(tsdd_sync(base, &tsdd_token).await, StatusCode::UNAUTHORIZED);

    // Disabled: her token stops at once, and no face lets her log in.
    let alice = logged_in(base, "alice", "alice-pass-1").await;
    let (s, b) = root
        .patch("/api/im/admin/users/alice", json!({"disabled": true}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["disabled"], json!(true));
    assert!(b["data"]["disabledAt"].is_string(), "{b}");
    assert_eq!(alice.get("/api/im/me").await.0, StatusCode::UNAUTHORIZED);
    let (s, b) = login(base, "alice", "alice-pass-1").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("ACCOUNT_DISABLED")),
        "{b}"
    );
    // Without the password, a disabled account looks like any other refusal.
    let (s, b) = login(base, "alice", "wrong-password").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("INVALID_CREDENTIALS"))
    );
    assert_eq!(
        rc_login(base, "alice", "alice-pass-1").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, b) = tsdd_login(base, "alice", "alice-pass-1").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["status"], json!(400), "{b}");
    assert!(b["msg"].as_str().unwrap().contains("disabled"), "{b}");
    let digest = imsync_core::ids::token_hash("alice-pass-1");
    let error = ddp_login(
        base,
        json!({"user": {"username": "alice"}, "password": {"digest": digest, "algorithm": "sha-256"}}),
    )
    .await;
    assert_eq!(
        (&error["error"], &error["reason"]),
        (&json!(403), &json!("This account is disabled")),
        "{error}"
    );
    let error = ddp_login(base, json!({"resume": alice.token.clone().unwrap()})).await;
    assert_eq!(
        error["error"],
        json!(403),
        "a disabled account's token resumed: {error}"
    );
    // The CLI sees what the API did.
    let listed: Value = serde_json::from_str(&db.user_ok(&["list", "--json"], "")).unwrap();
    assert_eq!(listed[1]["username"], json!("alice"));
    assert_eq!(listed[1]["disabled"], json!(true));

    let (s, b) = root
        .patch("/api/im/admin/users/alice", json!({"disabled": false}))
        .await;
    assert_eq!(
        (s, &b["data"]["disabled"]),
        (StatusCode::OK, &json!(false)),
        "{b}"
    );
    let alice = logged_in(base, "alice", "alice-pass-1").await;

    // A reset sets the new password and ends her sessions.
    let (s, b) = root
        .post(
            &format!("/api/im/admin/users/{alice_id}/reset-password"),
            json!({"password": "alice-pass-2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["sessionsEnded"], json!(1));
    assert_eq!(alice.get("/api/im/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        login(base, "alice", "alice-pass-1").await.0,
        StatusCode::UNAUTHORIZED
    );
    let alice = logged_in(base, "alice", "alice-pass-2").await;

    // Roles: the last enabled admin stays one; a new admin may manage accounts.
    for change in [json!({"admin": false}), json!({"disabled": true})] {
        let (s, b) = root.patch("/api/im/admin/users/root", change).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("CONFLICT")),
            "{b}"
        );
    }
    let (s, b) = root.patch("/api/im/admin/users/alice", json!({})).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_REQUEST"))
    );
    let (s, b) = root
        .patch("/api/im/admin/users/alice", json!({"admin": true}))
        .await;
    assert_eq!(
        (s, &b["data"]["admin"]),
        (StatusCode::OK, &json!(true)),
        "{b}"
    );
    assert_eq!(alice.get("/api/im/admin/users").await.0, StatusCode::OK);
    let (s, b) = alice
        .patch("/api/im/admin/users/root", json!({"admin": false}))
        .await;
    assert_eq!(
        (s, &b["data"]["admin"]),
        (StatusCode::OK, &json!(false)),
        "{b}"
    );
    assert_eq!(
        root.get("/api/im/admin/users").await.0,
        StatusCode::FORBIDDEN
    );
    // Deleting one's own account is a way of leaving the admin role too.
    let (s, b) = alice.delete("/api/im/me").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("CONFLICT")),
        "{b}"
    );
    assert_eq!(alice.get("/api/im/me").await.0, StatusCode::OK);

    // The CLI's table shows the same.
    let table = db.user_ok(&["list"], "");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("USERNAME"), "{table}");
    let cells = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        cells(lines[1])[..5],
        ["root", &root.user_id, "no", "active", "yes"]
    );
    assert_eq!(
        cells(lines[2])[..5],
        ["alice", &alice_id, "yes", "active", "yes"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_sqlite_server_is_bootstrapped_from_the_cli_and_managed_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    bootstrap_and_manage(Db::Sqlite(dir.path().to_owned())).await;
}

#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_postgres_server_is_bootstrapped_from_the_cli_and_managed_over_the_api() {
    let url = postgres_url()
        .expect("this test needs IMSYNC_TEST_DATABASE_URL=postgres://... (see .ci/run)");
    let dir = tempfile::tempdir().unwrap();
    bootstrap_and_manage(Db::Postgres {
        dir: dir.path().to_owned(),
        url,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_ends_sessions_of_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::suite(dir.path());
    let server = db.serve(&[]).await;
    let base = server.base.as_str();
    let (s, b) = Api::new(base, None)
        .post(
            "/api/im/users/register",
            json!({"username": "carol", "password": "carol-pass-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // `logout` from another process: the running server refuses the token (cached or not) and
    // closes its socket.
    let carol = logged_in(base, "carol", "carol-pass-1").await;
    let mut ws = ws::open(
        base.trim_start_matches("http://"),
        carol.token.as_deref().unwrap(),
        ENDS_WITHIN,
    )
    .await;
    assert_eq!(carol.get("/api/im/me").await.0, StatusCode::OK);
    let out = db.user_ok(&["logout", "carol"], "");
    assert_eq!(out, "imsync: ended 2 sessions of carol\n");
    eventually(
        "the running server still takes a token the CLI ended",
        || async { carol.get("/api/im/me").await.0 == StatusCode::UNAUTHORIZED },
    )
    .await;
    assert_eq!(ws::closed_with(&mut ws, ENDS_WITHIN).await, 4001);

    // `disable`: logins are refused at once, sessions end; `enable` lets her back in.
    let carol = logged_in(base, "carol", "carol-pass-1").await;
    assert_eq!(carol.get("/api/im/me").await.0, StatusCode::OK);
    let out = db.user_ok(&["disable", "carol"], "");
    assert_eq!(out, "imsync: disabled carol; 1 session ended\n");
    let (s, b) = login(base, "carol", "carol-pass-1").await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("ACCOUNT_DISABLED"))
    );
    eventually("a disabled account's token still works", || async {
        carol.get("/api/im/me").await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(
        db.user_ok(&["enable", "carol"], ""),
        "imsync: enabled carol\n"
    );
    let carol = logged_in(base, "carol", "carol-pass-1").await;

    // `reset-password`, the password on standard input.
    let out = db.user_ok(&["reset-password", "carol"], "carol-pass-2\n");
    assert_eq!(out, "imsync: new password set for carol; 1 session ended\n");
    assert_eq!(
        login(base, "carol", "carol-pass-1").await.0,
        StatusCode::UNAUTHORIZED
    );
    logged_in(base, "carol", "carol-pass-2").await;
    eventually("a token from before the reset still works", || async {
        carol.get("/api/im/me").await.0 == StatusCode::UNAUTHORIZED
    })
    .await;

    // What the command refuses, in one line each.
    let err = refusal(&db.user(&["disable", "nobody"], ""));
    assert!(err.contains("nobody not found"), "{err}");
    let err = refusal(&db.user(&["reset-password", "carol"], ""));
    assert!(err.contains("no password given"), "{err}");
    let err = refusal(&db.user(&["reset-password", "carol"], "short\n"));
    assert!(err.contains("at least 8 characters"), "{err}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imsync"));
    let missing = dir.path().join("missing");
    let out = cmd
        .args(["user", "list", "--data-dir"])
        .arg(&missing)
        .env_remove("IMSYNC_DATABASE_URL")
        .output()
        .unwrap();
    let err = refusal(&out);
    assert!(err.contains("no database at"), "{err}");
    assert!(!missing.exists(), "a mistyped directory became a database");
}

/// Drives `imsync user add` at a terminal (a pseudo-terminal): it types each password once the
/// terminal stops echoing, as a person would see it.
const AT_A_TERMINAL: &str = r#"
import os, pty, select, sys, termios, time

exe, data = sys.argv[1], sys.argv[2]
env = {k: v for k, v in os.environ.items() if k != "IMSYNC_DATABASE_URL"}

def add(first, second):
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(exe, [exe, "user", "add", "dave", "--data-dir", data], env)
    out = b""
    def read_until(marker):
        nonlocal out
        deadline = time.time() + 30
        while marker not in out:
            left = deadline - time.time()
            assert left > 0 and select.select([fd], [], [], left)[0], f"no {marker!r} in {out!r}"
            out += os.read(fd, 1024)
    def type_unechoed(password):
        deadline = time.time() + 30
        while termios.tcgetattr(fd)[3] & termios.ECHO:
            assert time.time() < deadline, "the terminal kept echoing"
            time.sleep(0.01)
        os.write(fd, password + b"\n")
    read_until(b"Password for dave: ")
    type_unechoed(first)
    read_until(b"again: ")
    type_unechoed(second)
    deadline = time.time() + 30
    while True:
        left = deadline - time.time()
        assert left > 0 and select.select([fd], [], [], left)[0], f"no end after {out!r}"
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")

code, out = add(b"first-password", b"second-password")
assert code == 1 and "the passwords differ" in out, (code, out)
code, out = add(b"dave-password-1", b"dave-password-1")
assert code == 0 and "imsync: created dave" in out, (code, out)
assert "dave-password-1" not in out, f"the password was echoed: {out!r}"
print("ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_is_asked_twice_without_echo() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .args(["-c", AT_A_TERMINAL, env!("CARGO_BIN_EXE_imsync")])
        .arg(dir.path())
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    let db = Db::Sqlite(dir.path().to_owned());
    let server = db.serve(&[]).await;
    logged_in(&server.base, "dave", "dave-password-1").await;
}
