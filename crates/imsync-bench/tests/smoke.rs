//! The harness against an in-process imsync (the router on 127.0.0.1:0, a temp data dir) at a
//! tiny scale: proves the scenarios, the seed step and the report run end to end. Asserts what
//! the harness measured, never how fast. The PostgreSQL ones (a fresh database for send-seq, two
//! in-process nodes on one schema for multi-node) are ignored unless asked for with `--ignored`
//! and IMSYNC_TEST_DATABASE_URL set, as `.ci/run` does.

use imsync_bench::face_fanout::{self, Face, FaceFanout};
use imsync_bench::faces::{self, RcSync, TsddSync};
use imsync_bench::files::{self, FileIo, ParFiles};
use imsync_bench::pg::{psql, FreshDb};
use imsync_bench::realtime::{self, Fanout, IdleWs, MultiNode};
use imsync_bench::report::Report;
use imsync_bench::scenarios::{self, CatchUp, SendPar};
use imsync_bench::seed::{self, SeedArgs};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

struct InProcess {
    base: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve_store(store: imsync_store::Store, dir: tempfile::TempDir) -> InProcess {
    let state = imsync_server::AppState::new(imsync_server::AppParts {
        service: imsync_service::Service::new(
            store,
            imsync_service::ServiceConfig {
                default_channel: None,
                files_dir: Some(dir.path().join("files")),
                ..Default::default()
            },
        ),
        metrics: imsync_server::install_recorder(),
        // Default: the rate limit is off, as on the benchmarked binary.
        config: Arc::new(imsync_server::ServerConfig::default()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = imsync_server::router(state);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = rx.await;
        })
        .await
        .ok();
    });
    InProcess {
        base: format!("http://{addr}"),
        _dir: dir,
        _stop: tx,
    }
}

fn open(dir: &std::path::Path) -> imsync_store::Store {
    imsync_store::Store::open(&imsync_store::StoreOptions {
        sqlite_path: dir.join("imsync.db"),
        durability: imsync_store::Durability::Normal,
    })
    .expect("open store")
}

async fn start() -> InProcess {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    serve_store(store, dir).await
}

