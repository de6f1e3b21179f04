//! Files over HTTP: the native upload flows (presign → multipart POST → confirm; init → parts →
//! complete), sending a file in a message, and downloads with their authorization (member,
//! non-member, member removed before or after the file was sent), `Range`, content type and
//! disposition, and the size limit. The streaming test runs the real binary and watches its
//! memory while 200 MiB go through.

mod common;
mod support;

use common::files::{download, post_form, send_file, upload};
use common::{Api, ChildServer, Options, TestServer};
use reqwest::{multipart, Method, StatusCode};
use serde_json::{json, Value};

fn error_code(b: &Value) -> &str {
    b["error"]["code"].as_str().unwrap_or("")
}

fn text_bytes() -> Vec<u8> {
    (0..10_000u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn a_file_sent_in_a_group_is_read_by_its_members_only() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let dave = srv.user("dave").await;
    let g = alice.group("team", &["bob", "dave"]).await;
    let bytes = text_bytes();

    let up = upload(&alice, "notes.txt", "text/plain", bytes.clone()).await;
    assert_eq!(up["fileSize"], bytes.len());
    let url = up["cdnUrl"].as_str().unwrap().to_owned();
    // Before it is sent, only its uploader may read it.
    assert_eq!(download(&bob, &url, None).await.status(), 404);
    assert_eq!(download(&alice, &url, None).await.status(), 200);

    let (s, m) = send_file(&alice, &g, &up).await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let m = m["data"]["message"].clone();
    assert_eq!(m["type"], "file");
    assert_eq!(m["metadata"]["uploadId"], up["uploadId"]);

    // A member: the same bytes, as an attachment.
    let r = download(&bob, &url, None).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/plain");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"notes.txt\""),
        "{:?}",
        h["content-disposition"]
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);

    // A non-member: 403 in the native format.
    let r = download(&carol, &url, None).await;
    assert_eq!(r.status(), 403);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["ok"], false);
    assert_eq!(error_code(&b), "FORBIDDEN");

    // One range: 206 with its Content-Range; one past the end: 416 in the native format.
    let r = download(&bob, &url, Some("bytes=100-199")).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes[100..200].to_vec());
    let r = download(&bob, &url, Some("bytes=-10")).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes[9990..].to_vec());
    let r = download(&bob, &url, Some("bytes=20000-")).await;
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */10000");
    let b: Value = r.json().await.unwrap();
    assert_eq!(error_code(&b), "RANGE_NOT_SATISFIABLE");

    // Dave is removed: the file sent while he was a member stays his to read, one sent after
    // his removal is not.
    let (s, b) = alice
        .delete(&format!("/api/im/groups/{g}/members/{}", dave.user_id))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let later = upload(&alice, "later.txt", "text/plain", b"after".to_vec()).await;
    let (s, _) = send_file(&alice, &g, &later).await;
    assert_eq!(s, StatusCode::CREATED);
    let later_url = later["cdnUrl"].as_str().unwrap();
    assert_eq!(download(&dave, &url, None).await.status(), 200);
    let r = download(&dave, later_url, None).await;
    assert_eq!(r.status(), 403);
    assert_eq!(download(&bob, later_url, None).await.status(), 200);

    // Deleting the message takes the file away from the members, not from its uploader.
    let mid = m["id"].as_str().unwrap();
    let (s, b) = alice.delete(&format!("/api/im/messages/{g}/{mid}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(download(&bob, &url, None).await.status(), 403);
    assert_eq!(download(&alice, &url, None).await.status(), 200);

    // Without a token: 401.
    let r = reqwest::get(format!("{}{url}", srv.base)).await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn only_sniffed_images_are_served_inline() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&[0u8; 64]);
    let up = upload(&alice, "pic.png", "image/png", png.clone()).await;
    let r = download(&alice, up["cdnUrl"].as_str().unwrap(), None).await;
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline;"));
    assert_eq!(r.bytes().await.unwrap().to_vec(), png);

    // Declared an image, but is a page: an attachment, never rendered.
    let fake = upload(
        &alice,
        "pic.png",
        "image/png",
        b"<html><script>alert(1)</script>".to_vec(),
    )
    .await;
    let r = download(&alice, fake["cdnUrl"].as_str().unwrap(), None).await;
    let h = r.headers();
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment;"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    // SVG can carry scripts: never inline.
    let svg = upload(&alice, "a.svg", "image/svg+xml", b"<svg/>".to_vec()).await;
    let r = download(&alice, svg["cdnUrl"].as_str().unwrap(), None).await;
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment;"));
}

