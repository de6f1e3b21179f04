//! Limits on what a client may hold: connections that stay silent, trickle their request, stop
//! halfway through a body or idle between requests are closed; the connection cap makes the
//! rest wait; a shutdown ends within its grace whatever the clients do; a handler that ignores
//! its body still reads it (and refuses one over the limit) so the connection stays usable; and
//! WebSocket failures close with the code that names them.
//!
//! Timeouts here are a few hundred milliseconds and the bounds several seconds: the tests check
//! that something happens, not how fast, so a loaded machine only makes them slower.

mod common;

use common::{Api, Options, TestServer};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const BOUND: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Reads until the server closes the connection (end of stream or reset) and answers what it
/// sent; panics if it is still open after [`BOUND`].
async fn closed_by_server(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(BOUND, read_all)
        .await
        .expect("the server should have closed the connection");
    got
}

/// One HTTP/1.1 response: status and body (by Content-Length).
async fn read_response(s: &mut TcpStream) -> std::io::Result<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((status, body))
}

async fn get_healthz(s: &mut TcpStream) -> std::io::Result<u16> {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: imsync\r\n\r\n")
        .await?;
    let (status, _) = tokio::time::timeout(BOUND, read_response(s))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok(status)
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let srv = TestServer::start_with(Options {
        header_timeout: Some(ms(300)),
        ..Default::default()
    })
    .await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    closed_by_server(&mut s).await;
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_cut_off() {
    let srv = TestServer::start_with(Options {
        header_timeout: Some(ms(500)),
        keepalive_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    })
    .await;
    let s = TcpStream::connect(srv.addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    // Slowloris: every byte arrives well within any per-read timeout, the head never ends.
    let writer = tokio::spawn(async move {
        if w.write_all(b"GET /healthz HTTP/1.1\r\nHost: imsync\r\nX-Slow: ")
            .await
            .is_err()
        {
            return;
        }
        for _ in 0..300 {
            tokio::time::sleep(ms(100)).await;
            if w.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let read_all = async {
        let mut buf = [0u8; 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(BOUND, read_all)
        .await
        .expect("a trickled head should be cut off");
    writer.abort();
}

#[tokio::test]
async fn a_keep_alive_connection_idle_too_long_is_closed() {
    let srv = TestServer::start_with(Options {
        keepalive_timeout: Some(ms(300)),
        header_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    })
    .await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    assert_eq!(get_healthz(&mut s).await.unwrap(), 200);
    closed_by_server(&mut s).await;
}

#[tokio::test]
async fn the_wait_between_requests_is_not_held_to_the_header_timeout() {
    let srv = TestServer::start_with(Options {
        header_timeout: Some(ms(300)),
        keepalive_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    })
    .await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    assert_eq!(get_healthz(&mut s).await.unwrap(), 200);
    tokio::time::sleep(ms(1200)).await;
    assert_eq!(get_healthz(&mut s).await.unwrap(), 200);
}

#[tokio::test]
async fn a_body_that_stops_halfway_is_cut_off() {
    let srv = TestServer::start_with(Options {
        body_timeout: Some(ms(300)),
        header_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    })
    .await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(
        b"POST /api/im/register HTTP/1.1\r\nHost: imsync\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"type\":",
    )
    .await
    .unwrap();
    let got = closed_by_server(&mut s).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 4"),
        "a client error or nothing: {text}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let srv = TestServer::start_with(Options {
        max_connections: Some(2),
        ..Default::default()
    })
    .await;
    let mut first = TcpStream::connect(srv.addr).await.unwrap();
    let mut second = TcpStream::connect(srv.addr).await.unwrap();
    assert_eq!(get_healthz(&mut first).await.unwrap(), 200);
    assert_eq!(get_healthz(&mut second).await.unwrap(), 200);
    let mut third = TcpStream::connect(srv.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: imsync\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(ms(500), third.read(&mut byte))
            .await
            .is_err(),
        "a third connection was served while two held the slots"
    );
    drop(first);
    let (status, _) = tokio::time::timeout(BOUND, async {
        // The byte read above may have consumed nothing; the response follows whole.
        read_response(&mut third).await
    })
    .await
    .expect("served once a slot was free")
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(get_healthz(&mut second).await.unwrap(), 200);
}

#[tokio::test]
async fn shutdown_drops_half_sent_requests_after_the_grace() {
    let mut srv = TestServer::start_with(Options {
        header_timeout: Some(Duration::from_secs(120)),
        body_timeout: Some(Duration::from_secs(120)),
        shutdown_grace: Some(ms(300)),
        ..Default::default()
    })
    .await;
    let mut half_head = TcpStream::connect(srv.addr).await.unwrap();
    half_head
        .write_all(b"POST /api/im/register HTTP/1.1\r\nHost: imsync\r\n")
        .await
        .unwrap();
    let mut half_body = TcpStream::connect(srv.addr).await.unwrap();
    half_body
        .write_all(
            b"POST /api/im/register HTTP/1.1\r\nHost: imsync\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    // Both must be in the server's hands (accepted, head or body being read) before it stops.
    let mut probe = TcpStream::connect(srv.addr).await.unwrap();
    assert_eq!(get_healthz(&mut probe).await.unwrap(), 200);
    drop(probe);
    tokio::time::timeout(BOUND, srv.stop())
        .await
        .expect("the server should stop within its shutdown grace");
    closed_by_server(&mut half_head).await;
    closed_by_server(&mut half_body).await;
}

/// The real binary: SIGTERM with a client stuck halfway through its request head still ends
/// the process, once the grace is over.
#[cfg(unix)]
#[tokio::test]
async fn the_binary_exits_on_sigterm_despite_a_half_sent_request() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imsync"));
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir.path())
    .args(["--shutdown-grace-secs", "1", "--header-timeout-secs", "600"]);
    if let Some(url) = common::postgres_url() {
        cmd.args([
            "--database-url",
            &url,
            "--pg-schema",
            &common::schema_for(dir.path()),
        ]);
    }
    let mut child = cmd
        .env("IMSYNC_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn imsync");
    let addr = format!("127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..400 {
        if let Ok(mut s) = TcpStream::connect(&addr).await {
            if get_healthz(&mut s).await.ok() == Some(200) {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(ms(50)).await;
    }
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        panic!("imsync did not become healthy");
    }
    let mut stuck = TcpStream::connect(&addr).await.unwrap();
    stuck
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: imsync\r\n")
        .await
        .unwrap();
    let mut probe = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(get_healthz(&mut probe).await.unwrap(), 200);
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let mut exited = None;
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(ms(50)).await;
    }
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("imsync still running 15 s after SIGTERM with a half-sent request open");
    }
    assert!(exited.unwrap().success(), "exit status {exited:?}");
    closed_by_server(&mut stuck).await;
}

/// A method, a path and the headers to send.
type Route = (&'static str, &'static str, Vec<(String, String)>);

/// Handlers that ignore their body, with the headers that authenticate on their face.
fn bodyless_routes(api: &Api) -> Vec<Route> {
    let token = api.token.clone().unwrap_or_default();
    let bearer = vec![("Authorization".to_owned(), format!("Bearer {token}"))];
    vec![
        (
            "POST",
            "/v1/message/revoke",
            vec![("token".to_owned(), token.clone())],
        ),
        ("POST", "/api/im/token/refresh", bearer.clone()),
        (
            "POST",
            "/v1/conversation/syncack",
            vec![("token".to_owned(), token.clone())],
        ),
        (
            "POST",
            "/api/v1/logout",
            vec![
                ("X-User-Id".to_owned(), api.user_id.clone()),
                ("X-Auth-Token".to_owned(), token.clone()),
            ],
        ),
        ("DELETE", "/api/im/messages/nope/nope", bearer),
    ]
}

#[tokio::test]
async fn a_handler_that_ignores_its_body_leaves_the_connection_usable() {
    let srv = TestServer::start().await;
    let api = srv.user("bodyless").await;
    for authenticated in [true, false] {
        for (method, path, headers) in bodyless_routes(&api) {
            // Logging out ends the session the others use: it goes last, and only once.
            if path == "/api/v1/logout" && !authenticated {
                continue;
            }
            let mut s = TcpStream::connect(srv.addr).await.unwrap();
            let body = json!({"message_id": "1", "channel_id": "x", "channel_type": 1, "pad": "p".repeat(300)})
                .to_string();
            let mut head =
                format!("{method} {path} HTTP/1.1\r\nHost: imsync\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
            if authenticated {
                for (k, v) in &headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
            }
            head.push_str("\r\n");
            s.write_all(head.as_bytes()).await.unwrap();
            // The body comes after the handler could have answered without it, as from a
            // client on a slow link: the case where the connection used to be closed.
            tokio::time::sleep(ms(150)).await;
            s.write_all(body.as_bytes()).await.unwrap();
            let (status, _) = tokio::time::timeout(BOUND, read_response(&mut s))
                .await
                .unwrap_or_else(|_| panic!("{method} {path}: no response"))
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            assert!(status < 500, "{method} {path} answered {status}");
            let next = get_healthz(&mut s).await;
            assert_eq!(
                next.ok(),
                Some(200),
                "{method} {path} (authenticated: {authenticated}): the next request on the \
                 connection failed"
            );
        }
    }
}

#[tokio::test]
async fn a_handler_that_ignores_its_body_refuses_one_over_the_limit() {
    let srv = TestServer::start_with(Options {
        max_body_bytes: Some(1024),
        ..Default::default()
    })
    .await;
    let api = srv.user("bodyless").await;
    let http = reqwest::Client::new();
    let big = format!("{{\"pad\":\"{}\"}}", "p".repeat(4096));
    for (method, path, headers) in bodyless_routes(&api) {
        let mut req = http
            .request(method.parse().unwrap(), format!("{}{path}", srv.base))
            .header("content-type", "application/json")
            .body(big.clone());
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {path}: {body}"
        );
        if path.starts_with("/api/v1/") {
            assert_eq!(body["success"], false, "{path}: {body}");
        } else if path.starts_with("/v1/") {
            assert_eq!(body["status"], 413, "{path}: {body}");
            assert!(body["msg"].is_string(), "{path}: {body}");
        } else {
            assert_eq!(body["ok"], false, "{path}: {body}");
            assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE", "{path}: {body}");
        }
    }
}

/// A body declared over the limit is not drained, so the answer to it closes the connection,
/// and says so: a keep-alive client then opens a new connection instead of failing its next
/// request on this one.
#[tokio::test]
async fn an_answer_to_a_body_over_the_limit_says_the_connection_closes() {
    let srv = TestServer::start_with(Options {
        max_body_bytes: Some(1024),
        ..Default::default()
    })
    .await;
    for path in [
        "/api/im/nope",
        "/api/im/register",
        "/v1/message/revoke",
        "/healthz",
    ] {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        let body = "x".repeat(40_000);
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: imsync\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        // The server may answer and close before the whole body is in.
        let _ = s.write_all(body.as_bytes()).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = tokio::time::timeout(BOUND, async {
            loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    return i;
                }
                let n = s.read(&mut chunk).await.unwrap_or(0);
                assert!(n > 0, "{path}: no answer");
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("an answer");
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        assert!(
            head.contains("connection: close"),
            "{path}: the answer does not say the connection closes:\n{head}"
        );
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket past its `authenticated` frame.
async fn ws_connect(srv: &TestServer, api: &Api) -> Ws {
    let url = format!(
        "ws://{}/ws?token={}",
        srv.addr,
        api.token.as_deref().unwrap()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    let first = tokio::time::timeout(BOUND, ws.next())
        .await
        .expect("a first frame")
        .expect("a first frame")
        .expect("a first frame");
    assert!(
        matches!(&first, Message::Text(t) if t.as_str().contains("authenticated")),
        "{first:?}"
    );
    ws
}

/// The close code the server ends with; panics if it drops the connection without a close frame
/// or keeps it open past [`BOUND`].
async fn close_code(ws: &mut Ws) -> u16 {
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("the connection failed without a close frame: {e}"),
                None => panic!("the connection ended without a close frame"),
            }
        }
    };
    tokio::time::timeout(BOUND, wait)
        .await
        .expect("the server should have closed the WebSocket")
}

fn raw_frame(opcode: OpCode, payload: &[u8], fin: bool) -> Message {
    Message::Frame(Frame::message(payload.to_vec(), opcode, fin))
}

#[tokio::test]
async fn a_websocket_message_over_the_limit_closes_with_1009() {
    let srv = TestServer::start_with(Options {
        max_body_bytes: Some(1024),
        ..Default::default()
    })
    .await;
    let api = srv.user("big").await;
    let mut ws = ws_connect(&srv, &api).await;
    ws.send(Message::Binary(vec![7u8; 2048].into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, 1009);

    // The same for a message over the limit in fragments each under it.
    let mut ws = ws_connect(&srv, &api).await;
    ws.send(raw_frame(OpCode::Data(OpData::Text), &[b'a'; 800], false))
        .await
        .unwrap();
    ws.send(raw_frame(
        OpCode::Data(OpData::Continue),
        &[b'a'; 800],
        true,
    ))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, 1009);
}

#[tokio::test]
async fn a_websocket_protocol_violation_closes_with_1002() {
    let srv = TestServer::start().await;
    let api = srv.user("rude").await;
    let mut ws = ws_connect(&srv, &api).await;
    // A continuation with no message to continue.
    ws.send(raw_frame(OpCode::Data(OpData::Continue), b"x", true))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, 1002);
}

#[tokio::test]
async fn invalid_utf8_in_a_websocket_text_message_closes_with_1007() {
    let srv = TestServer::start().await;
    let api = srv.user("garbled").await;
    let mut ws = ws_connect(&srv, &api).await;
    ws.send(raw_frame(
        OpCode::Data(OpData::Text),
        &[0x7b, 0xff, 0xfe, 0x7d],
        true,
    ))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, 1007);
}

#[tokio::test]
async fn a_fragmented_websocket_message_never_finished_times_out() {
    let srv = TestServer::start_with(Options {
        ws_idle_timeout: Some(ms(500)),
        ..Default::default()
    })
    .await;
    let api = srv.user("halfway").await;
    let mut ws = ws_connect(&srv, &api).await;
    ws.send(raw_frame(OpCode::Data(OpData::Text), b"{\"type\":", false))
        .await
        .unwrap();
    // Pings keep a connection alive, but not a message that never ends.
    let (mut tx, mut rx) = ws.split();
    let pinger = tokio::spawn(async move {
        for _ in 0..200 {
            tokio::time::sleep(ms(100)).await;
            if tx.send(Message::Ping(vec![1, 2, 3].into())).await.is_err() {
                return;
            }
        }
    });
    let wait = async {
        loop {
            match rx.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(_)) => continue,
                other => panic!("the connection ended without a close frame: {other:?}"),
            }
        }
    };
    let code = tokio::time::timeout(BOUND, wait)
        .await
        .expect("an unfinished message should time out");
    pinger.abort();
    assert_eq!(code, 1008);
}

