//! RECV packets of one message for many connections.
//!
//! A group message goes out as one RECV per connection, and each connection has its own key:
//! the payload's ciphertext and the packet's `msgKey` differ per connection and cannot be
//! shared. Everything else can: the payload's JSON, the fields that are the same for every
//! reader already in wire form, and the start of the `msgKey` verify string. [`RecvTemplate`]
//! holds those, made once per event; [`RecvTemplate::encode_for`] writes one reader's packet in
//! a single allocation of its exact size, with the same bytes as [`codec::Packet::encode`] of
//! the equivalent [`codec::Recv`].

use super::codec::{self, EncodeError};
use super::crypto::{encrypted_b64_len, Cipher};
use imsync_core::model::Message;

/// The red-dot flag of a RECV: a message from someone else counts as unread.
const FLAG_RED_DOT: u8 = 0b0010;
/// The bytes of a `msgKey` on the wire: a u16 length and 32 hex digits.
const MSG_KEY_FIELD: usize = 2 + 32;

/// What every reader's RECV of one message shares.
pub struct RecvTemplate {
    sender_id: String,
    /// The payload's JSON text, which each connection encrypts with its own key.
    plain: Vec<u8>,
    /// `fromUID` as the packet carries it (a u16 length and the text).
    from_uid: Vec<u8>,
    /// `clientMsgNo`, `messageID`, `messageSeq` and `timestamp` as the packet carries them.
    middle: Vec<u8>,
    /// The verify string up to the channel: messageID, messageSeq, clientMsgNo, timestamp and
    /// fromUID.
    verify_head: Vec<u8>,
}

fn put_string(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    let n = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong)?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

impl RecvTemplate {
    /// The template of `m`'s RECV, whose payload is `plain` (the message's JSON text);
    /// `client_msg_no` as the face names the message.
    pub fn new(m: &Message, plain: String, client_msg_no: &str) -> Result<Self, EncodeError> {
        let message_seq = u32::try_from(m.msg_seq).unwrap_or(u32::MAX);
        let timestamp = u32::try_from(m.created_at / 1000).unwrap_or(0);
        let mut from_uid = Vec::with_capacity(2 + m.sender_id.len());
        put_string(&mut from_uid, &m.sender_id)?;
        let mut middle = Vec::with_capacity(2 + client_msg_no.len() + 16);
        put_string(&mut middle, client_msg_no)?;
        middle.extend_from_slice(&m.event_seq.to_be_bytes());
        middle.extend_from_slice(&message_seq.to_be_bytes());
        middle.extend_from_slice(&timestamp.to_be_bytes());
        let mut digits = itoa::Buffer::new();
        let mut verify_head = Vec::with_capacity(40 + client_msg_no.len() + m.sender_id.len());
        verify_head.extend_from_slice(digits.format(m.event_seq).as_bytes());
        verify_head.extend_from_slice(digits.format(message_seq).as_bytes());
        verify_head.extend_from_slice(client_msg_no.as_bytes());
        verify_head.extend_from_slice(digits.format(timestamp).as_bytes());
        verify_head.extend_from_slice(m.sender_id.as_bytes());
        Ok(RecvTemplate {
            sender_id: m.sender_id.clone(),
            plain: plain.into_bytes(),
            from_uid,
            middle,
            verify_head,
        })
    }

