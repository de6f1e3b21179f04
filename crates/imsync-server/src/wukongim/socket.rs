//! A WuKongIM connection, whichever transport carries it: `GET /v1/wukongim/ws` (one packet
//! per binary WebSocket message) or the plain TCP listener of `--wukongim-tcp-listen` (packets
//! back to back), as docs/wukongim.md describes.
//!
//! The first packet must be CONNECT. Its token is a TangSengDaoDao login token: a bad one is
//! answered CONNACK reason 2 and the connection closes. Then the connection subscribes to the
//! hub like `/ws` does: every committed `message.new` the reader may see goes out as RECV,
//! encrypted with the connection's key, except the messages this very connection sent (their
//! SENDACK answers them). SEND goes through the same service call as every face, with
//! `clientMsgNo` as the idempotency key. A connection that sends nothing (not even PING) for the
//! idle timeout is closed; so is one whose queue of deliveries overflows (it reconnects and
//! catches up over REST); one whose session ends gets DISCONNECT, which the SDK takes as a kick.

use super::codec::{self, Connack, Disconnect, Packet, Sendack};
use super::crypto::{send_verify, Cipher, ServerKeys};
use super::recv::RecvTemplate;
use super::wire::{Inbound, Wire, CLOSE_IDLE, CLOSE_LAGGING, CLOSE_PROTOCOL, WRITE_BATCH};
use crate::app::AppState;
use crate::metrics::{OpenConnection, Protocol};
use crate::tsdd::error::{bad, TsddResult};
use crate::tsdd::render;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::response::Response;
use futures_util::FutureExt;
use imsync_core::event::{EventData, EventKind, MessageBody};
use imsync_core::model::{ConversationKind, Event, Message, User};
use imsync_core::{ErrorCode, Seq};
use imsync_service::hub::{Delivery, Subscription};
use imsync_service::{Channel, NewMessage};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::Instant;

/// The socket must say CONNECT within this long.
const CONNECT_WITHIN: std::time::Duration = std::time::Duration::from_secs(15);
/// How many of its own sent messages a connection remembers, to skip their RECV.
const OWN_SENT: usize = 256;
/// Conversations whose kind and members a connection keeps for naming channels.
const CHANNEL_CACHE: usize = 4096;
/// Deliveries handled in a row before the client's side is looked at: a connection that falls
/// behind writes what is queued in batches (one write each) instead of one packet per wake-up,
/// and a stream of deliveries still cannot starve the client's packets or the idle check.
const DELIVERY_STREAK: u32 = 32;

