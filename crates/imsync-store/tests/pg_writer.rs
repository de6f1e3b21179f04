//! The PostgreSQL writer, which sends a batch's last writes in one round trip with its COMMIT.
//! A write that had to change a row and changed none must then fail on the server, so that the
//! COMMIT travelling after it commits nothing. Ignored (and reported so) unless run with
//! `--include-ignored` and `IMSYNC_TEST_DATABASE_URL`, as `.ci/run` does.

use imsync_core::ErrorCode;
use imsync_store::{FirstRead, PgOptions, SqlConn, Store, Value};
use std::time::Duration;

async fn open(schema: &str) -> Store {
    let url = std::env::var("IMSYNC_TEST_DATABASE_URL")
        .expect("this test needs IMSYNC_TEST_DATABASE_URL=postgres://... (see .ci/run)");
    Store::open_postgres(&PgOptions {
        url,
        schema: Some(schema.to_owned()),
        pool_size: 2,
        statement_timeout: Duration::from_secs(10),
    })
    .await
    .expect("opening the store")
}

fn unique_schema(name: &str) -> String {
    format!("{name}_{}_{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000
}

/// Inserts counter `name`, then (if `refuse`) a write that must change a row and cannot.
fn insert_then(c: &mut dyn SqlConn, name: &str, refuse: bool) -> imsync_core::Result<()> {
    c.execute_later(
        "INSERT INTO counters (name, value) VALUES ($1, 1)",
        &[Value::from(name)],
        None,
    )?;
    if refuse {
        c.execute_later(
            "UPDATE counters SET value = value + 1 WHERE name = $1",
            &[Value::from("no such counter")],
            Some("the counter is missing"),
        )?;
    }
    Ok(())
}

/// Reads counter `name` (absent), inserts it, and moves it from 1 to 2, a write that must change
/// a row (or, if `refuse`, moves a counter that is not there); then from 2 to 12 by a write that
/// may change nothing.
fn read_insert_move(c: &mut dyn SqlConn, name: &str, refuse: bool) -> imsync_core::Result<()> {
    if c.query_opt(READ, &[Value::from(name)])?.is_some() {
        return Err(imsync_core::Error::conflict("the counter exists already"));
    }
    c.execute_later(
        "INSERT INTO counters (name, value) VALUES ($1, 1)",
        &[Value::from(name)],
        None,
    )?;
    let target = if refuse { "no such counter" } else { name };
    c.execute_later(
        "UPDATE counters SET value = $2 WHERE name = $1 AND value = $2 - 1",
        &[Value::from(target), Value::Int(2)],
        Some("the counter is missing"),
    )?;
    c.execute_later(
        "UPDATE counters SET value = value + $2 WHERE name = $1 AND value < $2",
        &[Value::from(name), Value::Int(10)],
        None,
    )
}

const READ: &str = "SELECT value FROM counters WHERE name = $1";

async fn counters(store: &Store) -> Vec<String> {
    store
        .read(|c| {
            let rows = c.query("SELECT name FROM counters ORDER BY name", &[])?;
            Ok(rows.iter().map(|r| r.str(0).to_owned()).collect())
        })
        .await
        .unwrap()
}

async fn value(store: &Store, name: &str) -> i64 {
    let name = name.to_owned();
    store
        .read(move |c| {
            Ok(c.query_opt(READ, &[Value::from(name.as_str())])?
                .unwrap()
                .i64(0))
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
async fn a_write_that_had_to_change_a_row_and_did_not_leaves_nothing_behind() {
    let store = open(&unique_schema("must_change")).await;

    // Alone: its writes go with the COMMIT.
    let e = store
        .write(|c| insert_then(c, "lone", true))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "{e}");
    assert!(e.message.contains("the counter is missing"), "{e}");

    // In batches of repeatable writes, whose last writes also go with the COMMIT: the one that
    // fails leaves nothing, the others stand.
    let mut writes = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        writes.push(tokio::spawn(async move {
            let name = format!("batched{i:02}");
            let refuse = i % 5 == 0;
            let r = store
                .write_repeatable(move |c| insert_then(c, &name, refuse))
                .await;
            (i, refuse, r)
        }));
    }
    let mut kept = Vec::new();
    for w in writes {
        let (i, refuse, r) = w.await.unwrap();
        match r {
            Ok(()) => {
                assert!(!refuse, "write {i} should have been refused");
                kept.push(format!("batched{i:02}"));
            }
            Err(e) => {
                assert!(refuse, "write {i} failed: {e}");
                assert_eq!(e.code, ErrorCode::Conflict, "{e}");
            }
        }
    }
    kept.push("event_seq".to_owned());
    kept.sort();
    assert_eq!(counters(&store).await, kept);
}

/// Writes that name their first reads run in waves, their repeated writes merged into one
/// statement each: every row of a merged write is written, and a checked write that changes
/// fewer rows than it was given fails the merged statement, and the batch, run again one write
/// at a time, keeps all but the refused ones.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
async fn merged_writes_that_must_change_rows_keep_every_write_but_the_refused() {
    let store = open(&unique_schema("merged")).await;
    for round in 0..2 {
        let mut writes = Vec::new();
        for i in 0..64 {
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                let name = format!("r{round}w{i:02}");
                // The first round refuses none: its batches go through merged.
                let refuse = round == 1 && i % 9 == 0;
                let reads = vec![FirstRead {
                    scope: name.clone(),
                    sql: READ,
                    params: vec![Value::from(name.as_str())],
                }];
                let n = name.clone();
                let r = store
                    .write_repeatable_reading(reads, move |c| read_insert_move(c, &n, refuse))
                    .await;
                (name, refuse, r)
            }));
        }
        for w in writes {
            let (name, refuse, r) = w.await.unwrap();
            match r {
                Ok(()) => {
                    assert!(!refuse, "{name} should have been refused");
                    assert_eq!(value(&store, &name).await, 12, "{name}");
                }
                Err(e) => {
                    assert!(refuse, "{name} failed: {e}");
                    assert_eq!(e.code, ErrorCode::Conflict, "{e}");
                }
            }
        }
    }
    let names = counters(&store).await;
    assert_eq!(names.len(), 1 + 64 + 64 - 8, "{names:?}");
}

