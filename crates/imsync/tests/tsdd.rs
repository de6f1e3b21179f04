//! The TangSengDaoDao / WuKongIM face (docs/tsdd.md): login and the `token:` header, every
//! `/v1` endpoint's success and failure, multi-device behaviour through `version`, and a seeded
//! randomized test that an incremental client's view always equals a fresh full sync.

mod common;

use common::{Api, TestServer};
use futures_util::future::join_all;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A TangSengDaoDao client: the `token:` header for `/v1`, and a native client for the same
/// account (to change things through another face).
#[derive(Clone)]
struct Tsdd {
    raw: Api,
    native: Api,
    token: String,
    uid: String,
    username: String,
}

impl Tsdd {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.raw
            .request(method, path, body, &[("token", &self.token)])
            .await
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    /// POST that must answer 200; answers the body.
    async fn ok(&self, path: &str, body: Value) -> Value {
        let (s, b) = self.post(path, body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{path} {body}: {b}");
        b
    }
    async fn send(&self, channel_id: &str, channel_type: i64, text: &str) -> Value {
        self.ok(
            "/v1/message/send",
            json!({"channel_id": channel_id, "channel_type": channel_type,
                   "payload": {"type": 1, "content": text}, "client_msg_no": format!("c-{text}-{}", rand::random::<u64>())}),
        )
        .await
    }
    async fn sync(&self, version: i64, last_msg_seqs: &str, msg_count: i64) -> Value {
        self.ok(
            "/v1/conversation/sync",
            json!({"version": version, "last_msg_seqs": last_msg_seqs, "msg_count": msg_count, "device_uuid": "d"}),
        )
        .await
    }
    /// Another device of the same user.
    async fn device(&self, server: &TestServer) -> Tsdd {
        login(server, &self.username).await
    }
}

async fn register(server: &TestServer, username: &str) {
    let (s, b) = server
        .client()
        .post(
            "/api/im/users/register",
            json!({"username": username, "password": "secret-pass", "displayName": format!("{username} N")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "register {username}: {b}");
}

async fn login(server: &TestServer, username: &str) -> Tsdd {
    let (s, b) = server
        .client()
        .post(
            "/v1/user/login",
            json!({"username": username, "password": "secret-pass"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "login {username}: {b}");
    let token = b["token"].as_str().unwrap().to_owned();
    let uid = b["uid"].as_str().unwrap().to_owned();
    let mut native = Api::new(&server.base, Some(token.clone()));
    native.user_id = uid.clone();
    native.username = username.to_owned();
    Tsdd {
        raw: Api::new(&server.base, None),
        native,
        token,
        uid,
        username: username.to_owned(),
    }
}

async fn user(server: &TestServer, username: &str) -> Tsdd {
    register(server, username).await;
    login(server, username).await
}

fn conv<'a>(sync: &'a Value, channel_id: &str) -> Option<&'a Value> {
    sync["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel_id"] == channel_id)
}

fn max_version(sync: &Value) -> i64 {
    sync["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["version"].as_i64().unwrap_or(0))
        .max()
        .unwrap_or(0)
}

fn assert_bad(s: StatusCode, b: &Value, what: &str) {
    assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {b}");
    assert_eq!(b["status"], 400, "{what}: {b}");
    assert!(
        b["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {b}"
    );
}

/// The native events the user has after `since`.
async fn native_events(u: &Tsdd, since: i64) -> Vec<Value> {
    u.native.sync_all(since, 200).await.0
}

#[tokio::test]
async fn login_token_header_and_plain_endpoints() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    assert!(!alice.uid.is_empty());
    let anon = server.client();
    let (s, b) = anon
        .post(
            "/v1/user/login",
            json!({"username": "alice", "password": "secret-pass"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["username"], "alice");
    assert_eq!(b["name"], "alice N");
    assert_eq!(b["uid"], alice.uid.as_str());
    let (s, b) = anon
        .post(
            "/v1/user/login",
            json!({"username": "alice", "password": "wrong-pass"}),
        )
        .await;
    assert_bad(s, &b, "wrong password");
    let (s, b) = anon
        .post("/v1/user/login", json!({"username": "alice"}))
        .await;
    assert_bad(s, &b, "missing password");
    let (s, b) = anon.raw(Method::POST, "/v1/user/login", "{not json").await;
    assert_bad(s, &b, "bad json");

    // No token, a bad token: 401 {"msg":"请先登录！"} with no status field.
    let (s, b) = anon
        .post("/v1/conversation/sync", json!({"version": 0}))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b, json!({"msg": "请先登录！"}));
    let (s, b) = anon
        .request(
            Method::POST,
            "/v1/message/sync",
            Some(json!({})),
            &[("token", "nope")],
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b, json!({"msg": "请先登录！"}));

    assert_eq!(
        alice
            .ok(
                "/v1/conversation/syncack",
                json!({"cmd_version": 0, "device_uuid": "x"})
            )
            .await,
        json!({"status": 200})
    );
    assert_eq!(
        alice
            .ok(
                "/v1/message/sync",
                json!({"max_message_seq": 0, "limit": 10})
            )
            .await,
        json!([])
    );
    assert_eq!(
        alice.ok("/v1/message/syncack/12", json!({})).await,
        json!({"status": 200})
    );
    let (s, b) = alice
        .post("/v1/conversation/sync", json!({"version": "x"}))
        .await;
    assert_bad(s, &b, "version of the wrong type");
}

#[tokio::test]
async fn send_and_conversation_sync() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let carol = user(&server, "carol").await;

    // Sending: the payload comes back as posted; client_msg_no is the idempotency key.
    let body = json!({"channel_id": bob.uid, "channel_type": 1, "client_msg_no": "k1",
                      "payload": {"type": 1, "content": "hi bob", "mention": {"all": 0}}});
    let first = alice.ok("/v1/message/send", body.clone()).await;
    let again = alice.ok("/v1/message/send", body).await;
    assert_eq!(first, again, "a retry answers the same message");
    assert_eq!(first["message_seq"], 1);
    assert_eq!(first["client_msg_no"], "k1");
    let id = first["message_id"].as_i64().unwrap();
    assert_eq!(first["message_idstr"], id.to_string());

    // Failures.
    for (body, what) in [
        (
            json!({"channel_type": 1, "payload": {"type": 1, "content": "x"}}),
            "missing channel_id",
        ),
        (
            json!({"channel_id": bob.uid, "channel_type": 1, "payload": "text"}),
            "payload not an object",
        ),
        (
            json!({"channel_id": bob.uid, "channel_type": "1", "payload": {"type": 1, "content": "x"}}),
            "channel_type as a string",
        ),
        (
            json!({"channel_id": bob.uid, "channel_type": 1, "payload": {"type": 1, "content": ""}}),
            "empty text",
        ),
        (
            json!({"channel_id": bob.uid, "channel_type": 7, "payload": {"type": 1, "content": "x"}}),
            "unknown channel type",
        ),
        (
            json!({"channel_id": "nobody-here", "channel_type": 1, "payload": {"type": 1, "content": "x"}}),
            "unknown user",
        ),
        (
            json!({"channel_id": "no-such-group", "channel_type": 2, "payload": {"type": 1, "content": "x"}}),
            "unknown group",
        ),
    ] {
        let (s, b) = alice.post("/v1/message/send", body).await;
        assert_bad(s, &b, what);
    }
    let group = alice.native.group("g", &["bob"]).await;
    let (s, b) = carol
        .post(
            "/v1/message/send",
            json!({"channel_id": group, "channel_type": 2, "payload": {"type": 1, "content": "x"}}),
        )
        .await;
    assert_bad(s, &b, "not a member");

    // A native send renders as text with its metadata merged.
    let (s, _) = bob
        .native
        .post(
            &format!("/api/im/messages/{group}"),
            json!({"content": "native hi", "metadata": {"lang": "en"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let full = bob.sync(0, "", 0).await;
    assert_eq!(full["uid"], bob.uid.as_str());
    let dm = conv(&full, &alice.uid).expect("the person channel is named by the peer's uid");
    assert_eq!(dm["channel_type"], 1);
    assert_eq!(dm["unread"], 1);
    assert_eq!(dm["last_msg_seq"], 1);
    assert_eq!(dm["last_client_msg_no"], "k1");
    assert!(
        dm.get("stick").is_none() && dm.get("mute").is_none(),
        "omitempty: {dm}"
    );
    assert!(dm["version"].as_i64().unwrap() > 0);
    let m = &dm["recents"][0];
    assert_eq!(m["message_id"], id);
    assert_eq!(m["message_idstr"], id.to_string());
    assert_eq!(m["from_uid"], alice.uid.as_str());
    assert_eq!(m["channel_id"], alice.uid.as_str());
    assert_eq!(
        m["payload"],
        json!({"type": 1, "content": "hi bob", "mention": {"all": 0}})
    );
    let g = conv(&full, &group).unwrap();
    assert_eq!(g["channel_type"], 2);
    assert!(g.get("unread").is_none(), "own message is not unread: {g}");
    assert_eq!(
        g["recents"][0]["payload"],
        json!({"type": 1, "content": "native hi", "lang": "en"})
    );
    assert!(full["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["uid"] == alice.uid.as_str()));
    let groups = full["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["group_no"], group.as_str());
    assert_eq!(groups[0]["member_count"], 2);

    // The sender's side: no unread, and the group still has alice's view.
    let a = alice.sync(0, "", 5).await;
    assert!(conv(&a, &bob.uid).unwrap().get("unread").is_none());
    assert_eq!(conv(&a, &group).unwrap()["unread"], 1);

    // Incremental: nothing changed, nothing returned.
    let v = max_version(&full);
    assert_eq!(bob.sync(v, "", 20).await["conversations"], json!([]));
    // last_msg_seqs chooses the recents: only after the listed seq, newest first, msg_count max.
    for i in 0..5 {
        alice.send(&bob.uid, 1, &format!("m{i}")).await;
    }
    let inc = bob
        .sync(v, &format!("{}:1:1|garbage|x:y", alice.uid), 3)
        .await;
    let dm = conv(&inc, &alice.uid).unwrap();
    let seqs: Vec<i64> = dm["recents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![6, 5, 4]);
    assert_eq!(dm["unread"], 6);
    assert_eq!(
        inc["conversations"].as_array().unwrap().len(),
        1,
        "only what changed: {inc}"
    );
    let inc = bob.sync(v, &format!("{}:1:6", alice.uid), 0).await;
    assert!(
        conv(&inc, &alice.uid).unwrap().get("recents").is_none(),
        "nothing after the listed seq"
    );
}

#[tokio::test]
async fn channel_sync_pull_modes() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let carol = user(&server, "carol").await;
    let group = alice.native.group("g", &["bob"]).await;
    for i in 1..=10 {
        alice.send(&group, 2, &format!("m{i}")).await;
    }
    let page = |start: i64, end: i64, limit: i64, mode: i64| {
        json!({"channel_id": group, "channel_type": 2, "start_message_seq": start,
               "end_message_seq": end, "limit": limit, "pull_mode": mode})
    };
    let seqs = |b: &Value| -> Vec<i64> {
        b["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message_seq"].as_i64().unwrap())
            .collect()
    };
    let b = bob.ok("/v1/message/channel/sync", page(0, 0, 3, 0)).await;
    assert_eq!(seqs(&b), vec![8, 9, 10]);
    assert_eq!(b["more"], 1);
    assert_eq!(b["pull_mode"], 0);
    let b = bob.ok("/v1/message/channel/sync", page(0, 0, 3, 1)).await;
    assert_eq!(seqs(&b), vec![8, 9, 10]);
    assert_eq!(b["more"], 0);
    assert_eq!(b["pull_mode"], 1);
    let b = bob.ok("/v1/message/channel/sync", page(3, 0, 4, 1)).await;
    assert_eq!(seqs(&b), vec![3, 4, 5, 6]);
    assert_eq!(b["more"], 1);
    let b = bob.ok("/v1/message/channel/sync", page(3, 8, 10, 1)).await;
    assert_eq!(seqs(&b), vec![3, 4, 5, 6, 7], "[start, end)");
    assert_eq!(b["more"], 0);
    assert_eq!(b["start_message_seq"], 3);
    assert_eq!(b["end_message_seq"], 8);
    let b = bob.ok("/v1/message/channel/sync", page(7, 0, 10, 0)).await;
    assert_eq!(seqs(&b), vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(b["more"], 0);
    let b = bob.ok("/v1/message/channel/sync", page(7, 2, 2, 0)).await;
    assert_eq!(
        seqs(&b),
        vec![6, 7],
        "(end, start], newest first chosen, ascending"
    );
    assert_eq!(b["more"], 1);
    let b = bob.ok("/v1/message/channel/sync", page(2, 7, 10, 0)).await;
    assert_eq!(
        seqs(&b),
        Vec::<i64>::new(),
        "end > start pulling down is empty"
    );
    let m = &bob.ok("/v1/message/channel/sync", page(1, 2, 1, 1)).await["messages"][0];
    assert_eq!(m["payload"], json!({"type": 1, "content": "m1"}));
    assert_eq!(m["channel_id"], group.as_str());
    // A person channel is named by the peer's uid on both sides.
    alice.send(&bob.uid, 1, "dm").await;
    let b = bob
        .ok(
            "/v1/message/channel/sync",
            json!({"channel_id": alice.uid, "channel_type": 1, "limit": 10}),
        )
        .await;
    assert_eq!(b["messages"][0]["channel_id"], alice.uid.as_str());
    // Not a member: the empty shape; unknown channel and bad input: 400.
    let b = carol
        .ok("/v1/message/channel/sync", page(0, 5, 10, 1))
        .await;
    assert_eq!(
        b,
        json!({"start_message_seq": 5, "end_message_seq": 5, "pull_mode": 1, "more": 0, "messages": []})
    );
    let (s, b) = bob
        .post(
            "/v1/message/channel/sync",
            json!({"channel_id": "nope", "channel_type": 2}),
        )
        .await;
    assert_bad(s, &b, "unknown group");
    let (s, b) = bob
        .post("/v1/message/channel/sync", json!({"channel_type": 2}))
        .await;
    assert_bad(s, &b, "missing channel_id");
    let (s, b) = bob
        .post("/v1/message/channel/sync", page(0, 0, "x".len() as i64, 5))
        .await;
    assert_bad(s, &b, "bad pull_mode");
}

/// A group owned by `owner` with the others as members, and an admin among them when given.
async fn group_of(owner: &Tsdd, members: &[&Tsdd], admin: Option<&Tsdd>) -> String {
    let names: Vec<&str> = members.iter().map(|m| m.username.as_str()).collect();
    let group = owner.native.group("g", &names).await;
    if let Some(a) = admin {
        let (s, b) = owner
            .native
            .post(
                &format!("/api/im/conversations/{group}/participants"),
                json!({"userId": a.uid, "role": "admin"}),
            )
            .await;
        // Already a member: promote by removing and re-adding as admin.
        if s != StatusCode::CREATED && s != StatusCode::OK {
            let (s2, b2) = owner
                .native
                .delete(&format!(
                    "/api/im/conversations/{group}/participants/{}",
                    a.uid
                ))
                .await;
            assert!(s2.is_success(), "{b} / {b2}");
            let (s3, b3) = owner
                .native
                .post(
                    &format!("/api/im/conversations/{group}/participants"),
                    json!({"userId": a.uid, "role": "admin"}),
                )
                .await;
            assert!(s3.is_success(), "{b3}");
        }
    }
    group
}

fn revoke_path(channel_id: &str, channel_type: i64, sent: &Value) -> String {
    format!(
        "/v1/message/revoke?message_id={}&client_msg_no={}&channel_id={channel_id}&channel_type={channel_type}",
        sent["message_id"], sent["client_msg_no"].as_str().unwrap()
    )
}

#[tokio::test]
async fn revoke_permissions_and_visibility() {
    let server = TestServer::start().await;
    let owner = user(&server, "owner").await;
    let admin = user(&server, "admin").await;
    let m1 = user(&server, "member1").await;
    let m2 = user(&server, "member2").await;
    let group = group_of(&owner, &[&m1, &m2], Some(&admin)).await;
    let by_m1 = m1.send(&group, 2, "by m1").await;
    let by_owner = owner.send(&group, 2, "by owner").await;
    let by_m2 = m2.send(&group, 2, "by m2").await;
    let m1_full = m1.sync(0, "", 10).await;
    let v = max_version(&m1_full);
    let since = m1.native.sync_all(0, 200).await.1;

    // A member cannot revoke someone else's; an admin cannot revoke the owner's.
    let (s, b) = m2.post(&revoke_path(&group, 2, &by_m1), json!({})).await;
    assert_bad(s, &b, "member revoking another's message");
    let (s, b) = admin
        .post(&revoke_path(&group, 2, &by_owner), json!({}))
        .await;
    assert_bad(s, &b, "admin revoking the owner's message");
    let (s, b) = m1
        .post(
            &format!("/v1/message/revoke?channel_id={group}&channel_type=2"),
            json!({}),
        )
        .await;
    assert_bad(s, &b, "missing client_msg_no");
    let (s, b) = m1
        .post(
            &format!("/v1/message/revoke?client_msg_no=nope&channel_id={group}&channel_type=2"),
            json!({}),
        )
        .await;
    assert_bad(s, &b, "unknown message");

    // The sender, the owner (anyone's), an admin (a member's).
    assert_eq!(
        m1.ok(&revoke_path(&group, 2, &by_m1), json!({})).await,
        json!({"status": 200})
    );
    owner.ok(&revoke_path(&group, 2, &by_m2), json!({})).await;
    let (s, b) = owner.post(&revoke_path(&group, 2, &by_m2), json!({})).await;
    assert_bad(s, &b, "revoking twice");

    // The native feed shows message.delete.
    let events = native_events(&m1, since).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "message.delete")
            .count(),
        2,
        "{events:?}"
    );

    // The conversation comes back with the revoke, unread no longer counts revoked messages.
    let inc = m1.sync(v, &format!("{group}:2:3"), 10).await;
    let g = conv(&inc, &group).expect("revoke moves the version");
    assert_eq!(g["unread"], 1, "only the owner's message is unread: {g}");
    assert!(g.get("recents").is_none());
    let extras = m1
        .ok(
            "/v1/message/extra/sync",
            json!({"channel_id": group, "channel_type": 2, "extra_version": 0, "limit": 100}),
        )
        .await;
    let extras = extras.as_array().unwrap();
    assert_eq!(extras.len(), 2);
    let e = extras
        .iter()
        .find(|e| e["message_id"] == by_m1["message_id"])
        .unwrap();
    assert_eq!(e["revoke"], 1);
    assert_eq!(e["revoker"], m1.uid.as_str());
    let e = extras
        .iter()
        .find(|e| e["message_id"] == by_m2["message_id"])
        .unwrap();
    assert_eq!(e["revoker"], owner.uid.as_str());
    let page = m1
        .ok(
            "/v1/message/channel/sync",
            json!({"channel_id": group, "channel_type": 2, "limit": 10}),
        )
        .await;
    let msgs = page["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "revoked messages keep their seq");
    assert_eq!(msgs[0]["revoke"], 1);
    assert_eq!(msgs[0]["message_extra"]["revoke"], 1);
    assert!(
        msgs[0]["payload"].get("content").is_none(),
        "a revoked message keeps no content"
    );

    // In a person channel only the sender may revoke.
    let dm = m1.send(&m2.uid, 1, "dm").await;
    let (s, b) = m2.post(&revoke_path(&m1.uid, 1, &dm), json!({})).await;
    assert_bad(s, &b, "peer revoking in a person channel");
    m1.ok(&revoke_path(&m2.uid, 1, &dm), json!({})).await;
}

#[tokio::test]
async fn edit_reactions_and_deletes() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let carol = user(&server, "carol").await;
    let group = group_of(&alice, &[&bob, &carol], None).await;
    let sent = alice.send(&group, 2, "original").await;
    let id = sent["message_id"].as_i64().unwrap();
    let bob_full = bob.sync(0, "", 10).await;
    let v = max_version(&bob_full);
    let since = bob.native.sync_all(0, 200).await.1;
    let edit = |content: &str| {
        json!({"message_id": id.to_string(), "message_seq": 1, "channel_id": group, "channel_type": 2,
               "content_edit": json!({"type": 1, "content": content}).to_string()})
    };

    // Edit: sender only, content_edit a JSON string.
    let (s, b) = bob.post("/v1/message/edit", edit("hijack")).await;
    assert_bad(s, &b, "editing as non-sender");
    let (s, b) = alice
        .post("/v1/message/edit", json!({"message_id": id, "channel_id": group, "channel_type": 2, "content_edit": "{oops"}))
        .await;
    assert_bad(s, &b, "content_edit not JSON");
    let (s, b) = alice
        .post(
            "/v1/message/edit",
            json!({"message_id": id, "channel_id": group, "channel_type": 2}),
        )
        .await;
    assert_bad(s, &b, "missing content_edit");
    alice.ok("/v1/message/edit", edit("edited")).await;
    let inc = bob.sync(v, &format!("{group}:2:1"), 10).await;
    assert!(conv(&inc, &group).is_some(), "an edit moves the version");
    let v = max_version(&inc);
    let extras = bob
        .ok(
            "/v1/message/extra/sync",
            json!({"channel_id": group, "channel_type": 2, "extra_version": 0}),
        )
        .await;
    assert_eq!(
        extras[0]["content_edit"],
        json!({"type": 1, "content": "edited"})
    );
    assert!(extras[0]["edited_at"].as_i64().unwrap() > 0);
    let ev = extras[0]["extra_version"].as_i64().unwrap();
    let more = bob
        .ok(
            "/v1/message/extra/sync",
            json!({"channel_id": group, "channel_type": 2, "extra_version": ev}),
        )
        .await;
    assert_eq!(more, json!([]));

    // Reactions: (user, emoji) toggles; several emojis per user.
    let react = |emoji: &str| json!({"message_id": id, "channel_id": group, "channel_type": 2, "emoji": emoji});
    assert_eq!(
        bob.ok("/v1/reactions", react("👍")).await,
        json!({"status": 200})
    );
    bob.ok("/v1/reactions", react("❤️")).await;
    carol.ok("/v1/reactions", react("👍")).await;
    bob.ok("/v1/reactions", react("👍")).await; // removes bob's 👍
    let (s, b) = bob
        .post(
            "/v1/reactions",
            json!({"message_id": id, "channel_id": group, "channel_type": 2}),
        )
        .await;
    assert_bad(s, &b, "missing emoji");
    let (s, b) = bob
        .post(
            "/v1/reactions",
            json!({"message_id": 999999, "channel_id": group, "channel_type": 2, "emoji": "x"}),
        )
        .await;
    assert_bad(s, &b, "unknown message");
    let rows = bob
        .ok(
            "/v1/reaction/sync",
            json!({"channel_id": group, "channel_type": 2, "seq": 0, "limit": 100}),
        )
        .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let seqs: Vec<i64> = rows.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "seq 0: newest first");
    let bob_thumb = rows
        .iter()
        .find(|r| r["uid"] == bob.uid.as_str() && r["emoji"] == "👍")
        .unwrap();
    assert_eq!(bob_thumb["is_deleted"], 1);
    assert_eq!(bob_thumb["message_id"], id.to_string());
    assert_eq!(bob_thumb["name"], "bob N");
    let after = bob
        .ok(
            "/v1/reaction/sync",
            json!({"channel_id": group, "channel_type": 2, "seq": seqs[2], "limit": 1}),
        )
        .await;
    assert_eq!(after.as_array().unwrap().len(), 1);
    assert_eq!(after[0]["seq"], seqs[1], "seq > n: ascending, limited");
    let inc = bob.sync(v, &format!("{group}:2:1"), 10).await;
    assert!(conv(&inc, &group).is_some(), "a reaction moves the version");
    let v = max_version(&inc);
    let recents = &bob.sync(0, "", 1).await;
    let present: Vec<&Value> = conv(recents, &group).unwrap()["recents"][0]["reactions"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(present.len(), 2, "present reactions ride on the message");

    // Delete for me: only the caller's view; other devices learn through extra sync.
    let del = json!([{"message_id": id, "channel_id": group, "channel_type": 2, "message_seq": 1}]);
    let (s, b) = bob
        .call(
            Method::DELETE,
            "/v1/message",
            Some(json!([{"message_id": id, "channel_id": group, "channel_type": 2}])),
        )
        .await;
    assert_bad(s, &b, "missing message_seq");
    let (s, b) = bob.call(Method::DELETE, "/v1/message", Some(json!([{"message_id": id, "channel_id": group, "channel_type": 2, "message_seq": 2}]))).await;
    assert_bad(s, &b, "wrong message_seq");
    let (s, b) = bob
        .call(Method::DELETE, "/v1/message", Some(del.clone()))
        .await;
    assert_eq!((s, b), (StatusCode::OK, json!({"status": 200})));
    let bob2 = bob.device(&server).await;
    let inc = bob2.sync(v, &format!("{group}:2:1"), 10).await;
    assert!(
        conv(&inc, &group).is_some(),
        "delete-for-me moves the caller's version"
    );
    let extras = bob2
        .ok(
            "/v1/message/extra/sync",
            json!({"channel_id": group, "channel_type": 2, "extra_version": ev}),
        )
        .await;
    assert_eq!(extras[0]["is_deleted"], 1);
    let page = |u: &Tsdd| {
        let u = u.clone();
        let group = group.clone();
        async move {
            u.ok(
                "/v1/message/channel/sync",
                json!({"channel_id": group, "channel_type": 2, "limit": 10}),
            )
            .await
        }
    };
    assert_eq!(page(&bob).await["messages"][0]["is_deleted"], 1);
    assert!(page(&carol).await["messages"][0]
        .get("message_extra")
        .is_some_and(|e| e["is_deleted"] == 0));
    let events = native_events(&bob, since).await;
    assert!(
        events.iter().any(|e| e["type"] == "message.hide"),
        "private event in the native feed"
    );
    assert!(
        !native_events(&carol, 0)
            .await
            .iter()
            .any(|e| e["type"] == "message.hide"),
        "private to the caller"
    );

    // Delete for everyone: in a group, sender or manager only.
    let by_bob = bob.send(&group, 2, "bob's").await;
    let mutual = |m: &Value| json!({"message_id": m["message_id"], "channel_id": group, "channel_type": 2, "message_seq": m["message_seq"]});
    let (s, b) = carol
        .call(Method::DELETE, "/v1/message/mutual", Some(mutual(&by_bob)))
        .await;
    assert_bad(s, &b, "member deleting another's message for everyone");
    let (s, b) = bob
        .call(
            Method::DELETE,
            "/v1/message/mutual",
            Some(json!({"channel_id": group})),
        )
        .await;
    assert_bad(s, &b, "missing fields");
    let (s, _) = alice
        .call(Method::DELETE, "/v1/message/mutual", Some(mutual(&by_bob)))
        .await;
    assert_eq!(s, StatusCode::OK, "the owner may");
    let extras = carol
        .ok(
            "/v1/message/extra/sync",
            json!({"channel_id": group, "channel_type": 2, "extra_version": 0}),
        )
        .await;
    let e = extras
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["message_id"] == by_bob["message_id"])
        .unwrap();
    assert_eq!(e["is_mutual_deleted"], 1);
    assert!(native_events(&carol, 0)
        .await
        .iter()
        .any(|e| e["type"] == "message.delete"));
}

#[tokio::test]
async fn multi_device_state_moves_the_version() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let bob2 = bob.device(&server).await;
    for i in 0..3 {
        alice.send(&bob.uid, 1, &format!("m{i}")).await;
    }
    let full = bob2.sync(0, "", 10).await;
    assert_eq!(conv(&full, &alice.uid).unwrap()["unread"], 3);
    let mut v = max_version(&full);
    let seqs = format!("{}:1:3", alice.uid);

    // Device 1 clears unread: device 2 sees the conversation again with unread 0.
    let clear = json!({"channel_id": alice.uid, "channel_type": 1, "unread": 0, "message_seq": 3});
    let (s, b) = bob
        .call(Method::PUT, "/v1/coversation/clearUnread", Some(clear))
        .await;
    assert_eq!((s, b), (StatusCode::OK, json!({"status": 200})));
    let inc = bob2.sync(v, &seqs, 10).await;
    let c = conv(&inc, &alice.uid).expect("clearUnread moves the version");
    assert!(c.get("unread").is_none(), "{c}");
    assert!(c.get("recents").is_none());
    v = max_version(&inc);
    // Another user's read pointer never moves mine.
    let av = max_version(&alice.sync(0, "", 1).await);
    let (s, _) = bob
        .call(
            Method::PUT,
            "/v1/coversation/clearUnread",
            Some(json!({"channel_id": alice.uid, "channel_type": 1, "unread": 2})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(alice.sync(av, "", 1).await["conversations"], json!([]));
    let (s, b) = bob
        .call(
            Method::PUT,
            "/v1/coversation/clearUnread",
            Some(json!({"channel_type": 1})),
        )
        .await;
    assert_bad(s, &b, "missing channel_id");

    // Pin and mute (this face's settings endpoint and the native one).
    let (s, _) = bob
        .call(
            Method::PUT,
            &format!("/v1/users/{}/setting", alice.uid),
            Some(json!({"top": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let inc = bob2.sync(v, &seqs, 10).await;
    assert_eq!(conv(&inc, &alice.uid).unwrap()["stick"], 1);
    v = max_version(&inc);
    let native_conv = bob.native.get("/api/im/conversations").await.1["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, b) = bob
        .native
        .patch(
            &format!("/api/im/conversations/{native_conv}/mute"),
            json!({"muted": true}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    let inc = bob2.sync(v, &seqs, 10).await;
    let c = conv(&inc, &alice.uid).expect("a native mute moves the version");
    assert_eq!(
        (c["stick"].clone(), c["mute"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(inc["users"][0]["top"], 1);
    v = max_version(&inc);

    // Read receipts move the read pointer too.
    let last = alice.send(&bob.uid, 1, "new").await;
    let inc = bob2.sync(v, &seqs, 10).await;
    assert_eq!(conv(&inc, &alice.uid).unwrap()["unread"], 1);
    v = max_version(&inc);
    bob.ok(
        "/v1/message/readed",
        json!({"channel_id": alice.uid, "channel_type": 1, "message_ids": [last["message_idstr"]]}),
    )
    .await;
    let inc = bob2.sync(v, &format!("{}:1:4", alice.uid), 10).await;
    assert!(conv(&inc, &alice.uid).unwrap().get("unread").is_none());
    v = max_version(&inc);
    let (s, b) = bob
        .post(
            "/v1/message/readed",
            json!({"channel_id": alice.uid, "channel_type": 1, "message_ids": ["x"]}),
        )
        .await;
    assert_bad(s, &b, "unknown message id");

    // Clear history: offset_msg_seq, and the conversation still comes back when it changes.
    bob.ok(
        "/v1/message/offset",
        json!({"channel_id": alice.uid, "channel_type": 1, "message_seq": 4}),
    )
    .await;
    let inc = bob2.sync(v, "", 10).await;
    let c = conv(&inc, &alice.uid).expect("clearing history moves the version");
    assert_eq!(c["offset_msg_seq"], 4);
    assert!(c.get("recents").is_none(), "nothing after the cleared seq");
    v = max_version(&inc);
    alice.send(&bob.uid, 1, "after clear").await;
    let inc = bob2.sync(v, "", 10).await;
    let c = conv(&inc, &alice.uid).expect("a cleared conversation comes back when it changes");
    let recents = c["recents"].as_array().unwrap();
    assert_eq!(recents.len(), 1);
    assert_eq!(recents[0]["message_seq"], 5);
    let page = bob2
        .ok(
            "/v1/message/channel/sync",
            json!({"channel_id": alice.uid, "channel_type": 1, "limit": 10}),
        )
        .await;
    assert_eq!(
        page["messages"].as_array().unwrap().len(),
        1,
        "channel sync honours the offset too"
    );
    let (s, b) = bob
        .post(
            "/v1/message/offset",
            json!({"channel_id": alice.uid, "channel_type": 1}),
        )
        .await;
    assert_bad(s, &b, "missing message_seq");
}

#[tokio::test]
async fn conversation_extras_and_deletion() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let carol = user(&server, "carol").await;
    let bob2 = bob.device(&server).await;
    let group = group_of(&alice, &[&bob], None).await;
    alice.send(&group, 2, "hello").await;
    let v = max_version(&bob2.sync(0, "", 1).await);

    let body = json!({"browse_to": 1, "keep_message_seq": 1, "keep_offset_y": 30, "draft": "half-written"});
    let r = bob
        .ok(&format!("/v1/conversations/{group}/2/extra"), body.clone())
        .await;
    let ver = r["version"].as_i64().unwrap();
    assert!(ver > v);
    let (s, b) = carol
        .post(&format!("/v1/conversations/{group}/2/extra"), body.clone())
        .await;
    assert_bad(s, &b, "not a member");
    let (s, b) = bob
        .post(&format!("/v1/conversations/{group}/x/extra"), body.clone())
        .await;
    assert_bad(s, &b, "bad channel type");
    let (s, b) = bob
        .post(
            &format!("/v1/conversations/{group}/2/extra"),
            json!({"draft": 5}),
        )
        .await;
    assert_bad(s, &b, "draft of the wrong type");
    let list = bob2
        .ok("/v1/conversation/extra/sync", json!({"version": 0}))
        .await;
    assert_eq!(
        list,
        json!([{"channel_id": group, "channel_type": 2, "browse_to": 1, "keep_message_seq": 1,
                "keep_offset_y": 30, "draft": "half-written", "version": ver}])
    );
    assert_eq!(
        bob2.ok("/v1/conversation/extra/sync", json!({"version": ver}))
            .await,
        json!([])
    );
    let inc = bob2.sync(v, &format!("{group}:2:1"), 5).await;
    let c = conv(&inc, &group).expect("extras move the version");
    assert_eq!(c["version"], ver);
    assert_eq!(c["extra"]["draft"], "half-written");
    assert!(
        conv(&alice.sync(0, "", 1).await, &group)
            .unwrap()
            .get("extra")
            .is_none(),
        "extras are per user"
    );

    // Deleting from the list hides it until the next message, whose recents start after it.
    let (s, b) = bob
        .call(
            Method::DELETE,
            &format!("/v1/conversations/{group}/2"),
            None,
        )
        .await;
    assert_eq!((s, b), (StatusCode::OK, json!({"status": 200})));
    assert!(conv(&bob2.sync(0, "", 5).await, &group).is_none());
    let (s, b) = carol
        .call(
            Method::DELETE,
            &format!("/v1/conversations/{group}/2"),
            None,
        )
        .await;
    assert_bad(s, &b, "not a member");
    let (s, b) = bob
        .call(Method::DELETE, "/v1/conversations/nope/2", None)
        .await;
    assert_bad(s, &b, "unknown channel");
    alice.send(&group, 2, "again").await;
    let full = bob2.sync(0, "", 5).await;
    let c = conv(&full, &group).expect("back with a new message");
    let recents = c["recents"].as_array().unwrap();
    assert_eq!(recents.len(), 1);
    assert_eq!(recents[0]["message_seq"], 2);
    assert_eq!(c["unread"], 1, "deleting read the old messages");
}

/// What a client knows of one conversation.
#[derive(Debug, Clone, Default, PartialEq)]
struct ConvView {
    version: i64,
    unread: i64,
    stick: i64,
    mute: i64,
    offset: i64,
    extra: Value,
    /// msg_seq → message_id of the messages the client holds.
    messages: BTreeMap<i64, i64>,
    extra_cursor: i64,
    /// message_id → message_extra without its extra_version.
    extras: BTreeMap<i64, Value>,
    reaction_cursor: i64,
    /// (message_id, uid, emoji) → is_deleted.
    reactions: BTreeMap<(String, String, String), i64>,
}

impl ConvView {
    /// What must agree between the incremental client and a fresh full sync.
    fn summary(&self) -> Value {
        json!({
            "version": self.version, "unread": self.unread, "stick": self.stick, "mute": self.mute,
            "offset": self.offset, "extra": self.extra,
            "last": self.messages.last_key_value().map(|(s, id)| json!([s, id])),
            "extras": self.extras.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<serde_json::Map<_, _>>(),
            "reactions": self.reactions.iter().map(|((m, u, e), d)| json!([m, u, e, d])).collect::<Vec<_>>(),
        })
    }

    fn apply(&mut self, c: &Value) {
        let n = |k: &str| c[k].as_i64().unwrap_or(0);
        self.version = n("version");
        self.unread = n("unread");
        self.stick = n("stick");
        self.mute = n("mute");
        self.offset = n("offset_msg_seq");
        self.extra = c.get("extra").cloned().unwrap_or(Value::Null);
        for m in c["recents"].as_array().into_iter().flatten() {
            self.messages.insert(
                m["message_seq"].as_i64().unwrap(),
                m["message_id"].as_i64().unwrap(),
            );
        }
        let offset = self.offset;
        self.messages.retain(|s, _| *s > offset);
    }

    /// Follows extra and reaction sync of the channel from the held cursors.
    async fn pull(&mut self, u: &Tsdd, key: &(String, i64), page: i64) {
        loop {
            let limit = if self.extra_cursor == 0 { 10_000 } else { page };
            let rows = u
                .ok("/v1/message/extra/sync", json!({"channel_id": key.0, "channel_type": key.1, "extra_version": self.extra_cursor, "limit": limit, "source": "t"}))
                .await;
            let rows = rows.as_array().unwrap();
            for r in rows {
                let mut r = r.clone();
                let v = r
                    .as_object_mut()
                    .unwrap()
                    .remove("extra_version")
                    .unwrap()
                    .as_i64()
                    .unwrap();
                self.extra_cursor = self.extra_cursor.max(v);
                self.extras.insert(r["message_id"].as_i64().unwrap(), r);
            }
            if (rows.len() as i64) < limit || limit == 10_000 {
                break;
            }
        }
        loop {
            let limit = if self.reaction_cursor == 0 {
                1000
            } else {
                page
            };
            let rows = u
                .ok("/v1/reaction/sync", json!({"channel_id": key.0, "channel_type": key.1, "seq": self.reaction_cursor, "limit": limit}))
                .await;
            let rows = rows.as_array().unwrap();
            for r in rows {
                self.reaction_cursor = self.reaction_cursor.max(r["seq"].as_i64().unwrap());
                let k = (
                    r["message_id"].as_str().unwrap().to_owned(),
                    r["uid"].as_str().unwrap().to_owned(),
                    r["emoji"].as_str().unwrap().to_owned(),
                );
                self.reactions.insert(k, r["is_deleted"].as_i64().unwrap());
            }
            if (rows.len() as i64) < limit || limit == 1000 {
                break;
            }
        }
    }
}

/// A client that only ever syncs incrementally from the highest version it has seen.
#[derive(Default)]
struct LocalClient {
    version: i64,
    convs: BTreeMap<(String, i64), ConvView>,
}

impl LocalClient {
    async fn sync_step(&mut self, u: &Tsdd) {
        let seqs: Vec<String> = self
            .convs
            .iter()
            .filter_map(|(k, c)| {
                c.messages
                    .keys()
                    .last()
                    .map(|s| format!("{}:{}:{s}", k.0, k.1))
            })
            .collect();
        let r = u.sync(self.version, &seqs.join("|"), 5).await;
        for c in r["conversations"].as_array().unwrap() {
            let key = (
                c["channel_id"].as_str().unwrap().to_owned(),
                c["channel_type"].as_i64().unwrap(),
            );
            let view = self.convs.entry(key.clone()).or_default();
            view.apply(c);
            view.pull(u, &key, 3).await;
            self.version = self.version.max(view.version);
        }
    }

    fn summary(&self) -> BTreeMap<String, Value> {
        self.convs
            .iter()
            .map(|((id, t), c)| (format!("{id}:{t}"), c.summary()))
            .collect()
    }
}

async fn fresh_view(u: &Tsdd) -> BTreeMap<String, Value> {
    let mut fresh = LocalClient::default();
    let r = u.sync(0, "", 1).await;
    for c in r["conversations"].as_array().unwrap() {
        let key = (
            c["channel_id"].as_str().unwrap().to_owned(),
            c["channel_type"].as_i64().unwrap(),
        );
        let mut view = ConvView::default();
        view.apply(c);
        view.pull(u, &key, 1000).await;
        fresh.convs.insert(key, view);
    }
    fresh.summary()
}

#[derive(Debug, Clone)]
struct Sent {
    conv: usize,
    sender: usize,
    body: Value,
}

#[derive(Debug, Clone)]
enum Op {
    Send(usize, usize),
    NativeSend(usize, usize),
    Edit(Sent),
    Revoke(Sent),
    Mutual(Sent),
    React(usize, Sent, &'static str),
    ClearUnread(usize, usize),
    Setting(usize, bool, i64),
    Extra(usize),
    Offset(usize),
    Hide(Sent),
    Readed(usize, Sent),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn randomized_incremental_sync_equals_full_sync() {
    let seed: u64 = std::env::var("IMSYNC_TSDD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("randomized tsdd sync: seed {seed} (IMSYNC_TSDD_SEED={seed} reproduces the ops)");
    let mut rng = StdRng::seed_from_u64(seed);
    let server = TestServer::start().await;
    let me = user(&server, "mee").await;
    let u2 = user(&server, "uu2").await;
    let u3 = user(&server, "uu3").await;
    let d1 = me.device(&server).await;
    // Actors: 0 = my other device, 1 = u2, 2 = u3.
    let actors = [me.clone(), u2.clone(), u3.clone()];
    let g1 = me.native.group("mine", &["uu2", "uu3"]).await;
    let g2 = u2.native.group("theirs", &["mee", "uu3"]).await;
    // Conversations: their members, and the group id if a group.
    let convs: Vec<(Vec<usize>, Option<String>)> = vec![
        (vec![0, 1], None),
        (vec![0, 2], None),
        (vec![0, 1, 2], Some(g1)),
        (vec![0, 1, 2], Some(g2)),
    ];
    let channel = |conv: usize, actor: usize| -> (String, i64) {
        match &convs[conv].1 {
            Some(g) => (g.clone(), 2),
            None => {
                let other = convs[conv].0.iter().find(|m| **m != actor).unwrap();
                (actors[*other].uid.clone(), 1)
            }
        }
    };
    let mut sent: Vec<Sent> = Vec::new();
    let mut local = LocalClient::default();

    for round in 0..24 {
        let mut ops = Vec::new();
        for _ in 0..6 {
            let conv = rng.random_range(0..convs.len());
            let members = &convs[conv].0;
            let actor = members[rng.random_range(0..members.len())];
            let pick = if sent.is_empty() {
                0
            } else {
                rng.random_range(0..12)
            };
            let msg = if sent.is_empty() {
                None
            } else {
                Some(sent[rng.random_range(0..sent.len())].clone())
            };
            ops.push(match (pick, msg) {
                (1, Some(m)) => Op::Edit(m),
                (2, Some(m)) if rng.random_bool(0.5) => Op::Revoke(m),
                (2, Some(m)) => Op::Mutual(m),
                (3, Some(m)) => {
                    let members = &convs[m.conv].0;
                    let who = members[rng.random_range(0..members.len())];
                    Op::React(who, m, ["👍", "❤️"][rng.random_range(0..2)])
                }
                (4, _) => Op::ClearUnread(actor, conv),
                (5, _) => Op::Setting(conv, rng.random_bool(0.5), rng.random_range(0..2)),
                (6, _) => Op::Extra(conv),
                (7, _) if rng.random_bool(0.3) => Op::Offset(conv),
                (8, Some(m)) => Op::Hide(m),
                (9, Some(m)) => Op::Readed(0, m),
                (10, _) if convs[conv].1.is_some() => Op::NativeSend(actor, conv),
                _ => Op::Send(actor, conv),
            });
        }
        let run = ops.iter().map(|op| {
            let op = op.clone();
            let actors = &actors;
            let channel = &channel;
            let convs = &convs;
            async move {
                let ch = |m: &Sent, who: usize| channel(m.conv, who);
                let msg_ref = |m: &Sent, who: usize| {
                    let (id, t) = ch(m, who);
                    json!({"message_id": m.body["message_id"], "message_seq": m.body["message_seq"], "channel_id": id, "channel_type": t})
                };
                let (s, b, new) = match &op {
                    Op::Send(a, conv) => {
                        let (id, t) = channel(*conv, *a);
                        let (s, b) = actors[*a]
                            .post("/v1/message/send", json!({"channel_id": id, "channel_type": t, "payload": {"type": 1, "content": "r"}, "client_msg_no": format!("{round}-{}", rand::random::<u64>())}))
                            .await;
                        let new = (s == StatusCode::OK).then(|| Sent { conv: *conv, sender: *a, body: b.clone() });
                        (s, b, new)
                    }
                    Op::NativeSend(a, conv) => {
                        let g = convs[*conv].1.clone().unwrap();
                        let (s, b) = actors[*a].native.post(&format!("/api/im/messages/{g}"), json!({"content": "native"})).await;
                        (if s == StatusCode::CREATED { StatusCode::OK } else { s }, b, None)
                    }
                    Op::Edit(m) => {
                        let mut body = msg_ref(m, m.sender);
                        body["content_edit"] = json!(json!({"type": 1, "content": format!("e{}", rand::random::<u16>())}).to_string());
                        let (s, b) = actors[m.sender].post("/v1/message/edit", body).await;
                        (s, b, None)
                    }
                    Op::Revoke(m) => {
                        let (id, t) = ch(m, m.sender);
                        let (s, b) = actors[m.sender].post(&revoke_path(&id, t, &m.body), json!({})).await;
                        (s, b, None)
                    }
                    Op::Mutual(m) => {
                        let (s, b) = actors[m.sender].call(Method::DELETE, "/v1/message/mutual", Some(msg_ref(m, m.sender))).await;
                        (s, b, None)
                    }
                    Op::React(who, m, emoji) => {
                        let mut body = msg_ref(m, *who);
                        body["emoji"] = json!(emoji);
                        let (s, b) = actors[*who].post("/v1/reactions", body).await;
                        (s, b, None)
                    }
                    Op::ClearUnread(a, conv) => {
                        let (id, t) = channel(*conv, *a);
                        let (s, b) = actors[*a].call(Method::PUT, "/v1/coversation/clearUnread", Some(json!({"channel_id": id, "channel_type": t, "unread": rand::random::<u8>() % 3}))).await;
                        (s, b, None)
                    }
                    Op::Setting(conv, top, v) => {
                        let (id, t) = channel(*conv, 0);
                        let path = if t == 1 { format!("/v1/users/{id}/setting") } else { format!("/v1/groups/{id}/setting") };
                        let body = if *top { json!({"top": v}) } else { json!({"mute": v}) };
                        let (s, b) = actors[0].call(Method::PUT, &path, Some(body)).await;
                        (s, b, None)
                    }
                    Op::Extra(conv) => {
                        let (id, t) = channel(*conv, 0);
                        let (s, b) = actors[0].post(&format!("/v1/conversations/{id}/{t}/extra"), json!({"draft": format!("d{}", rand::random::<u16>()), "keep_message_seq": 1})).await;
                        (s, b, None)
                    }
                    Op::Offset(conv) => {
                        let (id, t) = channel(*conv, 0);
                        let (s, b) = actors[0].post("/v1/message/offset", json!({"channel_id": id, "channel_type": t, "message_seq": rand::random::<u8>() % 20})).await;
                        (s, b, None)
                    }
                    Op::Hide(m) => {
                        let (s, b) = actors[0].call(Method::DELETE, "/v1/message", Some(json!([msg_ref(m, 0)]))).await;
                        (s, b, None)
                    }
                    Op::Readed(a, m) => {
                        let (id, t) = ch(m, *a);
                        let (s, b) = actors[*a].post("/v1/message/readed", json!({"channel_id": id, "channel_type": t, "message_ids": [m.body["message_idstr"]]})).await;
                        (s, b, None)
                    }
                };
                // Some ops are refused by rule (editing a revoked message, ...); none may fail.
                assert!(s == StatusCode::OK || s == StatusCode::BAD_REQUEST, "seed {seed}: {op:?} answered {s} {b}");
                new
            }
        });
        let (_, results) = tokio::join!(local.sync_step(&d1), join_all(run));
        sent.extend(results.into_iter().flatten());
        // Now and then, the syncing device removes a conversation from its list (one it shows: a
        // direct conversation exists only once a message was sent in it).
        let removed = (rng.random_range(0..8) == 0)
            .then(|| channel(rng.random_range(0..convs.len()), 0))
            .filter(|key| local.convs.contains_key(key));
        if let Some(key) = removed {
            let (s, b) = d1
                .call(
                    Method::DELETE,
                    &format!("/v1/conversations/{}/{}", key.0, key.1),
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::OK, "seed {seed}: {b}");
            local.convs.remove(&key);
        }
        if round % 6 == 5 {
            local.sync_step(&d1).await;
            let fresh = fresh_view(&d1).await;
            assert_eq!(
                local.summary(),
                fresh,
                "seed {seed}: round {round}: incremental view differs from a full sync"
            );
        }
    }
    local.sync_step(&d1).await;
    let fresh = fresh_view(&d1).await;
    assert_eq!(
        local.summary(),
        fresh,
        "seed {seed}: incremental view differs from a full sync"
    );
    let (extras, reactions): (usize, usize) = local.convs.values().fold((0, 0), |(e, r), c| {
        (e + c.extras.len(), r + c.reactions.len())
    });
    eprintln!(
        "{} conversations, {extras} message extras, {reactions} reactions, {} messages sent",
        local.convs.len(),
        sent.len()
    );
    assert!(
        extras > 0 && reactions > 0,
        "seed {seed}: the run exercised too little"
    );
    // One more incremental sync with nothing changed returns nothing.
    assert_eq!(
        d1.sync(local.version, "", 5).await["conversations"],
        json!([]),
        "seed {seed}"
    );
}

/// WuKongIM's rule: asking for more unread than the channel has messages leaves one unread,
/// and the pointer never moves back.
#[tokio::test]
async fn clear_unread_beyond_the_message_count_leaves_one() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    for i in 0..3 {
        alice.send(&bob.uid, 1, &format!("u{i}")).await;
    }
    let unread = || async {
        let sync = bob.sync(0, "", 10).await;
        conv(&sync, &alice.uid).unwrap()["unread"]
            .as_i64()
            .unwrap_or(0)
    };
    let clear = |n: i64| {
        let body = json!({"channel_id": alice.uid, "channel_type": 1, "unread": n});
        let bob = bob.clone();
        async move {
            let (s, b) = bob
                .call(Method::PUT, "/v1/coversation/clearUnread", Some(body))
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
    };
    assert_eq!(unread().await, 3);
    clear(10).await;
    assert_eq!(unread().await, 1);
    clear(2).await;
    assert_eq!(unread().await, 1, "the pointer never moves back");
}
