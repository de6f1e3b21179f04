mod common;

use common::TestServer;
use reqwest::StatusCode;

#[tokio::test]
async fn health_and_a_first_message() {
    let srv = TestServer::start().await;
    let (s, b) = srv.client().get("/healthz").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let alice = srv.user("alice").await;
    let _bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    alice.send(&g, "hi").await;
    let (events, cursor) = alice.sync_all(0, 1).await;
    assert_eq!(events.len(), 2);
    assert_eq!(cursor, events[1]["seq"].as_i64().unwrap());
}

/// Joining a big conversation does not list all of its members in the joiner's snapshot; a small
/// one's snapshot lists them all, as objects.
#[tokio::test]
async fn snapshots_list_members_only_for_small_conversations() {
    let srv = TestServer::start().await;
    let owner = srv.user("owner").await;
    let mut names = Vec::new();
    for i in 0..256 {
        let name = format!("member{i}");
        srv.user(&name).await;
        names.push(name);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let big = owner.group("big", &refs).await;
    let small = owner.group("small", &[]).await;
    let late = srv.user("late").await;
    for g in [&big, &small] {
        let (s, b) = owner
            .post(
                &format!("/api/im/conversations/{g}/participants"),
                serde_json::json!({"userId": late.user_id}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let (events, _) = late.sync_all(0, 100).await;
    let snapshot = |g: &str| {
        events
            .iter()
            .find(|e| e["type"] == "conversation.create" && e["conversationId"] == g)
            .cloned()
            .expect("a snapshot")
    };
    assert!(snapshot(&big)["data"].get("members").is_none());
    let members = snapshot(&small)["data"]["members"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m["userId"].is_string()));
}
