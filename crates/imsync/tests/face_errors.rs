//! Every error under a face's prefix is in that face's format, including the answers no handler
//! makes (unknown routes, wrong methods, the rate limit, axum's rejections of a path, a body or an
//! upgrade), and secrets in a request's URL never reach the log.

mod common;

use common::{Options, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Sends a request with raw parts and answers the status, the headers and the body as JSON (a
/// non-JSON body fails the test with the body in the message).
async fn send(
    srv: &TestServer,
    method: Method,
    path: &str,
    headers: &[(&str, &[u8])],
    body: Option<Vec<u8>>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new().request(method.clone(), format!("{}{path}", srv.base));
    for (k, v) in headers {
        req = req.header(*k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req.send().await.expect("request");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!("{method} {path} answered {status} with a non-JSON body: {text:?}")
    });
    (status, headers, value)
}

fn native(what: &str, status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{what}: {body}");
    assert_eq!(body["ok"], false, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(body["error"]["message"].is_string(), "{what}: {body}");
}

fn rocketchat(what: &str, status: StatusCode, body: &Value, want: StatusCode) {
    assert_eq!(status, want, "{what}: {body}");
    assert_eq!(body["success"], false, "{what}: {body}");
    assert!(body["error"].is_string(), "{what}: {body}");
    assert!(body.get("ok").is_none(), "{what}: {body}");
}

fn tsdd(what: &str, status: StatusCode, body: &Value, want: StatusCode) {
    assert_eq!(status, want, "{what}: {body}");
    assert!(body["msg"].is_string(), "{what}: {body}");
    if status != StatusCode::UNAUTHORIZED {
        assert_eq!(body["status"], want.as_u16(), "{what}: {body}");
    }
    assert!(body.get("ok").is_none(), "{what}: {body}");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_faces_format() {
    let srv = TestServer::start().await;
    for (method, path) in [
        (Method::GET, "/v1/message/send"),
        (Method::DELETE, "/v1/user/login"),
        (Method::GET, "/v1/users/u1/setting"),
    ] {
        let (st, _, b) = send(&srv, method.clone(), path, &[], None).await;
        tsdd(
            &format!("{method} {path}"),
            st,
            &b,
            StatusCode::METHOD_NOT_ALLOWED,
        );
    }
    for path in [
        "/v1/nope",
        "/v1",
        "/v1/message/send/extra",
        "/v1/users/u1/nope",
    ] {
        let (st, _, b) = send(&srv, Method::POST, path, &[], None).await;
        tsdd(path, st, &b, StatusCode::NOT_FOUND);
    }
    for path in ["/api/v1", "/api/v1/nope"] {
        let (st, _, b) = send(&srv, Method::GET, path, &[], None).await;
        rocketchat(path, st, &b, StatusCode::NOT_FOUND);
    }
    let (st, _, b) = send(&srv, Method::DELETE, "/api/v1/login", &[], None).await;
    rocketchat(
        "DELETE /api/v1/login",
        st,
        &b,
        StatusCode::METHOD_NOT_ALLOWED,
    );
    let (st, _, b) = send(&srv, Method::GET, "/api/v10/login", &[], None).await;
    native("/api/v10", st, &b, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test]
async fn the_rate_limit_answers_in_the_faces_format() {
    let srv = TestServer::start_with(Options {
        rate_limit: Some(1),
        ..Default::default()
    })
    .await;
    // The bucket holds 2 requests and refills one a second: 20 in a row cannot all pass.
    for (path, method) in [
        ("/api/v1/me", Method::GET),
        ("/v1/message/send", Method::POST),
        ("/api/im/health", Method::GET),
    ] {
        let mut limited = None;
        for _ in 0..20 {
            let got = send(&srv, method.clone(), path, &[], None).await;
            if got.0 == StatusCode::TOO_MANY_REQUESTS {
                limited = Some(got);
                break;
            }
        }
        let (st, headers, b) = limited.unwrap_or_else(|| panic!("{path} was never limited"));
        assert!(
            headers.get("retry-after").is_some(),
            "{path}: no Retry-After"
        );
        match path {
            "/api/v1/me" => rocketchat(path, st, &b, StatusCode::TOO_MANY_REQUESTS),
            "/v1/message/send" => tsdd(path, st, &b, StatusCode::TOO_MANY_REQUESTS),
            _ => native(path, st, &b, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
        }
    }
}

#[tokio::test]
async fn invalid_utf8_in_a_path_parameter_is_a_400_in_the_faces_format() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let token = alice.token.clone().unwrap();
    let bearer = format!("Bearer {token}");
    let auth: &[(&str, &[u8])] = &[("authorization", bearer.as_bytes())];
    for (method, path) in [
        (Method::GET, "/api/im/conversations/%FF"),
        (Method::GET, "/api/im/users/%C3%28"),
        (Method::DELETE, "/api/im/messages/c1/%FF%FE"),
        (Method::GET, "/api/im/users/by-username/%80"),
    ] {
        let (st, _, b) = send(&srv, method.clone(), path, auth, None).await;
        native(
            &format!("{method} {path}"),
            st,
            &b,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    let tsdd_auth: &[(&str, &[u8])] = &[("token", token.as_bytes())];
    for (method, path) in [
        (Method::PUT, "/v1/users/%FF/setting"),
        (Method::DELETE, "/v1/conversations/%FF/1"),
        (Method::POST, "/v1/message/syncack/%FF"),
    ] {
        let (st, _, b) = send(&srv, method.clone(), path, tsdd_auth, Some(b"{}".to_vec())).await;
        tsdd(&format!("{method} {path}"), st, &b, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn tsdd_answers_413_for_a_body_over_the_limit() {
    let srv = TestServer::start_with(Options {
        max_body_bytes: Some(1024),
        ..Default::default()
    })
    .await;
    let alice = srv.user("alice").await;
    let token = alice.token.clone().unwrap();
    let big = format!(
        r#"{{"channel_id":"x","channel_type":1,"payload":{{"type":1,"content":"{}"}}}}"#,
        "x".repeat(4096)
    );
    for path in ["/v1/message/send", "/v1/user/login"] {
        let (st, _, b) = send(
            &srv,
            Method::POST,
            path,
            &[
                ("token", token.as_bytes()),
                ("content-type", b"application/json"),
            ],
            Some(big.clone().into_bytes()),
        )
        .await;
        tsdd(path, st, &b, StatusCode::PAYLOAD_TOO_LARGE);
    }
}

#[tokio::test]
async fn bad_bodies_queries_and_upgrades_answer_in_the_faces_format() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let token = alice.token.clone().unwrap();
    let bearer = format!("Bearer {token}");
    let nat: &[(&str, &[u8])] = &[
        ("authorization", bearer.as_bytes()),
        ("content-type", b"text/plain"),
    ];
    for body in [
        &b"not json"[..],
        b"{\"content\": 5}",
        b"\xff\xfe",
        b"[[[[",
        b"",
    ] {
        let (st, _, b) = send(
            &srv,
            Method::POST,
            "/api/im/groups",
            nat,
            Some(body.to_vec()),
        )
        .await;
        native(
            "bad group body",
            st,
            &b,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        );
    }
    let (st, _, b) = send(&srv, Method::GET, "/api/im/sync?since=abc", nat, None).await;
    native(
        "bad since",
        st,
        &b,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAM",
    );
    let (st, _, b) = send(
        &srv,
        Method::GET,
        "/api/im/conversations?limit=%FF",
        nat,
        None,
    )
    .await;
    assert!(st.is_client_error() || st.is_success(), "{st} {b}");
    if !st.is_success() {
        native(
            "bad limit",
            st,
            &b,
            st,
            b["error"]["code"].as_str().unwrap_or("?"),
        );
    }
    // A plain GET of the WebSocket endpoint is not an upgrade.
    let (st, _, b) = send(&srv, Method::GET, &format!("/ws?token={token}"), &[], None).await;
    assert!(st.is_client_error(), "GET /ws: {st} {b}");
    assert_eq!(b["ok"], false, "GET /ws: {b}");
    assert!(b["error"]["code"].is_string(), "GET /ws: {b}");

    let tsdd_h: &[(&str, &[u8])] = &[("token", token.as_bytes())];
    for body in [
        &b"not json"[..],
        b"{\"channel_id\": []}",
        b"\xff",
        b"9999999999999999999999",
    ] {
        let (st, _, b) = send(
            &srv,
            Method::POST,
            "/v1/message/send",
            tsdd_h,
            Some(body.to_vec()),
        )
        .await;
        tsdd("bad tsdd body", st, &b, StatusCode::BAD_REQUEST);
    }
    let rc_h: &[(&str, &[u8])] = &[
        ("x-user-id", alice.user_id.as_bytes()),
        ("x-auth-token", token.as_bytes()),
    ];
    for body in [&b"not json"[..], b"{\"roomId\": {}}", b"\xff"] {
        let (st, _, b) = send(
            &srv,
            Method::POST,
            "/api/v1/chat.postMessage",
            rc_h,
            Some(body.to_vec()),
        )
        .await;
        rocketchat("bad rc body", st, &b, StatusCode::BAD_REQUEST);
    }
    let (st, _, b) = send(
        &srv,
        Method::GET,
        "/api/v1/chat.syncMessages?%FF=%FF&&=",
        rc_h,
        None,
    )
    .await;
    rocketchat("bad rc query", st, &b, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_unreadable_last_event_id_is_refused_not_replayed_from_zero() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let token = alice.token.clone().unwrap();
    let path = format!("/api/im/sync/stream?token={token}");
    for id in [&b"\xff\xfe"[..], b"abc", b"-1", b"1.5", b"12\xe9"] {
        let (st, _, b) = send(&srv, Method::GET, &path, &[("last-event-id", id)], None).await;
        native(
            &format!("Last-Event-ID {id:?}"),
            st,
            &b,
            StatusCode::BAD_REQUEST,
            "INVALID_PARAM",
        );
    }
}

/// Log lines written by the server in this test binary.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        log
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_in_urls_are_not_logged() {
    let log = captured();
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let token = alice.token.clone().unwrap();
    let http = reqwest::Client::new();
    for path in [
        format!("/api/im/sync/stream?token={token}&since=0"),
        format!("/sse?since=0&token={token}"),
        format!("/api/im/me?access_token={token}"),
        format!("/api/v1/me?authToken={token}&resume={token}"),
        format!("/v1/message/send?password={token}"),
    ] {
        let resp = http
            .get(format!("{}{path}", srv.base))
            .send()
            .await
            .unwrap();
        // Streams stay open; their request line was logged when the response began.
        drop(resp);
    }
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        text.contains("/api/im/sync/stream?token=[redacted]&since=0"),
        "the request was not logged: {text}"
    );
    assert!(
        text.contains("/v1/message/send?password=[redacted]"),
        "{text}"
    );
    assert!(!text.contains(&token), "a token reached the log:\n{text}");
}

/// PostgreSQL's text cannot hold NUL: such input is the client's error there (SQLite stores it).
#[tokio::test]
async fn a_nul_character_in_text_is_never_a_server_error() {
    let srv = TestServer::start().await;
    let alice = srv.user("alice").await;
    let token = alice.token.clone().unwrap();
    let g = alice.group("g", &[]).await;
    let bearer = format!("Bearer {token}");
    let auth: &[(&str, &[u8])] = &[
        ("authorization", bearer.as_bytes()),
        ("token", token.as_bytes()),
        ("x-user-id", alice.user_id.as_bytes()),
        ("x-auth-token", token.as_bytes()),
        ("content-type", b"application/json"),
    ];
    let nul = |v: Value| Some(v.to_string().into_bytes());
    for (method, path, body) in [
        (
            Method::POST,
            format!("/api/im/messages/{g}"),
            nul(json!({"content": "a\u{0}b"})),
        ),
        (
            Method::POST,
            "/api/im/groups".into(),
            nul(json!({"title": "a\u{0}b"})),
        ),
        (
            Method::PATCH,
            "/api/im/me".into(),
            nul(json!({"displayName": "a\u{0}b"})),
        ),
        (Method::GET, "/api/im/users/by-username/a%00b".into(), None),
        (Method::GET, "/api/im/conversations/a%00b".into(), None),
        (
            Method::POST,
            "/v1/message/send".into(),
            nul(
                json!({"channel_id": "a\u{0}b", "channel_type": 2, "payload": {"type": 1, "content": "x"}}),
            ),
        ),
        (
            Method::POST,
            "/api/v1/chat.postMessage".into(),
            nul(json!({"roomId": "a\u{0}b", "text": "x"})),
        ),
        (
            Method::GET,
            "/api/v1/chat.getMessage?msgId=a%00b".into(),
            None,
        ),
    ] {
        let what = format!("{method} {path}");
        let (st, _, b) = send(&srv, method, &path, auth, body).await;
        assert!(!st.is_server_error(), "{what}: {st} {b}");
        if st.is_client_error() {
            match path.as_str() {
                p if p.starts_with("/api/v1/") => rocketchat(&what, st, &b, st),
                p if p.starts_with("/v1/") => tsdd(&what, st, &b, st),
                _ => native(
                    &what,
                    st,
                    &b,
                    st,
                    b["error"]["code"].as_str().unwrap_or("?"),
                ),
            }
        }
    }
}