/// A job that PostgreSQL refuses leaves the batch's transaction aborted until its savepoint is
/// rolled back; the job after it, whose first statement is new to the connection and so is
/// prepared before anything else is sent, must find the transaction usable again.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
async fn a_job_after_a_refused_one_prepares_its_statements_in_a_usable_transaction() {
    let store = open(&unique_schema("after_refused")).await;
    for round in 0..3 {
        let mut writes = Vec::new();
        for i in 0..48 {
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                let refuse = i % 3 == 0;
                let name = format!("r{round}w{i:02}");
                let r = store
                    .write(move |c| {
                        if refuse {
                            // Text PostgreSQL cannot hold: the statement fails on the server.
                            c.query(READ, &[Value::from("nul\0here")])?;
                            unreachable!("PostgreSQL accepted a NUL character");
                        }
                        // A statement text of its own: prepared when the job first runs it.
                        let sql = format!("INSERT INTO counters (name, value) VALUES ($1, {i})");
                        c.execute(&sql, &[Value::from(name.as_str())])?;
                        Ok(())
                    })
                    .await;
                (i, refuse, r)
            }));
        }
        for w in writes {
            let (i, refuse, r) = w.await.unwrap();
            match r {
                Ok(()) => assert!(!refuse, "write {i} should have been refused"),
                Err(e) if refuse => assert_eq!(e.code, ErrorCode::InvalidRequest, "{e}"),
                Err(e) => panic!("round {round}, write {i} failed: {e}"),
            }
        }
    }
    assert_eq!(counters(&store).await.len(), 1 + 3 * 32);
}
