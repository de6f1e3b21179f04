mod common;
mod support;

use common::{free_port, Api, ChildServer, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::{
    check_page, conv_of, drain, error_code, history_all, kind, register, send_keyed, seq, sync_page,
};

/// The events of one conversation in a stream.
fn of_conv<'a>(events: &'a [Value], conv: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| conv_of(e) == Some(conv)).collect()
}

fn contents(events: &[&Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| kind(e) == "message.new")
        .map(|e| e["data"]["content"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Completeness
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completeness_under_concurrent_writers() {
    const WRITERS: usize = 6;
    const PER_WRITER: usize = 60;
    let srv = TestServer::start().await;
    let reader = srv.user("reader").await;
    let mut writers = Vec::new();
    for i in 0..WRITERS {
        writers.push(srv.user(&format!("writer{i}")).await);
    }
    let names: Vec<String> = writers.iter().map(|w| w.username.clone()).collect();
    let mut groups = Vec::new();
    for (g, w) in writers.iter().take(3).enumerate() {
        let mut members: Vec<&str> = names.iter().map(String::as_str).collect();
        members.push("reader");
        groups.push(w.group(&format!("g{g}"), &members).await);
    }
    // A group the reader is not in: its events must never reach the reader.
    let hidden = writers[0].group("hidden", &[names[1].as_str()]).await;

    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, w) in writers.iter().enumerate() {
        let (w, groups, hidden) = (w.clone(), groups.clone(), hidden.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..PER_WRITER {
                let conv = if i < 2 && n % 7 == 0 {
                    &hidden
                } else {
                    &groups[(i + n) % groups.len()]
                };
                let (s, b) = w
                    .post(
                        &format!("/api/im/messages/{conv}"),
                        json!({"content": format!("w{i}-{n}")}),
                    )
                    .await;
                assert_eq!(s, StatusCode::CREATED, "send: {b}");
                let id = b["data"]["message"]["id"].as_str().unwrap().to_owned();
                if n % 5 == 0 {
                    let (s, b) = w
                        .patch(
                            &format!("/api/im/messages/{conv}/{id}"),
                            json!({"content": format!("w{i}-{n}-edited")}),
                        )
                        .await;
                    assert_eq!(s, StatusCode::OK, "edit: {b}");
                }
                if n % 9 == 0 {
                    let (s, b) = w
                        .post(
                            &format!("/api/im/messages/{conv}/{id}/reactions"),
                            json!({"emoji": "👍"}),
                        )
                        .await;
                    assert_eq!(s, StatusCode::OK, "react: {b}");
                }
                acked.push((conv.clone(), id));
            }
            acked
        }));
    }

    // Two independent readers of the same account, with different page sizes.
    let mut readers = Vec::new();
    for r in 0..2usize {
        let (reader, done) = (reader.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut cursor = 0;
            let mut seen: Vec<Value> = Vec::new();
            let mut i = 0usize;
            loop {
                let finished = done.load(Ordering::SeqCst);
                // Page until caught up; after the writers stopped this is the final drain.
                loop {
                    let limit = 1 + (i * (r + 2)) % 7;
                    i += 1;
                    let (events, next, more) = sync_page(&reader, cursor, limit).await;
                    check_page(cursor, limit, &events, next, more);
                    seen.extend(events);
                    cursor = next;
                    if !more {
                        break;
                    }
                }
                if finished {
                    return (seen, cursor);
                }
                tokio::task::yield_now().await;
            }
        }));
    }

    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let (full, full_cursor) = drain(&reader, 0, &[500]).await;
    for r in readers {
        let (seen, cursor) = r.await.unwrap();
        let seqs: Vec<i64> = seen.iter().map(seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "a reader saw a seq twice or out of order"
        );
        assert_eq!(cursor, full_cursor, "readers end at different cursors");
        assert_eq!(
            seen, full,
            "the incremental reader and a fresh full sync disagree"
        );
    }
    assert!(
        full.iter().all(|e| conv_of(e) != Some(hidden.as_str())),
        "the reader saw a conversation it is not in"
    );
    let new_ids: HashSet<&str> = full
        .iter()
        .filter(|e| kind(e) == "message.new")
        .map(|e| e["data"]["id"].as_str().unwrap())
        .collect();
    let mut expected = 0;
    for (conv, id) in &acked {
        if *conv != hidden {
            expected += 1;
            assert!(
                new_ids.contains(id.as_str()),
                "acknowledged {id} never synced"
            );
        }
    }
    assert_eq!(new_ids.len(), expected, "unexpected message.new events");
}

