//! The WuKongIM socket (docs/wukongim.md): a small client built on the server's own codec,
//! and the real `wukongimjssdk` in Node (see `sdk_*`).

mod common;

use common::{Api, TestServer};
use futures_util::{SinkExt, StreamExt};
use imsync_server::wukongim::codec::{self, Connect, Packet, Recv, Send};
use imsync_server::wukongim::crypto::{recv_verify, send_verify, Cipher, ServerKeys};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Account {
    uid: String,
    token: String,
    native: Api,
}

async fn account(base: &str, username: &str) -> Account {
    let anon = Api::new(base, None);
    let (s, b) = anon
        .post(
            "/api/im/users/register",
            json!({"username": username, "password": "secret-pass", "displayName": username}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "register {username}: {b}");
    let (s, b) = anon
        .post(
            "/v1/user/login",
            json!({"username": username, "password": "secret-pass"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "login {username}: {b}");
    let token = b["token"].as_str().unwrap().to_owned();
    let uid = b["uid"].as_str().unwrap().to_owned();
    let mut native = Api::new(base, Some(token.clone()));
    native.user_id = uid.clone();
    native.username = username.to_owned();
    Account { uid, token, native }
}

/// A TSDD REST call with the `token` header.
async fn tsdd(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .header("token", token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

struct Client {
    io: Io,
    cipher: Cipher,
    uid: String,
    seq: u32,
}

async fn open(srv: &TestServer) -> Ws {
    let url = format!("ws://{}{}", srv.addr, imsync_server::wukongim::SOCKET_PATH);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

async fn next_packet<S>(ws: &mut S) -> Option<Packet>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a packet within 10 s")?;
        match m.ok()? {
            Message::Binary(b) => return Some(codec::decode(&b, 1 << 20).expect("a valid packet")),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// A client's transport: a WebSocket (one packet per message) or a TCP stream (packets back to
/// back, cut with the server's own `frame_len`).
enum Io {
    Ws(Box<Ws>),
    Tcp(tokio::net::TcpStream, Vec<u8>),
}

impl Io {
    async fn tcp(addr: std::net::SocketAddr) -> Io {
        Io::Tcp(
            tokio::net::TcpStream::connect(addr).await.expect("connect"),
            Vec::new(),
        )
    }

    async fn put_raw(&mut self, bytes: Vec<u8>) {
        match self {
            Io::Ws(ws) => ws.send(Message::Binary(bytes.into())).await.unwrap(),
            Io::Tcp(s, _) => {
                use tokio::io::AsyncWriteExt;
                s.write_all(&bytes).await.unwrap();
            }
        }
    }

    /// The next packet; `None` once the server closed the connection.
    async fn next(&mut self) -> Option<Packet> {
        match self {
            Io::Ws(ws) => next_packet(ws.as_mut()).await,
            Io::Tcp(s, buf) => loop {
                use tokio::io::AsyncReadExt;
                if let Some(n) = codec::frame_len(buf, 1 << 20).expect("a valid packet") {
                    let p = codec::decode(&buf[..n], 1 << 20).expect("a valid packet");
                    buf.drain(..n);
                    return Some(p);
                }
                let mut chunk = [0u8; 4096];
                let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
                    .await
                    .expect("a packet within 10 s")
                    .ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            },
        }
    }
}

/// CONNECT with `token` over the WebSocket; answers the CONNACK and the connection.
async fn connect(srv: &TestServer, uid: &str, token: &str) -> (codec::Connack, Option<Client>) {
    connect_over(Io::Ws(Box::new(open(srv).await)), uid, token).await
}

/// CONNECT with `token` over the TCP listener.
async fn connect_tcp(srv: &TestServer, uid: &str, token: &str) -> (codec::Connack, Option<Client>) {
    let addr = srv.wukongim_tcp.expect("a server with a TCP listener");
    connect_over(Io::tcp(addr).await, uid, token).await
}

async fn connect_over(mut io: Io, uid: &str, token: &str) -> (codec::Connack, Option<Client>) {
    let secret: [u8; 32] = rand::random();
    let mine = ServerKeys::from_parts(secret, String::new());
    let p = Packet::Connect(Connect {
        version: 2,
        device_flag: 1,
        device_id: "rust-test".into(),
        uid: uid.into(),
        token: token.into(),
        client_timestamp: 0,
        client_key: mine.public.clone(),
    });
    io.put_raw(p.encode().unwrap()).await;
    let Some(Packet::Connack(ack)) = io.next().await else {
        panic!("CONNACK expected");
    };
    if ack.reason != codec::REASON_SUCCESS {
        return (ack, None);
    }
    let cipher = ServerKeys::from_parts(secret, ack.salt.clone())
        .agree(&ack.server_key)
        .expect("a usable server key");
    (
        ack,
        Some(Client {
            io,
            cipher,
            uid: uid.into(),
            seq: 0,
        }),
    )
}

impl Client {
    async fn put(&mut self, p: &Packet) {
        self.io.put_raw(p.encode().unwrap()).await;
    }

    fn send_packet(
        &mut self,
        channel_id: &str,
        channel_type: u8,
        client_msg_no: &str,
        text: &str,
    ) -> Send {
        self.seq += 1;
        let payload = self
            .cipher
            .encrypt_b64(json!({"type": 1, "content": text}).to_string().as_bytes());
        let verify = send_verify(self.seq, client_msg_no, channel_id, channel_type, &payload);
        Send {
            flags: 0,
            setting: 0,
            client_seq: self.seq,
            client_msg_no: client_msg_no.into(),
            stream_no: None,
            channel_id: channel_id.into(),
            channel_type,
            msg_key: self.cipher.msg_key(&verify),
            topic: None,
            payload: payload.into_bytes(),
        }
    }

    /// SENDs a text; answers the SENDACK (RECVs of others arriving first are an error).
    async fn send(
        &mut self,
        channel_id: &str,
        channel_type: u8,
        client_msg_no: &str,
        text: &str,
    ) -> codec::Sendack {
        let s = self.send_packet(channel_id, channel_type, client_msg_no, text);
        self.put(&Packet::Send(s)).await;
        match self.io.next().await {
            Some(Packet::Sendack(a)) => a,
            other => panic!("{}: SENDACK expected, got {other:?}", self.uid),
        }
    }

    /// The next RECV, checked and decrypted as the SDK does: its payload JSON.
    async fn recv(&mut self) -> (Recv, Value) {
        match self.io.next().await {
            Some(Packet::Recv(r)) => {
                let payload = std::str::from_utf8(&r.payload).unwrap();
                let verify = recv_verify(
                    r.message_id,
                    r.message_seq,
                    &r.client_msg_no,
                    r.timestamp,
                    &r.from_uid,
                    &r.channel_id,
                    r.channel_type,
                    payload,
                );
                assert_eq!(self.cipher.msg_key(&verify), r.msg_key, "RECV msgKey");
                let plain = self.cipher.decrypt_b64(&r.payload).expect("RECV decrypts");
                let v = serde_json::from_slice(&plain).unwrap();
                (r, v)
            }
            other => panic!("{}: RECV expected, got {other:?}", self.uid),
        }
    }

    /// Nothing arrives within a short while (a PING's PONG proves the connection is alive).
    async fn quiet(&mut self) {
        self.put(&Packet::Ping).await;
        match self.io.next().await {
            Some(Packet::Pong) => {}
            other => panic!("{}: only a PONG expected, got {other:?}", self.uid),
        }
    }
}

async fn channel_messages(
    base: &str,
    who: &Account,
    channel_id: &str,
    channel_type: u8,
) -> Vec<Value> {
    let (s, b) = tsdd(
        base,
        &who.token,
        reqwest::Method::POST,
        "/v1/message/channel/sync",
        Some(json!({"channel_id": channel_id, "channel_type": channel_type, "start_message_seq": 0, "end_message_seq": 0, "limit": 100, "pull_mode": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn chat_over_the_socket() {
    let srv = TestServer::start().await;
    let alice = account(&srv.base, "alice").await;
    let bob = account(&srv.base, "bob").await;
    let carol = account(&srv.base, "carol").await;

    // A wrong token, or a token of someone else, is CONNACK reason 2.
    let (ack, c) = connect(&srv, &alice.uid, "wrong-token").await;
    assert_eq!(ack.reason, codec::REASON_AUTH_FAIL);
    assert!(c.is_none());
    let (ack, _) = connect(&srv, &alice.uid, &bob.token).await;
    assert_eq!(ack.reason, codec::REASON_AUTH_FAIL);

    let (ack, a) = connect(&srv, &alice.uid, &alice.token).await;
    assert_eq!(ack.salt.len(), 16);
    let mut a = a.unwrap();
    let mut a2 = connect(&srv, &alice.uid, &alice.token).await.1.unwrap();
    let mut b = connect(&srv, &bob.uid, &bob.token).await.1.unwrap();
    let mut c = connect(&srv, &carol.uid, &carol.token).await.1.unwrap();

    // Person channel: SENDACK to the sender, RECV to the peer named by the sender's uid, and to
    // the sender's other device named by the peer's.
    let ack = a.send(&bob.uid, 1, "cmn-1", "hello bob").await;
    assert_eq!(ack.reason, codec::REASON_SUCCESS);
    assert_eq!(ack.message_seq, 1);
    let (r, payload) = b.recv().await;
    assert_eq!(r.channel_id, alice.uid);
    assert_eq!(r.channel_type, 1);
    assert_eq!(r.from_uid, alice.uid);
    assert_eq!(r.client_msg_no, "cmn-1");
    assert_eq!((r.message_id, r.message_seq), (ack.message_id, 1));
    assert_eq!(payload, json!({"type": 1, "content": "hello bob"}));
    let (r2, _) = a2.recv().await;
    assert_eq!(r2.channel_id, bob.uid);
    a.quiet().await;
    c.quiet().await;

    // The same clientMsgNo again: the same message, nothing new delivered or stored.
    let again = a.send(&bob.uid, 1, "cmn-1", "hello bob").await;
    assert_eq!(again.reason, codec::REASON_SUCCESS);
    assert_eq!((again.message_id, again.message_seq), (ack.message_id, 1));
    b.quiet().await;
    assert_eq!(
        channel_messages(&srv.base, &bob, &alice.uid, 1).await.len(),
        1
    );

    // A corrupted msgKey is refused and stores nothing.
    let mut bad = a.send_packet(&bob.uid, 1, "cmn-2", "tampered");
    bad.msg_key = "0".repeat(32);
    a.put(&Packet::Send(bad)).await;
    match a.io.next().await {
        Some(Packet::Sendack(s)) => assert_eq!(s.reason, codec::REASON_MSG_KEY_ERROR),
        other => panic!("SENDACK expected, got {other:?}"),
    }
    b.quiet().await;
    let stored = channel_messages(&srv.base, &bob, &alice.uid, 1).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["payload"]["content"], "hello bob");
    assert_eq!(
        stored[0]["timestamp"], r.timestamp,
        "RECV and sync agree on the time"
    );
    assert_eq!(stored[0]["message_id"], r.message_id);

    // Group channel: everyone else gets it, named by the group id.
    let group = alice.native.group("team", &[&bob.uid, &carol.uid]).await;
    let ack = a.send(&group, 2, "cmn-g1", "hello team").await;
    assert_eq!(ack.reason, codec::REASON_SUCCESS);
    assert_eq!(ack.message_seq, 1);
    for who in [&mut b, &mut c, &mut a2] {
        let (r, p) = who.recv().await;
        assert_eq!((r.channel_id.as_str(), r.channel_type), (group.as_str(), 2));
        assert_eq!(p["content"], "hello team");
    }

    // A message from another face arrives as RECV.
    bob.native.send(&group, "from the native API").await;
    for who in [&mut a, &mut c] {
        let (r, p) = who.recv().await;
        assert_eq!(r.from_uid, bob.uid);
        assert_eq!(p["content"], "from the native API");
    }

    // Not a member: refused, nothing stored.
    let outsider = account(&srv.base, "dave").await;
    let mut d = connect(&srv, &outsider.uid, &outsider.token)
        .await
        .1
        .unwrap();
    let ack = d.send(&group, 2, "cmn-x", "let me in").await;
    assert_ne!(ack.reason, codec::REASON_SUCCESS);
    a.quiet().await;
}

#[tokio::test]
async fn broken_packets_end_the_connection() {
    let srv = TestServer::start_with(common::Options {
        ws_idle_timeout: Some(Duration::from_millis(1500)),
        ..Default::default()
    })
    .await;
    let alice = account(&srv.base, "alice").await;
    // Garbage before CONNECT, garbage after, a text message, an unknown packet type.
    let mut ws = open(&srv).await;
    ws.send(Message::Binary(
        vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x01].into(),
    ))
    .await
    .unwrap();
    assert!(matches!(
        next_packet(&mut ws).await,
        Some(Packet::Disconnect(_))
    ));
    for bytes in [vec![0xa0u8, 0], vec![0x30, 5, 0, 0], vec![0x20, 0]] {
        let mut c = connect(&srv, &alice.uid, &alice.token).await.1.unwrap();
        c.io.put_raw(bytes.clone()).await;
        assert!(
            matches!(c.io.next().await, Some(Packet::Disconnect(_))),
            "{bytes:?}"
        );
    }
    // Idle without PING: closed.
    let mut c = connect(&srv, &alice.uid, &alice.token).await.1.unwrap();
    c.quiet().await;
    assert!(c.io.next().await.is_none());
    // A logout ends the connection with DISCONNECT.
    let mut c = connect(&srv, &alice.uid, &alice.token).await.1.unwrap();
    let (s, _) = alice.native.post("/api/im/logout", json!({})).await;
    assert!(s.is_success(), "{s}");
    assert!(matches!(c.io.next().await, Some(Packet::Disconnect(_))));
}

#[tokio::test]
async fn rest_around_the_socket() {
    let srv = TestServer::start().await;
    let alice = account(&srv.base, "alice").await;
    let bob = account(&srv.base, "bob").await;
    let get = |path: String, token: String| {
        let srv = &srv;
        async move { tsdd(&srv.base, &token, reqwest::Method::GET, &path, None).await }
    };
    let (s, b) = get(format!("/v1/users/{}/im", alice.uid), alice.token.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["ws_addr"],
        format!("ws://{}{}", srv.addr, imsync_server::wukongim::SOCKET_PATH)
    );
    let (s, b) = get(format!("/v1/users/{}/im", alice.uid), "nope".into()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = get(format!("/v1/users/{}", bob.uid), alice.token.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["uid"], bob.uid.as_str());
    let (s, b) = get("/v1/users/nobody".into(), alice.token.clone()).await;
    assert_eq!(
        (s, b["status"].clone()),
        (StatusCode::BAD_REQUEST, json!(400))
    );
    let (s, b) = get(format!("/v1/channels/{}/1", bob.uid), alice.token.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["channel"],
        json!({"channel_id": bob.uid, "channel_type": 1})
    );
    assert_eq!(b["name"], "bob");
    let group = alice.native.group("team", &[&bob.uid]).await;
    let (s, b) = get(format!("/v1/channels/{group}/2"), bob.token.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["name"], "team");
    let (s, b) = get(format!("/v1/channels/{group}/7"), bob.token.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = get("/v1/group/my".into(), bob.token.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b[0]["group_no"], group.as_str());
    alice
        .native
        .post(
            &format!("/api/im/direct/{}/messages", bob.uid),
            json!({"content": "hi"}),
        )
        .await;
    let (s, b) = tsdd(
        &srv.base,
        &bob.token,
        reqwest::Method::POST,
        "/v1/friend/sync",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b.as_array()
            .unwrap()
            .iter()
            .any(|f| f["uid"] == alice.uid.as_str()),
        "{b}"
    );
    let (s, b) = tsdd(
        &srv.base,
        &bob.token,
        reqwest::Method::POST,
        "/v1/message/reminder/sync",
        Some(json!({"version": 0})),
    )
    .await;
    assert_eq!((s, b), (StatusCode::OK, json!([])));
    let (s, b) = get("/v1/common/appconfig".into(), String::new()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b.is_object());
    // Not an upgrade: the face's error format.
    let (s, b) = get(imsync_server::wukongim::SOCKET_PATH.into(), String::new()).await;
    assert_eq!(
        (s, b["status"].clone()),
        (StatusCode::BAD_REQUEST, json!(400)),
        "{b}"
    );
}

// ---- The real SDK: `wukongimjssdk` 1.0.4 in Node, bundled with esbuild. ----

mod node {
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
    use tokio::process::{Child, ChildStdin, ChildStdout, Command};

    /// Exact versions: the SDK is the one the issue names; esbuild and ws as tested.
    const PACKAGES: [&str; 3] = ["wukongimjssdk@1.0.4", "esbuild@0.28.2", "ws@8.23.1"];
    const CLIENT: &str = include_str!("interop/wukongim_client.mjs");

    async fn run(cmd: &mut Command, what: &str, secs: u64) -> std::process::Output {
        cmd.kill_on_drop(true).stdin(Stdio::null());
        let out = tokio::time::timeout(Duration::from_secs(secs), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within {secs}s"))
            .unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
        assert!(
            out.status.success(),
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn installed(dir: &Path) -> bool {
        std::fs::read_to_string(dir.join("node_modules/wukongimjssdk/package.json"))
            .is_ok_and(|p| p.contains("\"version\": \"1.0.4\""))
            && dir.join("node_modules/.bin/esbuild").exists()
            && dir.join("node_modules/ws/package.json").exists()
    }

    /// `<target>/node/wukongim`: the packages, installed once with npm into a scratch
    /// directory and renamed into place, so a concurrent run never sees half an install. A
    /// failed install fails the test.
    async fn packages() -> PathBuf {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target directory")
            .join("node");
        let dir = target.join("wukongim");
        if installed(&dir) {
            return dir;
        }
        std::fs::create_dir_all(&target).unwrap();
        let scratch = target.join(format!(
            ".install-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::write(
            scratch.join("package.json"),
            r#"{"name":"imsync-wukongim-test","version":"0.0.0","private":true}"#,
        )
        .unwrap();
        let mut npm = Command::new("npm");
        npm.current_dir(&scratch)
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .args(PACKAGES);
        run(&mut npm, "npm install (Node 20 and npm are required)", 600).await;
        assert!(installed(&scratch), "npm install left an incomplete tree");
        if std::fs::rename(&scratch, &dir).is_err() {
            // Another run got there first.
            let _ = std::fs::remove_dir_all(&scratch);
            assert!(
                installed(&dir),
                "could not install the Node packages into {dir:?}"
            );
        }
        dir
    }

    /// The test's client bundled for Node (the SDK is ESM with extension-less imports, which
    /// Node cannot load as it is).
    pub async fn bundle(out_dir: &Path) -> PathBuf {
        let dir = packages().await;
        let entry = dir.join(format!(
            "client-{}-{}.mjs",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::write(&entry, CLIENT).unwrap();
        let out = out_dir.join("wukongim_client.cjs");
        let mut esbuild = Command::new(dir.join("node_modules/.bin/esbuild"));
        esbuild.current_dir(&dir).arg(&entry).args([
            "--bundle",
            "--platform=node",
            "--format=cjs",
            "--log-level=warning",
        ]);
        esbuild.arg(format!("--outfile={}", out.display()));
        let result = tokio::time::timeout(Duration::from_secs(120), esbuild.output()).await;
        let _ = std::fs::remove_file(&entry);
        let result = result
            .expect("esbuild within 120 s")
            .expect("esbuild starts");
        assert!(
            result.status.success(),
            "esbuild failed: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        out
    }

    /// One SDK process.
    pub struct Sdk {
        pub name: String,
        child: Child,
        stdin: ChildStdin,
        lines: Lines<BufReader<ChildStdout>>,
        log: PathBuf,
    }

    impl Sdk {
        pub async fn spawn(bundle: &Path, base: &str, username: &str, token: Option<&str>) -> Sdk {
            let log = bundle.with_file_name(format!("{username}-{}.log", rand::random::<u32>()));
            let mut cmd = Command::new("node");
            cmd.arg(bundle)
                .env("IMSYNC_BASE", base)
                .env("WK_USERNAME", username)
                .env("WK_PASSWORD", "secret-pass")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).unwrap())
                .kill_on_drop(true);
            if let Some(t) = token {
                cmd.env("WK_TOKEN", t);
            }
            let mut child = cmd.spawn().expect("node starts");
            let stdin = child.stdin.take().unwrap();
            let lines = BufReader::new(child.stdout.take().unwrap()).lines();
            Sdk {
                name: username.to_owned(),
                child,
                stdin,
                lines,
                log,
            }
        }

        pub async fn cmd(&mut self, v: serde_json::Value) {
            let line = format!("{v}\n");
            self.stdin.write_all(line.as_bytes()).await.unwrap();
            self.stdin.flush().await.unwrap();
        }

        fn log_tail(&self) -> String {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let start = text.len().saturating_sub(4000);
            text.get(start..).unwrap_or_default().to_owned()
        }

        /// The next event `want` accepts, skipping others (all within 20 s).
        pub async fn expect(
            &mut self,
            what: &str,
            want: impl Fn(&serde_json::Value) -> bool,
        ) -> serde_json::Value {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let line = tokio::time::timeout_at(deadline, self.lines.next_line()).await;
                let line = match line {
                    Ok(Ok(Some(l))) => l,
                    other => panic!(
                        "{}: no {what} ({other:?}); SDK log:\n{}",
                        self.name,
                        self.log_tail()
                    ),
                };
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("{}: not JSON: {line}", self.name));
                if v["event"] == "error" {
                    panic!(
                        "{}: {}; SDK log:\n{}",
                        self.name,
                        v["message"],
                        self.log_tail()
                    );
                }
                if want(&v) {
                    return v;
                }
            }
        }

        pub async fn exit(mut self) {
            self.cmd(serde_json::json!({"cmd": "exit"})).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        }
    }
}

/// The real SDK against the real `imsync` binary, run as a child process (the binary cargo
/// builds for the tests, so CI builds no second profile).
#[tokio::test]
async fn sdk_two_clients_chat() {
    let data = tempfile::tempdir().unwrap();
    let tcp_port = common::free_port();
    let tcp_listen = format!("127.0.0.1:{tcp_port}");
    let srv = common::ChildServer::spawn_with(
        data.path(),
        common::free_port(),
        &[
            "--default-channel",
            "",
            "--wukongim-tcp-listen",
            &tcp_listen,
        ],
    )
    .await;
    let alice = account(&srv.base, "alice").await;
    let bob = account(&srv.base, "bob").await;
    let group = alice.native.group("team", &[&bob.uid]).await;
    let scratch = tempfile::tempdir().unwrap();
    let bundle = node::bundle(scratch.path()).await;

    let mut a = node::Sdk::spawn(&bundle, &srv.base, "alice", None).await;
    let mut b = node::Sdk::spawn(&bundle, &srv.base, "bob", None).await;
    let connected = |v: &Value| v["event"] == "status" && v["status"] == 1;
    a.expect("connected", connected).await;
    b.expect("connected", connected).await;
    let message = |v: &Value| v["event"] == "message";
    let sendack = |v: &Value| v["event"] == "sendack";

    // A to B: SENDACK reason 1; B's RECV names the channel by A, passes the msgKey check and
    // decrypts (the SDK drops it otherwise).
    a.cmd(json!({"cmd": "send", "channel_id": bob.uid, "channel_type": 1, "text": "hi bob"}))
        .await;
    let ack = a.expect("SENDACK", sendack).await;
    assert_eq!(ack["reason"], 1, "{ack}");
    assert_eq!(ack["message_seq"], 1, "{ack}");
    let m = b.expect("RECV", message).await;
    assert_eq!(m["channel_id"], alice.uid.as_str(), "{m}");
    assert_eq!(m["channel_type"], 1, "{m}");
    assert_eq!(m["from_uid"], alice.uid.as_str(), "{m}");
    assert_eq!(m["content"], "hi bob", "{m}");
    assert_eq!(m["message_id"], ack["message_id"], "{m}");

    // A to the group.
    a.cmd(json!({"cmd": "send", "channel_id": group, "channel_type": 2, "text": "hi team"}))
        .await;
    let ack = a.expect("SENDACK", sendack).await;
    assert_eq!(ack["reason"], 1, "{ack}");
    let m = b.expect("RECV", message).await;
    assert_eq!(
        (&m["channel_id"], &m["channel_type"]),
        (&json!(group), &json!(2)),
        "{m}"
    );
    assert_eq!(m["content"], "hi team", "{m}");

    // A message through the native API reaches B as RECV.
    let (s, body) = alice
        .native
        .post(
            &format!("/api/im/direct/{}/messages", bob.uid),
            json!({"content": "from the native API"}),
        )
        .await;
    assert!(s.is_success(), "{body}");
    let m = b.expect("RECV", message).await;
    assert_eq!(m["channel_id"], alice.uid.as_str(), "{m}");
    assert_eq!(m["content"], "from the native API", "{m}");

    // The same clientMsgNo twice: one message, the same id in both SENDACKs, one RECV.
    for _ in 0..2 {
        a.cmd(json!({"cmd": "send", "channel_id": bob.uid, "channel_type": 1, "text": "once", "client_msg_no": "dup-1"}))
            .await;
    }
    let first = a.expect("SENDACK", sendack).await;
    let second = a.expect("SENDACK", sendack).await;
    assert_eq!(first["reason"], 1, "{first}");
    assert_eq!(
        (&first["message_id"], &first["message_seq"]),
        (&second["message_id"], &second["message_seq"])
    );
    assert_ne!(first["client_seq"], second["client_seq"]);
    a.cmd(json!({"cmd": "send", "channel_id": bob.uid, "channel_type": 1, "text": "last"}))
        .await;
    a.expect("SENDACK", sendack).await;
    let m = b.expect("RECV", message).await;
    assert_eq!(
        (&m["content"], &m["client_msg_no"]),
        (&json!("once"), &json!("dup-1"))
    );
    let m = b.expect("RECV", message).await;
    assert_eq!(
        m["content"], "last",
        "a second RECV of the resent message: {m}"
    );

    // B's conversation sync shows the last message and the unread count; channel sync has
    // every message once.
    b.cmd(json!({"cmd": "sync"})).await;
    let convs = b
        .expect("conversations", |v| v["event"] == "conversations")
        .await;
    let person = convs["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel_id"] == alice.uid.as_str())
        .unwrap_or_else(|| panic!("no conversation with alice: {convs}"));
    assert_eq!(person["last_content"], "last", "{person}");
    assert_eq!(person["unread"], 4, "{person}");
    b.cmd(json!({"cmd": "history", "channel_id": alice.uid, "channel_type": 1}))
        .await;
    let history = b.expect("history", |v| v["event"] == "history").await;
    let texts: Vec<&str> = history["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(texts, ["hi bob", "from the native API", "once", "last"]);

    // A wrong token: CONNACK reason 2, reported as a failed connection.
    let mut wrong = node::Sdk::spawn(&bundle, &srv.base, "bob", Some("wrong-token")).await;
    let v = wrong
        .expect("refusal", |v| v["event"] == "status" && v["status"] != 2)
        .await;
    assert_eq!((&v["status"], &v["reason"]), (&json!(3), &json!(2)), "{v}");
    wrong.exit().await;

    // The binary's TCP listener, where `/v1/users/{uid}/im` says it is: Bob's native app.
    let (s, im) = tsdd(
        &srv.base,
        &bob.token,
        reqwest::Method::GET,
        &format!("/v1/users/{}/im", bob.uid),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{im}");
    assert_eq!(im["tcp_addr"], tcp_listen.as_str());
    let io = Io::tcp(tcp_listen.parse().unwrap()).await;
    let mut native_app = connect_over(io, &bob.uid, &bob.token).await.1.unwrap();
    a.cmd(
        json!({"cmd": "send", "channel_id": bob.uid, "channel_type": 1, "text": "to every device"}),
    )
    .await;
    a.expect("SENDACK", sendack).await;
    let (r, p) = native_app.recv().await;
    assert_eq!(r.channel_id, alice.uid);
    assert_eq!(p["content"], "to every device");
    let m = b.expect("RECV", message).await;
    assert_eq!(m["content"], "to every device", "{m}");
    a.exit().await;
    b.exit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_that_never_reads_is_closed_as_lagging() {
    let srv = TestServer::start_with(common::Options {
        realtime_queue: Some(8),
        ..Default::default()
    })
    .await;
    let alice = account(&srv.base, "alice").await;
    let bob = account(&srv.base, "bob").await;
    let group = alice.native.group("g", &[&bob.uid]).await;
    // Bob connects over a socket with a tiny receive buffer and stops reading.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(srv.addr).await.unwrap();
    let url = format!("ws://{}{}", srv.addr, imsync_server::wukongim::SOCKET_PATH);
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let secret: [u8; 32] = rand::random();
    let mine = ServerKeys::from_parts(secret, String::new());
    let connect = Packet::Connect(Connect {
        version: 2,
        device_flag: 1,
        device_id: "slow".into(),
        uid: bob.uid.clone(),
        token: bob.token.clone(),
        client_timestamp: 0,
        client_key: mine.public.clone(),
    });
    ws.send(Message::Binary(connect.encode().unwrap().into()))
        .await
        .unwrap();
    assert!(matches!(next_packet(&mut ws).await, Some(Packet::Connack(a)) if a.reason == 1));
    let big = "x".repeat(16 * 1024);
    for i in 0..300 {
        alice.native.send(&group, &format!("{i} {big}")).await;
    }
    // Reading now: what was queued, then a close with 4008.
    let mut code = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        match m {
            Ok(Message::Close(Some(f))) => {
                code = Some(u16::from(f.code));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(4008));
}

/// Seeded random packets over a live connection (`WUKONGIM_SOCKET_SEED` replays a run): every
/// one is answered, refused or ends the connection, the server stays up, and nothing reaches the
/// store but what a valid SEND makes.
#[tokio::test]
async fn random_packets_over_the_socket() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("WUKONGIM_SOCKET_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("WUKONGIM_SOCKET_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let srv = TestServer::start().await;
    let alice = account(&srv.base, "alice").await;
    let bob = account(&srv.base, "bob").await;
    let mut c = connect(&srv, &alice.uid, &alice.token).await.1.unwrap();
    let mut stored = std::collections::HashSet::new();
    for _ in 0..300 {
        let mut bytes: Vec<u8> = match rng.random_range(0..3) {
            0 => (0..rng.random_range(0..40)).map(|_| rng.random()).collect(),
            1 => {
                // A SEND whose fields are fine but whose msgKey or payload is garbage.
                let mut s = c.send_packet(&bob.uid, 1, "x", "garbage");
                if rng.random_bool(0.5) {
                    s.msg_key = format!("{:032x}", rng.random::<u128>());
                } else {
                    s.payload = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
                }
                Packet::Send(s).encode().unwrap()
            }
            _ => {
                let s = c.send_packet(&bob.uid, 1, "y", "flip");
                let mut b = Packet::Send(s).encode().unwrap();
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
                b
            }
        };
        if bytes.is_empty() {
            bytes.push(0);
        }
        c.io.put_raw(bytes).await;
        // A send the server took on a connection it then ended reaches this newer connection
        // as the sender's other device: that copy is not the answer to this packet.
        let mut answer = c.io.next().await;
        while let Some(Packet::Recv(r)) = &answer {
            assert_eq!(
                r.from_uid, alice.uid,
                "seed {seed}: a RECV from someone else: {r:?}"
            );
            answer = c.io.next().await;
        }
        match answer {
            Some(Packet::Sendack(a)) if a.reason == codec::REASON_SUCCESS => {
                // A flipped bit the msgKey does not cover (a header flag, an unused setting
                // bit) leaves a valid SEND.
                stored.insert(a.message_id);
            }
            Some(Packet::Sendack(_)) => {}
            Some(Packet::Pong) => {}
            Some(Packet::Disconnect(_)) | None => {
                c = connect(&srv, &alice.uid, &alice.token).await.1.unwrap();
            }
            Some(other) => panic!("seed {seed}: unexpected {other:?}"),
        }
    }
    let (s, _) = srv.client().get("/healthz").await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = tsdd(
        &srv.base,
        &bob.token,
        reqwest::Method::POST,
        "/v1/message/channel/sync",
        Some(json!({"channel_id": alice.uid, "channel_type": 1, "limit": 100})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let messages = b["messages"].as_array().unwrap();
    assert_eq!(messages.len(), stored.len(), "seed {seed}: {b}");
    for m in messages {
        assert_eq!(m["payload"]["content"], "flip", "seed {seed}: {m}");
    }
}

/// The same protocol on the plain TCP listener: chat with WebSocket clients, packets back to
/// back and split across writes, broken packets, the idle reap, and the end at shutdown.
#[tokio::test]
async fn chat_over_tcp() {
    let mut srv = TestServer::start_with(common::Options {
        wukongim_tcp: true,
        ws_idle_timeout: Some(Duration::from_millis(1500)),
        shutdown_grace: Some(Duration::from_secs(1)),
        ..Default::default()
    })
    .await;
    let tcp = srv.wukongim_tcp.unwrap();
    let alice = account(&srv.base, "alice").await;
    let bob = account(&srv.base, "bob").await;

    // The app learns the TCP address from the REST call, with the host it used.
    let (s, b) = tsdd(
        &srv.base,
        &alice.token,
        reqwest::Method::GET,
        &format!("/v1/users/{}/im", alice.uid),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["tcp_addr"], format!("127.0.0.1:{}", tcp.port()));

    // A wrong token: CONNACK reason 2, then the stream ends.
    let (ack, c) = connect_tcp(&srv, &alice.uid, "wrong-token").await;
    assert_eq!(ack.reason, codec::REASON_AUTH_FAIL);
    assert!(c.is_none());

    let mut a = connect_tcp(&srv, &alice.uid, &alice.token).await.1.unwrap();
    let mut b_ws = connect(&srv, &bob.uid, &bob.token).await.1.unwrap();
    let mut b_tcp = connect_tcp(&srv, &bob.uid, &bob.token).await.1.unwrap();

    // TCP to a WebSocket and a TCP connection of the peer.
    let ack = a.send(&bob.uid, 1, "t-1", "over tcp").await;
    assert_eq!((ack.reason, ack.message_seq), (codec::REASON_SUCCESS, 1));
    for who in [&mut b_ws, &mut b_tcp] {
        let (r, p) = who.recv().await;
        assert_eq!(
            (r.channel_id.as_str(), r.message_id),
            (alice.uid.as_str(), ack.message_id)
        );
        assert_eq!(p["content"], "over tcp");
    }
    // The other way, and from another face.
    let ack = b_tcp.send(&alice.uid, 1, "t-2", "back").await;
    assert_eq!(ack.reason, codec::REASON_SUCCESS);
    let (r, _) = a.recv().await;
    assert_eq!(r.channel_id, bob.uid);
    let (r, _) = b_ws.recv().await;
    assert_eq!(r.channel_id, alice.uid, "the sender's other device");
    let group = bob.native.group("tcp", &[&alice.uid]).await;
    bob.native.send(&group, "from the native API").await;
    let (r, p) = a.recv().await;
    assert_eq!((r.channel_id.as_str(), r.channel_type), (group.as_str(), 2));
    assert_eq!(p["content"], "from the native API");
    b_tcp.recv().await;
    b_ws.recv().await;

    // Two packets in one write, then one packet in three writes.
    let send = Packet::Send(a.send_packet(&bob.uid, 1, "t-3", "joined"))
        .encode()
        .unwrap();
    a.io.put_raw([vec![0x70], send].concat()).await;
    assert_eq!(a.io.next().await, Some(Packet::Pong));
    assert!(matches!(a.io.next().await, Some(Packet::Sendack(s)) if s.reason == 1));
    let send = Packet::Send(a.send_packet(&bob.uid, 1, "t-4", "split"))
        .encode()
        .unwrap();
    for part in [&send[..1], &send[1..5], &send[5..]] {
        a.io.put_raw(part.to_vec()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(a.io.next().await, Some(Packet::Sendack(s)) if s.reason == 1));
    for content in ["joined", "split"] {
        let (_, p) = b_tcp.recv().await;
        assert_eq!(p["content"], content);
    }

    // Broken packets get DISCONNECT and the end of the stream: an unknown type, a five-byte
    // length, a length over the limit (refused before its body comes), a CONNACK from the
    // client, bytes that are not a CONNECT first.
    let broken: [Vec<u8>; 5] = [
        vec![0xa0, 0],
        vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
        vec![0x30, 0xff, 0xff, 0x7f],
        vec![0x20, 0],
        vec![0x30, 5, 0, 0, 0, 0, 0],
    ];
    for bytes in &broken {
        let mut c = connect_tcp(&srv, &alice.uid, &alice.token).await.1.unwrap();
        c.io.put_raw(bytes.clone()).await;
        assert!(
            matches!(c.io.next().await, Some(Packet::Disconnect(_))),
            "{bytes:?}"
        );
        assert!(c.io.next().await.is_none(), "{bytes:?}: the stream ends");
    }
    let mut raw = Io::tcp(tcp).await;
    raw.put_raw(vec![0x30, 1, 0]).await;
    assert!(matches!(raw.next().await, Some(Packet::Disconnect(_))));
    assert!(raw.next().await.is_none());
    let stored = channel_messages(&srv.base, &bob, &alice.uid, 1).await;
    assert_eq!(stored.len(), 4, "only the valid SENDs are stored");

    // Idle without PING: the stream ends; a connection that pings stays.
    let mut idle = connect_tcp(&srv, &alice.uid, &alice.token).await.1.unwrap();
    idle.quiet().await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        a.quiet().await;
    }
    assert!(idle.io.next().await.is_none());

    // At shutdown the open connections end (here at the end of the grace).
    srv.stop().await;
    assert!(a.io.next().await.is_none());
    assert!(
        tokio::net::TcpStream::connect(tcp).await.is_err(),
        "no more accepts"
    );
}

/// A TCP client that stops reading is cut off once its queue overflows, and reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcp_consumer_that_never_reads_is_closed() {
    let srv = TestServer::start_with(common::Options {
        wukongim_tcp: true,
        realtime_queue: Some(8),
        ..Default::default()
    })
    .await;
    let alice = account(&srv.base, "alice").await;
    let bob = account(&srv.base, "bob").await;
    let group = alice.native.group("g", &[&bob.uid]).await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(srv.wukongim_tcp.unwrap()).await.unwrap();
    let mut bob_c = connect_over(Io::Tcp(stream, Vec::new()), &bob.uid, &bob.token)
        .await
        .1
        .unwrap();
    let big = "x".repeat(16 * 1024);
    for i in 0..300 {
        alice.native.send(&group, &format!("{i} {big}")).await;
    }
    // Reading now: what was queued, then the end of the stream, well before all 300.
    let mut got = 0;
    loop {
        match bob_c.io.next().await {
            Some(Packet::Recv(_)) => got += 1,
            Some(other) => panic!("RECV expected, got {other:?}"),
            None => break,
        }
    }
    assert!(got < 300, "{got} RECVs and no close");
    let (ack, _) = connect_tcp(&srv, &bob.uid, &bob.token).await;
    assert_eq!(ack.reason, codec::REASON_SUCCESS, "it reconnects");
}
