//! The deployment kit in `deploy/`, each piece run the way an operator would run it where this
//! machine allows: the health probe against a live and a dead server; the container recipe's
//! runtime stage (its user, environment, volume, health check and stop signal) applied to the
//! real binary, since no image can be built without a container engine and a registry; the
//! systemd unit checked by systemd itself; and the nginx and Caddy examples serving real clients
//! over TLS in front of a real server.

mod common;

use common::python::{run_timed, text};
use common::{free_port, ChildServer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

fn imsync() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imsync"))
}

fn healthcheck(listen: &str) -> Output {
    imsync()
        .args(["healthcheck", "--listen", listen])
        .env_remove("IMSYNC_CONFIG")
        .output()
        .expect("run imsync healthcheck")
}

#[tokio::test]
async fn healthcheck_succeeds_while_the_server_is_up_and_fails_in_one_line_after() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = ChildServer::spawn(dir.path(), port).await;

    // A wildcard listen address is probed on loopback, as in the container.
    let up = healthcheck(&format!("0.0.0.0:{port}"));
    assert!(up.status.success(), "healthcheck failed: {}", text(&up));

    server.kill9();
    let down = healthcheck(&format!("127.0.0.1:{port}"));
    assert!(!down.status.success(), "healthcheck passed with no server");
    let said = String::from_utf8_lossy(&down.stderr);
    assert_eq!(said.lines().count(), 1, "not one line: {said}");
    assert!(said.contains("no server answers"), "{said}");
}

/// The container recipe's last stage, as directives: `ENV` pairs, and the other directives'
/// arguments by name. Continuation lines are joined first.
struct RuntimeStage {
    env: HashMap<String, String>,
    directives: HashMap<String, String>,
}

fn runtime_stage(dockerfile: &str) -> RuntimeStage {
    let joined = dockerfile.replace("\\\n", " ");
    let stage = joined
        .rsplit_once("\nFROM ")
        .expect("a multi-stage recipe")
        .1;
    let mut env = HashMap::new();
    let mut directives = HashMap::new();
    for line in stage.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        if word == "ENV" {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("ENV KEY=VALUE");
                env.insert(k.to_owned(), v.to_owned());
            }
        } else {
            directives.insert(word.to_owned(), rest.trim().to_owned());
        }
    }
    RuntimeStage { env, directives }
}

/// A JSON array of strings, as exec-form directives are written.
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not an exec-form list: {text}: {e}"))
}

