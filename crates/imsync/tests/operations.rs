//! What an operator sees: startup failures as one clear line (a taken port before anything is
//! created, an unwritable data directory), logs without colour codes when they are not on a
//! terminal, the client's address behind a trusted proxy (in the rate limit and the log), and
//! the `/metrics` gauges of open connections and of the writer.

mod common;

use common::{
    free_port, postgres_url, schema_for, scrape, value, Api, ChildServer, Options, TestServer,
};
use futures_util::StreamExt;
use reqwest::StatusCode;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary to its end (a few seconds at most: these runs fail at startup), with
/// RUST_BACKTRACE set as an operator's shell might have it.
fn run_imsync(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imsync"))
        .args(args)
        .env("RUST_BACKTRACE", "full")
        .env("IMSYNC_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imsync");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("imsync {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The one line a failed start prints, checked for what must never be in it.
fn startup_error(out: &Output) -> String {
    assert!(!out.status.success(), "imsync should have failed to start");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("imsync: "), "{stderr:?}");
    for (what, text) in [("stderr", stderr.as_str()), ("stdout", &stdout)] {
        assert!(!text.contains("\x1b["), "colour codes on {what}: {text:?}");
        assert!(
            !text.to_lowercase().contains("backtrace"),
            "{what}: {text:?}"
        );
        assert!(!text.contains("panicked"), "{what}: {text:?}");
    }
    assert!(
        !stderr.contains("The database is unavailable"),
        "{stderr:?}"
    );
    stderr
}

/// The `--database-url` arguments of a run in `dir` on PostgreSQL, when the suite runs there.
fn database_args(dir: &Path) -> Vec<String> {
    match postgres_url() {
        Some(url) => vec![
            "--database-url".into(),
            url,
            "--pg-schema".into(),
            schema_for(dir),
        ],
        None => Vec::new(),
    }
}

/// Whether anything of a database was made for `dir`: its SQLite directory, or its
/// PostgreSQL schema.
fn database_created(data_dir: &Path) -> bool {
    if data_dir.exists() {
        return true;
    }
    let Some(url) = postgres_url() else {
        return false;
    };
    let schema = schema_for(data_dir);
    let out = Command::new("psql")
        .args([
            url.as_str(),
            "-qAtc",
            &format!(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{schema}'"
            ),
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim() != "0"
}

#[test]
fn a_taken_port_fails_the_start_before_a_database_is_made() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    for (flag, args) in [
        ("--listen", vec!["--listen", &taken_addr]),
        (
            "--wukongim-tcp-listen",
            vec![
                "--listen",
                "127.0.0.1:0",
                "--wukongim-tcp-listen",
                &taken_addr,
            ],
        ),
    ] {
        let data_dir = tmp.path().join(flag.trim_start_matches('-'));
        let data = data_dir.display().to_string();
        let db = database_args(&data_dir);
        let mut all = vec!["serve", "--data-dir", &data];
        all.extend(args);
        all.extend(db.iter().map(String::as_str));
        let line = startup_error(&run_imsync(&all));
        assert!(
            line.contains(&format!(
                "cannot listen on {taken_addr}: address in use; choose another {flag}"
            )),
            "{line}"
        );
        assert!(
            !database_created(&data_dir),
            "{flag}: a database was made for a server that could not listen"
        );
    }
}

#[test]
fn an_unusable_data_directory_is_named_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    // A file where a directory should be.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let under_file = file.join("data");
    let line = startup_error(&run_imsync(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &under_file.display().to_string(),
    ]));
    assert!(
        line.contains(&format!(
            "cannot create the data directory {}",
            under_file.display()
        )) && line.contains("choose another --data-dir"),
        "{line}"
    );
    // A directory no one may write to, root included (sysfs refuses new files).
    let line = startup_error(&run_imsync(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        "/sys/kernel",
    ]));
    assert!(
        line.contains("cannot write to the data directory /sys/kernel: permission denied")
            && line.contains("write access"),
        "{line}"
    );
    // The same through --database-url.
    let line = startup_error(&run_imsync(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        "sqlite:///sys/kernel/imsync.db",
    ]));
    assert!(
        line.contains("cannot write to the data directory /sys/kernel")
            && line.contains("--database-url"),
        "{line}"
    );
}

