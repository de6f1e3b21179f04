//! The WuKongIM socket (docs/wukongim.md): a small client built on the server's own codec,
//! and the real `wukongimjssdk` in Node (see `sdk_*`).

mod common;

use common::{Api, TestServer};
use futures_util::{SinkExt, StreamExt};
use imsync_server::wukongim::codec::{self, Connect, Packet, Recv, Send};
use imsync_server::wukongim::crypto::{recv_verify, send_verify, Cipher, ServerKeys};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Account {
    uid: String,
    token: String,
    native: Api,
}

async fn account(srv: &TestServer, username: &str) -> Account {
    let (s, b) = srv
        .client()
        .post(
            "/api/im/users/register",
            json!({"username": username, "password": "secret-pass", "displayName": username}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "register {username}: {b}");
    let (s, b) = srv
        .client()
        .post(
            "/v1/user/login",
            json!({"username": username, "password": "secret-pass"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "login {username}: {b}");
    let token = b["token"].as_str().unwrap().to_owned();
    let uid = b["uid"].as_str().unwrap().to_owned();
    let mut native = Api::new(&srv.base, Some(token.clone()));
    native.user_id = uid.clone();
    native.username = username.to_owned();
    Account { uid, token, native }
}

/// A TSDD REST call with the `token` header.
async fn tsdd(
    srv: &TestServer,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", srv.base))
        .header("token", token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

struct Client {
    ws: Ws,
    cipher: Cipher,
    uid: String,
    seq: u32,
}

async fn open(srv: &TestServer) -> Ws {
    let url = format!("ws://{}{}", srv.addr, imsync_server::wukongim::SOCKET_PATH);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

async fn next_packet(ws: &mut Ws) -> Option<Packet> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a packet within 10 s")?;
        match m.ok()? {
            Message::Binary(b) => return Some(codec::decode(&b, 1 << 20).expect("a valid packet")),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// CONNECT with `token`; answers the CONNACK and the connection.
async fn connect(srv: &TestServer, uid: &str, token: &str) -> (codec::Connack, Option<Client>) {
    let mut ws = open(srv).await;
    let secret: [u8; 32] = rand::random();
    let mine = ServerKeys::from_parts(secret, String::new());
    let p = Packet::Connect(Connect {
        version: 2,
        device_flag: 1,
        device_id: "rust-test".into(),
        uid: uid.into(),
        token: token.into(),
        client_timestamp: 0,
        client_key: mine.public.clone(),
    });
    ws.send(Message::Binary(p.encode().unwrap().into()))
        .await
        .unwrap();
    let Some(Packet::Connack(ack)) = next_packet(&mut ws).await else {
        panic!("CONNACK expected");
    };
    if ack.reason != codec::REASON_SUCCESS {
        return (ack, None);
    }
    let cipher = ServerKeys::from_parts(secret, ack.salt.clone())
        .agree(&ack.server_key)
        .expect("a usable server key");
    (
        ack,
        Some(Client {
            ws,
            cipher,
            uid: uid.into(),
            seq: 0,
        }),
    )
}

impl Client {
    async fn put(&mut self, p: &Packet) {
        self.ws
            .send(Message::Binary(p.encode().unwrap().into()))
            .await
            .unwrap();
    }

    fn send_packet(
        &mut self,
        channel_id: &str,
        channel_type: u8,
        client_msg_no: &str,
        text: &str,
    ) -> Send {
        self.seq += 1;
        let payload = self
            .cipher
            .encrypt_b64(json!({"type": 1, "content": text}).to_string().as_bytes());
        let verify = send_verify(self.seq, client_msg_no, channel_id, channel_type, &payload);
        Send {
            flags: 0,
            setting: 0,
            client_seq: self.seq,
            client_msg_no: client_msg_no.into(),
            stream_no: None,
            channel_id: channel_id.into(),
            channel_type,
            msg_key: self.cipher.msg_key(&verify),
            topic: None,
            payload: payload.into_bytes(),
        }
    }

    /// SENDs a text; answers the SENDACK (RECVs of others arriving first are an error).
    async fn send(
        &mut self,
        channel_id: &str,
        channel_type: u8,
        client_msg_no: &str,
        text: &str,
    ) -> codec::Sendack {
        let s = self.send_packet(channel_id, channel_type, client_msg_no, text);
        self.put(&Packet::Send(s)).await;
        match next_packet(&mut self.ws).await {
            Some(Packet::Sendack(a)) => a,
            other => panic!("{}: SENDACK expected, got {other:?}", self.uid),
        }
    }

    /// The next RECV, checked and decrypted as the SDK does: its payload JSON.
    async fn recv(&mut self) -> (Recv, Value) {
        match next_packet(&mut self.ws).await {
            Some(Packet::Recv(r)) => {
                let payload = std::str::from_utf8(&r.payload).unwrap();
                let verify = recv_verify(
                    r.message_id,
                    r.message_seq,
                    &r.client_msg_no,
                    r.timestamp,
                    &r.from_uid,
                    &r.channel_id,
                    r.channel_type,
                    payload,
                );
                assert_eq!(self.cipher.msg_key(&verify), r.msg_key, "RECV msgKey");
                let plain = self.cipher.decrypt_b64(&r.payload).expect("RECV decrypts");
                let v = serde_json::from_slice(&plain).unwrap();
                (r, v)
            }
            other => panic!("{}: RECV expected, got {other:?}", self.uid),
        }
    }

    /// Nothing arrives within a short while (a PING's PONG proves the connection is alive).
    async fn quiet(&mut self) {
        self.put(&Packet::Ping).await;
        match next_packet(&mut self.ws).await {
            Some(Packet::Pong) => {}
            other => panic!("{}: only a PONG expected, got {other:?}", self.uid),
        }
    }
}

async fn channel_messages(
    srv: &TestServer,
    who: &Account,
    channel_id: &str,
    channel_type: u8,
) -> Vec<Value> {
    let (s, b) = tsdd(
        srv,
        &who.token,
        reqwest::Method::POST,
        "/v1/message/channel/sync",
        Some(json!({"channel_id": channel_id, "channel_type": channel_type, "start_message_seq": 0, "end_message_seq": 0, "limit": 100, "pull_mode": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn chat_over_the_socket() {
    let srv = TestServer::start().await;
    let alice = account(&srv, "alice").await;
    let bob = account(&srv, "bob").await;
    let carol = account(&srv, "carol").await;

    // A wrong token, or a token of someone else, is CONNACK reason 2.
    let (ack, c) = connect(&srv, &alice.uid, "wrong-token").await;
    assert_eq!(ack.reason, codec::REASON_AUTH_FAIL);
    assert!(c.is_none());
    let (ack, _) = connect(&srv, &alice.uid, &bob.token).await;
    assert_eq!(ack.reason, codec::REASON_AUTH_FAIL);

    let (ack, a) = connect(&srv, &alice.uid, &alice.token).await;
    assert_eq!(ack.salt.len(), 16);
    let mut a = a.unwrap();
    let mut a2 = connect(&srv, &alice.uid, &alice.token).await.1.unwrap();
    let mut b = connect(&srv, &bob.uid, &bob.token).await.1.unwrap();
    let mut c = connect(&srv, &carol.uid, &carol.token).await.1.unwrap();

    // Person channel: SENDACK to the sender, RECV to the peer named by the sender's uid, and to
    // the sender's other device named by the peer's.
    let ack = a.send(&bob.uid, 1, "cmn-1", "hello bob").await;
    assert_eq!(ack.reason, codec::REASON_SUCCESS);
    assert_eq!(ack.message_seq, 1);
    let (r, payload) = b.recv().await;
    assert_eq!(r.channel_id, alice.uid);
    assert_eq!(r.channel_type, 1);
    assert_eq!(r.from_uid, alice.uid);
    assert_eq!(r.client_msg_no, "cmn-1");
    assert_eq!((r.message_id, r.message_seq), (ack.message_id, 1));
    assert_eq!(payload, json!({"type": 1, "content": "hello bob"}));
    let (r2, _) = a2.recv().await;
    assert_eq!(r2.channel_id, bob.uid);
    a.quiet().await;
    c.quiet().await;

    // The same clientMsgNo again: the same message, nothing new delivered or stored.
    let again = a.send(&bob.uid, 1, "cmn-1", "hello bob").await;
    assert_eq!(again.reason, codec::REASON_SUCCESS);
    assert_eq!((again.message_id, again.message_seq), (ack.message_id, 1));
    b.quiet().await;
    assert_eq!(channel_messages(&srv, &bob, &alice.uid, 1).await.len(), 1);

    // A corrupted msgKey is refused and stores nothing.
    let mut bad = a.send_packet(&bob.uid, 1, "cmn-2", "tampered");
    bad.msg_key = "0".repeat(32);
    a.put(&Packet::Send(bad)).await;
    match next_packet(&mut a.ws).await {
        Some(Packet::Sendack(s)) => assert_eq!(s.reason, codec::REASON_MSG_KEY_ERROR),
        other => panic!("SENDACK expected, got {other:?}"),
    }
    b.quiet().await;
    let stored = channel_messages(&srv, &bob, &alice.uid, 1).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["payload"]["content"], "hello bob");

    // Group channel: everyone else gets it, named by the group id.
    let group = alice.native.group("team", &[&bob.uid, &carol.uid]).await;
    let ack = a.send(&group, 2, "cmn-g1", "hello team").await;
    assert_eq!(ack.reason, codec::REASON_SUCCESS);
    assert_eq!(ack.message_seq, 1);
    for who in [&mut b, &mut c, &mut a2] {
        let (r, p) = who.recv().await;
        assert_eq!((r.channel_id.as_str(), r.channel_type), (group.as_str(), 2));
        assert_eq!(p["content"], "hello team");
    }

    // A message from another face arrives as RECV.
    bob.native.send(&group, "from the native API").await;
    for who in [&mut a, &mut c] {
        let (r, p) = who.recv().await;
        assert_eq!(r.from_uid, bob.uid);
        assert_eq!(p["content"], "from the native API");
    }

    // Not a member: refused, nothing stored.
    let outsider = account(&srv, "dave").await;
    let mut d = connect(&srv, &outsider.uid, &outsider.token)
        .await
        .1
        .unwrap();
    let ack = d.send(&group, 2, "cmn-x", "let me in").await;
    assert_ne!(ack.reason, codec::REASON_SUCCESS);
    a.quiet().await;
}

#[tokio::test]
async fn broken_packets_end_the_connection() {
    let srv = TestServer::start_with(common::Options {
        ws_idle_timeout: Some(Duration::from_millis(1500)),
        ..Default::default()
    })
    .await;
    let alice = account(&srv, "alice").await;
    // Garbage before CONNECT, garbage after, a text message, an unknown packet type.
    let mut ws = open(&srv).await;
    ws.send(Message::Binary(
        vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x01].into(),
    ))
    .await
    .unwrap();
    assert!(matches!(
        next_packet(&mut ws).await,
        Some(Packet::Disconnect(_))
    ));
    for bytes in [vec![0xa0u8, 0], vec![0x30, 5, 0, 0], vec![0x20, 0]] {
        let mut c = connect(&srv, &alice.uid, &alice.token).await.1.unwrap();
        c.ws.send(Message::Binary(bytes.clone().into()))
            .await
            .unwrap();
        assert!(
            matches!(next_packet(&mut c.ws).await, Some(Packet::Disconnect(_))),
            "{bytes:?}"
        );
    }
    // Idle without PING: closed.
    let mut c = connect(&srv, &alice.uid, &alice.token).await.1.unwrap();
    c.quiet().await;
    assert!(next_packet(&mut c.ws).await.is_none());
    // A logout ends the connection with DISCONNECT.
    let mut c = connect(&srv, &alice.uid, &alice.token).await.1.unwrap();
    let (s, _) = alice.native.post("/api/im/logout", json!({})).await;
    assert!(s.is_success(), "{s}");
    assert!(matches!(
        next_packet(&mut c.ws).await,
        Some(Packet::Disconnect(_))
    ));
}

#[tokio::test]
async fn rest_around_the_socket() {
    let srv = TestServer::start().await;
    let alice = account(&srv, "alice").await;
    let bob = account(&srv, "bob").await;
    let get = |path: String, token: String| {
        let srv = &srv;
        async move { tsdd(srv, &token, reqwest::Method::GET, &path, None).await }
    };
    let (s, b) = get(format!("/v1/users/{}/im", alice.uid), alice.token.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["ws_addr"],
        format!("ws://{}{}", srv.addr, imsync_server::wukongim::SOCKET_PATH)
    );
    let (s, b) = get(format!("/v1/users/{}/im", alice.uid), "nope".into()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = get(format!("/v1/users/{}", bob.uid), alice.token.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["uid"], bob.uid.as_str());
    let (s, b) = get("/v1/users/nobody".into(), alice.token.clone()).await;
    assert_eq!(
        (s, b["status"].clone()),
        (StatusCode::BAD_REQUEST, json!(400))
    );
    let (s, b) = get(format!("/v1/channels/{}/1", bob.uid), alice.token.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["channel"],
        json!({"channel_id": bob.uid, "channel_type": 1})
    );
    assert_eq!(b["name"], "bob");
    let group = alice.native.group("team", &[&bob.uid]).await;
    let (s, b) = get(format!("/v1/channels/{group}/2"), bob.token.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["name"], "team");
    let (s, b) = get(format!("/v1/channels/{group}/7"), bob.token.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = get("/v1/group/my".into(), bob.token.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b[0]["group_no"], group.as_str());
    alice
        .native
        .post(
            &format!("/api/im/direct/{}/messages", bob.uid),
            json!({"content": "hi"}),
        )
        .await;
    let (s, b) = tsdd(
        &srv,
        &bob.token,
        reqwest::Method::POST,
        "/v1/friend/sync",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b.as_array()
            .unwrap()
            .iter()
            .any(|f| f["uid"] == alice.uid.as_str()),
        "{b}"
    );
    let (s, b) = tsdd(
        &srv,
        &bob.token,
        reqwest::Method::POST,
        "/v1/message/reminder/sync",
        Some(json!({"version": 0})),
    )
    .await;
    assert_eq!((s, b), (StatusCode::OK, json!([])));
    let (s, b) = get("/v1/common/appconfig".into(), String::new()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b.is_object());
    // Not an upgrade: the face's error format.
    let (s, b) = get(imsync_server::wukongim::SOCKET_PATH.into(), String::new()).await;
    assert_eq!(
        (s, b["status"].clone()),
        (StatusCode::BAD_REQUEST, json!(400)),
        "{b}"
    );
}
