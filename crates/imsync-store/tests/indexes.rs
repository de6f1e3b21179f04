//! The faces' reads on a growing table walk the index meant for them, so that their cost follows
//! what they return, not the table's size.

use imsync_store::repo::channel_reads;
use imsync_store::{args, Durability, Store, StoreOptions};

#[tokio::test]
async fn extras_sync_reads_the_partial_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions {
        sqlite_path: dir.path().join("imsync.db"),
        durability: Durability::Normal,
    })
    .unwrap();
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