// ---------------------------------------------------------------------------------------------
// 2. Visibility
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn visibility_outsider_sees_nothing() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let _bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let g = alice.group("secret", &["bob"]).await;
    for i in 0..5 {
        alice.send(&g, &format!("m{i}")).await;
    }
    let (events, cursor) = drain(&carol, 0, &[1, 3]).await;
    assert!(events.is_empty(), "outsider saw {events:?}");
    assert_eq!(cursor, 0);
    let (s, b) = carol.get(&format!("/api/im/messages/{g}")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(error_code(&b), "NOT_PARTICIPANT");
}

#[tokio::test]
async fn visibility_added_user_gets_snapshot_then_add_and_nothing_before() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let g = alice.group("team", &["bob"]).await;
    alice.send(&g, "before-1").await;
    bob.send(&g, "before-2").await;
    let (s, b) = alice
        .post(
            &format!("/api/im/conversations/{g}/participants"),
            json!({"userId": carol.user_id}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    alice.send(&g, "after-1").await;

    let (events, _) = drain(&carol, 0, &[1, 2]).await;
    let mine = of_conv(&events, &g);
    assert_eq!(mine.len(), 3, "carol's events: {mine:?}");
    assert_eq!(kind(mine[0]), "conversation.create");
    assert_eq!(kind(mine[1]), "participant.add");
    assert_eq!(kind(mine[2]), "message.new");
    assert!(seq(mine[0]) < seq(mine[1]));
    let snapshot = &mine[0]["data"];
    assert_eq!(snapshot["id"], json!(g));
    let members = snapshot["members"].as_array().expect("members array");
    let ids: BTreeSet<&str> = members
        .iter()
        .map(|m| {
            assert!(m.is_object(), "a member is not an object: {m}");
            m["userId"].as_str().expect("member userId")
        })
        .collect();
    let expected: BTreeSet<&str> = [&alice, &bob, &carol]
        .iter()
        .map(|u| u.user_id.as_str())
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(mine[1]["data"]["userId"], json!(carol.user_id));
    assert_eq!(mine[2]["data"]["content"], json!("after-1"));

    // The snapshot is private: alice and bob have exactly the one shared create.
    for u in [&alice, &bob] {
        let (ev, _) = drain(u, 0, &[100]).await;
        let creates = ev
            .iter()
            .filter(|e| kind(e) == "conversation.create")
            .count();
        assert_eq!(creates, 1, "{} saw a snapshot meant for carol", u.username);
        assert!(ev.iter().all(|e| seq(e) != seq(mine[0])));
    }
    // History agrees with sync: carol sees only what came after she joined.
    let hist = history_all(&carol, &g).await;
    let texts: Vec<&str> = hist
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["after-1"]);
}

