//! Rocket.Chat's realtime API over DDP (`/websocket`, docs/ddp.md): the wire (connect, versions,
//! heartbeats, methods, subscriptions, EJSON dates), the three logins, the methods, the streams
//! with messages from every face, visibility, and the limits shared with `/ws`.

mod common;

use common::python::{self, run_timed, text};
use common::{Api, Options, TestServer};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PASSWORD: &str = "secret-pass-1";

/// SHA-256 of `PASSWORD`, hex, as the DDP clients send it.
fn digest() -> String {
    imsync_core::ids::token_hash(PASSWORD)
}

/// A password account, with its native token.
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
    let (s, me) = api.get("/api/im/me").await;
    assert_eq!(s, StatusCode::OK, "{me}");
    api.user_id = me["data"]["user"]["id"].as_str().unwrap().to_owned();
    api.username = username.to_owned();
    api
}

/// A raw DDP client.
struct Ddp {
    ws: Ws,
    next_id: u64,
}

impl Ddp {
    /// A socket, not yet DDP-connected.
    async fn socket(srv: &TestServer) -> Ddp {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/websocket", srv.addr))
            .await
            .expect("ws connect");
        Ddp { ws, next_id: 0 }
    }

    /// Connected with version "1".
    async fn open(srv: &TestServer) -> Ddp {
        let mut d = Self::socket(srv).await;
        d.send(json!({"msg":"connect","version":"1","support":["1","pre2","pre1"]}))
            .await;
        let f = d.recv().await.expect("connected");
        assert_eq!(f["msg"], "connected", "{f}");
        assert!(f["session"].is_string());
        d
    }

    /// Connected and logged in with the digest.
    async fn login(srv: &TestServer, api: &Api) -> Ddp {
        let mut d = Self::open(srv).await;
        let r = d
            .call(
                "login",
                json!([{"user":{"username":api.username},"password":{"digest":digest(),"algorithm":"sha-256"}}]),
            )
            .await;
        assert_eq!(r["result"]["id"], api.user_id.as_str(), "{r}");
        d
    }

    async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// The next JSON frame within `secs`; `None` at close or timeout. Server pings are answered.
    async fn recv_within(&mut self, ms: u64) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            let m = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
                .ok()?;
            match m {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("JSON frame");
                    if v["msg"] == "ping" {
                        self.send(json!({"msg":"pong"})).await;
                        continue;
                    }
                    return Some(v);
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    async fn recv(&mut self) -> Option<Value> {
        self.recv_within(10_000).await
    }

    /// Frames until one `pred` accepts; panics if none comes.
    async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut seen = Vec::new();
        while let Some(f) = self.recv().await {
            if pred(&f) {
                return f;
            }
            seen.push(f);
        }
        panic!("no {what}; saw {seen:?}");
    }

    /// Calls a method; answers its `result` frame, after checking `updated` follows it.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = format!("m{}", self.next_id);
        self.send(json!({"msg":"method","method":method,"params":params,"id":id}))
            .await;
        let r = self
            .until("result", |f| f["msg"] == "result" && f["id"] == id.as_str())
            .await;
        let u = self.until("updated", |f| f["msg"] == "updated").await;
        assert_eq!(u["methods"], json!([id]), "{u}");
        r
    }

    /// Subscribes; answers `ready` or `nosub`.
    async fn sub(&mut self, name: &str, params: Value) -> (String, Value) {
        self.next_id += 1;
        let id = format!("s{}", self.next_id);
        self.send(json!({"msg":"sub","id":id,"name":name,"params":params}))
            .await;
        let f = self
            .until("ready or nosub", |f| {
                (f["msg"] == "ready" && f["subs"] == json!([id]))
                    || (f["msg"] == "nosub" && f["id"] == id.as_str())
            })
            .await;
        (id, f)
    }

    /// Stream events (`changed`) of a collection and event name.
    async fn event(&mut self, collection: &str, event_name: &str) -> Value {
        self.until(&format!("{collection} {event_name}"), |f| {
            f["msg"] == "changed"
                && f["collection"] == collection
                && f["fields"]["eventName"] == event_name
        })
        .await
    }

    /// Every frame that arrives within `ms`.
    async fn drain(&mut self, ms: u64) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(f) = self.recv_within(ms).await {
            out.push(f);
        }
        out
    }

    /// The close code, reading past other frames.
    async fn close_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(Duration::from_secs(15), self.ws.next()).await {
                Ok(Some(Ok(Message::Close(f)))) => return f.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                other => {
                    eprintln!("no close frame: {other:?}");
                    return None;
                }
            }
        }
    }
}

fn is_date(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 1 && o["$date"].is_i64())
}

/// A Rocket.Chat REST call as `api`'s user, with a token from the native face.
async fn rc(api: &Api, path: &str, body: Option<Value>) -> Value {
    let url = format!("{}/api/v1/{path}", api.base);
    let req = match body {
        Some(b) => api.http.post(url).json(&b),
        None => api.http.get(url),
    };
    let resp = req
        .header("X-User-Id", &api.user_id)
        .header("X-Auth-Token", api.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["success"], true, "{path}: {v}");
    v
}

