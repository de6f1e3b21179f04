//! `ddp-fanout` and `wk-fanout`: the `fanout` load (one group, every member connected, one
//! sender at a fixed rate through the native HTTP API) delivered over another face's realtime
//! protocol, and over the native `/ws` in the same run (same server, users, group and rate), so
//! that the ratio of the two says what the face's path costs.
//!
//! The face's phase runs first, on a server that has held no realtime connection yet, so that
//! the server's resident memory before and after its connections opened gives the memory per
//! idle connection (as `idle-ws` measures it) without memory freed by an earlier phase being
//! reused. Then the face's connections close and the same users connect to `/ws`.

use crate::client::Api;
use crate::ddp;
use crate::realtime::{
    connect_listeners_with, first_distinct, one_group, settle, timed_phase, Phase, Reader,
};
use crate::report::{f, ratio, Report};
use crate::server::rss_kib_of;
use crate::wk;
use crate::ws;
use anyhow::Result;
use serde_json::{json, Value};
use std::time::Duration;

/// The face whose realtime protocol is measured beside `/ws`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// Rocket.Chat's DDP on `/websocket`: `stream-room-messages` of the group.
    Ddp,
    /// WuKongIM's binary protocol on `/v1/wukongim/ws`: RECV, decrypted by the client.
    WuKongIm,
}

impl Face {
    fn scenario(self) -> &'static str {
        match self {
            Face::Ddp => "ddp-fanout",
            Face::WuKongIm => "wk-fanout",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Face::Ddp => "DDP stream-room-messages",
            Face::WuKongIm => "WuKongIM RECV (decrypted)",
        }
    }

    fn origin(self) -> char {
        match self {
            Face::Ddp => 'd',
            Face::WuKongIm => 'w',
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Face::Ddp => "dd",
            Face::WuKongIm => "wk",
        }
    }
}

/// Sizes of `ddp-fanout` and `wk-fanout` (both phases).
#[derive(Debug, Clone, Copy)]
pub struct FaceFanout {
    /// Group members, every one connected (the sender too); at most 1000.
    pub members: usize,
    /// Messages per phase.
    pub messages: usize,
    pub rate: f64,
}

impl FaceFanout {
    pub fn scaled(scale: f64) -> FaceFanout {
        FaceFanout {
            members: ((1000.0 * scale).round() as usize).clamp(2, 1000),
            messages: ((1000.0 * scale).round() as usize).max(5),
            rate: 100.0,
        }
    }
}

/// One member's connection of `face`, logged in and listening to the group.
async fn connect_face(
    face: Face,
    base: String,
    user: Api,
    group: String,
) -> Result<(ws::Ws, Reader)> {
    let token = user.token.clone().unwrap_or_default();
    Ok(match face {
        Face::Ddp => (
            ddp::subscribe(&base, &token, &group).await?,
            Box::new(ddp::reading) as Reader,
        ),
        Face::WuKongIm => {
            let c = wk::connect(
                &base,
                &user.user_id,
                &token,
                &format!("bench-{}", user.username),
            )
            .await?;
            (c.ws, Box::new(wk::reading(c.cipher)) as Reader)
        }
    })
}

fn phase_json(ph: &Phase) -> Value {
    json!({
        "messages": ph.sent,
        "deliveries": { "expected": ph.want, "received": ph.delivered, "secs": ph.deliver_secs,
            "per_sec": ph.deliveries_per_sec, "latency": ph.latency },
        "send": ph.send,
        "server_cpu": ph.cpu,
        "server_cpu_us_per_delivery": ph.cpu.server_us_per(ph.delivered),
        "rejected": ph.rejected,
        "closed_early": ph.closed.len(),
    })
}

fn phase_row(measure: String, ph: &Phase) -> Vec<String> {
    vec![
        measure,
        format!("{} of {}", ph.delivered, ph.want),
        format!("{} deliveries/s", f(ph.deliveries_per_sec, 0)),
        f(ph.latency.p50_ms, 3),
        f(ph.latency.p99_ms, 3),
        f(ph.latency.max_ms, 3),
        ph.cpu
            .server_us_per(ph.delivered)
            .map_or("n/a".into(), |us| f(us, 1)),
    ]
}

