//! The compatibility faces' sync calls: `rc-sync` (Rocket.Chat `chat.syncMessages` over a big
//! and a small room) and `tsdd-sync` (TangSengDaoDao `POST /v1/conversation/sync` for a user with
//! many conversations and one with few). Both prepare their data through the native API with
//! many concurrent clients, check once that each measured call answers what it should, then time
//! it in alternating rounds (small, big, small, big, …) so that drift of a noisy machine falls on
//! both sides of the ratio alike.

use crate::client::{http_client, Api};
use crate::progress::Progress;
use crate::report::{f, ratio, Report};
use crate::scenarios::{concurrently, run_tag};
use crate::stats::{Samples, Summary};
use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The password of the accounts that call the faces (the faces' clients log in with one).
const PASSWORD: &str = "bench-password-1";

/// `ms` since the epoch as the ISO string JavaScript's `Date.toISOString` gives
/// (`2024-05-01T10:00:00.123Z`).
pub fn iso_ms(ms: i64) -> String {
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Calls `call(i)` one after the other, at most `n` times and for at most `limit`, adding each
/// latency to `samples`.
async fn timed<F, Fut>(
    samples: &mut Samples,
    progress: &Progress,
    n: usize,
    limit: Duration,
    mut call: F,
) -> Result<()>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let start = Instant::now();
    for i in 0..n {
        if start.elapsed() >= limit {
            break;
        }
        let t = Instant::now();
        call(i).await?;
        samples.push(t.elapsed());
        progress.add(1);
    }
    Ok(())
}

/// One table row: name, two context cells, calls, p50, p99, mean.
fn latency_row(name: String, a: String, b: String, s: &Summary) -> Vec<String> {
    vec![
        name,
        a,
        b,
        s.n.to_string(),
        f(s.p50_ms, 3),
        f(s.p99_ms, 3),
        f(s.mean_ms, 3),
    ]
}

fn ratio_row(name: String, big: &Summary, small: &Summary) -> Vec<String> {
    vec![
        name,
        String::new(),
        String::new(),
        String::new(),
        f(ratio(big.p50_ms, small.p50_ms), 2),
        f(ratio(big.p99_ms, small.p99_ms), 2),
        f(ratio(big.mean_ms, small.mean_ms), 2),
    ]
}

fn ratios(big: &Summary, small: &Summary) -> Value {
    json!({ "p50": ratio(big.p50_ms, small.p50_ms), "p99": ratio(big.p99_ms, small.p99_ms),
        "mean": ratio(big.mean_ms, small.mean_ms) })
}

/// Registers `n` token accounts named `<prefix><i>`, 8 at a time.
async fn register_many(anon: &Api, prefix: &str, n: usize, label: &str) -> Result<Vec<Api>> {
    let (a, prefix) = (anon.clone(), prefix.to_owned());
    concurrently(label, (0..n).collect(), 8, move |i| {
        let (a, name) = (a.clone(), format!("{prefix}{i}"));
        async move { a.register(&name).await }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// rc-sync

/// Sizes of `rc-sync`.
#[derive(Debug, Clone, Copy)]
pub struct RcSync {
    /// Messages in the small room.
    pub small: usize,
    /// Messages in the big room.
    pub big: usize,
    /// Members posting the history (the reader is the only other member).
    pub senders: usize,
    /// Concurrent senders while preparing.
    pub concurrency: usize,
    /// `lastUpdate` is set just before the newest `last` messages.
    pub last: usize,
    /// Cursor paging starts just before the newest `tail` messages ...
    pub tail: usize,
    /// ... and follows `next` with `count=page` to the end.
    pub page: usize,
    /// Timed calls per call type and room, spread over `rounds`.
    pub calls: usize,
    pub rounds: usize,
    /// Time limit of one round of one call type in one room.
    pub round_limit: Duration,
}

impl RcSync {
    pub fn scaled(scale: f64) -> RcSync {
        let big = ((100_000.0 * scale).round() as usize).max(100);
        RcSync {
            small: ((1000.0 * scale).round() as usize).clamp(30, big),
            big,
            senders: 8,
            concurrency: 32,
            last: 20,
            tail: 200,
            page: 50,
            calls: 2000,
            rounds: 4,
            round_limit: Duration::from_secs(4),
        }
    }
}

/// The cursor (epoch ms) a Rocket.Chat answer carries at `which` (`next` or `previous`).
fn cursor_of(v: &Value, which: &str) -> Result<Option<i64>> {
    match &v["result"]["cursor"][which] {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.parse().context("cursor is not epoch ms")?)),
        other => anyhow::bail!("cursor.{which} is {other}"),
    }
}

fn updated_len(v: &Value) -> Result<usize> {
    Ok(v["result"]["updated"]
        .as_array()
        .context("result.updated is not a list")?
        .len())
}

/// The calls timed on one room, checked once.
struct RoomProbe {
    messages: usize,
    /// `chat.syncMessages?roomId&lastUpdate=` just before the newest `last` messages.
    last_update: String,
    /// The pages of one walk with `type=UPDATED&next=&count=` over the newest `tail` messages.
    pages: Vec<String>,
}

/// The `_updatedAt` (ms) of the `k`-th newest message of `room`: the `previous` cursor of a
/// descending page of `k` from the far future (present when the room holds more than `k`).
async fn kth_newest(caller: &Api, room: &str, k: usize) -> Result<i64> {
    const FAR: i64 = 4_102_444_800_000; // 2100-01-01
    let v = caller
        .rc_get(&format!(
            "/api/v1/chat.syncMessages?roomId={room}&type=UPDATED&previous={FAR}&count={k}"
        ))
        .await?;
    ensure!(updated_len(&v)? == k, "the newest {k} of {room}: {v}");
    cursor_of(&v, "previous")?.with_context(|| format!("no previous cursor past {k} in {room}"))
}

async fn rc_probe(caller: &Api, room: &str, messages: usize, p: &RcSync) -> Result<RoomProbe> {
    let sync = "/api/v1/chat.syncMessages";
    let at = kth_newest(caller, room, p.last).await?;
    let last_update = format!("{sync}?roomId={room}&lastUpdate={}", iso_ms(at - 1));
    let v = caller.rc_get(&last_update).await?;
    ensure!(
        updated_len(&v)? == p.last && v["result"]["cursor"].is_null(),
        "lastUpdate just before the newest {} answered {} messages",
        p.last,
        updated_len(&v)?
    );
    let mut next = kth_newest(caller, room, p.tail).await? - 1;
    let (mut pages, mut seen) = (Vec::new(), 0usize);
    for _ in 0..p.tail / p.page + 2 {
        let q = format!(
            "{sync}?roomId={room}&type=UPDATED&next={next}&count={}",
            p.page
        );
        let v = caller.rc_get(&q).await?;
        seen += updated_len(&v)?;
        pages.push(q);
        match cursor_of(&v, "next")? {
            Some(n) => next = n,
            None => break,
        }
    }
    ensure!(
        seen == p.tail && pages.len() == p.tail.div_ceil(p.page),
        "following the cursor over the newest {} gave {seen} messages in {} pages",
        p.tail,
        pages.len()
    );
    for q in pages.iter().chain([&last_update]).cycle().take(20) {
        caller.rc_get_drain(q).await?;
    }
    Ok(RoomProbe {
        messages,
        last_update,
        pages,
    })
}

/// `rc-sync`: a reader in a small and a big room (history posted through the native API by
/// `senders` members, `concurrency` at a time) times `chat.syncMessages` in lastUpdate mode and in
/// cursor mode near the end of each room.
pub async fn rc_sync(base: &str, mut p: RcSync) -> Result<Report> {
    p.small = p.small.max(3);
    p.big = p.big.max(p.small);
    p.last = p.last.clamp(1, p.small - 1);
    p.tail = p.tail.clamp(1, p.small - 1);
    p.page = p.page.clamp(1, p.tail);
    p.rounds = p.rounds.max(1);
    let http = http_client();
    let anon = Api::new(&http, base);
    let tag = run_tag();
    let reader = anon
        .register_password(&format!("rc{tag}reader"), PASSWORD)
        .await?;
    let senders = register_many(
        &anon,
        &format!("rc{tag}s"),
        p.senders.max(1),
        "register senders",
    )
    .await?;
    let names: Vec<String> = senders.iter().map(|s| s.username.clone()).collect();
    let small_room = reader.create_group("rc-sync small room", &names).await?;
    let big_room = reader.create_group("rc-sync big room", &names).await?;
    let senders = Arc::new(senders);
    let mut seeds = Vec::new();
    for (label, room, n) in [
        ("post small room", &small_room, p.small),
        ("post big room", &big_room, p.big),
    ] {
        let (s, room) = (senders.clone(), room.clone());
        let t = Instant::now();
        concurrently(label, (0..n).collect(), p.concurrency, move |k| {
            let (api, room) = (s[k % s.len()].clone(), room.clone());
            async move { api.send(&room, &format!("rc-sync history {k:07}")).await }
        })
        .await?;
        let secs = t.elapsed().as_secs_f64();
        seeds.push(json!({ "messages": n, "secs": secs, "msgs_per_sec": ratio(n as f64, secs) }));
    }
    let probes = [
        rc_probe(&reader, &small_room, p.small, &p).await?,
        rc_probe(&reader, &big_room, p.big, &p).await?,
    ];
    let per_round = p.calls.div_ceil(p.rounds);
    let progress = Progress::start(
        "rc-sync calls",
        (per_round * 4 * p.rounds) as u64,
        "requests",
    );
    let mut last_update = [Samples::default(), Samples::default()];
    let mut pages = [Samples::default(), Samples::default()];
    for _ in 0..p.rounds {
        for (i, probe) in probes.iter().enumerate() {
            let r = &reader;
            timed(
                &mut last_update[i],
                &progress,
                per_round,
                p.round_limit,
                |_| r.rc_get_drain(&probe.last_update),
            )
            .await?;
            let walk = probe.pages.len();
            timed(
                &mut pages[i],
                &progress,
                per_round.div_ceil(walk) * walk,
                p.round_limit,
                |k| r.rc_get_drain(&probe.pages[k % walk]),
            )
            .await?;
        }
    }
    progress.finish().await;
    let lu: Vec<Summary> = last_update.iter().map(Samples::summary).collect();
    let pg: Vec<Summary> = pages.iter().map(Samples::summary).collect();
    let mut r = Report::new(
        "rc-sync",
        &[
            "GET /api/v1/chat.syncMessages",
            "room messages",
            "answer",
            "calls",
            "p50 ms",
            "p99 ms",
            "mean ms",
        ],
    );
    for (i, probe) in probes.iter().enumerate() {
        r.row(latency_row(
            format!("lastUpdate=<ISO before the newest {}>", p.last),
            probe.messages.to_string(),
            format!("{} msgs, newest first", p.last),
            &lu[i],
        ));
    }
    r.row(ratio_row(
        format!("ratio {}/{} (lastUpdate)", p.big, p.small),
        &lu[1],
        &lu[0],
    ));
    for (i, probe) in probes.iter().enumerate() {
        r.row(latency_row(
            format!("type=UPDATED&next=<ms>&count={} (one page)", p.page),
            probe.messages.to_string(),
            format!("newest {} msgs in {} pages", p.tail, probe.pages.len()),
            &pg[i],
        ));
    }
    r.row(ratio_row(
        format!("ratio {}/{} (cursor page)", p.big, p.small),
        &pg[1],
        &pg[0],
    ));
    let room = |i: usize| {
        json!({ "messages": probes[i].messages, "last_update": lu[i], "cursor_page": pg[i],
            "cursor_pages_per_walk": probes[i].pages.len(), "seed": seeds[i] })
    };
    r.figures = json!({
        "small": room(0), "big": room(1),
        "ratio_last_update": ratios(&lu[1], &lu[0]),
        "ratio_cursor_page": ratios(&pg[1], &pg[0]),
        "last": p.last, "tail": p.tail, "page": p.page, "rounds": p.rounds,
        "goal": "latency flat in room size: ratio big/small near 1",
    });
    r.note(format!(
        "one reader and {} senders; history posted through the native API by {} concurrent clients: \
         small room {} msgs/s, big room {} msgs/s; each call checked once for its answer, then timed \
         in {} alternating rounds (small, big) on one keep-alive connection; Rocket.Chat headers \
         X-User-Id + X-Auth-Token of a password account",
        p.senders,
        p.concurrency,
        f(seeds[0]["msgs_per_sec"].as_f64().unwrap_or(0.0), 0),
        f(seeds[1]["msgs_per_sec"].as_f64().unwrap_or(0.0), 0),
        p.rounds
    ));
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// tsdd-sync

/// The most conversations one `version=0` answer carries (docs/tsdd.md, "Conversation sync";
/// WuKongIM's `conversation.userMaxCount`).
pub const TSDD_MAX_CONVERSATIONS: usize = 1000;

/// Sizes of `tsdd-sync`.
#[derive(Debug, Clone, Copy)]
pub struct TsddSync {
    /// Conversations of the big user ...
    pub big: usize,
    /// ... and of the small one.
    pub small: usize,
    /// Every `direct_every`-th conversation is a direct one with its own peer (0: groups only).
    pub direct_every: usize,
    /// Messages in each conversation (the `msg_count` of 20 is then full).
    pub msgs_per_conv: usize,
    /// Conversations changed (one new message each) before the incremental sync.
    pub changed: usize,
    /// Group owners and co-members.
    pub senders: usize,
    pub concurrency: usize,
    /// Timed full syncs per user, and timed incremental syncs per user, spread over `rounds`.
    pub full_calls: usize,
    pub incr_calls: usize,
    pub rounds: usize,
    pub round_limit: Duration,
}

impl TsddSync {
    pub fn scaled(scale: f64) -> TsddSync {
        let changed = 10;
        let big = ((1000.0 * scale).round() as usize).max(changed + 2);
        TsddSync {
            big,
            small: ((100.0 * scale).round() as usize).clamp(changed, big),
            direct_every: 10,
            msgs_per_conv: 20,
            changed,
            senders: 16,
            concurrency: 32,
            full_calls: 200,
            incr_calls: 2000,
            rounds: 4,
            round_limit: Duration::from_secs(6),
        }
    }
}

/// One caller's conversations and who writes in each.
struct Side {
    caller: Api,
    /// `(conversation id, its author)`.
    convs: Vec<(String, Api)>,
    directs: usize,
}

/// What one checked `conversation/sync` answer held.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct SyncAnswer {
    conversations: usize,
    recents: usize,
    users: usize,
    groups: usize,
    bytes: usize,
    max_version: i64,
}

async fn tsdd_sync_once(caller: &Api, body: &str) -> Result<SyncAnswer> {
    let v = caller.tsdd_post("/v1/conversation/sync", body).await?;
    let convs = v["conversations"]
        .as_array()
        .with_context(|| format!("no conversations in {v}"))?;
    let len = |k: &str| v[k].as_array().map_or(0, Vec::len);
    Ok(SyncAnswer {
        conversations: convs.len(),
        recents: convs
            .iter()
            .map(|c| c["recents"].as_array().map_or(0, Vec::len))
            .sum(),
        users: len("users"),
        groups: len("groups"),
        bytes: serde_json::to_vec(&v)?.len(),
        max_version: convs
            .iter()
            .filter_map(|c| c["version"].as_i64())
            .max()
            .unwrap_or(0),
    })
}

fn sync_body(version: i64) -> String {
    json!({ "version": version, "msg_count": 20 }).to_string()
}

/// `tsdd-sync`: a user in `big` conversations and one in `small` (groups of 3 and every
/// `direct_every`-th a direct conversation, `msgs_per_conv` messages each, all sent through the
/// native API) time `POST /v1/conversation/sync` with `version=0`, then, after `changed` of each
/// one's conversations got a new message, the incremental call with the version of their first
/// answer.
pub async fn tsdd_sync(base: &str, mut p: TsddSync) -> Result<Report> {
    p.changed = p.changed.max(1);
    p.small = p.small.max(p.changed);
    p.big = p.big.max(p.small);
    p.rounds = p.rounds.max(1);
    p.senders = p.senders.max(2);
    let http = http_client();
    let anon = Api::new(&http, base);
    let tag = run_tag();
    let mut callers = Vec::new();
    for who in ["big", "small"] {
        callers.push(
            anon.register_password(&format!("ts{tag}{who}"), PASSWORD)
                .await?,
        );
    }
    let senders = register_many(&anon, &format!("ts{tag}s"), p.senders, "register senders").await?;
    let every = p.direct_every;
    let is_direct = move |j: usize| every > 0 && j % every == every - 1;
    let sizes = [p.big, p.small];
    let n_peers: usize = sizes
        .iter()
        .map(|&n| (0..n).filter(|&j| is_direct(j)).count())
        .sum();
    let peers = register_many(&anon, &format!("ts{tag}p"), n_peers, "register peers").await?;
    // Conversation j of caller c: a group owned by sender j with the next sender, or a direct
    // conversation opened by the next unused peer.
    let mut specs = Vec::new();
    let mut next_peer = 0usize;
    for (c, &n) in sizes.iter().enumerate() {
        for j in 0..n {
            let author = if is_direct(j) {
                next_peer += 1;
                Err(peers[next_peer - 1].clone())
            } else {
                Ok((
                    senders[j % senders.len()].clone(),
                    senders[(j + 1) % senders.len()].username.clone(),
                ))
            };
            specs.push((c, j, callers[c].clone(), author, is_direct(j)));
        }
    }
    let t = Instant::now();
    let created = concurrently(
        "create conversations",
        specs,
        16,
        |(c, j, caller, author, direct)| async move {
            let id = match &author {
                Ok((owner, other)) => {
                    owner
                        .create_group(
                            &format!("tsdd-sync {c}-{j}"),
                            &[caller.username.clone(), other.clone()],
                        )
                        .await?
                }
                Err(peer) => peer.send_direct(&caller.user_id, "history 0").await?,
            };
            let author = match author {
                Ok((owner, _)) => owner,
                Err(peer) => peer,
            };
            Ok((c, id, author, direct))
        },
    )
    .await?;
    let create_secs = t.elapsed().as_secs_f64();
    let mut sides: Vec<Side> = callers
        .iter()
        .map(|caller| Side {
            caller: caller.clone(),
            convs: Vec::new(),
            directs: 0,
        })
        .collect();
    let mut sends = Vec::new();
    for (c, id, author, direct) in created {
        let first = usize::from(direct);
        for k in first..p.msgs_per_conv {
            sends.push((id.clone(), author.clone(), k));
        }
        sides[c].directs += first;
        sides[c].convs.push((id, author));
    }
    let n_sends = sends.len();
    let t = Instant::now();
    concurrently(
        "send history",
        sends,
        p.concurrency,
        |(id, author, k)| async move { author.send(&id, &format!("tsdd-sync history {k}")).await },
    )
    .await?;
    let send_secs = t.elapsed().as_secs_f64();

    // The full sync, checked once per user, then timed.
    let full_body = sync_body(0);
    let mut full = Vec::new();
    for (side, &n) in sides.iter().zip(&sizes) {
        let a = tsdd_sync_once(&side.caller, &full_body).await?;
        let want = n.min(TSDD_MAX_CONVERSATIONS);
        ensure!(
            a.conversations == want && (n > want || a.users == side.directs),
            "version=0 for a user in {n} conversations ({} direct) answered {a:?}",
            side.directs
        );
        ensure!(
            a.recents == want * p.msgs_per_conv.min(20),
            "version=0 answered {} recents, expected {}",
            a.recents,
            want * p.msgs_per_conv.min(20)
        );
        full.push(a);
    }
    let total = p.full_calls.div_ceil(p.rounds) * 2 * p.rounds;
    let progress = Progress::start("tsdd full sync", total as u64, "requests");
    let mut full_samples = [Samples::default(), Samples::default()];
    for _ in 0..p.rounds {
        for (i, side) in sides.iter().enumerate() {
            let (caller, body) = (&side.caller, &full_body);
            timed(
                &mut full_samples[i],
                &progress,
                p.full_calls.div_ceil(p.rounds),
                p.round_limit,
                |_| async move {
                    caller
                        .tsdd_post_drain("/v1/conversation/sync", body)
                        .await
                        .map(|_| ())
                },
            )
            .await?;
        }
    }
    progress.finish().await;

    // `changed` conversations of each user, spread over the list, get one new message each.
    for side in &sides {
        let n = side.convs.len();
        for k in 0..p.changed {
            let (id, author) = &side.convs[k * n / p.changed];
            author.send(id, &format!("tsdd-sync change {k}")).await?;
        }
    }
    let mut incr = Vec::new();
    let mut incr_bodies = Vec::new();
    for (side, before) in sides.iter().zip(&full) {
        let body = sync_body(before.max_version);
        let a = tsdd_sync_once(&side.caller, &body).await?;
        ensure!(
            a.conversations == p.changed && a.max_version > before.max_version,
            "version={} after {} changes answered {a:?}",
            before.max_version,
            p.changed
        );
        for _ in 0..20 {
            side.caller
                .tsdd_post_drain("/v1/conversation/sync", &body)
                .await?;
        }
        incr.push(a);
        incr_bodies.push(body);
    }
    let per_round = p.incr_calls.div_ceil(p.rounds);
    let progress = Progress::start(
        "tsdd incremental sync",
        (per_round * 2 * p.rounds) as u64,
        "requests",
    );
    let mut incr_samples = [Samples::default(), Samples::default()];
    for _ in 0..p.rounds {
        for (i, side) in sides.iter().enumerate() {
            let (caller, body) = (&side.caller, &incr_bodies[i]);
            timed(
                &mut incr_samples[i],
                &progress,
                per_round,
                p.round_limit,
                |_| async move {
                    caller
                        .tsdd_post_drain("/v1/conversation/sync", body)
                        .await
                        .map(|_| ())
                },
            )
            .await?;
        }
    }
    progress.finish().await;

    let fs: Vec<Summary> = full_samples.iter().map(Samples::summary).collect();
    let is: Vec<Summary> = incr_samples.iter().map(Samples::summary).collect();
    let mut r = Report::new(
        "tsdd-sync",
        &[
            "POST /v1/conversation/sync",
            "caller's conversations",
            "answer",
            "calls",
            "p50 ms",
            "p99 ms",
            "mean ms",
        ],
    );
    let answer = |a: &SyncAnswer| {
        format!(
            "{} convs, {} recents, {} KiB",
            a.conversations,
            a.recents,
            a.bytes.div_ceil(1024)
        )
    };
    for i in 0..2 {
        r.row(latency_row(
            "version=0, msg_count=20 (full)".into(),
            sizes[i].to_string(),
            answer(&full[i]),
            &fs[i],
        ));
    }
    r.row(ratio_row(
        format!("ratio {}/{} (full)", sizes[0], sizes[1]),
        &fs[0],
        &fs[1],
    ));
    for i in 0..2 {
        r.row(latency_row(
            format!(
                "version=<max of the full answer>, msg_count=20 ({} changed)",
                p.changed
            ),
            sizes[i].to_string(),
            answer(&incr[i]),
            &is[i],
        ));
    }
    r.row(ratio_row(
        format!("ratio {}/{} (incremental)", sizes[0], sizes[1]),
        &is[0],
        &is[1],
    ));
    let side = |i: usize| {
        json!({ "conversations": sizes[i], "direct": sides[i].directs,
            "full": { "answer": full[i], "latency": fs[i] },
            "incremental": { "answer": incr[i], "latency": is[i] } })
    };
    r.figures = json!({
        "big": side(0), "small": side(1),
        "ratio_full": ratios(&fs[0], &fs[1]),
        "ratio_incremental": ratios(&is[0], &is[1]),
        "changed": p.changed, "msgs_per_conv": p.msgs_per_conv, "rounds": p.rounds,
        "seed": { "conversations": sizes[0] + sizes[1], "create_secs": create_secs,
            "messages": n_sends, "send_secs": send_secs,
            "msgs_per_sec": ratio(n_sends as f64, send_secs) },
        "goal": "incremental cost follows the changed conversations: ratio big/small near 1",
    });
    r.note(format!(
        "groups of 3 (the caller and 2 of {} senders), every {}th conversation a direct one with its \
         own peer; {} messages in each; {} conversations created in {} s and {} messages sent in {} s \
         ({} msgs/s, {} concurrent clients) through the native API; TangSengDaoDao header `token:` \
         of a password account; each call checked once, then timed in {} alternating rounds \
         (big, small) on one keep-alive connection",
        p.senders,
        p.direct_every,
        p.msgs_per_conv,
        sizes[0] + sizes[1],
        f(create_secs, 1),
        n_sends,
        f(send_secs, 1),
        f(ratio(n_sends as f64, send_secs), 0),
        p.concurrency,
        p.rounds
    ));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::iso_ms;

    #[test]
    fn iso_ms_is_javascript_to_iso_string() {
        assert_eq!(iso_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_ms(1_714_557_600_123), "2024-05-01T10:00:00.123Z");
        assert_eq!(iso_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_ms(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
        assert_eq!(iso_ms(-1), "1969-12-31T23:59:59.999Z");
    }
}
