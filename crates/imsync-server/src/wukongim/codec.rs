//! WuKongIM's binary packets, protocol version 2 (docs/wukongim.md, "Packets").
//!
//! A packet is a fixed header byte (`type << 4` and four flag bits), then the remaining length
//! as an MQTT variable-length integer (at most 4 bytes, 7 bits a byte, low group first), then
//! the body. PING and PONG are the header byte alone. Strings are a big-endian u16 length and
//! UTF-8; integers are big-endian.
//!
//! Decoding takes one whole packet from one WebSocket message and never trusts a length: every
//! read is checked against the bytes actually present, so no input makes it panic or allocate
//! more than the message it was given.

use std::fmt;

/// The protocol version this server speaks (and answers in, whatever a client asks for).
pub const VERSION: u8 = 2;
/// The largest remaining length a 4-byte varint can say.
pub const MAX_REMAINING: usize = 268_435_455;

pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const SEND: u8 = 3;
pub const SENDACK: u8 = 4;
pub const RECV: u8 = 5;
pub const RECVACK: u8 = 6;
pub const PING: u8 = 7;
pub const PONG: u8 = 8;
pub const DISCONNECT: u8 = 9;

/// Setting bits of SEND and RECV.
pub const SETTING_STREAM: u8 = 1 << 2;
pub const SETTING_TOPIC: u8 = 1 << 3;

/// Reason codes.
pub const REASON_SUCCESS: u8 = 1;
pub const REASON_AUTH_FAIL: u8 = 2;
pub const REASON_SYSTEM_ERROR: u8 = 4;
pub const REASON_MSG_KEY_ERROR: u8 = 8;
pub const REASON_PAYLOAD_DECODE_ERROR: u8 = 9;
pub const REASON_NOT_ALLOWED: u8 = 15;
pub const REASON_CHANNEL_NOT_FOUND: u8 = 17;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: u8,
    pub device_flag: u8,
    pub device_id: String,
    pub uid: String,
    pub token: String,
    pub client_timestamp: i64,
    /// The client's X25519 public key, base64.
    pub client_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connack {
    pub time_diff: i64,
    pub reason: u8,
    /// The server's X25519 public key, base64.
    pub server_key: String,
    pub salt: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    /// The header's four flag bits.
    pub flags: u8,
    pub setting: u8,
    pub client_seq: u32,
    pub client_msg_no: String,
    pub stream_no: Option<String>,
    pub channel_id: String,
    pub channel_type: u8,
    pub msg_key: String,
    pub topic: Option<String>,
    /// The encrypted payload as it travels: base64 text of the ciphertext.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sendack {
    pub message_id: i64,
    pub client_seq: u32,
    pub message_seq: u32,
    pub reason: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recv {
    pub flags: u8,
    /// Only the topic bit is ever set: version 2 clients read a stream block differently.
    pub setting: u8,
    pub msg_key: String,
    pub from_uid: String,
    pub channel_id: String,
    pub channel_type: u8,
    pub client_msg_no: String,
    pub message_id: i64,
    pub message_seq: u32,
    /// Seconds.
    pub timestamp: u32,
    pub topic: Option<String>,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recvack {
    pub flags: u8,
    pub message_id: i64,
    pub message_seq: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub reason: u8,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    Connack(Connack),
    Send(Send),
    Sendack(Sendack),
    Recv(Recv),
    Recvack(Recvack),
    Ping,
    Pong,
    Disconnect(Disconnect),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    UnknownType(u8),
    /// The varint has a fifth byte.
    VarintTooLong,
    /// The message ends before the varint, the declared length, or a field does.
    Truncated,
    /// Bytes after the packet's declared length (one packet per message).
    Trailing,
    /// More than the caller's limit.
    TooLarge,
    InvalidUtf8,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty message"),
            DecodeError::UnknownType(t) => write!(f, "unknown packet type {t}"),
            DecodeError::VarintTooLong => f.write_str("remaining length longer than 4 bytes"),
            DecodeError::Truncated => f.write_str("truncated packet"),
            DecodeError::Trailing => f.write_str("bytes after the packet"),
            DecodeError::TooLarge => f.write_str("packet too large"),
            DecodeError::InvalidUtf8 => f.write_str("string is not UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// A string longer than a u16 length can say.
    StringTooLong,
    /// A body longer than a 4-byte varint can say.
    TooLarge,
}

/// Reads an MQTT varint from the start of `b`: the value and the bytes it took.
pub fn read_varint(b: &[u8]) -> Result<(usize, usize), DecodeError> {
    let mut value = 0usize;
    for i in 0..4 {
        let byte = *b.get(i).ok_or(DecodeError::Truncated)?;
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(DecodeError::VarintTooLong)
}

/// Appends `n` as an MQTT varint (0 is the single byte `0x00`).
pub fn write_varint(out: &mut Vec<u8>, mut n: usize) -> Result<(), EncodeError> {
    if n > MAX_REMAINING {
        return Err(EncodeError::TooLarge);
    }
    loop {
        let mut byte = (n % 0x80) as u8;
        n /= 0x80;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return Ok(());
        }
    }
}

/// The length of the first packet of a byte stream (the TCP transport, where packets follow
/// each other with nothing between them): `Ok(None)` while `buf` holds less than a whole
/// packet, an error as soon as the bytes present cannot start a valid one (an unknown type, a
/// varint of five bytes, a length over `max`). It never asks for more than `max` body bytes, so
/// a reader that grows its buffer only while this answers `None` holds at most one packet.
pub fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let kind = first >> 4;
    if kind == PING || kind == PONG {
        return Ok(Some(1));
    }
    if !(CONNECT..=DISCONNECT).contains(&kind) {
        return Err(DecodeError::UnknownType(kind));
    }
    let (len, used) = match read_varint(&buf[1..]) {
        Ok(v) => v,
        Err(DecodeError::Truncated) => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > max {
        return Err(DecodeError::TooLarge);
    }
    let total = 1 + used + len;
    Ok((buf.len() >= total).then_some(total))
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(i64::from_be_bytes(a))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let n = usize::from(self.u16()?);
        let s = self.take(n)?;
        std::str::from_utf8(s)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.b).to_vec()
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing)
        }
    }
}

