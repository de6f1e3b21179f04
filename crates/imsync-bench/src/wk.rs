//! A WuKongIM client over the server's WebSocket endpoint (`/v1/wukongim/ws`), built on the
//! server's own codec and crypto (`imsync_server::wukongim`): CONNECT with an X25519 key, then
//! every RECV is checked as the SDK checks it (its `msgKey`), decrypted, and timed by the stamp in
//! its plaintext.

use crate::ws::{self, find_stamp, Reading, Ws};
use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use imsync_server::wukongim::codec::{self, Connect, Packet, Recv};
use imsync_server::wukongim::crypto::{recv_verify, Cipher, ServerKeys};
use rand::Rng;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// The largest packet the client takes.
const MAX_PACKET: usize = 1 << 20;

/// A connected client: its socket and the connection's cipher.
pub struct WkConn {
    pub ws: Ws,
    pub cipher: Cipher,
}

/// Opens the socket and says CONNECT with `token` (a TangSengDaoDao login token, i.e. any
/// session token) for `uid`; answers once CONNACK says it succeeded.
pub async fn connect(base: &str, uid: &str, token: &str, device: &str) -> Result<WkConn> {
    let mut ws = ws::open(&ws::ws_path(base, imsync_server::wukongim::SOCKET_PATH)).await?;
    let secret: [u8; 32] = rand::rng().random();
    // The key exchange is symmetric: the client's half is the server's code with its own secret.
    let mine = ServerKeys::from_parts(secret, String::new());
    let connect = Packet::Connect(Connect {
        version: codec::VERSION,
        device_flag: 1,
        device_id: device.to_owned(),
        uid: uid.to_owned(),
        token: token.to_owned(),
        client_timestamp: imsync_core::time::now_ms(),
        client_key: mine.public.clone(),
    });
    let bytes = connect
        .encode()
        .map_err(|e| anyhow::anyhow!("encoding CONNECT: {e:?}"))?;
    ws.send(Message::binary(bytes)).await?;
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = tokio::time::timeout_at(until, ws.next())
            .await
            .context("no CONNACK within 30 s")?;
        let bytes = match m {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(c))) => bail!("closed before CONNACK: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("connection failed before CONNACK: {e}"),
            None => bail!("connection ended before CONNACK"),
        };
        match codec::decode(&bytes, MAX_PACKET) {
            Ok(Packet::Connack(a)) if a.reason == codec::REASON_SUCCESS => {
                let cipher = ServerKeys::from_parts(secret, a.salt.clone())
                    .agree(&a.server_key)
                    .context("CONNACK carries an unusable server key or salt")?;
                return Ok(WkConn { ws, cipher });
            }
            Ok(Packet::Connack(a)) => bail!("CONNACK refused the login: reason {}", a.reason),
            other => bail!("expected CONNACK, got {other:?}"),
        }
    }
}

/// The RECV's `msgKey`, as the client computes it from the packet's fields.
fn expected_msg_key(cipher: &Cipher, r: &Recv) -> Option<String> {
    let payload = std::str::from_utf8(&r.payload).ok()?;
    Some(cipher.msg_key(&recv_verify(
        r.message_id,
        r.message_seq,
        &r.client_msg_no,
        r.timestamp,
        &r.from_uid,
        &r.channel_id,
        r.channel_type,
        payload,
    )))
}

/// Packets of one connection: a RECV whose `msgKey` matches and whose payload decrypts is timed
/// by the stamp in its plaintext; one that fails either check is rejected.
pub fn reading(cipher: Cipher) -> impl FnMut(Message) -> Reading {
    move |m| {
        let Message::Binary(b) = m else {
            return Reading::Ignored;
        };
        let r = match codec::decode(&b, MAX_PACKET) {
            Ok(Packet::Recv(r)) => r,
            Ok(_) => return Reading::Other,
            Err(_) => return Reading::Rejected,
        };
        if expected_msg_key(&cipher, &r).as_deref() != Some(r.msg_key.as_str()) {
            return Reading::Rejected;
        }
        let Some(plain) = cipher.decrypt_b64(&r.payload) else {
            return Reading::Rejected;
        };
        match std::str::from_utf8(&plain).ok().and_then(find_stamp) {
            Some((at, origin)) => Reading::Timed(at, origin),
            None => Reading::Other,
        }
    }
}

/// CPU time this thread has run, in nanoseconds (Linux: the first field of
/// `/proc/thread-self/schedstat`): unlike the wall clock, it does not count the time other
/// processes of a busy machine held the core.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What the encryption of one RECV costs: encrypting `plain` and computing the packet's
/// `msgKey` with the server's own cipher code, averaged over `rounds` (microseconds of this
/// thread's CPU time; of wall time where that cannot be read).
pub fn recv_crypto_us(plain: &[u8], rounds: usize) -> f64 {
    let secret: [u8; 32] = rand::rng().random();
    let keys = ServerKeys::from_parts(secret, "0123456789abcdef".into());
    let peer = ServerKeys::from_parts(rand::rng().random(), String::new());
    let Some(cipher) = keys.agree(&peer.public) else {
        return 0.0;
    };
    let rounds = rounds.max(1);
    let started = Instant::now();
    let cpu_started = thread_cpu_ns();
    for i in 0..rounds {
        let payload = cipher.encrypt_b64(std::hint::black_box(plain));
        let verify = recv_verify(
            i as i64,
            i as u32,
            "0123456789abcdef0123456789abcdef",
            1_700_000_000,
            "sender-user-id-000000000",
            "group-channel-id-0000000",
            2,
            &payload,
        );
        std::hint::black_box(cipher.msg_key(&verify));
    }
    let ns = match (cpu_started, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => (b - a) as f64,
        _ => started.elapsed().as_nanos() as f64,
    };
    ns / 1e3 / rounds as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recv_from_the_server_code_is_timed_and_a_forged_one_rejected() {
        let server = ServerKeys::from_parts([7u8; 32], "0123456789abcdef".into());
        let client_secret = [9u8; 32];
        let client = ServerKeys::from_parts(client_secret, String::new());
        let server_side = server.agree(&client.public).unwrap();
        let client_side = ServerKeys::from_parts(client_secret, server.salt.clone())
            .agree(&server.public)
            .unwrap();
        let plain = format!(r#"{{"type":1,"content":"{}"}}"#, ws::stamp('w', "x"));
        let payload = server_side.encrypt_b64(plain.as_bytes());
        let mut r = Recv {
            flags: 0,
            setting: 0,
            msg_key: String::new(),
            from_uid: "u1".into(),
            channel_id: "g1".into(),
            channel_type: 2,
            client_msg_no: "c1".into(),
            message_id: 5,
            message_seq: 3,
            timestamp: 1_700_000_000,
            topic: None,
            payload: payload.into_bytes(),
        };
        r.msg_key = expected_msg_key(&server_side, &r).unwrap();
        let packet = |r: &Recv| Message::binary(Packet::Recv(r.clone()).encode().unwrap());
        let mut read = reading(client_side);
        assert!(matches!(read(packet(&r)), Reading::Timed(_, 'w')));
        r.message_seq = 4;
        assert!(matches!(read(packet(&r)), Reading::Rejected));
        assert!(recv_crypto_us(plain.as_bytes(), 10) > 0.0);
    }
}