#[tokio::test]
async fn connect_versions_heartbeats_and_bad_frames() {
    let srv = TestServer::start().await;
    for v in ["1", "pre2", "pre1"] {
        let mut d = Ddp::socket(&srv).await;
        d.send(json!({"msg":"connect","version":v,"support":[v]}))
            .await;
        assert_eq!(d.recv().await.unwrap()["msg"], "connected", "version {v}");
    }
    let mut d = Ddp::socket(&srv).await;
    d.send(json!({"msg":"connect","version":"2","support":["2"]}))
        .await;
    assert_eq!(
        d.recv().await.unwrap(),
        json!({"msg":"failed","version":"1"})
    );

    // Before connect, nothing but connect is taken.
    let mut d = Ddp::socket(&srv).await;
    d.send(json!({"msg":"method","method":"login","params":[],"id":"1"}))
        .await;
    assert_eq!(d.recv().await.unwrap()["reason"], "Must connect first");

    let mut d = Ddp::open(&srv).await;
    d.send(json!({"msg":"ping","id":"p1"})).await;
    assert_eq!(d.recv().await.unwrap(), json!({"msg":"pong","id":"p1"}));
    d.send(json!({"msg":"ping"})).await;
    assert_eq!(d.recv().await.unwrap(), json!({"msg":"pong"}));
    d.ws.send(Message::Text("not json".into())).await.unwrap();
    let f = d.recv().await.unwrap();
    assert_eq!(
        (f["msg"].as_str(), f["reason"].as_str()),
        (Some("error"), Some("Bad request"))
    );
    d.send(json!({"msg":"bogus"})).await;
    assert_eq!(d.recv().await.unwrap()["msg"], "error");

    // An unknown method: Meteor's 404.
    let r = d.call("no/such", json!([])).await;
    assert_eq!(
        r["error"],
        json!({"isClientSafe":true,"error":404,"reason":"Method 'no/such' not found",
               "message":"Method 'no/such' not found [404]","errorType":"Meteor.Error"})
    );
    // A known one before login.
    let r = d.call("rooms/get", json!([])).await;
    assert_eq!(r["error"]["error"], "error-invalid-user", "{r}");
    // Unknown subscriptions are refused; the login service configuration is ready and empty.
    let (_, f) = d.sub("no-such-pub", json!([])).await;
    assert_eq!(f["msg"], "nosub");
    assert_eq!(f["error"]["error"], 404);
    let (_, f) = d.sub("meteor.loginServiceConfiguration", json!([])).await;
    assert_eq!(f["msg"], "ready");
    assert!(d.drain(300).await.is_empty());
}

