//! A lean JSON client for the native `/api/im` API. Hot-path calls (send, healthz) only check
//! the status and drain the body, so the generator spends as little as possible per request.

use anyhow::{bail, Context, Result};
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

/// One HTTP/1.1 keep-alive client; clones share its connection pool.
pub fn http_client() -> Client {
    Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("building the HTTP client")
}

#[derive(Clone)]
pub struct Api {
    pub http: Client,
    pub base: String,
    pub token: Option<String>,
    pub user_id: String,
    pub username: String,
}

/// What a sync page carries that the harness needs.
#[derive(Debug, Clone)]
pub struct SyncPage {
    pub events: usize,
    pub cursor: i64,
    pub has_more: bool,
}

#[derive(Deserialize)]
struct SyncEnvelope {
    data: SyncData,
}

#[derive(Deserialize)]
struct SyncData {
    events: Vec<serde::de::IgnoredAny>,
    cursor: i64,
    #[serde(rename = "hasMore")]
    has_more: bool,
}

impl Api {
    pub fn new(http: &Client, base: &str) -> Api {
        Api {
            http: http.clone(),
            base: base.trim_end_matches('/').to_owned(),
            token: None,
            user_id: String::new(),
            username: String::new(),
        }
    }

    /// The same client acting with another token.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// The same client (and token) talking to another server, e.g. another node.
    pub fn on(&self, base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<(StatusCode, Value)> {
        let resp = self
            .auth(self.http.post(format!("{}{}", self.base, path)))
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }

    pub async fn get_json(&self, path: &str) -> Result<(StatusCode, Value)> {
        let resp = self
            .auth(self.http.get(format!("{}{}", self.base, path)))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }

    /// Registers a token account; answers a client acting as it.
    pub async fn register(&self, username: &str) -> Result<Api> {
        let (s, b) = self
            .post_json(
                "/api/im/register",
                &json!({"type": "human", "username": username, "displayName": username}),
            )
            .await?;
        if !s.is_success() {
            bail!("register {username}: {s} {b}");
        }
        let token = b["data"]["token"]
            .as_str()
            .context("register answered no token")?;
        let mut api = self.with_token(token);
        api.user_id = b["data"]["imUserId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        api.username = username.to_owned();
        Ok(api)
    }

    /// Creates a group with the given members (usernames or ids); answers its id.
    pub async fn create_group(&self, title: &str, members: &[String]) -> Result<String> {
        let (s, b) = self
            .post_json(
                "/api/im/groups",
                &json!({"title": title, "members": members}),
            )
            .await?;
        if s != StatusCode::CREATED {
            bail!("create group: {s} {b}");
        }
        Ok(b["data"]["groupId"]
            .as_str()
            .context("no groupId")?
            .to_owned())
    }

    /// Sends a text message and drains the answer; fails unless 201.
    pub async fn send(&self, conv: &str, content: &str) -> Result<()> {
        let resp = self
            .auth(
                self.http
                    .post(format!("{}/api/im/messages/{conv}", self.base)),
            )
            .json(&json!({ "content": content }))
            .send()
            .await
            .context("send")?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if status != StatusCode::CREATED {
            bail!("send: {status} {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    }

    /// `GET /healthz`, the HTTP floor; drains the answer.
    pub async fn healthz(&self) -> Result<()> {
        let resp = self
            .http
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .context("healthz")?;
        let status = resp.status();
        resp.bytes().await?;
        if !status.is_success() {
            bail!("healthz: {status}");
        }
        Ok(())
    }

    pub async fn sync(&self, since: i64, limit: usize) -> Result<SyncPage> {
        let resp = self
            .auth(self.http.get(format!(
                "{}/api/im/sync?since={since}&limit={limit}",
                self.base
            )))
            .send()
            .await
            .context("sync")?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            bail!("sync: {status} {}", String::from_utf8_lossy(&body));
        }
        let env: SyncEnvelope = serde_json::from_slice(&body).context("sync body")?;
        Ok(SyncPage {
            events: env.data.events.len(),
            cursor: env.data.cursor,
            has_more: env.data.has_more,
        })
    }

    /// Registers a password account (`POST /api/im/users/register`); answers a client acting
    /// as it (its token serves every face).
    pub async fn register_password(&self, username: &str, password: &str) -> Result<Api> {
        let (s, b) = self
            .post_json(
                "/api/im/users/register",
                &json!({"username": username, "password": password, "displayName": username}),
            )
            .await?;
        if !s.is_success() {
            bail!("register {username}: {s} {b}");
        }
        let token = b["data"]["token"]
            .as_str()
            .context("register answered no token")?;
        let mut api = self.with_token(token);
        api.user_id = b["data"]["user"]["id"]
            .as_str()
            .context("register answered no user id")?
            .to_owned();
        api.username = username.to_owned();
        Ok(api)
    }

    /// Sends a direct message to `user` (id or username); answers the conversation id.
    pub async fn send_direct(&self, user: &str, content: &str) -> Result<String> {
        let (s, b) = self
            .post_json(
                &format!("/api/im/direct/{user}/messages"),
                &json!({ "content": content }),
            )
            .await?;
        if s != StatusCode::CREATED {
            bail!("send direct: {s} {b}");
        }
        Ok(b["data"]["conversationId"]
            .as_str()
            .context("no conversationId")?
            .to_owned())
    }

    /// A Rocket.Chat face GET (`X-User-Id` + `X-Auth-Token`): the response.
    async fn rc_get_raw(&self, path_and_query: &str) -> Result<reqwest::Response> {
        self.http
            .get(format!("{}{}", self.base, path_and_query))
            .header("X-User-Id", &self.user_id)
            .header("X-Auth-Token", self.token.as_deref().unwrap_or_default())
            .send()
            .await
            .with_context(|| format!("GET {path_and_query}"))
    }

    /// A Rocket.Chat face GET, parsed; fails unless 200.
    pub async fn rc_get(&self, path_and_query: &str) -> Result<Value> {
        let resp = self.rc_get_raw(path_and_query).await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if status != StatusCode::OK {
            bail!(
                "GET {path_and_query}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        serde_json::from_slice(&body).context("Rocket.Chat answer")
    }

    /// A Rocket.Chat face GET that only checks the status and drains the body (for timed loops).
    pub async fn rc_get_drain(&self, path_and_query: &str) -> Result<()> {
        let resp = self.rc_get_raw(path_and_query).await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if status != StatusCode::OK {
            bail!(
                "GET {path_and_query}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    /// A TangSengDaoDao face POST (header `token:`) of a ready JSON body: the
    /// response.
    async fn tsdd_post_raw(&self, path: &str, body: &str) -> Result<reqwest::Response> {
        self.http
            .post(format!("{}{}", self.base, path))
            .header("token", self.token.as_deref().unwrap_or_default())
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .with_context(|| format!("POST {path}"))
    }

    /// A TangSengDaoDao face POST, parsed; fails unless 200.
    pub async fn tsdd_post(&self, path: &str, body: &str) -> Result<Value> {
        let resp = self.tsdd_post_raw(path, body).await?;
        let status = resp.status();
        let answer = resp.bytes().await?;
        if status != StatusCode::OK {
            bail!("POST {path}: {status} {}", String::from_utf8_lossy(&answer));
        }
        serde_json::from_slice(&answer).context("TangSengDaoDao answer")
    }

    /// A TangSengDaoDao face POST that checks the status and drains the answer; answers its size.
    pub async fn tsdd_post_drain(&self, path: &str, body: &str) -> Result<usize> {
        let resp = self.tsdd_post_raw(path, body).await?;
        let status = resp.status();
        let answer = resp.bytes().await?;
        if status != StatusCode::OK {
            bail!("POST {path}: {status} {}", String::from_utf8_lossy(&answer));
        }
        Ok(answer.len())
    }

    /// The storage backend and its durability, from `GET /api/im/health` (`data.storage`).
    pub async fn storage(&self) -> Result<String> {
        let (s, b) = self.get_json("/api/im/health").await?;
        if !s.is_success() {
            bail!("health: {s} {b}");
        }
        Ok(b["data"]["storage"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned())
    }
}
