//! Several imsync processes on one PostgreSQL database: a gap-free cursor with concurrent
//! writers on every node, cross-node realtime (also across a listener reconnect), idempotency
//! across nodes, recovery when the database drops connections, graceful shutdown.
//!
//! The tests of several nodes need IMSYNC_TEST_DATABASE_URL to name a PostgreSQL database: they
//! are ignored (and reported so) unless run with `--include-ignored`, as `.ci/run` does with the
//! variable set, and fail without it. The graceful-shutdown test runs on either backend.

mod common;

use common::{free_port, postgres_url, schema_for, Api, ChildServer};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn register(base: &str, name: &str) -> Api {
    let anon = Api::new(base, None);
    let (s, b) = anon
        .post(
            "/api/im/register",
            json!({"type": "agent", "username": name}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let mut api = Api::new(base, Some(b["data"]["token"].as_str().unwrap().to_owned()));
    api.user_id = b["data"]["imUserId"].as_str().unwrap().to_owned();
    api.username = name.to_owned();
    api
}

fn on(api: &Api, base: &str) -> Api {
    let mut a = api.clone();
    a.base = base.to_owned();
    a
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `/ws` connection of `token` to the node at `base`, past its `authenticated` frame.
async fn open_ws(base: &str, token: &str) -> Ws {
    let url = format!(
        "ws://{}/ws?token={token}",
        base.trim_start_matches("http://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("authenticated"));
    ws
}

/// The code the server closes the socket with, waiting up to 15 s for it.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(15), ws.next()).await {
        if let Ok(Message::Close(Some(f))) = m {
            return Some(u16::from(f.code));
        }
    }
    None
}

/// The PostgreSQL database of an ignored test run on purpose: without one it fails, rather than
/// pass without having tested anything.
fn needs_postgres() {
    assert!(
        postgres_url().is_some(),
        "this test needs IMSYNC_TEST_DATABASE_URL=postgres://... (see .ci/run)"
    );
}

/// Runs `sql` on the test database (to cut connections the way an outage would).
fn psql(sql: &str) -> String {
    let url = postgres_url().unwrap();
    let out = std::process::Command::new("psql")
        .args([url.as_str(), "-qAtc", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn signal(node: &ChildServer, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A node frozen in the middle of a write transaction (a stopped process, a paused machine)
/// keeps its connection, and its transaction would hold the lock every write of every node
/// takes. The server ends such a transaction once it has idled as long as a statement may run,
/// so the other nodes write again after that; the frozen node, thawed, writes again too.
#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_frozen_inside_a_write_holds_the_others_up_only_as_long_as_a_statement_may_run() {
    needs_postgres();
    let dir = tempfile::tempdir().unwrap();
    let limit = ["--pg-statement-timeout-ms", "1500"];
    let frozen = ChildServer::spawn_with(dir.path(), free_port(), &limit).await;
    let other = ChildServer::spawn_with(dir.path(), free_port(), &limit).await;
    let alice = register(&frozen.base, "alice").await;
    let g = alice.group("g", &[]).await;
    let path = format!("/api/im/messages/{g}");
    let writer = format!("imsync:{}", schema_for(dir.path()));
    // Sends through the node to freeze, so that its writer is inside a transaction most of the
    // time; it is frozen again until the server shows the writer idle in one.
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load: Vec<_> = (0..16)
        .map(|i| {
            let (api, path, busy) = (alice.clone(), path.clone(), busy.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while busy.load(std::sync::atomic::Ordering::Relaxed) {
                    api.post(&path, json!({ "content": format!("load {i}-{n}") }))
                        .await;
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut caught = false;
    for _ in 0..50 {
        signal(&frozen, "STOP");
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The writer's transaction, which has locked a row and so has an id; a read-only
        // transaction of the node's readers has none.
        let idle = psql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{writer}' \
             AND state = 'idle in transaction' AND backend_xid IS NOT NULL"
        ));
        if idle == "1" {
            caught = true;
            break;
        }
        signal(&frozen, "CONT");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(caught, "the node was never frozen inside a transaction");
    let through_other = on(&alice, &other.base);
    sends_within_10_s(&through_other, &path, "while one node was frozen").await;
    signal(&frozen, "CONT");
    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    // Thawed, the node finds its connection ended and writes on a new one.
    sends_within_10_s(&alice, &path, "once thawed").await;
}

/// Sends through `api` until one send is accepted, each refused one answering 503, for at most
/// 10 s.
async fn sends_within_10_s(api: &Api, path: &str, when: &str) {
    let started = std::time::Instant::now();
    loop {
        let (s, b) = api.post(path, json!({ "content": when })).await;
        if s == StatusCode::CREATED {
            return;
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}: no send went through in 10 s {when}",
            api.base
        );
    }
}

#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_one_gap_free_log() {
    needs_postgres();
    let seed: u64 = std::env::var("IMSYNC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(ChildServer::spawn(dir.path(), free_port()).await);
    }
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let readers: Vec<Api> = {
        let mut v = Vec::new();
        for (i, base) in bases.iter().enumerate() {
            v.push(register(base, &format!("reader{i}")).await);
        }
        v
    };
    let mut writers = Vec::new();
    for i in 0..8 {
        writers.push(register(&bases[i % 3], &format!("writer{i}")).await);
    }
    let mut members: Vec<String> = readers.iter().map(|r| r.user_id.clone()).collect();
    members.extend(writers.iter().map(|w| w.user_id.clone()));
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let g1 = writers[0].group("g1", &refs).await;
    let g2 = on(&writers[1], &bases[1]).group("g2", &refs).await;

    // A WebSocket on node 0 with since=0 sees every event, whichever node appended it.
    let token = readers[0].token.clone().unwrap();
    let ws_url = format!(
        "ws://{}/ws?token={token}&since=0",
        bases[0].trim_start_matches("http://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();

    let per_writer = 40;
    let mut tasks = Vec::new();
    for (i, w) in writers.iter().enumerate() {
        let w = w.clone();
        let (bases, g1, g2) = (bases.clone(), g1.clone(), g2.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for j in 0..per_writer {
                let api = on(&w, &bases[(i + j) % 3]);
                let conv = if j % 2 == 0 { &g1 } else { &g2 };
                ids.push(
                    api.send(conv, &format!("{i}-{j}")).await["id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                );
            }
            ids
        }));
    }
    // Readers page through rotating nodes with small limits while the writers run.
    let mut reader_tasks = Vec::new();
    for (i, r) in readers.iter().enumerate() {
        let r = r.clone();
        let bases = bases.clone();
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(i as u64));
        reader_tasks.push(tokio::spawn(async move {
            let mut cursor = 0i64;
            let mut seen = Vec::new();
            let mut idle_rounds = 0;
            for round in 0..100_000usize {
                let api = on(&r, &bases[round % 3]);
                let limit = rng.random_range(1..6);
                let (s, b) = api
                    .get(&format!("/api/im/sync?since={cursor}&limit={limit}"))
                    .await;
                assert_eq!(s, StatusCode::OK, "{b}");
                let d = &b["data"];
                for e in d["events"].as_array().unwrap() {
                    seen.push(e["seq"].as_i64().unwrap());
                }
                cursor = d["cursor"].as_i64().unwrap();
                if d["events"].as_array().unwrap().is_empty() {
                    idle_rounds += 1;
                    if idle_rounds > 200 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                } else {
                    idle_rounds = 0;
                }
            }
            (seen, cursor)
        }));
    }
    // Midway, cut every node's notification listener: they reconnect and catch up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'imsync-listener:{}'",
        schema_for(dir.path())
    ));

    let mut acknowledged = HashSet::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    let (full, _) = on(&readers[0], &bases[2]).sync_all(0, 500).await;
    let full_seqs: Vec<i64> = full.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    let messages: HashSet<String> = full
        .iter()
        .filter(|e| e["type"] == "message.new")
        .map(|e| e["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        messages, acknowledged,
        "seed {seed}: every acknowledged message is in the log"
    );
    for (reader, t) in readers.iter().zip(reader_tasks) {
        let (seen, cursor) = t.await.unwrap();
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: out of order or repeated"
        );
        let set: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(set.len(), seen.len(), "seed {seed}: duplicates");
        // Readers joined the default channel at different seqs: each is held to its own view.
        let (own, _) = on(reader, &bases[1]).sync_all(0, 500).await;
        let own: Vec<i64> = own.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert!(cursor <= *own.last().unwrap());
        // Every seq up to the reader's cursor that it may see, it saw.
        let expected: Vec<i64> = own.iter().copied().filter(|s| *s <= cursor).collect();
        assert_eq!(seen, expected, "seed {seed}: a reader skipped an event");
    }
    // The WebSocket on node 0 got all of it, in order, once.
    let last = *full_seqs.last().unwrap();
    let mut got = Vec::new();
    while got.last() != Some(&last) {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: WS stalled at {:?} of {last}", got.last()))
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let f: Value = serde_json::from_str(t.as_str()).unwrap();
            if f["type"] == "sync" {
                got.push(f["payload"]["seq"].as_i64().unwrap());
            }
        }
    }
    assert_eq!(got, full_seqs, "seed {seed}: cross-node realtime");
}

#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_sent_to_two_nodes_at_once_makes_one_message() {
    needs_postgres();
    let dir = tempfile::tempdir().unwrap();
    let a = ChildServer::spawn(dir.path(), free_port()).await;
    let b = ChildServer::spawn(dir.path(), free_port()).await;
    let alice = register(&a.base, "alice").await;
    let _bob = register(&b.base, "bob").await;
    let g = alice.group("g", &["bob"]).await;
    for round in 0..10 {
        let key = format!("race-{round}");
        let body = json!({"content": format!("once {round}")});
        let path = format!("/api/im/messages/{g}");
        let (x, y) = (on(&alice, &a.base), on(&alice, &b.base));
        let h = [("X-Idempotency-Key", key.as_str())];
        let (r1, r2) = tokio::join!(
            x.request(reqwest::Method::POST, &path, Some(body.clone()), &h),
            y.request(reqwest::Method::POST, &path, Some(body.clone()), &h)
        );
        assert_eq!(r1.0, StatusCode::CREATED, "{}", r1.1);
        assert_eq!(r2.0, StatusCode::CREATED, "{}", r2.1);
        assert_eq!(r1.1["data"]["message"]["id"], r2.1["data"]["message"]["id"]);
    }
    let (events, _) = alice.sync_all(0, 500).await;
    assert_eq!(
        events.iter().filter(|e| e["type"] == "message.new").count(),
        10
    );
}

/// The writer sends a send's writes with the next statement, often the next send's: a write
/// that PostgreSQL refuses there (text with NUL) must fail its own send alone, with its own
/// error, however busy the batch around it, and leave no trace.
#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_write_in_a_busy_batch_fails_its_own_send_alone() {
    needs_postgres();
    let dir = tempfile::tempdir().unwrap();
    let node = ChildServer::spawn(dir.path(), free_port()).await;
    let alice = register(&node.base, "alice").await;
    let g = alice.group("g", &[]).await;
    let path = format!("/api/im/messages/{g}");
    let mut ok = HashSet::new();
    for round in 0..4 {
        let sends = (0..48).map(|i| {
            let (api, path) = (alice.clone(), path.clone());
            let content = if i % 6 == 5 {
                format!("bad\u{0}{round}-{i}")
            } else {
                format!("good {round}-{i}")
            };
            async move {
                let (s, b) = api.post(&path, json!({ "content": content })).await;
                (content, s, b)
            }
        });
        for (content, s, b) in futures_util::future::join_all(sends).await {
            if content.starts_with("bad") {
                assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
                assert_eq!(b["error"]["code"], "INVALID_REQUEST", "{b}");
            } else {
                assert_eq!(s, StatusCode::CREATED, "{content}: {b}");
                ok.insert(content);
            }
        }
    }
    assert_eq!(ok.len(), 4 * 40);
    let (events, _) = alice.sync_all(0, 500).await;
    let sent: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "message.new")
        .map(|e| e["data"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(sent.len(), ok.len(), "only the accepted sends made events");
    assert!(sent.iter().all(|c| ok.contains(*c)));
    // The seqs handed out in the batches that a refused write rolled back were taken again:
    // the log has no hole.
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

/// A counter of the node's `GET /metrics` (0 before it first moved).
async fn counter(base: &str, name: &str) -> f64 {
    common::value(&common::scrape(base).await, name).unwrap_or(0.0)
}

/// Sends that arrive together share a batch, which fetches their conversations ahead in the
/// round trip that takes the counter's lock: a batch of sends to different conversations costs
/// two round trips however many sends it holds (the lock with the reads, the writes with the
/// commit). A second send into a conversation the batch writes to waits for the next batch, and
/// every conversation's messages stay numbered 1, 2, 3, … with no number taken twice.
#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_sends_reads_its_conversations_in_one_round_trip() {
    needs_postgres();
    let dir = tempfile::tempdir().unwrap();
    let node = ChildServer::spawn(dir.path(), free_port()).await;
    let mut users = Vec::new();
    for i in 0..24 {
        users.push(register(&node.base, &format!("batcher{i}")).await);
    }
    let ids: Vec<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
    let mut own = Vec::new();
    for (i, u) in users.iter().enumerate() {
        own.push(u.group(&format!("own{i}"), &ids).await);
    }
    let shared = users[0].group("shared", &ids).await;

    let trips = "imsync_pg_writer_round_trips_total";
    let batches = "imsync_writer_batches_total";
    let (trips_before, batches_before) = (
        counter(&node.base, trips).await,
        counter(&node.base, batches).await,
    );
    let rounds = 4;
    for round in 0..rounds {
        let sends = users.iter().zip(&own).map(|(u, g)| {
            let (api, path) = (u.clone(), format!("/api/im/messages/{g}"));
            async move {
                api.post(&path, json!({ "content": format!("own {round}") }))
                    .await
            }
        });
        for (s, b) in futures_util::future::join_all(sends).await {
            assert_eq!(s, StatusCode::CREATED, "{b}");
        }
    }
    let sends = (rounds * users.len()) as f64;
    let batches_taken = counter(&node.base, batches).await - batches_before;
    let trips_taken = counter(&node.base, trips).await - trips_before;
    eprintln!("{sends} sends: {batches_taken} batches, {trips_taken} round trips");
    assert!(
        batches_taken < sends,
        "{sends} concurrent sends ran in {batches_taken} batches"
    );
    // A read in each send's turn would cost a round trip per send on top of the batch's own.
    assert!(
        trips_taken <= 2.0 * batches_taken && trips_taken < sends,
        "{trips_taken} round trips for {sends} sends in {batches_taken} batches"
    );

    // The same with a file in every message: checking the sender's file is one more first read
    // of the batch, not a round trip per send.
    let mut ups = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let bytes = format!("file {i}").into_bytes();
        ups.push(common::files::upload(u, &format!("f{i}.txt"), "text/plain", bytes).await);
    }
    let (trips_before, batches_before) = (
        counter(&node.base, trips).await,
        counter(&node.base, batches).await,
    );
    for _ in 0..rounds {
        let sends = users
            .iter()
            .zip(&own)
            .zip(&ups)
            .map(|((u, g), up)| common::files::send_file(u, g, up));
        for (s, b) in futures_util::future::join_all(sends).await {
            assert_eq!(s, StatusCode::CREATED, "{b}");
        }
    }
    let batches_taken = counter(&node.base, batches).await - batches_before;
    let trips_taken = counter(&node.base, trips).await - trips_before;
    eprintln!("{sends} file sends: {batches_taken} batches, {trips_taken} round trips");
    assert!(
        trips_taken <= 2.0 * batches_taken && trips_taken < sends,
        "{trips_taken} round trips for {sends} file sends in {batches_taken} batches"
    );

    // Alone, a send that reads more than its conversation first (a file, an idempotency key)
    // fetches its reads together too: one batch, two round trips.
    let (u, g) = (&users[0], &own[0]);
    let (s, b) = common::files::send_file(u, g, &ups[0]).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let keyed = json!({ "content": "keyed", "idempotencyKey": "lone-key" });
    let (s, b) = u.post(&format!("/api/im/messages/{g}"), keyed).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let lone_batches = counter(&node.base, batches).await - batches_before - batches_taken;
    let lone_trips = counter(&node.base, trips).await - trips_before - trips_taken;
    assert_eq!(
        (lone_batches, lone_trips),
        (2.0, 4.0),
        "two lone sends, each reading two things first"
    );

    // Everybody at once into one conversation, and into their own ones, mixed in one batch.
    let mut expected: std::collections::HashMap<String, i64> =
        own.iter().map(|g| (g.clone(), 2 * rounds as i64)).collect();
    *expected.get_mut(&own[0]).unwrap() += 2;
    expected.insert(shared.clone(), 0);
    for round in 0..rounds {
        let sends = users.iter().zip(&own).enumerate().map(|(i, (u, g))| {
            let g = if i % 2 == 0 {
                shared.clone()
            } else {
                g.clone()
            };
            let api = u.clone();
            async move {
                let path = format!("/api/im/messages/{g}");
                let (s, b) = api
                    .post(&path, json!({ "content": format!("mixed {round}") }))
                    .await;
                (g, s, b)
            }
        });
        for (g, s, b) in futures_util::future::join_all(sends).await {
            assert_eq!(s, StatusCode::CREATED, "{b}");
            *expected.get_mut(&g).unwrap() += 1;
        }
    }
    let (events, _) = users[1].sync_all(0, 500).await;
    let mut numbers: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for e in events.iter().filter(|e| e["type"] == "message.new") {
        let conv = e["data"]["conversationId"].as_str().unwrap().to_owned();
        numbers
            .entry(conv)
            .or_default()
            .push(e["data"]["seq"].as_i64().unwrap());
    }
    for (g, n) in &expected {
        let got = numbers.get(g).cloned().unwrap_or_default();
        assert_eq!(got, (1..=*n).collect::<Vec<_>>(), "conversation {g}");
    }
}

#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_database_connections_answer_503_then_recover() {
    needs_postgres();
    let dir = tempfile::tempdir().unwrap();
    let node = ChildServer::spawn(dir.path(), free_port()).await;
    let alice = register(&node.base, "alice").await;
    let g = alice.group("g", &[]).await;
    alice.send(&g, "before").await;
    let schema = schema_for(dir.path());
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'imsync:{schema}'"
    ));
    let mut sent = 0;
    for i in 0..20 {
        let (s, b) = alice
            .post(
                &format!("/api/im/messages/{g}"),
                json!({"content": format!("after {i}")}),
            )
            .await;
        match s {
            StatusCode::CREATED => sent += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(b["ok"], false);
                assert_eq!(b["error"]["code"], "SERVICE_UNAVAILABLE");
            }
            other => panic!("unexpected {other}: {b}"),
        }
        let (s, b) = alice.get(&format!("/api/im/messages/{g}?limit=200")).await;
        assert!(
            s == StatusCode::OK || s == StatusCode::SERVICE_UNAVAILABLE,
            "{s}: {b}"
        );
    }
    assert!(
        sent >= 15,
        "the node recovered ({sent} of 20 sends went through)"
    );
    // Nothing half-written: the history holds exactly the acknowledged messages.
    let (_, b) = alice.get(&format!("/api/im/messages/{g}?limit=200")).await;
    assert_eq!(b["data"].as_array().unwrap().len(), sent + 1);
}

