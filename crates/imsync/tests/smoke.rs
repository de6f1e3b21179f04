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
