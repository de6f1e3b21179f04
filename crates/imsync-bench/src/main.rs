//! `imsync-bench`: starts the release `imsync` on a fresh temp data dir, prepares data through
//! the public API (or the documented bulk-load `seed` step), drives load from this process,
//! stops the server, prints a markdown table and writes `bench/results/<scenario>.json`.
#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use imsync_bench::client::{http_client, Api};
use imsync_bench::compare;
use imsync_bench::face_fanout::{self, Face, FaceFanout};
use imsync_bench::faces::{self, RcSync, TsddSync};
use imsync_bench::files::{self, FileIo, ParFiles};
use imsync_bench::pg::FreshDb;
use imsync_bench::realtime::{self, Fanout, IdleWs, MultiNode};
use imsync_bench::report::{cores, f, git_commit, memory_mib, ratio, Meta, Report};
use imsync_bench::scenarios::{self, CatchUp, SendPar};
use imsync_bench::seed::{self, SeedArgs};
use imsync_bench::server::{open_files_limit, rss_kib_of, ServerProc};
use imsync_bench::{matrix, scenarios::LOAD_COLUMNS};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "imsync-bench",
    about = "Benchmark harness for imsync (see the README, \"Performance\")"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// The release imsync binary [default: <repo>/target/release/imsync].
    #[arg(long)]
    imsync_bin: Option<PathBuf>,
    /// Multiplies every default size (and duration).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// The server's durability setting: normal or full.
    #[arg(long, default_value = "normal")]
    durability: String,
    /// Where the JSON results go [default: <repo>/bench/results].
    #[arg(long)]
    results_dir: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
struct Db {
    /// Run on PostgreSQL instead of SQLite: an admin URL (postgres://USER@HOST:PORT/DB). The
    /// harness creates a fresh database on that server for the run and drops it afterwards; the
    /// results go to `<scenario>-postgres.json`.
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Args, Clone)]
struct SynapseArgs {
    /// Base URL of a running Synapse on 127.0.0.1.
    #[arg(long, default_value = "http://127.0.0.1:8448")]
    synapse_url: String,
    /// `registration_shared_secret` of that Synapse.
    #[arg(long, env = "SYNAPSE_SHARED_SECRET")]
    synapse_secret: String,
}