#[tokio::test]
async fn pings_alone_keep_a_websocket_open() {
    let srv = TestServer::start_with(Options {
        ws_idle_timeout: Some(ms(500)),
        ..Default::default()
    })
    .await;
    let api = srv.user("pinger").await;
    let mut ws = ws_connect(&srv, &api).await;
    for _ in 0..15 {
        tokio::time::sleep(ms(100)).await;
        ws.send(Message::Ping(vec![9; 100].into())).await.unwrap();
    }
    ws.send(Message::Text(
        json!({"type": "ping", "requestId": "r1"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let pong = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str().contains("pong") => return,
                Some(Ok(Message::Close(c))) => panic!("closed: {c:?}"),
                Some(Ok(_)) => continue,
                other => panic!("ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(BOUND, pong)
        .await
        .expect("an answer to the ping frame");
}

#[tokio::test]
async fn ws_without_an_upgrade_answers_in_the_native_envelope() {
    let srv = TestServer::start().await;
    let api = srv.user("plain").await;
    let (status, body) = api.get("/ws?token=x").await;
    assert!(status.is_client_error(), "{status}: {body}");
    assert_eq!(body["ok"], false, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

/// The head of a part upload of `len` bytes by `api`.
fn part_head(api: &common::Api, url: &str, len: usize) -> String {
    format!(
        "PUT {url} HTTP/1.1\r\nHost: imsync\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n",
        api.token.as_deref().unwrap()
    )
}

#[tokio::test]
async fn uploads_are_timed_per_chunk_and_one_that_stalls_is_cut_off() {
    let srv = TestServer::start_with(Options {
        body_timeout: Some(ms(800)),
        ..Default::default()
    })
    .await;
    let alice = srv.user("alice").await;
    let size = 4000;
    let (s, b) = alice
        .post(
            "/api/im/files/upload/init",
            serde_json::json!({"fileName": "slow.bin", "fileSize": size}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK, "{b}");
    let url = b["data"]["parts"][0]["url"].as_str().unwrap().to_owned();

    // A stall: 100 bytes, then nothing. 408 in the native format, and the connection closes.
    let mut c = TcpStream::connect(srv.addr).await.unwrap();
    c.write_all(part_head(&alice, &url, size).as_bytes())
        .await
        .unwrap();
    c.write_all(&[1u8; 100]).await.unwrap();
    let got = String::from_utf8_lossy(&closed_by_server(&mut c).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"REQUEST_TIMEOUT\""), "{got}");
    assert!(
        got.to_ascii_lowercase().contains("connection: close"),
        "{got}"
    );

    // A slow upload that keeps coming: 3 s in all, never 800 ms without a byte.
    let mut c = TcpStream::connect(srv.addr).await.unwrap();
    c.write_all(part_head(&alice, &url, size).as_bytes())
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::time::sleep(ms(300)).await;
        c.write_all(&[2u8; 400]).await.unwrap();
    }
    let (status, body) = tokio::time::timeout(BOUND, read_response(&mut c))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // A part declared larger than a part may be: refused on its head, the body never read.
    let mut c = TcpStream::connect(srv.addr).await.unwrap();
    c.write_all(part_head(&alice, &url, 5 * 1024 * 1024 + 1).as_bytes())
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&closed_by_server(&mut c).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(got.contains("\"PAYLOAD_TOO_LARGE\""), "{got}");
}
