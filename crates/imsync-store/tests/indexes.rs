//! The faces' reads on a growing table walk the index meant for them, so that their cost follows
//! what they return, not the table's size.

use imsync_store::repo::rocketchat::message_changes::{changed_sql, unchanged_sql, Set};
use imsync_store::repo::tsdd::channel_reads;
use imsync_store::{args, Durability, Store, StoreOptions};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&StoreOptions {
        sqlite_path: dir.path().join("imsync.db"),
        durability: Durability::Normal,
    })
    .unwrap()
}

/// The steps of SQLite's plan for `sql` with three parameters.
async fn plan(store: &Store, sql: String) -> Vec<String> {
    store
        .read(move |c| {
            let rows = c.query(
                &format!("EXPLAIN QUERY PLAN {sql}"),
                args!["c", 0i64, 10i64],
            )?;
            Ok(rows.iter().map(|r| r.string(3)).collect::<Vec<_>>())
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn the_change_feed_reads_changed_messages_by_time_and_the_others_by_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for descending in [false, true] {
        for (sql, index) in [
            (changed_sql(Set::Live, descending), "messages_changed"),
            (changed_sql(Set::Trash, descending), "messages_trash"),
            (unchanged_sql(descending), "(conv_id=? AND msg_seq"),
        ] {
            let steps = plan(&store, sql.clone()).await;
            assert!(
                steps.iter().any(|step| step.contains(index)),
                "{sql} does not read through {index}: {steps:?}"
            );
            assert!(
                !steps.iter().any(|step| step.contains("TEMP B-TREE")),
                "{sql} sorts its rows: {steps:?}"
            );
        }
    }
}

#[tokio::test]
async fn extras_sync_reads_the_partial_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for descending in [false, true] {
        let plan = store
            .read(move |c| {
                let sql = format!(
                    "EXPLAIN QUERY PLAN {}",
                    channel_reads::changed_extras_sql(descending)
                );
                let rows = c.query(&sql, args!["c", 0i64, 10i64, 50i64])?;
                Ok(rows.iter().map(|r| r.string(3)).collect::<Vec<_>>())
            })
            .await
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("messages_extras_version")),
            "the extras sync does not use its index: {plan:?}"
        );
    }
}
