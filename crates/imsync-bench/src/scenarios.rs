//! The benchmark scenarios (README, "Performance") against a running imsync at a base URL, plus the
//! bounded load loops they share.

use crate::client::{http_client, Api};
use crate::cpu::CpuMeter;
use crate::lean::LeanConn;
use crate::progress::Progress;
use crate::report::{f, ratio, Report};
use crate::stats::{Samples, Summary};
use anyhow::{Context, Result};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Mutex as AsyncMutex;

/// Throughput and latency of one measured loop.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Load {
    pub count: usize,
    pub secs: f64,
    pub per_sec: f64,
    pub latency: Summary,
}

impl Load {
    pub fn from(samples: &Samples, secs: f64) -> Load {
        Load {
            count: samples.len(),
            secs,
            per_sec: ratio(samples.len() as f64, secs),
            latency: samples.summary(),
        }
    }

    /// A table row: measure, count, rate, p50, p99, and the rate relative to `floor`.
    pub fn row(&self, measure: &str, unit: &str, floor: Option<&Load>) -> Vec<String> {
        vec![
            measure.to_owned(),
            self.count.to_string(),
            format!("{} {unit}", f(self.per_sec, 0)),
            f(self.latency.p50_ms, 3),
            f(self.latency.p99_ms, 3),
            floor.map_or("1.00 (floor)".to_owned(), |fl| {
                format!("{}× floor", f(ratio(self.per_sec, fl.per_sec), 2))
            }),
        ]
    }
}

pub const LOAD_COLUMNS: &[&str] = &["measure", "count", "rate", "p50 ms", "p99 ms", "vs floor"];

/// A short tag that keeps usernames of repeated runs against one server apart.
pub fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{:06x}",
        splitmix(nanos ^ u64::from(std::process::id())) & 0xff_ffff
    )
}

/// splitmix64: a cheap, seedable generator for picking targets in load loops.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Runs `f(i)` one after the other, at most `n` times and for at most `limit`.
pub async fn run_seq<F, Fut>(label: &str, n: usize, limit: Duration, f: F) -> Result<Load>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut samples = Samples::with_capacity(n);
    let secs = seq_into(label, &mut samples, 0..n, limit, f).await?;
    Ok(Load::from(&samples, secs))
}

/// Calls `f(i)` for each `i` of `range`, one after the other, adding each latency to `samples`
/// and stopping at `limit`; answers the seconds it took.
async fn seq_into<F, Fut>(
    label: &str,
    samples: &mut Samples,
    range: std::ops::Range<usize>,
    limit: Duration,
    mut f: F,
) -> Result<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let progress = Progress::start(label, range.len() as u64, "requests");
    let start = Instant::now();
    for i in range {
        if start.elapsed() >= limit {
            break;
        }
        let t = Instant::now();
        f(i).await
            .with_context(|| format!("{label}: request {i}"))?;
        samples.push(t.elapsed());
        progress.add(1);
    }
    let secs = start.elapsed().as_secs_f64();
    progress.finish().await;
    Ok(secs)
}

/// Runs `clients` tasks, each calling `f(client, random)` in a loop for `duration` and at most
/// `max_per_client` times.
pub async fn run_par<F, Fut>(
    label: &str,
    clients: usize,
    duration: Duration,
    max_per_client: usize,
    f: F,
) -> Result<Load>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let (samples, secs) = run_par_samples(label, clients, duration, max_per_client, f).await?;
    Ok(Load::from(&samples, secs))
}

/// [`run_par`], answering the latencies and the seconds it ran, for phases summed up later.
pub async fn run_par_samples<F, Fut>(
    label: &str,
    clients: usize,
    duration: Duration,
    max_per_client: usize,
    f: F,
) -> Result<(Samples, f64)>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let f = Arc::new(f);
    let progress = Progress::start(label, 0, "requests");
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (f, done) = (f.clone(), progress.done.clone());
        tasks.spawn(async move {
            let mut samples = Samples::with_capacity(4096);
            let mut rng = splitmix(c as u64 + 1);
            for _ in 0..max_per_client {
                if Instant::now() >= deadline {
                    break;
                }
                rng = splitmix(rng);
                let t = Instant::now();
                f(c, rng).await?;
                samples.push(t.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(samples)
        });
    }
    let mut all = Samples::default();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.context("load task panicked")??);
    }
    let secs = start.elapsed().as_secs_f64();
    progress.finish().await;
    Ok((all, secs))
}

