//! Test support: a server on an ephemeral port (in-process, or the real binary as a child
//! process) and a small JSON client for the native API.
#![allow(dead_code)]

pub mod files;
pub mod node;
pub mod python;
pub mod s3;
pub mod ws;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The PostgreSQL database the suite runs against instead of SQLite, when set (`.ci/run` sets it
/// to a fresh database for the PostgreSQL pass).
pub fn postgres_url() -> Option<String> {
    std::env::var("IMSYNC_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A schema per server (per data dir), so tests sharing one database never see each other.
pub fn schema_for(dir: &Path) -> String {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("t_{clean}")
}

/// An imsync server running inside the test process on 127.0.0.1:0 with its own data dir.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    /// The WuKongIM TCP listener, when `Options::wukongim_tcp` asked for one.
    pub wukongim_tcp: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    /// The service behind the server, for tests that drive what no request does.
    pub service: imsync_service::Service,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Clone, Default)]
pub struct Options {
    pub registration_open: Option<bool>,
    pub max_body_bytes: Option<usize>,
    pub rate_limit: Option<u32>,
    pub ws_idle_timeout: Option<Duration>,
    pub realtime_queue: Option<usize>,
    /// The public channel every new account joins; none unless a test asks for it, so that
    /// tests of other faces see only the conversations they make.
    pub default_channel: Option<String>,
    /// Token lifetime; the service's default unless set.
    pub token_ttl: Option<Duration>,
    /// The connection limits; `imsync_server::ServeConfig`'s defaults unless set.
    pub header_timeout: Option<Duration>,
    pub body_timeout: Option<Duration>,
    pub keepalive_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    pub shutdown_grace: Option<Duration>,
    /// Also serve the WuKongIM socket on a TCP listener of its own.
    pub wukongim_tcp: bool,
    /// `--trusted-proxies`.
    pub trusted_proxies: Option<&'static str>,
    /// The file size limit; the service's default unless set.
    pub max_file_bytes: Option<u64>,
    /// Files in this object store instead of the data dir.
    pub files_s3: Option<imsync_service::files::S3Config>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(o: Options) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = match postgres_url() {
            Some(url) => imsync_store::Store::open_postgres(&imsync_store::PgOptions {
                url,
                schema: Some(schema_for(dir.path())),
                pool_size: 8,
                statement_timeout: Duration::from_secs(30),
            })
            .await
            .expect("open PostgreSQL store"),
            None => imsync_store::Store::open(&imsync_store::StoreOptions {
                sqlite_path: dir.path().join("imsync.db"),
                durability: imsync_store::Durability::Normal,
            })
            .expect("open store"),
        };
        let service = imsync_service::Service::new(
            store,
            imsync_service::ServiceConfig {
                registration_open: o.registration_open.unwrap_or(true),
                realtime_queue: o.realtime_queue.unwrap_or(1024),
                default_channel: o.default_channel.clone(),
                token_ttl_ms: o
                    .token_ttl
                    .map_or(imsync_service::ServiceConfig::default().token_ttl_ms, |d| {
                        d.as_millis() as i64
                    }),
                files_dir: Some(dir.path().join("files")),
                files_s3: o.files_s3.clone(),
                max_file_bytes: o
                    .max_file_bytes
                    .unwrap_or(imsync_service::DEFAULT_MAX_FILE_BYTES),
                ..Default::default()
            },
        );
        let defaults = imsync_server::ServeConfig::default();
        let serve_config = imsync_server::ServeConfig {
            header_timeout: o.header_timeout.unwrap_or(defaults.header_timeout),
            body_timeout: o.body_timeout.unwrap_or(defaults.body_timeout),
            keepalive_timeout: o.keepalive_timeout.unwrap_or(defaults.keepalive_timeout),
            max_connections: o.max_connections.unwrap_or(defaults.max_connections),
            shutdown_grace: o.shutdown_grace.unwrap_or(defaults.shutdown_grace),
            max_body_bytes: o.max_body_bytes.unwrap_or(1024 * 1024),
        };
        let tcp_listener = match o.wukongim_tcp {
            true => Some(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind"),
            ),
            false => None,
        };
        let wukongim_tcp = tcp_listener.as_ref().map(|l| l.local_addr().unwrap());
        let state = imsync_server::AppState::new(imsync_server::AppParts {
            service: service.clone(),
            metrics: imsync_server::install_recorder(),
            config: Arc::new(imsync_server::ServerConfig {
                max_body_bytes: o.max_body_bytes.unwrap_or(1024 * 1024),
                rate_limit_per_sec: o.rate_limit.unwrap_or(0),
                ws_idle_timeout: o
                    .ws_idle_timeout
                    .unwrap_or_else(|| std::time::Duration::from_secs(120)),
                wukongim_tcp_addr: wukongim_tcp,
                trusted_proxies: imsync_server::TrustedProxies::parse(
                    o.trusted_proxies.unwrap_or(""),
                )
                .expect("trusted proxies"),
            }),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        if let Some(l) = tcp_listener {
            let (state, config, mut stop) = (state.clone(), serve_config.clone(), stop_rx);
            tokio::spawn(async move {
                imsync_server::wukongim::serve_tcp(l, state, config, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
                .ok();
            });
        }
        let app = imsync_server::router(state);
        let serving = tokio::spawn(async move {
            imsync_server::serve(listener, app, serve_config, async {
                let _ = rx.await;
                let _ = stop_tx.send(true);
            })
            .await
            .ok();
        });
        TestServer {
            addr,
            wukongim_tcp,
            base: format!("http://{addr}"),
            dir,
            service,
            shutdown: Some(tx),
            serving: Some(serving),
        }
    }

    /// Signals shutdown and waits for the server loop to return (it returns once every
    /// connection ended or the shutdown grace is over).
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await.expect("the server loop panicked");
        }
    }

    pub fn client(&self) -> Api {
        Api::new(&self.base, None)
    }

    /// Registers a token account and answers a client acting as it.
    pub async fn user(&self, username: &str) -> Api {
        let anon = self.client();
        let (status, body) = anon
            .post(
                "/api/im/register",
                json!({"type": "human", "username": username, "displayName": username}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "register {username}: {body}");
        let mut api = Api::new(
            &self.base,
            Some(body["data"]["token"].as_str().unwrap().to_owned()),
        );
        api.user_id = body["data"]["imUserId"].as_str().unwrap().to_owned();
        api.username = username.to_owned();
        api
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A JSON client for the native API, optionally authenticated.
#[derive(Clone)]
pub struct Api {
    pub http: Client,
    pub base: String,
    pub token: Option<String>,
    pub user_id: String,
    pub username: String,
}

impl Api {
    pub fn new(base: &str, token: Option<String>) -> Api {
        Api {
            http: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: base.to_owned(),
            token,
            user_id: String::new(),
            username: String::new(),
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path} answered {status} with a non-JSON body: {text:?}"));
        (status, value)
    }

    /// Sends a raw body (for malformed JSON tests).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path} answered {status} with a non-JSON body: {text:?}"));
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::GET, path, None, &[]).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, Some(body), &[]).await
    }
    pub async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::POST, path, None, &[]).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(Method::PATCH, path, Some(body), &[]).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::DELETE, path, None, &[]).await
    }

    /// Creates a group with the given members (usernames or ids); answers its id.
    pub async fn group(&self, title: &str, members: &[&str]) -> String {
        let (s, b) = self
            .post(
                "/api/im/groups",
                json!({"title": title, "members": members}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "create group: {b}");
        b["data"]["groupId"].as_str().unwrap().to_owned()
    }

    /// Sends a text message; answers the message JSON.
    pub async fn send(&self, conv: &str, content: &str) -> Value {
        let (s, b) = self
            .post(
                &format!("/api/im/messages/{conv}"),
                json!({"content": content}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "send: {b}");
        b["data"]["message"].clone()
    }

    /// Follows the sync cursor from `since` to the end with pages of `limit`; answers all events
    /// and the final cursor.
    pub async fn sync_all(&self, since: i64, limit: usize) -> (Vec<Value>, i64) {
        let mut cursor = since;
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let (s, b) = self
                .get(&format!("/api/im/sync?since={cursor}&limit={limit}"))
                .await;
            assert_eq!(s, StatusCode::OK, "sync: {b}");
            let d = &b["data"];
            out.extend(d["events"].as_array().unwrap().iter().cloned());
            let next = d["cursor"].as_i64().unwrap();
            assert!(next >= cursor, "cursor went back from {cursor} to {next}");
            let more = d["hasMore"].as_bool().unwrap();
            if more {
                assert!(next > cursor, "hasMore with a cursor that did not advance");
            }
            cursor = next;
            if !more {
                return (out, cursor);
            }
        }
        panic!("sync did not finish");
    }
}