#[tokio::test]
async fn visibility_removed_user_sees_own_removal_and_nothing_after() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    alice.send(&g, "m1").await;
    let (s, b) = alice
        .delete(&format!(
            "/api/im/conversations/{g}/participants/{}",
            bob.user_id
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    alice.send(&g, "m2").await;
    let (s, b) = alice
        .patch(&format!("/api/im/conversations/{g}"), json!({"title": "x"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let (events, _) = drain(&bob, 0, &[1]).await;
    let mine = of_conv(&events, &g);
    let last = mine.last().expect("bob saw the conversation");
    assert_eq!(kind(last), "participant.remove");
    assert_eq!(last["data"]["userId"], json!(bob.user_id));
    assert_eq!(contents(&mine), vec!["m1"]);
    let (s, b) = bob.get(&format!("/api/im/messages/{g}")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, b) = bob.get("/api/im/conversations").await;
    assert_eq!(s, StatusCode::OK);
    assert!(b["data"].as_array().unwrap().is_empty(), "{b}");
}

#[tokio::test]
async fn visibility_leave_and_readd_gives_two_windows() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    alice.send(&g, "w1-a").await;
    let (s, b) = bob.delete(&format!("/api/im/conversations/{g}")).await;
    assert_eq!(s, StatusCode::OK, "leave: {b}");
    alice.send(&g, "gap-1").await;
    let (s, b) = alice
        .post(
            &format!("/api/im/conversations/{g}/participants"),
            json!({"userId": bob.user_id}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "re-add: {b}");
    alice.send(&g, "w2-a").await;
    bob.send(&g, "w2-b").await;
    let (s, b) = bob.delete(&format!("/api/im/conversations/{g}")).await;
    assert_eq!(s, StatusCode::OK, "leave again: {b}");
    alice.send(&g, "gap-2").await;

    // Alice saw every shared event; derive bob's two windows from her stream.
    let (all, _) = drain(&alice, 0, &[100]).await;
    let shared: Vec<&Value> = of_conv(&all, &g)
        .into_iter()
        .filter(|e| !matches!(kind(e), "conversation.read" | "conversation.settings"))
        .collect();
    let is_bob = |e: &&Value| e["data"]["userId"] == json!(bob.user_id);
    let joins: Vec<i64> = std::iter::once(seq(shared[0]))
        .chain(
            shared
                .iter()
                .filter(|e| kind(e) == "participant.add" && is_bob(e))
                .map(|e| seq(e)),
        )
        .collect();
    let leaves: Vec<i64> = shared
        .iter()
        .filter(|e| kind(e) == "participant.remove" && is_bob(e))
        .map(|e| seq(e))
        .collect();
    assert_eq!(joins.len(), 2);
    assert_eq!(leaves.len(), 2);
    let expected: Vec<i64> = shared
        .iter()
        .map(|e| seq(e))
        .filter(|s| (joins[0]..=leaves[0]).contains(s) || (joins[1]..=leaves[1]).contains(s))
        .collect();

    let (events, _) = drain(&bob, 0, &[2, 1, 5]).await;
    let mine = of_conv(&events, &g);
    // Bob's stream = the shared events of both windows, plus his private snapshot before the re-add.
    let snapshot: Vec<&&Value> = mine
        .iter()
        .filter(|e| !expected.contains(&seq(e)))
        .collect();
    assert_eq!(snapshot.len(), 1, "unexpected events: {snapshot:?}");
    assert_eq!(kind(snapshot[0]), "conversation.create");
    assert!(seq(snapshot[0]) < joins[1] && seq(snapshot[0]) > leaves[0]);
    let shared_seen: Vec<i64> = mine
        .iter()
        .map(|e| seq(e))
        .filter(|s| *s != seq(snapshot[0]))
        .collect();
    assert_eq!(shared_seen, expected, "bob's windows are not exact");
    assert_eq!(contents(&mine), vec!["w1-a", "w2-a", "w2-b"]);
    let removes: Vec<&&Value> = mine
        .iter()
        .filter(|e| kind(e) == "participant.remove")
        .collect();
    assert_eq!(removes.len(), 2);
    assert_eq!(kind(mine.last().unwrap()), "participant.remove");
}

#[tokio::test]
async fn visibility_private_events_reach_only_their_owner() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    bob.send(&g, "hello").await;
    let (s, b) = alice
        .post_empty(&format!("/api/im/conversations/{g}/read"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = alice
        .patch(
            &format!("/api/im/conversations/{g}/pin"),
            json!({"pinned": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = alice
        .patch(
            &format!("/api/im/conversations/{g}/mute"),
            json!({"muted": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    alice.send(&g, "reply").await;
    let (s, b) = bob
        .post_empty(&format!("/api/im/conversations/{g}/read"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    let (a_events, _) = drain(&alice, 0, &[1, 4]).await;
    let (b_events, _) = drain(&bob, 0, &[1, 4]).await;
    let private = |events: &[Value], user: &Api| -> Vec<String> {
        events
            .iter()
            .filter(|e| matches!(kind(e), "conversation.read" | "conversation.settings"))
            .map(|e| {
                if kind(e) == "conversation.read" {
                    assert_eq!(e["data"]["userId"], json!(user.user_id), "{e}");
                }
                kind(e).to_owned()
            })
            .collect()
    };
    assert_eq!(
        private(&a_events, &alice),
        vec![
            "conversation.read",
            "conversation.settings",
            "conversation.settings"
        ]
    );
    assert_eq!(private(&b_events, &bob), vec!["conversation.read"]);
    let a_seqs: HashSet<i64> = a_events.iter().map(seq).collect();
    let b_seqs: HashSet<i64> = b_events.iter().map(seq).collect();
    for e in a_events.iter().filter(|e| !b_seqs.contains(&seq(e))) {
        assert!(
            matches!(kind(e), "conversation.read" | "conversation.settings"),
            "alice alone saw {e}"
        );
    }
    for e in b_events.iter().filter(|e| !a_seqs.contains(&seq(e))) {
        assert_eq!(kind(e), "conversation.read", "bob alone saw {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Monotonic cursor
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn monotonic_cursor_for_every_since_and_limit() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let g = alice.group("team", &["bob"]).await;
    let other = bob.group("other", &["carol"]).await;
    for i in 0..6 {
        alice.send(&g, &format!("a{i}")).await;
        carol.send(&other, &format!("c{i}")).await;
    }
    let (s, _) = alice
        .post_empty(&format!("/api/im/conversations/{g}/read"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut head = 0;
    for user in [&alice, &bob, &carol] {
        let (all, at) = drain(user, 0, &[500]).await;
        assert!(!all.is_empty());
        head = head.max(at);
    }
    for user in [&alice, &bob, &carol] {
        let (full, _) = drain(user, 0, &[500]).await;
        for since in 0..=head + 2 {
            for limit in [1usize, 2, 3, 500] {
                let (events, cursor, more) = sync_page(user, since, limit).await;
                check_page(since, limit, &events, cursor, more);
                let expected: Vec<&Value> = full.iter().filter(|e| seq(e) > since).collect();
                let n = expected.len().min(limit);
                assert_eq!(
                    events.iter().collect::<Vec<_>>(),
                    expected[..n].to_vec(),
                    "{} since={since} limit={limit}",
                    user.username
                );
                assert_eq!(more, expected.len() > limit);
            }
        }
        // Nothing new: the cursor stays where it was.
        let (_, at) = drain(user, 0, &[500]).await;
        let (events, cursor, more) = sync_page(user, at, 10).await;
        assert!(events.is_empty() && !more);
        assert_eq!(cursor, at);
        // Beyond the head: an empty page that keeps the cursor.
        for since in [head + 1, head + 1000, i64::MAX / 2] {
            let (events, cursor, more) = sync_page(user, since, 10).await;
            assert!(events.is_empty() && !more, "since={since}");
            assert_eq!(cursor, since);
        }
    }
    // New events after a cursor beyond the old head still arrive from that cursor.
    let (_, at) = drain(&alice, 0, &[500]).await;
    alice.send(&g, "later").await;
    let (events, cursor, more) = sync_page(&alice, at, 10).await;
    check_page(at, 10, &events, cursor, more);
    assert_eq!(events.len(), 1);
    assert!(cursor > at);
    // Invalid cursors and limits are refused with the JSON envelope.
    for q in ["since=-1", "limit=0", "limit=501", "since=abc", "limit=x"] {
        let (s, b) = alice.get(&format!("/api/im/sync?{q}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {b}");
        assert_eq!(b["ok"], json!(false));
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Idempotency
// ---------------------------------------------------------------------------------------------

fn message_news(events: &[Value], id: &str) -> usize {
    events
        .iter()
        .filter(|e| kind(e) == "message.new" && e["data"]["id"] == json!(id))
        .count()
}

#[tokio::test]
async fn idempotency_same_key_same_message_no_new_event() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let g2 = alice.group("team2", &["bob"]).await;

    let (s, first) = send_keyed(&alice, &g, "once", "key-1").await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let id = first["data"]["message"]["id"].as_str().unwrap().to_owned();
    let (_, cursor) = drain(&alice, 0, &[100]).await;

    // The same key through the header, the body and metadata.
    let (s, b) = send_keyed(&alice, &g, "once", "key-1").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["data"]["message"]["id"], json!(id));
    let (s, b) = alice
        .post(
            &format!("/api/im/messages/{g}"),
            json!({"content": "once", "idempotencyKey": "key-1"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["data"]["message"]["id"], json!(id));
    let (s, b) = alice
        .post(
            &format!("/api/im/messages/{g}"),
            json!({"content": "once", "metadata": {"_idempotencyKey": "key-1"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["data"]["message"]["id"], json!(id));
    let (events, _) = drain(&alice, cursor, &[100]).await;
    assert!(events.is_empty(), "a retry made events: {events:?}");

    // The same key with another payload is refused.
    let (s, b) = send_keyed(&alice, &g, "different", "key-1").await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(error_code(&b), "IDEMPOTENCY_KEY_REUSED");

    // Another sender or another conversation with the same key is another message.
    let (s, b) = send_keyed(&bob, &g, "once", "key-1").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_ne!(b["data"]["message"]["id"], json!(id));
    let (s, b) = send_keyed(&alice, &g2, "once", "key-1").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_ne!(b["data"]["message"]["id"], json!(id));

    // The direct route dedupes too.
    let (s, d1) = alice
        .request(
            Method::POST,
            &format!("/api/im/direct/{}/messages", bob.user_id),
            Some(json!({"content": "dm"})),
            &[("X-Idempotency-Key", "dm-key")],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d1}");
    let (s, d2) = alice
        .request(
            Method::POST,
            &format!("/api/im/direct/{}/messages", bob.user_id),
            Some(json!({"content": "dm"})),
            &[("X-Idempotency-Key", "dm-key")],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d2}");
    assert_eq!(d1["data"]["message"]["id"], d2["data"]["message"]["id"]);

    let (events, _) = drain(&bob, 0, &[3]).await;
    assert_eq!(message_news(&events, &id), 1);
    let dm = d1["data"]["message"]["id"].as_str().unwrap();
    assert_eq!(message_news(&events, dm), 1);
    let hist = history_all(&bob, &g).await;
    assert_eq!(hist.iter().filter(|m| m["id"] == json!(id)).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_racing_requests_make_one_message() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let _bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    for round in 0..5 {
        let key = format!("race-{round}");
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (alice, g, key) = (alice.clone(), g.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let (s, b) = send_keyed(&alice, &g, "raced", &key).await;
                assert_eq!(s, StatusCode::CREATED, "{b}");
                b["data"]["message"]["id"].as_str().unwrap().to_owned()
            }));
        }
        let mut ids = HashSet::new();
        for t in tasks {
            ids.insert(t.await.unwrap());
        }
        assert_eq!(ids.len(), 1, "one key made {ids:?}");
        let id = ids.into_iter().next().unwrap();
        let (events, _) = drain(&alice, 0, &[7]).await;
        assert_eq!(message_news(&events, &id), 1);
    }
    let hist = history_all(&alice, &g).await;
    assert_eq!(hist.len(), 5);
}

#[tokio::test]
async fn idempotency_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = ChildServer::spawn(dir.path(), port).await;
    let alice = register(&server.base, "alice").await;
    let _bob = register(&server.base, "bob").await;
    let g = alice.group("team", &["bob"]).await;
    let (s, b) = send_keyed(&alice, &g, "persisted", "restart-key").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["data"]["message"]["id"].as_str().unwrap().to_owned();
    server.kill9();

    let port = free_port();
    let server = ChildServer::spawn(dir.path(), port).await;
    let mut alice = alice;
    alice.base = server.base.clone();
    let (s, b) = send_keyed(&alice, &g, "persisted", "restart-key").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["data"]["message"]["id"], json!(id));
    let (s, b) = send_keyed(&alice, &g, "changed", "restart-key").await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (events, _) = drain(&alice, 0, &[2]).await;
    assert_eq!(message_news(&events, &id), 1);
    assert_eq!(
        events.iter().filter(|e| kind(e) == "message.new").count(),
        1
    );
    drop(server);
}

#[tokio::test]
async fn idempotency_direct_retry_after_the_peer_left_makes_no_event() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let path = format!("/api/im/direct/{}/messages", bob.user_id);
    let send = || {
        alice.request(
            Method::POST,
            &path,
            Some(json!({"content": "dm"})),
            &[("X-Idempotency-Key", "dm-retry")],
        )
    };
    let (s, first) = send().await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let conv = first["data"]["conversationId"].as_str().unwrap().to_owned();
    let (s, b) = bob.delete(&format!("/api/im/conversations/{conv}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, a_cursor) = drain(&alice, 0, &[100]).await;
    let (_, b_cursor) = drain(&bob, 0, &[100]).await;

    let (s, again) = send().await;
    assert_eq!(s, StatusCode::CREATED, "{again}");
    assert_eq!(
        again["data"]["message"]["id"],
        first["data"]["message"]["id"]
    );
    let (a_new, _) = drain(&alice, a_cursor, &[100]).await;
    let (b_new, _) = drain(&bob, b_cursor, &[100]).await;
    assert!(a_new.is_empty(), "the retry made events: {a_new:?}");
    assert!(b_new.is_empty(), "the retry made events for bob: {b_new:?}");
}

/// More conversations changed than the sync read's global candidate list holds: the page is
/// built from the user's memberships instead, and must hold exactly the same events.
#[tokio::test]
async fn completeness_with_many_changed_conversations() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let _carol = srv.user("carol").await;
    let mut groups = Vec::new();
    for i in 0..300 {
        let members: &[&str] = if i % 3 == 0 { &["carol"] } else { &["bob"] };
        let g = alice.group(&format!("g{i}"), members).await;
        alice.send(&g, &format!("m{i}")).await;
        groups.push(g);
    }
    for (i, g) in groups.iter().enumerate() {
        match i % 5 {
            _ if i % 6 == 0 => {
                let (s, b) = alice
                    .post(
                        &format!("/api/im/conversations/{g}/participants"),
                        json!({"userId": bob.user_id}),
                    )
                    .await;
                assert_eq!(s, StatusCode::CREATED, "{b}");
            }
            1 if i % 3 != 0 => {
                let (s, b) = bob.delete(&format!("/api/im/conversations/{g}")).await;
                assert_eq!(s, StatusCode::OK, "{b}");
            }
            _ => {}
        }
        alice.send(g, &format!("n{i}")).await;
    }
    // Alice is in every group from its creation to the end: bob's view is hers restricted to
    // his windows, plus his private snapshots.
    let (all, _) = drain(&alice, 0, &[500]).await;
    assert_eq!(all.iter().filter(|e| kind(e) == "message.new").count(), 600);
    let mut expected = Vec::new();
    for g in &groups {
        let mut inside = false;
        for e in of_conv(&all, g) {
            let me = e["data"]["userId"] == json!(bob.user_id);
            let s = seq(e);
            match kind(e) {
                "conversation.create" => {
                    inside = e["data"]["members"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|m| m["userId"] == json!(bob.user_id));
                    if inside {
                        expected.push(s);
                    }
                }
                "participant.add" if me => {
                    inside = true;
                    expected.push(s);
                }
                "participant.remove" if me => {
                    expected.push(s);
                    inside = false;
                }
                _ if inside => expected.push(s),
                _ => {}
            }
        }
    }
    expected.sort();
    let (full, _) = drain(&bob, 0, &[500]).await;
    let (small, _) = drain(&bob, 0, &[3, 1, 7]).await;
    assert_eq!(full, small);
    let shared: Vec<i64> = full
        .iter()
        .map(seq)
        .filter(|s| all.iter().any(|e| seq(e) == *s))
        .collect();
    assert_eq!(shared, expected, "bob's shared events");
    assert_eq!(full.len() - shared.len(), 50, "bob's private snapshots");
    // From every cursor in the middle too.
    for since in [1, 100, 400, 700, 1000] {
        let (part, _) = drain(&bob, since, &[500]).await;
        let want: Vec<&Value> = full.iter().filter(|e| seq(e) > since).collect();
        assert_eq!(part.iter().collect::<Vec<_>>(), want, "since {since}");
    }
}

/// A page is read in seq order while most of the log is the reader's and merged from the
/// reader's streams once it is not; the switch may fall anywhere in a page. Bob's log goes
/// dense, sparse (with a window outside the group), dense again: every limit and every cursor
/// gives the same events, and exactly his.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completeness_across_dense_and_sparse_stretches_of_the_log() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let _carol = srv.user("carol").await;
    let ab = alice.group("with bob", &["bob"]).await;
    let ac = alice.group("with carol", &["carol"]).await;
    let participant = format!("/api/im/conversations/{ab}/participants");
    let mut expected = Vec::new();
    for i in 0..150 {
        alice.send(&ab, &format!("dense {i}")).await;
        expected.push(format!("dense {i}"));
    }
    for i in 0..400 {
        alice.send(&ac, &format!("elsewhere {i}")).await;
        if i % 40 == 0 {
            alice.send(&ab, &format!("sparse {i}")).await;
            if !(171..=230).contains(&i) {
                expected.push(format!("sparse {i}"));
            }
        }
        if i == 170 {
            let path = format!("{participant}/{}", bob.user_id);
            let (s, b) = alice.delete(&path).await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
        if (170..230).contains(&i) && i % 20 == 0 {
            alice.send(&ab, &format!("while away {i}")).await;
        }
        if i == 230 {
            let (s, b) = alice
                .post(&participant, json!({ "userId": bob.user_id }))
                .await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
        }
    }
    // Dense again, with bob out of a second group for a while: half the log is his then.
    let ab2 = alice.group("with bob too", &["bob"]).await;
    let participant2 = format!("/api/im/conversations/{ab2}/participants");
    let mut expected2 = Vec::new();
    for i in 0..150 {
        alice.send(&ab, &format!("again {i}")).await;
        expected.push(format!("again {i}"));
        alice.send(&ab2, &format!("second {i}")).await;
        if i == 50 {
            let path = format!("{participant2}/{}", bob.user_id);
            let (s, b) = alice.delete(&path).await;
            assert_eq!(s, StatusCode::OK, "{b}");
        } else if i == 100 {
            let (s, b) = alice
                .post(&participant2, json!({ "userId": bob.user_id }))
                .await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
        }
        if !(51..=100).contains(&i) {
            expected2.push(format!("second {i}"));
        }
    }

    let (full, _) = drain(&bob, 0, &[500]).await;
    assert!(
        full.iter().all(|e| conv_of(e) != Some(ac.as_str())),
        "bob saw carol's group"
    );
    assert_eq!(contents(&of_conv(&full, &ab)), expected);
    assert_eq!(contents(&of_conv(&full, &ab2)), expected2);
    for limits in [&[1usize, 3, 7][..], &[64], &[200]] {
        let (again, _) = drain(&bob, 0, limits).await;
        assert_eq!(again, full, "limits {limits:?}");
    }
    let last = seq(full.last().unwrap());
    for since in (0..last).step_by(37) {
        let (part, _) = drain(&bob, since, &[100]).await;
        let want: Vec<&Value> = full.iter().filter(|e| seq(e) > since).collect();
        assert_eq!(part.iter().collect::<Vec<_>>(), want, "since {since}");
    }
}