#[derive(Subcommand)]
enum Command {
    /// One client, sequential sends into one group, against the sequential /healthz floor.
    SendSeq {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        db: Db,
    },
    /// 64 clients, 100 groups of 100 members, random sends, against the 64-client floor.
    SendPar {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        db: Db,
    },
    /// send-par on one server in eight phases (plain, with files, with files, plain, twice),
    /// where in the file phases a share of the sends carry a file uploaded beforehand; the rate
    /// against plain send-par, how far phases of one kind spread, and every file message read
    /// back and checked.
    SendParFiles {
        #[command(flatten)]
        common: Common,
        /// The share of the sends of the file phases that carry a file.
        #[arg(long, default_value_t = 0.1)]
        file_share: f64,
    },
    /// A 100 MiB file up the native file API (presigned form, and in 5 MiB parts) and down to a
    /// file, beside `cp` of the same file on the same disk: MiB/s and the ratios.
    FileIo(Common),
    /// A user follows the cursor over 100k pending events in 200 conversations.
    CatchUp(Common),
    /// One incremental sync (10 new events) over histories of 10k, 100k and 1M events.
    IncrSync {
        #[command(flatten)]
        common: Common,
        /// Seconds the bulk load may take in all; the 1M history is cut to fit.
        #[arg(long, default_value_t = 80.0)]
        seed_budget_secs: f64,
    },
    /// Rocket.Chat `chat.syncMessages` (lastUpdate near the end; cursor paging with
    /// type=UPDATED) on a 1k- and a 100k-message room; the ratio shows it flat in room size.
    RcSync(Common),
    /// TangSengDaoDao `POST /v1/conversation/sync`: full (version=0) and incremental (10 changed)
    /// for a user in 1000 conversations and one in 100; the incremental ratio stays near 1.
    TsddSync(Common),
    /// 1000 WebSocket clients in one group; one sender at 100 msgs/s; send → receive latency.
    Fanout(Common),
    /// 10k idle authenticated WebSockets; the server's RSS per connection.
    IdleWs(Common),
    /// 1000 Rocket.Chat DDP subscribers (`stream-room-messages`) of one room, 100 msgs/s, beside
    /// the same users on /ws in the same run; memory per idle DDP connection.
    DdpFanout(Common),
    /// 1000 WuKongIM connections in one group, 100 msgs/s, every RECV checked and decrypted,
    /// beside the same users on /ws in the same run; server CPU per delivery.
    WkFanout(Common),
    /// 3 imsync nodes (or --nodes) on one fresh PostgreSQL database, the send-par load spread
    /// over them; cross-node send → WebSocket receive latency.
    MultiNode {
        #[command(flatten)]
        common: Common,
        /// Admin URL of the PostgreSQL server (postgres://USER@HOST:PORT/DB); a fresh database
        /// is created there for the run and dropped afterwards.
        #[arg(long)]
        database_url: String,
        /// Nodes to run, at least 2.
        #[arg(long, default_value_t = MULTI_NODES, value_parser = clap::value_parser!(u8).range(2..=26))]
        nodes: u8,
        /// Load clients per node, where a deployment adds nodes for more users; by default
        /// send-par's 64 clients are spread over the nodes, which measures the same load.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
        clients_per_node: Option<u16>,
    },
    /// Every imsync scenario above, one after the other; with --database-url also send-seq and
    /// send-par on PostgreSQL and multi-node.
    All {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        db: Db,
    },
    /// Two builds under send-par, send-seq or catch-up, pair after pair in alternating order;
    /// reports each pair's ratio B/A of the headline rate and their median (A is --imsync-bin, B
    /// is --against); with --database-url, send-par and send-seq on PostgreSQL (a fresh database
    /// per run).
    Compare {
        #[command(flatten)]
        common: Common,
        /// The other imsync binary (B).
        #[arg(long)]
        against: PathBuf,
        /// send-par, send-seq or catch-up.
        #[arg(long, default_value = "send-par")]
        scenario: String,
        /// Pairs of runs.
        #[arg(long, default_value_t = 6)]
        pairs: usize,
        #[command(flatten)]
        db: Db,
    },
    /// Bulk-loads a data dir in-process through the service (used by incr-sync).
    Seed {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        #[arg(long, default_value_t = 5_000)]
        convs: usize,
        #[arg(long, default_value_t = 500)]
        caller_convs: usize,
        /// Target size of the event log.
        #[arg(long)]
        events: i64,
        #[arg(long, default_value = "normal")]
        durability: String,
        #[arg(long, default_value_t = 512)]
        concurrency: usize,
    },
    /// imsync and a running Synapse side by side with matching workloads (bench/peers/synapse).
    PeerSynapse {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        synapse: SynapseArgs,
    },
    /// Sequential sends to Synapse only.
    SynapseSendSeq {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        synapse: SynapseArgs,
    },
    /// 8 concurrent clients sending to Synapse only.
    SynapseSendPar {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        synapse: SynapseArgs,
    },
    /// History pagination (/messages) on Synapse only.
    SynapseCatchUp {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        synapse: SynapseArgs,
    },
    /// Send -> /sync long-poll wake-up on Synapse only.
    SynapseWakeup {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        synapse: SynapseArgs,
    },
}

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

