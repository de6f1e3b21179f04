//! Hostile input: seeded random requests against every route of every face (the native routes
//! from `/openapi.json`, the realtime endpoints, the Rocket.Chat and TangSengDaoDao routes) with
//! random methods, path parameters (percent-encoded invalid UTF-8 among them), query strings,
//! headers and bodies (JSON of the wrong types, huge numbers, deep nesting, not JSON, over the
//! size limit), with and without valid credentials, then random WebSocket frames to `/ws`.
//!
//! Checked: no answer is a 5xx, every error under a face's prefix is in that face's format, and
//! the server still answers `/healthz` at the end. `HOSTILE_SEED` replays a run (the seed is
//! printed on failure) and `HOSTILE_CASES` sets how many requests it makes.

mod common;

use common::{Api, Options, TestServer};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The body limit the server runs with: small, so that over-limit bodies are cheap to send.
const MAX_BODY: usize = 16 * 1024;
/// Requests in flight at once.
const PARALLEL: usize = 8;
/// Requests between two fresh sets of accounts (random calls log out and delete accounts).
const EPOCH: usize = 250;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Face {
    Native,
    RocketChat,
    Tsdd,
}

/// The face a path belongs to, by whole segments, as the server decides it.
fn face_of(path: &str) -> Face {
    let path = path.split('?').next().unwrap_or(path);
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if under("/api/v1") || under("/websocket") {
        Face::RocketChat
    } else if under("/v1") {
        Face::Tsdd
    } else {
        Face::Native
    }
}

/// A route: its methods and its path template (`{name}` for a parameter).
#[derive(Debug, Clone)]
struct Route {
    methods: Vec<Method>,
    path: String,
}

fn route(methods: &[&str], path: &str) -> Route {
    Route {
        methods: methods
            .iter()
            .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
            .collect(),
        path: path.to_owned(),
    }
}

/// Rocket.Chat's routes (the face's router).
fn rocketchat_routes() -> Vec<Route> {
    let post = [
        "login",
        "logout",
        "chat.postMessage",
        "chat.sendMessage",
        "chat.update",
        "chat.delete",
        "chat.react",
        "im.create",
        "channels.create",
        "groups.create",
        "channels.join",
        "channels.invite",
        "groups.invite",
        "channels.kick",
        "groups.kick",
    ];
    let get = [
        "logout",
        "me",
        "chat.getMessage",
        "chat.getThreadMessages",
        "chat.syncMessages",
        "chat.syncThreadMessages",
        "rooms.get",
        "subscriptions.get",
    ];
    post.iter()
        .map(|n| route(&["POST"], &format!("/api/v1/{n}")))
        .chain(get.iter().map(|n| route(&["GET"], &format!("/api/v1/{n}"))))
        .collect()
}

/// TangSengDaoDao's routes (the face's router and the REST around the WuKongIM socket).
fn tsdd_routes() -> Vec<Route> {
    [
        ("POST", "/v1/user/login"),
        ("PUT", "/v1/users/{uid}/setting"),
        ("PUT", "/v1/groups/{group_no}/setting"),
        ("POST", "/v1/conversation/sync"),
        ("POST", "/v1/conversation/syncack"),
        ("POST", "/v1/conversation/extra/sync"),
        (
            "POST",
            "/v1/conversations/{channel_id}/{channel_type}/extra",
        ),
        ("DELETE", "/v1/conversations/{channel_id}/{channel_type}"),
        ("PUT", "/v1/coversation/clearUnread"),
        ("POST", "/v1/message/send"),
        ("POST", "/v1/message/channel/sync"),
        ("POST", "/v1/message/extra/sync"),
        ("POST", "/v1/message/revoke"),
        ("DELETE", "/v1/message"),
        ("DELETE", "/v1/message/mutual"),
        ("POST", "/v1/message/edit"),
        ("POST", "/v1/message/offset"),
        ("POST", "/v1/message/readed"),
        ("POST", "/v1/message/sync"),
        ("POST", "/v1/message/syncack/{seq}"),
        ("POST", "/v1/reaction/sync"),
        ("POST", "/v1/reactions"),
        ("GET", "/v1/users/{uid}"),
        ("GET", "/v1/users/{uid}/im"),
        ("GET", "/v1/channels/{id}/{channel_type}"),
        ("GET", "/v1/common/appconfig"),
        ("POST", "/v1/friend/sync"),
        ("GET", "/v1/group/my"),
        ("POST", "/v1/message/reminder/sync"),
        ("GET", "/v1/wukongim/ws"),
    ]
    .iter()
    .map(|(m, p)| route(&[m], p))
    .collect()
}