#[tokio::test]
async fn the_container_recipe_runs_the_server_as_its_runtime_stage_says() {
    let stage = runtime_stage(&repo_file("deploy/Dockerfile"));
    let d = &stage.directives;
    let user = d.get("USER").expect("the recipe names a user");
    assert!(user != "root" && user != "0", "the container runs as root");
    assert_eq!(d.get("STOPSIGNAL").map(String::as_str), Some("SIGTERM"));
    let volume = d.get("VOLUME").expect("the data directory is a volume");
    assert_eq!(
        stage.env.get("IMSYNC_DATA_DIR"),
        Some(volume),
        "the data directory is not the volume"
    );
    let listen = stage
        .env
        .get("IMSYNC_LISTEN")
        .expect("IMSYNC_LISTEN is set");
    let port: u16 = d
        .get("EXPOSE")
        .expect("the recipe exposes a port")
        .parse()
        .unwrap();
    assert_eq!(
        listen,
        &format!("0.0.0.0:{port}"),
        "not listening on all addresses at the exposed port"
    );
    let health = d.get("HEALTHCHECK").expect("a health check");
    let probe = exec_form(health.split_once("CMD ").expect("HEALTHCHECK … CMD [..]").1);
    let command: Vec<String> = exec_form(&d["ENTRYPOINT"])
        .into_iter()
        .chain(exec_form(&d["CMD"]))
        .collect();
    assert_eq!(command[0], "imsync");
    assert_eq!(probe[0], "imsync");

    // The stage's environment as the container has it; only the port (this machine's 8080 may
    // be taken) and the volume's place on this machine differ.
    let volume_dir = tempfile::tempdir().unwrap();
    let free = free_port();
    let mut env = stage.env.clone();
    env.insert("IMSYNC_LISTEN".into(), format!("0.0.0.0:{free}"));
    env.insert(
        "IMSYNC_DATA_DIR".into(),
        volume_dir.path().display().to_string(),
    );
    let with_env = |args: &[String]| {
        let mut cmd = imsync();
        cmd.args(args)
            .env_clear()
            .envs(&env)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        cmd
    };
    let mut server = with_env(&command[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the container's command");
    let mut healthy = false;
    for _ in 0..100 {
        if with_env(&probe[1..]).output().unwrap().status.success() {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !healthy {
        let _ = server.kill();
    }
    assert!(healthy, "the recipe's health check never passed");
    assert!(
        volume_dir.path().join("imsync.db").exists(),
        "the database is not on the volume"
    );

    // The stop signal drains and exits cleanly, and the log is one JSON object per line.
    let term = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = tokio::task::spawn_blocking(move || server.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "exit after SIGTERM: {:?}", out.status);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.lines().count() > 0, "nothing logged");
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON: {line}: {e}"));
    }
}

#[test]
#[ignore = "needs systemd's systemd-analyze; .ci/run runs it"]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = repo_file("deploy/imsync.service");
    let exec = "ExecStart=/usr/local/bin/imsync serve";
    assert!(unit.contains(exec), "the unit's ExecStart changed");
    // verify checks that the command exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imsync.service");
    let local = format!("ExecStart={} serve", env!("CARGO_BIN_EXE_imsync"));
    std::fs::write(&path, unit.replace(exec, &local)).unwrap();

    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is required");
    assert!(
        verify.status.success() && text(&verify).trim().is_empty(),
        "systemd-analyze verify: {}",
        text(&verify)
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&path)
        .output()
        .unwrap();
    let report = text(&security);
    let level: f64 = report
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for imsync.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    // systemd calls up to 2.0 "OK"; a unit with no hardening scores 9.6.
    assert!(level <= 2.0, "exposure level {level}:\n{report}");
}

/// nginx and Caddy from Debian's packages, unpacked (not installed: nothing runs as a system
/// service) under the target directory and reused by later runs. Unpacked once per process: the
/// tests that use them run at once, and one must not run a binary another is still writing.
fn debian_tools() -> PathBuf {
    static TOOLS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TOOLS.get_or_init(unpack_debian_tools).clone()
}

fn unpack_debian_tools() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-tools");
    let nginx = root.join("usr/sbin/nginx");
    let caddy = root.join("usr/bin/caddy");
    if nginx.exists() && caddy.exists() {
        return root;
    }
    let scratch = root.with_file_name(format!("deploy-tools.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let download = Command::new("apt-get")
        .args(["download", "nginx", "caddy"])
        .current_dir(&scratch)
        .output()
        .expect("apt-get is required");
    assert!(
        download.status.success(),
        "apt-get download nginx caddy: {}",
        text(&download)
    );
    for deb in std::fs::read_dir(&scratch).unwrap() {
        let deb = deb.unwrap().path();
        if deb.extension().is_some_and(|e| e == "deb") {
            let unpack = Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(&scratch)
                .output()
                .unwrap();
            assert!(unpack.status.success(), "dpkg-deb -x: {}", text(&unpack));
        }
    }
    if !(nginx.exists() && caddy.exists()) {
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::rename(&scratch, &root);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(nginx.exists() && caddy.exists(), "nginx and caddy unpacked");
    root
}

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate, key).
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "2", "-newkey", "ec"])
        .args([
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is required");
    assert!(made.status.success(), "openssl: {}", text(&made));
    (cert, key)
}

/// `text` with each `from` replaced, asserting it was there: an example that changed shape must
/// fail here rather than be served half-adapted.
fn adapt(mut text: String, changes: &[(&str, &str)]) -> String {
    for (from, to) in changes {
        assert!(text.contains(from), "the example no longer holds {from:?}");
        text = text.replace(from, to);
    }
    text
}

/// A proxy process, killed when dropped.
struct Proxy(std::process::Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for_port(port: u16, proxy: &mut Proxy, log: &Path) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = proxy.0.try_wait() {
            panic!(
                "the proxy exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the proxy did not listen on {port}");
}

/// The clients' checks, through the proxy at `base`, trusting `ca`.
async fn probe_through(base: &str, ca: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deploy/through_proxy.mjs");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("--experimental-websocket")
        .arg(&script)
        .arg(base)
        .env("NODE_EXTRA_CA_CERTS", ca)
        .env("NODE_NO_WARNINGS", "1");
    let out = run_timed(&mut cmd, "the proxy probe (node is required)", 90).await;
    assert!(
        out.status.success(),
        "through the proxy at {base}:\n{}",
        text(&out)
    );
}

/// What both proxy examples are tried with: the unpacked proxies, a directory, a certificate for
/// 127.0.0.1, and imsync trusting a proxy on 127.0.0.1.
struct Behind {
    tools: PathBuf,
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    imsync_port: u16,
    _server: ChildServer,
}

async fn behind_a_proxy() -> Behind {
    let tools = debian_tools();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let imsync_port = free_port();
    let _server = ChildServer::spawn_with(
        &dir.path().join("data"),
        imsync_port,
        &["--trusted-proxies", "127.0.0.1"],
    )
    .await;
    Behind {
        tools,
        dir,
        cert,
        key,
        imsync_port,
        _server,
    }
}

#[tokio::test]
#[ignore = "unpacks nginx from Debian's packages with apt-get; .ci/run runs it"]
async fn the_nginx_example_serves_rest_uploads_websockets_and_sse_over_tls() {
    let Behind {
        tools,
        dir,
        cert,
        key,
        imsync_port,
        _server,
    } = behind_a_proxy().await;
    let (tls, plain) = (free_port(), free_port());
    let site = adapt(
        repo_file("deploy/nginx.conf"),
        &[
            (
                "listen 443 ssl http2;",
                &format!("listen 127.0.0.1:{tls} ssl http2;"),
            ),
            ("listen [::]:443 ssl http2;", ""),
            ("listen 80;", &format!("listen 127.0.0.1:{plain};")),
            ("listen [::]:80;", ""),
            (
                "server 127.0.0.1:8080;",
                &format!("server 127.0.0.1:{imsync_port};"),
            ),
            (
                "/etc/letsencrypt/live/chat.example.com/fullchain.pem",
                &cert.display().to_string(),
            ),
            (
                "/etc/letsencrypt/live/chat.example.com/privkey.pem",
                &key.display().to_string(),
            ),
        ],
    );
    std::fs::write(dir.path().join("site.conf"), site).unwrap();
    let d = dir.path().display();
    let main = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\ndaemon off;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         include {d}/site.conf;\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
    let log = dir.path().join("error.log");
    let mut proxy = Proxy(
        Command::new(tools.join("usr/sbin/nginx"))
            .arg("-e")
            .arg(&log)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx"),
    );
    wait_for_port(tls, &mut proxy, &log).await;

    // Plain HTTP is sent to HTTPS.
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{plain}/api/im/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 301);
    let location = redirect.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("https://"), "{location}");

    probe_through(&format!("https://127.0.0.1:{tls}"), &cert).await;
}

