//! The SQLite writer: writes run on the caller's thread when the writer is idle and in batches on
//! its own thread otherwise; either way each write is its own transaction and the commit feed
//! carries every appended event once, in seq order.

use imsync_core::model::{Audience, Payload};
use imsync_core::{Error, Result};
use imsync_store::repo::events;
use imsync_store::{Durability, Store, StoreOptions};
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

fn open(dir: &tempfile::TempDir, durability: Durability) -> Store {
    Store::open(&StoreOptions {
        sqlite_path: dir.path().join("imsync.db"),
        durability,
    })
    .expect("opening the store")
}

/// How the test's writes reach the store.
#[derive(Clone, Copy)]
enum Kind {
    Once,
    Repeatable,
}

async fn append(store: &Store, kind: Kind, task: usize, i: usize, fail: bool) -> Result<i64> {
    let job = move |c: &mut dyn imsync_store::SqlConn| {
        let e = events::append_rendered(
            c,
            "test.event",
            Audience::User(format!("u{task}")),
            None,
            Payload::from_value(json!({ "task": task, "i": i })),
            0,
        )?;
        if fail {
            return Err(Error::invalid("this write fails after appending"));
        }
        Ok(e.seq)
    };
    match kind {
        Kind::Once => store.write(job).await,
        Kind::Repeatable => store.write_repeatable(job).await,
    }
}

/// Tasks on several threads write at once; some writes fail after appending. Every successful
/// write gets its own seq, the feed carries exactly those seqs in increasing order, and the
/// failed writes leave nothing behind.
async fn concurrent_writes(durability: Durability, kind: Kind) {
    const TASKS: usize = 8;
    const EACH: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, durability);
    let mut feed = store.subscribe();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let fail = (task + i) % 7 == 0;
                match append(&store, kind, task, i, fail).await {
                    Ok(seq) => {
                        assert!(!fail, "a failing write reported success");
                        seqs.push(seq);
                    }
                    Err(e) => assert!(fail, "write {task}/{i} failed: {e}"),
                }
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            seqs
        });
    }
    let mut written = Vec::new();
    while let Some(seqs) = tasks.join_next().await {
        written.extend(seqs.unwrap());
    }
    let unique: HashSet<i64> = written.iter().copied().collect();
    assert_eq!(unique.len(), written.len(), "a seq was handed out twice");

    let mut published = Vec::new();
    while published.len() < written.len() {
        let batch = tokio::time::timeout(Duration::from_secs(10), feed.recv())
            .await
            .expect("the feed stalled")
            .expect("the feed closed");
        published.extend(batch.iter().map(|e| e.seq));
    }
    assert!(
        published.windows(2).all(|w| w[0] < w[1]),
        "the feed is out of seq order"
    );
    let mut expected: Vec<i64> = written.clone();
    expected.sort_unstable();
    assert_eq!(published, expected, "the feed differs from what committed");

    let stored = store
        .read(|c| c.query("SELECT seq FROM events ORDER BY seq", &[]))
        .await
        .unwrap();
    let stored: Vec<i64> = stored.iter().map(|r| r.i64(0)).collect();
    assert_eq!(stored, expected, "failed writes left rows behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_commit_alone_and_publish_in_order() {
    concurrent_writes(Durability::Normal, Kind::Once).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeatable_writes_replay_a_batch_with_a_failure() {
    // Batches of repeatable writes run without savepoints; one failing write makes the batch
    // run again with them, and only the failing write is lost.
    concurrent_writes(Durability::Normal, Kind::Repeatable).await;
    concurrent_writes(Durability::Full, Kind::Repeatable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_through_the_writer_thread_only() {
    // `full` never writes on the caller's thread: the same rules hold on the queued path alone.
    concurrent_writes(Durability::Full, Kind::Once).await;
}

#[tokio::test]
async fn new_databases_use_small_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Durability::Normal);
    let size = store
        .read(|c| Ok(c.query_opt("PRAGMA page_size", &[])?.map(|r| r.i64(0))))
        .await
        .unwrap();
    assert_eq!(size, Some(2048));
}

#[tokio::test]
async fn the_writer_keeps_an_eight_mib_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Durability::Normal);
    let kib = store
        .write(|c| Ok(c.query_opt("PRAGMA cache_size", &[])?.map(|r| r.i64(0))))
        .await
        .unwrap();
    // Negative: a size in KiB rather than in pages.
    assert_eq!(kib, Some(-8192));
}