/// The native routes from the OpenAPI document, the realtime endpoints and the server's own,
/// plus the field names of the native bodies (for bodies that are nearly right).
async fn native_routes(srv: &TestServer) -> (Vec<Route>, Vec<String>) {
    let doc: Value = reqwest::get(format!("{}/openapi.json", srv.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("openapi paths") {
        let methods: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
            .map(String::as_str)
            .collect();
        let upper: Vec<String> = methods.iter().map(|m| m.to_uppercase()).collect();
        let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
        routes.push(route(&upper, path));
    }
    assert!(
        routes.len() > 20,
        "the OpenAPI document lists the native routes"
    );
    for (m, p) in [
        ("GET", "/ws"),
        ("GET", "/websocket"),
        ("GET", "/sse"),
        ("GET", "/api/im/sync/stream"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ] {
        routes.push(route(&[m], p));
    }
    let mut fields = Vec::new();
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for s in schemas.values() {
            if let Some(props) = s["properties"].as_object() {
                fields.extend(props.keys().cloned());
            }
        }
    }
    (routes, fields)
}

/// Field names of the other faces' bodies and queries.
const OTHER_FIELDS: &[&str] = &[
    "user",
    "password",
    "username",
    "resume",
    "roomId",
    "rid",
    "channel",
    "text",
    "msg",
    "msgId",
    "messageId",
    "emoji",
    "shouldReact",
    "tmid",
    "name",
    "members",
    "readOnly",
    "userId",
    "lastUpdate",
    "updatedSince",
    "count",
    "offset",
    "next",
    "previous",
    "type",
    "channel_id",
    "channel_type",
    "payload",
    "content",
    "client_msg_no",
    "message_id",
    "message_seq",
    "message_ids",
    "version",
    "last_msg_seqs",
    "msg_count",
    "device_uuid",
    "start_message_seq",
    "end_message_seq",
    "limit",
    "pull_mode",
    "extra",
    "unread",
    "since",
    "seq",
    "cmd_version",
    "mute",
    "top",
    "remark",
    "stick",
    "draft",
    "keep_message_seq",
    "message_extra_version",
];

/// Everything a case may put in a path parameter that names something real.
#[derive(Clone)]
struct World {
    token: String,
    /// Valid credentials for the calls that end them (logout, refresh, deleting the account),
    /// so that the rest of an epoch keeps a working token.
    spare_token: String,
    spare_id: String,
    user_id: String,
    username: String,
    peer_id: String,
    peer_username: String,
    group_id: String,
    direct_id: String,
    message_id: String,
    seq: i64,
}

async fn new_world(srv: &TestServer, epoch: usize) -> World {
    let me = srv.user(&format!("hostile{epoch}")).await;
    let peer = srv.user(&format!("peer{epoch}")).await;
    let spare = srv.user(&format!("spare{epoch}")).await;
    let group_id = me.group(&format!("room{epoch}"), &[&peer.username]).await;
    let sent = me.send(&group_id, "hello").await;
    let message_id = sent["id"]
        .as_str()
        .or_else(|| sent["message"]["id"].as_str())
        .unwrap_or("m0")
        .to_owned();
    let (st, direct) = me
        .post(
            &format!("/api/im/direct/{}/messages", peer.user_id),
            json!({"content": "hi"}),
        )
        .await;
    assert!(st.is_success(), "{direct}");
    let direct_id = direct["data"]["conversationId"]
        .as_str()
        .unwrap_or("d0")
        .to_owned();
    World {
        token: me.token.clone().unwrap(),
        spare_token: spare.token.clone().unwrap(),
        spare_id: spare.user_id.clone(),
        user_id: me.user_id.clone(),
        username: me.username.clone(),
        peer_id: peer.user_id.clone(),
        peer_username: peer.username.clone(),
        group_id,
        direct_id,
        message_id,
        seq: 1,
    }
}

fn pick<T: Clone>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())].clone()
}

