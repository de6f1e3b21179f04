//! The Rocket.Chat REST calls bots make to browse and keep their place (docs/rocketchat.md):
//! `users.list`, `channels.list`, `channels.counters`, `subscriptions.unread`,
//! `chat.getThreadsList`, and the history calls' time window (`latest`, `oldest`, `inclusive`,
//! `count`, `offset`), each with its parameter checks and with the visibility every face shares.

mod common;

use common::{Api, Options, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "secret-pass-1";

async fn server() -> TestServer {
    TestServer::start_with(Options {
        default_channel: Some("GENERAL".into()),
        ..Default::default()
    })
    .await
}

/// A password account with its native token, which the Rocket.Chat face takes too.
async fn account(srv: &TestServer, username: &str) -> Api {
    let (s, b) = srv
        .client()
        .post(
            "/api/im/users/register",
            json!({ "username": username, "password": PASSWORD, "displayName": username }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let mut api = Api::new(&srv.base, Some(b["data"]["token"].as_str().unwrap().into()));
    api.user_id = b["data"]["user"]["id"].as_str().unwrap().to_owned();
    api.username = username.to_owned();
    api
}

/// A Rocket.Chat REST call: its status and body.
async fn call(api: &Api, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let url = format!("{}/api/v1/{path}", api.base);
    let req = match method {
        "POST" => api.http.post(url).json(&body.unwrap_or(json!({}))),
        _ => api.http.get(url),
    };
    let resp = req
        .header("X-User-Id", &api.user_id)
        .header("X-Auth-Token", api.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

async fn ok_get(api: &Api, path: &str) -> Value {
    let (s, v) = call(api, "GET", path, None).await;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    assert_eq!(v["success"], true, "{path}: {v}");
    v
}

async fn ok_post(api: &Api, path: &str, body: Value) -> Value {
    let (s, v) = call(api, "POST", path, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{path}: {v}");
    assert_eq!(v["success"], true, "{path}: {v}");
    v
}

/// A 400 with the given `errorType`; answers the body.
async fn bad(api: &Api, method: &str, path: &str, body: Option<Value>, error_type: &str) -> Value {
    let (s, v) = call(api, method, path, body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
    assert_eq!(v["success"], false, "{path}: {v}");
    assert_eq!(v["errorType"], error_type, "{path}: {v}");
    v
}

async fn post_rc(api: &Api, rid: &str, text: &str, tmid: Option<&str>) -> Value {
    let mut message = json!({ "rid": rid, "msg": text });
    if let Some(t) = tmid {
        message["tmid"] = json!(t);
    }
    ok_post(api, "chat.sendMessage", json!({ "message": message })).await["message"].clone()
}

fn field<'a>(list: &'a Value, key: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| v[key].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn users_and_channels_lists() {
    let srv = server().await;
    let alice = account(&srv, "alice").await;
    let bob = account(&srv, "bob").await;
    let _carol = account(&srv, "carol").await;

    let v = ok_get(&alice, "users.list").await;
    assert_eq!(
        field(&v["users"], "username"),
        ["alice", "bob", "carol"],
        "{v}"
    );
    assert_eq!(
        (v["count"].clone(), v["total"].clone()),
        (json!(3), json!(3))
    );
    assert!(v["users"][0].get("services").is_none(), "no secrets: {v}");
    let v = ok_get(&alice, "users.list?count=1&offset=1").await;
    assert_eq!(field(&v["users"], "username"), ["bob"], "{v}");
    assert_eq!(
        (v["offset"].clone(), v["total"].clone()),
        (json!(1), json!(3))
    );
    bad(
        &alice,
        "GET",
        "users.list?count=many",
        None,
        "error-invalid-params",
    )
    .await;
    bad(
        &alice,
        "GET",
        "users.list?role=admin",
        None,
        "error-invalid-params",
    )
    .await;
    let (s, _) = srv.client().get("/api/v1/users.list").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Public channels are listed to everyone, joined or not; private groups are not.
    let lobby = ok_post(&bob, "channels.create", json!({ "name": "lobby" })).await["channel"]
        ["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok_post(&bob, "groups.create", json!({ "name": "secret" })).await;
    let v = ok_get(&alice, "channels.list").await;
    assert_eq!(
        field(&v["channels"], "_id"),
        ["GENERAL", lobby.as_str()],
        "{v}"
    );
    assert_eq!(v["channels"][1]["usersCount"], 1, "{v}");
    assert_eq!(v["channels"][1]["t"], "c", "{v}");
    let v = ok_get(&alice, "channels.list?count=1&offset=1").await;
    assert_eq!(field(&v["channels"], "name"), ["lobby"], "{v}");
    assert_eq!(v["total"], 2);
    bad(
        &alice,
        "GET",
        "channels.list?offset=x",
        None,
        "error-invalid-params",
    )
    .await;
}

#[tokio::test]
async fn counters_and_unread_share_the_read_pointer() {
    let srv = server().await;
    let alice = account(&srv, "alice").await;
    let bob = account(&srv, "bob").await;
    let carol = account(&srv, "carol").await;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(post_rc(&bob, "GENERAL", &format!("g{i}"), None).await);
    }

    let v = ok_get(&alice, "channels.counters?roomId=GENERAL").await;
    assert_eq!(v["joined"], true, "{v}");
    assert_eq!(v["unreads"], 3, "{v}");
    assert_eq!(v["msgs"], 3, "{v}");
    assert_eq!(v["members"], 3, "{v}");
    assert_eq!(v["latest"], sent[2]["ts"], "{v}");
    assert!(v["unreadsFrom"].is_string(), "{v}");
    let v = ok_get(&alice, "channels.counters?roomName=general").await;
    assert_eq!(v["unreads"], 3, "{v}");

    // A public channel the caller is not in answers, without unread figures.
    let lobby = ok_post(&bob, "channels.create", json!({ "name": "lobby" })).await["channel"]
        ["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = ok_get(&alice, &format!("channels.counters?roomId={lobby}")).await;
    assert_eq!(
        (
            v["joined"].clone(),
            v["unreads"].clone(),
            v["members"].clone()
        ),
        (json!(false), Value::Null, json!(1)),
        "{v}"
    );
    let secret = ok_post(&bob, "groups.create", json!({ "name": "secret" })).await["group"]["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("channels.counters?roomId={secret}");
    bad(&alice, "GET", &path, None, "error-room-not-found").await;
    bad(
        &alice,
        "GET",
        "channels.counters",
        None,
        "error-room-param-not-provided",
    )
    .await;
    let path = format!("channels.counters?roomId=GENERAL&userId={}", bob.user_id);
    bad(&alice, "GET", &path, None, "error-not-allowed").await;
    bad(
        &alice,
        "GET",
        "channels.counters?roomId=GENERAL&x=1",
        None,
        "error-invalid-params",
    )
    .await;

    // Read, then unread from the second message: REST, the native face and counters agree.
    ok_post(&alice, "subscriptions.read", json!({ "rid": "GENERAL" })).await;
    assert_eq!(
        ok_get(&alice, "channels.counters?roomId=GENERAL").await["unreads"],
        0
    );
    let from = sent[1]["_id"].as_str().unwrap();
    ok_post(
        &alice,
        "subscriptions.unread",
        json!({ "firstUnreadMessage": { "_id": from } }),
    )
    .await;
    let v = ok_get(&alice, "subscriptions.getOne?roomId=GENERAL").await;
    assert_eq!(v["subscription"]["unread"], 2, "{v}");
    assert_eq!(
        ok_get(&alice, "channels.counters?roomId=GENERAL").await["unreads"],
        2
    );
    let (s, list) = alice.get("/api/im/conversations?withUnread=true").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let general = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "GENERAL")
        .unwrap_or_else(|| panic!("no GENERAL: {list}"));
    assert_eq!(
        general["unreadCount"], 2,
        "the native face reads the same pointer: {general}"
    );

    // `{roomId}` marks the newest message unread.
    ok_post(&alice, "subscriptions.read", json!({ "rid": "GENERAL" })).await;
    ok_post(
        &alice,
        "subscriptions.unread",
        json!({ "roomId": "GENERAL" }),
    )
    .await;
    let v = ok_get(&alice, "subscriptions.getOne?roomId=GENERAL").await;
    assert_eq!(v["subscription"]["unread"], 1, "{v}");

    // Bad bodies, rooms without messages, messages the caller cannot see.
    bad(
        &alice,
        "POST",
        "subscriptions.unread",
        Some(json!({})),
        "invalid-params",
    )
    .await;
    let both = json!({ "roomId": "GENERAL", "firstUnreadMessage": { "_id": from } });
    bad(
        &alice,
        "POST",
        "subscriptions.unread",
        Some(both),
        "invalid-params",
    )
    .await;
    let no_id = json!({ "firstUnreadMessage": {} });
    bad(
        &alice,
        "POST",
        "subscriptions.unread",
        Some(no_id),
        "invalid-params",
    )
    .await;
    let unknown = json!({ "firstUnreadMessage": { "_id": "nope" } });
    bad(
        &alice,
        "POST",
        "subscriptions.unread",
        Some(unknown),
        "error-action-not-allowed",
    )
    .await;
    let empty = json!({ "roomId": lobby });
    bad(
        &bob,
        "POST",
        "subscriptions.unread",
        Some(empty),
        "error-no-message-for-unread",
    )
    .await;
    let hidden = post_rc(&bob, &secret, "for members", None).await;
    let other = json!({ "firstUnreadMessage": { "_id": hidden["_id"] } });
    bad(
        &carol,
        "POST",
        "subscriptions.unread",
        Some(other),
        "error-action-not-allowed",
    )
    .await;
}

#[tokio::test]
async fn threads_list_by_type_text_and_sort() {
    let srv = server().await;
    let alice = account(&srv, "alice").await;
    let bob = account(&srv, "bob").await;
    let carol = account(&srv, "carol").await;
    let room = ok_post(
        &bob,
        "groups.create",
        json!({ "name": "crew", "members": ["alice"] }),
    )
    .await["group"]["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p1 = post_rc(&bob, &room, "Deploy plan", None).await;
    let p2 = post_rc(&alice, &room, "lunch?", None).await;
    post_rc(&bob, &room, "no thread here", None).await;
    let p1_id = p1["_id"].as_str().unwrap();
    let p2_id = p2["_id"].as_str().unwrap();
    post_rc(&alice, &room, "on it", Some(p1_id)).await;
    ok_post(&alice, "subscriptions.read", json!({ "rid": room })).await;
    post_rc(&bob, &room, "pizza", Some(p2_id)).await;

    let list = |q: &str| format!("chat.getThreadsList?rid={room}{q}");
    let v = ok_get(&alice, &list("")).await;
    assert_eq!(
        field(&v["threads"], "_id"),
        [p2_id, p1_id],
        "latest reply first: {v}"
    );
    assert_eq!(v["threads"][0]["tcount"], 1, "{v}");
    assert_eq!(v["total"], 2);
    let v = ok_get(&alice, &list("&sort={\"tlm\":1}")).await;
    assert_eq!(field(&v["threads"], "_id"), [p1_id, p2_id], "{v}");
    let v = ok_get(&alice, &list("&sort={\"ts\":-1}&count=1")).await;
    assert_eq!(field(&v["threads"], "_id"), [p2_id], "{v}");
    assert_eq!(v["total"], 2);
    let v = ok_get(&alice, &list("&text=DEPLOY")).await;
    assert_eq!(field(&v["threads"], "_id"), [p1_id], "{v}");
    // Alice started p2 and replied in p1, so she follows both; her unread one is p2 (bob's reply
    // came after her read).
    let v = ok_get(&alice, &list("&type=unread")).await;
    assert_eq!(field(&v["threads"], "_id"), [p2_id], "{v}");
    // Bob's own later message moved his pointer past alice's reply.
    let v = ok_get(&bob, &list("&type=unread")).await;
    assert_eq!(v["threads"], json!([]), "{v}");
    let v = ok_get(&alice, &list("&type=following")).await;
    assert_eq!(field(&v["threads"], "_id"), [p2_id, p1_id], "{v}");

    bad(
        &alice,
        "GET",
        "chat.getThreadsList",
        None,
        "error-invalid-params",
    )
    .await;
    bad(
        &alice,
        "GET",
        &list("&type=mine"),
        None,
        "error-invalid-params",
    )
    .await;
    bad(
        &alice,
        "GET",
        &list("&sort=tlm"),
        None,
        "error-invalid-sort",
    )
    .await;
    let v = bad(&carol, "GET", &list(""), None, "error-not-allowed").await;
    assert_eq!(v["error"], "Not Allowed [error-not-allowed]", "{v}");
    bad(
        &alice,
        "GET",
        "chat.getThreadsList?rid=nope",
        None,
        "error-not-allowed",
    )
    .await;
}

#[tokio::test]
async fn history_window_latest_oldest_inclusive() {
    let srv = server().await;
    let alice = account(&srv, "alice").await;
    let bob = account(&srv, "bob").await;
    let carol = account(&srv, "carol").await;
    let room = ok_post(
        &bob,
        "groups.create",
        json!({ "name": "log", "members": ["alice"] }),
    )
    .await["group"]["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ts = Vec::new();
    for i in 0..5 {
        let m = post_rc(&bob, &room, &format!("m{i}"), None).await;
        ts.push(m["ts"].as_str().unwrap().to_owned());
    }
    let texts = |v: &Value| -> Vec<String> {
        field(&v["messages"], "msg")
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let hist = |q: String| format!("groups.history?roomId={room}{q}");

    let v = ok_get(&alice, &hist(String::new())).await;
    assert_eq!(texts(&v), ["m4", "m3", "m2", "m1", "m0"]);
    let v = ok_get(&alice, &hist(format!("&latest={}", ts[3]))).await;
    assert_eq!(texts(&v), ["m2", "m1", "m0"], "latest is exclusive");
    let v = ok_get(&alice, &hist(format!("&latest={}&inclusive=true", ts[3]))).await;
    assert_eq!(texts(&v), ["m3", "m2", "m1", "m0"]);
    let v = ok_get(&alice, &hist(format!("&oldest={}", ts[1]))).await;
    assert_eq!(texts(&v), ["m4", "m3", "m2"], "oldest is exclusive");
    let q = format!("&oldest={}&latest={}&inclusive=true", ts[1], ts[3]);
    let v = ok_get(&alice, &hist(q)).await;
    assert_eq!(texts(&v), ["m3", "m2", "m1"]);
    let q = format!("&latest={}&count=1&offset=1", ts[4]);
    let v = ok_get(&alice, &hist(q)).await;
    assert_eq!(texts(&v), ["m2"]);
    assert_eq!(v["offset"], 1);
    let v = ok_get(&alice, &hist(format!("&oldest={}", ts[4]))).await;
    assert_eq!(texts(&v), Vec::<String>::new());

    bad(
        &alice,
        "GET",
        &hist("&latest=yesterday".into()),
        None,
        "error-invalid-date",
    )
    .await;
    bad(
        &alice,
        "GET",
        &hist("&oldest=x".into()),
        None,
        "error-invalid-date",
    )
    .await;
    bad(
        &alice,
        "GET",
        &hist("&count=lots".into()),
        None,
        "error-invalid-params",
    )
    .await;
    bad(
        &alice,
        "GET",
        &hist("&before=1".into()),
        None,
        "error-invalid-params",
    )
    .await;

    // A member added later reads from their joining on; once removed, nothing.
    ok_post(
        &bob,
        "groups.invite",
        json!({ "roomId": room, "userId": carol.user_id }),
    )
    .await;
    post_rc(&bob, &room, "m5", None).await;
    let v = ok_get(&carol, &hist(String::new())).await;
    assert_eq!(texts(&v), ["m5"], "{v}");
    let v = ok_get(&carol, &hist(format!("&latest={}&inclusive=true", ts[4]))).await;
    assert_eq!(texts(&v), Vec::<String>::new(), "{v}");
    ok_post(
        &bob,
        "groups.kick",
        json!({ "roomId": room, "userId": carol.user_id }),
    )
    .await;
    bad(
        &carol,
        "GET",
        &hist(String::new()),
        None,
        "error-room-not-found",
    )
    .await;
}