#[tokio::test]
async fn login_with_password_digest_and_resume() {
    let srv = TestServer::start().await;
    let alice = account(&srv, "alice").await;
    let mut d = Ddp::open(&srv).await;

    let r = d
        .call(
            "login",
            json!([{"user":{"username":"alice"},"password":PASSWORD}]),
        )
        .await;
    let res = &r["result"];
    assert_eq!(res["id"], alice.user_id.as_str(), "{r}");
    assert_eq!(res["type"], "password");
    assert!(is_date(&res["tokenExpires"]), "{r}");
    assert!(res["tokenExpires"]["$date"].as_i64().unwrap() > imsync_core::time::now_ms());
    let plain_token = res["token"].as_str().unwrap().to_owned();

    let r = d
        .call(
            "login",
            json!([{"user":{"username":"alice"},"password":{"digest":digest().to_uppercase(),"algorithm":"sha-256"}}]),
        )
        .await;
    assert_eq!(r["result"]["type"], "password", "{r}");

    // Resume with a token of any face: DDP's own, and the native registration's.
    for token in [plain_token.as_str(), alice.token.as_deref().unwrap()] {
        let r = d.call("login", json!([{"resume": token}])).await;
        assert_eq!(r["result"]["type"], "resume", "{r}");
        assert_eq!(r["result"]["token"], token);
        assert_eq!(r["result"]["id"], alice.user_id.as_str());
        assert!(is_date(&r["result"]["tokenExpires"]));
    }

    // Failures, as Rocket.Chat words them.
    let r = d
        .call(
            "login",
            json!([{"user":{"username":"alice"},"password":"wrong-password"}]),
        )
        .await;
    assert_eq!(r["error"]["error"], 403, "{r}");
    assert_eq!(r["error"]["reason"], "Incorrect password");
    let r = d
        .call(
            "login",
            json!([{"user":{"username":"nobody"},"password":{"digest":digest(),"algorithm":"sha-256"}}]),
        )
        .await;
    assert_eq!(r["error"]["reason"], "User not found", "{r}");
    let r = d.call("login", json!([{"resume": "bogus"}])).await;
    assert_eq!(r["error"]["error"], 403, "{r}");

    // REST login still takes the plain password.
    let resp = alice
        .http
        .post(format!("{}/api/v1/login", srv.base))
        .json(&json!({"user":"alice","password":PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // logout ends the session; the socket stays, anonymous.
    let r = d.call("logout", json!([])).await;
    assert!(r.get("error").is_none(), "{r}");
    let r = d.call("rooms/get", json!([])).await;
    assert_eq!(r["error"]["error"], "error-invalid-user");
    let r = d
        .call("login", json!([{"resume": alice.token.clone().unwrap()}]))
        .await;
    assert_eq!(r["error"]["error"], 403, "the token logged out: {r}");
    let r = d.call("login", json!([{"resume": plain_token}])).await;
    assert_eq!(r["result"]["type"], "resume", "other sessions stay: {r}");
}

#[tokio::test]
async fn methods_rooms_messages_reactions() {
    let srv = TestServer::start_with(Options {
        default_channel: Some("GENERAL".into()),
        ..Default::default()
    })
    .await;
    let alice = account(&srv, "alice").await;
    let bob = account(&srv, "bob").await;
    let mut d = Ddp::login(&srv, &alice).await;

    let r = d.call("getRoomIdByNameOrId", json!(["GENERAL"])).await;
    assert_eq!(r["result"], "GENERAL", "{r}");
    let r = d.call("getRoomNameById", json!(["GENERAL"])).await;
    assert_eq!(r["result"], "general", "{r}");
    let r = d.call("getRoomIdByNameOrId", json!(["nowhere"])).await;
    assert_eq!(r["error"]["error"], "error-invalid-room", "{r}");
    let r = d.call("joinRoom", json!(["GENERAL"])).await;
    assert_eq!(r["result"], true, "{r}");

    let r = d.call("rooms/get", json!([])).await;
    let rooms = r["result"].as_array().expect("a list of rooms");
    let general = rooms
        .iter()
        .find(|x| x["_id"] == "GENERAL")
        .expect("GENERAL");
    assert_eq!(general["t"], "c");
    assert!(is_date(&general["_updatedAt"]), "{general}");
    let r = d
        .call(
            "rooms/get",
            json!([{"$date": imsync_core::time::now_ms() + 60_000}]),
        )
        .await;
    assert_eq!(r["result"], json!({"update": [], "remove": []}), "{r}");
    let r = d.call("subscriptions/get", json!([])).await;
    let subs = r["result"].as_array().unwrap();
    assert!(
        subs.iter()
            .any(|s| s["rid"] == "GENERAL" && s["u"]["_id"] == alice.user_id.as_str()),
        "{r}"
    );

    let r = d.call("createDirectMessage", json!(["bob"])).await;
    let dm = r["result"]["rid"].as_str().expect("rid").to_owned();
    let r = d.call("createDirectMessage", json!(["nobody-here"])).await;
    assert_eq!(r["error"]["error"], "error-invalid-user", "{r}");

    // sendMessage with a client id is idempotent.
    let msg = json!([{"_id":"client-id-0001","rid":dm,"msg":"hello bob"}]);
    let first = d.call("sendMessage", msg.clone()).await;
    let m = &first["result"];
    assert_eq!(m["_id"], "client-id-0001", "{first}");
    assert_eq!(m["rid"], dm.as_str());
    assert_eq!(m["msg"], "hello bob");
    assert_eq!(m["u"]["username"], "alice");
    assert!(is_date(&m["ts"]) && is_date(&m["_updatedAt"]), "{m}");
    let again = d.call("sendMessage", msg).await;
    assert_eq!(again["result"]["_id"], "client-id-0001", "{again}");
    let (events, _) = bob.sync_all(0, 100).await;
    let sent = events
        .iter()
        .filter(|e| e["type"] == "message.new" && e["data"]["id"] == "client-id-0001")
        .count();
    assert_eq!(sent, 1, "the retried send made one message");
    let r = d
        .call("sendMessage", json!([{"rid":"nowhere","msg":"x"}]))
        .await;
    assert_eq!(r["error"]["error"], "error-invalid-room", "{r}");

    let r = d
        .call("setReaction", json!([":thumbsup:", "client-id-0001"]))
        .await;
    assert!(r.get("error").is_none(), "{r}");
    let v = rc(&bob, "chat.getMessage?msgId=client-id-0001", None).await;
    assert_eq!(
        v["message"]["reactions"][":thumbsup:"]["usernames"],
        json!(["alice"]),
        "{v}"
    );
    // Typing notices, as rocketchat-async sends them, are accepted.
    let r = d
        .call(
            "stream-notify-room",
            json!([format!("{dm}/user-activity"), "alice", ["user-typing"], {}]),
        )
        .await;
    assert!(r.get("error").is_none(), "{r}");
    let r = d
        .call("setReaction", json!([":thumbsup:", "no-such-message"]))
        .await;
    assert_eq!(r["error"]["error"], "error-not-allowed", "{r}");
}

/// Every subscriber of a room gets each new message once, in the same frame (rendered once and
/// shared); one that also follows `__my_messages__` gets it there too, with the room's name.
#[tokio::test]
async fn every_subscriber_of_a_room_gets_each_new_message() {
    let srv = TestServer::start().await;
    let alice = account(&srv, "alice").await;
    let bob = account(&srv, "bob").await;
    let carol = account(&srv, "carol").await;
    let room = bob.group("crowd", &["alice", "carol"]).await;
    let mut subs = Vec::new();
    for api in [&alice, &bob, &carol] {
        let mut d = Ddp::login(&srv, api).await;
        let (_, f) = d
            .sub(
                "stream-room-messages",
                json!([room, {"useCollection":false,"args":[]}]),
            )
            .await;
        assert_eq!(f["msg"], "ready", "{f}");
        subs.push(d);
    }
    let (_, f) = subs[2]
        .sub(
            "stream-room-messages",
            json!(["__my_messages__", {"useCollection":false,"args":[]}]),
        )
        .await;
    assert_eq!(f["msg"], "ready", "{f}");
    for i in 0..3 {
        let sent = bob.send(&room, &format!("crowd {i}")).await;
        let mut frames = Vec::new();
        for d in subs.iter_mut() {
            let ev = d.event("stream-room-messages", &room).await;
            assert_eq!(ev["fields"]["args"][0]["_id"], sent["id"], "{ev}");
            assert_eq!(ev["fields"]["args"][0]["msg"], format!("crowd {i}"));
            frames.push(ev);
        }
        assert!(frames.iter().all(|f| *f == frames[0]), "{frames:?}");
        let mine = subs[2]
            .event("stream-room-messages", "__my_messages__")
            .await;
        assert_eq!(mine["fields"]["args"][0]["_id"], sent["id"], "{mine}");
        assert_eq!(mine["fields"]["args"][1]["roomName"], "crowd", "{mine}");
    }
}

#[tokio::test]
async fn room_stream_carries_every_face_and_updates() {
    let srv = TestServer::start().await;
    let alice = account(&srv, "alice").await;
    let bob = account(&srv, "bob").await;
    let room = bob.group("team", &["alice"]).await;
    let mut d = Ddp::login(&srv, &alice).await;
    let (_, f) = d
        .sub(
            "stream-room-messages",
            json!([room, {"useCollection":false,"args":[]}]),
        )
        .await;
    assert_eq!(f["msg"], "ready", "{f}");

    // The native API.
    let native = bob.send(&room, "from native").await;
    let ev = d.event("stream-room-messages", &room).await;
    let m = &ev["fields"]["args"][0];
    assert_eq!(m["_id"], native["id"], "{ev}");
    assert_eq!(m["msg"], "from native");
    assert_eq!(m["u"]["username"], "bob");
    assert!(is_date(&m["ts"]), "{m}");

    // Rocket.Chat REST.
    let v = rc(
        &bob,
        "chat.postMessage",
        Some(json!({"roomId": room, "text": "from rest"})),
    )
    .await;
    let ev = d.event("stream-room-messages", &room).await;
    assert_eq!(ev["fields"]["args"][0]["_id"], v["message"]["_id"]);
    assert_eq!(ev["fields"]["args"][0]["msg"], "from rest");

    // DDP itself, visible through REST and the native feed.
    let r = d
        .call(
            "sendMessage",
            json!([{"_id":"ddp-message-0001","rid":room,"msg":"from ddp"}]),
        )
        .await;
    assert_eq!(r["result"]["_id"], "ddp-message-0001");
    let ev = d.event("stream-room-messages", &room).await;
    assert_eq!(ev["fields"]["args"][0]["_id"], "ddp-message-0001");
    let v = rc(
        &bob,
        &format!("chat.syncMessages?roomId={room}&lastUpdate=1970-01-01T00:00:00.000Z"),
        None,
    )
    .await;
    assert!(
        v["result"]["updated"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["msg"] == "from ddp"),
        "{v}"
    );

    // An edit, a reaction, a deletion: the message again, as it now is.
    let id = native["id"].as_str().unwrap();
    rc(
        &bob,
        "chat.update",
        Some(json!({"roomId": room, "msgId": id, "text": "edited"})),
    )
    .await;
    let ev = d.event("stream-room-messages", &room).await;
    let m = &ev["fields"]["args"][0];
    assert_eq!(
        (m["_id"].as_str(), m["msg"].as_str()),
        (Some(id), Some("edited")),
        "{ev}"
    );
    assert!(is_date(&m["editedAt"]), "{m}");
    rc(
        &bob,
        "chat.react",
        Some(json!({"messageId": id, "emoji": "smile"})),
    )
    .await;
    let ev = d.event("stream-room-messages", &room).await;
    assert_eq!(
        ev["fields"]["args"][0]["reactions"][":smile:"]["usernames"],
        json!(["bob"]),
        "{ev}"
    );
    rc(
        &bob,
        "chat.delete",
        Some(json!({"roomId": room, "msgId": id})),
    )
    .await;
    let ev = d.event("stream-room-messages", &room).await;
    assert_eq!(ev["fields"]["args"][0]["_id"], id);
    assert_eq!(ev["fields"]["args"][0]["t"], "rm", "{ev}");
}

#[tokio::test]
async fn my_messages_and_user_notifications() {
    let srv = TestServer::start().await;
    let alice = account(&srv, "alice").await;
    let bob = account(&srv, "bob").await;
    let mut d = Ddp::open(&srv).await;
    // The @rocket.chat/sdk way: plain password, version pre2 would do the same.
    let r = d
        .call(
            "login",
            json!([{"user":{"username":"alice"},"password":PASSWORD}]),
        )
        .await;
    assert!(r["result"]["token"].is_string(), "{r}");
    d.send(json!({"msg":"sub","id":"my","name":"stream-room-messages","params":["__my_messages__", true]}))
        .await;
    let added = d.recv().await.unwrap();
    assert_eq!(
        added,
        json!({"msg":"added","collection":"stream-room-messages","id":"id","fields":{"eventName":"__my_messages__"}})
    );
    assert_eq!(
        d.recv().await.unwrap(),
        json!({"msg":"ready","subs":["my"]})
    );
    let uid = alice.user_id.clone();
    let (_, f) = d
        .sub(
            "stream-notify-user",
            json!([format!("{uid}/rooms-changed"), false]),
        )
        .await;
    assert_eq!(f["msg"], "ready");
    let (_, f) = d
        .sub(
            "stream-notify-user",
            json!([format!("{uid}/subscriptions-changed"), false]),
        )
        .await;
    assert_eq!(f["msg"], "ready");
    let (_, f) = d
        .sub(
            "stream-notify-user",
            json!([format!("{}/rooms-changed", bob.user_id), false]),
        )
        .await;
    assert_eq!(f["msg"], "nosub", "another user's notifications");

    let room = bob.group("crew", &["alice"]).await;
    let ev = d
        .event("stream-notify-user", &format!("{uid}/rooms-changed"))
        .await;
    assert_eq!(ev["fields"]["args"][0], "inserted", "{ev}");
    assert_eq!(ev["fields"]["args"][1]["_id"], room.as_str());
    let ev = d
        .event(
            "stream-notify-user",
            &format!("{uid}/subscriptions-changed"),
        )
        .await;
    assert_eq!(ev["fields"]["args"][1]["rid"], room.as_str(), "{ev}");

    bob.send(&room, "to the crew").await;
    let ev = d.event("stream-room-messages", "__my_messages__").await;
    let args = &ev["fields"]["args"];
    assert_eq!(args[0]["msg"], "to the crew", "{ev}");
    assert_eq!(
        args[1],
        json!({"roomParticipant":true,"roomType":"p","roomName":"crew"})
    );

    let (s, b) = bob
        .post(
            "/api/im/direct/alice/messages",
            json!({"content":"just you"}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    let ev = d.event("stream-room-messages", "__my_messages__").await;
    assert_eq!(ev["fields"]["args"][0]["msg"], "just you", "{ev}");
    assert_eq!(ev["fields"]["args"][1]["roomType"], "d");
    assert_eq!(ev["fields"]["args"][1]["roomName"], "bob");

    // Removed: the room goes, and nothing of it follows.
    let (s, b) = bob
        .delete(&format!("/api/im/groups/{room}/members/{uid}"))
        .await;
    assert!(s.is_success(), "{b}");
    let name = format!("{uid}/rooms-changed");
    let ev = d
        .until("the room's removal", |f| {
            f["fields"]["eventName"] == name.as_str() && f["fields"]["args"][0] == "removed"
        })
        .await;
    assert_eq!(
        ev["fields"]["args"],
        json!(["removed", {"_id": room}]),
        "{ev}"
    );
    bob.send(&room, "after alice left").await;
    let later = d.drain(500).await;
    assert!(
        !later
            .iter()
            .any(|f| f.to_string().contains("after alice left")),
        "{later:?}"
    );
}

#[tokio::test]
async fn visibility_non_members_and_removed_members() {
    let srv = TestServer::start().await;
    let alice = account(&srv, "alice").await;
    let bob = account(&srv, "bob").await;
    let carol = account(&srv, "carol").await;
    let room = bob.group("private", &["alice"]).await;

    let mut c = Ddp::login(&srv, &carol).await;
    let (_, f) = c.sub("stream-room-messages", json!([room, false])).await;
    assert_eq!(f["msg"], "nosub", "{f}");
    assert_eq!(f["error"]["errorType"], "Meteor.Error");
    let r = c.call("getRoomIdByNameOrId", json!([room])).await;
    assert_eq!(r["error"]["error"], "error-not-allowed", "{r}");

    let mut a = Ddp::login(&srv, &alice).await;
    let (_, f) = a.sub("stream-room-messages", json!([room, false])).await;
    assert_eq!(f["msg"], "ready");
    bob.send(&room, "before").await;
    assert_eq!(
        a.event("stream-room-messages", &room).await["fields"]["args"][0]["msg"],
        "before"
    );
    let (s, b) = bob
        .delete(&format!("/api/im/groups/{room}/members/{}", alice.user_id))
        .await;
    assert!(s.is_success(), "{b}");
    bob.send(&room, "after").await;
    let frames = a.drain(500).await;
    assert!(
        !frames.iter().any(|f| f.to_string().contains("after")),
        "{frames:?}"
    );
    assert!(c.drain(100).await.is_empty());

    // unsub answers nosub.
    let (id, _) = carol_sub(&mut c).await;
    c.send(json!({"msg":"unsub","id":id})).await;
    assert_eq!(c.recv().await.unwrap(), json!({"msg":"nosub","id":id}));
}

async fn carol_sub(c: &mut Ddp) -> (String, Value) {
    c.sub("meteor.loginServiceConfiguration", json!([])).await
}

#[tokio::test]
async fn limits_idle_size_and_session_end() {
    let srv = TestServer::start_with(Options {
        ws_idle_timeout: Some(Duration::from_millis(800)),
        max_body_bytes: Some(4096),
        ..Default::default()
    })
    .await;
    let alice = account(&srv, "alice").await;

    // Idle: the server pings halfway, then closes a client that never answers.
    let mut d = Ddp::open(&srv).await;
    let mut pinged = false;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(5), d.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => pinged |= t.as_str() == r#"{"msg":"ping"}"#,
            Ok(Some(Ok(Message::Close(f)))) => break f.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("no close: {other:?}"),
        }
    };
    assert!(pinged, "the server pings before it gives up");
    assert_eq!(code, Some(4000));

    // A client that answers pings stays.
    let mut d = Ddp::open(&srv).await;
    assert!(d.drain(2000).await.is_empty());
    d.send(json!({"msg":"ping","id":"x"})).await;
    assert_eq!(d.recv().await.unwrap()["msg"], "pong");

    // Too big a frame.
    let mut d = Ddp::open(&srv).await;
    d.ws.send(Message::Text("x".repeat(10_000).into()))
        .await
        .unwrap();
    assert_eq!(d.close_code().await, Some(1009));

    // The session ends elsewhere: the socket closes with 4001.
    let mut d = Ddp::open(&srv).await;
    let r = d
        .call("login", json!([{"resume": alice.token.clone().unwrap()}]))
        .await;
    assert_eq!(r["result"]["type"], "resume", "{r}");
    let (s, b) = alice.post_empty("/api/im/logout").await;
    assert!(s.is_success(), "{b}");
    assert_eq!(d.close_code().await, Some(4001));
}

#[tokio::test]
async fn a_consumer_that_falls_behind_is_closed() {
    let srv = TestServer::start_with(Options {
        realtime_queue: Some(4),
        ..Default::default()
    })
    .await;
    let alice = account(&srv, "alice").await;
    let bob = account(&srv, "bob").await;
    let room = bob.group("busy", &["alice"]).await;
    // A socket with a tiny receive buffer that logs in and then reads nothing for a while.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(sock.connect(srv.addr).await.unwrap());
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{}/websocket", srv.addr), stream)
        .await
        .unwrap();
    let mut d = Ddp { ws, next_id: 0 };
    d.send(json!({"msg":"connect","version":"1"})).await;
    assert_eq!(d.recv().await.unwrap()["msg"], "connected");
    let r = d
        .call("login", json!([{"resume": alice.token.clone().unwrap()}]))
        .await;
    assert_eq!(r["result"]["type"], "resume", "{r}");
    let (_, f) = d.sub("stream-room-messages", json!([room, false])).await;
    assert_eq!(f["msg"], "ready");
    let big = "y".repeat(16 * 1024);
    for i in 0..300 {
        bob.send(&room, &format!("{i} {big}")).await;
    }
    assert_eq!(d.close_code().await, Some(4008));
}

/// The PyPI bot library the first real-client check runs (docs/ddp.md, "Tested clients").
const ROCKETCHAT_ASYNC: &str = "rocketchat-async==4.3.0";

#[tokio::test]
async fn rocketchat_async_bot_against_the_binary() {
    let venv = python::venv_with(
        "interop-venv-rocketchat-async",
        ROCKETCHAT_ASYNC,
        "rocketchat_async",
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::ChildServer::spawn(dir.path(), common::free_port()).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/ddp_async_check.py"
    );
    let mut cmd = tokio::process::Command::new(python::python(&venv));
    cmd.arg(script)
        .arg(&server.base)
        .env("PYTHONUNBUFFERED", "1");
    let out = run_timed(&mut cmd, "ddp_async_check.py", 300).await;
    let output = text(&out);
    println!("{output}");
    assert!(
        out.status.success() && output.contains("\nOK"),
        "ddp_async_check.py failed ({}):\n{output}",
        out.status
    );
}

/// Rocket.Chat's own DDP client, the second real-client check (docs/ddp.md, "Tested clients").
const DDP_CLIENT: (&str, &str) = ("@rocket.chat/ddp-client", "1.1.2");

#[tokio::test]
async fn rocket_chat_ddp_client_against_the_binary() {
    let project = common::node::project(
        "interop-npm-ddp-client",
        std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/ddp-client"
        )),
        DDP_CLIENT.0,
        DDP_CLIENT.1,
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::ChildServer::spawn(dir.path(), common::free_port()).await;
    let srv_api = |token: Option<String>| Api::new(&server.base, token);
    let register = |name: &'static str| async move {
        let (s, b) = srv_api(None)
            .post(
                "/api/im/users/register",
                json!({ "username": name, "password": PASSWORD, "displayName": name }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        srv_api(Some(b["data"]["token"].as_str().unwrap().to_owned()))
    };
    let _alice = register("alice").await;
    let bob = register("bob").await;
    let room = bob.group("ddp-client", &["alice"]).await;

    // Node 20 has WebSocket behind a flag; later versions ignore it.
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("--experimental-websocket")
        .arg(project.join("check.js"))
        .args([server.base.as_str(), "alice", PASSWORD, room.as_str()])
        .arg(bob.token.as_deref().unwrap())
        .current_dir(&project);
    let out = run_timed(&mut cmd, "ddp-client check.js", 120).await;
    let output = text(&out);
    println!("{output}");
    assert!(
        out.status.success() && output.contains("\nOK"),
        "ddp-client check.js failed ({}):\n{output}",
        out.status
    );
}

/// The bot product of the third real-client check (docs/ddp.md, "Tested clients"): Hubot 3 with
/// the Rocket.Chat adapter, whose driver is `@rocket.chat/sdk` (plain-password login,
/// `__my_messages__`).
const HUBOT_ROCKETCHAT: (&str, &str) = ("hubot-rocketchat", "2.0.0");

#[tokio::test]
async fn hubot_hears_and_replies_against_the_binary() {
    use tokio::io::AsyncBufReadExt;

    let interop = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/hubot"));
    let project = common::node::project(
        "interop-npm-hubot",
        interop,
        HUBOT_ROCKETCHAT.0,
        HUBOT_ROCKETCHAT.1,
    )
    .await;
    // Hubot loads its scripts from `scripts/` next to where it runs.
    std::fs::create_dir_all(project.join("scripts")).unwrap();
    std::fs::copy(interop.join("echo.js"), project.join("scripts/echo.js")).unwrap();

    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::ChildServer::spawn(dir.path(), common::free_port()).await;
    let register = |name: &'static str| {
        let base = server.base.clone();
        async move {
            let (s, b) = Api::new(&base, None)
                .post(
                    "/api/im/users/register",
                    json!({ "username": name, "password": PASSWORD, "displayName": name }),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
            let mut api = Api::new(&base, Some(b["data"]["token"].as_str().unwrap().to_owned()));
            api.user_id = b["data"]["user"]["id"].as_str().unwrap().to_owned();
            api.username = name.to_owned();
            api
        }
    };
    let _bot = register("hubot").await;
    let alice = register("alice").await;

    let bin = project.join("node_modules/.bin");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let host = server.base.trim_start_matches("http://").to_owned();
    let mut hubot = tokio::process::Command::new(bin.join("hubot"))
        .args(["--adapter", "rocketchat", "--name", "hubot"])
        .current_dir(&project)
        .env("PATH", path)
        .env("ROCKETCHAT_URL", &host)
        .env("ROCKETCHAT_USER", "hubot")
        .env("ROCKETCHAT_PASSWORD", PASSWORD)
        .env("ROCKETCHAT_ROOM", "GENERAL")
        .env("LISTEN_ON_ALL_PUBLIC", "true")
        .env("HUBOT_LOG_LEVEL", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start hubot");
    // Hubot's log, line by line, to wait on its startup and to show on failure.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let out = hubot.stdout.take().unwrap();
    let err = hubot.stderr.take().unwrap();
    for pipe in [
        Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(err),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(pipe).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
    }
    drop(tx);
    let mut log = String::new();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = rx.recv().await {
            log.push_str(&l);
            log.push('\n');
            // The adapter emits `connected` (and Hubot loads the scripts) after the subscription.
            if l.contains("Loading scripts from") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(ready, Ok(true)),
        "hubot did not connect, log in and subscribe:\n{log}"
    );

    let nonce = format!("n{}", std::process::id());
    alice.send("GENERAL", &format!("ping {nonce}")).await;
    let want = format!("pong {nonce}");
    let mut seen = Value::Null;
    for _ in 0..100 {
        let v = rc(
            &alice,
            "chat.syncMessages?roomId=GENERAL&lastUpdate=2000-01-01T00:00:00.000Z",
            None,
        )
        .await;
        let reply = v["result"]["updated"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["msg"] == want.as_str())
            .cloned();
        if let Some(m) = reply {
            seen = m;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while let Ok(l) = rx.try_recv() {
        log.push_str(&l);
        log.push('\n');
    }
    assert_eq!(
        seen["u"]["username"], "hubot",
        "no reply through REST; hubot's log:\n{log}"
    );
    assert_eq!(seen["rid"], "GENERAL", "{seen}");
    let _ = hubot.kill().await;
}

/// A Rocket.Chat REST call that may fail: its status and body.
async fn rc_raw(api: &Api, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
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

#[tokio::test]
async fn rest_calls_bots_make_around_ddp() {
    let srv = TestServer::start_with(Options {
        default_channel: Some("GENERAL".into()),
        ..Default::default()
    })
    .await;
    let http = reqwest::Client::new();

    // Server info needs no credentials.
    let v: Value = http
        .get(format!("{}/api/info", srv.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["success"], true, "{v}");
    assert!(v["version"].is_string());

    // users.register, then a DDP login with the new account.
    let resp = http
        .post(format!("{}/api/v1/users.register", srv.base))
        .json(&json!({"username":"newbot","email":"newbot@example.com","pass":PASSWORD,"name":"New Bot"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["user"]["username"], "newbot", "{v}");
    let resp = http
        .post(format!("{}/api/v1/users.register", srv.base))
        .json(&json!({"username":"newbot","email":"x@example.com","pass":PASSWORD,"name":"x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["errorType"], "error-field-unavailable", "{v}");
    let mut d = Ddp::open(&srv).await;
    let r = d
        .call(
            "login",
            json!([{"user":{"username":"newbot"},"password":PASSWORD}]),
        )
        .await;
    assert_eq!(r["result"]["type"], "password", "{r}");

    let alice = account(&srv, "alice").await;
    let bob = account(&srv, "bob").await;
    let v = rc(&alice, "users.info?username=bob", None).await;
    assert_eq!(v["user"]["_id"], bob.user_id.as_str(), "{v}");
    let v = rc(&alice, &format!("users.info?userId={}", bob.user_id), None).await;
    assert_eq!(v["user"]["username"], "bob");
    let (s, v) = rc_raw(&alice, "GET", "users.info?username=nobody", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errorType"], "error-invalid-user", "{v}");

    // Room lists.
    let group = bob.group("crew", &["alice"]).await;
    let (s, b) = bob
        .post(
            "/api/im/direct/alice/messages",
            json!({"content":"hi alice"}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    let v = rc(&alice, "channels.list.joined", None).await;
    assert_eq!(ids_of(&v["channels"]), vec!["GENERAL"], "{v}");
    let v = rc(&alice, "groups.list", None).await;
    assert_eq!(ids_of(&v["groups"]), vec![group.clone()], "{v}");
    assert_eq!(v["total"], 1);
    for path in ["im.list", "dm.list"] {
        let v = rc(&alice, path, None).await;
        assert_eq!(v["ims"].as_array().unwrap().len(), 1, "{path}: {v}");
        assert_eq!(v["ims"][0]["t"], "d");
    }
    let dm = rc(&alice, "im.list", None).await["ims"][0]["_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Info, members, history.
    let v = rc(&alice, &format!("groups.info?roomId={group}"), None).await;
    assert_eq!(v["group"]["name"], "crew", "{v}");
    let v = rc(&alice, "channels.info?roomName=general", None).await;
    assert_eq!(v["channel"]["_id"], "GENERAL", "{v}");
    let v = rc(&alice, &format!("rooms.info?roomId={dm}"), None).await;
    assert_eq!(v["room"]["t"], "d", "{v}");
    let carol = account(&srv, "carol").await;
    let (s, v) = rc_raw(&carol, "GET", &format!("groups.info?roomId={group}"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errorType"], "error-room-not-found", "{v}");
    let v = rc(&alice, &format!("groups.members?roomId={group}"), None).await;
    let mut names: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["alice", "bob"], "{v}");
    for i in 0..3 {
        bob.send(&group, &format!("m{i}")).await;
    }
    let v = rc(
        &alice,
        &format!("groups.history?roomId={group}&count=2"),
        None,
    )
    .await;
    let texts: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["msg"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["m2", "m1"], "newest first: {v}");
    for path in ["im.history", "dm.history", "dm.messages"] {
        let v = rc(&alice, &format!("{path}?roomId={dm}"), None).await;
        assert_eq!(v["messages"][0]["msg"], "hi alice", "{path}: {v}");
    }
    let (s, _) = rc_raw(
        &carol,
        "GET",
        &format!("groups.history?roomId={group}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a non-member reads no history");

    // The caller's subscription: unread, read, and leaving.
    let v = rc(
        &alice,
        &format!("subscriptions.getOne?roomId={group}"),
        None,
    )
    .await;
    assert_eq!(v["subscription"]["unread"], 3, "{v}");
    rc(&alice, "subscriptions.read", Some(json!({"rid": group}))).await;
    let v = rc(
        &alice,
        &format!("subscriptions.getOne?roomId={group}"),
        None,
    )
    .await;
    assert_eq!(v["subscription"]["unread"], 0, "{v}");
    rc(&alice, "groups.leave", Some(json!({"roomId": group}))).await;
    let v = rc(&alice, "groups.list", None).await;
    assert_eq!(v["groups"], json!([]), "{v}");

    // channels.join with joinCode null, as the Python client sends it.
    rc(&carol, "channels.leave", Some(json!({"roomId": "GENERAL"}))).await;
    rc(
        &carol,
        "channels.join",
        Some(json!({"roomId": "GENERAL", "joinCode": null})),
    )
    .await;
}

fn ids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|r| r["_id"].as_str().unwrap().to_owned())
        .collect()
}
