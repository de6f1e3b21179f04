mod common;
mod support;

use common::{free_port, ChildServer};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashSet;
use support::{drain, history_all, kind, register, send_keyed};

/// Every write acknowledged with a 2xx survives SIGKILL of the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    const N: usize = 80;
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::spawn(dir.path(), free_port()).await;
    let alice = register(&server.base, "alice").await;
    let bob = register(&server.base, "bob").await;
    let g = alice.group("team", &["bob"]).await;

    // Sequential sends, every third with an idempotency key, then a concurrent burst; the
    // server is killed right after the last 201 arrives.
    let mut acked: Vec<(String, Option<(String, String)>)> = Vec::new();
    for i in 0..N {
        let content = format!("m{i}");
        let (s, b) = if i % 3 == 0 {
            send_keyed(&alice, &g, &content, &format!("k{i}")).await
        } else {
            bob.post(
                &format!("/api/im/messages/{g}"),
                json!({ "content": content }),
            )
            .await
        };
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let id = b["data"]["message"]["id"].as_str().unwrap().to_owned();
        acked.push((id, (i % 3 == 0).then(|| (format!("k{i}"), content))));
    }
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (alice, g) = (alice.clone(), g.clone());
        tasks.push(tokio::spawn(async move {
            let (content, key) = (format!("burst{i}"), format!("burst-key{i}"));
            let (s, b) = send_keyed(&alice, &g, &content, &key).await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
            let id = b["data"]["message"]["id"].as_str().unwrap().to_owned();
            (id, Some((key, content)))
        }));
    }
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    server.kill9();

    let server = ChildServer::spawn(dir.path(), free_port()).await;
    let (mut alice, mut bob) = (alice, bob);
    alice.base = server.base.clone();
    bob.base = server.base.clone();

    let hist: HashSet<String> = history_all(&bob, &g)
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    let (events, _) = drain(&bob, 0, &[7, 100]).await;
    let synced: Vec<String> = events
        .iter()
        .filter(|e| kind(e) == "message.new")
        .map(|e| e["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    let synced_set: HashSet<&String> = synced.iter().collect();
    assert_eq!(synced.len(), synced_set.len(), "a message.new came twice");
    for (id, _) in &acked {
        assert!(hist.contains(id), "acknowledged {id} is not in history");
        assert!(synced_set.contains(id), "acknowledged {id} is not in sync");
    }
    assert_eq!(hist.len(), acked.len());
    assert_eq!(synced.len(), acked.len());

    // The idempotency records survived too: retries return the original ids, with no new event.
    let (_, cursor) = drain(&alice, 0, &[500]).await;
    for (id, keyed) in &acked {
        if let Some((key, content)) = keyed {
            let (s, b) = send_keyed(&alice, &g, content, key).await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
            assert_eq!(b["data"]["message"]["id"], json!(id), "retry of {key}");
        }
    }
    let (after, _) = drain(&alice, cursor, &[500]).await;
    assert!(
        after.is_empty(),
        "retries after restart made events: {after:?}"
    );
    drop(server);
}