/// Percent-encodes everything but the unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn random_text(rng: &mut StdRng, max: usize) -> String {
    let len = rng.random_range(0..=max);
    (0..len)
        .map(|_| match rng.random_range(0..10) {
            0 => char::from_u32(rng.random_range(0x80..0x3000)).unwrap_or('é'),
            1 => pick(
                rng,
                &['\0', '\n', '"', '\\', '/', '%', '&', '=', '?', '#', ' '],
            ),
            2 => pick(rng, &['😀', '中', 'ß', '\u{202e}', '\u{feff}']),
            _ => rng.random_range(b'a'..=b'z') as char,
        })
        .collect()
}

/// A path parameter as it goes into the URL (already encoded).
fn path_param(rng: &mut StdRng, name: &str, w: &World) -> String {
    let real = match name {
        "id" | "conversation_id" | "conversationId" | "group_no" | "channel_id" => {
            pick(rng, &[&w.group_id, &w.direct_id]).to_string()
        }
        "user_id" | "userId" | "uid" => pick(rng, &[&w.user_id, &w.peer_id]).to_string(),
        "username" => pick(rng, &[&w.username, &w.peer_username]).to_string(),
        "message_id" | "messageId" => w.message_id.clone(),
        "channel_type" => pick(rng, &["1", "2"]).to_string(),
        "seq" => w.seq.to_string(),
        _ => w.group_id.clone(),
    };
    match rng.random_range(0..12) {
        0..=4 => encode(&real),
        5 => pick(
            rng,
            &[
                "%FF",
                "%C3%28",
                "%80abc",
                "a%FE%FFb",
                "%ED%A0%80",
                "%F0%28%8C%BC",
            ],
        )
        .to_string(),
        6 => pick(
            rng,
            &[
                "0",
                "-1",
                "99999999999999999999999",
                "1e309",
                "NaN",
                "null",
                "true",
                "%00",
                "..",
                "%2E%2E",
                "%2F",
            ],
        )
        .to_string(),
        7 => encode(&"x".repeat(rng.random_range(200..5000))),
        8 => "%".to_owned() + &encode(&real),
        _ => encode(&random_text(rng, 20)),
    }
}

fn fill_path(rng: &mut StdRng, template: &str, w: &World) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        out.push_str(&path_param(rng, &rest[start + 1..end], w));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    // Unknown sub-paths and odd shapes of known ones.
    match rng.random_range(0..20) {
        0 => out.push_str("/extra"),
        1 => out.push('/'),
        2 => out = out.replacen('/', "//", 2),
        3 => out = out.to_uppercase(),
        4 => out.push_str(&format!("/{}", encode(&random_text(rng, 8)))),
        _ => {}
    }
    out
}

