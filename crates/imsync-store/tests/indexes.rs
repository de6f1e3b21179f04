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

/// The conversations that moved after a seq are found through `moved_bucket`, whatever bucket
/// the seq and each conversation's last event fall in, and no other.
#[tokio::test]
async fn conversations_that_moved_are_found_through_their_bucket() {
    use imsync_store::repo::conversations;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // Conversation i last moved at seq 900 + 37 i: across buckets 0 to 3.
    let last: Vec<(String, i64)> = (0..80).map(|i| (format!("c{i}"), 900 + 37 * i)).collect();
    let rows = last.clone();
    store
        .write(move |c| {
            for (id, seq) in &rows {
                c.execute(
                    "INSERT INTO conversations (id, kind, created_by, created_at, updated_at) \
                     VALUES ($1, 'group', 'u', 0, 0)",
                    args![id.as_str()],
                )?;
                conversations::touch_event(c, id, seq - 500)?;
                conversations::touch_event(c, id, *seq)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    for since in [
        0, 899, 900, 1023, 1024, 1025, 2047, 2048, 3000, 3823, 3824, 9000,
    ] {
        let mut found = store
            .read(move |c| conversations::changed_since(c, since, 1000))
            .await
            .unwrap();
        found.sort();
        let mut expected: Vec<String> = last
            .iter()
            .filter(|(_, seq)| *seq > since)
            .map(|(id, _)| id.clone())
            .collect();
        expected.sort();
        assert_eq!(found, expected, "since {since}");
    }
    let steps = plan(
        &store,
        "SELECT id FROM conversations WHERE moved_bucket >= $3 AND last_event_seq > $2 LIMIT $3"
            .to_owned(),
    )
    .await;
    assert!(
        steps.iter().any(|s| s.contains("conversations_moved")),
        "{steps:?}"
    );
}
