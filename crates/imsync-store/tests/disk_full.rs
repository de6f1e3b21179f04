//! A full disk: each write that fails logs one ERROR line, with the cause, and its caller gets a
//! 503-class error; nothing tries to roll back a transaction SQLite already rolled back.
//!
//! The database is capped at its current size with `PRAGMA max_page_count` on the writer's
//! connection: a write that needs a new page fails with `SQLITE_FULL`, as it does on a full
//! disk, and SQLite then rolls back the whole transaction by itself.

use imsync_core::model::{Audience, Payload};
use imsync_core::{ErrorCode, Result};
use imsync_store::repo::events;
use imsync_store::{Durability, SqlConn, Store, StoreOptions, Value};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

async fn append_big(store: &Store, i: usize) -> Result<i64> {
    store
        .write(move |c: &mut dyn SqlConn| {
            let e = events::append_rendered(
                c,
                "test.event",
                Audience::User("u1".into()),
                None,
                Payload::from_value(json!({ "i": i, "filler": "x".repeat(64 * 1024) })),
                0,
            )?;
            Ok(e.seq)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_full_disk_logs_its_cause_once() {
    let log = Log::default();
    let sink = log.clone();
    // Global: a write may run on the writer's own thread.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions {
        sqlite_path: dir.path().join("imsync.db"),
        durability: Durability::Normal,
    })
    .unwrap();
    append_big(&store, 0)
        .await
        .expect("a write before the disk fills");
    store
        .write(|c: &mut dyn SqlConn| {
            let pages = c.query("PRAGMA page_count", &[])?;
            let Value::Int(n) = pages[0].0[0] else {
                panic!("page_count: {:?}", pages[0].0)
            };
            c.query(&format!("PRAGMA max_page_count = {n}"), &[])?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(log.take(), "", "nothing failed yet");

    // One at a time (each its own transaction), then several at once (one batch, savepoints).
    for i in 1..=3 {
        let err = append_big(&store, i).await.expect_err("the disk is full");
        assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    }
    let lone = log.take();
    let concurrent: Vec<_> = (10..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { append_big(&store, i).await })
        })
        .collect();
    let mut failed = 0;
    for t in concurrent {
        if t.await.unwrap().is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 6, "every write needs a page the disk does not have");
    let batched = log.take();

    for (what, text, writes) in [("lone", &lone, 3), ("batched", &batched, 6)] {
        assert!(
            !text.contains("no transaction is active"),
            "{what}: rolled back twice:\n{text}"
        );
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
        assert!(
            errors
                .iter()
                .all(|l| l.contains("database or disk is full")),
            "{what}: an ERROR line without the cause:\n{text}"
        );
        assert!(
            !errors.is_empty() && errors.len() <= writes,
            "{what}: {} ERROR lines for {writes} failed writes:\n{text}",
            errors.len()
        );
    }
}
