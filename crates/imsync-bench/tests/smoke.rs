//! The harness against an in-process imsync (the router on 127.0.0.1:0, a temp data dir) at a
//! tiny scale: proves the scenarios, the seed step and the report run end to end. Asserts what
//! the harness measured, never how fast.

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
    let state = imsync_server::AppState {
        service: imsync_service::Service::new(store, imsync_service::ServiceConfig::default()),
        metrics: imsync_server::install_recorder(),
        // Default: the rate limit is off, as on the benchmarked binary.
        config: Arc::new(imsync_server::ServerConfig::default()),
    };
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
    let r = scenarios::send_par(&s.base, p, "send-par").await.unwrap();
    assert!(r.figures["send"]["count"].as_u64().unwrap() > 0);
    assert!(r.figures["floor"]["count"].as_u64().unwrap() > 0);
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
    let load = scenarios::measure_incr(&caller, m2.head, 10, 20, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(load.count, 20);
}
