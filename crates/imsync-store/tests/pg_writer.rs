//! The PostgreSQL writer, which sends a batch's last writes in one round trip with its COMMIT.
//! A write that had to change a row and changed none must then fail on the server, so that the
//! COMMIT travelling after it commits nothing. Ignored (and reported so) unless run with
//! `--include-ignored` and `IMSYNC_TEST_DATABASE_URL`, as `.ci/run` does.

use imsync_core::ErrorCode;
use imsync_store::{PgOptions, SqlConn, Store, Value};
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

async fn counters(store: &Store) -> Vec<String> {
    store
        .read(|c| {
            let rows = c.query("SELECT name FROM counters ORDER BY name", &[])?;
            Ok(rows.iter().map(|r| r.str(0).to_owned()).collect())
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
