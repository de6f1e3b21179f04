//! Read receipts (`message.read` to the other members, live and through sync, from every face
//! that moves the read pointer forward), reactions in native history, and contacts: friend
//! requests, friends, remarks and blocks, a block refusing the direct conversation on every face.
mod common;

use common::{Api, TestServer};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(srv: &TestServer, api: &Api) -> Ws {
    let url = format!(
        "ws://{}/ws?token={}",
        srv.addr,
        api.token.as_deref().unwrap()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    let first = next_frame(&mut ws).await.expect("a first frame");
    assert_eq!(first["type"], "authenticated", "{first}");
    ws
}

async fn next_frame(ws: &mut Ws) -> Option<Value> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .ok()??
            .ok()?;
        match m {
            Message::Text(t) => return Some(serde_json::from_str(t.as_str()).expect("JSON frame")),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

async fn until_ws(ws: &mut Ws, kind: &str) -> Value {
    let mut seen = Vec::new();
    while let Some(f) = next_frame(ws).await {
        if f["type"] == kind {
            return f;
        }
        seen.push(f);
    }
    panic!("no {kind} frame; saw {seen:?}");
}

/// `data:` frames of an SSE response.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(srv: &TestServer, api: &Api) -> Sse {
        let resp = reqwest::get(format!(
            "{}/sse?token={}",
            srv.base,
            api.token.as_deref().unwrap()
        ))
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        let mut sse = Sse {
            resp,
            buf: String::new(),
        };
        assert_eq!(sse.next().await["type"], "authenticated");
        sse
    }

    async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .expect("an SSE frame within 10 s")
                .unwrap()
                .expect("stream still open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn until(&mut self, kind: &str) -> Value {
        loop {
            let f = self.next().await;
            if f["type"] == kind {
                return f;
            }
        }
    }
}

#[track_caller]
fn expect_ok(label: &str, got: (StatusCode, Value), status: StatusCode) -> Value {
    let (s, b) = got;
    assert_eq!(s, status, "{label}: {b}");
    assert_eq!(b["ok"], true, "{label}: {b}");
    b["data"].clone()
}

