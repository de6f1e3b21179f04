//! The native API (`/api/im/*`, docs/native.md) over real HTTP: every endpoint, its success path
//! and its failure paths (bad input, unknown ids, missing auth, non-participants, limits).
mod common;

use common::{Api, Options, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;

// ---------------------------------------------------------------------------------------------
// Helpers local to this file.
// ---------------------------------------------------------------------------------------------

/// Asserts the native error envelope `{ok:false, error:{code, message}}` with a status and code.
#[track_caller]
fn expect_err(label: &str, got: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (s, b) = got;
    assert_eq!(*s, status, "{label}: wrong status, body {b}");
    assert_eq!(b["ok"], json!(false), "{label}: ok must be false: {b}");
    assert_eq!(b["error"]["code"], json!(code), "{label}: wrong code: {b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{label}: error.message must be a non-empty string: {b}"
    );
}

/// Asserts a success envelope with the given status and answers `data`.
#[track_caller]
fn expect_ok(label: &str, got: (StatusCode, Value), status: StatusCode) -> Value {
    let (s, b) = got;
    assert_eq!(s, status, "{label}: wrong status, body {b}");
    assert_eq!(b["ok"], json!(true), "{label}: ok must be true: {b}");
    b["data"].clone()
}

fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_owned()
}

/// The ids of the messages in a history response's `data`.
fn ids(data: &Value) -> Vec<String> {
    data.as_array()
        .unwrap_or_else(|| panic!("history data must be a list: {data}"))
        .iter()
        .map(|m| str_of(&m["id"]))
        .collect()
}

fn count_events(events: &[Value], kind: &str, id: &str) -> usize {
    events
        .iter()
        .filter(|e| e["type"] == kind && e["data"]["id"] == id)
        .count()
}

/// An authenticated client with an arbitrary token.
fn with_token(srv: &TestServer, token: &str) -> Api {
    Api::new(&srv.base, Some(token.to_owned()))
}

async fn send_with(
    api: &Api,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    api.request(Method::POST, path, Some(body), headers).await
}

/// The direct conversation between two users, created if needed.
async fn direct(a: &Api, b: &Api) -> String {
    let (s, body) = a
        .post(
            "/api/im/conversations/direct",
            json!({"otherUserId": b.user_id}),
        )
        .await;
    assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{body}");
    str_of(&body["data"]["id"])
}

async fn history(api: &Api, conv: &str, query: &str) -> Vec<String> {
    let data = expect_ok(
        "history",
        api.get(&format!("/api/im/messages/{conv}{query}")).await,
        StatusCode::OK,
    );
    ids(&data)
}

fn find_conv<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list.as_array().unwrap().iter().find(|c| c["id"] == id)
}

// ---------------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn register_new_account_is_201_with_a_working_token() {
    let srv = TestServer::start().await;
    let anon = srv.client();
    let d = expect_ok(
        "register",
        anon.post(
            "/api/im/register",
            json!({"type": "agent", "username": "bot-1", "displayName": "Bot One",
                   "agentType": "assistant", "capabilities": ["chat"], "description": "d"}),
        )
        .await,
        StatusCode::CREATED,
    );
    assert_eq!(d["username"], "bot-1");
    assert_eq!(d["displayName"], "Bot One");
    assert_eq!(d["role"], "agent");
    assert_eq!(d["isNew"], true);
    assert_eq!(d["expiresIn"], "7d");
    assert_eq!(d["capabilities"], json!(["chat"]));
    let token = str_of(&d["token"]);
    let me = expect_ok(
        "me",
        with_token(&srv, &token).get("/api/im/me").await,
        StatusCode::OK,
    );
    assert_eq!(me["user"]["id"], d["imUserId"]);
    assert_eq!(me["user"]["role"], "agent");
    assert_eq!(me["user"]["agentType"], "assistant");
}

#[tokio::test]
async fn register_existing_username_is_409_unless_the_caller_owns_it() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let body = json!({"type": "human", "username": "alice", "displayName": "Alice"});

    expect_err(
        "anonymous",
        &srv.client().post("/api/im/register", body.clone()).await,
        StatusCode::CONFLICT,
        "USERNAME_TAKEN",
    );
    expect_err(
        "another user's token",
        &bob.post("/api/im/register", body.clone()).await,
        StatusCode::CONFLICT,
        "USERNAME_TAKEN",
    );
    expect_err(
        "an invalid token",
        &with_token(&srv, "not-a-token")
            .post("/api/im/register", body.clone())
            .await,
        StatusCode::CONFLICT,
        "USERNAME_TAKEN",
    );
    // Uniqueness ignores case.
    expect_err(
        "other case",
        &srv.client()
            .post(
                "/api/im/register",
                json!({"type": "human", "username": "ALICE"}),
            )
            .await,
        StatusCode::CONFLICT,
        "USERNAME_TAKEN",
    );

    // The owner gets 200 and a fresh token that works.
    let d = expect_ok(
        "own token",
        alice.post("/api/im/register", body).await,
        StatusCode::OK,
    );
    assert_eq!(d["isNew"], false);
    assert_eq!(d["imUserId"], json!(alice.user_id));
    let fresh = str_of(&d["token"]);
    assert_ne!(Some(&fresh), alice.token.as_ref());
    let me = expect_ok(
        "me with fresh token",
        with_token(&srv, &fresh).get("/api/im/me").await,
        StatusCode::OK,
    );
    assert_eq!(me["user"]["id"], json!(alice.user_id));
}