/// Maps `f` over `items` with at most `concurrency` in flight; answers results in input order.
pub async fn concurrently<T, R, F, Fut>(
    label: &str,
    items: Vec<T>,
    concurrency: usize,
    f: F,
) -> Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R>> + Send + 'static,
{
    let total = items.len();
    let progress = Progress::start(label, total as u64, "items");
    let queue = Arc::new(Mutex::new(
        items.into_iter().enumerate().collect::<VecDeque<_>>(),
    ));
    let f = Arc::new(f);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (queue, f, done) = (queue.clone(), f.clone(), progress.done.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let next = queue.lock().expect("queue lock").pop_front();
                let Some((i, item)) = next else { break };
                out.push((i, f(item).await?));
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(out)
        });
    }
    let mut slots: Vec<Option<R>> = (0..total).map(|_| None).collect();
    while let Some(r) = tasks.join_next().await {
        for (i, v) in r.context("setup task panicked")?? {
            slots[i] = Some(v);
        }
    }
    progress.finish().await;
    Ok(slots.into_iter().flatten().collect())
}

/// `send-seq`: one client, sequential keep-alive sends into one group; the floor is the same
/// loop on `GET /healthz`.
pub async fn send_seq(base: &str, n: usize) -> Result<Report> {
    let http = http_client();
    let anon = Api::new(&http, base);
    let tag = run_tag();
    let sender = anon.register(&format!("seq{tag}a")).await?;
    let peer = anon.register(&format!("seq{tag}b")).await?;
    let group = sender
        .create_group("send-seq", std::slice::from_ref(&peer.username))
        .await?;
    for i in 0..20 {
        anon.healthz().await?;
        sender.send(&group, &format!("warm-up {i}")).await?;
    }
    // The floor and the sends alternate in rounds, so that a slow spell of this shared machine
    // weighs on both sides alike; the headline ratio is the median of the rounds' ratios.
    const ROUNDS: usize = 5;
    let per_round = n.div_ceil(ROUNDS);
    let limit = Duration::from_secs(50) / ROUNDS as u32;
    let (mut floor_samples, mut send_samples) =
        (Samples::with_capacity(n), Samples::with_capacity(n));
    let (mut floor_secs, mut send_secs) = (0.0, 0.0);
    let mut round_ratios = Vec::with_capacity(ROUNDS);
    let (sender, group) = (&sender, &group);
    let counters_before = WriterCounters::read(&anon).await;
    for round in 0..ROUNDS {
        let range = round * per_round..((round + 1) * per_round).min(n);
        let (floor_before, sends_before) = (floor_samples.len(), send_samples.len());
        let label = format!("floor GET /healthz, round {}/{ROUNDS}", round + 1);
        let fs = seq_into(&label, &mut floor_samples, range.clone(), limit, |_| {
            anon.healthz()
        })
        .await?;
        let label = format!("send-seq, round {}/{ROUNDS}", round + 1);
        let ss = seq_into(&label, &mut send_samples, range, limit, |i| async move {
            sender
                .send(group, &format!("send-seq message number {i:06}"))
                .await
        })
        .await?;
        floor_secs += fs;
        send_secs += ss;
        round_ratios.push(ratio(
            (send_samples.len() - sends_before) as f64 / ss,
            (floor_samples.len() - floor_before) as f64 / fs,
        ));
    }
    let floor = Load::from(&floor_samples, floor_secs);
    let sends = Load::from(&send_samples, send_secs);
    round_ratios.sort_by(f64::total_cmp);
    let median_ratio = round_ratios[ROUNDS / 2];
    let mut r = Report::new("send-seq", LOAD_COLUMNS);
    r.row(sends.row("POST /api/im/messages (sequential)", "msgs/s", Some(&floor)));
    r.row(floor.row("GET /healthz (sequential)", "req/s", None));
    r.figures = json!({ "send": sends, "floor": floor,
        "send_vs_floor_throughput": ratio(sends.per_sec, floor.per_sec),
        "round_ratios": round_ratios,
        "median_round_ratio": median_ratio,
        "goal": "send >= 0.5x floor (median of the rounds' ratios)" });
    r.note(format!(
        "{ROUNDS} alternating rounds of floor and sends; send/floor per round, sorted: {}; median {:.2}",
        round_ratios.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", "),
        median_ratio
    ));
    if let (Some(a), Some(b)) = (counters_before, WriterCounters::read(&anon).await) {
        let (figures, note) = a.note_until(&b);
        r.figures["writer"] = figures;
        r.note(note);
    }
    if sends.count < n {
        r.note(format!(
            "stopped by the time limit after {} of {n} sends",
            sends.count
        ));
    }
    Ok(r)
}