/// Runs the binary until it is healthy, makes `requests` (with their `X-Forwarded-For`), kills
/// it and answers its log.
async fn log_of(trusted: Option<&str>, forwarded_for: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imsync"));
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir.path())
    .args(database_args(dir.path()));
    if let Some(t) = trusted {
        cmd.args(["--trusted-proxies", t]);
    }
    let mut child = cmd
        .env("IMSYNC_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imsync");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut healthy = false;
    for _ in 0..400 {
        let r = http.get(format!("{base}/healthz")).send().await;
        if r.is_ok_and(|r| r.status().is_success()) {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answered = http
        .get(format!("{base}/api/im/health"))
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .map(|r| r.status());
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(healthy, "imsync did not start: {log}");
    assert_eq!(answered.unwrap(), StatusCode::OK);
    log
}

#[tokio::test]
async fn the_log_has_no_colour_codes_and_names_the_forwarded_client() {
    let log = log_of(Some("127.0.0.0/8"), "198.51.100.23, 127.0.0.5").await;
    assert!(log.contains("imsync is ready"), "{log}");
    assert!(
        !log.contains("\x1b["),
        "colour codes in a piped log: {log:?}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("/api/im/health"))
        .unwrap_or_else(|| panic!("no log line of the request: {log}"));
    assert!(line.contains("client=198.51.100.23"), "{line}");

    // Without trusted proxies the header is ignored: the peer is the client.
    let log = log_of(None, "198.51.100.23").await;
    let line = log
        .lines()
        .find(|l| l.contains("/api/im/health"))
        .unwrap_or_else(|| panic!("no log line of the request: {log}"));
    assert!(line.contains("client=127.0.0.1"), "{line}");
    assert!(!log.contains("198.51.100.23"), "{log}");
}

/// Requests of `forwarded_for` until one is refused; answers how many passed.
async fn until_limited(api: &Api, forwarded_for: &str) -> usize {
    for passed in 0..20 {
        let status = api
            .http
            .get(format!("{}/api/im/health", api.base))
            .header("x-forwarded-for", forwarded_for)
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return passed;
        }
        assert_eq!(status, StatusCode::OK);
    }
    panic!("20 requests in a row at 1 per second were never limited");
}

/// How many of three quick requests of `forwarded_for` pass.
async fn passing_of_three(api: &Api, forwarded_for: &str) -> usize {
    let mut passed = 0;
    for _ in 0..3 {
        let status = api
            .http
            .get(format!("{}/api/im/health", api.base))
            .header("x-forwarded-for", forwarded_for)
            .send()
            .await
            .unwrap()
            .status();
        passed += usize::from(status == StatusCode::OK);
    }
    passed
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_bucket() {
    // The test's requests come from 127.0.0.1: here that is a trusted proxy.
    let srv = TestServer::start_with(Options {
        rate_limit: Some(1),
        trusted_proxies: Some("127.0.0.0/8"),
        ..Default::default()
    })
    .await;
    let api = srv.client();
    assert!(until_limited(&api, "203.0.113.1").await >= 1);
    // Another client behind the same proxy still has its burst of two.
    assert!(passing_of_three(&api, "203.0.113.2").await >= 2);
    // A client cannot pick a fresh bucket by writing its own header: the proxy appends the
    // address it saw, and that is the one counted.
    assert!(passing_of_three(&api, "192.0.2.99, 203.0.113.1").await <= 1);
}

#[tokio::test]
async fn from_an_untrusted_peer_the_header_is_ignored() {
    let srv = TestServer::start_with(Options {
        rate_limit: Some(1),
        trusted_proxies: Some("10.0.0.0/8"),
        ..Default::default()
    })
    .await;
    let api = srv.client();
    assert!(until_limited(&api, "203.0.113.1").await >= 1);
    // The same peer, whatever it claims: the same bucket. (One request may pass if a second
    // went by and refilled it.)
    assert!(passing_of_three(&api, "203.0.113.2").await <= 1);
}

const PROTOCOLS: [&str; 5] = [
    "native_ws",
    "native_sse",
    "ddp",
    "wukongim_ws",
    "wukongim_tcp",
];

/// Waits until every protocol's open-connection gauge reads `expected`.
async fn gauges_read(base: &str, expected: f64) -> Vec<(String, f64)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = scrape(base).await;
        let values: Vec<Option<f64>> = PROTOCOLS
            .iter()
            .map(|p| {
                value(
                    &metrics,
                    &format!("imsync_connections_open{{protocol=\"{p}\"}}"),
                )
            })
            .collect();
        if values.iter().all(|v| *v == Some(expected)) {
            return metrics;
        }
        assert!(
            Instant::now() < deadline,
            "open connections by protocol {PROTOCOLS:?}: {values:?}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_writer_gauges_go_up_and_back_down() {
    let dir = tempfile::tempdir().unwrap();
    let tcp_port = free_port();
    let tcp_addr = format!("127.0.0.1:{tcp_port}");
    let srv = ChildServer::spawn_with(
        dir.path(),
        free_port(),
        &["--wukongim-tcp-listen", &tcp_addr],
    )
    .await;
    let base = srv.base.clone();
    let host = base.trim_start_matches("http://").to_owned();
    let before = gauges_read(&base, 0.0).await;
    // Every metric exported is one the README lists.
    let readme = include_str!("../../../README.md");
    for (name, _) in &before {
        let bare = name.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| bare.strip_suffix(s))
            .unwrap_or(bare);
        assert!(
            readme.contains(&format!("| `{family}")),
            "{family} is not in the README's metrics table"
        );
    }

    let anon = Api::new(&base, None);
    let (status, body) = anon
        .post(
            "/api/im/register",
            serde_json::json!({"type": "human", "username": "gauge"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();

    let (mut native, _) = tokio_tungstenite::connect_async(format!("ws://{host}/ws?token={token}"))
        .await
        .unwrap();
    let first = native.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("authenticated"));
    let sse = reqwest::get(format!("{base}/sse?token={token}"))
        .await
        .unwrap();
    assert_eq!(sse.status(), StatusCode::OK);
    let (ddp, _) = tokio_tungstenite::connect_async(format!("ws://{host}/websocket"))
        .await
        .unwrap();
    let (wukongim, _) = tokio_tungstenite::connect_async(format!("ws://{host}/v1/wukongim/ws"))
        .await
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(&tcp_addr).await.unwrap();

    let during = gauges_read(&base, 1.0).await;
    // The registration went through the writer.
    let last = value(&during, "imsync_writer_batch_size_last").expect("last batch size");
    let average = value(&during, "imsync_writer_batch_size_average").expect("average batch");
    assert!(last >= 1.0 && average >= 1.0, "{last} {average}");
    assert_eq!(value(&during, "imsync_writer_queue_depth"), Some(0.0));

    drop((native, sse, ddp, wukongim, tcp));
    gauges_read(&base, 0.0).await;
}

/// A database made by the release before archive became each member's own state: the migrations
/// up to the one before that change, a direct conversation archived (then one flag shared by
/// both) and a group that is not. The current binary migrates it: both members of the archived
/// conversation find it archived for themselves, nobody else's state changes, and the shared
/// flag is cleared so that it locks nobody out.
#[test]
fn an_archive_made_by_the_previous_release_becomes_each_members_own() {
    let steps = imsync_store::repo::schema::sqlite_steps();
    let before = steps
        .iter()
        .position(|s| s.contains("ALTER TABLE participants ADD COLUMN archived"))
        .expect("the per-member archive migration");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("imsync.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE schema_version (version BIGINT NOT NULL)")
            .unwrap();
        for (i, step) in steps[..before].iter().enumerate() {
            c.execute_batch(step).unwrap();
            c.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [i as i64 + 1],
            )
            .unwrap();
        }
        let now = 1_700_000_000_000i64;
        for u in ["alice", "bob", "carol"] {
            c.execute(
                "INSERT INTO users (id, username, username_key, display_name, role, created_at, \
                 updated_at) VALUES (?1, ?1, ?1, ?1, 'human', ?2, ?2)",
                rusqlite::params![u, now],
            )
            .unwrap();
        }
        for (id, kind, archived, members) in [
            ("dm", "direct", 1, &["alice", "bob"][..]),
            ("grp", "group", 0, &["alice", "bob", "carol"][..]),
        ] {
            c.execute(
                "INSERT INTO conversations (id, kind, created_by, created_at, updated_at, archived) \
                 VALUES (?1, ?2, 'alice', ?3, ?3, ?4)",
                rusqlite::params![id, kind, now, archived],
            )
            .unwrap();
            for m in members {
                c.execute(
                    "INSERT INTO participants (conv_id, user_id, role, joined_seq, joined_at) \
                     VALUES (?1, ?2, 'member', 0, ?3)",
                    rusqlite::params![id, m, now],
                )
                .unwrap();
            }
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_imsync"))
        .arg("migrate")
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("IMSYNC_DATABASE_URL")
        .env("IMSYNC_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = rusqlite::Connection::open(&db).unwrap();
    let mut rows: Vec<(String, String, i64)> = c
        .prepare("SELECT conv_id, user_id, archived FROM participants ORDER BY conv_id, user_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    let expected: Vec<(String, String, i64)> = [
        ("dm", "alice", 1),
        ("dm", "bob", 1),
        ("grp", "alice", 0),
        ("grp", "bob", 0),
        ("grp", "carol", 0),
    ]
    .iter()
    .map(|(c, u, a)| (c.to_string(), u.to_string(), *a))
    .collect();
    assert_eq!(rows, expected);
    let shared: i64 = c
        .query_row(
            "SELECT count(*) FROM conversations WHERE archived = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(shared, 0, "the shared flag is cleared");
}