impl Common {
    fn bin(&self) -> PathBuf {
        self.imsync_bin
            .clone()
            .unwrap_or_else(|| repo_root().join("target/release/imsync"))
    }
    fn results(&self) -> PathBuf {
        self.results_dir
            .clone()
            .unwrap_or_else(|| repo_root().join("bench/results"))
    }
    fn meta(&self, storage: &str) -> Meta {
        let backend = storage.split(" (").next().unwrap_or(storage).to_owned();
        let setting = storage
            .split_once('(')
            .map(|(_, r)| r.trim_end_matches(')').to_owned())
            .unwrap_or_default();
        Meta {
            commit: git_commit(&repo_root()),
            cores: cores(),
            memory_mib: memory_mib(),
            durability: format!("{backend} {setting}").trim().to_owned(),
            backend,
            scale: self.scale,
            imsync_bin: self.bin().display().to_string(),
            started_at_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

fn emit(common: &Common, report: &Report, storage: &str) -> Result<()> {
    let meta = common.meta(storage);
    println!("{}", report.markdown(Some(&meta)));
    let path = report.write_json(&common.results(), &meta)?;
    eprintln!("  wrote {}", path.display());
    Ok(())
}

/// Starts imsync on a fresh temp data dir (and, with `db`, a fresh PostgreSQL database), runs
/// `f(base URL, server pid)` against it, stops it; answers the report and the storage
/// description with its durability setting.
async fn with_server<F, Fut>(
    common: &Common,
    db: Option<&str>,
    extra: &[&str],
    f: F,
) -> Result<(Report, String)>
where
    F: FnOnce(String, u32) -> Fut,
    Fut: std::future::Future<Output = Result<Report>>,
{
    let tmp = tempfile::Builder::new().prefix("imsync-bench-").tempdir()?;
    let fresh = db
        .map(|url| FreshDb::create(url, "imsync_bench"))
        .transpose()?;
    let mut args: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
    if let Some(d) = &fresh {
        args.extend(["--database-url".to_owned(), d.url.clone()]);
    }
    let server = ServerProc::start_with(
        &common.bin(),
        &tmp.path().join("data"),
        &common.durability,
        &args,
    )
    .await?;
    let mut storage = Api::new(&http_client(), &server.base).storage().await?;
    if let Some(d) = &fresh {
        storage = format!("{storage} ({})", d.durability());
    }
    let result = f(server.base.clone(), server.pid()).await;
    let rss = server.rss_kib();
    server.stop()?;
    if let Some(d) = fresh {
        d.drop_now()?;
    }
    let mut report = result?;
    if db.is_some() {
        report.scenario = format!("{}-postgres", report.scenario);
    }
    if let Some(kib) = rss {
        report.note(format!("server RSS at the end: {} MiB", kib / 1024));
        report.figures["server_rss_kib"] = json!(kib);
    }
    Ok((report, storage))
}

/// send-seq on a fresh server: its report and the storage it ran on.
async fn send_seq_run(c: &Common, database_url: Option<&str>) -> Result<(Report, String)> {
    let n = ((10_000.0 * c.scale).round() as usize).max(10);
    with_server(c, database_url, &[], |base, _| async move {
        scenarios::send_seq(&base, n).await
    })
    .await
}

/// send-par on a fresh server: its report and the storage it ran on.
async fn send_par_run(c: &Common, database_url: Option<&str>) -> Result<(Report, String)> {
    let p = SendPar::scaled(c.scale);
    with_server(c, database_url, &[], |base, pid| async move {
        scenarios::send_par(&base, p, "send-par", Some(pid)).await
    })
    .await
}

async fn send_seq(c: &Common, db: &Db) -> Result<()> {
    let (r, s) = send_seq_run(c, db.database_url.as_deref()).await?;
    emit(c, &r, &s)
}

async fn send_par(c: &Common, db: &Db) -> Result<()> {
    let (r, s) = send_par_run(c, db.database_url.as_deref()).await?;
    emit(c, &r, &s)
}

/// One run of a compared scenario: its report's headline rate, the steal share it saw, and the
/// storage it ran on.
async fn compared_run(
    c: &Common,
    scenario: &str,
    database_url: Option<&str>,
) -> Result<(f64, Option<f64>, String)> {
    let (r, storage) = match scenario {
        "send-par" => send_par_run(c, database_url).await?,
        "send-seq" => send_seq_run(c, database_url).await?,
        "catch-up" if database_url.is_some() => {
            anyhow::bail!("compare runs catch-up on SQLite only")
        }
        "catch-up" => catch_up_run(c).await?,
        other => anyhow::bail!("compare runs {}, not {other}", COMPARED.join(", ")),
    };
    let rate = match scenario {
        "catch-up" => r.figures["catch_up"]["events_per_sec"].as_f64(),
        _ => r.figures["send"]["per_sec"].as_f64(),
    }
    .context("the run reported no rate")?;
    Ok((rate, r.figures["cpu"]["machine_steal"].as_f64(), storage))
}

/// The scenarios `compare` runs, and the unit of each one's headline rate.
const COMPARED: [&str; 3] = ["send-par", "send-seq", "catch-up"];

fn compared_unit(scenario: &str) -> &'static str {
    if scenario == "catch-up" {
        "events/s"
    } else {
        "msgs/s"
    }
}

async fn compare(
    c: &Common,
    against: &Path,
    scenario: &str,
    pairs: usize,
    database_url: Option<&str>,
) -> Result<()> {
    anyhow::ensure!(pairs > 0, "--pairs must be at least 1");
    anyhow::ensure!(
        COMPARED.contains(&scenario),
        "compare runs {}, not {scenario}",
        COMPARED.join(", ")
    );
    let a = c.clone();
    let b = Common {
        imsync_bin: Some(against.to_owned()),
        ..c.clone()
    };
    let mut done = Vec::with_capacity(pairs);
    let mut storage = String::new();
    for i in 0..pairs {
        let (first, second) = if compare::b_first(i) {
            (&b, &a)
        } else {
            (&a, &b)
        };
        let one = compared_run(first, scenario, database_url).await?;
        let two = compared_run(second, scenario, database_url).await?;
        let ((ra, sa, st), (rb, sb, _)) = if compare::b_first(i) {
            (two, one)
        } else {
            (one, two)
        };
        storage = st;
        let pair = compare::Pair {
            a: ra,
            b: rb,
            a_steal: sa,
            b_steal: sb,
        };
        eprintln!(
            "  [compare {scenario}] pair {}/{pairs}: A {} B {} (B/A {})",
            i + 1,
            f(ra, 0),
            f(rb, 0),
            pair.ratio().map_or("-".into(), |r| f(r, 3))
        );
        done.push(pair);
    }
    let summary = compare::summarize(&done);
    let pct = |x: Option<f64>| x.map_or("-".to_owned(), |v| format!("{:.0}%", v * 100.0));
    let mut r = Report::new(
        &format!("compare-{scenario}"),
        &[
            "pair",
            "order",
            &format!("A {}", compared_unit(scenario)),
            &format!("B {}", compared_unit(scenario)),
            "B/A",
            "steal A",
            "steal B",
        ],
    );
    for (i, p) in done.iter().enumerate() {
        r.row(vec![
            (i + 1).to_string(),
            if compare::b_first(i) { "B, A" } else { "A, B" }.to_owned(),
            f(p.a, 0),
            f(p.b, 0),
            p.ratio().map_or("-".into(), |x| f(x, 3)),
            pct(p.a_steal),
            pct(p.b_steal),
        ]);
    }
    r.note(format!("A: {}", a.bin().display()));
    r.note(format!("B: {}", b.bin().display()));
    r.note(format!(
        "median B/A {} over {pairs} pairs; B ahead in {} of them",
        summary.median.map_or("-".into(), |m| f(m, 3)),
        summary.b_ahead
    ));
    r.figures = json!({ "pairs": done, "summary": summary, "scenario": scenario });
    emit(c, &r, &storage)
}

async fn send_par_files(c: &Common, share: f64) -> Result<()> {
    let p = ParFiles::scaled(c.scale, share);
    let (r, s) = with_server(c, None, &[], |base, pid| async move {
        files::send_par_files(&base, p, Some(pid)).await
    })
    .await?;
    emit(c, &r, &s)?;
    anyhow::ensure!(
        r.figures["intact"] == true,
        "send-par-files: the file messages did not all arrive intact: {}",
        r.figures["problems"]
    );
    Ok(())
}

async fn file_io(c: &Common) -> Result<()> {
    let p = FileIo::scaled(c.scale);
    let limit = files::max_file_bytes_for(p.bytes).to_string();
    // Under the same temp dir as the server's data dir: the same disk.
    let work = tempfile::Builder::new()
        .prefix("imsync-bench-file-io-")
        .tempdir()?;
    let w = work.path().to_owned();
    let (r, s) = with_server(
        c,
        None,
        &["--max-file-bytes", &limit],
        |base, pid| async move { files::file_io(&base, p, &w, Some(pid)).await },
    )
    .await?;
    emit(c, &r, &s)
}

async fn fanout(c: &Common) -> Result<()> {
    let p = Fanout::scaled(c.scale);
    let (r, s) = with_server(c, None, &[], |base, _| async move {
        realtime::fanout(&base, p).await
    })
    .await?;
    emit(c, &r, &s)
}

async fn idle_ws(c: &Common) -> Result<()> {
    let mut p = IdleWs::scaled(c.scale);
    // Both ends hold one descriptor per connection, and the server inherits this limit.
    let limit = open_files_limit();
    let mut capped = None;
    if let Some(l) = limit {
        let fits = (l as usize).saturating_sub(512).max(10);
        if p.connections > fits {
            capped = Some((p.connections, l));
            p.connections = fits;
        }
    }
    // Idle means idle: keep the server's idle timeout (120 s) from closing them mid-run. The
    // connection cap leaves room for the harness's own idle HTTP connections, which would
    // otherwise hold the last slots until their keep-alive ends.
    let cap = (p.connections + 1024).to_string();
    let extra = ["--ws-idle-timeout-secs", "3600", "--max-connections", &cap];
    let (mut r, s) = with_server(c, None, &extra, |base, pid| async move {
        realtime::idle_ws(&base, p, move || rss_kib_of(pid)).await
    })
    .await?;
    if let Some((wanted, l)) = capped {
        r.note(format!(
            "cut from {wanted} to {} connections: the open-file limit is {l} (raise `ulimit -n`)",
            p.connections
        ));
    }
    emit(c, &r, &s)
}

/// Nodes of `multi-node` unless asked otherwise: enough for every node to see writes from two
/// others at once.
const MULTI_NODES: u8 = 3;

async fn multi_node(
    c: &Common,
    admin_url: &str,
    count: u8,
    clients_per_node: Option<u16>,
) -> Result<()> {
    let mut p = MultiNode::scaled(c.scale);
    if let Some(k) = clients_per_node {
        p = p.clients_per_node(k.into(), count.into());
    }
    let tmp = tempfile::Builder::new()
        .prefix("imsync-bench-mn-")
        .tempdir()?;
    let fresh = FreshDb::create(admin_url, "imsync_bench_mn")?;
    let args = ["--database-url".to_owned(), fresh.url.clone()];
    let mut nodes = Vec::new();
    for i in 0..count {
        let dir = tmp.path().join(format!("node{i}"));
        nodes.push(ServerProc::start_with(&c.bin(), &dir, &c.durability, &args).await?);
    }
    let storage = Api::new(&http_client(), &nodes[0].base).storage().await?;
    let storage = format!("{storage} ({})", fresh.durability());
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let result = realtime::multi_node(&bases, p).await;
    let rss: Vec<Option<u64>> = nodes.iter().map(|n| n.rss_kib()).collect();
    for n in nodes {
        n.stop()?;
    }
    fresh.drop_now()?;
    let mut r = result?;
    let mib = |k: &Option<u64>| k.map_or("n/a".to_owned(), |k| (k / 1024).to_string());
    let each: Vec<String> = rss
        .iter()
        .enumerate()
        .map(|(i, k)| format!("node {} {} MiB", (b'A' + i as u8) as char, mib(k)))
        .collect();
    r.note(format!("server RSS at the end: {}", each.join(", ")));
    r.figures["server_rss_kib"] = json!(rss);
    emit(c, &r, &storage)
}

async fn face_fanout(c: &Common, face: Face) -> Result<()> {
    let p = FaceFanout::scaled(c.scale);
    let (r, s) = with_server(c, None, &[], |base, pid| async move {
        face_fanout::face_fanout(&base, face, p, Some(pid)).await
    })
    .await?;
    emit(c, &r, &s)
}

async fn rc_sync(c: &Common) -> Result<()> {
    let p = RcSync::scaled(c.scale);
    let (r, s) = with_server(c, None, &[], |base, _| async move {
        faces::rc_sync(&base, p).await
    })
    .await?;
    emit(c, &r, &s)
}

async fn tsdd_sync(c: &Common) -> Result<()> {
    let p = TsddSync::scaled(c.scale);
    let (r, s) = with_server(c, None, &[], |base, _| async move {
        faces::tsdd_sync(&base, p).await
    })
    .await?;
    emit(c, &r, &s)
}

/// catch-up on a fresh server: its report and the storage it ran on.
async fn catch_up_run(c: &Common) -> Result<(Report, String)> {
    let p = CatchUp::scaled(c.scale);
    with_server(c, None, &[], |base, _| async move {
        scenarios::catch_up(&base, p).await
    })
    .await
}

async fn catch_up(c: &Common) -> Result<()> {
    let (r, s) = catch_up_run(c).await?;
    emit(c, &r, &s)
}

async fn incr_sync(c: &Common, budget: f64) -> Result<()> {
    let s = c.scale;
    let sized = |n: f64, min: usize| ((n * s).round() as usize).max(min);
    let (users, convs, caller_convs) = (sized(10_000.0, 20), sized(5_000.0, 10), sized(500.0, 2));
    let histories = [
        sized(10_000.0, 100),
        sized(100_000.0, 300),
        sized(1_000_000.0, 1000),
    ];
    let tmp = tempfile::Builder::new()
        .prefix("imsync-bench-incr-")
        .tempdir()?;
    let dir = tmp.path().join("data");
    let exe = std::env::current_exe()?;
    let mut report = Report::new(
        "incr-sync",
        &[
            "history events",
            "caller's share",
            "seeded msgs/s",
            "calls",
            "p50 ms",
            "p99 ms",
            "mean ms",
        ],
    );
    let mut figures = Vec::new();
    let mut storage = String::new();
    let mut seed_secs = 0.0f64;
    let mut snapshots = Vec::new();
    let started = Instant::now();
    for (i, &target) in histories.iter().enumerate() {
        let mut target = target as i64;
        if let (Ok(m), true) = (seed::read_manifest(&dir), i == histories.len() - 1) {
            // Cut the last history to what the measured seeding rate fits in the budget.
            let fits = m.head + ((budget - seed_secs).max(5.0) * m.last_rate) as i64;
            if target > fits {
                let cut = (fits / 10_000 * 10_000).max(m.head + 1000);
                report.note(format!(
                    "the {target}-event history was cut to {cut} events: seeding runs at {} msgs/s \
                     here and the bulk-load budget is {budget} s (raise --seed-budget-secs to seed it fully)",
                    f(m.last_rate, 0)
                ));
                target = cut;
            }
        }
        eprintln!("  [incr-sync] seeding the history to {target} events");
        let t = Instant::now();
        let status = std::process::Command::new(&exe)
            .arg("seed")
            .arg("--data-dir")
            .arg(&dir)
            .args(["--users", &users.to_string(), "--convs", &convs.to_string()])
            .args(["--caller-convs", &caller_convs.to_string()])
            .args([
                "--events",
                &target.to_string(),
                "--durability",
                &c.durability,
            ])
            .status()
            .context("running the seed step")?;
        anyhow::ensure!(status.success(), "the seed step failed: {status}");
        seed_secs += t.elapsed().as_secs_f64();
        // Each history but the last is kept as a copy, so that all three are measured side by
        // side below.
        let snapshot = if i + 1 < histories.len() {
            let copy = tmp.path().join(format!("history-{i}"));
            copy_dir(&dir, &copy)?;
            copy
        } else {
            dir.clone()
        };
        snapshots.push(snapshot);
    }
    // One server per history, called in turn (the order rotating every round), so that
    // whatever slows the machine for a moment falls on all three alike and the ratio measures
    // the history, not the minute it ran in.
    let mut servers = Vec::new();
    let mut callers = Vec::new();
    let mut manifests = Vec::new();
    let http = http_client();
    for snapshot in &snapshots {
        let m = seed::read_manifest(snapshot)?;
        let server = ServerProc::start(&c.bin(), snapshot, &c.durability).await?;
        let anon = Api::new(&http, &server.base);
        storage = anon.storage().await?;
        for k in 0..10 {
            let conv = &m.convs[k % m.caller_convs.max(1)];
            let owner = anon.with_token(&m.users[conv.owner].1);
            owner.send(&conv.id, &format!("fresh event {k}")).await?;
        }
        callers.push((anon.with_token(&m.users[0].1), m.head));
        manifests.push(m);
        servers.push(server);
    }
    let loads = scenarios::measure_incr(&callers, 10, 2000, Duration::from_secs(20)).await;
    for server in servers {
        server.stop()?;
    }
    for (m, load) in manifests.iter().zip(loads?) {
        report.row(vec![
            m.head.to_string(),
            format!("{} of {} convs", m.caller_convs, m.convs.len()),
            f(m.last_rate, 0),
            load.count.to_string(),
            f(load.latency.p50_ms, 3),
            f(load.latency.p99_ms, 3),
            f(load.latency.mean_ms, 3),
        ]);
        figures.push(
            json!({ "history_events": m.head, "seed_msgs_per_sec": m.last_rate, "sync": load }),
        );
    }
    let p = |i: usize, k: &str| figures[i]["sync"]["latency"][k].as_f64().unwrap_or(0.0);
    let last = figures.len() - 1;
    report.row(vec![
        format!(
            "ratio {}/{}",
            figures[last]["history_events"], figures[0]["history_events"]
        ),
        String::new(),
        String::new(),
        String::new(),
        f(ratio(p(last, "p50_ms"), p(0, "p50_ms")), 2),
        f(ratio(p(last, "p99_ms"), p(0, "p99_ms")), 2),
        f(ratio(p(last, "mean_ms"), p(0, "mean_ms")), 2),
    ]);
    report.note(format!(
        "{users} users, {convs} groups of 3-4, the caller in {caller_convs}; 10 new events waiting; \
         the three histories served at once and called in turn; \
         histories bulk-loaded in-process through imsync_service (`imsync-bench seed`) in {} s; \
         total {} s",
        f(seed_secs, 1),
        f(started.elapsed().as_secs_f64(), 1)
    ));
    report.figures = json!({ "histories": figures,
        "ratio_p50": ratio(p(last, "p50_ms"), p(0, "p50_ms")),
        "ratio_p99": ratio(p(last, "p99_ms"), p(0, "p99_ms")),
        "goal": "p99 < 5 ms, ratio 1M/10k <= 1.5" });
    emit(c, &report, &storage)
}

/// Copies the files of a stopped server's data directory.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::SendSeq { common, db } => send_seq(&common, &db).await,
            Command::SendPar { common, db } => send_par(&common, &db).await,
            Command::Fanout(c) => fanout(&c).await,
            Command::IdleWs(c) => idle_ws(&c).await,
            Command::DdpFanout(c) => face_fanout(&c, Face::Ddp).await,
            Command::WkFanout(c) => face_fanout(&c, Face::WuKongIm).await,
            Command::MultiNode {
                common,
                database_url,
                nodes,
                clients_per_node,
            } => multi_node(&common, &database_url, nodes, clients_per_node).await,
            Command::SendParFiles { common, file_share } => {
                send_par_files(&common, file_share).await
            }
            Command::FileIo(c) => file_io(&c).await,
            Command::CatchUp(c) => catch_up(&c).await,
            Command::RcSync(c) => rc_sync(&c).await,
            Command::TsddSync(c) => tsdd_sync(&c).await,
            Command::IncrSync {
                common,
                seed_budget_secs,
            } => incr_sync(&common, seed_budget_secs).await,
            Command::All { common: c, db } => {
                let sqlite = Db::default();
                send_seq(&c, &sqlite).await?;
                send_par(&c, &sqlite).await?;
                send_par_files(&c, 0.1).await?;
                file_io(&c).await?;
                catch_up(&c).await?;
                incr_sync(&c, 80.0).await?;
                rc_sync(&c).await?;
                tsdd_sync(&c).await?;
                fanout(&c).await?;
                face_fanout(&c, Face::Ddp).await?;
                face_fanout(&c, Face::WuKongIm).await?;
                idle_ws(&c).await?;
                match &db.database_url {
                    Some(url) => {
                        send_seq(&c, &db).await?;
                        send_par(&c, &db).await?;
                        multi_node(&c, url, MULTI_NODES, None).await
                    }
                    None => {
                        eprintln!(
                            "  skipped send-seq-postgres, send-par-postgres and multi-node: \
                             no --database-url"
                        );
                        Ok(())
                    }
                }
            }
            Command::Compare {
                common,
                against,
                scenario,
                pairs,
                db,
            } => {
                compare(
                    &common,
                    &against,
                    &scenario,
                    pairs,
                    db.database_url.as_deref(),
                )
                .await
            }
            Command::Seed {
                data_dir,
                users,
                convs,
                caller_convs,
                events,
                durability,
                concurrency,
            } => {
                let durability = imsync_store::Durability::parse(&durability)
                    .context("--durability must be normal or full")?;
                let m = seed::seed(&SeedArgs {
                    data_dir,
                    users,
                    convs,
                    caller_convs,
                    events,
                    durability,
                    concurrency,
                })
                .await?;
                eprintln!(
                    "  seeded: head {} events, {} messages, last run {} msgs/s",
                    m.head,
                    m.messages,
                    f(m.last_rate, 0)
                );
                Ok(())
            }
            Command::PeerSynapse { common, synapse } => peer_synapse(&common, &synapse).await,
            Command::SynapseSendSeq { common, synapse } => {
                let r = matrix::send_seq(
                    &synapse.synapse_url,
                    &synapse.synapse_secret,
                    peer_sizes(common.scale).seq,
                )
                .await?;
                emit(&common, &r, "synapse (sqlite)")
            }
            Command::SynapseSendPar { common, synapse } => {
                let z = peer_sizes(common.scale);
                let r = matrix::send_par(
                    &synapse.synapse_url,
                    &synapse.synapse_secret,
                    z.par_clients,
                    z.par_rooms,
                    z.par_duration,
                )
                .await?;
                emit(&common, &r, "synapse (sqlite)")
            }
            Command::SynapseCatchUp { common, synapse } => {
                let z = peer_sizes(common.scale);
                let r = matrix::catch_up(
                    &synapse.synapse_url,
                    &synapse.synapse_secret,
                    z.history,
                    z.page,
                )
                .await?;
                emit(&common, &r, "synapse (sqlite)")
            }
            Command::SynapseWakeup { common, synapse } => {
                let r = matrix::wakeup(
                    &synapse.synapse_url,
                    &synapse.synapse_secret,
                    peer_sizes(common.scale).wakeups,
                )
                .await?;
                emit(&common, &r, "synapse (sqlite)")
            }
        }
    })
}

