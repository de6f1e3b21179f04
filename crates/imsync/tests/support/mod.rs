//! Helpers shared by the sync-invariant, durability and model tests (kept apart from
//! `common/mod.rs`, which belongs to the harness).
#![allow(dead_code)]

use crate::common::Api;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// One sync page: events, cursor, hasMore. Panics on a non-200 answer.
pub async fn sync_page(api: &Api, since: i64, limit: usize) -> (Vec<Value>, i64, bool) {
    let (s, b) = api
        .get(&format!("/api/im/sync?since={since}&limit={limit}"))
        .await;
    assert_eq!(s, StatusCode::OK, "sync since={since} limit={limit}: {b}");
    assert_eq!(b["ok"], json!(true), "sync envelope: {b}");
    let d = &b["data"];
    let events = d["events"].as_array().expect("events array").clone();
    let cursor = d["cursor"].as_i64().expect("integer cursor");
    let more = d["hasMore"].as_bool().expect("boolean hasMore");
    (events, cursor, more)
}

/// Checks what every page must satisfy: events strictly ascending, all above `since`, the cursor
/// never below `since`, equal to the last seq when events came, strictly above `since` with
/// hasMore, and equal to `since` when nothing came.
pub fn check_page(since: i64, limit: usize, events: &[Value], cursor: i64, more: bool) {
    assert!(cursor >= since, "cursor {cursor} went below since {since}");
    assert!(
        events.len() <= limit,
        "{} events for limit {limit}",
        events.len()
    );
    let mut prev = since;
    for e in events {
        let s = seq(e);
        assert!(
            s > prev,
            "seq {s} after {prev} (since {since}) is not ascending"
        );
        prev = s;
    }
    match events.last() {
        Some(last) => assert_eq!(cursor, seq(last), "cursor is not the last seq"),
        None => assert_eq!(cursor, since, "an empty page moved the cursor"),
    }
    if more {
        assert!(
            cursor > since,
            "hasMore with cursor {cursor} not above since {since}"
        );
        assert_eq!(events.len(), limit, "hasMore on a short page");
    }
}

pub fn seq(e: &Value) -> i64 {
    e["seq"].as_i64().expect("event seq")
}

pub fn kind(e: &Value) -> &str {
    e["type"].as_str().expect("event type")
}

pub fn conv_of(e: &Value) -> Option<&str> {
    e["conversationId"].as_str()
}

/// Follows the cursor from `since` until hasMore is false, checking every page; limits cycle
/// through `limits`.
pub async fn drain(api: &Api, since: i64, limits: &[usize]) -> (Vec<Value>, i64) {
    let mut cursor = since;
    let mut out = Vec::new();
    for i in 0..1_000_000usize {
        let limit = limits[i % limits.len()];
        let (events, next, more) = sync_page(api, cursor, limit).await;
        check_page(cursor, limit, &events, next, more);
        out.extend(events);
        cursor = next;
        if !more {
            return (out, cursor);
        }
    }
    panic!("sync never finished");
}

/// Sends with an idempotency key in the `X-Idempotency-Key` header.
pub async fn send_keyed(api: &Api, conv: &str, content: &str, key: &str) -> (StatusCode, Value) {
    api.request(
        Method::POST,
        &format!("/api/im/messages/{conv}"),
        Some(json!({ "content": content })),
        &[("X-Idempotency-Key", key)],
    )
    .await
}

/// Registers a token account on any server base URL (for child processes).
pub async fn register(base: &str, username: &str) -> Api {
    let anon = Api::new(base, None);
    let (status, body) = anon
        .post(
            "/api/im/register",
            json!({"type": "human", "username": username, "displayName": username}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "register {username}: {body}");
    let mut api = Api::new(
        base,
        Some(body["data"]["token"].as_str().unwrap().to_owned()),
    );
    api.user_id = body["data"]["imUserId"].as_str().unwrap().to_owned();
    api.username = username.to_owned();
    api
}

/// Every live message of a conversation as the caller's history shows it, oldest first.
pub async fn history_all(api: &Api, conv: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(b) => format!("/api/im/messages/{conv}?limit=200&before={b}"),
            None => format!("/api/im/messages/{conv}?limit=200"),
        };
        let (s, b) = api.get(&path).await;
        assert_eq!(s, StatusCode::OK, "history of {conv}: {b}");
        let page = b["data"].as_array().expect("history array").clone();
        let n = page.len();
        if let Some(first) = page.first() {
            before = Some(first["id"].as_str().unwrap().to_owned());
        }
        let mut merged = page;
        merged.append(&mut out);
        out = merged;
        if n < 200 {
            return out;
        }
    }
}

/// The error code of an error envelope.
pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}