/// Whether a write ran on the writer thread rather than on its caller's.
async fn ran_on_writer_thread(store: &Store) -> bool {
    store
        .write(|_| {
            let name = std::thread::current().name().map(str::to_owned);
            Ok(name.is_some_and(|n| n.starts_with("imsync-sqlite-w")))
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_run_inline_only_while_the_load_is_sequential() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Durability::Normal);
    assert!(
        !ran_on_writer_thread(&store).await,
        "a lone write on an idle store commits on its caller's thread"
    );
    // A burst of concurrent writes queued behind a slow one: the writer thread batches them.
    let (started, slow_started) = tokio::sync::oneshot::channel();
    let slow = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(move |_| {
                    let _ = started.send(());
                    std::thread::sleep(Duration::from_millis(100));
                    Ok(())
                })
                .await
        })
    };
    slow_started.await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..32 {
        let store = store.clone();
        tasks.spawn(async move { append(&store, Kind::Repeatable, task, 0, false).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    slow.await.unwrap().unwrap();
    // Right after it, a write that finds the queue empty still goes to the writer thread, until
    // several lone writes in a row show the load is sequential again.
    let mut places = Vec::new();
    for _ in 0..12 {
        places.push(ran_on_writer_thread(&store).await);
    }
    assert!(
        places[0],
        "the first write after a burst ran inline: {places:?}"
    );
    assert!(
        !places[places.len() - 1],
        "sequential writes never went back inline: {places:?}"
    );
}

/// The WAL header's checkpoint sequence number, which SQLite bumps each time it starts the WAL
/// over from its beginning.
fn wal_restarts(wal: &std::path::Path) -> Option<u32> {
    let header = std::fs::read(wal).ok()?;
    Some(u32::from_be_bytes(header.get(12..16)?.try_into().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wal_starts_over_under_a_steady_stream_of_writes() {
    // Without a pause between writes SQLite never starts its WAL over by itself; the store's
    // checkpointer must, once the WAL passes its limit (64 MiB), and the file stays that size.
    const LIMIT: u64 = 64 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Durability::Normal);
    let wal = dir.path().join("imsync.db-wal");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for task in 0..4 {
        let (store, stop) = (store.clone(), stop.clone());
        writers.spawn(async move {
            let filler = "x".repeat(6000);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let filler = filler.clone();
                store
                    .write(move |c| {
                        events::append_rendered(
                            c,
                            "test.filler",
                            Audience::User(format!("u{task}")),
                            None,
                            Payload::from_value(json!({ "filler": filler })),
                            0,
                        )
                    })
                    .await
                    .unwrap();
            }
        });
    }
    let started = std::time::Instant::now();
    let (mut restarts_at_limit, mut largest, mut started_over) = (None, 0, false);
    while started.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        largest = largest.max(size);
        let restarts = wal_restarts(&wal);
        if size > LIMIT && restarts_at_limit.is_none() {
            restarts_at_limit = Some(restarts);
        }
        // Two restarts past the limit: the WAL was started over and then filled and started
        // over again, all while the writers went on.
        if restarts_at_limit
            .flatten()
            .is_some_and(|at| restarts.is_some_and(|now| now >= at + 2))
        {
            started_over = true;
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while writers.join_next().await.is_some() {}
    assert!(
        restarts_at_limit.is_some(),
        "the writers never filled the WAL past its limit"
    );
    assert!(
        started_over,
        "the WAL was never started over while writes went on"
    );
    assert!(
        largest < 3 * LIMIT,
        "the WAL grew to {largest} bytes, far past its limit"
    );
}
