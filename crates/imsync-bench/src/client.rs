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

    async fn post_json(&self, path: &str, body: &Value) -> Result<(StatusCode, Value)> {
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