fn query_value(rng: &mut StdRng, w: &World) -> String {
    match rng.random_range(0..14) {
        0 => rng.random_range(-5i64..100).to_string(),
        1 => pick(
            rng,
            &["-1", "0", "9223372036854775808", "1e400", "1.5", "0x10", ""],
        )
        .to_string(),
        2 => pick(rng, &["%FF", "%C3%28", "%E2%82", "a%00b"]).to_string(),
        3 => encode(&w.token),
        4 => encode(&w.group_id),
        5 => encode(&w.user_id),
        6 => encode(r#"{"$gt":""}"#),
        7 => encode("2024-02-30T25:61:00Z"),
        8 => encode("[1,2,3]"),
        9 => "x".repeat(rng.random_range(100..3000)),
        _ => encode(&random_text(rng, 12)),
    }
}

fn query(rng: &mut StdRng, w: &World, fields: &[String]) -> String {
    if rng.random_bool(0.3) {
        return String::new();
    }
    if rng.random_bool(0.05) {
        return pick(
            rng,
            &[
                "?%",
                "?&&&==",
                "?a=%FF%FE",
                "?=",
                "?%ZZ=1",
                "?a[=1",
                "?token",
            ],
        )
        .to_string();
    }
    let n = rng.random_range(1..5);
    let mut parts = Vec::new();
    for _ in 0..n {
        let key = match rng.random_range(0..8) {
            0..=3 => pick(rng, fields).clone(),
            4 => pick(
                rng,
                &[
                    "since", "limit", "before", "after", "token", "cursor", "query",
                ],
            )
            .to_string(),
            5 => "fields".to_owned(),
            _ => encode(&random_text(rng, 6)),
        };
        let key = if rng.random_bool(0.1) {
            format!("{key}[]")
        } else {
            key
        };
        parts.push(format!("{key}={}", query_value(rng, w)));
    }
    format!("?{}", parts.join("&"))
}

fn random_json(rng: &mut StdRng, depth: usize, fields: &[String]) -> Value {
    let leaf = depth >= 4 || rng.random_bool(0.4);
    match rng.random_range(0..if leaf { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => match rng.random_range(0..6) {
            0 => json!(i64::MAX),
            1 => json!(i64::MIN),
            2 => json!(u64::MAX),
            3 => json!(1.7976931348623157e308),
            4 => json!(-0.5),
            _ => json!(rng.random_range(-3i64..1000)),
        },
        3 => Value::String(random_text(rng, 30)),
        4 => Value::String("y".repeat(rng.random_range(0..2000))),
        5 => Value::String(pick(rng, &["", " ", "1", "2", "true", "null", "-1"]).to_string()),
        6 => Value::Array(
            (0..rng.random_range(0..5))
                .map(|_| random_json(rng, depth + 1, fields))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.random_range(0..7) {
                let key = if rng.random_bool(0.8) {
                    pick(rng, fields).clone()
                } else {
                    random_text(rng, 8)
                };
                m.insert(key, random_json(rng, depth + 1, fields));
            }
            Value::Object(m)
        }
    }
}

/// A body, sometimes over the server's limit.
fn body(rng: &mut StdRng, fields: &[String]) -> Option<Vec<u8>> {
    let b: Vec<u8> = match rng.random_range(0..20) {
        0..=2 => return None,
        3..=10 => {
            let mut v = random_json(rng, 0, fields);
            if !v.is_object() && rng.random_bool(0.6) {
                let mut m = Map::new();
                m.insert(pick(rng, fields).clone(), v);
                v = Value::Object(m);
            }
            serde_json::to_vec(&v).unwrap()
        }
        11 => {
            let n = rng.random_range(100..20_000);
            let (open, close) = if rng.random_bool(0.5) {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            format!("{}1{}", open.repeat(n), close.repeat(n)).into_bytes()
        }
        12 => pick(
            rng,
            &[
                &b"1e999999"[..],
                b"123456789012345678901234567890123456789",
                b"{\"limit\": 1e400}",
                b"{\"since\": -99999999999999999999}",
                b"-",
                b"{\"a\":1,}",
                b"{\"content\":\"\\ud800\"}",
            ],
        )
        .to_vec(),
        13 => (0..rng.random_range(0..200))
            .map(|_| rng.random())
            .collect(),
        14 => b"\xff\xfe{\"a\":1}".to_vec(),
        15 => pick(
            rng,
            &[
                &b""[..],
                b"   ",
                b"<xml/>",
                b"a=b&c=d",
                b"null",
                b"[]",
                b"\"s\"",
            ],
        )
        .to_vec(),
        _ => {
            let n = MAX_BODY + rng.random_range(1..3 * MAX_BODY);
            let s = json!({ "content": "z".repeat(n), "text": "t", "msg": "m" });
            serde_json::to_vec(&s).unwrap()
        }
    };
    Some(b)
}

/// One request, fully decided before it is sent.
struct Case {
    method: Method,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    over_limit: bool,
}

impl Case {
    fn describe(&self) -> String {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v)))
            .collect();
        let body = self.body.as_ref().map(|b| {
            let shown = String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned();
            format!("{} bytes: {shown:?}", b.len())
        });
        format!(
            "{} {} headers {headers:?} body {body:?}",
            self.method, self.path
        )
    }
}