/// The writer's counters from the server's `GET /metrics`: batches, writes run in them, and the
/// PostgreSQL writer's round trips (zero on SQLite).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WriterCounters {
    pub batches: f64,
    pub writes: f64,
    pub round_trips: f64,
}

impl WriterCounters {
    pub async fn read(api: &Api) -> Option<WriterCounters> {
        let text = api
            .http
            .get(format!("{}/metrics", api.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let value = |name: &str| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse::<f64>().ok())
        };
        Some(WriterCounters {
            batches: value("imsync_writer_batches_total")?,
            writes: value("imsync_writer_batched_writes_total")?,
            round_trips: value("imsync_pg_writer_round_trips_total").unwrap_or(0.0),
        })
    }

    /// What happened between `self` and a later reading: writes per batch, round trips per
    /// batch and per write, as a note.
    pub fn note_until(&self, later: &WriterCounters) -> (serde_json::Value, String) {
        let batches = later.batches - self.batches;
        let writes = later.writes - self.writes;
        let trips = later.round_trips - self.round_trips;
        let per = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let figures = json!({ "batches": batches, "writes": writes, "round_trips": trips,
            "writes_per_batch": per(writes, batches),
            "round_trips_per_batch": per(trips, batches),
            "round_trips_per_write": per(trips, writes) });
        let mut note = format!(
            "writer: {writes:.0} writes in {batches:.0} batches ({:.1} per batch)",
            per(writes, batches)
        );
        if trips > 0.0 {
            note.push_str(&format!(
                ", {trips:.0} PostgreSQL round trips ({:.2} per batch, {:.3} per write)",
                per(trips, batches),
                per(trips, writes)
            ));
        }
        (figures, note)
    }
}

/// Sizes of `send-par`.
#[derive(Debug, Clone, Copy)]
pub struct SendPar {
    pub clients: usize,
    pub groups: usize,
    pub members: usize,
    pub users: usize,
    pub duration: Duration,
    pub floor_duration: Duration,
}

impl SendPar {
    pub fn scaled(scale: f64) -> SendPar {
        let members = ((100.0 * scale).round() as usize).max(2);
        SendPar {
            clients: 64,
            groups: ((100.0 * scale).round() as usize).max(2),
            members,
            users: ((1000.0 * scale).round() as usize).max(members),
            duration: Duration::from_secs_f64((20.0 * scale).max(0.5)),
            floor_duration: Duration::from_secs_f64((10.0 * scale).max(0.5)),
        }
    }

    /// Members of group `g`: a window of `members` users starting at `10 g`, so with the default
    /// sizes every user is in 10 groups.
    pub fn member(&self, g: usize, i: usize) -> usize {
        (g * 10 + i) % self.users
    }
}

/// The users and groups of `send-par`, and each load client's user and groups.
pub struct ParLayout {
    pub users: Arc<Vec<Api>>,
    /// Group `g`'s id; its members are [`SendPar::member`]`(g, 0..members)`, the first its owner.
    pub groups: Vec<String>,
    /// Per client: the user it acts as and the groups it sends to.
    pub clients: Vec<(Api, Vec<String>)>,
}