pub async fn upgrade(
    State(state): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> TsddResult<Response> {
    let ws = ws.map_err(|r| {
        bad(format!(
            "This endpoint takes a WebSocket upgrade: {}",
            r.body_text()
        ))
    })?;
    let max = state.config.max_body_bytes;
    // RECVs queued together go out in one write (see `Conn::deliver_queued`), up to
    // WRITE_BATCH bytes; a lone packet is written at once all the same, as every send flushes.
    let ws = ws
        .read_buffer_size(4 * 1024)
        .write_buffer_size(WRITE_BATCH)
        .max_message_size(max)
        .max_frame_size(max);
    Ok(ws.on_upgrade(move |socket| async move {
        let _running = state.service.hub().track();
        let _open = OpenConnection::new(Protocol::WukongimWs);
        connect(Wire::Ws(socket), state).await;
    }))
}

async fn send_packet(wire: &mut Wire, p: &Packet) -> bool {
    match p.encode() {
        Ok(bytes) => wire.send(bytes).await,
        Err(e) => {
            tracing::warn!(?e, "WuKongIM packet could not be encoded");
            true
        }
    }
}

/// DISCONNECT (the SDK stops reconnecting), then a close.
async fn kick(mut wire: Wire, reason: &'static str) {
    let p = Packet::Disconnect(Disconnect {
        reason: 0,
        message: reason.to_owned(),
    });
    let _ = send_packet(&mut wire, &p).await;
    wire.close(CLOSE_PROTOCOL, reason).await;
}

fn connack(reason: u8, keys: Option<&ServerKeys>, client_ts: i64) -> Packet {
    Packet::Connack(Connack {
        time_diff: imsync_core::time::now_ms().saturating_sub(client_ts),
        reason,
        server_key: keys.map(|k| k.public.clone()).unwrap_or_default(),
        salt: keys.map(|k| k.salt.clone()).unwrap_or_default(),
    })
}

/// Waits for CONNECT, authenticates, answers CONNACK and runs the connection.
pub(super) async fn connect(mut wire: Wire, state: AppState) {
    let max = state.config.max_body_bytes;
    let deadline = Instant::now() + CONNECT_WITHIN;
    let first = loop {
        match tokio::time::timeout_at(deadline, wire.recv()).await {
            Ok(Inbound::Packet(b)) => break b,
            Ok(Inbound::Nothing) => continue,
            Ok(Inbound::Malformed) => return kick(wire, "malformed packet").await,
            Ok(Inbound::Refuse(code, reason)) => return wire.close(code, reason).await,
            Ok(Inbound::Closed) => return,
            Err(_) => return wire.close(CLOSE_IDLE, "CONNECT expected").await,
        }
    };
    let c = match codec::decode(&first, max) {
        Ok(Packet::Connect(c)) => c,
        Ok(_) => return kick(wire, "CONNECT expected").await,
        Err(_) => return kick(wire, "malformed packet").await,
    };
    let (user, session) = match Box::pin(state.service.authenticate_session(&c.token)).await {
        Ok((u, s)) if c.uid.is_empty() || c.uid == u.id => (u, s),
        Ok(_) => {
            let _ = send_packet(
                &mut wire,
                &connack(codec::REASON_AUTH_FAIL, None, c.client_timestamp),
            )
            .await;
            return wire.close(CLOSE_PROTOCOL, "authentication failed").await;
        }
        Err(e) => {
            let reason = if e.code == ErrorCode::Unauthorized {
                codec::REASON_AUTH_FAIL
            } else {
                codec::REASON_SYSTEM_ERROR
            };
            let _ = send_packet(&mut wire, &connack(reason, None, c.client_timestamp)).await;
            return wire.close(CLOSE_PROTOCOL, "authentication failed").await;
        }
    };
    let keys = ServerKeys::generate();
    let Some(cipher) = keys.agree(&c.client_key) else {
        let _ = send_packet(
            &mut wire,
            &connack(codec::REASON_SYSTEM_ERROR, None, c.client_timestamp),
        )
        .await;
        return wire.close(CLOSE_PROTOCOL, "bad client key").await;
    };
    // Subscribed before CONNACK: everything committed after the client hears "connected"
    // reaches it.
    let (sub, _) = state.service.hub().subscribe(&user.id, Some(session));
    if send_packet(
        &mut wire,
        &connack(codec::REASON_SUCCESS, Some(&keys), c.client_timestamp),
    )
    .await
    {
        let mut conn = Conn {
            state: &state,
            user: &user,
            cipher,
            own_sent: VecDeque::new(),
            channels: HashMap::new(),
        };
        conn.run(wire, sub).await;
    }
}

/// A conversation as one reader names it on this protocol.
struct ChannelName {
    kind: ConversationKind,
    /// For a person channel: the member who is not the reader (the reader for a chat with
    /// oneself).
    peer: Option<String>,
}

struct Conn<'a> {
    state: &'a AppState,
    user: &'a User,
    cipher: Cipher,
    own_sent: VecDeque<Seq>,
    channels: HashMap<String, ChannelName>,
}