/// The real `imsync` binary as a child process on a free port, for restart and kill tests.
pub struct ChildServer {
    pub child: std::process::Child,
    pub base: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ChildServer {
    pub async fn spawn(data_dir: &Path, port: u16) -> ChildServer {
        Self::spawn_with(data_dir, port, &[]).await
    }

    /// `spawn` with more `serve` flags.
    pub async fn spawn_with(data_dir: &Path, port: u16, extra: &[&str]) -> ChildServer {
        #[allow(clippy::zombie_processes)] // Drop kills and waits for it.
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_imsync"));
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra);
        if let Some(url) = postgres_url() {
            cmd.args(["--database-url", &url, "--pg-schema", &schema_for(data_dir)]);
        }
        #[allow(clippy::zombie_processes)] // Drop kills and waits for it.
        let child = cmd
            .env("IMSYNC_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn imsync");
        let base = format!("http://127.0.0.1:{port}");
        let http = Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
                if r.status().is_success() {
                    return ChildServer { child, base };
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("imsync did not become healthy on port {port}");
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn data_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}

/// The metrics of `base`, as (name with labels, value) pairs.
pub async fn scrape(base: &str) -> Vec<(String, f64)> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of metric `name` (with its labels, if any) in a [`scrape`].
pub fn value(metrics: &[(String, f64)], name: &str) -> Option<f64> {
    metrics.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}
