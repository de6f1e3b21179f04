//! Sessions end everywhere they are used: a realtime connection (WebSocket or SSE) lives no
//! longer than its token, whether the token is logged out (native or Rocket.Chat), refreshed,
//! or expires; and a refresh retires the old token, with a short grace for a retried refresh.

mod common;

use common::{ws, Api, Options, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

/// Generous: the hub checks sessions every two seconds, and CI machines are slow.
const ENDS_WITHIN: Duration = Duration::from_secs(15);

/// An SSE sync stream; answers a reader that resolves once the server ends it.
async fn open_sse(server: &TestServer, token: &str) -> reqwest::Response {
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/api/im/sync/stream?token={token}&since=0",
            server.base
        ))
        .send()
        .await
        .expect("sse");
    assert_eq!(resp.status(), StatusCode::OK);
    resp
}

async fn sse_ends(resp: &mut reqwest::Response) -> String {
    let deadline = tokio::time::Instant::now() + ENDS_WITHIN;
    let mut seen = String::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("the SSE stream outlived its session");
        match chunk {
            Ok(Some(bytes)) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(None) | Err(_) => return seen,
        }
    }
}

async fn pair(server: &TestServer) -> (Api, Api, String) {
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let group = alice.group("g", &["bob"]).await;
    (alice, bob, group)
}

#[tokio::test]
async fn native_logout_ends_open_sockets_and_streams() {
    let server = TestServer::start().await;
    let (alice, bob, group) = pair(&server).await;
    let token = bob.token.clone().unwrap();
    let mut ws = ws::open(server.addr, &token, ENDS_WITHIN).await;
    let mut sse = open_sse(&server, &token).await;
    let (s, b) = bob.post("/api/im/logout", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(ws::closed_with(&mut ws, ENDS_WITHIN).await, 4001);
    let tail = sse_ends(&mut sse).await;
    assert!(tail.contains("session ended"), "{tail}");
    alice.send(&group, "after logout").await;
    let (s, _) = bob.get("/api/im/sync?since=0").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rocketchat_logout_ends_the_native_socket_of_that_token() {
    let server = TestServer::start().await;
    let (_alice, bob, _) = pair(&server).await;
    let token = bob.token.clone().unwrap();
    let mut ws = ws::open(server.addr, &token, ENDS_WITHIN).await;
    let (s, b) = Api::new(&server.base, None)
        .request(
            Method::POST,
            "/api/v1/logout",
            None,
            &[("x-user-id", &bob.user_id), ("x-auth-token", &token)],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(ws::closed_with(&mut ws, ENDS_WITHIN).await, 4001);
}

#[tokio::test]
async fn sockets_end_when_their_token_expires() {
    let server = TestServer::start_with(Options {
        token_ttl: Some(Duration::from_secs(2)),
        ..Default::default()
    })
    .await;
    let (alice, bob, group) = pair(&server).await;
    let token = bob.token.clone().unwrap();
    let mut ws = ws::open(server.addr, &token, ENDS_WITHIN).await;
    let mut sse = open_sse(&server, &token).await;
    // Deliveries keep flowing until the expiry, and the socket still ends.
    alice.send(&group, "before expiry").await;
    assert_eq!(ws::closed_with(&mut ws, ENDS_WITHIN).await, 4001);
    sse_ends(&mut sse).await;
}

#[tokio::test]
async fn a_refresh_retires_the_old_token_with_a_grace_for_retries() {
    let server = TestServer::start().await;
    let (_alice, bob, _) = pair(&server).await;
    let old = bob.token.clone().unwrap();
    let mut ws = ws::open(server.addr, &old, ENDS_WITHIN).await;
    let (s, first) = bob.post("/api/im/token/refresh", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["data"]["expiresIn"], "7d");
    // A client that lost the answer retries with the old token, and gets a working one.
    let (s, retry) = bob.post("/api/im/token/refresh", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{retry}");
    for answer in [&first, &retry] {
        let mut fresh = bob.clone();
        fresh.token = Some(answer["data"]["token"].as_str().unwrap().to_owned());
        assert_eq!(fresh.get("/api/im/me").await.0, StatusCode::OK);
    }
    // The old one no longer authenticates, and its socket ends.
    assert_eq!(bob.get("/api/im/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(ws::closed_with(&mut ws, ENDS_WITHIN).await, 4001);
}

#[tokio::test]
async fn lifetimes_follow_the_setting_and_expired_tokens_refresh_only_within_it() {
    let server = TestServer::start_with(Options {
        token_ttl: Some(Duration::from_secs(3)),
        ..Default::default()
    })
    .await;
    let anon = server.client();
    let (s, pw) = anon
        .post(
            "/api/im/users/register",
            json!({"username": "dave", "password": "secret-pass"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, login) = anon
        .post(
            "/api/im/users/login",
            json!({"username": "dave", "password": "secret-pass"}),
        )
        .await;
    for v in [&pw, &login] {
        assert_eq!(v["data"]["expiresIn"], "3s", "{v}");
        assert!(v["data"]["expiresAt"].is_string(), "{v}");
    }
    // Expired a moment ago: within one lifetime after expiry, it can be swapped. The token is
    // made just before the wait, so that slow password hashing on a busy machine does not eat
    // into the window.
    let (s, reg) = anon
        .post(
            "/api/im/register",
            json!({"type": "human", "username": "carol"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(reg["data"]["expiresIn"], "3s", "{reg}");
    let mut carol = Api::new(
        &server.base,
        Some(reg["data"]["token"].as_str().unwrap().into()),
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(carol.get("/api/im/me").await.0, StatusCode::UNAUTHORIZED);
    let (s, b) = carol.post("/api/im/token/refresh", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    carol.token = Some(b["data"]["token"].as_str().unwrap().into());
    // Well past expiry plus one lifetime: refused.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let (s, b) = carol.post("/api/im/token/refresh", json!({})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
}
