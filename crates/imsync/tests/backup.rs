//! `imsync backup DEST`: taken from a server under write load, the copy is a data directory a
//! server starts on, holding a consistent snapshot (a gap-free feed, every listed message
//! readable, every send acknowledged before the backup began); and what it refuses.
//! SQLite only: on PostgreSQL the command points at pg_dump.

mod common;
mod support;

use common::{free_port, Api, ChildServer};
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
    let http = reqwest::Client::new();
    for _ in 0..400 {
        if let Ok(r) = http.get(format!("{}/healthz", server.base)).send().await {
            if r.status().is_success() {
                return server;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("imsync did not become healthy on port {port}");
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

    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (alice, group, acked, stop) =
            (alice.clone(), group.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            // One sender in order: what the copy holds must be a prefix m0, m1, ... of its sends.
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                alice.send(&group, &format!("m{n}")).await;
                n += 1;
                acked.store(n, Ordering::SeqCst);
            }
            n
        })
    };
    while acked.load(Ordering::SeqCst) < 1000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let acked_before = acked.load(Ordering::SeqCst);
    let dest_arg = dest.display().to_string();
    let live_arg = live.display().to_string();
    let out = tokio::task::spawn_blocking(move || backup(&[&dest_arg, "--data-dir", &live_arg]))
        .await
        .unwrap();
    let acked_after = acked.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    let sent = load.await.unwrap();
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
    let bob = login_as(&restored, &bob).await;
    let (feed, _) = drain(&bob, 0, &[1, 7, 50, 200]).await;
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
    let readable: HashSet<String> = history_all(&bob, &group)
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
    let alice = login_as(&restored, &alice).await;
    alice.send(&group, "after the restore").await;
    let (more, _) = drain(&bob, *seqs.last().unwrap(), &[10]).await;
    assert_eq!(more.len(), 1, "{more:?}");
    assert_eq!(more[0]["data"]["content"], "after the restore");
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