    /// The encoded RECV for the reader `reader_id`, whose connection encrypts with `cipher`
    /// and names the conversation `channel_id` of `channel_type`.
    pub fn encode_for(
        &self,
        cipher: &Cipher,
        reader_id: &str,
        channel_id: &str,
        channel_type: u8,
    ) -> Result<Vec<u8>, EncodeError> {
        let payload_len = encrypted_b64_len(self.plain.len());
        let body = 1 // setting
            + MSG_KEY_FIELD
            + self.from_uid.len()
            + 2
            + channel_id.len()
            + 1 // channel type
            + self.middle.len()
            + payload_len;
        if body > codec::MAX_REMAINING {
            return Err(EncodeError::TooLarge);
        }
        let flags = if self.sender_id == reader_id {
            0
        } else {
            FLAG_RED_DOT
        };
        let mut out = Vec::with_capacity(1 + 4 + body);
        out.push(codec::RECV << 4 | flags);
        codec::write_varint(&mut out, body)?;
        // No setting bit: no topic, and version 2 clients read a stream block differently.
        out.push(0);
        out.extend_from_slice(&32u16.to_be_bytes());
        let key_at = out.len();
        out.extend_from_slice(&[0; 32]);
        out.extend_from_slice(&self.from_uid);
        put_string(&mut out, channel_id)?;
        out.push(channel_type);
        out.extend_from_slice(&self.middle);
        let payload_at = out.len();
        cipher.encrypt_b64_to(&self.plain, &mut out);
        let mut digits = itoa::Buffer::new();
        let key = cipher.msg_key_of(&[
            &self.verify_head,
            channel_id.as_bytes(),
            digits.format(channel_type).as_bytes(),
            &out[payload_at..],
        ]);
        out[key_at..key_at + 32].copy_from_slice(&key);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::{decode, Packet, Recv};
    use super::super::crypto::recv_verify;
    use super::*;

    fn message(sender: &str, conversation: &str) -> Message {
        Message {
            id: "m-1".into(),
            conversation_id: conversation.into(),
            msg_seq: 42,
            event_seq: 9_000_000_001,
            sender_id: sender.into(),
            kind: "text".into(),
            content: "hello".into(),
            metadata: serde_json::Value::Null,
            parent_id: None,
            quoted_id: None,
            created_at: 1_700_000_000_123,
            updated_at: 1_700_000_000_123,
            edited_at: None,
            edited_by: None,
            deleted_at: None,
            revoked: false,
            reply_count: 0,
            last_reply_at: None,
            version: 9_000_000_001,
        }
    }

    /// The packet as the general encoder writes it, with the `msgKey` computed from the whole
    /// verify string.
    fn by_the_codec(
        cipher: &Cipher,
        m: &Message,
        plain: &str,
        client_msg_no: &str,
        reader: &str,
        channel_id: &str,
        channel_type: u8,
    ) -> Vec<u8> {
        let payload = cipher.encrypt_b64(plain.as_bytes());
        let verify = recv_verify(
            m.event_seq,
            42,
            client_msg_no,
            1_700_000_000,
            &m.sender_id,
            channel_id,
            channel_type,
            &payload,
        );
        Packet::Recv(Recv {
            flags: if reader == m.sender_id { 0 } else { 0b0010 },
            setting: 0,
            msg_key: cipher.msg_key(&verify),
            from_uid: m.sender_id.clone(),
            channel_id: channel_id.into(),
            channel_type,
            client_msg_no: client_msg_no.into(),
            message_id: m.event_seq,
            message_seq: 42,
            timestamp: 1_700_000_000,
            topic: None,
            payload: payload.into_bytes(),
        })
        .encode()
        .unwrap()
    }

    #[test]
    fn the_template_writes_what_the_codec_writes() {
        let ciphers = [
            Cipher::new(*b"8e65549ac3e59ba4", *b"0123456789abcdef"),
            Cipher::new(*b"0000111122223333", *b"abcdefabcdef0123"),
        ];
        let m = message("alice", "g-1");
        // Payloads around the block size, and one long enough for a two-byte length.
        for content in ["", "hi", "0123456789", &"x".repeat(300)] {
            let plain = format!(r#"{{"type":1,"content":"{content}"}}"#);
            let t = RecvTemplate::new(&m, plain.clone(), "cmn-1").unwrap();
            for c in &ciphers {
                for (reader, channel, kind) in
                    [("bob", "g-1", 2), ("alice", "g-1", 2), ("bob", "alice", 1)]
                {
                    let fast = t.encode_for(c, reader, channel, kind).unwrap();
                    let slow = by_the_codec(c, &m, &plain, "cmn-1", reader, channel, kind);
                    assert_eq!(fast, slow, "{reader} {channel} {content:?}");
                    let Ok(Packet::Recv(r)) = decode(&fast, 1 << 20) else {
                        panic!("the packet decodes as RECV");
                    };
                    assert_eq!(c.decrypt_b64(&r.payload).unwrap(), plain.as_bytes());
                }
            }
        }
        // Each connection's packet is its own: another key, another payload and msgKey.
        let t = RecvTemplate::new(&m, "{}".into(), "cmn-1").unwrap();
        assert_ne!(
            t.encode_for(&ciphers[0], "bob", "g-1", 2).unwrap(),
            t.encode_for(&ciphers[1], "bob", "g-1", 2).unwrap()
        );
    }

    #[test]
    fn oversized_fields_are_refused() {
        let long = "u".repeat(70_000);
        let m = message(&long, "g-1");
        assert!(matches!(
            RecvTemplate::new(&m, "{}".into(), "c"),
            Err(EncodeError::StringTooLong)
        ));
        let m = message("alice", "g-1");
        let t = RecvTemplate::new(&m, "{}".into(), "c").unwrap();
        let c = Cipher::new([0; 16], [0; 16]);
        assert!(matches!(
            t.encode_for(&c, "bob", &long, 2),
            Err(EncodeError::StringTooLong)
        ));
    }
}
