//! The peer: the same generator speaking the Matrix client-server API to Synapse. Users come from
//! the shared-secret admin registration (`/_synapse/admin/v1/register`, HMAC-SHA1 over
//! `nonce\0user\0password\0notadmin`). Also imsync's side of the wake-up workload (SSE).

use crate::client::{http_client, Api};
use crate::report::{f, ratio, Report};
use crate::scenarios::{concurrently, run_par, run_seq, run_tag, Load, Pages, LOAD_COLUMNS};
use crate::stats::Samples;
use anyhow::{bail, Context, Result};
use reqwest::Client;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// HMAC-SHA1 (RFC 2104), hex-encoded.
pub fn hmac_sha1_hex(key: &[u8], msg: &[u8]) -> String {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad = k.map(|b| b ^ 0x36);
    let opad = k.map(|b| b ^ 0x5c);
    let inner = Sha1::new().chain_update(ipad).chain_update(msg).finalize();
    let mac = Sha1::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize();
    mac.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Matrix client acting as one user.
#[derive(Clone)]
pub struct Mx {
    http: Client,
    base: String,
    token: String,
    pub user_id: String,
    txn: Arc<AtomicU64>,
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn json_of(resp: reqwest::Response, what: &str) -> Result<Value> {
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("{what}: {status} {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{what}: not JSON"))
}

impl Mx {
    pub async fn register(http: &Client, base: &str, secret: &str, username: &str) -> Result<Mx> {
        let url = format!("{base}/_synapse/admin/v1/register");
        let nonce = json_of(http.get(&url).send().await?, "register nonce").await?["nonce"]
            .as_str()
            .context("no nonce")?
            .to_owned();
        let password = format!("pw-{username}-benchmark");
        let msg = format!("{nonce}\0{username}\0{password}\0notadmin");
        let body = json!({ "nonce": nonce, "username": username, "password": password,
            "admin": false, "mac": hmac_sha1_hex(secret.as_bytes(), msg.as_bytes()) });
        let v = json_of(http.post(&url).json(&body).send().await?, "register").await?;
        Ok(Mx {
            http: http.clone(),
            base: base.trim_end_matches('/').to_owned(),
            token: v["access_token"]
                .as_str()
                .context("no access_token")?
                .to_owned(),
            user_id: v["user_id"].as_str().context("no user_id")?.to_owned(),
            txn: Arc::new(AtomicU64::new(0)),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/_matrix/client/v3{path}", self.base)
    }

    pub async fn create_room(&self, name: &str) -> Result<String> {
        let v = json_of(
            self.http
                .post(self.url("/createRoom"))
                .bearer_auth(&self.token)
                .json(&json!({ "preset": "public_chat", "name": name }))
                .send()
                .await?,
            "createRoom",
        )
        .await?;
        Ok(v["room_id"].as_str().context("no room_id")?.to_owned())
    }

    pub async fn join(&self, room: &str) -> Result<()> {
        json_of(
            self.http
                .post(self.url(&format!("/join/{}", enc(room))))
                .bearer_auth(&self.token)
                .json(&json!({}))
                .send()
                .await?,
            "join",
        )
        .await
        .map(|_| ())
    }

    pub async fn send(&self, room: &str, body: &str) -> Result<()> {
        let txn = self.txn.fetch_add(1, Ordering::Relaxed);
        let resp = self
            .http
            .put(self.url(&format!(
                "/rooms/{}/send/m.room.message/b{}",
                enc(room),
                txn
            )))
            .bearer_auth(&self.token)
            .json(&json!({ "msgtype": "m.text", "body": body }))
            .send()
            .await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            bail!("send: {status} {}", String::from_utf8_lossy(&bytes));
        }
        Ok(())
    }

    /// One `/messages` page forward from `from` (the room's start when `None`).
    pub async fn messages(
        &self,
        room: &str,
        from: Option<&str>,
        limit: usize,
    ) -> Result<(usize, Option<String>)> {
        let mut q = vec![("dir", "f".to_owned()), ("limit", limit.to_string())];
        if let Some(t) = from {
            q.push(("from", t.to_owned()));
        }
        let v = json_of(
            self.http
                .get(self.url(&format!("/rooms/{}/messages", enc(room))))
                .bearer_auth(&self.token)
                .query(&q)
                .send()
                .await?,
            "messages",
        )
        .await?;
        let n = v["chunk"].as_array().map_or(0, Vec::len);
        Ok((n, v["end"].as_str().map(str::to_owned)))
    }

    /// `/sync` with a small timeline filter; answers `next_batch` and the body.
    pub async fn sync(&self, since: Option<&str>, timeout_ms: u64) -> Result<(String, Value)> {
        let filter = r#"{"room":{"timeline":{"limit":20},"state":{"lazy_load_members":true}},"presence":{"types":[]},"account_data":{"types":[]}}"#;
        let mut q = vec![
            ("timeout", timeout_ms.to_string()),
            ("filter", filter.to_owned()),
        ];
        if let Some(s) = since {
            q.push(("since", s.to_owned()));
        }
        let v = json_of(
            self.http
                .get(self.url("/sync"))
                .bearer_auth(&self.token)
                .query(&q)
                .send()
                .await?,
            "sync",
        )
        .await?;
        Ok((
            v["next_batch"]
                .as_str()
                .context("no next_batch")?
                .to_owned(),
            v,
        ))
    }
}

fn load_report(name: &str, measure: &str, load: &Load) -> Report {
    let mut r = Report::new(name, LOAD_COLUMNS);
    r.row(load.row(measure, "msgs/s", None));
    r.rows[0][5] = String::new();
    r.figures = json!({ "send": load });
    r
}

/// Sequential sends into one room.
pub async fn send_seq(base: &str, secret: &str, n: usize) -> Result<Report> {
    let http = http_client();
    let tag = run_tag();
    let a = Mx::register(&http, base, secret, &format!("seq{tag}a")).await?;
    let room = a.create_room("send-seq").await?;
    for i in 0..5 {
        a.send(&room, &format!("warm-up {i}")).await?;
    }
    let (a, room) = (&a, &room);
    let load = run_seq(
        "synapse send-seq",
        n,
        Duration::from_secs(100),
        |i| async move {
            a.send(room, &format!("send-seq message number {i:06}"))
                .await
        },
    )
    .await?;
    Ok(load_report(
        "synapse-send-seq",
        "PUT .../send (sequential)",
        &load,
    ))
}

async fn users_in_rooms(
    base: &str,
    secret: &str,
    users: usize,
    rooms: usize,
    label: &str,
) -> Result<(Vec<Mx>, Vec<String>)> {
    let http = http_client();
    let tag = run_tag();
    let (b, s) = (base.to_owned(), secret.to_owned());
    let users = concurrently(
        &format!("{label}: register"),
        (0..users).collect(),
        4,
        move |i| {
            let (http, b, s, tag) = (http.clone(), b.clone(), s.clone(), tag.clone());
            async move { Mx::register(&http, &b, &s, &format!("{tag}u{i}")).await }
        },
    )
    .await?;
    let mut ids = Vec::new();
    for g in 0..rooms {
        ids.push(users[0].create_room(&format!("{label} {g}")).await?);
    }
    let pairs: Vec<(Mx, String)> = users[1..]
        .iter()
        .flat_map(|u| ids.iter().map(move |r| (u.clone(), r.clone())))
        .collect();
    concurrently(&format!("{label}: join"), pairs, 4, |(u, r)| async move {
        u.join(&r).await
    })
    .await?;
    Ok((users, ids))
}

/// `clients` users, all in `rooms` rooms, each sending to a random room.
pub async fn send_par(
    base: &str,
    secret: &str,
    clients: usize,
    rooms: usize,
    duration: Duration,
) -> Result<Report> {
    let (users, ids) = users_in_rooms(base, secret, clients, rooms, "synapse send-par").await?;
    let (users, ids) = (Arc::new(users), Arc::new(ids));
    let load = run_par(
        "synapse send-par",
        clients,
        duration,
        100_000,
        move |c, r| {
            let (u, room) = (
                users[c].clone(),
                ids[(r % ids.len() as u64) as usize].clone(),
            );
            async move { u.send(&room, &format!("send-par {r:016x}")).await }
        },
    )
    .await?;
    Ok(load_report(
        "synapse-send-par",
        &format!("PUT .../send ({clients} clients, {rooms} rooms)"),
        &load,
    ))
}

/// A room with `events` messages (sent by 8 clients), read forward with `/messages`.
pub async fn catch_up(base: &str, secret: &str, events: usize, page: usize) -> Result<Report> {
    let (users, ids) = users_in_rooms(base, secret, 8, 1, "synapse catch-up").await?;
    let users = Arc::new(users);
    let room = ids[0].clone();
    let (u, rm) = (users.clone(), room.clone());
    concurrently("synapse seed history", (0..events).collect(), 8, move |k| {
        let (u, rm) = (u[k % u.len()].clone(), rm.clone());
        async move { u.send(&rm, &format!("history message {k:08}")).await }
    })
    .await?;
    let reader = &users[0];
    let mut from: Option<String> = None;
    let (mut total, mut ms) = (0usize, Vec::new());
    let mut samples = Samples::default();
    let start = Instant::now();
    for _ in 0..(events / page.max(1) * 2 + 100) {
        if start.elapsed() > Duration::from_secs(100) {
            break;
        }
        let t = Instant::now();
        let (n, end) = reader.messages(&room, from.as_deref(), page).await?;
        samples.push(t.elapsed());
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        total += n;
        if n == 0 || end.is_none() {
            break;
        }
        from = end;
    }
    let secs = start.elapsed().as_secs_f64();
    let k = ms.len().min(10);
    let mean = |v: &[f64]| ratio(v.iter().sum(), v.len() as f64);
    let pages = Pages {
        events: total,
        pages: ms.len(),
        secs,
        events_per_sec: ratio(total as f64, secs),
        first10_ms: mean(&ms[..k]),
        last10_ms: mean(&ms[ms.len() - k..]),
        page: samples.summary(),
    };
    let mut r = Report::new(
        "synapse-catch-up",
        &[
            "measure",
            "events",
            "pages",
            "secs",
            "events/s",
            "page ms first 10",
            "page ms last 10",
        ],
    );
    r.row(vec![
        format!("GET /messages dir=f limit={page}"),
        total.to_string(),
        pages.pages.to_string(),
        f(secs, 2),
        f(pages.events_per_sec, 0),
        f(pages.first10_ms, 2),
        f(pages.last10_ms, 2),
    ]);
    r.figures = json!({ "catch_up": pages });
    Ok(r)
}

fn wake_report(name: &str, how: &str, s: &Samples) -> Report {
    let load = Load {
        count: s.len(),
        secs: 0.0,
        per_sec: 0.0,
        latency: s.summary(),
    };
    let mut r = Report::new(name, &["measure", "rounds", "p50 ms", "p99 ms", "max ms"]);
    r.row(vec![
        how.to_owned(),
        s.len().to_string(),
        f(load.latency.p50_ms, 2),
        f(load.latency.p99_ms, 2),
        f(load.latency.max_ms, 2),
    ]);
    r.figures = json!({ "wakeup": load });
    r
}

/// Send → `/sync` long-poll wake-up on Synapse: the receiver's long-poll is parked before the
/// send starts; the latency runs from the start of the send to the poll's answer.
pub async fn wakeup(base: &str, secret: &str, rounds: usize) -> Result<Report> {
    let (users, ids) = users_in_rooms(base, secret, 2, 1, "synapse wake-up").await?;
    let (sender, receiver, room) = (users[0].clone(), users[1].clone(), ids[0].clone());
    let (mut since, _) = receiver.sync(None, 0).await?;
    let tag = run_tag();
    let mut s = Samples::default();
    for i in 0..rounds {
        let marker = format!("wake-{tag}-{i}");
        let r = receiver.clone();
        let from = since.clone();
        let poll = tokio::spawn(async move { r.sync(Some(&from), 10_000).await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        let t0 = Instant::now();
        sender.send(&room, &marker).await?;
        let (mut next, mut body) = poll.await??;
        while !body.to_string().contains(&marker) && t0.elapsed() < Duration::from_secs(10) {
            (next, body) = receiver.sync(Some(&next), 10_000).await?;
        }
        anyhow::ensure!(
            body.to_string().contains(&marker),
            "wake-up {i} never arrived"
        );
        s.push(t0.elapsed());
        since = next;
    }
    Ok(wake_report(
        "synapse-wakeup",
        "send → /sync long-poll answer",
        &s,
    ))
}

/// Reads the SSE stream until `needle` shows up (10 s at most); consumes the text up to it.
async fn wait_for(buf: &mut String, needle: &str, resp: &mut reqwest::Response) -> Result<()> {
    let fut = async {
        loop {
            if let Some(pos) = buf.find(needle) {
                buf.drain(..pos + needle.len());
                return Ok::<_, anyhow::Error>(());
            }
            match resp.chunk().await? {
                Some(c) => buf.push_str(&String::from_utf8_lossy(&c)),
                None => bail!("the SSE stream ended"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .with_context(|| format!("{needle:?} did not arrive on /sse within 10 s"))?
}

/// Send → push on imsync's SSE stream (`GET /sse?token=`): from the start of the send to the
/// frame carrying the message.
pub async fn imsync_wakeup(base: &str, rounds: usize) -> Result<Load> {
    let http = http_client();
    let anon = Api::new(&http, base);
    let tag = run_tag();
    let sender = anon.register(&format!("wk{tag}a")).await?;
    let receiver = anon.register(&format!("wk{tag}b")).await?;
    let group = sender
        .create_group("wake-up", std::slice::from_ref(&receiver.username))
        .await?;
    let mut resp = http
        .get(format!(
            "{base}/sse?token={}",
            receiver.token.clone().unwrap_or_default()
        ))
        .header("accept", "text/event-stream")
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "GET /sse: {}", resp.status());
    let mut buf = String::new();
    wait_for(&mut buf, "authenticated", &mut resp).await?;
    let mut s = Samples::default();
    for i in 0..rounds {
        let marker = format!("wake-{tag}-{i}");
        tokio::time::sleep(Duration::from_millis(30)).await;
        let t0 = Instant::now();
        let (sent, got) = tokio::join!(
            sender.send(&group, &marker),
            wait_for(&mut buf, &marker, &mut resp)
        );
        sent?;
        got?;
        s.push(t0.elapsed());
    }
    Ok(Load {
        count: s.len(),
        secs: 0.0,
        per_sec: 0.0,
        latency: s.summary(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn hmac_sha1_matches_rfc_vector() {
        assert_eq!(
            super::hmac_sha1_hex(b"key", b"The quick brown fox jumps over the lazy dog"),
            "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"
        );
    }
}
