//! The Rocket.Chat face (docs/rocketchat.md): Rocket.Chat's own end-to-end cases for
//! `chat.syncMessages` / `chat.syncThreadMessages` (docs/rocketchat.md, "Compatibility tests")
//! with the same assertions, cursor paging over hundreds of changes in both directions, the
//! neighbouring endpoints, and the same data seen through the native face.

mod common;

use common::{postgres_url, schema_for, Options, TestServer};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// A Rocket.Chat REST client logged in as one user.
#[derive(Clone)]
struct Rc {
    http: Client,
    base: String,
    user_id: String,
    token: String,
    username: String,
}

fn now_ms() -> i64 {
    imsync_core::time::now_ms()
}

fn iso(ms: i64) -> String {
    imsync_core::time::rfc3339(ms)
}

/// Milliseconds of an ISO date the server rendered.
fn ms(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a date: {v}"));
    let (date, time) = s.split_once('T').unwrap();
    let p: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let t = time.trim_end_matches('Z');
    let (hms, frac) = t.split_once('.').unwrap();
    let h: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    let (y, m, d) = (p[0], p[1], p[2]);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    ((days * 24 + h[0]) * 60 + h[1]) * 60_000 + h[2] * 1000 + frac.parse::<i64>().unwrap()
}

impl Rc {
    async fn send(&self, req: reqwest::RequestBuilder, auth: bool) -> (StatusCode, Value) {
        let req = if auth {
            req.header("X-User-Id", &self.user_id)
                .header("X-Auth-Token", &self.token)
        } else {
            req
        };
        let resp = req.send().await.expect("request");
        let status = resp.status();
        if status == StatusCode::OK {
            let h = resp.headers();
            assert_eq!(h["cache-control"], "no-store");
            assert_eq!(h["pragma"], "no-cache");
            assert!(h["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"));
        }
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("answered {status} with a non-JSON body: {text:?}"));
        (status, v)
    }
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (StatusCode, Value) {
        let req = self
            .http
            .get(format!("{}/api/v1/{path}", self.base))
            .query(query);
        self.send(req, true).await
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let req = self
            .http
            .post(format!("{}/api/v1/{path}", self.base))
            .json(&body);
        self.send(req, true).await
    }
    async fn ok_get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let (s, b) = self.get(path, query).await;
        assert_eq!(s, StatusCode::OK, "{path} {query:?}: {b}");
        assert_eq!(b["success"], true, "{b}");
        b
    }
    async fn ok_post(&self, path: &str, body: Value) -> Value {
        let (s, b) = self.post(path, body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{path} {body}: {b}");
        assert_eq!(b["success"], true, "{b}");
        b
    }
    /// `sendSimpleMessage` of Rocket.Chat's tests.
    async fn send_simple(&self, rid: &str, text: &str, tmid: Option<&str>) -> Value {
        let mut message = json!({ "rid": rid, "text": text });
        if let Some(t) = tmid {
            message["tmid"] = json!(t);
        }
        self.ok_post("chat.sendMessage", json!({ "message": message }))
            .await["message"]
            .clone()
    }
    async fn delete_message(&self, rid: &str, id: &str) {
        self.ok_post("chat.delete", json!({ "roomId": rid, "msgId": id }))
            .await;
    }
    async fn channel(&self, name: &str) -> String {
        let b = self
            .ok_post("channels.create", json!({ "name": name }))
            .await;
        b["channel"]["_id"].as_str().unwrap().to_owned()
    }
    /// A native-face client acting as the same user, with the same token.
    fn native(&self) -> common::Api {
        let mut api = common::Api::new(&self.base, Some(self.token.clone()));
        api.user_id = self.user_id.clone();
        api.username = self.username.clone();
        api
    }
}