enum Flow {
    Go,
    Stop,
    Close(u16, &'static str),
    Kick(&'static str),
}

impl Conn<'_> {
    async fn run(&mut self, mut wire: Wire, mut sub: Subscription) {
        let idle = self.state.config.ws_idle_timeout;
        // One timer for the connection's life, moved only when the client shows activity.
        let idle_timer = tokio::time::sleep(idle);
        tokio::pin!(idle_timer);
        let max = self.state.config.max_body_bytes;
        let mut streak = 0u32;
        let flow = loop {
            let inbound = if streak >= DELIVERY_STREAK {
                streak = 0;
                if Instant::now() >= idle_timer.deadline() {
                    break Flow::Close(CLOSE_IDLE, "idle timeout");
                }
                wire.recv().now_or_never()
            } else {
                // Deliveries first, so that a wake-up for one does not also try the socket.
                tokio::select! {
                    biased;
                    d = sub.rx.recv() => {
                        let (flow, n) = self.deliver_queued(&mut wire, &mut sub, d).await;
                        streak += n;
                        match flow {
                            Flow::Go => continue,
                            other => break other,
                        }
                    }
                    m = wire.recv() => Some(m),
                    _ = &mut idle_timer => break Flow::Close(CLOSE_IDLE, "idle timeout"),
                }
            };
            let Some(m) = inbound else { continue };
            streak = 0;
            let flow = match m {
                Inbound::Packet(b) => {
                    idle_timer.as_mut().reset(Instant::now() + idle);
                    // Boxed, like the other rare awaits here: the task of every idle
                    // connection is as large as its largest await.
                    Box::pin(self.packet(&mut wire, &b, max)).await
                }
                Inbound::Nothing => Flow::Go,
                Inbound::Malformed => Flow::Kick("malformed packet"),
                Inbound::Refuse(code, reason) => Flow::Close(code, reason),
                Inbound::Closed => Flow::Stop,
            };
            match flow {
                Flow::Go => continue,
                other => break other,
            }
        };
        drop(sub);
        match flow {
            Flow::Go | Flow::Stop => {}
            Flow::Close(code, reason) => wire.close(code, reason).await,
            Flow::Kick(reason) => kick(wire, reason).await,
        }
    }

    /// Delivers `first` and whatever else is already queued (at most [`DELIVERY_STREAK`]),
    /// written out together; answers how the connection goes on and how many it took.
    async fn deliver_queued(
        &mut self,
        wire: &mut Wire,
        sub: &mut Subscription,
        first: Option<Delivery>,
    ) -> (Flow, u32) {
        let mut next = first;
        let mut taken = 0;
        let flow = loop {
            taken += 1;
            let flow = self.deliver(wire, sub, next).await;
            if !matches!(flow, Flow::Go) || taken >= DELIVERY_STREAK {
                break flow;
            }
            next = match sub.rx.try_recv() {
                Ok(d) => Some(d),
                Err(TryRecvError::Empty) => break Flow::Go,
                // Said by the next `deliver`, after what is queued went out.
                Err(TryRecvError::Disconnected) => None,
            };
        };
        if matches!(flow, Flow::Stop) || !wire.flush().await {
            return (Flow::Stop, taken);
        }
        (flow, taken)
    }

    /// One packet from the client.
    async fn packet(&mut self, wire: &mut Wire, bytes: &[u8], max: usize) -> Flow {
        let p = match codec::decode(bytes, max) {
            Ok(p) => p,
            Err(_) => return Flow::Kick("malformed packet"),
        };
        let reply = match p {
            Packet::Ping => Packet::Pong,
            Packet::Recvack(_) => return Flow::Go,
            Packet::Disconnect(_) => return Flow::Stop,
            Packet::Send(s) => Packet::Sendack(self.send(s).await),
            Packet::Connect(_)
            | Packet::Connack(_)
            | Packet::Sendack(_)
            | Packet::Recv(_)
            | Packet::Pong => return Flow::Kick("unexpected packet"),
        };
        if send_packet(wire, &reply).await {
            Flow::Go
        } else {
            Flow::Stop
        }
    }

    /// Checks, decrypts and stores a SEND; answers its SENDACK.
    async fn send(&mut self, s: codec::Send) -> Sendack {
        let fail = |reason: u8| Sendack {
            message_id: 0,
            client_seq: s.client_seq,
            message_seq: 0,
            reason,
        };
        let Ok(payload_text) = std::str::from_utf8(&s.payload) else {
            return fail(codec::REASON_MSG_KEY_ERROR);
        };
        let verify = send_verify(
            s.client_seq,
            &s.client_msg_no,
            &s.channel_id,
            s.channel_type,
            payload_text,
        );
        if self.cipher.msg_key(&verify) != s.msg_key {
            return fail(codec::REASON_MSG_KEY_ERROR);
        }
        let Some(plain) = self.cipher.decrypt_b64(&s.payload) else {
            return fail(codec::REASON_PAYLOAD_DECODE_ERROR);
        };
        let Some(new) = new_message(&plain, &s.client_msg_no) else {
            return fail(codec::REASON_PAYLOAD_DECODE_ERROR);
        };
        let kind = match s.channel_type {
            1 => ConversationKind::Direct,
            2 => ConversationKind::Group,
            _ => return fail(codec::REASON_CHANNEL_NOT_FOUND),
        };
        let channel = Channel {
            id: s.channel_id.trim().to_owned(),
            kind,
        };
        match self
            .state
            .service
            .send_to_channel(self.user, channel, new)
            .await
        {
            Ok(out) => {
                let m = &out.message;
                if out.created {
                    if self.own_sent.len() >= OWN_SENT {
                        self.own_sent.pop_front();
                    }
                    self.own_sent.push_back(m.event_seq);
                }
                Sendack {
                    message_id: m.event_seq,
                    client_seq: s.client_seq,
                    message_seq: u32::try_from(m.msg_seq).unwrap_or(u32::MAX),
                    reason: codec::REASON_SUCCESS,
                }
            }
            Err(e) => fail(match e.code {
                ErrorCode::NotFound => codec::REASON_CHANNEL_NOT_FOUND,
                ErrorCode::Forbidden
                | ErrorCode::NotParticipant
                | ErrorCode::NotSender
                | ErrorCode::Blocked => codec::REASON_NOT_ALLOWED,
                ErrorCode::InvalidRequest
                | ErrorCode::InvalidParam
                | ErrorCode::IdempotencyKeyReused
                | ErrorCode::PayloadTooLarge => codec::REASON_PAYLOAD_DECODE_ERROR,
                _ => codec::REASON_SYSTEM_ERROR,
            }),
        }
    }

    /// Queues the packet of one delivery from the hub (the caller flushes).
    async fn deliver(&mut self, wire: &mut Wire, sub: &Subscription, d: Option<Delivery>) -> Flow {
        let d = match d {
            Some(Delivery::Event(d)) => d,
            // Typing and presence frames have no packet in this protocol.
            Some(Delivery::Ephemeral(_)) => return Flow::Go,
            None if sub.lagged() => return Flow::Close(CLOSE_LAGGING, "lagging"),
            None if sub.revoked() => return Flow::Kick("session ended"),
            None => return Flow::Close(1001, "going away"),
        };
        if !d.event.event_kind().is_some_and(has_packet) {
            return Flow::Go;
        }
        let Some(EventData::MessageNew(body)) = d.typed() else {
            return Flow::Go;
        };
        if let Some(i) = self.own_sent.iter().position(|s| *s == d.event.seq) {
            self.own_sent.remove(i);
            return Flow::Go;
        }
        let conv = &body.conversation_id;
        if !self.channels.contains_key(conv) && !self.load_channel_name(conv).await {
            return Flow::Go;
        }
        let Some(name) = self.channels.get(conv) else {
            return Flow::Go;
        };
        // A person channel is named by the other member, so the recipient sees the sender's
        // uid and the sender's other devices the recipient's.
        let channel_id = match name.kind {
            ConversationKind::Direct => name.peer.as_deref().unwrap_or_default(),
            ConversationKind::Group => conv.as_str(),
        };
        let channel_type = render::channel_type(name.kind) as u8;
        // Made once for every connection; each encrypts it with its own key.
        let shared = d.shared::<SharedRecv>();
        let template = shared.0.get_or_init(|| {
            let m = message_of(&d.event, body.clone());
            let plain = render::payload(&m).to_string();
            RecvTemplate::new(&m, plain, &render::client_msg_no(&m))
                .inspect_err(|e| tracing::warn!(?e, "WuKongIM RECV could not be encoded"))
                .ok()
        });
        let Some(template) = template else {
            return Flow::Go;
        };
        let packet =
            match template.encode_for(&self.cipher, &self.user.id, channel_id, channel_type) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(?e, "WuKongIM RECV could not be encoded");
                    return Flow::Go;
                }
            };
        if wire.feed(packet).await {
            Flow::Go
        } else {
            Flow::Stop
        }
    }

    /// Looks up and caches how this reader names a conversation; false when it cannot see it.
    async fn load_channel_name(&mut self, conv: &str) -> bool {
        let Ok((kind, peer)) = Box::pin(self.state.service.channel_of(self.user, conv)).await
        else {
            return false;
        };
        let name = ChannelName {
            kind,
            peer: peer.or_else(|| (kind == ConversationKind::Direct).then(|| self.user.id.clone())),
        };
        if self.channels.len() >= CHANNEL_CACHE {
            self.channels.clear();
        }
        self.channels.insert(conv.to_owned(), name);
        true
    }
}