fn case(rng: &mut StdRng, routes: &[Route], fields: &[String], w: &World) -> Case {
    let r = pick(rng, routes);
    let method = if rng.random_bool(0.8) {
        pick(rng, &r.methods).clone()
    } else {
        let m = pick(
            rng,
            &[
                "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND",
                "FOO",
            ],
        );
        Method::from_bytes(m.as_bytes()).unwrap()
    };
    let path = format!("{}{}", fill_path(rng, &r.path, w), query(rng, w, fields));
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    let mut h = |k: &str, v: &[u8]| headers.push((k.to_owned(), v.to_vec()));
    // Credentials: none, valid ones in each face's way, or broken ones.
    match rng.random_range(0..12) {
        0..=1 => {}
        2..=7 => {
            let ends_session = ["logout", "refresh"].iter().any(|p| r.path.contains(p))
                || (r.path == "/api/im/me" && method == Method::DELETE);
            let (token, id) = if ends_session {
                (&w.spare_token, &w.spare_id)
            } else {
                (&w.token, &w.user_id)
            };
            h("authorization", format!("Bearer {token}").as_bytes());
            h("x-user-id", id.as_bytes());
            h("x-auth-token", token.as_bytes());
            h("token", token.as_bytes());
        }
        8 => h("authorization", b"Bearer \xff\xfe"),
        9 => h("token", b"\xc3\x28"),
        10 => h(
            "authorization",
            pick(rng, &[&b"Basic YTpi"[..], b"Bearer", b"bearer  x"]),
        ),
        _ => {
            h("x-user-id", w.peer_id.as_bytes());
            h("x-auth-token", format!("{}x", w.token).as_bytes());
        }
    }
    match rng.random_range(0..8) {
        0 => {}
        1 => h("content-type", b"text/plain"),
        2 => h("content-type", b"application/x-www-form-urlencoded"),
        3 => h("content-type", b"application/json; charset=\xff"),
        4 => h("content-type", b"multipart/form-data; boundary=x"),
        _ => h("content-type", b"application/json"),
    }
    if rng.random_bool(0.1) {
        let id: &[u8] = pick(
            rng,
            &[&b"\xff"[..], b"abc", b"-5", b"3", b"99999999999999999999"],
        );
        h("last-event-id", id);
    }
    if rng.random_bool(0.1) {
        h(
            pick(
                rng,
                &[
                    "accept",
                    "x-request-id",
                    "x-forwarded-for",
                    "cookie",
                    "origin",
                ],
            ),
            pick(
                rng,
                &[&b"\xff\xfe"[..], b"*/*", b"", b"a\tb", b"1.2.3.4, garbage"],
            ),
        );
    }
    let body = body(rng, fields);
    let over_limit = body.as_ref().is_some_and(|b| b.len() > MAX_BODY);
    Case {
        method,
        path,
        headers,
        body,
        over_limit,
    }
}

/// Checks an error body against the format of `face`; answers what is wrong with it.
fn face_format_problem(face: Face, status: StatusCode, body: &Value) -> Option<String> {
    let ok = match face {
        Face::Native => {
            body["ok"] == false
                && body["error"]["code"].is_string()
                && body["error"]["message"].is_string()
        }
        Face::RocketChat => body["success"] == false && body["error"].is_string(),
        Face::Tsdd => {
            body["msg"].is_string()
                && (status == StatusCode::UNAUTHORIZED || body["status"] == status.as_u16())
        }
    };
    (!ok).then(|| format!("not the {face:?} error format"))
}

/// Sends a case; answers the status (none without an answer) and a problem with the answer, if
/// any.
async fn run(http: &reqwest::Client, base: &str, c: &Case) -> (Option<StatusCode>, Option<String>) {
    match check(http, base, c).await {
        Ok(status) => (status, None),
        Err((status, problem)) => (status, Some(problem)),
    }
}

type Checked = Result<Option<StatusCode>, (Option<StatusCode>, String)>;

async fn check(http: &reqwest::Client, base: &str, c: &Case) -> Checked {
    let mut req = http.request(c.method.clone(), format!("{base}{}", c.path));
    for (k, v) in &c.headers {
        req = req.header(k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
    }
    if let Some(b) = &c.body {
        req = req.body(b.clone());
    }
    let url = req
        .try_clone()
        .and_then(|r| r.build().ok())
        .map(|r| r.url().clone())
        .expect("a request that can be built");
    let resp = match req.send().await {
        Ok(r) => r,
        // The server may answer 413 and close before the whole body is sent.
        Err(_) if c.over_limit => return Ok(None),
        Err(e) => return Err((None, format!("no answer: {e:?}"))),
    };
    let status = resp.status();
    let event_stream = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if status.is_server_error() {
        let text = resp.text().await.unwrap_or_default();
        return Err((Some(status), format!("answered {status}: {text}")));
    }
    // Streams stay open, and a HEAD has no body.
    if event_stream || c.method == Method::HEAD || url.path() == "/metrics" {
        return Ok(Some(status));
    }
    let fail = |p: String| Err((Some(status), p));
    let text = match tokio::time::timeout(Duration::from_secs(10), resp.text()).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return fail(format!("answered {status} and then failed: {e}")),
        Err(_) => return fail(format!("answered {status} and never finished the body")),
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return fail(format!("answered {status} with a non-JSON body: {text:?}"));
    };
    // A success's shape is each face's own tests' business.
    if !status.is_client_error() {
        return Ok(Some(status));
    }
    // As sent: the client resolved any `..` in the path.
    match face_format_problem(face_of(url.path()), status, &v) {
        Some(p) => fail(format!("answered {status} {text}: {p}")),
        None => Ok(Some(status)),
    }
}