fn phase_notes(r: &mut Report, label: &str, ph: &Phase) {
    if !ph.closed.is_empty() {
        r.note(format!(
            "{label}: {} connections ended early: {}",
            ph.closed.len(),
            first_distinct(&ph.closed)
        ));
    }
    if (ph.delivered as u64) < ph.want {
        r.note(format!(
            "{label}: {} deliveries missing after waiting 20 s",
            ph.want - ph.delivered as u64
        ));
    }
    if ph.rejected > 0 {
        r.note(format!(
            "{label}: {} deliveries refused by the client (msgKey or decryption)",
            ph.rejected
        ));
    }
}

/// `ddp-fanout` / `wk-fanout` against the server at `base` whose process is `server_pid` (for
/// its memory and CPU time; `None` reports neither).
pub async fn face_fanout(
    base: &str,
    face: Face,
    p: FaceFanout,
    server_pid: Option<u32>,
) -> Result<Report> {
    let (users, group) = one_group(base, p.members, face.prefix()).await?;
    let sender = users[0].clone();
    let rss = || server_pid.and_then(rss_kib_of);
    // The face's connections, on a server that has not held any yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss();
    let targets: Vec<(String, Api, String)> = users
        .iter()
        .map(|u| (base.to_owned(), u.clone(), group.clone()))
        .collect();
    // In two halves: the growth over the second half is what one more connection costs, without
    // what the first connections pay once (the group's member list in the hub, caches, pools).
    let (first, second) = targets.split_at(targets.len() / 2);
    let connect = move |(b, u, g)| connect_face(face, b, u, g);
    let label = format!("connect {} clients", face.scenario());
    let mut listeners = connect_listeners_with(&label, first.to_vec(), 32, connect).await?;
    settle(
        &listeners.tally.other,
        Duration::from_millis(700),
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_half = rss();
    listeners.add(&label, second.to_vec(), 32, connect).await?;
    settle(
        &listeners.tally.other,
        Duration::from_millis(700),
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let face_connect_secs = listeners.connect_secs;
    let rss_idle = rss();
    let per_conn = match (rss_before, rss_idle) {
        (Some(a), Some(b)) => Some(ratio((b.saturating_sub(a) * 1024) as f64, p.members as f64)),
        _ => None,
    };
    let per_conn_marginal = match (rss_half, rss_idle) {
        (Some(a), Some(b)) if !second.is_empty() => Some(ratio(
            (b.saturating_sub(a) * 1024) as f64,
            second.len() as f64,
        )),
        _ => None,
    };
    let sizes = (p.messages, p.rate, p.members);
    let face_phase = timed_phase(
        &format!("{} deliveries", face.scenario()),
        listeners,
        &sender,
        &group,
        sizes,
        face.origin(),
        server_pid,
    )
    .await?;
    // The same users on /ws.
    let native = connect_listeners_with(
        "connect /ws clients",
        targets,
        32,
        |(b, u, _): (String, Api, String)| async move {
            let socket = ws::connect(&b, &u.token.clone().unwrap_or_default()).await?;
            Ok((socket, Box::new(ws::native_reading) as Reader))
        },
    )
    .await?;
    let native_connect_secs = native.connect_secs;
    // Every /ws connection announces its presence to the members already connected: wait until
    // that burst is over before measuring.
    let presence = settle(
        &native.tally.other,
        Duration::from_millis(700),
        Duration::from_secs(30),
    )
    .await;
    let native_phase = timed_phase(
        "native /ws deliveries",
        native,
        &sender,
        &group,
        sizes,
        'n',
        server_pid,
    )
    .await?;

    let p99_ratio = ratio(face_phase.latency.p99_ms, native_phase.latency.p99_ms);
    let p50_ratio = ratio(face_phase.latency.p50_ms, native_phase.latency.p50_ms);
    let mut r = Report::new(
        face.scenario(),
        &[
            "measure",
            "count",
            "rate",
            "p50 ms",
            "p99 ms",
            "max ms",
            "server CPU µs / delivery",
        ],
    );
    r.row(phase_row(
        format!("send → {} ({} receivers)", face.name(), p.members),
        &face_phase,
    ));
    r.row(phase_row(
        "send → native /ws (same users, next)".to_owned(),
        &native_phase,
    ));
    r.row(vec![
        format!(
            "ratio {} / native",
            face.scenario().trim_end_matches("-fanout")
        ),
        String::new(),
        String::new(),
        f(p50_ratio, 2),
        f(p99_ratio, 2),
        f(
            ratio(face_phase.latency.max_ms, native_phase.latency.max_ms),
            2,
        ),
        match (
            face_phase.cpu.server_us_per(face_phase.delivered),
            native_phase.cpu.server_us_per(native_phase.delivered),
        ) {
            (Some(a), Some(b)) => f(ratio(a, b), 2),
            _ => "n/a".into(),
        },
    ]);
    let mut figures = json!({
        "members": p.members, "messages_per_phase": p.messages, "target_rate": p.rate,
        "face": phase_json(&face_phase),
        "native": phase_json(&native_phase),
        "ratio_p50": p50_ratio,
        "ratio_p99": p99_ratio,
        "connect_secs": { "face": face_connect_secs, "native": native_connect_secs },
        "presence_frames_while_connecting_native": presence,
        "rss_kib_before_face_connections": rss_before,
        "rss_kib_with_face_connections": rss_idle,
        "rss_kib_with_half_of_them": rss_half,
        "bytes_per_idle_face_connection": per_conn,
        "bytes_per_idle_face_connection_second_half": per_conn_marginal,
    });
    if let Some(b) = per_conn {
        r.note(format!(
            "server memory per idle {} connection (logged in and listening, before any send): \
             {} KiB over all {} connections (RSS {} → {} MiB), {} KiB over the second half \
             (RSS {} → {} MiB)",
            face.scenario().trim_end_matches("-fanout"),
            f(b / 1024.0, 1),
            p.members,
            f(rss_before.unwrap_or(0) as f64 / 1024.0, 1),
            f(rss_idle.unwrap_or(0) as f64 / 1024.0, 1),
            per_conn_marginal.map_or("n/a".into(), |m| f(m / 1024.0, 1)),
            f(rss_half.unwrap_or(0) as f64 / 1024.0, 1),
            f(rss_idle.unwrap_or(0) as f64 / 1024.0, 1),
        ));
    }
    match face {
        Face::Ddp => {
            figures["goal"] =
                json!("p99 ≤ 1.5× native /ws of the same run; ≤ 16 KiB per idle DDP connection");
            r.note(format!(
                "one group of {} members; each logged in over DDP (`connect`, `login` with the \
                 resume token, `sub` stream-room-messages of the group; the server's pings \
                 answered), then the same users on /ws; one sender through POST /api/im/messages \
                 at {} msgs/s, {} messages per phase; latency from the start of the send to the \
                 frame's arrival",
                p.members, p.rate, p.messages
            ));
        }
        Face::WuKongIm => {
            // The payload the server encrypts per RECV here: the text message's JSON.
            let plain = format!(r#"{{"type":1,"content":"{}"}}"#, ws::stamp('w', "000000"));
            let crypto_us = wk::recv_crypto_us(plain.as_bytes(), 20_000);
            let with = face_phase.cpu.server_us_per(face_phase.delivered);
            figures["server_crypto_us_per_recv"] = json!(crypto_us);
            figures["server_cpu_us_per_delivery_without_encryption_estimate"] =
                json!(with.map(|w| (w - crypto_us).max(0.0)));
            figures["goal"] = json!("p99 ≤ 1.5× native /ws of the same run");
            r.row(vec![
                "server CPU per RECV: encryption (payload + msgKey, timed on the server's code)"
                    .into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                f(crypto_us, 2),
            ]);
            r.row(vec![
                "server CPU per RECV without encryption (measured − encryption)".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                with.map_or("n/a".into(), |w| f((w - crypto_us).max(0.0), 1)),
            ]);
            r.note(format!(
                "one group of {} members; each connected over WebSocket to /v1/wukongim/ws \
                 (CONNECT with the login token and an X25519 key; every RECV's msgKey checked and \
                 its payload decrypted with AES-128-CBC before it is timed; no RECVACK sent), \
                 then the same users on /ws; one sender through POST /api/im/messages at {} \
                 msgs/s, {} messages per phase",
                p.members, p.rate, p.messages
            ));
            r.note(
                "version 2 of the protocol has no unencrypted mode (every connection gets a key \
                 in CONNACK, every RECV payload and msgKey is encrypted with it), so the server \
                 cannot be run without encryption: the figure without it is the measured CPU \
                 less the time the server's own encryption code takes for one RECV of this \
                 payload, timed in the harness's process",
            );
        }
    }
    phase_notes(&mut r, face.scenario(), &face_phase);
    phase_notes(&mut r, "native /ws", &native_phase);
    r.note(
        "the face's phase runs first (memory measured on a server that held no realtime \
         connection before), then the native one; server CPU is the server process's user + \
         system time from the first send until the deliveries stopped, divided by the deliveries",
    );
    r.figures = figures;
    Ok(r)
}