/// Registers the users and creates the groups of `send-par`, round-robin over `nodes` (one
/// anonymous client per server; user `u` is registered through node `u % nodes`, group `g`
/// created through node `g % nodes`). Each answered client talks to the node its user was
/// registered on.
pub async fn par_setup(nodes: &[Api], p: &SendPar, prefix: &str) -> Result<ParLayout> {
    let tag = run_tag();
    let names: Vec<String> = (0..p.users).map(|u| format!("{prefix}{tag}u{u}")).collect();
    let nodes = Arc::new(nodes.to_vec());
    let a = nodes.clone();
    let items: Vec<(usize, String)> = names.iter().cloned().enumerate().collect();
    let users = concurrently("register users", items, 16, move |(u, n)| {
        let a = a[u % a.len()].clone();
        async move { a.register(&n).await }
    })
    .await?;
    let users = Arc::new(users);
    let specs: Vec<(usize, Vec<String>)> = (0..p.groups)
        .map(|g| {
            let members = (1..p.members)
                .map(|i| names[p.member(g, i)].clone())
                .collect();
            (g, members)
        })
        .collect();
    let (u, a) = (users.clone(), nodes.clone());
    let groups = concurrently("create groups", specs, 8, move |(g, members)| {
        let owner = u[(g * 10) % u.len()].on(&a[g % a.len()].base);
        async move { owner.create_group(&format!("par {g}"), &members).await }
    })
    .await?;
    // Client c acts as a member of group c % groups and sends to any group it belongs to.
    let mut clients = Vec::new();
    for c in 0..p.clients {
        let g0 = c % p.groups;
        let user = p.member(g0, (c / p.groups) % p.members);
        let mine: Vec<String> = (0..p.groups)
            .filter(|&g| (0..p.members).any(|i| p.member(g, i) == user))
            .map(|g| groups[g].clone())
            .collect();
        clients.push((users[user].clone(), mine));
    }
    Ok(ParLayout {
        users,
        groups,
        clients,
    })
}

