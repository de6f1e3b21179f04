//! `imsync backup DEST`: taken from a server under write load, the copy is a data directory a
//! server starts on, holding a consistent snapshot (a gap-free feed, every listed message
//! readable, every send acknowledged before the backup began); and what it refuses. On
//! PostgreSQL the command points at pg_dump, and the README's pg_dump/pg_restore procedure is
//! held to the same checks.

mod common;
mod support;

use common::{free_port, postgres_url, schema_for, Api, ChildServer};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{drain, history_all, register, seq};

/// The real binary on SQLite in `data_dir`, whatever database the rest of the suite runs on.
async fn serve_sqlite(data_dir: &Path) -> ChildServer {
    let port = free_port();
    #[allow(clippy::zombie_processes)] // ChildServer's Drop kills and waits for it.
    let child = Command::new(env!("CARGO_BIN_EXE_imsync"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        // No default channel: every event of the database is then one the test's users see.
        .args(["--default-channel", ""])
        .env_remove("IMSYNC_DATABASE_URL")
        .env("IMSYNC_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn imsync");
    let server = ChildServer {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    wait_healthy(&server).await;
    server
}

fn backup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imsync"))
        .arg("backup")
        .args(args)
        .env_remove("IMSYNC_DATABASE_URL")
        .env("RUST_BACKTRACE", "full")
        .stdin(Stdio::null())
        .output()
        .expect("run imsync backup")
}

/// The one line a refused backup prints.
fn refusal(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("imsync: "), "{stderr:?}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr:?}");
    stderr
}

/// One sender in order, sending `m0, m1, ...` into a group until stopped: a consistent copy
/// holds a prefix of its sends.
struct Load {
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<usize>,
}

impl Load {
    /// Starts sending and answers once `warm` sends were acknowledged.
    async fn start(alice: &Api, group: &str, warm: usize) -> Load {
        let acked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (alice, group, acked, stop) =
                (alice.clone(), group.to_owned(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    alice.send(&group, &format!("m{n}")).await;
                    n += 1;
                    acked.store(n, Ordering::SeqCst);
                }
                n
            })
        };
        while acked.load(Ordering::SeqCst) < warm {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Load { acked, stop, task }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// Stops sending; answers the number of sends made.
    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// Checks a server started on a copy taken while `Load` ran: bob's feed is in order without
/// repeats, its messages are a prefix of the sends holding at least the `acked_before` sends
/// acknowledged before the copy began, every listed message is readable, the sessions work, and
/// the server takes new writes after the copied ones.
async fn check_restored(
    restored: &ChildServer,
    (alice, bob): (&Api, &Api),
    group: &str,
    acked_before: usize,
    sent: usize,
) {
    let bob = login_as(restored, bob).await;
    let (feed, _) = drain(&bob, 0, &[1, 7, 50, 200]).await;
    let seqs: Vec<i64> = feed.iter().map(seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "the restored feed is out of order or repeats: {seqs:?}"
    );
    let messages: Vec<&Value> = feed.iter().filter(|e| e["type"] == "message.new").collect();
    let contents: Vec<&str> = messages
        .iter()
        .map(|e| e["data"]["content"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..contents.len()).map(|n| format!("m{n}")).collect();
    assert_eq!(contents, expected, "the copy is not a prefix of the sends");
    assert!(
        contents.len() >= acked_before && contents.len() <= sent,
        "the copy holds {} messages; {acked_before} were acknowledged before the backup, \
         {sent} in all",
        contents.len()
    );
    let readable: HashSet<String> = history_all(&bob, group)
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    for e in messages {
        let id = e["data"]["id"].as_str().unwrap();
        assert!(
            readable.contains(id),
            "message {id} is listed but not readable"
        );
    }
    assert_eq!(readable.len(), contents.len());

    // The restored server takes writes after the copied seqs.
    let alice = login_as(restored, alice).await;
    alice.send(group, "after the restore").await;
    let (more, _) = drain(&bob, *seqs.last().unwrap(), &[10]).await;
    assert_eq!(more.len(), 1, "{more:?}");
    assert_eq!(more[0]["data"]["content"], "after the restore");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_write_load_is_a_consistent_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let dest = dir.path().join("copy");
    let server = serve_sqlite(&live).await;
    let alice = register(&server.base, "alice").await;
    let bob = register(&server.base, "bob").await;
    let group = alice.group("backed up", &[&bob.user_id]).await;
    // Attachments live under files/: whatever is there is copied with the database.
    std::fs::create_dir_all(live.join("files/ab")).unwrap();
    std::fs::write(live.join("files/ab/cdef"), b"attachment bytes").unwrap();

    let load = Load::start(&alice, &group, 1000).await;
    let acked_before = load.acked();
    let dest_arg = dest.display().to_string();
    let live_arg = live.display().to_string();
    let out = tokio::task::spawn_blocking(move || backup(&[&dest_arg, "--data-dir", &live_arg]))
        .await
        .unwrap();
    let acked_after = load.acked();
    let sent = load.stop().await;
    drop(server);
    assert!(out.status.success(), "backup failed: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 attachment files"), "{stdout}");
    assert!(
        acked_after > acked_before,
        "no send was acknowledged while the backup ran: it was not taken under load"
    );
    assert_eq!(
        std::fs::read(dest.join("files/ab/cdef")).unwrap(),
        b"attachment bytes"
    );

    let restored = serve_sqlite(&dest).await;
    // On SQLite every seq of this database is bob's: the feed starts at 1 without gaps.
    let (feed, _) = drain(&login_as(&restored, &bob).await, 0, &[500]).await;
    let seqs: Vec<i64> = feed.iter().map(seq).collect();
    assert_eq!(
        seqs.first(),
        Some(&1),
        "the restored feed does not start at 1"
    );
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "the restored feed has gaps or repeats: {seqs:?}"
    );
    check_restored(&restored, (&alice, &bob), &group, acked_before, sent).await;
}

/// A PostgreSQL database made for one test and dropped with it, even when the test fails.
struct ScratchDatabase {
    admin_url: String,
    name: String,
}

impl ScratchDatabase {
    fn create(like: &str) -> ScratchDatabase {
        let (server, _) = like.rsplit_once('/').expect("a database URL");
        let name = format!("imsync_restore_{}", std::process::id());
        let db = ScratchDatabase {
            admin_url: format!("{server}/postgres"),
            name,
        };
        db.psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name));
        db.psql(&format!("CREATE DATABASE {}", db.name));
        db
    }

    fn url(&self) -> String {
        let (server, _) = self.admin_url.rsplit_once('/').unwrap();
        format!("{server}/{}", self.name)
    }

    fn psql(&self, sql: &str) {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.admin_url,
                "-c",
                sql,
            ])
            .output()
            .expect("psql is required");
        assert!(out.status.success(), "psql {sql}: {out:?}");
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-X", "-q", "-d", &self.admin_url, "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