#[tokio::test]
async fn sigterm_closes_sockets_with_going_away_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = ChildServer::spawn(dir.path(), free_port()).await;
    let alice = register(&node.base, "alice").await;
    let mut ws = open_ws(&node.base, alice.token.as_deref().unwrap()).await;
    let pid = node.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(close_code(&mut ws).await, Some(1001));
    let mut exit = None;
    for _ in 0..100 {
        if let Some(s) = node.child.try_wait().unwrap() {
            exit = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(exit.expect("exited after SIGTERM").success());
}

/// A logout on one node ends the sockets its token holds open on every other node.
#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
#[tokio::test]
async fn a_logout_on_one_node_ends_sockets_on_the_others() {
    needs_postgres();
    let dir = tempfile::tempdir().unwrap();
    let a = ChildServer::spawn(dir.path(), free_port()).await;
    let b = ChildServer::spawn(dir.path(), free_port()).await;
    let alice = register(&a.base, "alice").await;
    let mut ws = open_ws(&b.base, alice.token.as_deref().unwrap()).await;
    let (s, body) = alice.post("/api/im/logout", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        close_code(&mut ws).await,
        Some(4001),
        "the other node closed the socket as unauthorized"
    );
}

#[test]
fn an_unreachable_database_at_start_exits_non_zero_with_the_reason() {
    let port = free_port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imsync"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
        .arg(format!("postgres://postgres@127.0.0.1:{port}/none"))
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run imsync");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect to PostgreSQL")
            && stderr.contains("refused")
            && stderr.contains("check --database-url"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
}