/// Registers a password account through the native face and logs in through this one.
async fn rc_user(base: &str, username: &str) -> Rc {
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let r = http
        .post(format!("{base}/api/im/users/register"))
        .json(
            &json!({ "username": username, "password": "secret-pass-1", "displayName": username }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let r = http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({ "user": username, "password": "secret-pass-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["status"], "success", "{b}");
    Rc {
        http,
        base: base.to_owned(),
        user_id: b["data"]["userId"].as_str().unwrap().to_owned(),
        token: b["data"]["authToken"].as_str().unwrap().to_owned(),
        username: username.to_owned(),
    }
}

fn assert_error(status: StatusCode, b: &Value, error_type: &str, includes: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["success"], false, "{b}");
    assert_eq!(b["errorType"], error_type, "{b}");
    assert!(
        b["error"].as_str().unwrap_or_default().contains(includes),
        "{b} should include {includes:?}"
    );
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|m| m["_id"].as_str().unwrap().to_owned())
        .collect()
}

/// An in-process server with a custom service configuration (for settings TestServer has no
/// option for).
struct CustomServer {
    base: String,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// A server whose new accounts join `GENERAL`, as by default.
async fn rc_server() -> TestServer {
    TestServer::start_with(Options {
        default_channel: Some("GENERAL".into()),
        ..Default::default()
    })
    .await
}

async fn custom_server(config: imsync_service::ServiceConfig) -> CustomServer {
    let dir = tempfile::tempdir().unwrap();
    let store = match postgres_url() {
        Some(url) => imsync_store::Store::open_postgres(&imsync_store::PgOptions {
            url,
            schema: Some(schema_for(dir.path())),
            pool_size: 4,
            statement_timeout: Duration::from_secs(30),
        })
        .await
        .unwrap(),
        None => imsync_store::Store::open(&imsync_store::StoreOptions {
            sqlite_path: dir.path().join("imsync.db"),
            durability: imsync_store::Durability::Normal,
        })
        .unwrap(),
    };
    let state = imsync_server::AppState::new(imsync_server::AppParts {
        service: imsync_service::Service::new(store, config),
        metrics: imsync_server::install_recorder(),
        config: Arc::new(imsync_server::ServerConfig::default()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = imsync_server::router(state);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = rx.await;
        })
        .await
        .ok();
    });
    CustomServer {
        base: format!("http://{addr}"),
        _dir: dir,
        _shutdown: tx,
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication (docs/rocketchat.md, "Authentication")

#[tokio::test]
async fn login_me_logout_and_the_401_body() {
    let s = rc_server().await;
    let admin = rc_user(&s.base, "rcadmin").await;
    let unauth = json!({
        "success": false,
        "error": "You must be logged in to do this.",
        "status": "error",
        "message": "You must be logged in to do this.",
    });

    // No headers, a bad token, or a token of another user: the same 401, before validation.
    let anon = Rc {
        token: String::new(),
        user_id: String::new(),
        ..admin.clone()
    };
    let r = anon
        .send(
            anon.http
                .get(format!("{}/api/v1/chat.syncMessages", s.base)),
            false,
        )
        .await;
    assert_eq!(r, (StatusCode::UNAUTHORIZED, unauth.clone()));
    let bad = Rc {
        token: "nope".into(),
        ..admin.clone()
    };
    assert_eq!(
        bad.get("chat.syncMessages", &[]).await,
        (StatusCode::UNAUTHORIZED, unauth.clone())
    );
    let other = rc_user(&s.base, "rcother").await;
    let mixed = Rc {
        user_id: other.user_id.clone(),
        ..admin.clone()
    };
    assert_eq!(
        mixed.get("me", &[]).await,
        (StatusCode::UNAUTHORIZED, unauth.clone())
    );
    assert_eq!(
        bad.post("chat.update", json!({"bogus": 1})).await,
        (StatusCode::UNAUTHORIZED, unauth.clone())
    );

    let me = admin.ok_get("me", &[]).await;
    assert_eq!(me["_id"], admin.user_id.as_str());
    assert_eq!(me["username"], "rcadmin");
    assert_eq!(me["services"]["password"]["exists"], true);
    assert_eq!(me["active"], true);

    // Login by `username`, failure bodies.
    let (st, b) = anon
        .post(
            "login",
            json!({"username": "rcadmin", "password": "secret-pass-1"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["me"]["username"], "rcadmin");
    assert_eq!(b["data"]["userId"], admin.user_id.as_str());
    let (st, b) = anon
        .post(
            "login",
            json!({"user": "rcadmin", "password": "wrong-pass"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(
        b,
        json!({"success": false, "status": "error", "error": "Unauthorized", "message": "Unauthorized"})
    );
    let (st, _) = anon
        .post("login", json!({"user": "nobody-here", "password": "x"}))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // The native token works here too, and a native-face registration is in GENERAL on login.
    let native = admin.native();
    let (st, _) = native.get("/api/im/me").await;
    assert_eq!(st, StatusCode::OK);
    let rooms = admin.ok_get("rooms.get", &[]).await;
    let general = rooms["update"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["_id"] == "GENERAL")
        .unwrap_or_else(|| panic!("no GENERAL in {rooms}"))
        .clone();
    assert_eq!(general["t"], "c");
    assert_eq!(general["name"], "general");
    assert_eq!(general["default"], true);
    assert_eq!(general["usersCount"], 2);

    // Logout ends that token on every face.
    let out = admin.ok_post("logout", json!({})).await;
    assert_eq!(out["status"], "success");
    assert_eq!(
        admin.get("me", &[]).await,
        (StatusCode::UNAUTHORIZED, unauth)
    );
    let (st, _) = native.get("/api/im/me").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------------------------
// chat.syncMessages, Rocket.Chat's cases 1–13 (docs/rocketchat.md, "Compatibility tests")

#[tokio::test]
async fn sync_messages_rocket_chat_e2e_cases() {
    let s = rc_server().await;
    let admin = rc_user(&s.base, "admin").await;
    let rid = admin
        .channel(&format!("channel.test.syncMessages.{}", now_ms()))
        .await;
    let now = || iso(now_ms());

    // 1. No query.
    let (st, b) = admin.get("chat.syncMessages", &[]).await;
    assert_error(
        st,
        &b,
        "invalid-params",
        "must have required property 'roomId'",
    );
    assert_eq!(
        b["error"],
        "must have required property 'roomId' [invalid-params]"
    );
    // 2. roomId only.
    let (st, b) = admin.get("chat.syncMessages", &[("roomId", &rid)]).await;
    assert_error(
        st,
        &b,
        "error-param-required",
        "The \"type\" or \"lastUpdate\" parameters must be provided",
    );
    // 3. Invalid lastUpdate is checked before the room.
    let (st, b) = admin
        .get(
            "chat.syncMessages",
            &[("roomId", "invalid-room"), ("lastUpdate", "invalid-date")],
        )
        .await;
    assert_error(
        st,
        &b,
        "error-lastUpdate-param-invalid",
        "The \"lastUpdate\" query parameter must be a valid date",
    );
    // 4. A room that does not exist.
    let (st, b) = admin
        .get(
            "chat.syncMessages",
            &[("roomId", "invalid-room"), ("lastUpdate", &now())],
        )
        .await;
    assert_error(st, &b, "error-not-allowed", "Not allowed");
    assert_eq!(
        b,
        json!({"success": false, "error": "Not allowed [error-not-allowed]",
            "errorType": "error-not-allowed", "details": {"method": "messages/get"}})
    );
    // 5. Bad type.
    let (st, b) = admin
        .get(
            "chat.syncMessages",
            &[("roomId", &rid), ("type", "invalid-type"), ("next", &now())],
        )
        .await;
    assert_error(
        st,
        &b,
        "invalid-params",
        "must be equal to one of the allowed values",
    );
    // 6. A cursor without type or lastUpdate.
    for key in ["next", "previous"] {
        let (st, b) = admin
            .get("chat.syncMessages", &[("roomId", &rid), (key, &now())])
            .await;
        assert_error(
            st,
            &b,
            "error-param-required",
            "The \"type\" or \"lastUpdate\" parameters must be provided",
        );
    }
    // 7. Both cursors.
    let (st, b) = admin
        .get(
            "chat.syncMessages",
            &[
                ("roomId", &rid),
                ("type", "UPDATED"),
                ("next", &now()),
                ("previous", &now()),
            ],
        )
        .await;
    assert_error(
        st,
        &b,
        "error-cursor-conflict",
        "You cannot provide both \"next\" and \"previous\" parameters",
    );
    // 8. A cursor with lastUpdate.
    let (st, b) = admin
        .get(
            "chat.syncMessages",
            &[
                ("roomId", &rid),
                ("type", "UPDATED"),
                ("next", &now()),
                ("lastUpdate", &now()),
            ],
        )
        .await;
    assert_error(
        st,
        &b,
        "error-cursor-and-lastUpdate-conflict",
        "The attributes \"next\", \"previous\" and \"lastUpdate\" cannot be used together",
    );
    // 9. roomId only, again.
    let (st, b) = admin.get("chat.syncMessages", &[("roomId", &rid)]).await;
    assert_error(
        st,
        &b,
        "error-param-required",
        "The \"type\" or \"lastUpdate\" parameters must be provided",
    );
    // 10. Nothing since now.
    let b = admin
        .ok_get(
            "chat.syncMessages",
            &[("roomId", &rid), ("lastUpdate", &now())],
        )
        .await;
    assert_eq!(b["result"]["updated"], json!([]));
    assert_eq!(b["result"]["deleted"], json!([]));
    assert!(b["result"].get("cursor").is_none(), "{b}");

    // 11. lastUpdate mode: newest first, deletions in `deleted`.
    let last_update = now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let first = admin.send_simple(&rid, "First", None).await;
    let second = admin.send_simple(&rid, "Second", None).await;
    let q = [
        ("roomId", rid.as_str()),
        ("lastUpdate", last_update.as_str()),
    ];
    let b = admin.ok_get("chat.syncMessages", &q).await;
    assert_eq!(
        ids(&b["result"]["updated"]),
        vec![
            second["_id"].as_str().unwrap(),
            first["_id"].as_str().unwrap()
        ]
    );
    assert_eq!(b["result"]["deleted"], json!([]));
    admin
        .delete_message(&rid, first["_id"].as_str().unwrap())
        .await;
    let b = admin.ok_get("chat.syncMessages", &q).await;
    assert_eq!(
        ids(&b["result"]["updated"]),
        vec![second["_id"].as_str().unwrap()]
    );
    assert_eq!(b["result"]["deleted"].as_array().unwrap().len(), 1);
    assert_eq!(b["result"]["deleted"][0]["_id"], first["_id"]);
    assert!(b["result"]["deleted"][0]["_deletedAt"].is_string());
    admin
        .delete_message(&rid, second["_id"].as_str().unwrap())
        .await;

    // 12. UPDATED cursor mode.
    let last_update = now_ms();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let m1 = admin.send_simple(&rid, "m1", None).await;
    let m2 = admin.send_simple(&rid, "m2", None).await;
    let m3 = admin.send_simple(&rid, "m3", None).await;
    let lu = last_update.to_string();
    let b = admin
        .ok_get(
            "chat.syncMessages",
            &[
                ("roomId", &rid),
                ("next", &lu),
                ("type", "UPDATED"),
                ("count", "2"),
            ],
        )
        .await;
    let r = &b["result"];
    assert_eq!(
        ids(&r["updated"]),
        vec![m1["_id"].as_str().unwrap(), m2["_id"].as_str().unwrap()]
    );
    assert_eq!(r["deleted"], json!([]));
    assert_eq!(
        r["cursor"]["next"],
        ms(&r["updated"][1]["_updatedAt"]).to_string()
    );
    assert_eq!(
        r["cursor"]["previous"],
        ms(&r["updated"][0]["_updatedAt"]).to_string()
    );
    assert_eq!(
        r["cursor"]["previous"],
        ms(&m1["_updatedAt"]).to_string(),
        "the sendMessage response's _updatedAt"
    );
    let next = r["cursor"]["next"].as_str().unwrap().to_owned();
    let b = admin
        .ok_get(
            "chat.syncMessages",
            &[
                ("roomId", &rid),
                ("next", &next),
                ("type", "UPDATED"),
                ("count", "2"),
            ],
        )
        .await;
    let r = &b["result"];
    assert_eq!(ids(&r["updated"]), vec![m3["_id"].as_str().unwrap()]);
    assert!(r["cursor"]["next"].is_null(), "{b}");
    assert_eq!(r["cursor"]["previous"], ms(&m3["_updatedAt"]).to_string());

    // 13. DELETED cursor mode, in a new channel.
    let rid = admin
        .channel(&format!("channel.test.syncMessages.deleted.{}", now_ms()))
        .await;
    let last_update = now_ms();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let mut sent = Vec::new();
    for t in ["d1", "d2", "d3"] {
        sent.push(admin.send_simple(&rid, t, None).await);
    }
    let lu = last_update.to_string();
    let q = [
        ("roomId", rid.as_str()),
        ("next", lu.as_str()),
        ("type", "DELETED"),
        ("count", "2"),
    ];
    let b = admin.ok_get("chat.syncMessages", &q).await;
    assert_eq!(b["result"]["deleted"], json!([]));
    assert!(b["result"]["cursor"]["next"].is_null());
    assert!(b["result"]["cursor"]["previous"].is_null());
    for m in &sent {
        admin.delete_message(&rid, m["_id"].as_str().unwrap()).await;
    }
    let b = admin.ok_get("chat.syncMessages", &q).await;
    let r = &b["result"];
    assert_eq!(r["updated"], json!([]));
    assert_eq!(
        ids(&r["deleted"]),
        vec![
            sent[0]["_id"].as_str().unwrap(),
            sent[1]["_id"].as_str().unwrap()
        ]
    );
    assert_eq!(
        r["cursor"]["next"],
        ms(&r["deleted"][1]["_deletedAt"]).to_string()
    );
    assert_eq!(
        r["cursor"]["previous"],
        ms(&r["deleted"][0]["_deletedAt"]).to_string()
    );
    let next = r["cursor"]["next"].as_str().unwrap().to_owned();
    let b = admin
        .ok_get(
            "chat.syncMessages",
            &[
                ("roomId", &rid),
                ("next", &next),
                ("type", "DELETED"),
                ("count", "2"),
            ],
        )
        .await;
    let r = &b["result"];
    assert_eq!(ids(&r["deleted"]), vec![sent[2]["_id"].as_str().unwrap()]);
    assert!(r["cursor"]["next"].is_null());
    assert_eq!(
        r["cursor"]["previous"],
        ms(&r["deleted"][0]["_deletedAt"]).to_string()
    );
}

#[tokio::test]
async fn sync_messages_edges_and_deviations() {
    let s = rc_server().await;
    let admin = rc_user(&s.base, "edgeadmin").await;
    let rid = admin.channel("edges").await;
    // Unknown parameters, including Mongo-style queries, are refused.
    for extra in ["offset", "sort", "fields", "query", "tmid"] {
        let (st, b) = admin
            .get(
                "chat.syncMessages",
                &[
                    ("roomId", &rid),
                    ("lastUpdate", "2024-01-01T00:00:00Z"),
                    (extra, "1"),
                ],
            )
            .await;
        assert_error(
            st,
            &b,
            "invalid-params",
            "must NOT have additional properties",
        );
    }
    // An empty roomId passes the schema and fails the handler's check.
    let (st, b) = admin
        .get("chat.syncMessages", &[("roomId", ""), ("type", "UPDATED")])
        .await;
    assert_error(
        st,
        &b,
        "error-param-required",
        "The required \"roomId\" query param is missing",
    );
    // A cursor with lastUpdate but without type.
    let (st, b) = admin
        .get(
            "chat.syncMessages",
            &[
                ("roomId", &rid),
                ("lastUpdate", "2024-01-01T00:00:00Z"),
                ("next", "5"),
            ],
        )
        .await;
    assert_error(
        st,
        &b,
        "error-type-param-required",
        "The \"type\" parameter is required",
    );
    // A cursor that is not a number (deviation: errorType error-invalid-cursor).
    let (st, b) = admin
        .get(
            "chat.syncMessages",
            &[("roomId", &rid), ("type", "UPDATED"), ("next", "abc")],
        )
        .await;
    assert_error(st, &b, "error-invalid-cursor", "Invalid Date");
    // `count` must be a number.
    let (st, b) = admin
        .get(
            "chat.syncMessages",
            &[
                ("roomId", &rid),
                ("type", "UPDATED"),
                ("next", "0"),
                ("count", "x"),
            ],
        )
        .await;
    assert_error(st, &b, "invalid-params", "must be number");
    // Type alone answers empty lists with no cursor.
    let b = admin
        .ok_get(
            "chat.syncMessages",
            &[("roomId", &rid), ("type", "DELETED")],
        )
        .await;
    assert_eq!(b["result"], json!({"updated": [], "deleted": []}));
    // A room the caller is not in is "Not allowed", also for a public channel.
    let outsider = rc_user(&s.base, "edgeoutsider").await;
    let (st, b) = outsider
        .get(
            "chat.syncMessages",
            &[("roomId", &rid), ("lastUpdate", "2024-01-01T00:00:00Z")],
        )
        .await;
    assert_error(st, &b, "error-not-allowed", "Not allowed");
    // Unknown endpoints and bad JSON answer in Rocket.Chat's format.
    let (st, b) = admin.get("chat.nothingHere", &[]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(b["success"], false);
    let req = admin
        .http
        .post(format!("{}/api/v1/chat.update", s.base))
        .header("content-type", "application/json")
        .body("{not json");
    let (st, b) = admin.send(req, true).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(b["errorType"], "invalid-params");
    let (st, b) = admin.get("chat.postMessage", &[]).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(b["success"], false);
}

// ---------------------------------------------------------------------------------------------
// chat.syncThreadMessages and chat.getThreadMessages (docs/rocketchat.md, "Compatibility tests")

#[tokio::test]
async fn sync_thread_messages_rocket_chat_e2e_cases() {
    let s = rc_server().await;
    let admin = rc_user(&s.base, "threadadmin").await;
    let rid = admin
        .channel(&format!("message.threads.{}", now_ms()))
        .await;
    let parent = admin.send_simple(&rid, "Parent", None).await;
    let pid = parent["_id"].as_str().unwrap().to_owned();
    let reply = admin.send_simple(&rid, "Reply", Some(&pid)).await;
    assert_eq!(reply["tmid"], pid.as_str());
    let tmid = reply["tmid"].as_str().unwrap().to_owned();
    let now = iso(now_ms());

    // 2–4. Schema failures.
    let (st, b) = admin.get("chat.syncThreadMessages", &[]).await;
    assert_error(
        st,
        &b,
        "invalid-params",
        "must have required property 'tmid'",
    );
    let (st, b) = admin
        .get("chat.syncThreadMessages", &[("tmid", &tmid)])
        .await;
    assert_error(
        st,
        &b,
        "invalid-params",
        "must have required property 'updatedSince'",
    );
    let (st, b) = admin
        .get(
            "chat.syncThreadMessages",
            &[("tmid", &tmid), ("updatedSince", "invalid-date")],
        )
        .await;
    assert_error(st, &b, "invalid-params", "iso-date-time");
    for bad in ["fields", "query"] {
        let (st, b) = admin
            .get(
                "chat.syncThreadMessages",
                &[("tmid", &tmid), ("updatedSince", &now), (bad, "{}")],
            )
            .await;
        assert_error(st, &b, "invalid-params", "additional properties");
    }
    let (st, b) = admin
        .get(
            "chat.syncThreadMessages",
            &[
                ("tmid", &tmid),
                ("updatedSince", &now),
                ("sort", "{\"ts\":2}"),
            ],
        )
        .await;
    assert_error(
        st,
        &b,
        "error-invalid-sort",
        "Invalid sort parameter provided: \"{\"ts\":2}\"",
    );
    // 5. A user who is not in the room.
    let outsider = rc_user(&s.base, "threadoutsider").await;
    let (st, b) = outsider
        .get(
            "chat.syncThreadMessages",
            &[("tmid", &tmid), ("updatedSince", &now)],
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(b["errorType"], "error-not-allowed");
    assert_eq!(b["error"], "Not Allowed [error-not-allowed]");
    // A message that does not exist.
    let (st, b) = admin
        .get(
            "chat.syncThreadMessages",
            &[("tmid", "nope"), ("updatedSince", &now)],
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "Invalid Message [error-invalid-message]");
    // 6. Everything since 2019.
    let b = admin
        .ok_get(
            "chat.syncThreadMessages",
            &[
                ("tmid", &tmid),
                ("updatedSince", "2019-04-01T00:00:00.000Z"),
            ],
        )
        .await;
    let m = &b["messages"];
    assert!(m.is_object());
    assert_eq!(m["update"].as_array().unwrap().len(), 1);
    assert_eq!(m["remove"].as_array().unwrap().len(), 0);
    assert_eq!(m["update"][0]["_id"], reply["_id"]);
    assert_eq!(m["update"][0]["tmid"], pid.as_str());

    // A deleted reply moves to `remove` as a full trash document.
    let reply2 = admin.send_simple(&rid, "Reply 2", Some(&pid)).await;
    admin
        .delete_message(&rid, reply2["_id"].as_str().unwrap())
        .await;
    let b = admin
        .ok_get(
            "chat.syncThreadMessages",
            &[
                ("tmid", &tmid),
                ("updatedSince", "2019-04-01T00:00:00.000Z"),
            ],
        )
        .await;
    let removed = &b["messages"]["remove"];
    assert_eq!(ids(removed), vec![reply2["_id"].as_str().unwrap()]);
    assert_eq!(removed[0]["__collection__"], "message");
    assert_eq!(removed[0]["msg"], "Reply 2");
    assert_eq!(removed[0]["tmid"], pid.as_str());
    assert!(removed[0]["_deletedAt"].is_string());
    assert_eq!(
        ids(&b["messages"]["update"]),
        vec![reply["_id"].as_str().unwrap()]
    );

    // getThreadMessages.
    let b = admin
        .ok_get("chat.getThreadMessages", &[("tmid", &pid)])
        .await;
    assert!(b["messages"].is_array());
    assert_eq!(b["total"], 1);
    assert_eq!(b["messages"][0]["tmid"], pid.as_str());
    let (st, b) = outsider
        .get("chat.getThreadMessages", &[("tmid", &pid)])
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "Not Allowed [error-not-allowed]");

    // 1. Threads disabled (a server with Threads_enabled off).
    let off = custom_server(imsync_service::ServiceConfig {
        threads_enabled: false,
        ..Default::default()
    })
    .await;
    let u = rc_user(&off.base, "threadsoff").await;
    let (st, b) = u
        .get(
            "chat.syncThreadMessages",
            &[("tmid", "whatever"), ("updatedSince", &now)],
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(b["errorType"], "error-not-allowed");
    assert_eq!(b["error"], "Threads Disabled [error-not-allowed]");
    let (st, b) = u
        .get("chat.getThreadMessages", &[("tmid", "whatever")])
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(b["error"], "Threads Disabled [error-not-allowed]");
}

#[tokio::test]
async fn threads_reactions_and_removed_parents() {
    let s = rc_server().await;
    let alice = rc_user(&s.base, "thalice").await;
    let bob = rc_user(&s.base, "thbob").await;
    let rid = alice.channel("threads-and-reactions").await;
    alice
        .ok_post(
            "channels.invite",
            json!({"roomId": rid, "userId": bob.user_id}),
        )
        .await;
    let since = iso(now_ms() - 1);
    let parent = alice.send_simple(&rid, "parent", None).await;
    let pid = parent["_id"].as_str().unwrap();
    let r1 = bob.send_simple(&rid, "r1", Some(pid)).await;
    alice.send_simple(&rid, "r2", Some(pid)).await;
    bob.send_simple(&rid, "r3", Some(pid)).await;

    let p = alice.ok_get("chat.getMessage", &[("msgId", pid)]).await["message"].clone();
    assert_eq!(p["tcount"], 3);
    assert_eq!(p["replies"], json!([bob.user_id, alice.user_id]));
    assert!(p["tlm"].is_string());
    assert!(ms(&p["_updatedAt"]) > ms(&parent["_updatedAt"]));

    // Reactions: toggle, shouldReact, normalisation, bad emoji, missing message.
    alice
        .ok_post(
            "chat.react",
            json!({"messageId": r1["_id"], "emoji": "smile"}),
        )
        .await;
    bob.ok_post(
        "chat.react",
        json!({"messageId": r1["_id"], "reaction": ":smile:"}),
    )
    .await;
    bob.ok_post(
        "chat.react",
        json!({"messageId": r1["_id"], "emoji": ":+1:", "shouldReact": true}),
    )
    .await;
    bob.ok_post(
        "chat.react",
        json!({"messageId": r1["_id"], "emoji": ":+1:", "shouldReact": true}),
    )
    .await;
    let m = alice
        .ok_get("chat.getMessage", &[("msgId", r1["_id"].as_str().unwrap())])
        .await["message"]
        .clone();
    assert_eq!(
        m["reactions"],
        json!({":smile:": {"usernames": ["thalice", "thbob"]}, ":+1:": {"usernames": ["thbob"]}})
    );
    alice
        .ok_post(
            "chat.react",
            json!({"messageId": r1["_id"], "emoji": "smile"}),
        )
        .await;
    let m = alice
        .ok_get("chat.getMessage", &[("msgId", r1["_id"].as_str().unwrap())])
        .await["message"]
        .clone();
    assert_eq!(m["reactions"][":smile:"]["usernames"], json!(["thbob"]));
    let (st, b) = alice
        .post(
            "chat.react",
            json!({"messageId": r1["_id"], "emoji": "not an emoji!"}),
        )
        .await;
    assert_error(st, &b, "error-not-allowed", "Invalid emoji provided.");
    let (st, b) = alice
        .post(
            "chat.react",
            json!({"messageId": "missing", "emoji": "smile"}),
        )
        .await;
    assert_error(
        st,
        &b,
        "error-message-not-found",
        "The provided \"messageId\" does not match any existing message.",
    );

    // Deleting the parent keeps it among the updates as a removed message.
    alice.delete_message(&rid, pid).await;
    let b = alice
        .ok_get(
            "chat.syncMessages",
            &[("roomId", &rid), ("lastUpdate", &since)],
        )
        .await;
    let updated = b["result"]["updated"].as_array().unwrap();
    let rm = updated
        .iter()
        .find(|m| m["_id"] == pid)
        .unwrap_or_else(|| panic!("no removed parent in {b}"));
    assert_eq!(rm["t"], "rm");
    assert_eq!(rm["msg"], "");
    assert_eq!(rm["tcount"], 3);
    assert!(b["result"]["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["_id"] != pid));
    // The thread is still readable.
    let b = bob
        .ok_get(
            "chat.syncThreadMessages",
            &[("tmid", pid), ("updatedSince", &since)],
        )
        .await;
    assert_eq!(b["messages"]["update"].as_array().unwrap().len(), 3);
    // Sorted by _updatedAt ascending without sort; sort={"ts":-1} reverses creation order.
    let up: Vec<i64> = b["messages"]["update"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ms(&m["_updatedAt"]))
        .collect();
    assert!(up.windows(2).all(|w| w[0] < w[1]), "{up:?}");
    let b = bob
        .ok_get(
            "chat.syncThreadMessages",
            &[
                ("tmid", pid),
                ("updatedSince", &since),
                ("sort", "{\"ts\":-1}"),
            ],
        )
        .await;
    let texts: Vec<&str> = b["messages"]["update"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["msg"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["r3", "r2", "r1"]);
}

// ---------------------------------------------------------------------------------------------
// Cursor paging over hundreds of changes

async fn walk(rc: &Rc, rid: &str, kind: &str, start: (&str, String), count: &str) -> Vec<Value> {
    let (dir, mut cursor) = start;
    let mut out: Vec<Value> = Vec::new();
    for _ in 0..10_000 {
        let b = rc
            .ok_get(
                "chat.syncMessages",
                &[
                    ("roomId", rid),
                    (dir, &cursor),
                    ("type", kind),
                    ("count", count),
                ],
            )
            .await;
        let r = &b["result"];
        let list = if kind == "UPDATED" {
            &r["updated"]
        } else {
            &r["deleted"]
        };
        let list = list.as_array().unwrap().clone();
        let n: usize = count.parse().unwrap();
        assert!(list.len() <= n, "page larger than count: {}", list.len());
        let field = if kind == "UPDATED" {
            "_updatedAt"
        } else {
            "_deletedAt"
        };
        let stamps: Vec<i64> = list.iter().map(|m| ms(&m[field])).collect();
        if dir == "next" {
            assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
        } else {
            assert!(stamps.windows(2).all(|w| w[0] > w[1]), "{stamps:?}");
        }
        // The cursor that continues the walk is null exactly on the last page.
        let (cont, other) = if dir == "next" {
            (&r["cursor"]["next"], &r["cursor"]["previous"])
        } else {
            (&r["cursor"]["previous"], &r["cursor"]["next"])
        };
        if list.is_empty() {
            assert!(cont.is_null() && other.is_null(), "{r}");
        } else {
            assert!(!other.is_null(), "{r}");
        }
        out.extend(list);
        if cont.is_null() {
            return out;
        }
        let c = cont.as_str().unwrap().to_owned();
        assert_eq!(
            c,
            stamps.last().unwrap().to_string(),
            "cursor is the last item"
        );
        cursor = c;
    }
    panic!("the walk did not end");
}

#[tokio::test]
async fn cursor_paging_over_hundreds_of_changes() {
    let s = rc_server().await;
    let rc = rc_user(&s.base, "pager").await;
    let rid = rc.channel("paging").await;
    let native = rc.native();
    let mut all = Vec::new();
    for i in 0..240 {
        let m = if i % 2 == 0 {
            rc.send_simple(&rid, &format!("m{i}"), None).await
        } else {
            rc.ok_post(
                "chat.postMessage",
                json!({"roomId": rid, "text": format!("m{i}")}),
            )
            .await["message"]
                .clone()
        };
        all.push(m["_id"].as_str().unwrap().to_owned());
    }
    // Edits move messages to the end of the feed; deletions move them to the trash.
    let mut deleted = HashSet::new();
    for (i, id) in all.iter().enumerate() {
        if i % 7 == 0 {
            rc.ok_post(
                "chat.update",
                json!({"roomId": rid, "msgId": id, "text": "edited"}),
            )
            .await;
        }
        if i % 5 == 0 {
            let (st, b) = native.delete(&format!("/api/im/messages/{rid}/{id}")).await;
            assert_eq!(st, StatusCode::OK, "{b}");
            deleted.insert(id.clone());
        }
    }
    let live: HashSet<String> = all
        .iter()
        .filter(|id| !deleted.contains(*id))
        .cloned()
        .collect();
    let far = (now_ms() + 3_600_000).to_string();
    for count in ["1", "7", "50", "500"] {
        for (dir, start) in [("next", "0".to_owned()), ("previous", far.clone())] {
            for (kind, expected) in [("UPDATED", &live), ("DELETED", &deleted)] {
                let got = walk(&rc, &rid, kind, (dir, start.clone()), count).await;
                let got_ids: Vec<String> = ids(&Value::Array(got));
                let unique: HashSet<String> = got_ids.iter().cloned().collect();
                assert_eq!(
                    unique.len(),
                    got_ids.len(),
                    "{kind} {dir} count={count}: repeated items"
                );
                assert_eq!(
                    &unique, expected,
                    "{kind} {dir} count={count}: skipped or foreign items"
                );
            }
        }
    }
    // Edited messages come back with editedAt/editedBy and their new text.
    let b = rc.ok_get("chat.getMessage", &[("msgId", &all[7])]).await;
    assert_eq!(b["message"]["msg"], "edited");
    assert_eq!(b["message"]["editedBy"]["username"], "pager");
    // lastUpdate mode has no limit and lists by ts descending.
    let b = rc
        .ok_get(
            "chat.syncMessages",
            &[("roomId", &rid), ("lastUpdate", "2000-01-01T00:00:00.000Z")],
        )
        .await;
    let updated = ids(&b["result"]["updated"]);
    let mut expected: Vec<String> = all
        .iter()
        .filter(|id| !deleted.contains(*id))
        .cloned()
        .collect();
    expected.reverse();
    assert_eq!(updated, expected);
    assert_eq!(
        b["result"]["deleted"].as_array().unwrap().len(),
        deleted.len()
    );
}

// ---------------------------------------------------------------------------------------------
// The other chat endpoints

#[tokio::test]
async fn post_send_update_delete_shapes_and_errors() {
    let s = rc_server().await;
    let alice = rc_user(&s.base, "pal").await;
    let bob = rc_user(&s.base, "pbob").await;
    let rid = alice.channel("shapes").await;

    // postMessage by roomId, by #channel, by @user; its response shape.
    let b = alice
        .ok_post(
            "chat.postMessage",
            json!({"roomId": rid, "text": "hello", "alias": "Al", "attachments": []}),
        )
        .await;
    assert_eq!(b["channel"], rid.as_str());
    assert!(b["ts"].is_i64());
    let m = &b["message"];
    assert_eq!(m["msg"], "hello");
    assert_eq!(m["rid"], rid.as_str());
    assert_eq!(m["alias"], "Al");
    assert_eq!(m["u"]["username"], "pal");
    assert_eq!(ms(&m["ts"]), b["ts"].as_i64().unwrap());
    let b = alice
        .ok_post("chat.postMessage", json!({"channel": "#shapes"}))
        .await;
    assert_eq!(b["channel"], "#shapes");
    assert_eq!(b["message"]["msg"], "");
    let b = alice
        .ok_post(
            "chat.postMessage",
            json!({"channel": "@pbob", "text": "dm"}),
        )
        .await;
    let dm = b["message"]["rid"].as_str().unwrap().to_owned();
    let (st, b) = alice
        .post(
            "chat.postMessage",
            json!({"channel": "#shapes", "tmid": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(b["errorType"], "invalid-params");
    assert_eq!(b["error"], "must NOT have additional properties");
    let (st, b) = alice.post("chat.postMessage", json!({"text": "x"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(b["errorType"], "invalid-params");
    let (st, b) = bob
        .post("chat.postMessage", json!({"roomId": rid, "text": "x"}))
        .await;
    assert_error(st, &b, "error-not-allowed", "Not allowed");

    // sendMessage keeps the client's _id; a second send with it is refused.
    let b = alice
        .ok_post(
            "chat.sendMessage",
            json!({"message": {"rid": rid, "_id": "clientChosenId01", "msg": "mine"}}),
        )
        .await;
    assert_eq!(b["message"]["_id"], "clientChosenId01");
    assert_eq!(b["message"]["msg"], "mine");
    let (st, b) = alice
        .post(
            "chat.sendMessage",
            json!({"message": {"rid": rid, "_id": "clientChosenId01", "msg": "again"}}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    let (st, b) = alice
        .post("chat.sendMessage", json!({"message": {"msg": "no rid"}}))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        b,
        json!({"success": false, "error": "The 'rid' property on the message object is missing."})
    );

    // update: not found, room mismatch, not the sender, success.
    let (st, b) = alice
        .post(
            "chat.update",
            json!({"roomId": rid, "msgId": "nope", "text": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        b,
        json!({"success": false, "error": "No message found with the id of \"nope\"."})
    );
    let (st, b) = alice
        .post(
            "chat.update",
            json!({"roomId": dm, "msgId": "clientChosenId01", "text": "x"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["error"],
        "The room id provided does not match where the message is from."
    );
    let (st, b) = alice
        .post(
            "chat.update",
            json!({"roomId": rid, "msgId": "clientChosenId01"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        b,
        json!({"success": false, "errorType": "invalid-params", "error": "must have required property 'text'"})
    );
    let b = alice
        .ok_post(
            "chat.update",
            json!({"roomId": rid, "msgId": "clientChosenId01", "text": "changed"}),
        )
        .await;
    assert_eq!(b["message"]["msg"], "changed");
    assert!(b["message"]["editedAt"].is_string());
    assert_eq!(
        b["message"]["editedBy"],
        json!({"_id": alice.user_id, "username": "pal"})
    );
    let edited_at = ms(&b["message"]["_updatedAt"]);
    let got = alice
        .ok_get("chat.getMessage", &[("msgId", "clientChosenId01")])
        .await;
    assert_eq!(ms(&got["message"]["_updatedAt"]), edited_at);

    // delete.
    let b = alice
        .ok_post(
            "chat.delete",
            json!({"roomId": rid, "msgId": "clientChosenId01"}),
        )
        .await;
    assert_eq!(b["_id"], "clientChosenId01");
    assert!(b["ts"].as_str().unwrap().parse::<i64>().is_ok());
    assert_eq!(
        b["message"],
        json!({"_id": "clientChosenId01", "rid": rid, "u": {"_id": alice.user_id, "username": "pal", "name": "pal"}})
    );
    let (st, b) = alice
        .post(
            "chat.delete",
            json!({"roomId": rid, "msgId": "clientChosenId01"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["error"],
        "No message found with the id of \"clientChosenId01\"."
    );
    let (st, _) = alice
        .get("chat.getMessage", &[("msgId", "clientChosenId01")])
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------------------------
// Rooms

#[tokio::test]
async fn rooms_subscriptions_and_membership() {
    let s = rc_server().await;
    let alice = rc_user(&s.base, "ral").await;
    let bob = rc_user(&s.base, "rbob").await;
    let carol = rc_user(&s.base, "rcarol").await;
    let t0 = iso(now_ms() - 1);

    // im.create.
    let b = alice
        .ok_post("im.create", json!({"username": "rbob"}))
        .await;
    let room = &b["room"];
    assert_eq!(room["t"], "d");
    assert_eq!(room["rid"], room["_id"]);
    let mut names: Vec<&str> = room["usernames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["ral", "rbob"]);
    let (st, b) = alice.post("im.create", json!({"username": "ghost"})).await;
    assert_error(st, &b, "error-invalid-user", "Invalid user");

    // channels.create / groups.create and names.
    let b = alice
        .ok_post(
            "channels.create",
            json!({"name": "pub-room", "members": ["rbob"]}),
        )
        .await;
    let pub_id = b["channel"]["_id"].as_str().unwrap().to_owned();
    assert_eq!(b["channel"]["t"], "c");
    assert_eq!(b["channel"]["name"], "pub-room");
    assert_eq!(b["channel"]["usersCount"], 2);
    let b = alice
        .ok_post("groups.create", json!({"name": "priv-room"}))
        .await;
    let priv_id = b["group"]["_id"].as_str().unwrap().to_owned();
    assert_eq!(b["group"]["t"], "p");
    let (st, b) = alice
        .post("channels.create", json!({"name": "pub-room"}))
        .await;
    assert_error(
        st,
        &b,
        "error-duplicate-channel-name",
        "A channel with name 'pub-room' exists",
    );
    let (st, b) = alice
        .post("channels.create", json!({"name": "bad name!"}))
        .await;
    assert_error(
        st,
        &b,
        "error-invalid-room-name",
        "is not a valid room name",
    );

    // join: a public room by name; never a private one.
    let b = carol
        .ok_post("channels.join", json!({"roomName": "pub-room"}))
        .await;
    assert_eq!(b["channel"]["usersCount"], 3);
    let (st, b) = carol
        .post("channels.join", json!({"roomId": priv_id}))
        .await;
    assert_error(st, &b, "error-not-allowed", "Not allowed");
    let (st, b) = carol
        .post("channels.join", json!({"roomId": "missing-room"}))
        .await;
    assert_error(st, &b, "error-room-not-found", "does not match any channel");

    // invite and kick.
    let b = alice
        .ok_post(
            "groups.invite",
            json!({"roomId": priv_id, "userId": carol.user_id}),
        )
        .await;
    assert_eq!(b["group"]["usersCount"], 2);
    let (st, _) = bob
        .post(
            "groups.invite",
            json!({"roomId": priv_id, "userId": bob.user_id}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let b = alice
        .ok_post(
            "channels.kick",
            json!({"roomId": pub_id, "userId": carol.user_id}),
        )
        .await;
    assert_eq!(b["channel"]["usersCount"], 2);
    alice
        .ok_post(
            "groups.kick",
            json!({"roomId": priv_id, "userId": carol.user_id}),
        )
        .await;
    let (st, b) = carol
        .get(
            "chat.syncMessages",
            &[("roomId", &priv_id), ("lastUpdate", &t0)],
        )
        .await;
    assert_error(st, &b, "error-not-allowed", "Not allowed");

    // rooms.get and subscriptions.get with updatedSince.
    let rooms = carol.ok_get("rooms.get", &[("updatedSince", &t0)]).await;
    let removed: HashSet<String> = ids(&rooms["remove"]).into_iter().collect();
    assert_eq!(
        removed,
        [pub_id.clone(), priv_id.clone()].into_iter().collect()
    );
    assert!(rooms["remove"][0]["_deletedAt"].is_string());
    let subs = carol
        .ok_get("subscriptions.get", &[("updatedSince", &t0)])
        .await;
    assert_eq!(subs["remove"].as_array().unwrap().len(), 2);
    let subs = carol.ok_get("subscriptions.get", &[]).await;
    assert!(subs["update"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["rid"] == "GENERAL"));

    let rooms = alice.ok_get("rooms.get", &[]).await;
    let ids_all: HashSet<String> = ids(&rooms["update"]).into_iter().collect();
    for id in [&pub_id, &priv_id, &"GENERAL".to_owned()] {
        assert!(ids_all.contains(id), "{id} missing from {rooms}");
    }
    assert_eq!(rooms["remove"], json!([]));
    // Only what changed after a time comes back.
    let mark = iso(now_ms());
    tokio::time::sleep(Duration::from_millis(5)).await;
    bob.ok_post(
        "chat.postMessage",
        json!({"roomId": pub_id, "text": "bump"}),
    )
    .await;
    let rooms = alice.ok_get("rooms.get", &[("updatedSince", &mark)]).await;
    assert_eq!(ids(&rooms["update"]), vec![pub_id.clone()]);
    let subs = alice
        .ok_get("subscriptions.get", &[("updatedSince", &mark)])
        .await;
    assert_eq!(subs["update"].as_array().unwrap().len(), 1);
    assert_eq!(subs["update"][0]["rid"], pub_id.as_str());
    assert_eq!(subs["update"][0]["unread"], 1);
    assert_eq!(subs["update"][0]["t"], "c");
    let (st, b) = alice
        .get("rooms.get", &[("updatedSince", "yesterday")])
        .await;
    assert_error(
        st,
        &b,
        "error-updatedSince-param-invalid",
        "must be a valid date",
    );
    let (st, b) = alice.get("rooms.get", &[("query", "{}")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(b["errorType"], "error-invalid-params");
}

#[tokio::test]
async fn default_channel_can_be_disabled() {
    let off = custom_server(imsync_service::ServiceConfig {
        default_channel: None,
        ..Default::default()
    })
    .await;
    let u = rc_user(&off.base, "nodefault").await;
    let rooms = u.ok_get("rooms.get", &[]).await;
    assert_eq!(rooms["update"], json!([]));
    let (st, _) = u
        .get(
            "chat.syncMessages",
            &[
                ("roomId", "GENERAL"),
                ("lastUpdate", "2000-01-01T00:00:00Z"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------------------------
// Cross-face

#[tokio::test]
async fn native_changes_show_in_sync_messages_and_rc_posts_in_native_sync() {
    let s = rc_server().await;
    let rc = rc_user(&s.base, "crossrc").await;
    let native = rc.native();
    let rid = rc.channel("cross").await;
    let since = iso(now_ms() - 1);

    // Native send, edit, react, delete.
    let a = native.send(&rid, "native a").await;
    let b = native.send(&rid, "native b").await;
    let (aid, bid) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (st, edited) = native
        .patch(
            &format!("/api/im/messages/{rid}/{aid}"),
            json!({"content": "native a edited"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{edited}");
    let (st, _) = native
        .post(
            &format!("/api/im/messages/{rid}/{aid}/reactions"),
            json!({"emoji": "thumbsup"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = native
        .delete(&format!("/api/im/messages/{rid}/{bid}"))
        .await;
    assert_eq!(st, StatusCode::OK);
    // A native reply to a.
    let (st, reply) = native
        .post(
            &format!("/api/im/messages/{rid}"),
            json!({"content": "native reply", "parentId": aid}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{reply}");

    let out = rc
        .ok_get(
            "chat.syncMessages",
            &[("roomId", &rid), ("lastUpdate", &since)],
        )
        .await;
    let updated = out["result"]["updated"].as_array().unwrap();
    let ma = updated.iter().find(|m| m["_id"] == aid).unwrap();
    assert_eq!(ma["msg"], "native a edited");
    assert!(ma["editedAt"].is_string());
    assert_eq!(
        ma["reactions"],
        json!({":thumbsup:": {"usernames": ["crossrc"]}})
    );
    assert_eq!(ma["tcount"], 1);
    assert_eq!(ma["replies"], json!([rc.user_id]));
    let mr = updated
        .iter()
        .find(|m| m["_id"] == reply["data"]["message"]["id"])
        .unwrap();
    assert_eq!(mr["tmid"], aid);
    assert_eq!(ids(&out["result"]["deleted"]), vec![bid.to_owned()]);
    assert!(updated.iter().all(|m| m["_id"] != bid));

    // The native edit's updatedAt is the RC _updatedAt before the reaction and the reply.
    let edited_updated = edited["data"]["message"]["updatedAt"].clone();
    assert!(ms(&ma["_updatedAt"]) > ms(&edited_updated));

    // Posted here, seen in the native sync feed.
    let (_, cursor) = native.sync_all(0, 100).await;
    let posted = rc
        .ok_post(
            "chat.postMessage",
            json!({"roomId": rid, "text": "from rocket.chat"}),
        )
        .await["message"]
        .clone();
    rc.ok_post(
        "chat.update",
        json!({"roomId": rid, "msgId": posted["_id"], "text": "from rocket.chat, edited"}),
    )
    .await;
    rc.ok_post(
        "chat.react",
        json!({"messageId": posted["_id"], "emoji": ":tada:"}),
    )
    .await;
    rc.delete_message(&rid, posted["_id"].as_str().unwrap())
        .await;
    let (events, _) = native.sync_all(cursor, 100).await;
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e["data"]["id"] == posted["_id"] || e["data"]["messageId"] == posted["_id"])
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "message.new",
            "message.edit",
            "message.reaction",
            "message.delete"
        ]
    );
    let new = events.iter().find(|e| e["type"] == "message.new").unwrap();
    assert_eq!(new["data"]["content"], "from rocket.chat");
    assert_eq!(ms(&new["data"]["updatedAt"]), ms(&posted["_updatedAt"]));
    // The native history of the room shows the post until it is deleted.
    let (st, hist) = native.get(&format!("/api/im/messages/{rid}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(hist["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["id"] != posted["_id"]));
}

/// A new account joins the default channel when it is made, whichever face made it.
#[tokio::test]
async fn new_accounts_join_general_at_registration() {
    let s = rc_server().await;
    let native = s.user("fresh").await;
    let (st, b) = native.get("/api/im/conversations").await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let ids: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["GENERAL"]);
    let (_, events) = native.get("/api/im/sync?since=0").await;
    let kinds: Vec<&str> = events["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["conversation.create"],
        "a fresh channel: its creation"
    );
    let second = s.user("second").await;
    let (_, events) = second.get("/api/im/sync?since=0").await;
    let kinds: Vec<&str> = events["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["conversation.create", "participant.add"]);
}
