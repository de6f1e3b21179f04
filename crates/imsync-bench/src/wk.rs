//! A WuKongIM client over the server's WebSocket endpoint (`/v1/wukongim/ws`), built on the
//! server's own codec and crypto (`imsync_server::wukongim`): CONNECT with an X25519 key, then
//! every RECV is checked as the SDK checks it (its `msgKey`), decrypted, and timed by the stamp in
//! its plaintext.

use crate::ws::{self, find_stamp, Reading, Ws};
use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use imsync_server::wukongim::codec::{self, Connect, Packet, Recv};
use imsync_server::wukongim::crypto::{Cipher, ServerKeys};
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

/// The RECV's `msgKey`, as the client computes it from the packet's fields: the verify string
/// (messageID, messageSeq, clientMsgNo, timestamp, fromUID, channelID, channelType, payload)
/// fed in pieces, so that checking a thousand connections' packets does not build it each time.
fn expected_msg_key(cipher: &Cipher, r: &Recv) -> [u8; 32] {
    let (mut id, mut seq, mut ts, mut kind) = (
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
    );
    cipher.msg_key_of(&[
        id.format(r.message_id).as_bytes(),
        seq.format(r.message_seq).as_bytes(),
        r.client_msg_no.as_bytes(),
        ts.format(r.timestamp).as_bytes(),
        r.from_uid.as_bytes(),
        r.channel_id.as_bytes(),
        kind.format(r.channel_type).as_bytes(),
        &r.payload,
    ])
}

/// Packets of one connection: a RECV whose `msgKey` matches and whose payload decrypts is timed
/// by the stamp in its plaintext; one that fails either check is rejected.
pub fn reading(cipher: Cipher) -> impl FnMut(Message) -> Reading {
    // The connection's decryption buffer, kept from one packet to the next.
    let mut plain = Vec::new();
    move |m| {
        let Message::Binary(b) = m else {
            return Reading::Ignored;
        };
        let r = match codec::decode(&b, MAX_PACKET) {
            Ok(Packet::Recv(r)) => r,
            Ok(_) => return Reading::Other,
            Err(_) => return Reading::Rejected,
        };
        if expected_msg_key(&cipher, &r) != r.msg_key.as_bytes() {
            return Reading::Rejected;
        }
        let Some(plain) = cipher.decrypt_b64_in(&r.payload, &mut plain) else {
            return Reading::Rejected;
        };
        match std::str::from_utf8(plain).ok().and_then(find_stamp) {
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
/// `msgKey` with the server's own cipher code, as it does per connection (the verify string's
/// shared start and the connection's channel and ciphertext given in pieces, the ciphertext
/// written into a buffer of the packet), averaged over `rounds` (microseconds of this thread's
/// CPU time; of wall time where that cannot be read).
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
    let head = b"123456789012341234567890abcdef0123456789abcdef1700000000sender-user-id-000000000";
    let mut packet = Vec::new();
    for _ in 0..rounds {
        packet.clear();
        cipher.encrypt_b64_to(std::hint::black_box(plain), &mut packet);
        std::hint::black_box(cipher.msg_key_of(&[
            head,
            b"group-channel-id-0000000",
            b"2",
            &packet,
        ]));
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
    use imsync_server::wukongim::crypto::recv_verify;

    fn r_payload(r: &Recv) -> String {
        String::from_utf8(r.payload.clone()).unwrap()
    }

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
        r.msg_key = String::from_utf8(expected_msg_key(&server_side, &r).to_vec()).unwrap();
        // The same key as the verify string built whole.
        let verify = recv_verify(5, 3, "c1", 1_700_000_000, "u1", "g1", 2, &r_payload(&r));
        assert_eq!(server_side.msg_key(&verify), r.msg_key);
        let packet = |r: &Recv| Message::binary(Packet::Recv(r.clone()).encode().unwrap());
        let mut read = reading(client_side);
        assert!(matches!(read(packet(&r)), Reading::Timed(_, 'w')));
        r.message_seq = 4;
        assert!(matches!(read(packet(&r)), Reading::Rejected));
        // A payload that is not this connection's ciphertext is refused too, msgKey or not.
        r.message_seq = 3;
        r.payload = Cipher::new([1; 16], [2; 16])
            .encrypt_b64(plain.as_bytes())
            .into_bytes();
        r.msg_key = String::from_utf8(expected_msg_key(&server_side, &r).to_vec()).unwrap();
        assert!(!matches!(read(packet(&r)), Reading::Timed(..)));
        assert!(recv_crypto_us(plain.as_bytes(), 10) > 0.0);
    }
}