/// The README's PostgreSQL procedure, as printed there: `pg_dump -Fc` of the server's schema
/// while it takes writes, `pg_restore` into a new database, a server started on that.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
async fn the_postgres_procedure_restores_a_dump_taken_while_serving() {
    let url = postgres_url().expect("IMSYNC_TEST_DATABASE_URL is required");
    let dir = tempfile::tempdir().unwrap();
    let schema = schema_for(dir.path());
    let no_channel = ["--default-channel", ""];
    let server = ChildServer::spawn_with(dir.path(), free_port(), &no_channel).await;
    let alice = register(&server.base, "alice").await;
    let bob = register(&server.base, "bob").await;
    let group = alice.group("dumped", &[&bob.user_id]).await;

    let load = Load::start(&alice, &group, 300).await;
    let acked_before = load.acked();
    let dump = dir.path().join("imsync.dump");
    let (from, to) = (url.clone(), dump.clone());
    let schema_arg = schema.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("pg_dump")
            .args(["-Fc", "-n", &schema_arg, "-d", &from, "-f"])
            .arg(&to)
            .output()
            .expect("pg_dump is required")
    })
    .await
    .unwrap();
    let acked_after = load.acked();
    let sent = load.stop().await;
    drop(server);
    assert!(out.status.success(), "pg_dump: {out:?}");
    assert!(
        acked_after > acked_before,
        "no send was acknowledged while pg_dump ran: it was not taken under load"
    );

    let restored_db = ScratchDatabase::create(&url);
    let out = Command::new("pg_restore")
        .args(["-d", &restored_db.url()])
        .arg(&dump)
        .output()
        .expect("pg_restore is required");
    assert!(out.status.success(), "pg_restore: {out:?}");

    let port = free_port();
    #[allow(clippy::zombie_processes)] // ChildServer's Drop kills and waits for it.
    let child = Command::new(env!("CARGO_BIN_EXE_imsync"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &restored_db.url(), "--pg-schema", &schema])
        .args(no_channel)
        .arg("--data-dir")
        .arg(dir.path().join("restored"))
        .env("IMSYNC_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn imsync");
    let restored = ChildServer {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    wait_healthy(&restored).await;
    check_restored(&restored, (&alice, &bob), &group, acked_before, sent).await;
}

async fn wait_healthy(server: &ChildServer) {
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if let Ok(r) = http.get(format!("{}/healthz", server.base)).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("imsync did not become healthy at {}", server.base);
}

/// A client of `server` with the token `user` had: the copy keeps the sessions.
async fn login_as(server: &ChildServer, user: &Api) -> Api {
    let mut api = Api::new(&server.base, user.token.clone());
    api.user_id = user.user_id.clone();
    api.username = user.username.clone();
    let (s, b) = api.get("/api/im/me").await;
    assert_eq!(s, StatusCode::OK, "the copied session does not work: {b}");
    api
}

#[tokio::test]
async fn a_non_empty_destination_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    drop(serve_sqlite(&live).await);
    let dest = dir.path().join("taken");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("keep.txt"), b"mine").unwrap();
    let out = backup(&[
        &dest.display().to_string(),
        "--data-dir",
        &live.display().to_string(),
    ]);
    let line = refusal(&out);
    assert!(line.contains("not empty"), "{line}");
    assert_eq!(
        std::fs::read_dir(&dest).unwrap().count(),
        1,
        "DEST was written to"
    );
    assert_eq!(std::fs::read(dest.join("keep.txt")).unwrap(), b"mine");

    let file = dest.join("keep.txt");
    let out = backup(&[
        &file.display().to_string(),
        "--data-dir",
        &live.display().to_string(),
    ]);
    let line = refusal(&out);
    assert!(line.contains("not a directory"), "{line}");
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");

    // An empty directory is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = backup(&[
        &empty.display().to_string(),
        "--data-dir",
        &live.display().to_string(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(empty.join("imsync.db").is_file());
}

#[tokio::test]
async fn no_database_and_postgres_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("copy");
    let missing = dir.path().join("nothing-here");
    let out = backup(&[
        &dest.display().to_string(),
        "--data-dir",
        &missing.display().to_string(),
    ]);
    let line = refusal(&out);
    assert!(line.contains("no database at"), "{line}");
    assert!(!dest.exists(), "a refused backup created DEST");

    let out = backup(&[
        &dest.display().to_string(),
        "--database-url",
        "postgres://postgres@127.0.0.1:5432/imsync",
    ]);
    let line = refusal(&out);
    assert!(line.contains("pg_dump"), "{line}");
    assert!(!dest.exists(), "a refused backup created DEST");
}
