//! The realtime scenarios: `fanout` (one sender, a thousand WebSocket receivers), `idle-ws`
//! (memory per idle connection) and `multi-node` (several servers on one PostgreSQL, load on all,
//! send → receive across nodes).

use crate::client::{http_client, Api};
use crate::cpu::{CpuMeter, CpuUse};
use crate::report::{f, ratio, Report};
use crate::scenarios::{concurrently, par_setup, run_par, run_tag, Load, SendPar};
use crate::stats::Samples;
use crate::stats::Summary;
use crate::ws::{self, now_us, Heard, Reading, Tally};
use anyhow::{Context, Result};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Listeners started by `connect_listeners`, and how to stop them.
pub(crate) struct Listeners {
    pub tally: Arc<Tally>,
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<Heard>>,
    pub connect_secs: f64,
}

impl Listeners {
    /// Stops every listener; answers what they heard.
    pub async fn finish(self) -> Result<Vec<Heard>> {
        let _ = self.stop.send(true);
        let mut out = Vec::with_capacity(self.handles.len());
        for h in self.handles {
            out.push(h.await.context("listener panicked")?);
        }
        Ok(out)
    }
}

/// How a listener reads what its protocol sends (see [`ws::Reading`]).
pub(crate) type Reader = Box<dyn FnMut(Message) -> Reading + Send>;

/// Connects one `/ws` listener per `(base, token)`, `concurrency` handshakes at a time; each
/// starts reading at once (so nothing queues up on the server while the others connect).
async fn connect_listeners(
    label: &str,
    targets: Vec<(String, String)>,
    concurrency: usize,
) -> Result<Listeners> {
    connect_listeners_with(label, targets, concurrency, |(base, token)| async move {
        let socket = ws::connect(&base, &token).await?;
        Ok((socket, Box::new(ws::native_reading) as Reader))
    })
    .await
}

/// Connects one listener per target with `connect` (which answers the open socket and how to
/// read it), `concurrency` at a time; each starts reading at once.
pub(crate) async fn connect_listeners_with<T, F, Fut>(
    label: &str,
    targets: Vec<T>,
    concurrency: usize,
    connect: F,
) -> Result<Listeners>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(ws::Ws, Reader)>> + Send + 'static,
{
    let (stop, _) = watch::channel(false);
    let mut listeners = Listeners {
        tally: Arc::new(Tally::default()),
        stop,
        handles: Vec::new(),
        connect_secs: 0.0,
    };
    listeners.add(label, targets, concurrency, connect).await?;
    Ok(listeners)
}

impl Listeners {
    /// Connects more listeners (see [`connect_listeners_with`]) that share these ones' tally
    /// and stop signal.
    pub(crate) async fn add<T, F, Fut>(
        &mut self,
        label: &str,
        targets: Vec<T>,
        concurrency: usize,
        connect: F,
    ) -> Result<()>
    where
        T: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(ws::Ws, Reader)>> + Send + 'static,
    {
        let (t, stop_rx) = (self.tally.clone(), self.stop.subscribe());
        let connect = Arc::new(connect);
        let started = Instant::now();
        let handles = concurrently(label, targets, concurrency, move |target| {
            let (t, rx, connect) = (t.clone(), stop_rx.clone(), connect.clone());
            async move {
                let (socket, reader) = connect(target).await?;
                Ok(tokio::spawn(ws::listen_with(socket, rx, t, reader)))
            }
        })
        .await?;
        self.handles.extend(handles);
        self.connect_secs += started.elapsed().as_secs_f64();
        Ok(())
    }
}

/// Waits until `counter` has not moved for `quiet` (or `limit` passed); answers its value.
pub(crate) async fn settle(
    counter: &std::sync::atomic::AtomicU64,
    quiet: Duration,
    limit: Duration,
) -> u64 {
    let started = Instant::now();
    let (mut last, mut since) = (counter.load(Ordering::Relaxed), Instant::now());
    while started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = counter.load(Ordering::Relaxed);
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet {
            break;
        }
    }
    last
}