#[tokio::test]
#[ignore = "unpacks Caddy from Debian's packages with apt-get; .ci/run runs it"]
async fn the_caddy_example_serves_rest_uploads_websockets_and_sse_over_tls() {
    let Behind {
        tools,
        dir,
        cert,
        key,
        imsync_port,
        _server,
    } = behind_a_proxy().await;
    let tls = free_port();
    let site = adapt(
        repo_file("deploy/Caddyfile"),
        &[
            (
                "chat.example.com {",
                &format!(
                    "https://127.0.0.1:{tls} {{\n\ttls {} {}",
                    cert.display(),
                    key.display()
                ),
            ),
            ("127.0.0.1:8080", &format!("127.0.0.1:{imsync_port}")),
        ],
    );
    // Global options for a test: no admin endpoint, no redirect listener on port 80, state in
    // the temporary directory.
    let d = dir.path().display();
    let caddyfile = format!(
        "{{\n\tadmin off\n\tauto_https disable_redirects\n\tstorage file_system {d}/caddy\n}}\n\n{site}"
    );
    std::fs::write(dir.path().join("Caddyfile"), caddyfile).unwrap();
    let log = dir.path().join("caddy.log");
    let mut proxy = Proxy(
        Command::new(tools.join("usr/bin/caddy"))
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(dir.path().join("Caddyfile"))
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("xdg-data"))
            .env("XDG_CONFIG_HOME", dir.path().join("xdg-config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start caddy"),
    );
    wait_for_port(tls, &mut proxy, &log).await;
    probe_through(&format!("https://127.0.0.1:{tls}"), &cert).await;
}