fn postgres_url() -> Option<String> {
    std::env::var("IMSYNC_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// An in-process node on PostgreSQL (`schema` None: the database's search path).
async fn start_pg(url: &str, schema: Option<&str>) -> InProcess {
    let store = imsync_store::Store::open_postgres(&imsync_store::PgOptions {
        url: url.to_owned(),
        schema: schema.map(str::to_owned),
        pool_size: 4,
        statement_timeout: Duration::from_secs(30),
    })
    .await
    .expect("open PostgreSQL store");
    serve_store(store, tempfile::tempdir().unwrap()).await
}

fn cell(r: &Report, row: usize, col: usize) -> &str {
    &r.rows[row][col]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_seq_counts_every_send_and_the_floor() {
    let s = start().await;
    let r = scenarios::send_seq(&s.base, 30).await.unwrap();
    assert_eq!(r.figures["send"]["count"], 30);
    assert_eq!(r.figures["floor"]["count"], 30);
    assert_eq!(cell(&r, 0, 1), "30");
    assert!(r
        .markdown(None)
        .contains("| POST /api/im/messages (sequential) | 30 |"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_reads_every_pending_event() {
    let s = start().await;
    let p = CatchUp {
        events: 120,
        convs: 3,
        limit: 50,
    };
    let r = scenarios::catch_up(&s.base, p).await.unwrap();
    let events = r.figures["catch_up"]["events"].as_u64().unwrap();
    // 120 messages plus the events of creating 3 groups the caller is in.
    assert!(events >= 120, "{events}");
    assert!(r.figures["catch_up"]["pages"].as_u64().unwrap() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_par_stops_by_itself() {
    let s = start().await;
    let mut p = SendPar::scaled(0.03);
    p.clients = 4;
    p.duration = Duration::from_millis(300);
    p.floor_duration = Duration::from_millis(200);
    // The server runs in this process, so its CPU is this process's.
    let r = scenarios::send_par(&s.base, p, "send-par", Some(std::process::id()))
        .await
        .unwrap();
    assert!(r.figures["send"]["count"].as_u64().unwrap() > 0);
    assert!(r.figures["floor"]["count"].as_u64().unwrap() > 0);
    if cfg!(target_os = "linux") {
        let per = r.figures["server_cpu_us_per_msg"].as_f64().unwrap();
        assert!(per > 0.0, "{per}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_io_moves_the_file_every_way_and_reads_it_back() {
    let s = start().await;
    let work = tempfile::tempdir().unwrap();
    // 5 MiB and a bit: two parts, the second short.
    let p = FileIo {
        bytes: (5 << 20) + 4321,
        rounds: 2,
    };
    // In process, the server's CPU is this test binary's.
    let r = files::file_io(&s.base, p, work.path(), Some(std::process::id()))
        .await
        .unwrap();
    let fig = &r.figures;
    for k in ["cp", "cp_fsync", "upload_form", "upload_parts", "download"] {
        let runs = fig["runs"][k]["mib_per_sec"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{k}: {fig}");
        assert!(fig["mib_per_sec"][k].as_f64().unwrap() > 0.0, "{k}: {fig}");
    }
    // Round 0 reads back its form upload, round 1 its upload in parts.
    assert_eq!(fig["uploads_verified"], 2, "{fig}");
    if cfg!(target_os = "linux") {
        for k in ["upload_form", "upload_parts", "download"] {
            assert!(
                fig["server_cpu_ms_per_mib"][k].as_f64().unwrap() > 0.0,
                "{k}: {fig}"
            );
        }
    }
    assert!(fig["upload_vs_cp"].as_f64().unwrap() > 0.0);
    assert_eq!(r.rows.len(), 5);
    // Nothing left behind in the work dir: the source only.
    let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_par_files_reads_back_every_file_message() {
    let s = start().await;
    let mut par = SendPar::scaled(0.03);
    par.clients = 4;
    par.duration = Duration::from_millis(600);
    let p = ParFiles {
        par,
        // A high share, so that a short run surely carries files.
        share: 0.5,
        file_bytes: 8 * 1024,
    };
    let r = files::send_par_files(&s.base, p, Some(std::process::id()))
        .await
        .unwrap();
    let fig = &r.figures;
    assert_eq!(fig["intact"], true, "{fig}");
    let sent = fig["file_messages"]["sent"].as_u64().unwrap();
    assert!(sent > 0, "{fig}");
    assert_eq!(fig["file_messages"]["found"], sent);
    assert_eq!(fig["file_messages"]["intact"], sent);
    assert_eq!(fig["files"]["count"], 4);
    assert!(fig["files"]["sent"].as_u64().unwrap() > 0);
    assert_eq!(fig["files"]["downloaded_intact"], fig["files"]["sent"]);
    assert!(fig["plain"]["count"].as_u64().unwrap() > 0);
    assert!(fig["with_files"]["count"].as_u64().unwrap() > 0);
    assert!(fig["ratio"].as_f64().unwrap() > 0.0);
    // Four file phases, each against a plain one beside it.
    assert_eq!(fig["paired_ratios"].as_array().unwrap().len(), 4, "{fig}");
    assert!(fig["paired_median"].as_f64().unwrap() > 0.0, "{fig}");
    let intact = r
        .rows
        .iter()
        .find(|row| row[0] == "file messages read back intact")
        .expect("a row of intact file messages");
    assert_eq!(intact[1], format!("{sent} of {sent}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_history_serves_an_incremental_sync() {
    let dir = tempfile::tempdir().unwrap();
    let args = SeedArgs {
        data_dir: dir.path().to_owned(),
        users: 12,
        convs: 6,
        caller_convs: 3,
        events: 200,
        durability: imsync_store::Durability::Normal,
        concurrency: 16,
    };
    let m = seed::seed(&args).await.unwrap();
    assert!(m.head >= 200, "head {}", m.head);
    // Extending keeps the users and groups.
    let m2 = seed::seed(&SeedArgs {
        events: 400,
        ..args.clone()
    })
    .await
    .unwrap();
    assert!(m2.head >= 400);
    assert_eq!(m2.users, m.users);
    // The seed's store is dropped with its process in real use; here let its writer go idle.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s = serve_store(open(dir.path()), dir).await;
    let http = imsync_bench::client::http_client();
    let anon = imsync_bench::client::Api::new(&http, &s.base);
    for k in 0..10 {
        let conv = &m2.convs[k % m2.caller_convs];
        anon.with_token(&m2.users[conv.owner].1)
            .send(&conv.id, &format!("fresh {k}"))
            .await
            .unwrap();
    }
    let caller = anon.with_token(&m2.users[0].1);
    let loads = scenarios::measure_incr(&[(caller, m2.head)], 10, 20, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(loads.len(), 1);
    assert_eq!(loads[0].count, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc_sync_times_both_rooms_near_their_end() {
    let s = start().await;
    let p = RcSync {
        small: 30,
        big: 90,
        senders: 3,
        concurrency: 8,
        last: 5,
        tail: 12,
        page: 5,
        calls: 20,
        rounds: 2,
        round_limit: Duration::from_secs(30),
    };
    let r = faces::rc_sync(&s.base, p).await.unwrap();
    let fig = &r.figures;
    assert_eq!(fig["small"]["messages"], 30);
    assert_eq!(fig["big"]["messages"], 90);
    // The newest 12 messages in pages of 5: 3 pages per walk, whole walks per round.
    assert_eq!(fig["big"]["cursor_pages_per_walk"], 3);
    assert_eq!(fig["small"]["cursor_pages_per_walk"], 3);
    for room in ["small", "big"] {
        assert_eq!(fig[room]["last_update"]["n"], 20, "{fig}");
        assert_eq!(fig[room]["cursor_page"]["n"], 24, "{fig}");
        assert_eq!(fig[room]["seed"]["messages"], fig[room]["messages"]);
    }
    assert!(fig["ratio_last_update"]["p50"].as_f64().unwrap() > 0.0);
    assert_eq!(r.rows.len(), 6);
    assert_eq!(cell(&r, 1, 1), "90");
    assert_eq!(cell(&r, 1, 2), "5 msgs, newest first");
    assert_eq!(cell(&r, 2, 0), "ratio 90/30 (lastUpdate)");
    assert_eq!(cell(&r, 4, 2), "newest 12 msgs in 3 pages");
    assert!(r.markdown(None).contains("| ratio 90/30 (cursor page) |"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsdd_sync_answers_every_conversation_then_only_the_changed() {
    let s = start().await;
    let p = TsddSync {
        big: 25,
        small: 12,
        direct_every: 5,
        msgs_per_conv: 3,
        changed: 4,
        senders: 4,
        concurrency: 8,
        full_calls: 6,
        incr_calls: 10,
        rounds: 2,
        round_limit: Duration::from_secs(30),
    };
    let r = faces::tsdd_sync(&s.base, p).await.unwrap();
    let fig = &r.figures;
    for (side, convs, direct) in [("big", 25, 5), ("small", 12, 2)] {
        let full = &fig[side]["full"]["answer"];
        assert_eq!(fig[side]["conversations"], convs);
        assert_eq!(fig[side]["direct"], direct);
        assert_eq!(full["conversations"], convs, "{fig}");
        assert_eq!(full["recents"], convs * 3, "{fig}");
        assert_eq!(full["users"], direct, "{fig}");
        assert_eq!(full["groups"], convs - direct, "{fig}");
        let incr = &fig[side]["incremental"]["answer"];
        assert_eq!(incr["conversations"], 4, "{fig}");
        // Each changed conversation now holds 4 messages, all newer than no listed seq.
        assert_eq!(incr["recents"], 16, "{fig}");
        assert!(incr["max_version"].as_i64().unwrap() > full["max_version"].as_i64().unwrap());
        assert_eq!(fig[side]["full"]["latency"]["n"], 6);
        assert_eq!(fig[side]["incremental"]["latency"]["n"], 10);
    }
    // 37 conversations of 3 messages (the direct ones opened by their first).
    assert_eq!(fig["seed"]["messages"], 37 * 3 - 7);
    assert_eq!(r.rows.len(), 6);
    assert_eq!(cell(&r, 2, 0), "ratio 25/12 (full)");
    assert_eq!(cell(&r, 5, 0), "ratio 25/12 (incremental)");
    assert!(
        cell(&r, 3, 2).starts_with("4 convs, 16 recents"),
        "{}",
        cell(&r, 3, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_times_every_delivery() {
    let s = start().await;
    let p = Fanout {
        members: 5,
        messages: 8,
        rate: 200.0,
    };
    let r = realtime::fanout(&s.base, p).await.unwrap();
    assert_eq!(r.figures["deliveries"]["expected"], 40);
    assert_eq!(r.figures["deliveries"]["received"], 40);
    assert_eq!(r.figures["deliveries"]["latency"]["n"], 40);
    assert_eq!(r.figures["send"]["count"], 8);
    assert_eq!(r.figures["closed_early"], 0);
    assert_eq!(cell(&r, 0, 1), "40 of 40");
}

/// A face's fan-out and the native one of the same run, each delivery of both timed.
async fn face_fanout_times_both_phases(face: Face) {
    let s = start().await;
    let p = FaceFanout {
        members: 5,
        messages: 8,
        rate: 200.0,
    };
    // In process, the server's CPU and memory are this test binary's.
    let r = face_fanout::face_fanout(&s.base, face, p, Some(std::process::id()))
        .await
        .unwrap();
    for phase in ["face", "native"] {
        let d = &r.figures[phase]["deliveries"];
        assert_eq!(d["expected"], 40, "{phase}");
        assert_eq!(d["received"], 40, "{phase}");
        assert_eq!(d["latency"]["n"], 40, "{phase}");
        assert_eq!(r.figures[phase]["rejected"], 0, "{phase}");
        assert_eq!(r.figures[phase]["closed_early"], 0, "{phase}");
    }
    assert_eq!(cell(&r, 0, 1), "40 of 40");
    assert_eq!(cell(&r, 1, 1), "40 of 40");
    assert!(r.figures["ratio_p99"].as_f64().unwrap() > 0.0);
    if cfg!(target_os = "linux") {
        assert!(r.figures["bytes_per_idle_face_connection"].is_number());
        assert!(
            r.figures["face"]["server_cpu_us_per_delivery"]
                .as_f64()
                .unwrap()
                > 0.0
        );
    }
    if face == Face::WuKongIm {
        assert!(r.figures["server_crypto_us_per_recv"].as_f64().unwrap() > 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddp_fanout_times_ddp_and_native_deliveries() {
    face_fanout_times_both_phases(Face::Ddp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wk_fanout_times_decrypted_recvs_and_native_deliveries() {
    face_fanout_times_both_phases(Face::WuKongIm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ws_holds_every_connection_and_reads_rss() {
    let s = start().await;
    let p = IdleWs {
        connections: 20,
        users: 3,
    };
    // In process, the server's RSS is this test binary's.
    let pid = std::process::id();
    let r = realtime::idle_ws(&s.base, p, move || imsync_bench::server::rss_kib_of(pid))
        .await
        .unwrap();
    assert_eq!(r.figures["connections"], 20);
    assert!(r.figures["rss_kib_after"].as_u64().unwrap() > 0);
    assert!(r.figures["bytes_per_connection"].is_number());
}

#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_seq_runs_on_a_fresh_postgres_database() {
    let url = postgres_url()
        .expect("this test needs IMSYNC_TEST_DATABASE_URL=postgres://... (see .ci/run)");
    let db = FreshDb::create(&url, "imsync_bench_smoke").unwrap();
    let durability = db.durability();
    assert!(
        durability.starts_with("synchronous_commit="),
        "{durability}"
    );
    assert!(!durability.contains("unknown"), "{durability}");
    let s = start_pg(&db.url, None).await;
    let r = scenarios::send_seq(&s.base, 20).await.unwrap();
    assert_eq!(r.figures["send"]["count"], 20);
    drop(s);
    let name = db.name.clone();
    db.drop_now().unwrap();
    let left = psql(
        &url,
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    )
    .unwrap();
    assert_eq!(left, "0");
}

#[ignore = "needs IMSYNC_TEST_DATABASE_URL (PostgreSQL)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_node_times_cross_node_deliveries() {
    let url = postgres_url()
        .expect("this test needs IMSYNC_TEST_DATABASE_URL=postgres://... (see .ci/run)");
    // Three nodes on one schema of the test database, as the scenario runs them.
    let schema = format!("bench_mn_{}", scenarios::run_tag());
    let a = start_pg(&url, Some(&schema)).await;
    let b = start_pg(&url, Some(&schema)).await;
    let c = start_pg(&url, Some(&schema)).await;
    let mut par = SendPar::scaled(0.03);
    par.duration = Duration::from_millis(600);
    // Two clients on each node, as `--clients-per-node 2` asks.
    let p = MultiNode { par, receivers: 3 }.clients_per_node(2, 3);
    let r = realtime::multi_node(&[a.base.clone(), b.base.clone(), c.base.clone()], p)
        .await
        .unwrap();
    drop((a, b, c));
    // Best effort: the nodes' connections may still hold the schema for a moment.
    for attempt in 0..5 {
        match psql(&url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")) {
            Ok(_) => break,
            Err(e) if attempt == 4 => eprintln!("could not drop schema {schema}: {e:#}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    assert_eq!(r.figures["nodes"], 3);
    assert_eq!(r.figures["clients"], 6);
    assert!(r.figures["send"]["count"].as_u64().unwrap() > 0);
    // Clients 1, 2, 4 and 5 send through nodes B and C into groups with a receiver on node A.
    assert!(
        r.figures["cross_node"]["n"].as_u64().unwrap() > 0,
        "{}",
        r.figures
    );
    assert!(
        r.figures["same_node"]["n"].as_u64().unwrap() > 0,
        "{}",
        r.figures
    );
    assert_eq!(r.figures["closed_early"], 0);
}