/// Panics on any thread but a test's own (each named after its test, all `random_…`). A server
/// task that panics answers nothing and fails no request: a spawned stream or socket task just
/// ends, so only the panic itself tells.
fn server_panics() -> &'static AtomicUsize {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if !thread.name().unwrap_or_default().starts_with("random_") {
                COUNT.fetch_add(1, Ordering::Relaxed);
            }
            previous(info);
        }));
    });
    &COUNT
}

fn seed() -> u64 {
    std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

fn cases() -> usize {
    std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_to_every_route_of_every_face() {
    let seed = seed();
    let total = cases();
    eprintln!("hostile: HOSTILE_SEED={seed} HOSTILE_CASES={total}");
    let panics = server_panics();
    let mut rng = StdRng::seed_from_u64(seed);
    let srv = TestServer::start_with(Options {
        max_body_bytes: Some(MAX_BODY),
        ..Default::default()
    })
    .await;
    let (mut routes, mut fields) = native_routes(&srv).await;
    routes.extend(rocketchat_routes());
    routes.extend(tsdd_routes());
    fields.extend(OTHER_FIELDS.iter().map(|s| s.to_string()));
    // Pooled keep-alive connections, as real clients use: an answer that ends its connection
    // must say so (`Connection: close`), or the next request sent on it fails.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut problems = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    let mut done = 0;
    let mut epoch = 0;
    while done < total {
        let w = new_world(&srv, epoch).await;
        epoch += 1;
        let n = EPOCH.min(total - done);
        let batch: Vec<Case> = (0..n)
            .map(|_| case(&mut rng, &routes, &fields, &w))
            .collect();
        let found: Vec<_> = futures_util::stream::iter(batch.iter())
            .map(|c| run(&http, &srv.base, c))
            .buffered(PARALLEL)
            .collect()
            .await;
        for (c, (status, p)) in batch.iter().zip(found) {
            *statuses.entry(status.map(|s| s.as_u16())).or_insert(0) += 1;
            if let Some(p) = p {
                problems.push(format!("{}\n    {p}", c.describe()));
            }
        }
        done += n;
    }
    eprintln!("hostile: answers by status: {statuses:?}");
    assert_eq!(
        panics.load(Ordering::Relaxed),
        0,
        "HOSTILE_SEED={seed}: the server panicked (the message is above)"
    );
    let (st, _) = srv.client().get("/healthz").await;
    assert_eq!(
        st,
        StatusCode::OK,
        "HOSTILE_SEED={seed}: /healthz after the run"
    );
    // Not everything was turned away at the door.
    let succeeded: usize = statuses
        .iter()
        .filter(|(s, _)| s.is_some_and(|s| (200..300).contains(&s)))
        .map(|(_, n)| n)
        .sum();
    assert!(
        total < 500 || succeeded * 50 > total,
        "HOSTILE_SEED={seed}: only {succeeded} of {total} requests succeeded: {statuses:?}"
    );
    assert!(
        problems.is_empty(),
        "HOSTILE_SEED={seed}: {} of {total} requests were answered wrongly; the first:\n{}",
        problems.len(),
        problems
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn ws_frame(rng: &mut StdRng, w: &World, fields: &[String]) -> Message {
    let types = [
        "ping",
        "conversation.join",
        "message.send",
        "typing.start",
        "typing.stop",
        "presence.update",
        "",
        "nope",
    ];
    match rng.random_range(0..10) {
        0..=4 => {
            let mut payload = random_json(rng, 1, fields);
            if rng.random_bool(0.5) {
                payload = json!({
                    "conversationId": pick(rng, &[&w.group_id, &w.direct_id, &"x".to_owned()]),
                    "content": random_json(rng, 2, fields),
                    "type": random_json(rng, 3, fields),
                });
            }
            let frame = json!({
                "type": pick(rng, &types),
                "payload": payload,
                "requestId": random_json(rng, 3, fields),
            });
            Message::text(frame.to_string())
        }
        5 => Message::text(random_json(rng, 0, fields).to_string()),
        6 => Message::text(random_text(rng, 200)),
        7 => Message::binary(
            (0..rng.random_range(0..500))
                .map(|_| rng.random::<u8>())
                .collect::<Vec<u8>>(),
        ),
        8 => Message::text(format!("{}1{}", "[".repeat(5000), "]".repeat(5000))),
        _ => Message::Ping(vec![1, 2, 3].into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_websocket_frames() {
    let seed = seed();
    let total = (cases() / 10).max(50);
    eprintln!("hostile: HOSTILE_SEED={seed} HOSTILE_CASES={}", total * 10);
    let panics = server_panics();
    let mut rng = StdRng::seed_from_u64(seed);
    let srv = TestServer::start().await;
    let (_, mut fields) = native_routes(&srv).await;
    fields.extend(OTHER_FIELDS.iter().map(|s| s.to_string()));
    let w = new_world(&srv, 0).await;

    // Handshakes that must be refused in the native format, never with a 5xx.
    for query in [
        String::new(),
        "?token=".to_owned(),
        "?token=nope".to_owned(),
        "?token=%FF".to_owned(),
        format!("?token={}&since=-1", w.token),
        format!("?token={}&since=abc", w.token),
        format!("?token={}&since=99999999999999999999", w.token),
    ] {
        let url = format!("ws://{}/ws{query}", srv.addr);
        match tokio_tungstenite::connect_async(&url).await {
            // A token is checked after the upgrade: the answer is a close frame.
            Ok((mut ws, _)) => {
                let first = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
                assert!(
                    matches!(first, Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_)))),
                    "HOSTILE_SEED={seed}: {url} was accepted: {first:?}"
                );
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status();
                assert!(
                    status.is_client_error(),
                    "HOSTILE_SEED={seed}: {url}: {status}"
                );
                let body: Value =
                    serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
                        .unwrap_or(Value::Null);
                assert!(
                    face_format_problem(Face::Native, status, &body).is_none(),
                    "HOSTILE_SEED={seed}: {url}: {status} {body}"
                );
            }
            Err(e) => panic!("HOSTILE_SEED={seed}: {url}: {e}"),
        }
    }

    // Connections that send random frames; each reads what comes back as it goes.
    let mut sessions = 0;
    let mut sent = 0;
    while sent < total {
        let url = format!("ws://{}/ws?token={}", srv.addr, w.token);
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .unwrap_or_else(|e| panic!("HOSTILE_SEED={seed}: connect: {e}"));
        sessions += 1;
        let frames: Vec<Message> = (0..rng.random_range(5..40))
            .map(|_| ws_frame(&mut rng, &w, &fields))
            .collect();
        for f in frames {
            sent += 1;
            if ws.send(f).await.is_err() {
                break;
            }
            // Drain what is there without waiting for answers that need not come.
            while let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(5), ws.next()).await
            {
                match msg {
                    Ok(Message::Text(t)) => {
                        let v: Result<Value, _> = serde_json::from_str(&t);
                        assert!(v.is_ok(), "HOSTILE_SEED={seed}: a non-JSON text frame: {t}");
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        let _ = ws.close(None).await;
    }
    assert!(sessions > 0);
    assert_eq!(
        panics.load(Ordering::Relaxed),
        0,
        "HOSTILE_SEED={seed}: the server panicked (the message is above)"
    );
    let api = Api::new(&srv.base, None);
    let (st, _) = api.get("/healthz").await;
    assert_eq!(
        st,
        StatusCode::OK,
        "HOSTILE_SEED={seed}: /healthz after the frames"
    );
    // The account still works through the other faces.
    let (st, body) = Api::new(&srv.base, Some(w.token.clone()))
        .get("/api/im/me")
        .await;
    assert_eq!(st, StatusCode::OK, "HOSTILE_SEED={seed}: {body}");
}