/// Whether an event of this kind has a packet here: only a new message does (clients learn
/// edits, deletions, reactions and reads through REST sync). Exhaustive, so that a new kind is
/// decided here.
fn has_packet(kind: EventKind) -> bool {
    match kind {
        EventKind::MessageNew => true,
        EventKind::MessageEdit
        | EventKind::MessageDelete
        | EventKind::MessageReaction
        | EventKind::MessageHide
        | EventKind::MessageRead
        | EventKind::ConversationCreate
        | EventKind::ConversationUpdate
        | EventKind::ConversationArchive
        | EventKind::ConversationUnarchive
        | EventKind::ConversationRead
        | EventKind::ConversationSettings
        | EventKind::ConversationExtra
        | EventKind::ConversationHide
        | EventKind::ParticipantAdd
        | EventKind::ParticipantRemove => false,
    }
}

/// The RECV of a new message, as far as it is the same for every connection that receives it
/// (`None` when it cannot be encoded).
#[derive(Default)]
struct SharedRecv(std::sync::OnceLock<Option<RecvTemplate>>);

/// The stored message of a `message.new`, as the TangSengDaoDao renderers take it.
fn message_of(e: &Event, b: MessageBody) -> Message {
    Message {
        id: b.id,
        conversation_id: b.conversation_id,
        msg_seq: b.seq,
        event_seq: e.seq,
        sender_id: b.sender_id,
        kind: b.kind,
        content: b.content,
        metadata: b.metadata,
        parent_id: b.parent_id,
        quoted_id: b.quoted_message_id,
        created_at: parse_rfc3339_ms(&b.created_at).unwrap_or(e.at),
        updated_at: parse_rfc3339_ms(&b.updated_at).unwrap_or(e.at),
        edited_at: None,
        edited_by: None,
        deleted_at: None,
        revoked: false,
        reply_count: 0,
        last_reply_at: None,
        version: e.seq,
    }
}

/// Epoch milliseconds of a UTC time as events carry it, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss, ms) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (the civil-from-days inverse).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
}

/// A SEND's decrypted payload as a new message, as `POST /v1/message/send` takes it: a JSON
/// object with an integer `type`, stored whole; text needs non-empty `content`.
fn new_message(plain: &[u8], client_msg_no: &str) -> Option<NewMessage> {
    let Ok(Value::Object(payload)) = serde_json::from_slice::<Value>(plain) else {
        return None;
    };
    let content_type = payload.get("type").and_then(Value::as_i64)?;
    let content = match payload.get("content") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(_) => return None,
    };
    if content_type == 1 && content.trim().is_empty() {
        return None;
    }
    Some(NewMessage {
        content,
        kind: Some(render::native_kind(content_type).to_owned()),
        metadata: Some(render::posted_metadata(payload)),
        idempotency_key: Some(client_msg_no.trim().to_owned()).filter(|k| !k.is_empty()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339_ms;

    #[test]
    fn event_times_parse_back() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2024-05-01T10:00:00.123Z"),
            Some(1_714_557_600_123)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T23:59:59.999Z"),
            Some(951_868_799_999)
        );
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T10:00:00.123Z",
            "2024-05-01T10:00:00+123",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }
}