#[tokio::test]
async fn the_size_limit_is_enforced_in_the_native_format() {
    let srv = TestServer::start_with(Options {
        max_file_bytes: Some(4096),
        ..Default::default()
    })
    .await;
    let alice = srv.user("alice").await;

    let (s, b) = alice
        .post(
            "/api/im/files/presign",
            json!({"fileName": "big.bin", "fileSize": 5000, "mimeType": "application/octet-stream"}),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(error_code(&b), "PAYLOAD_TOO_LARGE");

    // Announced small, sent larger: refused, and nothing is kept to confirm.
    let (s, b) = alice
        .post(
            "/api/im/files/presign",
            json!({"fileName": "a.bin", "fileSize": 100, "mimeType": "application/octet-stream"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let id = b["data"]["uploadId"].as_str().unwrap().to_owned();
    let url = b["data"]["url"].as_str().unwrap().to_owned();
    let (s, b) = post_form(
        &alice,
        &url,
        "a.bin",
        "application/octet-stream",
        vec![7; 101],
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(b["ok"], false);
    let (s, b) = alice
        .post("/api/im/files/confirm", json!({"uploadId": id}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // A body over the whole limit is cut off by the route's own limit, in the same format.
    let (s, b) = post_form(
        &alice,
        &url,
        "a.bin",
        "application/octet-stream",
        vec![7; 80_000],
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(error_code(&b), "PAYLOAD_TOO_LARGE");

    // Bad announcements.
    for body in [
        json!({"fileName": "", "fileSize": 1, "mimeType": "text/plain"}),
        json!({"fileName": "../x", "fileSize": 1, "mimeType": "text/plain"}),
        json!({"fileName": "x", "fileSize": -1, "mimeType": "text/plain"}),
        json!({"fileName": "x", "fileSize": 1, "mimeType": "not a type"}),
        json!({"fileName": "x"}),
    ] {
        let (s, b) = alice.post("/api/im/files/presign", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {b}");
        assert_eq!(b["ok"], false);
    }
    let (s, b) = alice.get("/api/im/files/types").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["data"]["maxFileSize"], 4096);
}

#[tokio::test]
async fn a_large_file_goes_up_in_parts() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let size = 12 * 1024 * 1024 + 123;
    let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
    let (s, b) = alice
        .post(
            "/api/im/files/upload/init",
            json!({"fileName": "big.bin", "fileSize": size, "mimeType": "application/octet-stream"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let id = b["data"]["uploadId"].as_str().unwrap().to_owned();
    let parts = b["data"]["parts"].as_array().unwrap().clone();
    assert_eq!(parts.len(), 3);
    let chunk = 5 * 1024 * 1024;
    let mut etags = Vec::new();
    for p in &parts {
        let n = p["partNumber"].as_u64().unwrap() as usize;
        let data = bytes[(n - 1) * chunk..(n * chunk).min(size)].to_vec();
        let r = alice
            .http
            .put(format!("{}{}", alice.base, p["url"].as_str().unwrap()))
            .bearer_auth(alice.token.as_deref().unwrap())
            .header("content-type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        etags.push(json!({"partNumber": n, "etag": etag}));
    }
    // A part of the wrong size, a part number out of range.
    let r = alice
        .http
        .put(format!(
            "{}{}",
            alice.base,
            parts[0]["url"].as_str().unwrap()
        ))
        .bearer_auth(alice.token.as_deref().unwrap())
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (s, _) = alice
        .request(
            Method::PUT,
            &format!("/api/im/files/upload/{id}/parts/4"),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The short part overwrote part 1: put it back.
    let r = alice
        .http
        .put(format!(
            "{}{}",
            alice.base,
            parts[0]["url"].as_str().unwrap()
        ))
        .bearer_auth(alice.token.as_deref().unwrap())
        .body(bytes[..chunk].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let mut wrong = etags.clone();
    wrong[1]["etag"] = json!("\"0000\"");
    let (s, b) = alice
        .post(
            "/api/im/files/upload/complete",
            json!({"uploadId": id, "parts": wrong}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = alice
        .post(
            "/api/im/files/upload/complete",
            json!({"uploadId": id, "parts": etags}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["fileSize"], size);
    let up = b["data"].clone();
    let (s, _) = send_file(&alice, &g, &up).await;
    assert_eq!(s, StatusCode::CREATED);
    let r = download(&bob, up["cdnUrl"].as_str().unwrap(), None).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().to_vec() == bytes);

    let (s, b) = alice.get("/api/im/files/quota").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["data"]["used"], size);
    assert_eq!(b["data"]["fileCount"], 1);
}

#[tokio::test]
async fn a_message_may_only_carry_a_file_its_sender_may_read() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = bob.group("bobs", &["alice"]).await;
    let up = upload(&alice, "mine.txt", "text/plain", b"mine".to_vec()).await;
    // Bob never received it: he cannot send it on.
    let (s, b) = send_file(&bob, &g, &up).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // Once Alice sent it to him, he may.
    let (s, _) = send_file(&alice, &g, &up).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = send_file(&bob, &g, &up).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // Others cannot delete it; its uploader can, and then it is gone for everyone.
    let id = up["uploadId"].as_str().unwrap();
    let (s, _) = bob.delete(&format!("/api/im/files/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = alice.delete(&format!("/api/im/files/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let url = up["cdnUrl"].as_str().unwrap();
    assert_eq!(download(&bob, url, None).await.status(), 404);
    assert_eq!(download(&alice, url, None).await.status(), 404);
}

/// The messages of `conv` that carry a file, by upload id.
async fn file_messages(api: &Api, conv: &str) -> Vec<String> {
    let (s, h) = api.get(&format!("/api/im/messages/{conv}?limit=50")).await;
    assert_eq!(s, StatusCode::OK, "{h}");
    h["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["metadata"]["uploadId"].as_str().map(str::to_owned))
        .collect()
}

/// An upload of `api`'s whose bytes arrived but which was never confirmed, as a confirmed
/// upload's answer would describe it.
async fn unconfirmed_upload(api: &Api) -> Value {
    let (s, b) = api
        .post(
            "/api/im/files/presign",
            json!({"fileName": "draft.txt", "fileSize": 5, "mimeType": "text/plain"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let id = b["data"]["uploadId"].as_str().unwrap().to_owned();
    let url = b["data"]["url"].as_str().unwrap().to_owned();
    let (s, b) = post_form(api, &url, "draft.txt", "text/plain", b"draft".to_vec()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    json!({"uploadId": id, "fileName": "draft.txt", "fileSize": 5,
        "mimeType": "text/plain", "cdnUrl": format!("/api/im/files/{id}/content")})
}

#[tokio::test]
async fn an_own_file_that_is_not_confirmed_or_is_removed_is_refused_and_nothing_is_written() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let g = alice.group("files", &[]).await;
    let unconfirmed = unconfirmed_upload(&alice).await;
    let (s, b) = send_file(&alice, &g, &unconfirmed).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(error_code(&b), "INVALID_PARAM");
    // Confirmed, sent once, then removed by its uploader: a later send of it is refused.
    let up = upload(&alice, "gone.txt", "text/plain", b"gone".to_vec()).await;
    let (s, b) = send_file(&alice, &g, &up).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let gone = up["uploadId"].as_str().unwrap();
    let (s, b) = alice.delete(&format!("/api/im/files/{gone}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = send_file(&alice, &g, &up).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(error_code(&b), "INVALID_PARAM");
    // Neither refused send left a message behind.
    assert_eq!(file_messages(&alice, &g).await, vec![gone.to_owned()]);
}

/// Sends that arrive together share a batch of the writer, which may fetch their files' rows
/// together: each is still judged on its own. Own confirmed files go through, an unconfirmed one
/// and another's file its sender never received are refused, and every file sent is the
/// members' to read.
#[tokio::test]
async fn file_sends_that_arrive_together_are_each_judged_alone() {
    let srv = TestServer::start().await;
    let reader = srv.user("reader").await;
    let (mut senders, mut groups, mut ups) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..8 {
        let u = srv.user(&format!("sender{i}")).await;
        groups.push(u.group(&format!("g{i}"), &["reader"]).await);
        ups.push(
            upload(
                &u,
                &format!("f{i}.txt"),
                "text/plain",
                format!("file {i}").into(),
            )
            .await,
        );
        senders.push(u);
    }
    let unconfirmed = unconfirmed_upload(&senders[0]).await;

    for round in 0..3 {
        let sends = (0..8).map(|i| {
            // Round 1: sender 0 sends its unconfirmed upload; round 2: sender 1 sends sender 2's
            // file, which was only ever sent into sender 2's group.
            let (up, refused) = match (round, i) {
                (1, 0) => (&unconfirmed, true),
                (2, 1) => (&ups[2], true),
                _ => (&ups[i], false),
            };
            let (api, g) = (&senders[i], &groups[i]);
            async move { (refused, send_file(api, g, up).await) }
        });
        for (refused, (s, b)) in futures_util::future::join_all(sends).await {
            if refused {
                assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
                assert_eq!(error_code(&b), "INVALID_PARAM");
            } else {
                assert_eq!(s, StatusCode::CREATED, "{b}");
            }
        }
    }
    for (i, (g, up)) in groups.iter().zip(&ups).enumerate() {
        let sent = if i < 2 { 2 } else { 3 };
        let own = up["uploadId"].as_str().unwrap().to_owned();
        assert_eq!(
            file_messages(&reader, g).await,
            vec![own; sent],
            "group {i}"
        );
        let r = download(&reader, up["cdnUrl"].as_str().unwrap(), None).await;
        assert_eq!(r.status(), 200, "file {i}");
        assert_eq!(
            r.bytes().await.unwrap().to_vec(),
            format!("file {i}").into_bytes()
        );
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

#[tokio::test]
async fn a_200_mib_upload_streams_through_the_server() {
    const SIZE: u64 = 200 * 1024 * 1024;
    const CHUNK: usize = 256 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let limit = (SIZE + 1024).to_string();
    let mut server = ChildServer::spawn_with(
        dir.path(),
        common::free_port(),
        &["--max-file-bytes", &limit, "--body-timeout-secs", "600"],
    )
    .await;
    let mut alice = support::register(&server.base, "alice").await;
    alice.http = reqwest::Client::new();
    // Warm the upload path once so that what it allocates for good is in the baseline.
    upload(
        &alice,
        "warm.bin",
        "application/octet-stream",
        vec![1; 1 << 20],
    )
    .await;

    let pid = server.child.id();
    let baseline = vm_rss_kib(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(vm_rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
    };

    let (s, b) = alice
        .post(
            "/api/im/files/presign",
            json!({"fileName": "huge.bin", "fileSize": SIZE, "mimeType": "application/octet-stream"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let id = b["data"]["uploadId"].as_str().unwrap().to_owned();
    let url = b["data"]["url"].as_str().unwrap().to_owned();
    let chunks =
        (0..SIZE / CHUNK as u64).map(|i| Ok::<_, std::io::Error>(vec![(i % 251) as u8; CHUNK]));
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let part = multipart::Part::stream_with_length(body, SIZE).file_name("huge.bin");
    let resp = alice
        .http
        .post(format!("{}{url}", alice.base))
        .bearer_auth(alice.token.as_deref().unwrap())
        .multipart(multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    let (s, b) = alice
        .post("/api/im/files/confirm", json!({"uploadId": id}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["fileSize"], SIZE);

    // The download streams too, and ends with the last chunk's bytes.
    let r = download(&alice, b["data"]["cdnUrl"].as_str().unwrap(), None).await;
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let (mut got, mut last) = (0u64, 0u8);
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        let chunk = chunk.unwrap();
        got += chunk.len() as u64;
        last = *chunk.last().unwrap_or(&last);
    }
    assert_eq!(got, SIZE);
    assert_eq!(last, ((SIZE / CHUNK as u64 - 1) % 251) as u8);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let growth_kib = peak.load(std::sync::atomic::Ordering::Relaxed) - baseline;
    println!("RSS baseline {baseline} KiB, growth during 200 MiB up and down {growth_kib} KiB");
    assert!(
        growth_kib < 32 * 1024,
        "the server's RSS grew by {growth_kib} KiB while 200 MiB went through"
    );
    server.kill9();
}

/// A request with the headers a face authenticates with.
async fn face_get(
    srv: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> reqwest::Response {
    let http = reqwest::Client::new();
    let mut req = match &body {
        Some(b) => http.post(format!("{}{path}", srv.base)).json(b),
        None => http.get(format!("{}{path}", srv.base)),
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn rc(api: &Api) -> Vec<(&'static str, String)> {
    vec![
        ("x-user-id", api.user_id.clone()),
        ("x-auth-token", api.token.clone().unwrap()),
    ]
}

fn refs<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The message of a TangSengDaoDao channel page with `seq`.
async fn tsdd_message(srv: &TestServer, api: &Api, group: &str, seq: i64) -> Value {
    let token = api.token.clone().unwrap();
    let r = face_get(
        srv,
        "/v1/message/channel/sync",
        &[("token", &token)],
        Some(
            json!({"channel_id": group, "channel_type": 2, "start_message_seq": 0,
                    "end_message_seq": 0, "limit": 50, "pull_mode": 1}),
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    b["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_seq"] == seq)
        .cloned()
        .unwrap_or_else(|| panic!("no message {seq} in {b}"))
}

#[tokio::test]
async fn a_file_is_the_same_file_on_every_face() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let g = alice.group("team", &["bob"]).await;
    let bytes = text_bytes();

    // Sent through the native face.
    let up = upload(&alice, "notes.txt", "text/plain", bytes.clone()).await;
    let (s, m) = send_file(&alice, &g, &up).await;
    assert_eq!(s, StatusCode::CREATED);
    let m = m["data"]["message"].clone();
    let id = up["uploadId"].as_str().unwrap();

    // Rocket.Chat: file, files and attachments, and the attachment's link downloads it.
    let bob_rc = rc(&bob);
    let r = face_get(
        &srv,
        &format!(
            "/api/v1/chat.getMessage?msgId={}",
            m["id"].as_str().unwrap()
        ),
        &refs(&bob_rc),
        None,
    )
    .await;
    let b: Value = r.json().await.unwrap();
    let doc = &b["message"];
    assert_eq!(doc["file"]["_id"], id, "{b}");
    assert_eq!(doc["file"]["name"], "notes.txt");
    assert_eq!(doc["files"][0]["_id"], id);
    let a = &doc["attachments"][0];
    assert_eq!(a["title"], "notes.txt");
    assert_eq!(a["type"], "file");
    assert_eq!(a["title_link_download"], true);
    let link = a["title_link"].as_str().unwrap();
    assert_eq!(link, format!("/file-upload/{id}/notes.txt"));
    let r = face_get(&srv, link, &refs(&bob_rc), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);
    let carol_rc = rc(&carol);
    let r = face_get(&srv, link, &refs(&carol_rc), None).await;
    assert_eq!(r.status(), 403);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["success"], false, "{b}");
    assert_eq!(face_get(&srv, link, &[], None).await.status(), 401);

    // TangSengDaoDao: a file payload (type 8) whose url is under the face's base.
    let p = &tsdd_message(&srv, &bob, &g, m["seq"].as_i64().unwrap()).await["payload"];
    assert_eq!(p["type"], 8, "{p}");
    assert_eq!(p["name"], "notes.txt");
    assert_eq!(p["size"], bytes.len());
    let url = p["url"].as_str().unwrap();
    assert_eq!(url, format!("file/preview/{id}"));
    let bob_token = bob.token.clone().unwrap();
    let r = face_get(&srv, &format!("/v1/{url}"), &[("token", &bob_token)], None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);
    let carol_token = carol.token.clone().unwrap();
    let r = face_get(
        &srv,
        &format!("/v1/{url}"),
        &[("token", &carol_token)],
        None,
    )
    .await;
    assert_eq!(r.status(), 403);
    let b: Value = r.json().await.unwrap();
    assert!(b["msg"].is_string(), "{b}");

    // Rocket.Chat rooms.upload: the file and its message in one request, seen natively.
    let png = {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        v.extend_from_slice(&[3u8; 100]);
        v
    };
    let form = multipart::Form::new()
        .part(
            "file",
            multipart::Part::bytes(png.clone())
                .file_name("pic.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .text("msg", "look")
        .text("description", "a picture");
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/rooms.upload/{g}", srv.base))
        .multipart(form);
    for (k, v) in &bob_rc {
        req = req.header(*k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["success"], true, "{b}");
    let doc = &b["message"];
    assert_eq!(doc["msg"], "look");
    assert_eq!(doc["attachments"][0]["description"], "a picture");
    assert_eq!(doc["attachments"][0]["image_type"], "image/png");
    let rc_id = doc["file"]["_id"].as_str().unwrap().to_owned();
    let history = support::history_all(&alice, &g).await;
    let native = history
        .iter()
        .find(|m| m["id"] == doc["_id"])
        .expect("the upload's message in native history");
    assert_eq!(native["type"], "image");
    assert_eq!(native["metadata"]["uploadId"], rc_id.as_str());
    let r = download(
        &alice,
        native["metadata"]["fileUrl"].as_str().unwrap(),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().to_vec(), png);
    // Not a member: refused, and no file is left behind.
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/rooms.upload/{g}", srv.base))
        .multipart(multipart::Form::new().part(
            "file",
            multipart::Part::bytes(vec![1u8; 10]).file_name("x.bin"),
        ));
    for (k, v) in &carol_rc {
        req = req.header(*k, v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 400);
    let (_, q) = carol.get("/api/im/files/quota").await;
    assert_eq!(q["data"]["fileCount"], 0, "{q}");

    // TangSengDaoDao's upload: ask where, upload, send a file payload naming it.
    let r = face_get(
        &srv,
        "/v1/file/upload?type=chat&path=/chat/2/g/report.txt",
        &[("token", &bob_token)],
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    let upload_url = b["url"].as_str().unwrap().to_owned();
    assert!(upload_url.starts_with(&srv.base), "{upload_url}");
    let r = reqwest::Client::new()
        .post(&upload_url)
        .header("token", &bob_token)
        .multipart(
            multipart::Form::new().part(
                "file",
                multipart::Part::bytes(b"tsdd bytes".to_vec())
                    .file_name("report.txt")
                    .mime_str("text/plain")
                    .unwrap(),
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    let path = b["path"].as_str().unwrap().to_owned();
    let r = face_get(
        &srv,
        "/v1/message/send",
        &[("token", &bob_token)],
        Some(
            json!({"channel_id": g, "channel_type": 2, "client_msg_no": "f1",
                    "payload": {"type": 8, "url": path, "name": "report.txt", "size": 10}}),
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    let history = support::history_all(&alice, &g).await;
    let native = history.last().unwrap();
    assert_eq!(native["type"], "file");
    let url = native["metadata"]["fileUrl"].as_str().unwrap();
    let r = download(&alice, url, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), b"tsdd bytes".to_vec());
    assert_eq!(download(&carol, url, None).await.status(), 403);
    // A payload naming someone else's unsent upload is refused.
    let r = face_get(
        &srv,
        "/v1/message/send",
        &[("token", &carol_token)],
        Some(json!({"channel_id": carol.user_id, "channel_type": 1,
                    "payload": {"type": 8, "url": path, "name": "x", "size": 1}})),
    )
    .await;
    assert_eq!(r.status(), 400);
}

fn files_on_disk(srv: &TestServer) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(srv.dir.path().join("files"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_collector_removes_what_no_message_needs() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let g = alice.group("team", &["bob"]).await;
    let now = imsync_core::time::now_ms();
    let day = imsync_service::files::GRACE_MS.max(imsync_service::files::ORPHAN_MS);

    // Kept: a file in a live message, a confirmed file not sent yet.
    let kept = upload(&alice, "kept.txt", "text/plain", b"kept".to_vec()).await;
    send_file(&alice, &g, &kept).await;
    let unsent = upload(&alice, "unsent.txt", "text/plain", b"unsent".to_vec()).await;
    // Collected: a file whose only message is deleted, an upload never confirmed, an upload
    // never sent at all, and stray bytes.
    let dropped = upload(&alice, "dropped.txt", "text/plain", b"dropped".to_vec()).await;
    let (_, m) = send_file(&alice, &g, &dropped).await;
    let mid = m["data"]["message"]["id"].as_str().unwrap().to_owned();
    alice.delete(&format!("/api/im/messages/{g}/{mid}")).await;
    let (_, b) = alice
        .post(
            "/api/im/files/presign",
            json!({"fileName": "half.txt", "fileSize": 4, "mimeType": "text/plain"}),
        )
        .await;
    let half_url = b["data"]["url"].as_str().unwrap().to_owned();
    post_form(
        &alice,
        &half_url,
        "half.txt",
        "text/plain",
        b"half".to_vec(),
    )
    .await;
    alice
        .post(
            "/api/im/files/presign",
            json!({"fileName": "never.txt", "fileSize": 4, "mimeType": "text/plain"}),
        )
        .await;
    std::fs::write(srv.dir.path().join("files/strayBytes"), b"x").unwrap();
    let half_id = half_url.rsplit('/').next().unwrap().to_owned();
    let id = |v: &Value| v["uploadId"].as_str().unwrap().to_owned();
    let mut before = vec![
        id(&kept),
        id(&unsent),
        id(&dropped),
        half_id.clone(),
        "strayBytes".to_owned(),
    ];
    before.sort();
    assert_eq!(files_on_disk(&srv), before);

    // Within the grace, nothing goes; the deleted message's file still serves its uploader.
    let s = srv.service.sweep_files(now).await.unwrap();
    assert_eq!(s, imsync_service::files::Swept::default());
    assert_eq!(files_on_disk(&srv).len(), 5);

    let s = srv.service.sweep_files(now + day + 60_000).await.unwrap();
    assert_eq!((s.unreferenced, s.stale, s.stray), (1, 2, 1), "{s:?}");
    let mut after = vec![id(&kept), id(&unsent)];
    after.sort();
    assert_eq!(files_on_disk(&srv), after);
    assert_eq!(
        download(&bob, kept["cdnUrl"].as_str().unwrap(), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        download(&alice, dropped["cdnUrl"].as_str().unwrap(), None)
            .await
            .status(),
        404
    );
    let (_, q) = alice.get("/api/im/files/quota").await;
    assert_eq!(q["data"]["fileCount"], 2, "{q}");
}

/// Uploads `bytes` in the native 5 MiB parts and completes the upload; answers it confirmed.
async fn upload_in_parts(api: &Api, name: &str, bytes: &[u8]) -> Value {
    let (s, b) = api
        .post(
            "/api/im/files/upload/init",
            json!({"fileName": name, "fileSize": bytes.len(), "mimeType": "application/octet-stream"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let id = b["data"]["uploadId"].as_str().unwrap().to_owned();
    let chunk = 5 * 1024 * 1024;
    let mut etags = Vec::new();
    for p in b["data"]["parts"].as_array().unwrap() {
        let n = p["partNumber"].as_u64().unwrap() as usize;
        let r = api
            .http
            .put(format!("{}{}", api.base, p["url"].as_str().unwrap()))
            .bearer_auth(api.token.as_deref().unwrap())
            .body(bytes[(n - 1) * chunk..(n * chunk).min(bytes.len())].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        etags.push(json!({"partNumber": n, "etag": etag}));
    }
    let (s, b) = api
        .post(
            "/api/im/files/upload/complete",
            json!({"uploadId": id, "parts": etags}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["data"].clone()
}

#[tokio::test]
async fn files_live_in_an_s3_compatible_store() {
    let s3 = common::s3::S3Server::start().await;
    let srv = TestServer::start_with(Options {
        files_s3: Some(s3.config()),
        ..Default::default()
    })
    .await;
    srv.service.check_file_store().await.unwrap();
    let alice = srv.user("alice").await;
    let bob = srv.user("bob").await;
    let carol = srv.user("carol").await;
    let g = alice.group("team", &["bob"]).await;

    // A small file: one PUT, read whole and by range by a member, refused to a non-member.
    let bytes = text_bytes();
    let small = upload(&alice, "notes.txt", "text/plain", bytes.clone()).await;
    let small_id = small["uploadId"].as_str().unwrap().to_owned();
    let (s, _) = send_file(&alice, &g, &small).await;
    assert_eq!(s, StatusCode::CREATED);
    let url = small["cdnUrl"].as_str().unwrap();
    assert_eq!(s3.keys("files/"), vec![format!("files/{small_id}")]);
    assert!(
        !srv.dir.path().join("files").join(&small_id).exists(),
        "nothing on the local disk"
    );
    let r = download(&bob, url, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);
    let r = download(&bob, url, Some("bytes=100-199")).await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes[100..200].to_vec());
    assert_eq!(download(&carol, url, None).await.status(), 403);

    // A 21 MiB file in native parts: kept as part objects, joined through an S3 multipart
    // upload (it is larger than one buffered part), the parts removed.
    let size = 21 * 1024 * 1024 + 77;
    let big: Vec<u8> = (0..size).map(|i| (i * 13 % 251) as u8).collect();
    let up = upload_in_parts(&alice, "big.bin", &big).await;
    let big_id = up["uploadId"].as_str().unwrap().to_owned();
    assert_eq!(s3.keys("parts/"), Vec::<String>::new());
    send_file(&alice, &g, &up).await;
    let r = download(&bob, up["cdnUrl"].as_str().unwrap(), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], size.to_string().as_str());
    assert!(r.bytes().await.unwrap().to_vec() == big);
    let tail = format!("bytes={}-", size - 5);
    let r = download(&bob, up["cdnUrl"].as_str().unwrap(), Some(&tail)).await;
    assert_eq!(r.bytes().await.unwrap().to_vec(), big[size - 5..].to_vec());

    // An upload over its announced size is refused once past it, after one buffered part went
    // up: the object store's upload is aborted and nothing is left.
    let announced = 9 * 1024 * 1024;
    let over = vec![7u8; announced + 1];
    let (s, b) = alice
        .post(
            "/api/im/files/presign",
            json!({"fileName": "over.bin", "fileSize": announced, "mimeType": "application/octet-stream"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = post_form(
        &alice,
        b["data"]["url"].as_str().unwrap(),
        "over.bin",
        "application/octet-stream",
        over,
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let mut stored = vec![format!("files/{small_id}"), format!("files/{big_id}")];
    stored.sort();
    assert_eq!(s3.keys(""), stored);

    // The collector: a deleted message's file goes after the grace, as do stray objects.
    let (_, h) = bob.get(&format!("/api/im/messages/{g}?limit=10")).await;
    let carrying_big = h["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metadata"]["uploadId"] == big_id.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = alice
        .delete(&format!("/api/im/messages/{g}/{carrying_big}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    std::fs::create_dir_all(s3.root.path().join("imsync/parts/strayUpload")).unwrap();
    std::fs::write(s3.root.path().join("imsync/parts/strayUpload/1"), b"x").unwrap();
    let now = imsync_core::time::now_ms();
    let day = imsync_service::files::GRACE_MS.max(imsync_service::files::ORPHAN_MS);
    let swept = srv.service.sweep_files(now).await.unwrap();
    assert_eq!(swept, imsync_service::files::Swept::default());
    let swept = srv.service.sweep_files(now + day + 60_000).await.unwrap();
    assert_eq!((swept.unreferenced, swept.stray), (1, 1), "{swept:?}");
    assert_eq!(s3.keys("files/"), vec![format!("files/{small_id}")]);
    assert_eq!(s3.keys("parts/"), Vec::<String>::new());
    assert_eq!(download(&bob, url, None).await.status(), 200);

    // The uploader deletes a file: its object goes at once.
    let (s, _) = alice.delete(&format!("/api/im/files/{small_id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(s3.keys("files/"), Vec::<String>::new());
    s3.stop().await;
}

#[tokio::test]
async fn a_server_whose_object_store_does_not_answer_refuses_to_start() {
    let s3 = common::s3::S3Server::start().await;
    let mut flags = s3.flags();
    let key = flags
        .iter()
        .position(|f| f == "--files-s3-secret-key")
        .unwrap();
    flags[key + 1] = "wrong".to_owned();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imsync"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(&flags)
        .env("IMSYNC_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("object store"), "{err}");
    assert!(!err.contains("wrong"), "the secret is not printed: {err}");
    s3.stop().await;
}

#[tokio::test]
#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
async fn two_nodes_serve_each_others_files_from_one_object_store() {
    assert!(
        common::postgres_url().is_some(),
        "IMSYNC_TEST_DATABASE_URL must name a PostgreSQL database"
    );
    let s3 = common::s3::S3Server::start().await;
    let flags = s3.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    // Each node its own data dir (no shared directory); the same directory name makes the same
    // database schema.
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = ChildServer::spawn_with(dir_a.path(), common::free_port(), &flags).await;
    let b_dir = dir_b.path().join(dir_a.path().file_name().unwrap());
    std::fs::create_dir(&b_dir).unwrap();
    let b = ChildServer::spawn_with(&b_dir, common::free_port(), &flags).await;
    let alice = Api::new(&a.base, None);
    let (s, r) = alice
        .post(
            "/api/im/register",
            json!({"type": "human", "username": "alice"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let mut alice = Api::new(&a.base, Some(r["data"]["token"].as_str().unwrap().into()));
    alice.user_id = r["data"]["imUserId"].as_str().unwrap().into();
    let (_, r) = Api::new(&b.base, None)
        .post(
            "/api/im/register",
            json!({"type": "human", "username": "bob"}),
        )
        .await;
    let bob = Api::new(&b.base, Some(r["data"]["token"].as_str().unwrap().into()));
    let g = alice.group("team", &["bob"]).await;
    let bytes = text_bytes();
    let up = upload(&alice, "notes.txt", "text/plain", bytes.clone()).await;
    send_file(&alice, &g, &up).await;
    // Bob is served by the other node, which never saw the upload.
    let r = download(&bob, up["cdnUrl"].as_str().unwrap(), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);
    assert!(!b_dir
        .join("files")
        .join(up["uploadId"].as_str().unwrap())
        .exists());
    drop((a, b));
    s3.stop().await;
}