#[tokio::test]
async fn register_rejects_invalid_input() {
    let srv = TestServer::start().await;
    let anon = srv.client();
    for name in ["ab", "has space", "ünï", "bad/name", &"a".repeat(33), ""] {
        expect_err(
            &format!("username {name:?}"),
            &anon
                .post(
                    "/api/im/register",
                    json!({"type": "human", "username": name}),
                )
                .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    expect_err(
        "bad type",
        &anon
            .post(
                "/api/im/register",
                json!({"type": "robot", "username": "robot"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "missing username",
        &anon
            .post("/api/im/register", json!({"type": "human"}))
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "username not a string",
        &anon
            .post("/api/im/register", json!({"type": "human", "username": 42}))
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "blank display name",
        &anon
            .post(
                "/api/im/register",
                json!({"type": "human", "username": "okname", "displayName": "   "}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "malformed JSON",
        &anon
            .raw(Method::POST, "/api/im/register", "{\"username\":")
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    // Nothing above created an account.
    expect_ok(
        "still free",
        anon.post(
            "/api/im/register",
            json!({"type": "human", "username": "okname"}),
        )
        .await,
        StatusCode::CREATED,
    );
}

#[tokio::test]
async fn registration_closed_is_403() {
    let srv = TestServer::start_with(Options {
        registration_open: Some(false),
        ..Default::default()
    })
    .await;
    expect_err(
        "token register",
        &srv.client()
            .post(
                "/api/im/register",
                json!({"type": "human", "username": "alice"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "REGISTRATION_CLOSED",
    );
    expect_err(
        "password register",
        &srv.client()
            .post(
                "/api/im/users/register",
                json!({"username": "alice", "password": "correct horse"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "REGISTRATION_CLOSED",
    );
}

#[tokio::test]
async fn password_accounts_register_and_log_in() {
    let srv = TestServer::start().await;
    let anon = srv.client();
    let d = expect_ok(
        "users/register",
        anon.post(
            "/api/im/users/register",
            json!({"username": "Carol", "displayName": "Carol C", "password": "s3cret-pass", "role": "human"}),
        )
        .await,
        StatusCode::CREATED,
    );
    assert_eq!(d["user"]["username"], "Carol");
    assert_eq!(d["user"]["displayName"], "Carol C");
    let uid = d["user"]["id"].clone();
    assert!(d["token"].is_string());

    // Login is case-insensitive on the name and keeps the registered case.
    let d = expect_ok(
        "login",
        anon.post(
            "/api/im/users/login",
            json!({"username": "carol", "password": "s3cret-pass"}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(d["user"]["id"], uid);
    assert_eq!(d["user"]["username"], "Carol");
    let me = expect_ok(
        "me after login",
        with_token(&srv, d["token"].as_str().unwrap())
            .get("/api/im/me")
            .await,
        StatusCode::OK,
    );
    assert_eq!(me["user"]["id"], uid);

    expect_err(
        "wrong password",
        &anon
            .post(
                "/api/im/users/login",
                json!({"username": "Carol", "password": "wrong-pass"}),
            )
            .await,
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    );
    expect_err(
        "unknown user",
        &anon
            .post(
                "/api/im/users/login",
                json!({"username": "nobody", "password": "whatever1"}),
            )
            .await,
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    );
    // A token-only account has no password to log in with.
    srv.user("tokenonly").await;
    expect_err(
        "token-only account",
        &anon
            .post(
                "/api/im/users/login",
                json!({"username": "tokenonly", "password": "whatever1"}),
            )
            .await,
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    );
    expect_err(
        "login without password",
        &anon
            .post("/api/im/users/login", json!({"username": "Carol"}))
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "short password",
        &anon
            .post(
                "/api/im/users/register",
                json!({"username": "dave", "password": "short"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "taken name",
        &anon
            .post(
                "/api/im/users/register",
                json!({"username": "CAROL", "password": "another-pass"}),
            )
            .await,
        StatusCode::CONFLICT,
        "USERNAME_TAKEN",
    );
    expect_err(
        "bad username",
        &anon
            .post(
                "/api/im/users/register",
                json!({"username": "x", "password": "long-enough"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "bad role",
        &anon
            .post(
                "/api/im/users/register",
                json!({"username": "erin", "password": "long-enough", "role": "god"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "malformed login",
        &anon
            .raw(Method::POST, "/api/im/users/login", "not json")
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    // The short password did not create "dave".
    expect_ok(
        "dave still free",
        anon.post(
            "/api/im/users/register",
            json!({"username": "dave", "password": "long-enough"}),
        )
        .await,
        StatusCode::CREATED,
    );
}

#[tokio::test]
async fn me_get_and_patch() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let _carol = srv.user("carol").await;
    let g = alice.group("team", &["bob", "carol"]).await;
    bob.send(&g, "one").await;
    bob.send(&g, "two").await;
    alice.send(&g, "mine").await;
    let d = direct(&alice, &bob).await;
    bob.send(&d, "psst").await;

    let me = expect_ok("me", alice.get("/api/im/me").await, StatusCode::OK);
    assert_eq!(me["user"]["id"], json!(alice.user_id));
    assert_eq!(me["user"]["username"], "alice");
    let stats = &me["stats"];
    assert_eq!(stats["conversationCount"], 2, "{me}");
    assert_eq!(stats["groupCount"], 1, "{me}");
    assert_eq!(stats["directCount"], 1, "{me}");
    assert_eq!(stats["contactCount"], 1, "{me}");
    assert_eq!(stats["messagesSent"], 1, "{me}");
    // Alice's own send marked the group read up to her message; the direct one is unread.
    assert_eq!(stats["unreadCount"], 1, "{me}");
    assert!(me["bindings"].is_array());

    let u = expect_ok(
        "patch",
        alice
            .patch(
                "/api/im/me",
                json!({"displayName": "Alice A", "bio": "hi", "avatarUrl": "http://x/a.png",
                       "metadata": {"k": 1}}),
            )
            .await,
        StatusCode::OK,
    );
    assert_eq!(u["displayName"], "Alice A");
    assert_eq!(u["bio"], "hi");
    assert_eq!(u["avatarUrl"], "http://x/a.png");
    assert_eq!(u["metadata"], json!({"k": 1}));
    let me = expect_ok("me again", alice.get("/api/im/me").await, StatusCode::OK);
    assert_eq!(me["user"]["displayName"], "Alice A");
    // Others see the new profile too.
    let seen = expect_ok(
        "profile",
        bob.get(&format!("/api/im/users/{}", alice.user_id)).await,
        StatusCode::OK,
    );
    assert_eq!(seen["displayName"], "Alice A");

    // An empty patch changes nothing.
    let u = expect_ok(
        "empty patch",
        alice.patch("/api/im/me", json!({})).await,
        StatusCode::OK,
    );
    assert_eq!(u["displayName"], "Alice A");

    for (label, body) in [
        ("blank displayName", json!({"displayName": "  "})),
        ("long displayName", json!({"displayName": "x".repeat(101)})),
        ("metadata not an object", json!({"metadata": [1, 2]})),
        ("displayName not a string", json!({"displayName": 5})),
        ("body not an object", json!("hello")),
    ] {
        expect_err(
            label,
            &alice.patch("/api/im/me", body).await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    expect_err(
        "malformed",
        &alice.raw(Method::PATCH, "/api/im/me", "{").await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
}

#[tokio::test]
async fn delete_me_ends_every_session_and_reserves_the_name() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    // A second session of alice's.
    let second = expect_ok(
        "second token",
        alice
            .post(
                "/api/im/register",
                json!({"type": "human", "username": "alice"}),
            )
            .await,
        StatusCode::OK,
    );
    let second = with_token(&srv, second["token"].as_str().unwrap());

    let d = expect_ok("delete", alice.delete("/api/im/me").await, StatusCode::OK);
    assert_eq!(d["deleted"], true);
    assert_eq!(d["userId"], json!(alice.user_id));

    for api in [&alice, &second] {
        expect_err(
            "token after delete",
            &api.get("/api/im/me").await,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        );
    }
    expect_err(
        "refresh after delete",
        &alice.post_empty("/api/im/token/refresh").await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    expect_err(
        "lookup by id",
        &bob.get(&format!("/api/im/users/{}", alice.user_id)).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "lookup by name",
        &bob.get("/api/im/users/by-username/alice").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "name reuse",
        &srv.client()
            .post(
                "/api/im/register",
                json!({"type": "human", "username": "alice"}),
            )
            .await,
        StatusCode::CONFLICT,
        "USERNAME_TAKEN",
    );
}

#[tokio::test]
async fn token_refresh_issues_a_working_token() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let d = expect_ok(
        "refresh",
        alice.post_empty("/api/im/token/refresh").await,
        StatusCode::OK,
    );
    assert_eq!(d["expiresIn"], "7d");
    let token = str_of(&d["token"]);
    assert_ne!(Some(&token), alice.token.as_ref());
    let me = expect_ok(
        "me with refreshed token",
        with_token(&srv, &token).get("/api/im/me").await,
        StatusCode::OK,
    );
    assert_eq!(me["user"]["id"], json!(alice.user_id));
    // The SDK may send a body; it is ignored.
    expect_ok(
        "refresh with body",
        alice
            .post("/api/im/token/refresh", json!({"userId": alice.user_id}))
            .await,
        StatusCode::OK,
    );
    expect_err(
        "no token",
        &srv.client().post_empty("/api/im/token/refresh").await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    expect_err(
        "bad token",
        &with_token(&srv, "bogus")
            .post_empty("/api/im/token/refresh")
            .await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
}

#[tokio::test]
async fn health_endpoints_need_no_token() {
    let srv = TestServer::start().await;
    let d = expect_ok(
        "health",
        srv.client().get("/api/im/health").await,
        StatusCode::OK,
    );
    assert_eq!(d["status"], "ok");
    assert_eq!(d["service"], "imsync");
    let (s, b) = srv.client().get("/healthz").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["status"], "ok");
}

// ---------------------------------------------------------------------------------------------
// Direct messages
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn direct_send_creates_the_conversation_by_id_and_by_username() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;

    // Before any message: an empty history, not an error.
    let (s, b) = alice
        .get(&format!("/api/im/direct/{}/messages", bob.user_id))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"], json!([]));
    assert_eq!(b["meta"]["total"], 0);

    let d1 = expect_ok(
        "send by id",
        alice
            .post(
                &format!("/api/im/direct/{}/messages", bob.user_id),
                json!({"content": "hi bob", "type": "text"}),
            )
            .await,
        StatusCode::CREATED,
    );
    let conv = str_of(&d1["conversationId"]);
    let m = &d1["message"];
    assert_eq!(m["conversationId"], json!(conv));
    assert_eq!(m["senderId"], json!(alice.user_id));
    assert_eq!(m["content"], "hi bob");
    assert_eq!(m["type"], "text");
    assert_eq!(m["status"], "sent");
    assert!(m["metadata"].is_object());
    assert!(m["createdAt"].is_string());

    // By username: same conversation. Bob answering by alice's name lands there too.
    let d2 = expect_ok(
        "send by name",
        alice
            .post("/api/im/direct/bob/messages", json!({"content": "again"}))
            .await,
        StatusCode::CREATED,
    );
    assert_eq!(d2["conversationId"], json!(conv));
    let d3 = expect_ok(
        "reply by name",
        bob.post("/api/im/direct/alice/messages", json!({"content": "hey"}))
            .await,
        StatusCode::CREATED,
    );
    assert_eq!(d3["conversationId"], json!(conv));

    let (s, b) = bob
        .get(&format!("/api/im/direct/{}/messages", alice.user_id))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        ids(&b["data"]),
        vec![
            str_of(&m["id"]),
            str_of(&d2["message"]["id"]),
            str_of(&d3["message"]["id"])
        ]
    );
    assert_eq!(b["meta"]["conversationId"], json!(conv));
    assert_eq!(b["meta"]["total"], 3);
    let (_, b) = alice.get("/api/im/direct/bob/messages?limit=1").await;
    assert_eq!(ids(&b["data"]), vec![str_of(&d3["message"]["id"])]);

    // The conversation exists for both, as one direct conversation.
    for api in [&alice, &bob] {
        let list = expect_ok(
            "list",
            api.get("/api/im/conversations").await,
            StatusCode::OK,
        );
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list[0]["id"], json!(conv));
        assert_eq!(list[0]["type"], "direct");
    }

    expect_err(
        "to self",
        &alice
            .post(
                &format!("/api/im/direct/{}/messages", alice.user_id),
                json!({"content": "me"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "unknown user",
        &alice
            .post("/api/im/direct/ghost/messages", json!({"content": "boo"}))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "unknown user history",
        &alice.get("/api/im/direct/ghost/messages").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "bad limit",
        &alice.get("/api/im/direct/bob/messages?limit=0").await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAM",
    );
    expect_err(
        "missing content",
        &alice.post("/api/im/direct/bob/messages", json!({})).await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
}

// ---------------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn groups_create_list_get_send_history() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;

    let d = expect_ok(
        "create",
        alice
            .post(
                "/api/im/groups",
                json!({"title": "team", "description": "the team", "members": ["bob", carol.user_id]}),
            )
            .await,
        StatusCode::CREATED,
    );
    let g = str_of(&d["groupId"]);
    assert_eq!(d["title"], "team");
    assert_eq!(d["description"], "the team");
    let members = d["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{d}");
    let owner = members
        .iter()
        .find(|m| m["userId"] == json!(alice.user_id))
        .unwrap();
    assert_eq!(owner["role"], "owner");
    assert_eq!(owner["username"], "alice");
    let b = members
        .iter()
        .find(|m| m["userId"] == json!(bob.user_id))
        .unwrap();
    assert_eq!(b["role"], "member");
    assert_eq!(b["displayName"], "bob");

    // A direct conversation does not show up among groups.
    direct(&alice, &bob).await;
    let list = expect_ok("list", bob.get("/api/im/groups").await, StatusCode::OK);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["groupId"], json!(g));
    assert_eq!(list[0]["myRole"], "member");
    assert_eq!(list[0]["memberCount"], 3);
    assert_eq!(list[0]["title"], "team");

    let got = expect_ok(
        "get",
        carol.get(&format!("/api/im/groups/{g}")).await,
        StatusCode::OK,
    );
    assert_eq!(got["groupId"], json!(g));
    assert_eq!(got["members"].as_array().unwrap().len(), 3);

    let sent = expect_ok(
        "send",
        bob.post(
            &format!("/api/im/groups/{g}/messages"),
            json!({"content": "hello team", "type": "markdown", "metadata": {"x": 1}}),
        )
        .await,
        StatusCode::CREATED,
    );
    assert_eq!(sent["conversationId"], json!(g));
    assert_eq!(sent["message"]["type"], "markdown");
    assert_eq!(sent["message"]["metadata"]["x"], 1);
    let m2 = carol.send(&g, "hi").await;

    let (s, h) = alice.get(&format!("/api/im/groups/{g}/messages")).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    assert_eq!(
        ids(&h["data"]),
        vec![str_of(&sent["message"]["id"]), str_of(&m2["id"])]
    );
    assert_eq!(h["meta"]["total"], 2);
    // The same id works on the conversation routes.
    assert_eq!(
        history(&alice, &g, "").await,
        ids(&h["data"]),
        "groups and messages routes must agree"
    );

    let d_conv = direct(&alice, &bob).await;
    expect_err(
        "a direct conversation is not a group",
        &alice.get(&format!("/api/im/groups/{d_conv}")).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "unknown group",
        &alice.get("/api/im/groups/nope").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "unknown group history",
        &alice.get("/api/im/groups/nope/messages").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "unknown group send",
        &alice
            .post("/api/im/groups/nope/messages", json!({"content": "x"}))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    for (label, body) in [
        ("missing title", json!({"members": []})),
        ("blank title", json!({"title": "  "})),
        ("long title", json!({"title": "t".repeat(201)})),
        (
            "members not a list",
            json!({"title": "x", "members": "bob"}),
        ),
        ("title not a string", json!({"title": 1})),
        (
            "metadata not an object",
            json!({"title": "x", "metadata": 3}),
        ),
    ] {
        expect_err(
            label,
            &alice.post("/api/im/groups", body).await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    expect_err(
        "unknown member",
        &alice
            .post(
                "/api/im/groups",
                json!({"title": "x", "members": ["ghost"]}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    // None of the refused creations made a group.
    let list = expect_ok("list", alice.get("/api/im/groups").await, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn group_members_add_and_remove() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let dave = srv.user("dave").await;
    let g = alice.group("team", &["bob"]).await;
    let before = alice.send(&g, "before carol").await;

    let d = expect_ok(
        "add",
        alice
            .post(
                &format!("/api/im/groups/{g}/members"),
                json!({"userId": carol.user_id}),
            )
            .await,
        StatusCode::CREATED,
    );
    assert_eq!(d["members"].as_array().unwrap().len(), 3);
    let after = alice.send(&g, "after carol").await;
    // Carol sees the group and the messages from her join on.
    expect_ok(
        "carol get",
        carol.get(&format!("/api/im/groups/{g}")).await,
        StatusCode::OK,
    );
    let seen = history(&carol, &g, "").await;
    assert!(seen.contains(&str_of(&after["id"])), "{seen:?}");
    assert!(!seen.contains(&str_of(&before["id"])), "{seen:?}");
    // Her sync builds the group: a snapshot with member objects, then participant.add.
    let (events, _) = carol.sync_all(0, 100).await;
    let snap = events
        .iter()
        .find(|e| e["type"] == "conversation.create" && e["conversationId"] == json!(g))
        .expect("snapshot");
    assert!(snap["data"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["userId"].is_string()));
    assert!(events
        .iter()
        .any(|e| e["type"] == "participant.add" && e["data"]["userId"] == json!(carol.user_id)));

    expect_err(
        "already a member",
        &alice
            .post(
                &format!("/api/im/groups/{g}/members"),
                json!({"userId": "carol"}),
            )
            .await,
        StatusCode::CONFLICT,
        "CONFLICT",
    );
    expect_err(
        "member adds",
        &bob.post(
            &format!("/api/im/groups/{g}/members"),
            json!({"userId": dave.user_id}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    expect_err(
        "unknown user",
        &alice
            .post(
                &format!("/api/im/groups/{g}/members"),
                json!({"userId": "ghost"}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "missing userId",
        &alice
            .post(&format!("/api/im/groups/{g}/members"), json!({}))
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "owner role",
        &alice
            .post(
                &format!("/api/im/groups/{g}/members"),
                json!({"userId": dave.user_id, "role": "owner"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );

    expect_err(
        "member removes another",
        &bob.delete(&format!("/api/im/groups/{g}/members/{}", carol.user_id))
            .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    let d = expect_ok(
        "remove",
        alice
            .delete(&format!("/api/im/groups/{g}/members/{}", carol.user_id))
            .await,
        StatusCode::OK,
    );
    assert_eq!(d["removed"], true);
    expect_err(
        "removed member reads",
        &carol.get(&format!("/api/im/groups/{g}")).await,
        StatusCode::FORBIDDEN,
        "NOT_PARTICIPANT",
    );
    expect_err(
        "removed member sends",
        &carol
            .post(
                &format!("/api/im/groups/{g}/messages"),
                json!({"content": "x"}),
            )
            .await,
        StatusCode::FORBIDDEN,
        "NOT_PARTICIPANT",
    );
    expect_err(
        "remove again",
        &alice
            .delete(&format!("/api/im/groups/{g}/members/{}", carol.user_id))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    // Anyone may remove themselves.
    expect_ok(
        "self removal",
        bob.delete(&format!("/api/im/groups/{g}/members/{}", bob.user_id))
            .await,
        StatusCode::OK,
    );
    let got = expect_ok(
        "get",
        alice.get(&format!("/api/im/groups/{g}")).await,
        StatusCode::OK,
    );
    assert_eq!(got["members"].as_array().unwrap().len(), 1, "{got}");
}

// ---------------------------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn conversations_list_unread_and_read() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let noisy = alice.group("noisy", &["bob"]).await;
    let quiet = alice.group("quiet", &["bob"]).await;
    alice.send(&quiet, "my own message is not unread").await;
    bob.send(&noisy, "1").await;
    bob.send(&noisy, "2").await;
    let last = bob.send(&noisy, "3").await;

    let list = expect_ok(
        "list",
        alice.get("/api/im/conversations?withUnread=true").await,
        StatusCode::OK,
    );
    assert_eq!(list.as_array().unwrap().len(), 2);
    let n = find_conv(&list, &noisy).unwrap();
    assert_eq!(n["unreadCount"], 3, "{n}");
    assert_eq!(n["myRole"], "owner");
    assert_eq!(n["pinned"], false);
    assert_eq!(n["muted"], false);
    assert_eq!(n["type"], "group");
    assert_eq!(n["title"], "noisy");
    assert_eq!(n["lastMessage"]["id"], last["id"]);
    assert_eq!(find_conv(&list, &quiet).unwrap()["unreadCount"], 0);

    let only = expect_ok(
        "unreadOnly",
        alice
            .get("/api/im/conversations?withUnread=true&unreadOnly=true")
            .await,
        StatusCode::OK,
    );
    let only_ids: Vec<_> = only
        .as_array()
        .unwrap()
        .iter()
        .map(|c| str_of(&c["id"]))
        .collect();
    assert_eq!(only_ids, vec![noisy.clone()]);

    let r = expect_ok(
        "read",
        alice
            .post_empty(&format!("/api/im/conversations/{noisy}/read"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(r["lastReadMessageId"], last["id"]);
    assert_eq!(r["readBy"], json!(alice.user_id));
    // Reading twice is harmless.
    expect_ok(
        "read again",
        alice
            .post_empty(&format!("/api/im/conversations/{noisy}/read"))
            .await,
        StatusCode::OK,
    );

    let list = expect_ok(
        "list",
        alice.get("/api/im/conversations").await,
        StatusCode::OK,
    );
    assert_eq!(find_conv(&list, &noisy).unwrap()["unreadCount"], 0);
    let only = expect_ok(
        "unreadOnly",
        alice.get("/api/im/conversations?unreadOnly=true").await,
        StatusCode::OK,
    );
    assert_eq!(only, json!([]));
    let me = expect_ok("me", alice.get("/api/im/me").await, StatusCode::OK);
    assert_eq!(me["stats"]["unreadCount"], 0);
    // Bob's counters are his own.
    let list = expect_ok(
        "bob list",
        bob.get("/api/im/conversations").await,
        StatusCode::OK,
    );
    assert_eq!(find_conv(&list, &quiet).unwrap()["unreadCount"], 1);
    assert_eq!(find_conv(&list, &noisy).unwrap()["unreadCount"], 0);

    // The read pointer is private: bob's sync never carries alice's conversation.read.
    let (events, _) = bob.sync_all(0, 100).await;
    assert!(
        !events.iter().any(
            |e| e["type"] == "conversation.read" && e["data"]["userId"] == json!(alice.user_id)
        ),
        "bob saw alice's read pointer"
    );
    let (events, _) = alice.sync_all(0, 100).await;
    assert!(events.iter().any(|e| e["type"] == "conversation.read"));

    expect_err(
        "read unknown",
        &alice.post_empty("/api/im/conversations/nope/read").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn conversation_get_with_participants() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let c = expect_ok(
        "get",
        bob.get(&format!("/api/im/conversations/{g}")).await,
        StatusCode::OK,
    );
    assert_eq!(c["id"], json!(g));
    assert_eq!(c["type"], "group");
    assert_eq!(c["title"], "team");
    assert_eq!(c["myRole"], "member");
    let ps = c["participants"].as_array().unwrap();
    assert_eq!(ps.len(), 2);
    let a = ps.iter().find(|p| p["id"] == json!(alice.user_id)).unwrap();
    assert_eq!(a["role"], "owner");
    assert_eq!(a["user"]["username"], "alice");
    assert_eq!(a["user"]["role"], "human");
    assert!(a["joinedAt"].is_string());
    expect_err(
        "unknown",
        &bob.get("/api/im/conversations/nope").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn create_direct_is_201_then_200_for_the_same_pair() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let d = expect_ok(
        "create",
        alice
            .post(
                "/api/im/conversations/direct",
                json!({"otherUserId": bob.user_id, "userId": bob.user_id, "metadata": {"m": 1}}),
            )
            .await,
        StatusCode::CREATED,
    );
    let id = str_of(&d["id"]);
    assert_eq!(d["type"], "direct");
    assert_eq!(d["metadata"]["m"], 1);
    assert_eq!(d["participants"].as_array().unwrap().len(), 2);
    let again = expect_ok(
        "again",
        alice
            .post(
                "/api/im/conversations/direct",
                json!({"otherUserId": "bob"}),
            )
            .await,
        StatusCode::OK,
    );
    assert_eq!(again["id"], json!(id));
    // From the other side, with only the `userId` alias.
    let other = expect_ok(
        "other side",
        bob.post(
            "/api/im/conversations/direct",
            json!({"userId": alice.user_id}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(other["id"], json!(id));

    expect_err(
        "missing other",
        &alice.post("/api/im/conversations/direct", json!({})).await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "self",
        &alice
            .post(
                "/api/im/conversations/direct",
                json!({"otherUserId": alice.user_id}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "unknown",
        &alice
            .post(
                "/api/im/conversations/direct",
                json!({"otherUserId": "ghost"}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "wrong type",
        &alice
            .post("/api/im/conversations/direct", json!({"otherUserId": 7}))
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "metadata not an object",
        &alice
            .post(
                "/api/im/conversations/direct",
                json!({"otherUserId": "bob", "metadata": "x"}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
}

#[tokio::test]
async fn create_group_conversation() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let d = expect_ok(
        "create",
        alice
            .post(
                "/api/im/conversations/group",
                json!({"title": "room", "description": "desc", "memberIds": [bob.user_id, "carol"],
                       "metadata": {"topic": "x"}}),
            )
            .await,
        StatusCode::CREATED,
    );
    let id = str_of(&d["id"]);
    assert_eq!(d["type"], "group");
    assert_eq!(d["title"], "room");
    assert_eq!(d["description"], "desc");
    assert_eq!(d["metadata"]["topic"], "x");
    assert_eq!(d["myRole"], "owner");
    assert_eq!(d["participants"].as_array().unwrap().len(), 3);
    expect_ok(
        "carol get",
        carol.get(&format!("/api/im/conversations/{id}")).await,
        StatusCode::OK,
    );
    // memberIds may be left out: a group of one.
    let solo = expect_ok(
        "solo",
        alice
            .post("/api/im/conversations/group", json!({"title": "solo"}))
            .await,
        StatusCode::CREATED,
    );
    assert_eq!(solo["participants"].as_array().unwrap().len(), 1);
    for (label, body) in [
        ("missing title", json!({"memberIds": []})),
        (
            "memberIds not a list",
            json!({"title": "x", "memberIds": 5}),
        ),
        (
            "description too long",
            json!({"title": "x", "description": "d".repeat(4001)}),
        ),
    ] {
        expect_err(
            label,
            &alice.post("/api/im/conversations/group", body).await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    expect_err(
        "unknown member",
        &alice
            .post(
                "/api/im/conversations/group",
                json!({"title": "x", "memberIds": ["nobody-here"]}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn conversation_update_is_for_managers() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let d = expect_ok(
        "update",
        alice
            .patch(
                &format!("/api/im/conversations/{g}"),
                json!({"title": "renamed", "description": "new", "metadata": {"a": 1}}),
            )
            .await,
        StatusCode::OK,
    );
    assert_eq!(d["title"], "renamed");
    assert_eq!(d["description"], "new");
    assert_eq!(d["metadata"], json!({"a": 1}));
    let seen = expect_ok(
        "get",
        bob.get(&format!("/api/im/conversations/{g}")).await,
        StatusCode::OK,
    );
    assert_eq!(seen["title"], "renamed");
    let (events, _) = bob.sync_all(0, 100).await;
    let upd = events
        .iter()
        .find(|e| e["type"] == "conversation.update")
        .expect("conversation.update");
    assert_eq!(upd["data"]["title"], "renamed");
    assert!(upd["data"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m.is_object()));

    expect_err(
        "member updates",
        &bob.patch(
            &format!("/api/im/conversations/{g}"),
            json!({"title": "mine"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    let seen = expect_ok(
        "get",
        bob.get(&format!("/api/im/conversations/{g}")).await,
        StatusCode::OK,
    );
    assert_eq!(seen["title"], "renamed");
    for (label, body) in [
        ("blank title", json!({"title": ""})),
        ("metadata not an object", json!({"metadata": []})),
        ("title not a string", json!({"title": false})),
    ] {
        expect_err(
            label,
            &alice
                .patch(&format!("/api/im/conversations/{g}"), body)
                .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    expect_err(
        "unknown",
        &alice
            .patch("/api/im/conversations/nope", json!({"title": "x"}))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn archive_is_each_members_own() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let g = alice.group("team", &["bob", "carol"]).await;
    let m = bob.send(&g, "before").await;
    let mid = str_of(&m["id"]);

    // Any member files a group away for themselves; the others' copies stay as they were.
    let d = expect_ok(
        "member archives",
        bob.post_empty(&format!("/api/im/conversations/{g}/archive"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(d["archived"], true);
    async fn archived(u: &Api, conv: &str) -> Value {
        expect_ok(
            "get",
            u.get(&format!("/api/im/conversations/{conv}")).await,
            StatusCode::OK,
        )["archived"]
            .clone()
    }
    assert_eq!(archived(&bob, &g).await, true);
    assert_eq!(archived(&alice, &g).await, false);
    assert_eq!(archived(&carol, &g).await, false);
    let list = expect_ok(
        "list",
        bob.get("/api/im/conversations").await,
        StatusCode::OK,
    );
    assert_eq!(find_conv(&list, &g).unwrap()["archived"], true);

    // Archiving writes nothing anyone else sees, and refuses nobody: the others write on, and
    // the archiving member's copy stays filed away while they only read and react.
    alice.send(&g, "to everyone").await;
    expect_ok(
        "react while archived",
        bob.post(
            &format!("/api/im/messages/{g}/{mid}/reactions"),
            json!({"emoji": "👍"}),
        )
        .await,
        StatusCode::OK,
    );
    expect_ok(
        "edit while archived",
        bob.patch(
            &format!("/api/im/messages/{g}/{mid}"),
            json!({"content": "edited"}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(archived(&bob, &g).await, true);
    // A send brings it back, for the sender only.
    bob.send(&g, "back").await;
    assert_eq!(archived(&bob, &g).await, false);

    let (events, _) = bob.sync_all(0, 100).await;
    let kinds: Vec<_> = events
        .iter()
        .filter(|e| e["conversationId"] == json!(g))
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .filter(|k| k.contains("archive"))
        .collect();
    assert_eq!(
        kinds,
        vec!["conversation.archive", "conversation.unarchive"]
    );
    for u in [&alice, &carol] {
        let (events, _) = u.sync_all(0, 100).await;
        assert!(
            !events
                .iter()
                .any(|e| e["type"].as_str().unwrap_or_default().contains("archive")),
            "another member saw bob's archive: {events:?}"
        );
    }
    // Archiving twice, or unarchiving what is not archived, is harmless.
    for path in ["archive", "archive", "unarchive", "unarchive"] {
        expect_ok(
            path,
            carol
                .post_empty(&format!("/api/im/conversations/{g}/{path}"))
                .await,
            StatusCode::OK,
        );
    }

    // One side of a direct conversation archiving it neither archives the other's copy nor
    // locks them out.
    let d = direct(&alice, &bob).await;
    expect_ok(
        "archive direct",
        bob.post_empty(&format!("/api/im/conversations/{d}/archive"))
            .await,
        StatusCode::OK,
    );
    let sent = expect_ok(
        "direct send to an archived copy",
        alice
            .post("/api/im/direct/bob/messages", json!({"content": "x"}))
            .await,
        StatusCode::CREATED,
    );
    assert_eq!(archived(&alice, &d).await, false);
    assert_eq!(
        archived(&bob, &d).await,
        true,
        "a message in stays filed away"
    );
    assert!(history(&bob, &d, "")
        .await
        .contains(&str_of(&sent["message"]["id"])));

    expect_err(
        "archive unknown",
        &alice.post_empty("/api/im/conversations/nope/archive").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "unarchive unknown",
        &alice
            .post_empty("/api/im/conversations/nope/unarchive")
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let outsider = srv.user("dave").await;
    expect_err(
        "archive by a non-member",
        &outsider
            .post_empty(&format!("/api/im/conversations/{g}/archive"))
            .await,
        StatusCode::FORBIDDEN,
        "NOT_PARTICIPANT",
    );
}

#[tokio::test]
async fn pin_and_mute_are_private_settings() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;

    let d = expect_ok(
        "pin",
        bob.patch(
            &format!("/api/im/conversations/{g}/pin"),
            json!({"pinned": true}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(d["pinned"], true);
    assert!(d["pinnedAt"].is_string());
    let d = expect_ok(
        "mute",
        bob.patch(
            &format!("/api/im/conversations/{g}/mute"),
            json!({"muted": true}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(d["muted"], true);
    assert_eq!(d["pinned"], true);

    let list = expect_ok(
        "bob list",
        bob.get("/api/im/conversations").await,
        StatusCode::OK,
    );
    let c = find_conv(&list, &g).unwrap();
    assert_eq!(c["pinned"], true);
    assert_eq!(c["muted"], true);
    let list = expect_ok(
        "alice list",
        alice.get("/api/im/conversations").await,
        StatusCode::OK,
    );
    let c = find_conv(&list, &g).unwrap();
    assert_eq!(c["pinned"], false);
    assert_eq!(c["muted"], false);

    let (events, _) = alice.sync_all(0, 100).await;
    assert!(
        !events.iter().any(|e| e["type"] == "conversation.settings"),
        "alice saw bob's settings"
    );
    let (events, _) = bob.sync_all(0, 100).await;
    assert!(events.iter().any(|e| e["type"] == "conversation.settings"));

    let d = expect_ok(
        "unpin",
        bob.patch(
            &format!("/api/im/conversations/{g}/pin"),
            json!({"pinned": false}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(d["pinned"], false);
    assert_eq!(d["pinnedAt"], Value::Null);

    for (label, path, body) in [
        ("pin missing", "pin", json!({})),
        ("pin wrong type", "pin", json!({"pinned": "yes"})),
        ("mute missing", "mute", json!({})),
        ("mute wrong type", "mute", json!({"muted": 1})),
    ] {
        expect_err(
            label,
            &bob.patch(&format!("/api/im/conversations/{g}/{path}"), body)
                .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    expect_err(
        "pin unknown",
        &bob.patch("/api/im/conversations/nope/pin", json!({"pinned": true}))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "mute unknown",
        &bob.patch("/api/im/conversations/nope/mute", json!({"muted": true}))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn leave_a_conversation() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    bob.send(&g, "bye").await;
    let d = expect_ok(
        "leave",
        bob.delete(&format!("/api/im/conversations/{g}")).await,
        StatusCode::OK,
    );
    assert_eq!(d["left"], true);
    let after = alice.send(&g, "after bob left").await;

    expect_err(
        "get after leave",
        &bob.get(&format!("/api/im/conversations/{g}")).await,
        StatusCode::FORBIDDEN,
        "NOT_PARTICIPANT",
    );
    expect_err(
        "history after leave",
        &bob.get(&format!("/api/im/messages/{g}")).await,
        StatusCode::FORBIDDEN,
        "NOT_PARTICIPANT",
    );
    expect_err(
        "leave twice",
        &bob.delete(&format!("/api/im/conversations/{g}")).await,
        StatusCode::FORBIDDEN,
        "NOT_PARTICIPANT",
    );
    let list = expect_ok(
        "bob list",
        bob.get("/api/im/conversations").await,
        StatusCode::OK,
    );
    assert!(find_conv(&list, &g).is_none(), "{list}");
    // Bob's sync ends with his own removal; nothing after it.
    let (events, _) = bob.sync_all(0, 100).await;
    let last = events
        .iter()
        .rev()
        .find(|e| e["conversationId"] == json!(g))
        .unwrap();
    assert_eq!(last["type"], "participant.remove");
    assert_eq!(
        count_events(&events, "message.new", after["id"].as_str().unwrap()),
        0
    );
    let c = expect_ok(
        "alice get",
        alice.get(&format!("/api/im/conversations/{g}")).await,
        StatusCode::OK,
    );
    assert_eq!(c["participants"].as_array().unwrap().len(), 1);
    expect_err(
        "leave unknown",
        &bob.delete("/api/im/conversations/nope").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn participants_add_and_remove() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let dave = srv.user("dave").await;
    let g = alice.group("team", &["bob"]).await;
    let path = format!("/api/im/conversations/{g}/participants");

    let d = expect_ok(
        "add",
        alice
            .post(&path, json!({"userId": carol.user_id, "role": "admin"}))
            .await,
        StatusCode::CREATED,
    );
    let ps = d["participants"].as_array().unwrap();
    assert_eq!(ps.len(), 3);
    assert_eq!(
        ps.iter().find(|p| p["id"] == json!(carol.user_id)).unwrap()["role"],
        "admin"
    );
    expect_err(
        "already present",
        &alice.post(&path, json!({"userId": carol.user_id})).await,
        StatusCode::CONFLICT,
        "CONFLICT",
    );
    expect_err(
        "by name, already present",
        &alice.post(&path, json!({"userId": "bob"})).await,
        StatusCode::CONFLICT,
        "CONFLICT",
    );
    // An admin may add; a member may not.
    expect_err(
        "member adds",
        &bob.post(&path, json!({"userId": dave.user_id})).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    expect_ok(
        "admin adds",
        carol.post(&path, json!({"userId": "dave"})).await,
        StatusCode::CREATED,
    );
    expect_err(
        "unknown user",
        &alice.post(&path, json!({"userId": "ghost"})).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "bad role",
        &alice
            .post(&path, json!({"userId": "ghost", "role": "king"}))
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "userId wrong type",
        &alice.post(&path, json!({"userId": ["x"]})).await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    let d_conv = direct(&alice, &bob).await;
    expect_err(
        "add to a direct conversation",
        &alice
            .post(
                &format!("/api/im/conversations/{d_conv}/participants"),
                json!({"userId": carol.user_id}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "add to unknown",
        &alice
            .post(
                "/api/im/conversations/nope/participants",
                json!({"userId": "bob"}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );

    // Removal.
    expect_err(
        "member removes another",
        &bob.delete(&format!("{path}/{}", dave.user_id)).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    expect_err(
        "admin removes the owner",
        &carol.delete(&format!("{path}/{}", alice.user_id)).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    let d = expect_ok(
        "remove",
        alice.delete(&format!("{path}/{}", dave.user_id)).await,
        StatusCode::OK,
    );
    assert_eq!(d["removed"], true);
    expect_err(
        "remove again",
        &alice.delete(&format!("{path}/{}", dave.user_id)).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "remove a stranger",
        &alice.delete(&format!("{path}/nobody")).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "removed user reads",
        &dave.get(&format!("/api/im/messages/{g}")).await,
        StatusCode::FORBIDDEN,
        "NOT_PARTICIPANT",
    );
    expect_err(
        "remove from a direct conversation",
        &alice
            .delete(&format!(
                "/api/im/conversations/{d_conv}/participants/{}",
                bob.user_id
            ))
            .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    // Re-adding a removed user works.
    expect_ok(
        "re-add",
        alice.post(&path, json!({"userId": dave.user_id})).await,
        StatusCode::CREATED,
    );
    expect_ok(
        "dave reads",
        dave.get(&format!("/api/im/messages/{g}")).await,
        StatusCode::OK,
    );
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn message_history_pages_with_before_after_and_limit() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let _bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let mut m = Vec::new();
    for i in 0..6 {
        m.push(str_of(&alice.send(&g, &format!("m{i}")).await["id"]));
    }
    assert_eq!(history(&alice, &g, "").await, m);
    assert_eq!(history(&alice, &g, "?limit=2").await, m[4..].to_vec());
    assert_eq!(
        history(&alice, &g, &format!("?before={}", m[3])).await,
        m[..3].to_vec()
    );
    assert_eq!(
        history(&alice, &g, &format!("?before={}&limit=2", m[3])).await,
        m[1..3].to_vec()
    );
    assert_eq!(
        history(&alice, &g, &format!("?after={}", m[3])).await,
        m[4..].to_vec()
    );
    assert_eq!(
        history(&alice, &g, &format!("?after={}&limit=2", m[0])).await,
        m[1..3].to_vec()
    );
    assert_eq!(
        history(&alice, &g, &format!("?after={}", m[5])).await,
        Vec::<String>::new()
    );
    // `offset` (sent by the SDK) is ignored; limits above 200 are capped.
    assert_eq!(history(&alice, &g, "?offset=3").await, m);
    let (s, b) = alice.get(&format!("/api/im/messages/{g}?limit=1000")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["meta"]["pageSize"], 200);
    assert_eq!(b["meta"]["total"], 6);

    for q in ["limit=0", "limit=abc", "limit=-1", "limit=1.5"] {
        expect_err(
            q,
            &alice.get(&format!("/api/im/messages/{g}?{q}")).await,
            StatusCode::BAD_REQUEST,
            "INVALID_PARAM",
        );
        expect_err(
            q,
            &alice.get(&format!("/api/im/groups/{g}/messages?{q}")).await,
            StatusCode::BAD_REQUEST,
            "INVALID_PARAM",
        );
    }
    expect_err(
        "before and after",
        &alice
            .get(&format!(
                "/api/im/messages/{g}?before={}&after={}",
                m[3], m[1]
            ))
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAM",
    );
    expect_err(
        "unknown cursor",
        &alice
            .get(&format!("/api/im/messages/{g}?before=nope"))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "unknown conversation",
        &alice.get("/api/im/messages/nope").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn send_validates_its_body() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let _bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let path = format!("/api/im/messages/{g}");

    // Accepted extras: blocks without content, attachments, threads, quotes, signature fields.
    let root = alice.send(&g, "root").await;
    let rid = str_of(&root["id"]);
    let d = expect_ok(
        "blocks",
        alice
            .post(
                &path,
                json!({"contentBlocks": [{"kind": "text", "text": "x"}]}),
            )
            .await,
        StatusCode::CREATED,
    );
    assert_eq!(d["message"]["content"], "");
    let d = expect_ok(
        "reply",
        alice
            .post(
                &path,
                json!({"content": "reply", "parentId": rid, "quotedMessageId": rid,
                       "secVersion": 1, "senderDid": "did:key:z6Mk", "signature": "sig"}),
            )
            .await,
        StatusCode::CREATED,
    );
    assert_eq!(d["message"]["parentId"], json!(rid));
    assert_eq!(d["message"]["metadata"]["senderDid"], "did:key:z6Mk");
    for t in ["markdown", "code", "tool_call", "thinking"] {
        expect_ok(
            t,
            alice.post(&path, json!({"content": "x", "type": t})).await,
            StatusCode::CREATED,
        );
    }
    let before = history(&alice, &g, "?limit=200").await;

    for (label, body) in [
        ("missing content", json!({"type": "text"})),
        ("empty content", json!({"content": "   "})),
        ("content not a string", json!({"content": 5})),
        ("unknown type", json!({"content": "x", "type": "video"})),
        ("type not a string", json!({"content": "x", "type": 1})),
        (
            "metadata not an object",
            json!({"content": "x", "metadata": "m"}),
        ),
        ("too long", json!({"content": "x".repeat(64 * 1024 + 1)})),
        (
            "unknown parent",
            json!({"content": "x", "parentId": "nope"}),
        ),
        (
            "unknown quote",
            json!({"content": "x", "quotedMessageId": "nope"}),
        ),
        ("body is a list", json!(["content"])),
        ("body is null", Value::Null),
        ("empty key", json!({"content": "x", "idempotencyKey": ""})),
        (
            "long key",
            json!({"content": "x", "idempotencyKey": "k".repeat(201)}),
        ),
    ] {
        expect_err(
            label,
            &alice.post(&path, body).await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    for raw in ["", "{", "{\"content\": \"x\",}", "content=x", "\u{0}"] {
        expect_err(
            &format!("raw {raw:?}"),
            &alice.raw(Method::POST, &path, raw).await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    // A body without a content type is still parsed.
    let resp = alice
        .http
        .post(format!("{}{path}", srv.base))
        .bearer_auth(alice.token.as_ref().unwrap())
        .body(r#"{"content":"no content-type"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let mut after = history(&alice, &g, "?limit=200").await;
    after.pop();
    assert_eq!(after, before, "a refused send left a message behind");

    // A deleted parent cannot be replied to.
    alice.delete(&format!("{path}/{rid}")).await;
    expect_err(
        "deleted parent",
        &alice
            .post(&path, json!({"content": "x", "parentId": rid}))
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
}

#[tokio::test]
async fn edit_is_sender_only() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let other = alice.group("other", &["bob"]).await;
    let m = alice.send(&g, "original").await;
    let mid = str_of(&m["id"]);
    let path = format!("/api/im/messages/{g}/{mid}");

    let d = expect_ok(
        "edit",
        alice
            .patch(&path, json!({"content": "edited", "metadata": {"e": true}}))
            .await,
        StatusCode::OK,
    );
    assert_eq!(d["message"]["id"], json!(mid));
    assert_eq!(d["message"]["content"], "edited");
    assert_eq!(d["message"]["metadata"]["e"], true);
    assert_eq!(d["message"]["editedBy"], json!(alice.user_id));
    assert!(d["message"]["editedAt"].is_string());
    let (_, h) = bob.get(&format!("/api/im/messages/{g}")).await;
    assert_eq!(h["data"][0]["content"], "edited");
    let (events, _) = bob.sync_all(0, 100).await;
    let e = events.iter().find(|e| e["type"] == "message.edit").unwrap();
    assert_eq!(e["data"]["id"], json!(mid));
    assert_eq!(e["data"]["content"], "edited");

    expect_err(
        "another user's message",
        &bob.patch(&path, json!({"content": "hacked"})).await,
        StatusCode::FORBIDDEN,
        "NOT_SENDER",
    );
    let (_, h) = alice.get(&format!("/api/im/messages/{g}")).await;
    assert_eq!(h["data"][0]["content"], "edited");
    expect_err(
        "unknown message",
        &alice
            .patch(
                &format!("/api/im/messages/{g}/nope"),
                json!({"content": "x"}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "message of another conversation",
        &alice
            .patch(
                &format!("/api/im/messages/{other}/{mid}"),
                json!({"content": "x"}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "unknown conversation",
        &alice
            .patch(
                &format!("/api/im/messages/nope/{mid}"),
                json!({"content": "x"}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    for (label, body) in [
        ("missing content", json!({})),
        ("content not a string", json!({"content": {}})),
        (
            "metadata not an object",
            json!({"content": "x", "metadata": 1}),
        ),
    ] {
        expect_err(
            label,
            &alice.patch(&path, body).await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    expect_err(
        "malformed",
        &alice.raw(Method::PATCH, &path, "{{").await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    alice.delete(&path).await;
    expect_err(
        "edit a deleted message",
        &alice.patch(&path, json!({"content": "zombie"})).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn delete_is_sender_only_and_removes_from_history() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let m1 = str_of(&alice.send(&g, "keep").await["id"]);
    let m2 = str_of(&alice.send(&g, "drop").await["id"]);
    let m3 = str_of(&bob.send(&g, "bob's").await["id"]);

    expect_err(
        "another user's message",
        &bob.delete(&format!("/api/im/messages/{g}/{m2}")).await,
        StatusCode::FORBIDDEN,
        "NOT_SENDER",
    );
    assert_eq!(
        history(&bob, &g, "").await,
        vec![m1.clone(), m2.clone(), m3.clone()]
    );

    let d = expect_ok(
        "delete",
        alice.delete(&format!("/api/im/messages/{g}/{m2}")).await,
        StatusCode::OK,
    );
    assert_eq!(d["deleted"], true);
    assert_eq!(d["id"], json!(m2));
    for api in [&alice, &bob] {
        assert_eq!(history(api, &g, "").await, vec![m1.clone(), m3.clone()]);
    }
    let (_, h) = alice.get(&format!("/api/im/messages/{g}")).await;
    assert_eq!(h["meta"]["total"], 2);
    let (events, _) = bob.sync_all(0, 100).await;
    let del = events
        .iter()
        .find(|e| e["type"] == "message.delete")
        .unwrap();
    assert_eq!(del["data"]["id"], json!(m2));
    assert_eq!(del["data"]["conversationId"], json!(g));

    expect_err(
        "delete twice",
        &alice.delete(&format!("/api/im/messages/{g}/{m2}")).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "react to deleted",
        &bob.post(
            &format!("/api/im/messages/{g}/{m2}/reactions"),
            json!({"emoji": "x"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "unknown message",
        &alice.delete(&format!("/api/im/messages/{g}/nope")).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "unknown conversation",
        &alice.delete(&format!("/api/im/messages/nope/{m1}")).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    // The last message of the list view skips the tombstone.
    expect_err(
        "alice deletes bob's",
        &alice.delete(&format!("/api/im/messages/{g}/{m3}")).await,
        StatusCode::FORBIDDEN,
        "NOT_SENDER",
    );
    let d = expect_ok(
        "bob deletes his own",
        bob.delete(&format!("/api/im/messages/{g}/{m3}")).await,
        StatusCode::OK,
    );
    assert_eq!(d["id"], json!(m3));
    let list = expect_ok(
        "list",
        alice.get("/api/im/conversations").await,
        StatusCode::OK,
    );
    assert_eq!(
        find_conv(&list, &g).unwrap()["lastMessage"]["id"],
        json!(m1)
    );
}

#[tokio::test]
async fn reactions_add_remove_and_snapshot() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let mid = str_of(&alice.send(&g, "react to me").await["id"]);
    let path = format!("/api/im/messages/{g}/{mid}/reactions");

    let d = expect_ok(
        "add",
        alice.post(&path, json!({"emoji": "👍"})).await,
        StatusCode::OK,
    );
    assert_eq!(d["reactions"], json!({"👍": [alice.user_id]}));
    let d = expect_ok(
        "bob adds",
        bob.post(&path, json!({"emoji": "👍"})).await,
        StatusCode::OK,
    );
    assert_eq!(d["reactions"], json!({"👍": [alice.user_id, bob.user_id]}));
    let d = expect_ok(
        "again",
        bob.post(&path, json!({"emoji": "👍"})).await,
        StatusCode::OK,
    );
    assert_eq!(d["reactions"], json!({"👍": [alice.user_id, bob.user_id]}));
    let d = expect_ok(
        "heart",
        bob.post(&path, json!({"emoji": "❤️"})).await,
        StatusCode::OK,
    );
    assert_eq!(
        d["reactions"],
        json!({"👍": [alice.user_id, bob.user_id], "❤️": [bob.user_id]})
    );
    let d = expect_ok(
        "remove",
        alice
            .post(&path, json!({"emoji": "👍", "remove": true}))
            .await,
        StatusCode::OK,
    );
    assert_eq!(
        d["reactions"],
        json!({"👍": [bob.user_id], "❤️": [bob.user_id]})
    );
    let d = expect_ok(
        "remove absent",
        alice
            .post(&path, json!({"emoji": "🎉", "remove": true}))
            .await,
        StatusCode::OK,
    );
    assert_eq!(
        d["reactions"],
        json!({"👍": [bob.user_id], "❤️": [bob.user_id]})
    );

    let (events, _) = alice.sync_all(0, 100).await;
    let rs: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "message.reaction")
        .collect();
    assert_eq!(rs.len(), 4, "only changes make events: {rs:?}");
    assert_eq!(rs[3]["data"]["action"], "remove");
    assert_eq!(
        rs[3]["data"]["reactions"],
        json!({"👍": [bob.user_id], "❤️": [bob.user_id]})
    );

    for (label, body) in [
        ("missing emoji", json!({})),
        ("blank emoji", json!({"emoji": " "})),
        ("long emoji", json!({"emoji": "x".repeat(65)})),
        ("emoji not a string", json!({"emoji": 1})),
        ("remove not a bool", json!({"emoji": "x", "remove": "yes"})),
    ] {
        expect_err(
            label,
            &alice.post(&path, body).await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    expect_err(
        "unknown message",
        &alice
            .post(
                &format!("/api/im/messages/{g}/nope/reactions"),
                json!({"emoji": "x"}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "unknown conversation",
        &alice
            .post(
                &format!("/api/im/messages/nope/{mid}/reactions"),
                json!({"emoji": "x"}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn delivery_receipts() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let other = alice.group("other", &["bob"]).await;
    let m1 = str_of(&alice.send(&g, "1").await["id"]);
    let m2 = str_of(&alice.send(&g, "2").await["id"]);
    let elsewhere = str_of(&alice.send(&other, "x").await["id"]);

    let d = expect_ok(
        "delivered",
        bob.post(
            "/api/im/messages/delivered",
            json!({"conversationId": g, "messageIds": [m1, m2]}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(d["updated"], 2);
    let d = expect_ok(
        "again",
        bob.post(
            "/api/im/messages/delivered",
            json!({"conversationId": g, "messageIds": [m1]}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(d["updated"], 0);
    let d = expect_ok(
        "empty",
        bob.post(
            "/api/im/messages/delivered",
            json!({"conversationId": g, "messageIds": []}),
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(d["updated"], 0);

    let many: Vec<String> = (0..201).map(|i| format!("m{i}")).collect();
    for (label, body) in [
        ("too many", json!({"conversationId": g, "messageIds": many})),
        ("missing ids", json!({"conversationId": g})),
        ("missing conversation", json!({"messageIds": [m1]})),
        (
            "ids not a list",
            json!({"conversationId": g, "messageIds": m1}),
        ),
    ] {
        expect_err(
            label,
            &bob.post("/api/im/messages/delivered", body).await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    expect_err(
        "unknown message",
        &bob.post(
            "/api/im/messages/delivered",
            json!({"conversationId": g, "messageIds": ["nope"]}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "message of another conversation",
        &bob.post(
            "/api/im/messages/delivered",
            json!({"conversationId": g, "messageIds": [elsewhere]}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "unknown conversation",
        &bob.post(
            "/api/im/messages/delivered",
            json!({"conversationId": "nope", "messageIds": [m1]}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

// ---------------------------------------------------------------------------------------------
// Contacts, users, presence
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn contacts_are_direct_peers() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let _carol = srv.user("carol").await;
    let agent = srv.client();
    let reg = expect_ok(
        "agent",
        agent
            .post(
                "/api/im/register",
                json!({"type": "agent", "username": "helper"}),
            )
            .await,
        StatusCode::CREATED,
    );
    alice.group("team", &["carol"]).await; // group peers are not contacts
    let d = direct(&alice, &bob).await;
    let last = bob.send(&d, "hi alice").await;
    alice
        .post("/api/im/direct/helper/messages", json!({"content": "task"}))
        .await;

    let (s, b) = alice.get("/api/im/contacts").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let list = b["data"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{b}");
    assert_eq!(b["meta"]["total"], 2);
    let c = list
        .iter()
        .find(|c| c["userId"] == json!(bob.user_id))
        .unwrap();
    assert_eq!(c["username"], "bob");
    assert_eq!(c["conversationId"], json!(d));
    assert_eq!(c["conversationType"], "direct");
    assert_eq!(c["unreadCount"], 1);
    assert_eq!(c["lastMessage"]["id"], last["id"]);
    assert!(c["lastMessageAt"].is_string());

    let (_, b) = alice.get("/api/im/contacts?role=agent").await;
    let only: Vec<_> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["userId"].clone())
        .collect();
    assert_eq!(only, vec![reg["imUserId"].clone()]);
    let (_, b) = alice.get("/api/im/contacts?limit=1&offset=1").await;
    assert_eq!(b["data"].as_array().unwrap().len(), 1);
    assert_eq!(b["meta"]["total"], 2);
    let (_, b) = bob.get("/api/im/contacts").await;
    assert_eq!(b["data"].as_array().unwrap().len(), 1);

    for q in ["limit=abc", "limit=0", "offset=-1", "offset=x"] {
        expect_err(
            q,
            &alice.get(&format!("/api/im/contacts?{q}")).await,
            StatusCode::BAD_REQUEST,
            "INVALID_PARAM",
        );
    }
}

#[tokio::test]
async fn user_lookup_by_id_and_username() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("Bob_2").await;
    let u = expect_ok(
        "by id",
        alice.get(&format!("/api/im/users/{}", bob.user_id)).await,
        StatusCode::OK,
    );
    assert_eq!(u["id"], json!(bob.user_id));
    assert_eq!(u["username"], "Bob_2");
    assert_eq!(u["role"], "human");
    let u = expect_ok(
        "by name, other case",
        alice.get("/api/im/users/by-username/bob_2").await,
        StatusCode::OK,
    );
    assert_eq!(u["id"], json!(bob.user_id));
    assert_eq!(u["username"], "Bob_2");
    expect_err(
        "unknown id",
        &alice.get("/api/im/users/nope").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "unknown name",
        &alice.get("/api/im/users/by-username/nobody").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn presence_batch() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let d = expect_ok(
        "batch",
        alice
            .post(
                "/api/im/presence/batch",
                json!({"userIds": [bob.user_id, alice.user_id]}),
            )
            .await,
        StatusCode::OK,
    );
    let list = d.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["userId"], json!(bob.user_id));
    assert!(list[0]["status"].is_string());
    let hundred: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
    expect_ok(
        "100 ids",
        alice
            .post("/api/im/presence/batch", json!({"userIds": hundred}))
            .await,
        StatusCode::OK,
    );
    let too_many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    for (label, body) in [
        ("101 ids", json!({"userIds": too_many})),
        ("missing", json!({})),
        ("not a list", json!({"userIds": "x"})),
        ("not strings", json!({"userIds": [1, 2]})),
    ] {
        expect_err(
            label,
            &alice.post("/api/im/presence/batch", body).await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Sync
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sync_validates_its_parameters_and_pages() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let _bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    for i in 0..5 {
        alice.send(&g, &format!("m{i}")).await;
    }
    for q in [
        "since=-1",
        "since=abc",
        "since=1.5",
        "limit=0",
        "limit=501",
        "limit=abc",
        "limit=-5",
    ] {
        expect_err(
            q,
            &alice.get(&format!("/api/im/sync?{q}")).await,
            StatusCode::BAD_REQUEST,
            "INVALID_PARAM",
        );
    }
    // Defaults and bounds.
    let d = expect_ok("default", alice.get("/api/im/sync").await, StatusCode::OK);
    let all = d["events"].as_array().unwrap().clone();
    assert_eq!(all.len(), 6, "{d}");
    assert_eq!(d["hasMore"], false);
    assert_eq!(d["cursor"], all[5]["seq"]);
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for e in &all {
        assert!(e["at"].is_string() && e["type"].is_string() && e["data"].is_object());
        assert_eq!(e["conversationId"], json!(g));
    }
    expect_ok(
        "limit=500",
        alice.get("/api/im/sync?limit=500").await,
        StatusCode::OK,
    );
    let d = expect_ok(
        "page",
        alice.get("/api/im/sync?since=0&limit=2").await,
        StatusCode::OK,
    );
    assert_eq!(d["events"].as_array().unwrap().len(), 2);
    assert_eq!(d["hasMore"], true);
    assert_eq!(d["cursor"], all[1]["seq"]);
    let (paged, cursor) = alice.sync_all(0, 1).await;
    assert_eq!(paged, all);
    // Past the head: nothing, and the cursor stays.
    let far = cursor + 1000;
    let d = expect_ok(
        "far",
        alice.get(&format!("/api/im/sync?since={far}")).await,
        StatusCode::OK,
    );
    assert_eq!(d["events"], json!([]));
    assert_eq!(d["cursor"], far);
    assert_eq!(d["hasMore"], false);
}

// ---------------------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn idempotency_key_from_header_body_or_metadata_dedupes() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let path = format!("/api/im/messages/{g}");

    type Case<'a> = (&'a str, Value, Vec<(&'a str, &'a str)>);
    let cases: [Case; 3] = [
        (
            "header",
            json!({"content": "via header"}),
            vec![("X-Idempotency-Key", "key-h")],
        ),
        (
            "body",
            json!({"content": "via body", "idempotencyKey": "key-b"}),
            vec![],
        ),
        (
            "metadata",
            json!({"content": "via metadata", "metadata": {"_idempotencyKey": "sdk-key-m"}}),
            vec![],
        ),
    ];
    let mut made = Vec::new();
    for (label, body, headers) in cases {
        let first = expect_ok(
            label,
            send_with(&alice, &path, body.clone(), &headers).await,
            StatusCode::CREATED,
        );
        let again = expect_ok(
            label,
            send_with(&alice, &path, body.clone(), &headers).await,
            StatusCode::CREATED,
        );
        assert_eq!(first["message"]["id"], again["message"]["id"], "{label}");
        assert_eq!(
            first["message"]["createdAt"], again["message"]["createdAt"],
            "{label}"
        );
        assert_eq!(again["duplicate"], true, "{label}");
        assert_eq!(first["duplicate"], false, "{label}");
        made.push(str_of(&first["message"]["id"]));
    }
    // The SDK sends the same key in the header and the body at once.
    let both = json!({"content": "sdk style", "idempotencyKey": "uuid-1"});
    let h = [("X-Idempotency-Key", "uuid-1")];
    let a = expect_ok(
        "both",
        send_with(&alice, &path, both.clone(), &h).await,
        StatusCode::CREATED,
    );
    let b = expect_ok(
        "both",
        send_with(&alice, &path, both, &h).await,
        StatusCode::CREATED,
    );
    assert_eq!(a["message"]["id"], b["message"]["id"]);
    made.push(str_of(&a["message"]["id"]));

    assert_eq!(
        history(&bob, &g, "").await,
        made,
        "retries must not add messages"
    );
    let (events, _) = bob.sync_all(0, 100).await;
    for id in &made {
        assert_eq!(count_events(&events, "message.new", id), 1, "{id}");
    }

    // Same key, different payload: 409, nothing appended.
    for (label, body, headers) in [
        (
            "header",
            json!({"content": "other"}),
            vec![("X-Idempotency-Key", "key-h")],
        ),
        (
            "body",
            json!({"content": "other", "idempotencyKey": "key-b"}),
            vec![],
        ),
        (
            "metadata",
            json!({"content": "via metadata", "type": "markdown", "metadata": {"_idempotencyKey": "sdk-key-m"}}),
            vec![],
        ),
    ] {
        expect_err(
            label,
            &send_with(&alice, &path, body, &headers).await,
            StatusCode::CONFLICT,
            "IDEMPOTENCY_KEY_REUSED",
        );
    }
    assert_eq!(history(&bob, &g, "").await, made);
    let (after, _) = bob.sync_all(0, 100).await;
    assert_eq!(after.len(), events.len(), "a refused retry appended events");
}

#[tokio::test]
async fn a_send_answers_the_message_its_event_and_history_carry() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("quotes", &["bob"]).await;
    let path = format!("/api/im/messages/{g}");
    // Content and metadata that need escaping, and a thread reply with a quote.
    let first = expect_ok(
        "first",
        alice
            .post(&path, json!({"content": "say \"hi\"\n\\ ünï ✓"}))
            .await,
        StatusCode::CREATED,
    );
    let parent = str_of(&first["message"]["id"]);
    let body = json!({
        "content": "</script> \u{1}",
        "type": "markdown",
        "metadata": {"k": ["v", 1, null], "nested": {"q": "\""}},
        "parentId": parent,
        "quotedMessageId": parent,
        "idempotencyKey": "once",
    });
    let sent = expect_ok(
        "reply",
        alice.post(&path, body.clone()).await,
        StatusCode::CREATED,
    );
    assert_eq!(sent["conversationId"], json!(g));
    assert_eq!(sent["duplicate"], false);
    let again = expect_ok("retry", alice.post(&path, body).await, StatusCode::CREATED);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["message"], sent["message"]);

    let (events, _) = bob.sync_all(0, 100).await;
    for m in [&first["message"], &sent["message"]] {
        let event = events
            .iter()
            .find(|e| e["type"] == "message.new" && e["data"]["id"] == m["id"])
            .unwrap_or_else(|| panic!("no event for {m}"));
        assert_eq!(&event["data"], m);
    }
    // The parent has changed since (a reply count); the reply is as it was sent.
    let history = expect_ok(
        "history",
        bob.get(&format!("/api/im/messages/{g}")).await,
        StatusCode::OK,
    );
    // History adds the message's reactions (none here) to the message as sent.
    let mut reply = history[1].clone();
    assert_eq!(reply["reactions"], json!({}), "{history}");
    reply.as_object_mut().unwrap().remove("reactions");
    assert_eq!(reply, sent["message"], "{history}");
    assert_eq!(sent["message"]["content"], "</script> \u{1}");
    assert_eq!(sent["message"]["metadata"]["nested"]["q"], "\"");
    assert_eq!(sent["message"]["parentId"], json!(parent));
}

#[tokio::test]
async fn idempotency_keys_are_scoped_per_sender_and_conversation() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g1 = alice.group("one", &["bob"]).await;
    let g2 = alice.group("two", &["bob"]).await;
    let h = [("X-Idempotency-Key", "shared-key")];
    let body = json!({"content": "same"});

    let a1 = expect_ok(
        "a1",
        send_with(&alice, &format!("/api/im/messages/{g1}"), body.clone(), &h).await,
        StatusCode::CREATED,
    );
    let b1 = expect_ok(
        "b1",
        send_with(&bob, &format!("/api/im/messages/{g1}"), body.clone(), &h).await,
        StatusCode::CREATED,
    );
    let a2 = expect_ok(
        "a2",
        send_with(&alice, &format!("/api/im/messages/{g2}"), body.clone(), &h).await,
        StatusCode::CREATED,
    );
    // Another sender's or another conversation's use of the key does not clash, even with
    // different content.
    let b2 = expect_ok(
        "b2",
        send_with(
            &bob,
            &format!("/api/im/messages/{g2}"),
            json!({"content": "different"}),
            &h,
        )
        .await,
        StatusCode::CREATED,
    );
    let set: HashSet<_> = [&a1, &b1, &a2, &b2]
        .iter()
        .map(|d| str_of(&d["message"]["id"]))
        .collect();
    assert_eq!(set.len(), 4);
    assert_eq!(history(&alice, &g1, "").await.len(), 2);
    assert_eq!(history(&alice, &g2, "").await.len(), 2);

    // The key belongs to the conversation, not the route: direct and messages routes share it.
    let d = expect_ok(
        "direct",
        send_with(
            &alice,
            "/api/im/direct/bob/messages",
            json!({"content": "dm"}),
            &h,
        )
        .await,
        StatusCode::CREATED,
    );
    let conv = str_of(&d["conversationId"]);
    let again = expect_ok(
        "messages route",
        send_with(
            &alice,
            &format!("/api/im/messages/{conv}"),
            json!({"content": "dm"}),
            &h,
        )
        .await,
        StatusCode::CREATED,
    );
    assert_eq!(again["message"]["id"], d["message"]["id"]);
    let again = expect_ok(
        "direct again by id",
        send_with(
            &alice,
            &format!("/api/im/direct/{}/messages", bob.user_id),
            json!({"content": "dm"}),
            &h,
        )
        .await,
        StatusCode::CREATED,
    );
    assert_eq!(again["message"]["id"], d["message"]["id"]);
    // And the groups route.
    let gr = expect_ok(
        "groups route",
        send_with(
            &alice,
            &format!("/api/im/groups/{g1}/messages"),
            body.clone(),
            &h,
        )
        .await,
        StatusCode::CREATED,
    );
    assert_eq!(gr["message"]["id"], a1["message"]["id"]);
    assert_eq!(history(&bob, &conv, "").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_sends_with_one_key_make_one_message() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;

    let path = format!("/api/im/messages/{g}");
    let mut tasks = Vec::new();
    for i in 0..24 {
        let api = alice.clone();
        let path = path.clone();
        // Mix the three ways of passing the key.
        let (body, header) = match i % 3 {
            0 => (json!({"content": "race"}), true),
            1 => (
                json!({"content": "race", "idempotencyKey": "race-key"}),
                false,
            ),
            _ => (
                json!({"content": "race", "metadata": {"_idempotencyKey": "race-key"}}),
                false,
            ),
        };
        tasks.push(tokio::spawn(async move {
            let headers: &[(&str, &str)] = if header {
                &[("X-Idempotency-Key", "race-key")]
            } else {
                &[]
            };
            api.request(Method::POST, &path, Some(body), headers).await
        }));
    }
    let mut ids_seen = HashSet::new();
    let mut created = 0;
    for t in tasks {
        let (s, b) = t.await.unwrap();
        assert_eq!(s, StatusCode::CREATED, "{b}");
        ids_seen.insert(str_of(&b["data"]["message"]["id"]));
        if b["data"]["duplicate"] == false {
            created += 1;
        }
    }
    assert_eq!(
        ids_seen.len(),
        1,
        "racing sends made several messages: {ids_seen:?}"
    );
    assert_eq!(created, 1);
    let id = ids_seen.into_iter().next().unwrap();
    assert_eq!(history(&bob, &g, "").await, vec![id.clone()]);
    let (events, _) = bob.sync_all(0, 100).await;
    assert_eq!(count_events(&events, "message.new", &id), 1);
    assert_eq!(
        events.iter().filter(|e| e["type"] == "message.new").count(),
        1
    );

    // Racing first messages to a new direct peer: one conversation, one message.
    let carol = srv.user("carol").await;
    let h = [("X-Idempotency-Key", "dm-race")];
    let by_id = format!("/api/im/direct/{}/messages", carol.user_id);
    let (r1, r2, r3) = tokio::join!(
        send_with(
            &alice,
            "/api/im/direct/carol/messages",
            json!({"content": "hey"}),
            &h
        ),
        send_with(
            &alice,
            "/api/im/direct/carol/messages",
            json!({"content": "hey"}),
            &h
        ),
        send_with(&alice, &by_id, json!({"content": "hey"}), &h),
    );
    let mut ids_seen = HashSet::new();
    let mut convs = HashSet::new();
    for (s, b) in [r1, r2, r3] {
        assert_eq!(s, StatusCode::CREATED, "{b}");
        ids_seen.insert(str_of(&b["data"]["message"]["id"]));
        convs.insert(str_of(&b["data"]["conversationId"]));
    }
    assert_eq!(ids_seen.len(), 1);
    assert_eq!(convs.len(), 1);
    let conv = convs.into_iter().next().unwrap();
    assert_eq!(history(&carol, &conv, "").await.len(), 1);
    let list = expect_ok(
        "carol list",
        carol.get("/api/im/conversations").await,
        StatusCode::OK,
    );
    assert_eq!(list.as_array().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Cross-cutting failures
// ---------------------------------------------------------------------------------------------

/// Every authenticated route with a plausible body: (method, path, body).
fn authenticated_routes(conv: &str, msg: &str, user: &str) -> Vec<(Method, String, Option<Value>)> {
    let c = conv;
    vec![
        (Method::GET, "/api/im/me".into(), None),
        (
            Method::PATCH,
            "/api/im/me".into(),
            Some(json!({"displayName": "x"})),
        ),
        (Method::DELETE, "/api/im/me".into(), None),
        (Method::POST, "/api/im/token/refresh".into(), None),
        (
            Method::POST,
            format!("/api/im/direct/{user}/messages"),
            Some(json!({"content": "x"})),
        ),
        (Method::GET, format!("/api/im/direct/{user}/messages"), None),
        (
            Method::POST,
            "/api/im/groups".into(),
            Some(json!({"title": "x"})),
        ),
        (Method::GET, "/api/im/groups".into(), None),
        (Method::GET, format!("/api/im/groups/{c}"), None),
        (
            Method::POST,
            format!("/api/im/groups/{c}/messages"),
            Some(json!({"content": "x"})),
        ),
        (Method::GET, format!("/api/im/groups/{c}/messages"), None),
        (
            Method::POST,
            format!("/api/im/groups/{c}/members"),
            Some(json!({"userId": user})),
        ),
        (
            Method::DELETE,
            format!("/api/im/groups/{c}/members/{user}"),
            None,
        ),
        (Method::GET, "/api/im/conversations".into(), None),
        (Method::GET, format!("/api/im/conversations/{c}"), None),
        (
            Method::PATCH,
            format!("/api/im/conversations/{c}"),
            Some(json!({"title": "x"})),
        ),
        (Method::DELETE, format!("/api/im/conversations/{c}"), None),
        (
            Method::POST,
            "/api/im/conversations/direct".into(),
            Some(json!({"otherUserId": user})),
        ),
        (
            Method::POST,
            "/api/im/conversations/group".into(),
            Some(json!({"title": "x"})),
        ),
        (
            Method::POST,
            format!("/api/im/conversations/{c}/read"),
            None,
        ),
        (
            Method::POST,
            format!("/api/im/conversations/{c}/archive"),
            None,
        ),
        (
            Method::POST,
            format!("/api/im/conversations/{c}/unarchive"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/im/conversations/{c}/pin"),
            Some(json!({"pinned": true})),
        ),
        (
            Method::PATCH,
            format!("/api/im/conversations/{c}/mute"),
            Some(json!({"muted": true})),
        ),
        (
            Method::POST,
            format!("/api/im/conversations/{c}/participants"),
            Some(json!({"userId": user})),
        ),
        (
            Method::DELETE,
            format!("/api/im/conversations/{c}/participants/{user}"),
            None,
        ),
        (
            Method::POST,
            format!("/api/im/messages/{c}"),
            Some(json!({"content": "x"})),
        ),
        (Method::GET, format!("/api/im/messages/{c}"), None),
        (
            Method::PATCH,
            format!("/api/im/messages/{c}/{msg}"),
            Some(json!({"content": "x"})),
        ),
        (Method::DELETE, format!("/api/im/messages/{c}/{msg}"), None),
        (
            Method::POST,
            format!("/api/im/messages/{c}/{msg}/reactions"),
            Some(json!({"emoji": "x"})),
        ),
        (
            Method::POST,
            "/api/im/messages/delivered".into(),
            Some(json!({"conversationId": c, "messageIds": [msg]})),
        ),
        (Method::GET, "/api/im/contacts".into(), None),
        (Method::GET, format!("/api/im/users/{user}"), None),
        (Method::GET, "/api/im/users/by-username/alice".into(), None),
        (
            Method::POST,
            "/api/im/presence/batch".into(),
            Some(json!({"userIds": [user]})),
        ),
        (Method::GET, "/api/im/sync".into(), None),
    ]
}

#[tokio::test]
async fn missing_or_invalid_token_is_401_everywhere() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let m = str_of(&alice.send(&g, "x").await["id"]);
    let anon = srv.client();
    let bogus = with_token(&srv, "definitely-not-a-token");
    for (method, path, body) in authenticated_routes(&g, &m, &bob.user_id) {
        for (who, api) in [("no token", &anon), ("bad token", &bogus)] {
            let got = api.request(method.clone(), &path, body.clone(), &[]).await;
            expect_err(
                &format!("{who} {method} {path}"),
                &got,
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
            );
        }
    }
    // Other ways of carrying a token: a wrong scheme is no token; X-Auth-Token works.
    let resp = alice
        .http
        .get(format!("{}/api/im/me", srv.base))
        .header(
            "authorization",
            format!("Basic {}", alice.token.as_ref().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = alice
        .http
        .get(format!("{}/api/im/me", srv.base))
        .header("x-auth-token", alice.token.as_ref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Nothing above changed state.
    assert_eq!(history(&alice, &g, "").await, vec![m]);
    expect_ok(
        "alice still exists",
        alice.get("/api/im/me").await,
        StatusCode::OK,
    );
}

#[tokio::test]
async fn non_participants_are_refused_403() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let g = alice.group("team", &["bob"]).await;
    let dm = direct(&alice, &bob).await;
    let carol_sync_start = {
        let (_, cursor) = carol.sync_all(0, 100).await;
        cursor
    };
    for conv in [&g, &dm] {
        let m = str_of(&alice.send(conv, "secret").await["id"]);
        let c = conv.as_str();
        let refused: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, format!("/api/im/conversations/{c}"), None),
            (Method::GET, format!("/api/im/messages/{c}"), None),
            (
                Method::GET,
                format!("/api/im/messages/{c}?before={m}"),
                None,
            ),
            (
                Method::POST,
                format!("/api/im/messages/{c}"),
                Some(json!({"content": "hi"})),
            ),
            (
                Method::POST,
                format!("/api/im/messages/{c}"),
                Some(json!({"content": "hi", "idempotencyKey": "k"})),
            ),
            (
                Method::PATCH,
                format!("/api/im/messages/{c}/{m}"),
                Some(json!({"content": "x"})),
            ),
            (Method::DELETE, format!("/api/im/messages/{c}/{m}"), None),
            (
                Method::POST,
                format!("/api/im/messages/{c}/{m}/reactions"),
                Some(json!({"emoji": "👀"})),
            ),
            (
                Method::POST,
                "/api/im/messages/delivered".into(),
                Some(json!({"conversationId": c, "messageIds": [m]})),
            ),
            (
                Method::POST,
                format!("/api/im/conversations/{c}/read"),
                None,
            ),
            (
                Method::PATCH,
                format!("/api/im/conversations/{c}"),
                Some(json!({"title": "mine"})),
            ),
            (
                Method::POST,
                format!("/api/im/conversations/{c}/archive"),
                None,
            ),
            (
                Method::POST,
                format!("/api/im/conversations/{c}/unarchive"),
                None,
            ),
            (
                Method::PATCH,
                format!("/api/im/conversations/{c}/pin"),
                Some(json!({"pinned": true})),
            ),
            (
                Method::PATCH,
                format!("/api/im/conversations/{c}/mute"),
                Some(json!({"muted": true})),
            ),
            (Method::DELETE, format!("/api/im/conversations/{c}"), None),
            (
                Method::POST,
                format!("/api/im/conversations/{c}/participants"),
                Some(json!({"userId": carol.user_id})),
            ),
            (
                Method::DELETE,
                format!("/api/im/conversations/{c}/participants/{}", bob.user_id),
                None,
            ),
        ];
        for (method, path, body) in refused {
            let got = carol.request(method.clone(), &path, body, &[]).await;
            expect_err(
                &format!("{method} {path}"),
                &got,
                StatusCode::FORBIDDEN,
                "NOT_PARTICIPANT",
            );
        }
    }
    for (method, path, body) in [
        (Method::GET, format!("/api/im/groups/{g}"), None),
        (Method::GET, format!("/api/im/groups/{g}/messages"), None),
        (
            Method::POST,
            format!("/api/im/groups/{g}/messages"),
            Some(json!({"content": "hi"})),
        ),
        (
            Method::POST,
            format!("/api/im/groups/{g}/members"),
            Some(json!({"userId": "carol"})),
        ),
        (
            Method::DELETE,
            format!("/api/im/groups/{g}/members/{}", bob.user_id),
            None,
        ),
    ] {
        let got = carol.request(method.clone(), &path, body, &[]).await;
        expect_err(
            &format!("{method} {path}"),
            &got,
            StatusCode::FORBIDDEN,
            "NOT_PARTICIPANT",
        );
    }
    // Sync simply does not show those conversations.
    let (events, _) = carol.sync_all(0, 100).await;
    for e in &events {
        assert!(
            e["conversationId"] != json!(g) && e["conversationId"] != json!(dm),
            "carol saw {e}"
        );
    }
    let d = expect_ok(
        "sync since",
        carol
            .get(&format!("/api/im/sync?since={carol_sync_start}"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(d["events"], json!([]));
    // Nor her lists, and nothing she tried left a trace.
    let list = expect_ok(
        "carol list",
        carol.get("/api/im/conversations").await,
        StatusCode::OK,
    );
    assert_eq!(list, json!([]));
    let c = expect_ok(
        "alice get",
        alice.get(&format!("/api/im/conversations/{g}")).await,
        StatusCode::OK,
    );
    assert_eq!(c["title"], "team");
    assert_eq!(c["archived"], false);
    assert_eq!(c["participants"].as_array().unwrap().len(), 2);
    assert_eq!(history(&bob, &g, "").await.len(), 1);
    let (_, h) = bob.get(&format!("/api/im/messages/{g}")).await;
    assert_eq!(h["data"][0]["content"], "secret");
    assert_eq!(h["data"][0].get("editedAt"), None);
}

#[tokio::test]
async fn malformed_json_is_400_on_every_body_route() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let m = str_of(&alice.send(&g, "x").await["id"]);
    let routes: Vec<(Method, String)> = authenticated_routes(&g, &m, &bob.user_id)
        .into_iter()
        .filter(|(_, _, body)| body.is_some())
        .map(|(method, path, _)| (method, path))
        .chain([
            (Method::POST, "/api/im/register".to_owned()),
            (Method::POST, "/api/im/users/register".to_owned()),
            (Method::POST, "/api/im/users/login".to_owned()),
        ])
        .collect();
    assert!(routes.len() >= 17);
    for (method, path) in &routes {
        for raw in ["{", "{\"a\":}", "[1,", "nope", "   ", ""] {
            let got = alice.raw(method.clone(), path, raw).await;
            expect_err(
                &format!("{method} {path} {raw:?}"),
                &got,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
            );
        }
        // A JSON value of the wrong shape.
        let got = alice.raw(method.clone(), path, "42").await;
        expect_err(
            &format!("{method} {path} 42"),
            &got,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    // The caller is intact: nothing was changed by any of those.
    let me = expect_ok("me", alice.get("/api/im/me").await, StatusCode::OK);
    assert_eq!(me["user"]["displayName"], "alice");
    assert_eq!(history(&alice, &g, "").await, vec![m]);
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let _bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let m = str_of(&alice.send(&g, "x").await["id"]);
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/im/conversations/zzz".into(), None),
        (
            Method::PATCH,
            "/api/im/conversations/zzz".into(),
            Some(json!({"title": "x"})),
        ),
        (Method::DELETE, "/api/im/conversations/zzz".into(), None),
        (Method::POST, "/api/im/conversations/zzz/read".into(), None),
        (
            Method::POST,
            "/api/im/conversations/zzz/participants".into(),
            Some(json!({"userId": "bob"})),
        ),
        (
            Method::DELETE,
            "/api/im/conversations/zzz/participants/bob".into(),
            None,
        ),
        (Method::GET, "/api/im/messages/zzz".into(), None),
        (
            Method::POST,
            "/api/im/messages/zzz".into(),
            Some(json!({"content": "x"})),
        ),
        (
            Method::PATCH,
            format!("/api/im/messages/{g}/zzz"),
            Some(json!({"content": "x"})),
        ),
        (Method::DELETE, format!("/api/im/messages/{g}/zzz"), None),
        (
            Method::POST,
            format!("/api/im/messages/{g}/zzz/reactions"),
            Some(json!({"emoji": "x"})),
        ),
        (
            Method::PATCH,
            format!("/api/im/messages/zzz/{m}"),
            Some(json!({"content": "x"})),
        ),
        (Method::GET, "/api/im/groups/zzz".into(), None),
        (Method::GET, "/api/im/groups/zzz/messages".into(), None),
        (
            Method::POST,
            "/api/im/groups/zzz/members".into(),
            Some(json!({"userId": "bob"})),
        ),
        (
            Method::POST,
            format!("/api/im/groups/{g}/members"),
            Some(json!({"userId": "zzz"})),
        ),
        (
            Method::POST,
            "/api/im/conversations/direct".into(),
            Some(json!({"otherUserId": "zzz"})),
        ),
        (
            Method::POST,
            "/api/im/direct/zzz/messages".into(),
            Some(json!({"content": "x"})),
        ),
        (Method::GET, "/api/im/direct/zzz/messages".into(), None),
        (Method::GET, "/api/im/users/zzz".into(), None),
        (Method::GET, "/api/im/users/by-username/zzz".into(), None),
    ];
    for (method, path, body) in cases {
        let got = alice.request(method.clone(), &path, body, &[]).await;
        expect_err(
            &format!("{method} {path}"),
            &got,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let srv = TestServer::start_with(Options {
        max_body_bytes: Some(1024),
        ..Default::default()
    })
    .await;
    let alice = srv.user("alice").await;
    let _bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let big = "x".repeat(2048);
    for (method, path, body) in [
        (
            Method::POST,
            format!("/api/im/messages/{g}"),
            json!({"content": big}),
        ),
        (
            Method::POST,
            format!("/api/im/groups/{g}/messages"),
            json!({"content": big}),
        ),
        (
            Method::POST,
            "/api/im/direct/bob/messages".into(),
            json!({"content": big}),
        ),
        (Method::PATCH, "/api/im/me".into(), json!({"bio": big})),
        (
            Method::POST,
            "/api/im/register".into(),
            json!({"username": "carol", "description": big}),
        ),
        (
            Method::POST,
            "/api/im/groups".into(),
            json!({"title": "t", "description": big}),
        ),
    ] {
        let got = alice.request(method.clone(), &path, Some(body), &[]).await;
        expect_err(
            &format!("{method} {path}"),
            &got,
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
        );
    }
    // Under the limit is fine, and nothing oversized got through.
    alice.send(&g, "small").await;
    assert_eq!(history(&alice, &g, "").await.len(), 1);
    expect_err(
        "carol was not registered",
        &alice.get("/api/im/users/by-username/carol").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_json() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    for path in [
        "/api/im/nope",
        "/api/im/messages",
        "/nothing/here",
        "/api/im/conversations/a/b/c/d",
    ] {
        expect_err(
            path,
            &alice.get(path).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        );
        expect_err(
            path,
            &srv.client().get(path).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        );
    }
    for (method, path) in [
        (Method::PUT, "/api/im/me"),
        (Method::POST, "/api/im/me"),
        (Method::GET, "/api/im/register"),
        (Method::DELETE, "/api/im/sync"),
        (Method::GET, "/api/im/messages/c/m"),
        (Method::PUT, "/api/im/conversations"),
        (Method::GET, "/api/im/presence/batch"),
        (Method::POST, "/healthz"),
    ] {
        let got = alice.request(method.clone(), path, None, &[]).await;
        expect_err(
            &format!("{method} {path}"),
            &got,
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
        );
    }
}

#[tokio::test]
async fn rate_limit_answers_429() {
    let srv = TestServer::start_with(Options {
        rate_limit: Some(2),
        ..Default::default()
    })
    .await;
    let api = srv.client();
    // The bucket holds 2 × 2 requests; 40 in a row cannot all fit however fast it refills.
    let mut limited = None;
    let mut allowed = 0;
    for _ in 0..40 {
        let resp = api
            .http
            .get(format!("{}/api/im/health", srv.base))
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry = resp.headers().get("retry-after").cloned();
            let body: Value = resp.json().await.unwrap();
            limited = Some((retry, body));
            break;
        }
        assert_eq!(resp.status(), StatusCode::OK);
        allowed += 1;
    }
    let (retry, body) = limited.expect("no request was rate limited");
    assert!(allowed >= 1, "the first requests must pass");
    assert!(retry.is_some(), "429 without Retry-After");
    expect_err(
        "429",
        &(StatusCode::TOO_MANY_REQUESTS, body),
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
    );
}

#[tokio::test]
async fn metrics_and_openapi() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let scrape = || async {
        let resp = srv
            .client()
            .http
            .get(format!("{}/metrics", srv.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.text().await.unwrap()
    };
    // The recorder is shared by every server of this test process: count this test's requests
    // on a route no other test of it calls.
    let count = |text: &str| -> u64 {
        let labels = r#"route="/openapi.json",method="GET",status="200""#;
        text.lines()
            .filter(|l| l.starts_with("imsync_http_requests_total{") && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    alice.get("/api/im/me").await;
    let before = scrape().await;
    for _ in 0..3 {
        alice.get("/openapi.json").await;
    }
    let text = scrape().await;
    assert!(text.contains("imsync_http_requests_total"), "{text}");
    assert!(
        text.contains("imsync_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert_eq!(count(&text) - count(&before), 3, "{text}");

    let (s, doc) = srv.client().get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    let expected = [
        ("/api/im/register", "post"),
        ("/api/im/users/register", "post"),
        ("/api/im/users/login", "post"),
        ("/api/im/me", "get"),
        ("/api/im/me", "patch"),
        ("/api/im/me", "delete"),
        ("/api/im/token/refresh", "post"),
        ("/api/im/logout", "post"),
        ("/api/im/health", "get"),
        ("/api/im/direct/{userId}/messages", "post"),
        ("/api/im/direct/{userId}/messages", "get"),
        ("/api/im/groups", "post"),
        ("/api/im/groups", "get"),
        ("/api/im/groups/{id}", "get"),
        ("/api/im/groups/{id}/messages", "post"),
        ("/api/im/groups/{id}/messages", "get"),
        ("/api/im/groups/{id}/members", "post"),
        ("/api/im/groups/{id}/members/{userId}", "delete"),
        ("/api/im/conversations", "get"),
        ("/api/im/conversations/{id}", "get"),
        ("/api/im/conversations/{id}", "patch"),
        ("/api/im/conversations/{id}", "delete"),
        ("/api/im/conversations/direct", "post"),
        ("/api/im/conversations/group", "post"),
        ("/api/im/conversations/{id}/read", "post"),
        ("/api/im/conversations/{id}/archive", "post"),
        ("/api/im/conversations/{id}/unarchive", "post"),
        ("/api/im/conversations/{id}/pin", "patch"),
        ("/api/im/conversations/{id}/mute", "patch"),
        ("/api/im/conversations/{id}/participants", "post"),
        ("/api/im/conversations/{id}/participants/{userId}", "delete"),
        ("/api/im/messages/{conversationId}", "post"),
        ("/api/im/messages/{conversationId}", "get"),
        ("/api/im/messages/{conversationId}/{messageId}", "patch"),
        ("/api/im/messages/{conversationId}/{messageId}", "delete"),
        (
            "/api/im/messages/{conversationId}/{messageId}/reactions",
            "post",
        ),
        ("/api/im/messages/delivered", "post"),
        ("/api/im/contacts", "get"),
        ("/api/im/contacts/request", "post"),
        ("/api/im/contacts/requests/received", "get"),
        ("/api/im/contacts/requests/sent", "get"),
        ("/api/im/contacts/requests/{id}/accept", "post"),
        ("/api/im/contacts/requests/{id}/reject", "post"),
        ("/api/im/contacts/friends", "get"),
        ("/api/im/contacts/{userId}/remove", "delete"),
        ("/api/im/contacts/{userId}/remark", "patch"),
        ("/api/im/contacts/{userId}/block", "post"),
        ("/api/im/contacts/{userId}/block", "delete"),
        ("/api/im/contacts/blocked", "get"),
        ("/api/im/users/{id}", "get"),
        ("/api/im/users/by-username/{username}", "get"),
        ("/api/im/presence/batch", "post"),
        ("/api/im/sync", "get"),
        ("/api/im/admin/users", "get"),
        ("/api/im/admin/users", "post"),
        ("/api/im/admin/users/{id}", "get"),
        ("/api/im/admin/users/{id}", "patch"),
        ("/api/im/admin/users/{id}/reset-password", "post"),
        ("/api/im/admin/users/{id}/logout", "post"),
        ("/api/im/files/presign", "post"),
        ("/api/im/files/confirm", "post"),
        ("/api/im/files/upload/init", "post"),
        ("/api/im/files/upload/complete", "post"),
        ("/api/im/files/upload/{id}", "post"),
        ("/api/im/files/upload/{id}/parts/{n}", "put"),
        ("/api/im/files/quota", "get"),
        ("/api/im/files/types", "get"),
        ("/api/im/files/{id}", "delete"),
        ("/api/im/files/{id}/content", "get"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "openapi.json lacks {method} {path}; has {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    // Clients generated from the document name their methods after the operationIds and read
    // the bodies it describes (interop_openapi checks those bodies against the server's).
    let mut operation_ids = std::collections::HashMap::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let Some(id) = op["operationId"].as_str() else {
                continue;
            };
            let here = format!("{method} {path}");
            if let Some(before) = operation_ids.insert(id.to_owned(), here.clone()) {
                panic!("operationId {id} of {here} repeats {before}");
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                // A body in some media type: JSON, or the bytes of a file download.
                if status.starts_with('2') {
                    assert!(
                        response["content"]
                            .as_object()
                            .is_some_and(|c| c.values().any(|m| m["schema"].is_object())),
                        "{here} {status} documents no body: {response}"
                    );
                }
            }
        }
    }
    assert_eq!(operation_ids.len(), expected.len(), "{operation_ids:?}");
}

#[tokio::test]
async fn sdk_style_requests_with_a_json_content_type_and_no_body() {
    // The Python SDK sends `Content-Type: application/json` on every request, bodies or not.
    let srv = TestServer::start().await;
    let mut alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    bob.send(&g, "x").await;
    for (method, path) in [
        (Method::GET, "/api/im/me".to_owned()),
        (Method::GET, "/api/im/conversations".to_owned()),
        (Method::GET, format!("/api/im/messages/{g}")),
        (Method::GET, "/api/im/sync?since=0&limit=100".to_owned()),
        (Method::POST, format!("/api/im/conversations/{g}/read")),
        (Method::POST, format!("/api/im/conversations/{g}/archive")),
        (Method::POST, format!("/api/im/conversations/{g}/unarchive")),
        (Method::POST, "/api/im/token/refresh".to_owned()),
        (
            Method::DELETE,
            format!("/api/im/groups/{g}/members/{}", bob.user_id),
        ),
    ] {
        let (s, b) = alice.raw(method.clone(), &path, "").await;
        assert_eq!(s, StatusCode::OK, "{method} {path}: {b}");
        assert_eq!(b["ok"], true, "{method} {path}: {b}");
        if path.ends_with("/token/refresh") {
            // A refresh retires the token it was given.
            alice.token = Some(b["data"]["token"].as_str().unwrap().to_owned());
        }
    }
    let (s, b) = alice
        .raw(Method::DELETE, &format!("/api/im/conversations/{g}"), "")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = alice.raw(Method::DELETE, "/api/im/me", "").await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn an_owner_leaving_hands_the_group_on() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let g = alice.group("team", &["bob"]).await;
    expect_ok(
        "add admin",
        alice
            .post(
                &format!("/api/im/conversations/{g}/participants"),
                json!({"userId": carol.user_id, "role": "admin"}),
            )
            .await,
        StatusCode::CREATED,
    );
    expect_ok(
        "owner leaves",
        alice.delete(&format!("/api/im/conversations/{g}")).await,
        StatusCode::OK,
    );
    // The admin is the heir; the member is not.
    let c = expect_ok(
        "get",
        bob.get(&format!("/api/im/conversations/{g}")).await,
        StatusCode::OK,
    );
    let ps = c["participants"].as_array().unwrap();
    assert_eq!(ps.len(), 2);
    let role_of = |id: &str| {
        ps.iter()
            .find(|p| p["id"] == json!(id))
            .map(|p| p["role"].clone())
    };
    assert_eq!(role_of(&carol.user_id), Some(json!("owner")));
    assert_eq!(role_of(&bob.user_id), Some(json!("member")));
    expect_ok(
        "heir updates",
        carol
            .patch(
                &format!("/api/im/conversations/{g}"),
                json!({"title": "mine"}),
            )
            .await,
        StatusCode::OK,
    );
    expect_err(
        "member still cannot",
        &bob.patch(
            &format!("/api/im/conversations/{g}"),
            json!({"title": "bob's"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
}

#[tokio::test]
async fn a_peer_who_left_a_direct_conversation_comes_back_with_the_next_message() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let d = direct(&alice, &bob).await;
    let first = str_of(&alice.send(&d, "first").await["id"]);
    expect_ok(
        "bob leaves",
        bob.delete(&format!("/api/im/conversations/{d}")).await,
        StatusCode::OK,
    );
    expect_err(
        "bob reads after leaving",
        &bob.get(&format!("/api/im/messages/{d}")).await,
        StatusCode::FORBIDDEN,
        "NOT_PARTICIPANT",
    );
    let again = expect_ok(
        "alice writes again",
        alice
            .post(
                "/api/im/direct/bob/messages",
                json!({"content": "still there?"}),
            )
            .await,
        StatusCode::CREATED,
    );
    assert_eq!(
        again["conversationId"],
        json!(d),
        "the pair keeps one conversation"
    );
    let second = str_of(&again["message"]["id"]);
    // Bob was present when `first` was sent, so both of his intervals show.
    assert_eq!(
        history(&bob, &d, "").await,
        vec![first.clone(), second.clone()]
    );
    let list = expect_ok(
        "bob list",
        bob.get("/api/im/conversations").await,
        StatusCode::OK,
    );
    assert!(find_conv(&list, &d).is_some(), "{list}");
    let (events, _) = bob.sync_all(0, 100).await;
    assert_eq!(count_events(&events, "message.new", &second), 1);
    assert_eq!(count_events(&events, "message.new", &first), 1);
}

#[tokio::test]
async fn messages_from_while_a_member_was_away_stay_hidden_after_rejoin() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let before = str_of(&alice.send(&g, "before").await["id"]);
    expect_ok(
        "remove bob",
        alice
            .delete(&format!("/api/im/groups/{g}/members/{}", bob.user_id))
            .await,
        StatusCode::OK,
    );
    let gap = str_of(&alice.send(&g, "while bob was away").await["id"]);
    expect_ok(
        "re-add bob",
        alice
            .post(
                &format!("/api/im/groups/{g}/members"),
                json!({"userId": "bob"}),
            )
            .await,
        StatusCode::CREATED,
    );
    let after = str_of(&alice.send(&g, "after").await["id"]);

    assert_eq!(
        history(&bob, &g, "").await,
        vec![before.clone(), after.clone()]
    );
    let (events, _) = bob.sync_all(0, 100).await;
    assert_eq!(count_events(&events, "message.new", &gap), 0);
    assert_eq!(count_events(&events, "message.new", &after), 1);
    for (label, got) in [
        (
            "cursor",
            bob.get(&format!("/api/im/messages/{g}?after={gap}")).await,
        ),
        (
            "react",
            bob.post(
                &format!("/api/im/messages/{g}/{gap}/reactions"),
                json!({"emoji": "👀"}),
            )
            .await,
        ),
        (
            "delivered",
            bob.post(
                "/api/im/messages/delivered",
                json!({"conversationId": g, "messageIds": [gap]}),
            )
            .await,
        ),
    ] {
        expect_err(label, &got, StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    // Unread counts only what bob could see.
    let list = expect_ok(
        "list",
        bob.get("/api/im/conversations").await,
        StatusCode::OK,
    );
    assert_eq!(find_conv(&list, &g).unwrap()["unreadCount"], 1, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_registrations_and_direct_creations_stay_unique() {
    let srv = TestServer::start().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let anon = srv.client();
        // Same name, different cases.
        let name = if i % 2 == 0 { "racer" } else { "RACER" };
        tasks.push(tokio::spawn(async move {
            anon.post(
                "/api/im/register",
                json!({"type": "agent", "username": name}),
            )
            .await
        }));
    }
    let mut created = 0;
    for t in tasks {
        let (s, b) = t.await.unwrap();
        if s == StatusCode::CREATED {
            created += 1;
        } else {
            expect_err("loser", &(s, b), StatusCode::CONFLICT, "USERNAME_TAKEN");
        }
    }
    assert_eq!(created, 1);

    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (me, other) = if i % 2 == 0 {
            (alice.clone(), bob.user_id.clone())
        } else {
            (bob.clone(), alice.user_id.clone())
        };
        tasks.push(tokio::spawn(async move {
            me.post(
                "/api/im/conversations/direct",
                json!({"otherUserId": other}),
            )
            .await
        }));
    }
    let mut ids_seen = HashSet::new();
    let mut created = 0;
    for t in tasks {
        let (s, b) = t.await.unwrap();
        assert!(s == StatusCode::CREATED || s == StatusCode::OK, "{b}");
        if s == StatusCode::CREATED {
            created += 1;
        }
        ids_seen.insert(str_of(&b["data"]["id"]));
    }
    assert_eq!(created, 1);
    assert_eq!(ids_seen.len(), 1);
    let list = expect_ok(
        "list",
        alice.get("/api/im/conversations").await,
        StatusCode::OK,
    );
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_a_given_one_comes_back() {
    let srv = TestServer::start().await;
    let http = &srv.client().http;
    let mut seen = HashSet::new();
    // A routed answer, the fallback's 404 and a 405: the id layer wraps the whole router.
    for (method, path) in [
        (Method::GET, "/healthz"),
        (Method::GET, "/no/such/route"),
        (Method::DELETE, "/healthz"),
    ] {
        let resp = http
            .request(method, format!("{}{path}", srv.base))
            .send()
            .await
            .unwrap();
        let id = resp
            .headers()
            .get("x-request-id")
            .unwrap_or_else(|| panic!("{path}: no x-request-id"))
            .to_str()
            .unwrap()
            .to_owned();
        // The server runs in this process: its ids start with this process's id.
        assert!(
            id.starts_with(&format!("{:x}-", std::process::id())),
            "{path}: {id}"
        );
        assert!(seen.insert(id), "{path}: request ids must differ");
    }
    let resp = http
        .get(format!("{}/healthz", srv.base))
        .header("x-request-id", "client-chosen-7")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-chosen-7");
}