/// Workload sizes shared by imsync and Synapse in `peer-synapse` (Synapse is ~100x slower, so
/// these are far below the imsync-only defaults).
struct PeerSizes {
    seq: usize,
    par_clients: usize,
    par_rooms: usize,
    par_duration: Duration,
    history: usize,
    page: usize,
    wakeups: usize,
}

fn peer_sizes(scale: f64) -> PeerSizes {
    PeerSizes {
        seq: ((300.0 * scale).round() as usize).max(5),
        par_clients: 8,
        par_rooms: 10,
        par_duration: Duration::from_secs_f64((10.0 * scale).max(0.5)),
        history: ((1000.0 * scale).round() as usize).max(20),
        page: 100,
        wakeups: ((30.0 * scale).round() as usize).max(3),
    }
}

async fn peer_synapse(c: &Common, s: &SynapseArgs) -> Result<()> {
    let z = peer_sizes(c.scale);
    let (url, secret) = (s.synapse_url.as_str(), s.synapse_secret.as_str());
    eprintln!("== imsync side");
    let par = SendPar {
        clients: z.par_clients,
        groups: z.par_rooms,
        members: z.par_clients,
        users: z.par_clients,
        duration: z.par_duration,
        floor_duration: z.par_duration,
    };
    let (history, page, seq, wakeups) = (z.history, z.page, z.seq, z.wakeups);
    let (im, storage) = with_server(c, None, &[], |base, _| async move {
        let seq = scenarios::send_seq(&base, seq).await?;
        let par = scenarios::send_par(&base, par, "send-par-8", None).await?;
        let cu = scenarios::catch_up(&base, CatchUp { events: history, convs: 1, limit: page }).await?;
        let wake = matrix::imsync_wakeup(&base, wakeups).await;
        let mut r = Report::new("imsync", &[]);
        r.figures = json!({ "send_seq": seq.figures["send"], "send_par": par.figures["send"],
            "catch_up": cu.figures["catch_up"],
            "wakeup": wake.as_ref().map(|w| json!(w)).unwrap_or_else(|e| json!({"error": e.to_string()})) });
        Ok(r)
    })
    .await?;
    eprintln!("== Synapse side ({url})");
    let sseq = matrix::send_seq(url, secret, seq).await?;
    let spar = matrix::send_par(url, secret, z.par_clients, z.par_rooms, z.par_duration).await?;
    let scu = matrix::catch_up(url, secret, history, page).await?;
    let swake = matrix::wakeup(url, secret, wakeups).await?;
    let g = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let lat = |v: &serde_json::Value, k: &str| v["latency"][k].as_f64().unwrap_or(0.0);
    let mut r = Report::new(
        "peer-synapse",
        &["workload", "imsync", "Synapse", "imsync / Synapse"],
    );
    let (i, sy) = (
        &im.figures,
        (
            &sseq.figures["send"],
            &spar.figures["send"],
            &scu.figures["catch_up"],
            &swake.figures["wakeup"],
        ),
    );
    let mut row = |name: String, a: f64, b: f64, unit: &str, higher_better: bool| {
        let x = if higher_better {
            ratio(a, b)
        } else {
            ratio(b, a)
        };
        r.row(vec![
            name,
            format!("{} {unit}", f(a, 2)),
            format!("{} {unit}", f(b, 2)),
            format!("{}× better", f(x, 1)),
        ]);
    };
    row(
        format!("send-seq ({seq} msgs): rate"),
        g(&i["send_seq"], "per_sec"),
        g(sy.0, "per_sec"),
        "msgs/s",
        true,
    );
    row(
        "send-seq: p50".into(),
        lat(&i["send_seq"], "p50_ms"),
        lat(sy.0, "p50_ms"),
        "ms",
        false,
    );
    row(
        format!(
            "send-par ({} clients, {} rooms): rate",
            z.par_clients, z.par_rooms
        ),
        g(&i["send_par"], "per_sec"),
        g(sy.1, "per_sec"),
        "msgs/s",
        true,
    );
    row(
        "send-par: p99".into(),
        lat(&i["send_par"], "p99_ms"),
        lat(sy.1, "p99_ms"),
        "ms",
        false,
    );
    row(
        format!("catch-up ({history} events, pages of {page}; imsync /sync, Synapse /messages)"),
        g(&i["catch_up"], "events_per_sec"),
        g(sy.2, "events_per_sec"),
        "events/s",
        true,
    );
    if i["wakeup"]["latency"].is_object() {
        row(
            "send → wake-up p50 (imsync SSE, Synapse /sync long-poll)".into(),
            lat(&i["wakeup"], "p50_ms"),
            lat(sy.3, "p50_ms"),
            "ms",
            false,
        );
        row(
            "send → wake-up p99".into(),
            lat(&i["wakeup"], "p99_ms"),
            lat(sy.3, "p99_ms"),
            "ms",
            false,
        );
    } else {
        r.row(vec![
            "send → wake-up p50".into(),
            format!("n/a ({})", i["wakeup"]["error"]),
            format!("{} ms", f(lat(sy.3, "p50_ms"), 2)),
            String::new(),
        ]);
    }
    r.note(format!("imsync storage: {storage}; Synapse: SQLite (its default synchronous setting), rate limits off"));
    r.figures = json!({ "imsync": im.figures, "synapse": { "send_seq": sy.0, "send_par": sy.1, "catch_up": sy.2, "wakeup": sy.3 } });
    let _ = LOAD_COLUMNS;
    emit(c, &r, &storage)
}