struct Writer {
    b: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.b.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }

    fn string(&mut self, s: &str) -> Result<(), EncodeError> {
        let n = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong)?;
        self.b.extend_from_slice(&n.to_be_bytes());
        self.b.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Decodes the one packet a message holds; `max` bounds the remaining length.
pub fn decode(frame: &[u8], max: usize) -> Result<Packet, DecodeError> {
    let first = *frame.first().ok_or(DecodeError::Empty)?;
    let kind = first >> 4;
    let flags = first & 0x0f;
    if kind == PING || kind == PONG {
        // The header byte alone; a zero length byte after it is tolerated.
        if frame.len() > 2 || frame.get(1).is_some_and(|b| *b != 0) {
            return Err(DecodeError::Trailing);
        }
        return Ok(if kind == PING {
            Packet::Ping
        } else {
            Packet::Pong
        });
    }
    if !(CONNECT..=DISCONNECT).contains(&kind) {
        return Err(DecodeError::UnknownType(kind));
    }
    let (len, used) = read_varint(&frame[1..])?;
    if len > max {
        return Err(DecodeError::TooLarge);
    }
    let body = &frame[1 + used..];
    if body.len() < len {
        return Err(DecodeError::Truncated);
    }
    if body.len() > len {
        return Err(DecodeError::Trailing);
    }
    let mut r = Reader { b: body };
    let p = match kind {
        CONNECT => Packet::Connect(Connect {
            version: r.u8()?,
            device_flag: r.u8()?,
            device_id: r.string()?,
            uid: r.string()?,
            token: r.string()?,
            client_timestamp: r.i64()?,
            client_key: r.string()?,
        }),
        CONNACK => Packet::Connack(Connack {
            time_diff: r.i64()?,
            reason: r.u8()?,
            server_key: r.string()?,
            salt: r.string()?,
        }),
        SEND => {
            let setting = r.u8()?;
            let client_seq = r.u32()?;
            let client_msg_no = r.string()?;
            let stream_no = if setting & SETTING_STREAM != 0 {
                Some(r.string()?)
            } else {
                None
            };
            let channel_id = r.string()?;
            let channel_type = r.u8()?;
            let msg_key = r.string()?;
            let topic = if setting & SETTING_TOPIC != 0 {
                Some(r.string()?)
            } else {
                None
            };
            Packet::Send(Send {
                flags,
                setting,
                client_seq,
                client_msg_no,
                stream_no,
                channel_id,
                channel_type,
                msg_key,
                topic,
                payload: r.rest(),
            })
        }
        SENDACK => Packet::Sendack(Sendack {
            message_id: r.i64()?,
            client_seq: r.u32()?,
            message_seq: r.u32()?,
            reason: r.u8()?,
        }),
        RECV => {
            let setting = r.u8()?;
            let msg_key = r.string()?;
            let from_uid = r.string()?;
            let channel_id = r.string()?;
            let channel_type = r.u8()?;
            let client_msg_no = r.string()?;
            let message_id = r.i64()?;
            let message_seq = r.u32()?;
            let timestamp = r.u32()?;
            let topic = if setting & SETTING_TOPIC != 0 {
                Some(r.string()?)
            } else {
                None
            };
            Packet::Recv(Recv {
                flags,
                setting,
                msg_key,
                from_uid,
                channel_id,
                channel_type,
                client_msg_no,
                message_id,
                message_seq,
                timestamp,
                topic,
                payload: r.rest(),
            })
        }
        RECVACK => Packet::Recvack(Recvack {
            flags,
            message_id: r.i64()?,
            message_seq: r.u32()?,
        }),
        DISCONNECT => Packet::Disconnect(Disconnect {
            reason: r.u8()?,
            message: r.string()?,
        }),
        _ => return Err(DecodeError::UnknownType(kind)),
    };
    r.end()?;
    Ok(p)
}