/// Latency samples per origin of what `heard` timed; also answers the early closes.
pub(crate) fn collect(heard: &[Heard], origins: &[char]) -> (Vec<Samples>, Vec<String>) {
    let mut per = vec![Samples::default(); origins.len()];
    let mut closed = Vec::new();
    for h in heard {
        for (o, d) in &h.latency {
            if let Some(i) = origins.iter().position(|x| x == o) {
                per[i].push(*d);
            }
        }
        if let Some(c) = &h.closed {
            closed.push(c.clone());
        }
    }
    (per, closed)
}

pub(crate) fn first_distinct(closed: &[String]) -> String {
    let mut v: Vec<&String> = closed.iter().collect();
    v.sort();
    v.dedup();
    v.iter()
        .take(3)
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Sizes of `fanout`.
#[derive(Debug, Clone, Copy)]
pub struct Fanout {
    /// Group members, every one connected by WebSocket (the sender included); at most 1000.
    pub members: usize,
    pub messages: usize,
    /// Messages per second the sender aims at.
    pub rate: f64,
}

impl Fanout {
    pub fn scaled(scale: f64) -> Fanout {
        Fanout {
            members: ((1000.0 * scale).round() as usize).clamp(2, 1000),
            messages: ((1000.0 * scale).round() as usize).max(5),
            rate: 100.0,
        }
    }
}

/// `members` new users (names starting with `prefix`) in one group the first of them created;
/// answers the users and the group's id.
pub(crate) async fn one_group(
    base: &str,
    members: usize,
    prefix: &str,
) -> Result<(Vec<Api>, String)> {
    let http = http_client();
    let anon = Api::new(&http, base);
    let tag = format!("{prefix}{}", run_tag());
    let users = concurrently(
        "register users",
        (0..members).collect(),
        16,
        move |u: usize| {
            let (a, tag) = (anon.clone(), tag.clone());
            async move { a.register(&format!("{tag}u{u}")).await }
        },
    )
    .await?;
    let others: Vec<String> = users[1..].iter().map(|u| u.username.clone()).collect();
    let group = users[0]
        .create_group(&format!("fanout {members}"), &others)
        .await?;
    Ok((users, group))
}

/// `fanout`: `members` WebSocket clients in one group; the owner sends `messages` at `rate`
/// through HTTP; every delivery is timed from the start of its send.
pub async fn fanout(base: &str, p: Fanout) -> Result<Report> {
    let (users, group) = one_group(base, p.members, "fo").await?;
    let sender = users[0].clone();
    let targets = users
        .iter()
        .map(|u| (base.to_owned(), u.token.clone().unwrap_or_default()))
        .collect();
    let listeners = connect_listeners("connect WebSockets", targets, 32).await?;
    let connect_secs = listeners.connect_secs;
    // Every connection announces its presence to the members already connected: wait until
    // that burst is over before measuring.
    let presence = settle(
        &listeners.tally.other,
        Duration::from_millis(700),
        Duration::from_secs(30),
    )
    .await;
    let ph = timed_phase(
        "fanout deliveries",
        listeners,
        &sender,
        &group,
        (p.messages, p.rate, p.members),
        'f',
        None,
    )
    .await?;
    let (lat, delivered, want, send, closed) = (
        ph.latency,
        ph.delivered,
        ph.want,
        ph.send,
        ph.closed.clone(),
    );
    let (sent, deliver_secs, deliveries_per_sec) =
        (ph.sent, ph.deliver_secs, ph.deliveries_per_sec);
    let mut r = Report::new(
        "fanout",
        &["measure", "count", "rate", "p50 ms", "p99 ms", "max ms"],
    );
    r.row(vec![
        format!("send → WebSocket receive ({} receivers)", p.members),
        format!("{delivered} of {want}"),
        format!("{} deliveries/s", f(deliveries_per_sec, 0)),
        f(lat.p50_ms, 3),
        f(lat.p99_ms, 3),
        f(lat.max_ms, 3),
    ]);
    r.row(vec![
        format!("POST /api/im/messages (target {} msgs/s)", p.rate),
        send.count.to_string(),
        format!("{} msgs/s", f(send.per_sec, 1)),
        f(send.latency.p50_ms, 3),
        f(send.latency.p99_ms, 3),
        f(send.latency.max_ms, 3),
    ]);
    r.note(format!(
        "one group of {} members, all connected to /ws (the sender too); {} connections opened in \
         {} s, {presence} presence frames received while they connected (waited for quiet before \
         sending)",
        p.members,
        p.members,
        f(connect_secs, 1)
    ));
    if !closed.is_empty() {
        r.note(format!(
            "{} connections ended early: {}",
            closed.len(),
            first_distinct(&closed)
        ));
    }
    if (delivered as u64) < want {
        r.note(format!(
            "{} deliveries missing after waiting 20 s",
            want - delivered as u64
        ));
    }
    r.figures = json!({
        "members": p.members, "messages": sent, "target_rate": p.rate,
        "deliveries": { "expected": want, "received": delivered, "secs": deliver_secs,
            "per_sec": deliveries_per_sec, "latency": lat },
        "send": send,
        "connect_secs": connect_secs,
        "presence_frames_while_connecting": presence,
        "closed_early": closed.len(),
        "goal": "p99 send → receive < 50 ms at 100 msgs/s into 1000 receivers",
    });
    Ok(r)
}

/// What one timed fan-out phase measured.
pub(crate) struct Phase {
    pub sent: usize,
    pub want: u64,
    pub delivered: usize,
    pub latency: Summary,
    pub deliver_secs: f64,
    pub deliveries_per_sec: f64,
    pub send: Load,
    pub closed: Vec<String>,
    pub rejected: u64,
    /// From the first send until the deliveries stopped.
    pub cpu: CpuUse,
}

/// One sender sends `messages` into `group` at `rate` through the native HTTP API, each stamped
/// with `origin`, while `listeners` (`receivers` of them) time every delivery; then stops the
/// listeners. `server_pid` is the process whose CPU time the phase reports.
pub(crate) async fn timed_phase(
    label: &str,
    listeners: Listeners,
    sender: &Api,
    group: &str,
    (messages, rate, receivers): (usize, f64, usize),
    origin: char,
    server_pid: Option<u32>,
) -> Result<Phase> {
    let expected = (messages * receivers) as u64;
    let progress = crate::progress::Progress::start(label, expected, "deliveries");
    let watch_progress = {
        let (t, done) = (listeners.tally.clone(), progress.done.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                done.store(t.delivered.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        })
    };
    let meter = CpuMeter::start(server_pid);
    // The sender: one send per tick, each in its own task so a slow answer does not delay the
    // next one; at most 64 in flight, and no new send after 60 s.
    let first_send_us = now_us();
    let send_started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
    let mut sends = tokio::task::JoinSet::new();
    let mut sent = 0usize;
    for k in 0..messages {
        tick.tick().await;
        if send_started.elapsed() > Duration::from_secs(60) {
            break;
        }
        let permit = in_flight.clone().acquire_owned().await?;
        let (api, group) = (sender.clone(), group.to_owned());
        sends.spawn(async move {
            let t = Instant::now();
            let r = api
                .send(&group, &ws::stamp(origin, &format!("{k:06}")))
                .await;
            drop(permit);
            r.map(|_| t.elapsed())
        });
        sent += 1;
    }
    let mut send_lat = Samples::with_capacity(sent);
    while let Some(r) = sends.join_next().await {
        send_lat.push(r.context("send task panicked")??);
    }
    let send_secs = send_started.elapsed().as_secs_f64();
    // Wait for the deliveries to arrive (at most 20 s after the last send).
    let want = (sent * receivers) as u64;
    let drain_started = Instant::now();
    while listeners.tally.delivered.load(Ordering::Relaxed) < want
        && drain_started.elapsed() < Duration::from_secs(20)
        && !stalled(&listeners.tally)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu = meter.stop();
    watch_progress.abort();
    progress.done.store(
        listeners.tally.delivered.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
    progress.finish().await;
    let last_us = listeners.tally.last_delivery_us.load(Ordering::Relaxed);
    let rejected = listeners.tally.rejected.load(Ordering::Relaxed);
    let heard = listeners.finish().await?;
    let (per, closed) = collect(&heard, &[origin]);
    let delivered = per[0].len();
    let deliver_secs = last_us.saturating_sub(first_send_us) as f64 / 1e6;
    Ok(Phase {
        sent,
        want,
        delivered,
        latency: per[0].summary(),
        deliver_secs,
        deliveries_per_sec: ratio(delivered as f64, deliver_secs),
        send: Load {
            count: send_lat.len(),
            secs: send_secs,
            per_sec: ratio(send_lat.len() as f64, send_secs),
            latency: send_lat.summary(),
        },
        closed,
        rejected,
        cpu,
    })
}

/// True when nothing was delivered for 5 s (the rest is not coming).
fn stalled(tally: &Tally) -> bool {
    now_us().saturating_sub(tally.last_delivery_us.load(Ordering::Relaxed)) > 5_000_000
}

/// Sizes of `idle-ws`.
#[derive(Debug, Clone, Copy)]
pub struct IdleWs {
    pub connections: usize,
    /// Users whose tokens the connections share.
    pub users: usize,
}

impl IdleWs {
    pub fn scaled(scale: f64) -> IdleWs {
        let connections = ((10_000.0 * scale).round() as usize).max(10);
        IdleWs {
            connections,
            users: ((100.0 * scale).ceil() as usize)
                .clamp(2, 100)
                .min(connections),
        }
    }
}

/// The open native WebSockets (`imsync_connections_open{protocol="native_ws"}`) from
/// `GET /metrics`, if the server exports them.
async fn realtime_gauge(api: &Api) -> Option<f64> {
    let text = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("imsync_connections_open{protocol=\"native_ws\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// How long after the connections close `idle-ws` waits for the server to give their memory back.
const RELEASE_SECS: u64 = 30;

/// `idle-ws`: the server's RSS right after start; then `connections` authenticated WebSockets
/// that stay idle, its RSS with them (per connection), and its RSS while they are gone, up to
/// [`RELEASE_SECS`] after they all closed: memory a burst took should go back to the system.
/// `rss_kib` reads the server's resident set.
pub async fn idle_ws(base: &str, p: IdleWs, rss_kib: impl Fn() -> Option<u64>) -> Result<Report> {
    // The server answered its health check; a moment for what its start left running.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_start = rss_kib().context("cannot read the server's RSS")?;
    let http = http_client();
    let anon = Api::new(&http, base);
    let tag = run_tag();
    let a = anon.clone();
    let users = concurrently(
        "register users",
        (0..p.users).collect(),
        16,
        move |u: usize| {
            let (a, tag) = (a.clone(), tag.clone());
            async move { a.register(&format!("iw{tag}u{u}")).await }
        },
    )
    .await?;
    let tokens: Vec<String> = users
        .iter()
        .map(|u| u.token.clone().unwrap_or_default())
        .collect();
    // Warm the WebSocket path once, then let the server settle.
    drop(ws::connect(base, &tokens[0]).await?);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gauge_before = realtime_gauge(&anon).await;
    let before = rss_kib().context("cannot read the server's RSS")?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    let items: Vec<(String, String)> = (0..p.connections)
        .map(|i| (base.to_owned(), tokens[i % tokens.len()].clone()))
        .collect();
    let sockets = concurrently(
        "open idle WebSockets",
        items,
        64,
        move |(b, t)| async move {
            if Instant::now() >= deadline {
                return Ok(None);
            }
            ws::connect(&b, &t).await.map(Some)
        },
    )
    .await?;
    let connect_secs = started.elapsed().as_secs_f64();
    let sockets: Vec<ws::Ws> = sockets.into_iter().flatten().collect();
    let n = sockets.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib().context("cannot read the server's RSS")?;
    let gauge_after = realtime_gauge(&anon).await;
    let per_conn = ratio((after.saturating_sub(before) * 1024) as f64, n as f64);
    drop(sockets);
    let closed = Instant::now();
    // The server's RSS each second after the closes (`release[i]` at i + 1 s).
    let mut release: Vec<Option<u64>> = Vec::new();
    for s in 1..=RELEASE_SECS {
        tokio::time::sleep_until((closed + Duration::from_secs(s)).into()).await;
        release.push(rss_kib());
    }
    let gauge_released = realtime_gauge(&anon).await;
    let at = |s: usize| release.get(s - 1).copied().flatten();
    let released = at(RELEASE_SECS as usize);
    let mib = |k: u64| f(k as f64 / 1024.0, 1);
    let mut r = Report::new("idle-ws", &["measure", "value"]);
    r.row(vec!["idle connections".into(), n.to_string()]);
    r.row(vec![
        "opened in".into(),
        format!(
            "{} s ({} per s)",
            f(connect_secs, 1),
            f(ratio(n as f64, connect_secs), 0)
        ),
    ]);
    r.row(vec![
        "server RSS right after start".into(),
        format!("{} MiB", mib(at_start)),
    ]);
    r.row(vec![
        "server RSS before the connections".into(),
        format!("{} MiB", mib(before)),
    ]);
    r.row(vec![
        "server RSS with the connections".into(),
        format!("{} MiB", mib(after)),
    ]);
    r.row(vec![
        "server RSS per connection".into(),
        format!("{} bytes ({} KiB)", f(per_conn, 0), f(per_conn / 1024.0, 1)),
    ]);
    for s in [2, 10, RELEASE_SECS as usize] {
        if let Some(k) = at(s) {
            r.row(vec![
                format!("server RSS {s} s after closing them"),
                format!(
                    "{} MiB ({}× the RSS after start)",
                    mib(k),
                    f(k as f64 / at_start as f64, 2)
                ),
            ]);
        }
    }
    r.note(format!(
        "{n} connections over {} users' tokens (no shared conversations, so no presence traffic); \
         realtime-connection gauge {} before, {} with them, {} {RELEASE_SECS} s after they closed",
        p.users,
        gauge_before.map_or("n/a".into(), |g| g.to_string()),
        gauge_after.map_or("n/a".into(), |g| g.to_string()),
        gauge_released.map_or("n/a".into(), |g| g.to_string()),
    ));
    if n < p.connections {
        r.note(format!(
            "stopped by the 90 s limit after {n} of {} connections",
            p.connections
        ));
    }
    r.figures = json!({
        "connections": n, "users": p.users, "connect_secs": connect_secs,
        "rss_kib_at_start": at_start,
        "rss_kib_before": before, "rss_kib_after": after,
        "rss_kib_after_close": at(2),
        "rss_kib_released": released,
        "released_after_secs": RELEASE_SECS,
        "rss_kib_each_second_after_close": release,
        "released_to_start_ratio": released.map(|k| k as f64 / at_start as f64),
        "bytes_per_connection": per_conn,
        "realtime_gauge_before": gauge_before, "realtime_gauge_after": gauge_after,
        "realtime_gauge_released": gauge_released,
        "goal": format!("RSS after start <= 20 MiB; {RELEASE_SECS} s after the connections close, \
                         RSS <= 1.5x the RSS after start"),
    });
    Ok(r)
}

/// Sizes of `multi-node`.
#[derive(Debug, Clone, Copy)]
pub struct MultiNode {
    /// Users, groups and load clients as in `send-par` (clients alternate between the nodes).
    pub par: SendPar,
    /// Users with a WebSocket on node A that time the messages they receive.
    pub receivers: usize,
}

impl MultiNode {
    pub fn scaled(scale: f64) -> MultiNode {
        let par = SendPar::scaled(scale);
        MultiNode {
            receivers: 32.min(par.users),
            par,
        }
    }

    /// The load of a deployment that adds nodes for more users: `per_node` clients on each of
    /// `nodes`, where by default send-par's clients are spread over the nodes.
    pub fn clients_per_node(mut self, per_node: usize, nodes: usize) -> MultiNode {
        self.par.clients = per_node * nodes;
        self
    }
}

/// `multi-node`: the `send-par` layout on several nodes sharing one database (`bases`, node A
/// first); load client `c` sends through node `c % nodes`. `receivers` users listen on node A's
/// WebSocket and time every message they get: those sent through another node measure
/// cross-node delivery, those sent through node A the same-node path.
pub async fn multi_node(bases: &[String], p: MultiNode) -> Result<Report> {
    anyhow::ensure!(bases.len() >= 2, "multi-node needs at least 2 nodes");
    let http = http_client();
    let nodes: Vec<Api> = bases.iter().map(|b| Api::new(&http, b)).collect();
    let layout = par_setup(&nodes, &p.par, "mn").await?;
    let n_users = layout.users.len();
    let targets: Vec<(String, String)> = (0..p.receivers)
        .map(|i| {
            let u = &layout.users[i * n_users / p.receivers];
            (bases[0].clone(), u.token.clone().unwrap_or_default())
        })
        .collect();
    let listeners = connect_listeners("connect receivers on node A", targets, 16).await?;
    settle(
        &listeners.tally.other,
        Duration::from_millis(300),
        Duration::from_secs(10),
    )
    .await;
    let origin = |node: usize| (b'A' + node as u8) as char;
    let clients: Arc<Vec<(Api, Vec<String>, char)>> = Arc::new(
        layout
            .clients
            .iter()
            .enumerate()
            .map(|(c, (api, mine))| {
                let node = c % bases.len();
                (api.on(&bases[node]), mine.clone(), origin(node))
            })
            .collect(),
    );
    let cl = clients.clone();
    let sends = run_par(
        "multi-node sends",
        p.par.clients,
        p.par.duration,
        10_000_000,
        move |c, r| {
            let (api, mine, o) = &cl[c];
            let (api, conv) = (api.clone(), mine[(r % mine.len() as u64) as usize].clone());
            let content = ws::stamp(*o, &format!("{r:016x}"));
            async move { api.send(&conv, &content).await }
        },
    )
    .await?;
    settle(
        &listeners.tally.delivered,
        Duration::from_secs(1),
        Duration::from_secs(10),
    )
    .await;
    let heard = listeners.finish().await?;
    let origins: Vec<char> = (0..bases.len()).map(origin).collect();
    let (per, closed) = collect(&heard, &origins);
    let local = per[0].summary();
    let mut cross = Samples::default();
    for s in &per[1..] {
        cross.extend(s.clone());
    }
    let cross = cross.summary();
    let mut r = Report::new(
        "multi-node",
        &["measure", "count", "rate", "p50 ms", "p99 ms", "max ms"],
    );
    r.row(vec![
        format!(
            "POST /api/im/messages ({} clients over {} nodes)",
            p.par.clients,
            bases.len()
        ),
        sends.count.to_string(),
        format!("{} msgs/s", f(sends.per_sec, 0)),
        f(sends.latency.p50_ms, 3),
        f(sends.latency.p99_ms, 3),
        f(sends.latency.max_ms, 3),
    ]);
    r.row(vec![
        format!(
            "cross-node: sent via node {} → WebSocket on node A",
            if bases.len() == 2 {
                "B".to_owned()
            } else {
                format!("B–{}", origin(bases.len() - 1))
            }
        ),
        cross.n.to_string(),
        format!("{} deliveries/s", f(ratio(cross.n as f64, sends.secs), 0)),
        f(cross.p50_ms, 3),
        f(cross.p99_ms, 3),
        f(cross.max_ms, 3),
    ]);
    r.row(vec![
        "same node: sent via node A → WebSocket on node A".into(),
        local.n.to_string(),
        format!("{} deliveries/s", f(ratio(local.n as f64, sends.secs), 0)),
        f(local.p50_ms, 3),
        f(local.p99_ms, 3),
        f(local.max_ms, 3),
    ]);
    r.note(format!(
        "{} nodes on one PostgreSQL database; {} users, {} groups of {} members, sends for {:.1} s; \
         {} receivers (users spread over the layout) on node A's /ws; latency from the start of \
         the HTTP send to the frame's arrival",
        bases.len(),
        p.par.users,
        p.par.groups,
        p.par.members,
        p.par.duration.as_secs_f64(),
        p.receivers
    ));
    if !closed.is_empty() {
        r.note(format!(
            "{} receivers ended early: {}",
            closed.len(),
            first_distinct(&closed)
        ));
    }
    r.figures = json!({
        "nodes": bases.len(), "send": sends, "clients": p.par.clients, "groups": p.par.groups,
        "members": p.par.members, "users": p.par.users, "receivers": p.receivers,
        "cross_node": cross, "same_node": local, "closed_early": closed.len(),
    });
    Ok(r)
}
