//! Realtime over WebSocket and SSE: handshake, delivery, visibility, resume without a gap at the
//! seam, back-pressure.

mod common;

use common::{Api, Options, TestServer};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(srv: &TestServer, token: &str, since: Option<i64>) -> String {
    match since {
        Some(s) => format!("ws://{}/ws?token={token}&since={s}", srv.addr),
        None => format!("ws://{}/ws?token={token}", srv.addr),
    }
}

async fn connect(srv: &TestServer, api: &Api, since: Option<i64>) -> Ws {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ws_url(srv, api.token.as_deref().unwrap(), since))
            .await
            .expect("ws connect");
    let first = next_frame(&mut ws).await.expect("a first frame");
    assert_eq!(first["type"], "authenticated", "{first}");
    assert_eq!(first["payload"]["userId"], api.user_id.as_str());
    ws
}

/// The next JSON frame, or None when the socket closes or nothing comes within 10 s.
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

/// Reads frames until one of `kind` arrives; answers it and everything before it.
async fn until(ws: &mut Ws, kind: &str) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    while let Some(f) = next_frame(ws).await {
        if f["type"] == kind {
            return (f, before);
        }
        before.push(f);
    }
    panic!("no {kind} frame; saw {before:?}");
}

#[tokio::test]
async fn handshake_ping_and_errors() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let mut ws = connect(&srv, &alice, None).await;
    ws.send(Message::text(
        json!({"type": "ping", "payload": {"requestId": "ping-1"}}).to_string(),
    ))
    .await
    .unwrap();
    let pong = next_frame(&mut ws).await.unwrap();
    assert_eq!(
        pong,
        json!({"type": "pong", "payload": {"requestId": "ping-1"}, "requestId": "ping-1"})
    );
    ws.send(Message::text("not json")).await.unwrap();
    let e = next_frame(&mut ws).await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["payload"]["code"], "INVALID_FRAME");
    ws.send(Message::text(
        json!({"type": "dance", "requestId": "r9"}).to_string(),
    ))
    .await
    .unwrap();
    let e = next_frame(&mut ws).await.unwrap();
    assert_eq!(e["payload"]["code"], "UNKNOWN_TYPE");
    assert_eq!(e["requestId"], "r9");
    ws.send(Message::text(
        json!({"type": "conversation.join", "payload": {"conversationId": "nope"}}).to_string(),
    ))
    .await
    .unwrap();
    let e = next_frame(&mut ws).await.unwrap();
    assert_eq!(e["payload"]["code"], "NOT_FOUND");
    // Still open after the errors.
    ws.send(Message::text(
        json!({"type": "ping", "payload": {"requestId": "ping-2"}}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_frame(&mut ws).await.unwrap()["type"], "pong");

    // A bad token: the socket is closed with 4001.
    let (mut bad, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws?token=wrong", srv.addr))
            .await
            .unwrap();
    let mut code = None;
    while let Some(Ok(m)) = bad.next().await {
        if let Message::Close(Some(f)) = m {
            code = Some(u16::from(f.code));
            break;
        }
    }
    assert_eq!(code, Some(4001));

    // SSE with a bad token: 401 with the JSON envelope.
    let r = reqwest::get(format!("{}/sse?token=wrong", srv.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");
    let r = reqwest::get(format!("{}/ws?token=x&since=abc", srv.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn rest_send_arrives_over_ws_and_sse_with_typing_and_presence() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("g", &["bob"]).await;
    let mut ws = connect(&srv, &bob, None).await;

    let mut sse = reqwest::get(format!(
        "{}/sse?token={}",
        srv.base,
        bob.token.as_deref().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(sse.status(), 200);
    assert!(sse.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut sse_frames = SseReader::default();
    let first = sse_frames.next(&mut sse).await;
    assert_eq!(first["type"], "authenticated");

    let (s, b) = alice.get(&format!("/api/im/users/{}", bob.user_id)).await;
    assert_eq!(s, 200, "{b}");
    let (_, p) = alice
        .post("/api/im/presence/batch", json!({"userIds": [bob.user_id]}))
        .await;
    assert_eq!(p["data"][0]["status"], "online");

    let sent = alice.send(&g, "hello bob").await;
    let (m, _) = until(&mut ws, "message.new").await;
    assert_eq!(m["payload"]["id"], sent["id"]);
    assert_eq!(m["payload"]["content"], "hello bob");
    let from_sse = loop {
        let f = sse_frames.next(&mut sse).await;
        if f["type"] == "message.new" {
            break f;
        }
    };
    assert_eq!(from_sse["payload"]["id"], sent["id"]);

    // Edits, deletions and reactions arrive as their frames.
    let id = sent["id"].as_str().unwrap();
    alice
        .patch(
            &format!("/api/im/messages/{g}/{id}"),
            json!({"content": "hi"}),
        )
        .await;
    let (e, _) = until(&mut ws, "message.edit").await;
    assert_eq!(e["payload"]["content"], "hi");
    bob.post(
        &format!("/api/im/messages/{g}/{id}/reactions"),
        json!({"emoji": "👍"}),
    )
    .await;
    let (r, _) = until(&mut ws, "message.reaction").await;
    assert_eq!(r["payload"]["reactions"]["👍"][0], bob.user_id.as_str());
    alice.delete(&format!("/api/im/messages/{g}/{id}")).await;
    let (d, _) = until(&mut ws, "message.deleted").await;
    assert_eq!(d["payload"]["id"], id);

    // Typing from alice's socket reaches bob, never alice herself.
    let mut aws = connect(&srv, &alice, None).await;
    aws.send(Message::text(
        json!({"type": "typing.start", "payload": {"conversationId": g}}).to_string(),
    ))
    .await
    .unwrap();
    let (t, _) = until(&mut ws, "typing.indicator").await;
    assert_eq!(
        t["payload"],
        json!({"conversationId": g, "userId": alice.user_id, "isTyping": true})
    );

    // message.send over the socket: same rules and idempotency as REST.
    let frame = json!({"type": "message.send", "requestId": "msg-1",
        "payload": {"conversationId": g, "content": "via ws", "type": "text", "metadata": {"_idempotencyKey": "ws-k"}}});
    aws.send(Message::text(frame.to_string())).await.unwrap();
    let (ack, _) = until(&mut aws, "message.ack").await;
    assert_eq!(ack["requestId"], "msg-1");
    aws.send(Message::text(frame.to_string())).await.unwrap();
    let (ack2, _) = until(&mut aws, "message.ack").await;
    assert_eq!(
        ack2["payload"]["message"]["id"],
        ack["payload"]["message"]["id"]
    );
    assert_eq!(ack2["payload"]["duplicate"], true);
    let (m, _) = until(&mut ws, "message.new").await;
    assert_eq!(m["payload"]["content"], "via ws");
}

#[derive(Default)]
struct SseReader {
    buf: String,
}

impl SseReader {
    /// The next `data:` frame as JSON.
    async fn next(&mut self, resp: &mut reqwest::Response) -> Value {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
                .await
                .expect("an SSE frame within 10 s")
                .unwrap()
                .expect("stream still open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next raw event block (for the sync stream, which uses `event:` and `id:` lines).
    async fn block(&mut self, resp: &mut reqwest::Response) -> String {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                return self.buf.drain(..end + 2).collect();
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
                .await
                .expect("an SSE block within 10 s")
                .unwrap()
                .expect("stream still open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test]
async fn non_participants_see_nothing_and_removed_ones_stop_after_left() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let _bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let g = alice.group("g", &["bob"]).await;
    let mut ws = connect(&srv, &carol, None).await;
    alice.send(&g, "secret").await;
    // A direct message to carol is the marker: nothing of g may come before it.
    let (s, _) = alice
        .post(
            &format!("/api/im/direct/{}/messages", carol.user_id),
            json!({"content": "marker 1"}),
        )
        .await;
    assert_eq!(s, 201);
    let (m, before) = until(&mut ws, "message.new").await;
    assert_eq!(m["payload"]["content"], "marker 1");
    assert!(
        before
            .iter()
            .all(|f| f["payload"]["conversationId"] != g.as_str()),
        "{before:?}"
    );

    alice
        .post(
            &format!("/api/im/conversations/{g}/participants"),
            json!({"userId": carol.user_id}),
        )
        .await;
    let (joined, _) = until(&mut ws, "participant.joined").await;
    assert_eq!(joined["payload"]["userId"], carol.user_id.as_str());
    alice.send(&g, "welcome").await;
    let (m, _) = until(&mut ws, "message.new").await;
    assert_eq!(m["payload"]["content"], "welcome");

    alice
        .delete(&format!(
            "/api/im/conversations/{g}/participants/{}",
            carol.user_id
        ))
        .await;
    let (left, _) = until(&mut ws, "participant.left").await;
    assert_eq!(left["payload"]["userId"], carol.user_id.as_str());
    alice.send(&g, "after you left").await;
    alice
        .post(
            &format!("/api/im/direct/{}/messages", carol.user_id),
            json!({"content": "marker 2"}),
        )
        .await;
    let (m, before) = until(&mut ws, "message.new").await;
    assert_eq!(m["payload"]["content"], "marker 2", "saw {before:?}");
}

/// Connects with `since` while writers append; afterwards the client holds every visible seq
/// exactly once, in order. Seeded and repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_has_no_gap_or_duplicate_at_the_seam() {
    let seed: u64 = std::env::var("IMSYNC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    for round in 0..4u64 {
        let seed = seed.wrapping_add(round);
        let result = tokio::spawn(seam_round(seed)).await;
        if let Err(e) = result {
            panic!("seam test failed with seed {seed}: {e}");
        }
    }
}

async fn seam_round(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let _carol = srv.user("carol").await;
    let g1 = alice.group("g1", &["bob"]).await;
    let g2 = alice.group("g2", &["bob", "carol"]).await;
    let hidden = alice.group("hidden", &["carol"]).await;
    let per_writer: usize = rng.random_range(20..60);
    let connect_after: usize = rng.random_range(0..per_writer);
    let mut writers = Vec::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let mut ready_tx = Some(ready_tx);
    for w in 0..3 {
        let api = alice.clone();
        let convs = [g1.clone(), g2.clone(), hidden.clone()];
        let signal = if w == 0 { ready_tx.take() } else { None };
        let jitter = rng.random_range(0..3u64);
        writers.push(tokio::spawn(async move {
            let mut signal = signal;
            for i in 0..per_writer {
                api.send(&convs[(i + w) % 3], &format!("w{w}-{i}")).await;
                if i == connect_after {
                    if let Some(s) = signal.take() {
                        let _ = s.send(());
                    }
                }
                if jitter > 0 {
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
            }
        }));
    }
    let _ = ready_rx.await;
    let mut ws = connect(&srv, &bob, Some(0)).await;
    for w in writers {
        w.await.unwrap();
    }
    let (expected, _) = bob.sync_all(0, 500).await;
    let expected: Vec<i64> = expected
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    let last = *expected.last().unwrap();
    let mut got = Vec::new();
    while got.last() != Some(&last) {
        let f = next_frame(&mut ws).await.unwrap_or_else(|| {
            panic!(
                "seed {seed}: stream ended at {:?} before {last}",
                got.last()
            )
        });
        if f["type"] == "sync" {
            got.push(f["payload"]["seq"].as_i64().unwrap());
        }
    }
    assert_eq!(got, expected, "seed {seed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_that_never_reads_is_closed_with_4008_and_others_get_everything() {
    let srv = TestServer::start_with(Options {
        realtime_queue: Some(8),
        ..Default::default()
    })
    .await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let dave = srv.user("dave").await;
    let g = alice.group("g", &["bob", "dave"]).await;

    // bob's socket has a tiny receive buffer and is never read while the messages flow.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(srv.addr).await.unwrap();
    let (mut slow, _) =
        tokio_tungstenite::client_async(ws_url(&srv, bob.token.as_deref().unwrap(), None), stream)
            .await
            .unwrap();
    let mut fast = connect(&srv, &dave, None).await;

    let big = "x".repeat(16 * 1024);
    let total = 300;
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = received.clone();
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < total {
            let f = next_frame(&mut fast)
                .await
                .expect("fast consumer keeps receiving");
            if f["type"] == "message.new" {
                n += 1;
                seen.store(n, std::sync::atomic::Ordering::Release);
            }
        }
        n
    });
    for i in 0..total {
        // A consumer that keeps up is one the sender never gets far ahead of: well inside its
        // queue of 8, however the machine schedules the two.
        while i > received.load(std::sync::atomic::Ordering::Acquire) + 4 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        alice.send(&g, &format!("{i} {big}")).await;
    }
    assert_eq!(reader.await.unwrap(), total);

    // Now bob reads: what was queued, then a close with 4008.
    let mut code = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), slow.next()).await {
        match m {
            Ok(Message::Close(Some(f))) => {
                code = Some(u16::from(f.code));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(4008));
}

#[tokio::test]
async fn sync_stream_sends_backlog_then_caught_up_then_live_and_honours_last_event_id() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("g", &["bob"]).await;
    alice.send(&g, "one").await;
    let url = format!(
        "{}/api/im/sync/stream?token={}&since=0",
        srv.base,
        bob.token.as_deref().unwrap()
    );
    let mut resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut r = SseReader::default();
    let mut ids = Vec::new();
    loop {
        let b = r.block(&mut resp).await;
        if b.contains("event: caught_up") {
            break;
        }
        assert!(b.contains("event: sync"), "{b}");
        let id = b.lines().find_map(|l| l.strip_prefix("id: ")).unwrap();
        ids.push(id.parse::<i64>().unwrap());
    }
    assert_eq!(ids.len(), 2, "conversation.create and message.new");
    alice.send(&g, "two").await;
    let live = r.block(&mut resp).await;
    assert!(
        live.contains("event: sync") && live.contains("\"two\""),
        "{live}"
    );

    // Last-Event-ID wins over since.
    let client = reqwest::Client::new();
    let mut resp = client
        .get(&url)
        .header("Last-Event-ID", ids[1].to_string())
        .send()
        .await
        .unwrap();
    let mut r = SseReader::default();
    let b = r.block(&mut resp).await;
    assert!(b.contains("\"two\""), "resumed after the header's id: {b}");
}

/// A member who joined after a message was sent never learns of its edits, deletion or
/// reactions: not over sync, not live. Changes to messages they saw do reach them.
#[tokio::test]
async fn late_joiners_get_no_changes_to_messages_from_before_they_joined() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let _bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let g = alice.group("g", &["bob"]).await;
    let old = alice.send(&g, "before carol").await;
    let old_id = old["id"].as_str().unwrap();
    alice
        .post(
            &format!("/api/im/conversations/{g}/participants"),
            json!({"userId": carol.user_id}),
        )
        .await;
    let mut ws = connect(&srv, &carol, None).await;
    alice
        .patch(
            &format!("/api/im/messages/{g}/{old_id}"),
            json!({"content": "secret edit"}),
        )
        .await;
    alice
        .post(
            &format!("/api/im/messages/{g}/{old_id}/reactions"),
            json!({"emoji": "x"}),
        )
        .await;
    alice
        .delete(&format!("/api/im/messages/{g}/{old_id}"))
        .await;
    let new = alice.send(&g, "after carol").await;
    let new_id = new["id"].as_str().unwrap();
    alice
        .patch(
            &format!("/api/im/messages/{g}/{new_id}"),
            json!({"content": "visible edit"}),
        )
        .await;

    let (edit, before) = until(&mut ws, "message.edit").await;
    assert_eq!(
        edit["payload"]["id"], new_id,
        "the first edit carol sees is of the new message"
    );
    assert!(
        before.iter().all(|f| f["payload"]["id"] != old_id),
        "nothing about the old message: {before:?}"
    );
    let (events, _) = carol.sync_all(0, 3).await;
    let about_old: Vec<&Value> = events
        .iter()
        .filter(|e| e["data"]["id"] == old_id)
        .collect();
    assert!(about_old.is_empty(), "{about_old:?}");
    let edits: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "message.edit")
        .collect();
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0]["data"]["content"], "visible edit");
}

/// A WebSocket that sends nothing for the idle timeout is closed (4000); pings keep it open.
#[tokio::test]
async fn silent_sockets_are_closed_after_the_idle_timeout() {
    let srv = TestServer::start_with(Options {
        ws_idle_timeout: Some(Duration::from_millis(600)),
        ..Default::default()
    })
    .await;
    let alice = srv.user("alice").await;
    let mut pinging = connect(&srv, &alice, None).await;
    let mut silent = connect(&srv, &alice, None).await;
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let ping = json!({"type": "ping", "payload": {"requestId": format!("p{i}")}});
        pinging.send(Message::text(ping.to_string())).await.unwrap();
        assert_eq!(next_frame(&mut pinging).await.unwrap()["type"], "pong");
    }
    let mut code = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), silent.next()).await {
        if let Ok(Message::Close(Some(f))) = m {
            code = Some(u16::from(f.code));
            break;
        }
    }
    assert_eq!(code, Some(4000), "the silent socket is closed as idle");
    pinging
        .send(Message::text(
            json!({"type": "ping", "payload": {"requestId": "last"}}).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut pinging).await.unwrap()["type"],
        "pong",
        "the pinging one is open"
    );
}

/// Coming online is announced to those who share a small conversation with the user, not to
/// every member of a big channel.
#[tokio::test]
async fn presence_reaches_peers_of_small_conversations_only() {
    let srv = TestServer::start().await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let dave = srv.user("dave").await;
    bob.group("small", &["carol"]).await;
    let mut crowd = vec!["dave".to_owned()];
    for i in 0..256 {
        crowd.push(srv.user(&format!("crowd{i}")).await.username);
    }
    let refs: Vec<&str> = crowd.iter().map(String::as_str).collect();
    carol.group("big", &refs).await;

    let mut bob_ws = connect(&srv, &bob, None).await;
    let mut dave_ws = connect(&srv, &dave, None).await;
    let _carol_ws = connect(&srv, &carol, None).await;
    let (p, _) = until(&mut bob_ws, "presence.changed").await;
    assert_eq!(p["payload"]["userId"], carol.user_id.as_str());
    assert_eq!(p["payload"]["status"], "online");
    // dave shares only the big group with carol: the next thing he hears is the marker.
    let (s, _) = bob
        .post(
            &format!("/api/im/direct/{}/messages", dave.user_id),
            json!({"content": "marker"}),
        )
        .await;
    assert_eq!(s, 201);
    let (m, before) = until(&mut dave_ws, "message.new").await;
    assert_eq!(m["payload"]["content"], "marker");
    assert!(
        before.iter().all(|f| f["type"] != "presence.changed"),
        "{before:?}"
    );
}

/// Where a send goes in [`a_send_is_the_same_message_over_rest_and_the_socket`].
#[derive(Clone, Copy, Debug)]
enum SendPath {
    /// `POST /api/im/messages/{conversationId}`
    Messages,
    /// `POST /api/im/groups/{id}/messages`
    Groups,
    /// `POST /api/im/direct/{userId}/messages`
    Direct,
    /// A `message.send` frame on the WebSocket.
    Socket,
}

/// What a send made, reduced to what the input decides: the message's fields and which of the
/// candidate keys became its idempotency key; or the error, without serde's position in the
/// input (a REST body and a frame's payload put the same field at different columns).
#[derive(Debug, PartialEq)]
enum SendResult {
    Sent {
        fields: Value,
        key: Option<&'static str>,
    },
    Refused {
        code: String,
        message: String,
    },
}

#[tokio::test]
async fn a_send_is_the_same_message_over_rest_and_the_socket() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let mut ws = connect(&srv, &alice, None).await;

    let blocks = json!([{"type": "text", "text": "from blocks"}]);
    // (body, X-Idempotency-Key header, which key the message gets).
    let cases: Vec<(Value, Option<&str>, Option<&str>)> = vec![
        // The offline outbox's metadata key outlives a retry's fresh keys: it wins over both.
        (
            json!({"content": "m", "idempotencyKey": "{p}-body", "metadata": {"_idempotencyKey": "{p}-meta"}}),
            Some("{p}-header"),
            Some("{p}-meta"),
        ),
        (
            json!({"content": "m", "idempotencyKey": "{p}-body", "metadata": {"_idempotencyKey": "{p}-meta"}}),
            None,
            Some("{p}-meta"),
        ),
        (
            json!({"content": "b", "idempotencyKey": "{p}-body"}),
            Some("{p}-header"),
            Some("{p}-body"),
        ),
        // Only REST has headers: there the header is the key, on the socket there is none.
        (
            json!({"content": "h"}),
            Some("{p}-header"),
            Some("{p}-header"),
        ),
        (
            json!({"content": "n", "idempotencyKey": "{p}-body", "metadata": {"_idempotencyKey": 7}}),
            None,
            Some("{p}-body"),
        ),
        (json!({"contentBlocks": blocks}), None, None),
        (json!({"content": "", "contentBlocks": blocks}), None, None),
        (
            json!({"content": " ", "attachments": [{"url": "https://x/y.png"}]}),
            None,
            None,
        ),
        (
            json!({"content": "s", "type": "markdown", "signature": "sig", "metadata": {"k": 1}}),
            None,
            None,
        ),
        (json!({"content": ""}), None, None),
        (json!({"content": "  "}), None, None),
        (json!({"type": "text"}), None, None),
        (json!({"content": 5}), None, None),
        (
            json!({"content": "x", "metadata": "not an object"}),
            None,
            None,
        ),
        (json!({"content": "x", "type": "dance"}), None, None),
        (
            json!({"content": "x", "parentId": "no-such-message"}),
            None,
            None,
        ),
    ];

    for (i, (body, header, expected_key)) in cases.iter().enumerate() {
        let mut results = Vec::new();
        for path in [
            SendPath::Messages,
            SendPath::Groups,
            SendPath::Direct,
            SendPath::Socket,
        ] {
            // Keys are per conversation and sender: a conversation per path and case keeps
            // one send's keys from answering for another's.
            let prefix = format!("{i}-{path:?}");
            let fill = |v: &Value| {
                serde_json::from_str::<Value>(&v.to_string().replace("{p}", &prefix)).unwrap()
            };
            let body = fill(body);
            let header = header.map(|h| h.replace("{p}", &prefix));
            let conv = match path {
                SendPath::Direct => None,
                _ => Some(alice.group(&prefix, &["bob"]).await),
            };
            let sent = match path {
                SendPath::Messages | SendPath::Groups | SendPath::Direct => {
                    let url = match (path, &conv) {
                        (SendPath::Messages, Some(c)) => format!("/api/im/messages/{c}"),
                        (SendPath::Groups, Some(c)) => format!("/api/im/groups/{c}/messages"),
                        _ => format!("/api/im/direct/{}/messages", bob.user_id),
                    };
                    let headers: Vec<(&str, &str)> = header
                        .as_deref()
                        .map(|h| ("X-Idempotency-Key", h))
                        .into_iter()
                        .collect();
                    let (status, b) = alice
                        .request(reqwest::Method::POST, &url, Some(body.clone()), &headers)
                        .await;
                    if status.is_success() {
                        assert_eq!(status, 201, "{b}");
                        Ok(b["data"]["message"].clone())
                    } else {
                        Err(b["error"].clone())
                    }
                }
                SendPath::Socket => {
                    let mut payload = body.clone();
                    payload["conversationId"] = json!(conv.as_deref().unwrap());
                    let request_id = format!("send-{i}");
                    let frame = json!({"type": "message.send", "requestId": request_id, "payload": payload});
                    ws.send(Message::text(frame.to_string())).await.unwrap();
                    loop {
                        let f = next_frame(&mut ws)
                            .await
                            .expect("an answer to message.send");
                        if f["requestId"] != request_id.as_str() {
                            continue;
                        }
                        match f["type"].as_str() {
                            Some("message.ack") => break Ok(f["payload"]["message"].clone()),
                            Some("error") => break Err(f["payload"].clone()),
                            _ => panic!("unexpected answer {f}"),
                        }
                    }
                }
            };
            let result = match sent {
                Ok(m) => {
                    // Which candidate became the key: a send with it and the same message is
                    // an idempotent retry (the key itself is not part of the payload).
                    let mut key = None;
                    for (label, candidate) in [
                        ("{p}-header", header.clone()),
                        (
                            "{p}-body",
                            body["idempotencyKey"].as_str().map(str::to_owned),
                        ),
                        (
                            "{p}-meta",
                            body["metadata"]["_idempotencyKey"]
                                .as_str()
                                .map(str::to_owned),
                        ),
                    ] {
                        let Some(candidate) = candidate else { continue };
                        let mut probe = body.clone();
                        if let Some(meta) = probe["metadata"].as_object_mut() {
                            meta.remove("_idempotencyKey");
                        }
                        probe["idempotencyKey"] = json!(candidate);
                        let (status, b) = alice
                            .post(
                                &format!(
                                    "/api/im/messages/{}",
                                    m["conversationId"].as_str().unwrap()
                                ),
                                probe,
                            )
                            .await;
                        assert_eq!(status, 201, "probe {label}: {b}");
                        if b["data"]["duplicate"] == true {
                            assert_eq!(b["data"]["message"]["id"], m["id"], "{b}");
                            assert!(key.is_none(), "two keys name one message: {b}");
                            key = Some(label);
                        }
                    }
                    let mut metadata = m["metadata"].clone();
                    if let Some(meta) = metadata.as_object_mut() {
                        meta.remove("_idempotencyKey");
                    }
                    SendResult::Sent {
                        fields: json!({
                            "content": m["content"], "type": m["type"], "metadata": metadata,
                            "parentId": m["parentId"], "senderId": m["senderId"],
                            "status": m["status"],
                        }),
                        key,
                    }
                }
                Err(e) => SendResult::Refused {
                    code: e["code"].as_str().unwrap_or_default().to_owned(),
                    message: e["message"]
                        .as_str()
                        .unwrap_or_default()
                        .split(" at line ")
                        .next()
                        .unwrap()
                        .to_owned(),
                },
            };
            results.push((path, result));
        }
        let (_, rest) = &results[0];
        if let SendResult::Sent { key, .. } = rest {
            assert_eq!(key, expected_key, "case {i}: {body}");
        }
        for (path, result) in &results[1..] {
            let expected = match (path, rest) {
                (SendPath::Socket, SendResult::Sent { fields, key })
                    if *key == Some("{p}-header") =>
                {
                    SendResult::Sent {
                        fields: fields.clone(),
                        key: None,
                    }
                }
                (_, SendResult::Sent { fields, key }) => SendResult::Sent {
                    fields: fields.clone(),
                    key: *key,
                },
                (_, SendResult::Refused { code, message }) => SendResult::Refused {
                    code: code.clone(),
                    message: message.clone(),
                },
            };
            assert_eq!(
                result, &expected,
                "case {i} {body}: {path:?} differs from Messages"
            );
        }
    }
}