#[track_caller]
fn expect_err(label: &str, got: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (s, b) = got;
    assert_eq!(*s, status, "{label}: {b}");
    assert_eq!(b["ok"], false, "{label}: {b}");
    assert_eq!(b["error"]["code"], code, "{label}: {b}");
    assert!(b["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

/// The `message.read` events of a conversation in the user's sync feed.
async fn receipts(api: &Api, conv: &str) -> Vec<Value> {
    api.sync_all(0, 200)
        .await
        .0
        .into_iter()
        .filter(|e| e["type"] == "message.read" && e["conversationId"] == conv)
        .collect()
}

/// A request with the Rocket.Chat face's auth headers (the session token is the same).
async fn rc_post(api: &Api, path: &str, body: Value) -> (StatusCode, Value) {
    api.request(
        Method::POST,
        &format!("/api/v1/{path}"),
        Some(body),
        &[
            ("X-User-Id", api.user_id.as_str()),
            ("X-Auth-Token", api.token.as_deref().unwrap()),
        ],
    )
    .await
}

/// A request with the TangSengDaoDao face's auth header.
async fn tsdd(api: &Api, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    api.request(
        method,
        path,
        Some(body),
        &[("token", api.token.as_deref().unwrap())],
    )
    .await
}

#[tokio::test]
async fn a_read_reaches_the_other_members_live_and_through_sync() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let g = alice.group("team", &["bob", "carol"]).await;
    bob.send(&g, "one").await;
    let last = bob.send(&g, "two").await["id"].clone();

    let mut ws = connect(&srv, &bob).await;
    let mut sse = Sse::open(&srv, &bob).await;
    let r = expect_ok(
        "read",
        alice
            .post_empty(&format!("/api/im/conversations/{g}/read"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(r["lastReadMessageId"], last);

    for (via, f) in [
        ("ws", until_ws(&mut ws, "message.read").await),
        ("sse", sse.until("message.read").await),
    ] {
        let p = &f["payload"];
        assert_eq!(p["conversationId"], g, "{via}: {f}");
        assert_eq!(p["readBy"], alice.user_id, "{via}: {f}");
        assert_eq!(p["userId"], alice.user_id, "{via}: {f}");
        assert_eq!(p["lastReadMessageId"], last, "{via}: {f}");
        assert_eq!(p["readMsgSeq"], 2, "{via}: {f}");
        assert!(p["readAt"].is_string(), "{via}: {f}");
    }

    // Sync carries it to every member, once; reading again without news says nothing more.
    alice
        .post_empty(&format!("/api/im/conversations/{g}/read"))
        .await;
    for u in [&alice, &bob, &carol] {
        let got = receipts(u, &g).await;
        assert_eq!(got.len(), 1, "{}: {got:?}", u.username);
        assert_eq!(got[0]["data"]["readBy"], alice.user_id);
        assert_eq!(got[0]["data"]["readMsgSeq"], 2);
    }
    // The reader's own pointer stays private.
    let (events, _) = bob.sync_all(0, 200).await;
    assert!(!events
        .iter()
        .any(|e| e["type"] == "conversation.read" && e["data"]["userId"] == alice.user_id));

    // Someone who joins later does not see receipts from before; one removed sees none after.
    let dave = srv.user("dave").await;
    let (s, b) = alice
        .post(
            &format!("/api/im/conversations/{g}/participants"),
            json!({"userId": dave.user_id}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    assert!(receipts(&dave, &g).await.is_empty());
    let (s, b) = alice
        .delete(&format!(
            "/api/im/conversations/{g}/participants/{}",
            carol.user_id
        ))
        .await;
    assert!(s.is_success(), "{b}");
    alice.send(&g, "three").await;
    bob.post_empty(&format!("/api/im/conversations/{g}/read"))
        .await;
    let from_bob = |list: Vec<Value>| {
        list.into_iter()
            .filter(|e| e["data"]["readBy"] == json!(bob.user_id))
            .count()
    };
    assert_eq!(from_bob(receipts(&dave, &g).await), 1);
    assert_eq!(from_bob(receipts(&carol, &g).await), 0, "a removed member");
}

#[tokio::test]
async fn rocketchat_and_tangsengdaodao_reads_send_the_same_receipt() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    alice.send(&g, "one").await;
    let mut ws = connect(&srv, &alice).await;

    let (s, b) = rc_post(&bob, "subscriptions.read", json!({ "rid": g })).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["success"], true, "{b}");
    let f = until_ws(&mut ws, "message.read").await;
    assert_eq!(f["payload"]["readBy"], bob.user_id);
    assert_eq!(f["payload"]["readMsgSeq"], 1);

    alice.send(&g, "two").await;
    let (s, b) = tsdd(
        &bob,
        Method::PUT,
        "/v1/coversation/clearUnread",
        json!({"channel_id": g, "channel_type": 2, "unread": 0}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let f = until_ws(&mut ws, "message.read").await;
    assert_eq!(f["payload"]["readBy"], bob.user_id);
    assert_eq!(f["payload"]["readMsgSeq"], 2);

    let seqs: Vec<i64> = receipts(&alice, &g)
        .await
        .iter()
        .map(|e| e["data"]["readMsgSeq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2]);

    // Marking unread (moving back) is the reader's own business: no receipt.
    let (s, b) = rc_post(&bob, "subscriptions.unread", json!({ "roomId": g })).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(receipts(&alice, &g).await.len(), 2);
}

#[tokio::test]
async fn history_carries_reactions() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let m1 = alice.send(&g, "one").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m2 = alice.send(&g, "two").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (u, emoji) in [(&alice, "👍"), (&bob, "👍"), (&bob, "🎉")] {
        let (s, b) = u
            .post(
                &format!("/api/im/messages/{g}/{m1}/reactions"),
                json!({"emoji": emoji}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, b) = bob
        .post(
            &format!("/api/im/messages/{g}/{m1}/reactions"),
            json!({"emoji": "🎉", "remove": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    for path in [
        format!("/api/im/messages/{g}"),
        format!("/api/im/groups/{g}/messages"),
    ] {
        let list = expect_ok("history", bob.get(&path).await, StatusCode::OK);
        let by_id = |id: &str| {
            list.as_array()
                .unwrap()
                .iter()
                .find(|m| m["id"] == id)
                .cloned()
                .unwrap()
        };
        assert_eq!(
            by_id(&m1)["reactions"],
            json!({"👍": [alice.user_id, bob.user_id]}),
            "{path}"
        );
        assert_eq!(by_id(&m2)["reactions"], json!({}), "{path}");
    }
    let d = {
        let (s, b) = alice
            .post("/api/im/direct/bob/messages", json!({"content": "hi"}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["data"]["message"].clone()
    };
    let (s, _) = bob
        .post(
            &format!(
                "/api/im/messages/{}/{}/reactions",
                d["conversationId"].as_str().unwrap(),
                d["id"].as_str().unwrap()
            ),
            json!({"emoji": "❤"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let list = expect_ok(
        "direct history",
        alice.get("/api/im/direct/bob/messages").await,
        StatusCode::OK,
    );
    assert_eq!(list[0]["reactions"], json!({"❤": [bob.user_id]}));
}

#[tokio::test]
async fn friend_requests_friends_and_remarks() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;

    let r = expect_ok(
        "request",
        alice
            .post(
                "/api/im/contacts/request",
                json!({"userId": bob.user_id, "reason": "hi", "source": "search"}),
            )
            .await,
        StatusCode::CREATED,
    );
    assert_eq!(r["status"], "pending");
    assert_eq!(r["fromUserId"], alice.user_id);
    assert_eq!(r["toUser"]["username"], "bob");
    assert_eq!(r["reason"], "hi");
    let id = r["id"].as_str().unwrap().to_owned();
    // Asking again answers the pending request.
    let again = expect_ok(
        "request again",
        alice
            .post("/api/im/contacts/request", json!({"userId": "bob"}))
            .await,
        StatusCode::CREATED,
    );
    assert_eq!(again["id"], id);

    let sent = expect_ok(
        "sent",
        alice.get("/api/im/contacts/requests/sent").await,
        StatusCode::OK,
    );
    assert_eq!(sent.as_array().unwrap().len(), 1);
    let received = expect_ok(
        "received",
        bob.get("/api/im/contacts/requests/received").await,
        StatusCode::OK,
    );
    assert_eq!(received[0]["id"], id);
    assert_eq!(
        expect_ok(
            "none",
            carol.get("/api/im/contacts/requests/received").await,
            StatusCode::OK
        ),
        json!([])
    );

    expect_err(
        "a stranger accepts",
        &carol
            .post_empty(&format!("/api/im/contacts/requests/{id}/accept"))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "the sender accepts",
        &alice
            .post_empty(&format!("/api/im/contacts/requests/{id}/accept"))
            .await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    let a = expect_ok(
        "accept",
        bob.post_empty(&format!("/api/im/contacts/requests/{id}/accept"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(a["status"], "accepted");
    expect_err(
        "accept twice",
        &bob.post_empty(&format!("/api/im/contacts/requests/{id}/accept"))
            .await,
        StatusCode::CONFLICT,
        "CONFLICT",
    );
    for (me, other) in [(&alice, &bob), (&bob, &alice)] {
        let f = expect_ok(
            "friends",
            me.get("/api/im/contacts/friends").await,
            StatusCode::OK,
        );
        assert_eq!(f.as_array().unwrap().len(), 1, "{f}");
        assert_eq!(f[0]["userId"], other.user_id);
        assert_eq!(f[0]["remark"], Value::Null);
    }
    expect_err(
        "request a friend",
        &alice
            .post("/api/im/contacts/request", json!({"userId": bob.user_id}))
            .await,
        StatusCode::CONFLICT,
        "CONFLICT",
    );

    // The remark is the caller's own.
    let f = expect_ok(
        "remark",
        alice
            .patch(
                &format!("/api/im/contacts/{}/remark", bob.user_id),
                json!({"remark": "Bobby"}),
            )
            .await,
        StatusCode::OK,
    );
    assert_eq!(f["remark"], "Bobby");
    let f = expect_ok(
        "friends",
        alice.get("/api/im/contacts/friends").await,
        StatusCode::OK,
    );
    assert_eq!(f[0]["remark"], "Bobby");
    let f = expect_ok(
        "friends",
        bob.get("/api/im/contacts/friends").await,
        StatusCode::OK,
    );
    assert_eq!(f[0]["remark"], Value::Null);
    expect_err(
        "remark a stranger",
        &alice
            .patch(
                &format!("/api/im/contacts/{}/remark", carol.user_id),
                json!({"remark": "x"}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "remark too long",
        &alice
            .patch(
                &format!("/api/im/contacts/{}/remark", bob.user_id),
                json!({"remark": "x".repeat(65)}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );

    // Whoever asks second, when the other asked first, makes them friends at once.
    let r = expect_ok(
        "carol asks",
        carol
            .post("/api/im/contacts/request", json!({"userId": alice.user_id}))
            .await,
        StatusCode::CREATED,
    );
    let crossed = expect_ok(
        "alice asks back",
        alice
            .post("/api/im/contacts/request", json!({"userId": carol.user_id}))
            .await,
        StatusCode::OK,
    );
    assert_eq!(crossed["id"], r["id"]);
    assert_eq!(crossed["status"], "accepted");

    // A request taken back by its sender, and one refused by its recipient.
    let r = expect_ok(
        "bob asks carol",
        bob.post("/api/im/contacts/request", json!({"userId": carol.user_id}))
            .await,
        StatusCode::CREATED,
    );
    let rid = r["id"].as_str().unwrap();
    let c = expect_ok(
        "cancel",
        bob.post_empty(&format!("/api/im/contacts/requests/{rid}/reject"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(c["status"], "cancelled");
    let r = expect_ok(
        "bob asks carol again",
        bob.post("/api/im/contacts/request", json!({"userId": carol.user_id}))
            .await,
        StatusCode::CREATED,
    );
    let rid = r["id"].as_str().unwrap();
    let c = expect_ok(
        "reject",
        carol
            .post_empty(&format!("/api/im/contacts/requests/{rid}/reject"))
            .await,
        StatusCode::OK,
    );
    assert_eq!(c["status"], "rejected");

    let removed = expect_ok(
        "remove",
        bob.delete(&format!("/api/im/contacts/{}/remove", alice.user_id))
            .await,
        StatusCode::OK,
    );
    assert_eq!(removed["removed"], true);
    let f = expect_ok(
        "friends",
        alice.get("/api/im/contacts/friends").await,
        StatusCode::OK,
    );
    assert_eq!(f.as_array().unwrap().len(), 1, "only carol is left: {f}");
    expect_err(
        "remove twice",
        &bob.delete(&format!("/api/im/contacts/{}/remove", alice.user_id))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );

    for (label, got) in [
        (
            "request oneself",
            alice
                .post("/api/im/contacts/request", json!({"userId": alice.user_id}))
                .await,
        ),
        (
            "request without userId",
            alice.post("/api/im/contacts/request", json!({})).await,
        ),
        (
            "reason too long",
            alice
                .post(
                    "/api/im/contacts/request",
                    json!({"userId": "bob", "reason": "x".repeat(501)}),
                )
                .await,
        ),
    ] {
        expect_err(label, &got, StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    }
    expect_err(
        "request nobody",
        &alice
            .post("/api/im/contacts/request", json!({"userId": "nobody"}))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "accept nothing",
        &alice
            .post_empty("/api/im/contacts/requests/nope/accept")
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    expect_err(
        "unauthenticated",
        &srv.client().get("/api/im/contacts/friends").await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
}

#[tokio::test]
async fn a_block_refuses_the_direct_conversation_on_every_face() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let (s, b) = bob
        .post("/api/im/direct/alice/messages", json!({"content": "hi"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let dm = b["data"]["message"]["conversationId"]
        .as_str()
        .unwrap()
        .to_owned();
    // A friendship and a pending request end with the block.
    let r = expect_ok(
        "request",
        bob.post("/api/im/contacts/request", json!({"userId": "alice"}))
            .await,
        StatusCode::CREATED,
    );
    assert_eq!(r["status"], "pending");

    let blocked = expect_ok(
        "block",
        alice
            .post_empty(&format!("/api/im/contacts/{}/block", bob.user_id))
            .await,
        StatusCode::OK,
    );
    assert_eq!(blocked["userId"], bob.user_id);
    expect_ok(
        "block twice",
        alice
            .post_empty(&format!("/api/im/contacts/{}/block", bob.user_id))
            .await,
        StatusCode::OK,
    );
    let list = expect_ok(
        "blocked",
        alice.get("/api/im/contacts/blocked").await,
        StatusCode::OK,
    );
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["username"], "bob");
    assert_eq!(
        expect_ok(
            "received",
            alice.get("/api/im/contacts/requests/received").await,
            StatusCode::OK
        ),
        json!([])
    );

    // Native: neither side opens the conversation or sends to it.
    for (label, got) in [
        (
            "bob sends to the existing conversation",
            bob.post(&format!("/api/im/messages/{dm}"), json!({"content": "x"}))
                .await,
        ),
        (
            "bob sends by username",
            bob.post("/api/im/direct/alice/messages", json!({"content": "x"}))
                .await,
        ),
        (
            "bob opens it",
            bob.post(
                "/api/im/conversations/direct",
                json!({"otherUserId": alice.user_id}),
            )
            .await,
        ),
        (
            "alice sends to someone she blocked",
            alice
                .post(&format!("/api/im/messages/{dm}"), json!({"content": "x"}))
                .await,
        ),
        (
            "bob asks to be friends",
            bob.post("/api/im/contacts/request", json!({"userId": "alice"}))
                .await,
        ),
    ] {
        expect_err(label, &got, StatusCode::FORBIDDEN, "BLOCKED");
    }
    // Rocket.Chat: the same refusal in its format.
    let (s, b) = rc_post(
        &bob,
        "chat.sendMessage",
        json!({"message": {"rid": dm, "msg": "x"}}),
    )
    .await;
    assert_ne!(s, StatusCode::OK, "{b}");
    assert_eq!(b["success"], false, "{b}");
    assert!(b["error"].is_string(), "{b}");
    let (s, b) = rc_post(&bob, "im.create", json!({"username": "alice"})).await;
    assert_ne!(s, StatusCode::OK, "{b}");
    assert_eq!(b["success"], false, "{b}");
    // TangSengDaoDao: `{msg, status}`.
    let (s, b) = tsdd(
        &bob,
        Method::POST,
        "/v1/message/send",
        json!({"channel_id": alice.user_id, "channel_type": 1,
               "payload": {"type": 1, "content": "x"}, "client_msg_no": "blocked-1"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["status"], 400, "{b}");
    assert!(b["msg"].as_str().is_some_and(|m| !m.is_empty()), "{b}");
    // Nothing was written.
    let (events, _) = alice.sync_all(0, 200).await;
    assert_eq!(
        events.iter().filter(|e| e["type"] == "message.new").count(),
        1
    );

    // Others are not affected, and the group the two share still works.
    carol
        .post("/api/im/direct/alice/messages", json!({"content": "ok"}))
        .await;
    let g = alice.group("both", &["bob"]).await;
    bob.send(&g, "in a group").await;

    let u = expect_ok(
        "unblock",
        alice
            .delete(&format!("/api/im/contacts/{}/block", bob.user_id))
            .await,
        StatusCode::OK,
    );
    assert_eq!(u["blocked"], false);
    expect_err(
        "unblock twice",
        &alice
            .delete(&format!("/api/im/contacts/{}/block", bob.user_id))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let (s, b) = bob
        .post(
            &format!("/api/im/messages/{dm}"),
            json!({"content": "again"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    expect_err(
        "block oneself",
        &alice
            .post_empty(&format!("/api/im/contacts/{}/block", alice.user_id))
            .await,
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    );
    expect_err(
        "block nobody",
        &alice.post_empty("/api/im/contacts/nobody/block").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}