/// `send-par`: `clients` senders, each picking one of its groups at random per send. With the
/// server's pid, the CPU the send phase used is reported beside the rate.
pub async fn send_par(
    base: &str,
    p: SendPar,
    name: &str,
    server_pid: Option<u32>,
) -> Result<Report> {
    let http = http_client();
    let anon = Api::new(&http, base);
    let layout = par_setup(std::slice::from_ref(&anon), &p, "par").await?;
    let mut anon_conns = Vec::with_capacity(p.clients);
    for _ in 0..p.clients {
        anon_conns.push(Arc::new(AsyncMutex::new(LeanConn::open(base, None).await?)));
    }
    let floor_meter = CpuMeter::start(server_pid);
    let floor = run_par(
        "floor GET /healthz",
        p.clients,
        p.floor_duration,
        10_000_000,
        move |c, _| {
            let conn = anon_conns[c].clone();
            async move {
                let mut conn = conn.lock().await;
                conn.expect(StatusCode::OK, Method::GET, "/healthz", None)
                    .await
            }
        },
    )
    .await?;
    let floor_cpu = floor_meter.stop();
    let mut senders = Vec::with_capacity(layout.clients.len());
    for (api, mine) in &layout.clients {
        let conn = LeanConn::open(base, api.token.as_deref()).await?;
        let paths: Vec<String> = mine
            .iter()
            .map(|g| format!("/api/im/messages/{g}"))
            .collect();
        senders.push((Arc::new(AsyncMutex::new(conn)), paths));
    }
    let counters_before = WriterCounters::read(&anon).await;
    let meter = CpuMeter::start(server_pid);
    let sends = run_par(name, p.clients, p.duration, 10_000_000, move |c, r| {
        let (conn, paths) = &senders[c];
        let conn = conn.clone();
        let path = paths[(r % paths.len() as u64) as usize].clone();
        let body = format!(r#"{{"content":"send-par {r:016x}"}}"#);
        async move {
            let mut conn = conn.lock().await;
            conn.expect(
                StatusCode::CREATED,
                Method::POST,
                &path,
                Some(body.as_bytes()),
            )
            .await
        }
    })
    .await?;
    let cpu = meter.stop();
    let mut r = Report::new(name, LOAD_COLUMNS);
    r.row(sends.row(
        &format!("POST /api/im/messages ({} clients)", p.clients),
        "msgs/s",
        Some(&floor),
    ));
    r.row(floor.row(
        &format!("GET /healthz ({} clients)", p.clients),
        "req/s",
        None,
    ));
    r.figures = json!({ "send": sends, "floor": floor,
        "send_vs_floor_throughput": ratio(sends.per_sec, floor.per_sec),
        "clients": p.clients, "groups": p.groups, "members": p.members, "users": p.users,
        "cpu": cpu, "floor_cpu": floor_cpu, "server_cpu_us_per_msg": cpu.server_us_per(sends.count),
        "goal": "send >= 20000 msgs/s" });
    if let (Some(a), Some(b)) = (counters_before, WriterCounters::read(&anon).await) {
        let (figures, note) = a.note_until(&b);
        r.figures["writer"] = figures;
        r.note(note);
    }
    if let (Some(per), Some(server), Some(bench), Some(idle), Some(steal)) = (
        cpu.server_us_per(sends.count),
        cpu.server_cores,
        cpu.bench_cores,
        cpu.machine_idle,
        cpu.machine_steal,
    ) {
        r.note(format!(
            "send phase CPU: server {server:.2} cores ({per:.1} µs per message), \
             harness {bench:.2} cores, machine idle {:.0}%, stolen by the hypervisor {:.0}%",
            idle * 100.0,
            steal * 100.0
        ));
    }
    if let Some(steal) = floor_cpu.machine_steal {
        r.note(format!(
            "floor phase: stolen by the hypervisor {:.0}%",
            steal * 100.0
        ));
    }
    r.note(format!(
        "{} users, {} groups of {} members, sends for {:.1} s, floor for {:.1} s",
        p.users,
        p.groups,
        p.members,
        p.duration.as_secs_f64(),
        p.floor_duration.as_secs_f64()
    ));
    Ok(r)
}

/// Sizes of `catch-up`.
#[derive(Debug, Clone, Copy)]
pub struct CatchUp {
    pub events: usize,
    pub convs: usize,
    pub limit: usize,
}

impl CatchUp {
    pub fn scaled(scale: f64) -> CatchUp {
        CatchUp {
            events: ((100_000.0 * scale).round() as usize).max(50),
            convs: ((200.0 * scale).round() as usize).max(2),
            limit: 500,
        }
    }
}

/// Per-page figures of one catch-up.
#[derive(Debug, Clone, Serialize)]
pub struct Pages {
    pub events: usize,
    pub pages: usize,
    pub secs: f64,
    pub events_per_sec: f64,
    pub first10_ms: f64,
    pub last10_ms: f64,
    pub page: Summary,
}

/// Follows the cursor from `since` to the end; bounded by a page count and a deadline.
pub async fn follow_cursor(api: &Api, since: i64, limit: usize, max_pages: usize) -> Result<Pages> {
    let progress = Progress::start("catch-up", 0, "events");
    let (mut cursor, mut events) = (since, 0usize);
    let mut page_ms = Vec::new();
    let mut samples = Samples::default();
    let start = Instant::now();
    for _ in 0..max_pages {
        if start.elapsed() > Duration::from_secs(100) {
            break;
        }
        let t = Instant::now();
        let page = api.sync(cursor, limit).await?;
        let d = t.elapsed();
        samples.push(d);
        page_ms.push(d.as_secs_f64() * 1000.0);
        events += page.events;
        progress.add(page.events as u64);
        cursor = page.cursor;
        if !page.has_more {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    progress.finish().await;
    let mean = |v: &[f64]| ratio(v.iter().sum(), v.len() as f64);
    let k = page_ms.len().min(10);
    // The very last page is usually short; compare full pages only.
    let full = &page_ms[..page_ms.len().saturating_sub(1).max(k.min(page_ms.len()))];
    Ok(Pages {
        events,
        pages: page_ms.len(),
        secs,
        events_per_sec: ratio(events as f64, secs),
        first10_ms: mean(&full[..k.min(full.len())]),
        last10_ms: mean(&full[full.len().saturating_sub(k)..]),
        page: samples.summary(),
    })
}

/// `catch-up`: a user with `events` pending visible events across `convs` groups follows the
/// cursor with `limit` to the end. The history is sent through the API by 32 parallel clients.
pub async fn catch_up(base: &str, p: CatchUp) -> Result<Report> {
    let http = http_client();
    let anon = Api::new(&http, base);
    let tag = run_tag();
    let caller = anon.register(&format!("cu{tag}caller")).await?;
    let n_senders = p.convs.min(32);
    let a = anon.clone();
    let senders = concurrently("register senders", (0..n_senders).collect(), 8, move |i| {
        let a = a.clone();
        let tag = tag.clone();
        async move { a.register(&format!("cu{tag}s{i}")).await }
    })
    .await?;
    let senders = Arc::new(senders);
    let (s, who) = (senders.clone(), caller.username.clone());
    let convs = concurrently("create groups", (0..p.convs).collect(), 8, move |j| {
        let (owner, who) = (s[j % s.len()].clone(), who.clone());
        async move { owner.create_group(&format!("catch-up {j}"), &[who]).await }
    })
    .await?;
    let convs = Arc::new(convs);
    let (s, cv) = (senders.clone(), convs.clone());
    let seed_start = Instant::now();
    concurrently("seed history", (0..p.events).collect(), 32, move |k| {
        let j = k % cv.len();
        let (api, conv) = (s[j % s.len()].clone(), cv[j].clone());
        async move { api.send(&conv, &format!("history message {k:08}")).await }
    })
    .await?;
    let seed_secs = seed_start.elapsed().as_secs_f64();
    let max_pages = p.events / p.limit * 2 + 1000;
    let pages = follow_cursor(&caller, 0, p.limit, max_pages).await?;
    let mut r = Report::new(
        "catch-up",
        &[
            "measure",
            "events",
            "pages",
            "secs",
            "events/s",
            "page ms first 10",
            "page ms last 10",
            "last/first",
        ],
    );
    r.row(vec![
        format!("GET /api/im/sync limit={} from 0", p.limit),
        pages.events.to_string(),
        pages.pages.to_string(),
        f(pages.secs, 2),
        f(pages.events_per_sec, 0),
        f(pages.first10_ms, 2),
        f(pages.last10_ms, 2),
        f(ratio(pages.last10_ms, pages.first10_ms), 2),
    ]);
    r.figures = json!({ "catch_up": pages, "convs": p.convs, "messages_sent": p.events,
        "seed": { "clients": 32, "secs": seed_secs, "msgs_per_sec": ratio(p.events as f64, seed_secs) },
        "goal": ">= 100000 events/s, last pages as fast as first" });
    r.note(format!(
        "history of {} messages in {} groups sent through the API by 32 clients at {} msgs/s \
         (group-creation events come on top)",
        p.events,
        p.convs,
        f(ratio(p.events as f64, seed_secs), 0)
    ));
    Ok(r)
}

/// One incremental sync measured against several servers in turn: for each `(caller, since)`,
/// `since` is the head before the `expect` waiting events. Each round calls every server once,
/// starting from a different one each round. Answers the latency of one call, per server.
pub async fn measure_incr(
    callers: &[(Api, i64)],
    expect: usize,
    rounds: usize,
    limit: Duration,
) -> Result<Vec<Load>> {
    for (caller, since) in callers {
        let first = caller.sync(*since, 100).await?;
        anyhow::ensure!(
            first.events >= expect,
            "incremental sync after {since} answered {} events, expected {expect}",
            first.events
        );
        for _ in 0..20 {
            caller.sync(*since, 100).await?;
        }
    }
    let mut samples: Vec<Samples> = callers
        .iter()
        .map(|_| Samples::with_capacity(rounds))
        .collect();
    let n = callers.len();
    let progress = Progress::start("incr-sync", (rounds * n) as u64, "requests");
    let start = Instant::now();
    for round in 0..rounds {
        if start.elapsed() >= limit {
            break;
        }
        for k in 0..n {
            let i = (round + k) % n;
            let (caller, since) = &callers[i];
            let t = Instant::now();
            caller
                .sync(*since, 100)
                .await
                .with_context(|| format!("incr-sync: round {round}, history {i}"))?;
            samples[i].push(t.elapsed());
            progress.add(1);
        }
    }
    progress.finish().await;
    // Each server's rate is over the time spent waiting on it, not on the others.
    Ok(samples
        .iter()
        .map(|s| {
            let busy = s.summary();
            Load::from(s, busy.mean_ms * busy.n as f64 / 1000.0)
        })
        .collect())
}