impl Packet {
    pub fn kind(&self) -> u8 {
        match self {
            Packet::Connect(_) => CONNECT,
            Packet::Connack(_) => CONNACK,
            Packet::Send(_) => SEND,
            Packet::Sendack(_) => SENDACK,
            Packet::Recv(_) => RECV,
            Packet::Recvack(_) => RECVACK,
            Packet::Ping => PING,
            Packet::Pong => PONG,
            Packet::Disconnect(_) => DISCONNECT,
        }
    }

    /// The packet as one message.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer { b: Vec::new() };
        let flags = match self {
            Packet::Ping | Packet::Pong => return Ok(vec![self.kind() << 4]),
            Packet::Connect(c) => {
                w.u8(c.version);
                w.u8(c.device_flag);
                w.string(&c.device_id)?;
                w.string(&c.uid)?;
                w.string(&c.token)?;
                w.i64(c.client_timestamp);
                w.string(&c.client_key)?;
                0
            }
            Packet::Connack(c) => {
                w.i64(c.time_diff);
                w.u8(c.reason);
                w.string(&c.server_key)?;
                w.string(&c.salt)?;
                0
            }
            Packet::Send(s) => {
                w.u8(s.setting);
                w.u32(s.client_seq);
                w.string(&s.client_msg_no)?;
                if s.setting & SETTING_STREAM != 0 {
                    w.string(s.stream_no.as_deref().unwrap_or_default())?;
                }
                w.string(&s.channel_id)?;
                w.u8(s.channel_type);
                w.string(&s.msg_key)?;
                if s.setting & SETTING_TOPIC != 0 {
                    w.string(s.topic.as_deref().unwrap_or_default())?;
                }
                w.b.extend_from_slice(&s.payload);
                s.flags
            }
            Packet::Sendack(s) => {
                w.i64(s.message_id);
                w.u32(s.client_seq);
                w.u32(s.message_seq);
                w.u8(s.reason);
                0
            }
            Packet::Recv(r) => {
                let setting = r.setting & !SETTING_STREAM;
                w.u8(setting);
                w.string(&r.msg_key)?;
                w.string(&r.from_uid)?;
                w.string(&r.channel_id)?;
                w.u8(r.channel_type);
                w.string(&r.client_msg_no)?;
                w.i64(r.message_id);
                w.u32(r.message_seq);
                w.u32(r.timestamp);
                if setting & SETTING_TOPIC != 0 {
                    w.string(r.topic.as_deref().unwrap_or_default())?;
                }
                w.b.extend_from_slice(&r.payload);
                r.flags
            }
            Packet::Recvack(r) => {
                w.i64(r.message_id);
                w.u32(r.message_seq);
                r.flags
            }
            Packet::Disconnect(d) => {
                w.u8(d.reason);
                w.string(&d.message)?;
                0
            }
        };
        let mut out = Vec::with_capacity(w.b.len() + 5);
        out.push(self.kind() << 4 | (flags & 0x0f));
        write_varint(&mut out, w.b.len())?;
        out.extend_from_slice(&w.b);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    #[test]
    fn varint_edges() {
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xff, 0xff, 0x7f]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xff, 0xff, 0xff, 0x7f]),
        ];
        for (n, bytes) in cases {
            let mut out = Vec::new();
            write_varint(&mut out, *n).unwrap();
            assert_eq!(&out, bytes, "encoding {n}");
            assert_eq!(read_varint(bytes), Ok((*n, bytes.len())), "decoding {n}");
        }
        let mut out = Vec::new();
        assert_eq!(
            write_varint(&mut out, 268_435_456),
            Err(EncodeError::TooLarge)
        );
        // A fifth byte is refused, as is a varint the message cuts short.
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(DecodeError::VarintTooLong)
        );
        assert_eq!(read_varint(&[0x80, 0x80]), Err(DecodeError::Truncated));
        assert_eq!(read_varint(&[]), Err(DecodeError::Truncated));
        // A non-minimal encoding still says its value.
        assert_eq!(read_varint(&[0x80, 0x00]), Ok((0, 2)));
    }

    #[test]
    fn ping_and_pong_are_one_byte() {
        assert_eq!(decode(&[0x70], MAX), Ok(Packet::Ping));
        assert_eq!(decode(&[0x70, 0x00], MAX), Ok(Packet::Ping));
        assert_eq!(decode(&[0x70, 0x01], MAX), Err(DecodeError::Trailing));
        assert_eq!(Packet::Pong.encode().unwrap(), vec![0x80]);
        assert_eq!(Packet::Ping.encode().unwrap(), vec![0x70]);
    }

    #[test]
    fn connect_by_hand() {
        // type 1, length 26: version 2, device flag 1, "d1", "u1", "tk", ts 1000, "ck".
        let bytes: Vec<u8> = [
            &[0x10, 26][..],
            &[0x02, 0x01],
            &[0x00, 0x02, b'd', b'1'],
            &[0x00, 0x02, b'u', b'1'],
            &[0x00, 0x02, b't', b'k'],
            &[0, 0, 0, 0, 0, 0, 0x03, 0xe8],
            &[0x00, 0x02, b'c', b'k'],
        ]
        .concat();
        assert_eq!(bytes.len(), 2 + 26);
        let want = Packet::Connect(Connect {
            version: 2,
            device_flag: 1,
            device_id: "d1".into(),
            uid: "u1".into(),
            token: "tk".into(),
            client_timestamp: 1000,
            client_key: "ck".into(),
        });
        assert_eq!(decode(&bytes, MAX), Ok(want.clone()));
        assert_eq!(want.encode().unwrap(), bytes);
        // Cut anywhere, it is truncated; one byte more, it has trailing bytes.
        for cut in 1..bytes.len() {
            assert!(decode(&bytes[..cut], MAX).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer, MAX), Err(DecodeError::Trailing));
    }

    #[test]
    fn connack_by_hand() {
        let p = Packet::Connack(Connack {
            time_diff: -1,
            reason: REASON_SUCCESS,
            server_key: "K".into(),
            salt: "S".into(),
        });
        // Flags 0: version 2 clients cannot read the "has server version" bit.
        let want: Vec<u8> = vec![
            0x20, 15, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00, 0x01, b'K', 0x00,
            0x01, b'S',
        ];
        assert_eq!(p.encode().unwrap(), want);
        assert_eq!(decode(&want, MAX), Ok(p));
    }

    #[test]
    fn send_with_topic_and_stream_by_hand() {
        let bytes: Vec<u8> = [
            &[0x31, 29][..], // SEND with the no-persist flag
            &[SETTING_STREAM | SETTING_TOPIC],
            &[0, 0, 0, 7],
            &[0x00, 0x01, b'c'],
            &[0x00, 0x01, b's'],
            &[0x00, 0x02, b'u', b'2'],
            &[0x01],
            &[0x00, 0x01, b'k'],
            &[0x00, 0x01, b't'],
            b"PAYLOAD",
        ]
        .concat();
        assert_eq!(bytes.len(), 2 + 29);
        let want = Packet::Send(Send {
            flags: 1,
            setting: SETTING_STREAM | SETTING_TOPIC,
            client_seq: 7,
            client_msg_no: "c".into(),
            stream_no: Some("s".into()),
            channel_id: "u2".into(),
            channel_type: 1,
            msg_key: "k".into(),
            topic: Some("t".into()),
            payload: b"PAYLOAD".to_vec(),
        });
        assert_eq!(decode(&bytes, MAX), Ok(want.clone()));
        assert_eq!(want.encode().unwrap(), bytes);
    }

    #[test]
    fn sendack_recv_recvack_disconnect_by_hand() {
        let ack = Packet::Sendack(Sendack {
            message_id: 0x0102,
            client_seq: 3,
            message_seq: 4,
            reason: 1,
        });
        assert_eq!(
            ack.encode().unwrap(),
            vec![0x40, 17, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 3, 0, 0, 0, 4, 1]
        );
        let recv = Packet::Recv(Recv {
            flags: 0b0010,
            setting: SETTING_STREAM, // never sent: the stream bit is cleared
            msg_key: "k".into(),
            from_uid: "a".into(),
            channel_id: "b".into(),
            channel_type: 2,
            client_msg_no: "c".into(),
            message_id: 9,
            message_seq: 1,
            timestamp: 2,
            topic: None,
            payload: b"P".to_vec(),
        });
        let want: Vec<u8> = [
            &[0x52, 31][..],
            &[0x00],
            &[0, 1, b'k'],
            &[0, 1, b'a'],
            &[0, 1, b'b'],
            &[2],
            &[0, 1, b'c'],
            &[0, 0, 0, 0, 0, 0, 0, 9],
            &[0, 0, 0, 1],
            &[0, 0, 0, 2],
            b"P",
        ]
        .concat();
        assert_eq!(recv.encode().unwrap(), want);
        assert_eq!(want.len(), 33);
        let recvack = [0x62, 12, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1];
        assert_eq!(
            decode(&recvack, MAX),
            Ok(Packet::Recvack(Recvack {
                flags: 2,
                message_id: 9,
                message_seq: 1
            }))
        );
        let d = Packet::Disconnect(Disconnect {
            reason: 0,
            message: "bye".into(),
        });
        assert_eq!(
            d.encode().unwrap(),
            vec![0x90, 6, 0, 0, 3, b'b', b'y', b'e']
        );
    }

    #[test]
    fn hostile_headers() {
        assert_eq!(decode(&[], MAX), Err(DecodeError::Empty));
        assert_eq!(decode(&[0x00], MAX), Err(DecodeError::UnknownType(0)));
        assert_eq!(decode(&[0xa0, 0], MAX), Err(DecodeError::UnknownType(10)));
        assert_eq!(decode(&[0xf0], MAX), Err(DecodeError::UnknownType(15)));
        // Varint of five bytes; a length past the message; a length over the limit.
        assert_eq!(
            decode(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x7f], MAX),
            Err(DecodeError::VarintTooLong)
        );
        assert_eq!(
            decode(&[0x30, 0xff, 0xff, 0xff, 0x7f], usize::MAX),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(&[0x30, 0xff, 0xff, 0xff, 0x7f], MAX),
            Err(DecodeError::TooLarge)
        );
        // A string that says 65535 bytes in a short message.
        assert_eq!(
            decode(&[0x90, 3, 0, 0xff, 0xff], MAX),
            Err(DecodeError::Truncated)
        );
        // Invalid UTF-8.
        assert_eq!(
            decode(&[0x90, 5, 0, 0, 2, 0xc3, 0x28], MAX),
            Err(DecodeError::InvalidUtf8)
        );
    }

    #[test]
    fn stream_framing() {
        // PING alone; then a DISCONNECT cut at every point; then two packets back to back.
        assert_eq!(frame_len(&[], MAX), Ok(None));
        assert_eq!(frame_len(&[0x70, 0x90], MAX), Ok(Some(1)));
        let d = [0x90, 6, 0, 0, 3, b'b', b'y', b'e'];
        for cut in 1..d.len() {
            assert_eq!(frame_len(&d[..cut], MAX), Ok(None), "cut at {cut}");
        }
        assert_eq!(frame_len(&d, MAX), Ok(Some(8)));
        let two = [&d[..], &[0x80][..]].concat();
        assert_eq!(frame_len(&two, MAX), Ok(Some(8)));
        assert_eq!(decode(&two[..8], MAX).unwrap().kind(), DISCONNECT);
        // A varint still open after three bytes waits for the fourth; a fifth is refused.
        assert_eq!(frame_len(&[0x30, 0x80, 0x80, 0x80], usize::MAX), Ok(None));
        assert_eq!(
            frame_len(&[0x30, 0x80, 0x80, 0x80, 0x80], usize::MAX),
            Err(DecodeError::VarintTooLong)
        );
        // A length over the limit is refused before its body arrives; so is an unknown type.
        assert_eq!(
            frame_len(&[0x30, 0x81, 0x01], 128),
            Err(DecodeError::TooLarge)
        );
        assert_eq!(frame_len(&[0x30, 0x80, 0x01], 128), Ok(None));
        assert_eq!(frame_len(&[0xb0], MAX), Err(DecodeError::UnknownType(11)));
        assert_eq!(
            frame_len(&[0x00, 0x00], MAX),
            Err(DecodeError::UnknownType(0))
        );
    }

    #[test]
    fn encode_refuses_oversized_strings() {
        let d = Packet::Disconnect(Disconnect {
            reason: 0,
            message: "x".repeat(70_000),
        });
        assert_eq!(d.encode(), Err(EncodeError::StringTooLong));
    }

    /// Arbitrary bytes, for a fixed number of seeded cases: decoding never panics, a decoded
    /// packet encodes back to a message that decodes to the same packet, and mutations of valid
    /// packets (truncations, flipped bytes, spliced lengths) are handled the same way.
    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let seed = std::env::var("WUKONGIM_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed_u64);
        let cases: usize = std::env::var("WUKONGIM_FUZZ_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20_000);
        let mut rng = StdRng::seed_from_u64(seed);
        let valid: Vec<Vec<u8>> = vec![
            vec![0x70],
            Packet::Connect(Connect {
                version: 2,
                device_flag: 1,
                device_id: "dev".into(),
                uid: "user".into(),
                token: "token".into(),
                client_timestamp: 1,
                client_key: "key".into(),
            })
            .encode()
            .unwrap(),
            Packet::Send(Send {
                flags: 0,
                setting: SETTING_TOPIC,
                client_seq: 1,
                client_msg_no: "no".into(),
                stream_no: None,
                channel_id: "ch".into(),
                channel_type: 2,
                msg_key: "mk".into(),
                topic: Some("t".into()),
                payload: b"abc".to_vec(),
            })
            .encode()
            .unwrap(),
            vec![0x62, 12, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1],
        ];
        for _ in 0..cases {
            let bytes: Vec<u8> = if rng.random_bool(0.5) {
                let n = rng.random_range(0..64);
                let mut b: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                if let Some(first) = b.first_mut() {
                    // Mostly known types, so that bodies get parsed.
                    *first = (rng.random_range(0..11u8) << 4) | (*first & 0x0f);
                }
                b
            } else {
                let mut b = valid[rng.random_range(0..valid.len())].clone();
                match rng.random_range(0..3) {
                    0 => b.truncate(rng.random_range(0..=b.len())),
                    1 => {
                        let i = rng.random_range(0..b.len());
                        b[i] = rng.random();
                    }
                    _ => {
                        let extra = rng.random_range(0..4);
                        b.extend((0..extra).map(|_| rng.random::<u8>()));
                    }
                }
                b
            };
            // The stream framer never points past the bytes it was given.
            if let Ok(Some(n)) = frame_len(&bytes, MAX) {
                assert!(n <= bytes.len(), "{bytes:?}");
            }
            if let Ok(p) = decode(&bytes, MAX) {
                let again = p.encode().expect("a decoded packet encodes");
                let p2 = decode(&again, MAX).expect("an encoded packet decodes");
                if !matches!(p, Packet::Recv(_)) {
                    assert_eq!(p, p2, "round trip of {bytes:?}");
                }
            }
        }
    }
}
