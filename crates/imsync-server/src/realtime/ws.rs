//! `GET /ws?token=&since=`: the WebSocket of the Prismer SDK's realtime client.
//!
//! A client that breaks the protocol gets a close frame that says how (1009 message too big,
//! 1002 protocol error, 1007 invalid UTF-8) before the connection drops. A message must arrive
//! whole within the idle timeout: a control frame in the middle of a fragmented message does not
//! count as activity, or a client could hold a message half-sent forever by pinging.

use super::{announce_presence, authenticated_frame, frames, Backlog, RealtimeQuery};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryParams;
use crate::metrics::{OpenConnection, Protocol};
use crate::serve::ReadCounter;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::response::Response;
use futures_util::FutureExt;
use imsync_core::model::User;
use imsync_core::Seq;
use imsync_service::hub::{Delivery, SessionKey};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::Instant;

pub const CLOSE_UNAUTHORIZED: u16 = 4001;
pub const CLOSE_LAGGING: u16 = 4008;
pub const CLOSE_IDLE: u16 = 4000;
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_INVALID_DATA: u16 = 1007;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;

pub async fn upgrade(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<RealtimeQuery>,
    reads: Option<Extension<ReadCounter>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ws = ws.map_err(|rejection| {
        ApiError(imsync_core::Error::param(format!(
            "This endpoint takes a WebSocket upgrade: {}",
            rejection.body_text()
        )))
    })?;
    let reads = reads.map(|Extension(r)| r);
    let since = q.since()?;
    let token = q.token.unwrap_or_default();
    let max_message = state.config.max_body_bytes;
    // Idle connections must stay cheap: small buffers that grow only while frames are large,
    // frames written out as they come, and client messages bounded like request bodies. The
    // read buffer is allocated and zeroed to its size for every connection, and a client of
    // `/ws` sends little more than pings: 1 KiB, which a larger frame grows while it is read.
    let ws = ws
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message);
    Ok(ws.on_upgrade(move |socket| async move {
        let _open = OpenConnection::new(Protocol::NativeWs);
        let (user, session) = match state.service.authenticate_session(&token).await {
            Ok(u) => u,
            Err(_) => {
                close(socket, CLOSE_UNAUTHORIZED, "invalid or expired token").await;
                return;
            }
        };
        run(socket, state, user, session, since, reads).await;
    }))
}

/// Boxed: it runs once, at the end, and its state (the socket with it) would otherwise sit in
/// every connection's task.
fn close(
    mut socket: WebSocket,
    code: u16,
    reason: &'static str,
) -> Pin<Box<impl Future<Output = ()> + Send>> {
    Box::pin(async move {
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            })))
            .await;
    })
}

async fn send(socket: &mut WebSocket, text: &str) -> bool {
    socket.send(Message::Text(text.into())).await.is_ok()
}

async fn run(
    mut socket: WebSocket,
    state: AppState,
    user: User,
    session: SessionKey,
    since: Option<Seq>,
    reads: Option<ReadCounter>,
) {
    let service = state.service.clone();
    let _running = service.hub().track();
    let (mut sub, first) = service.hub().subscribe(&user.id, Some(session));
    if !send(&mut socket, &authenticated_frame(&user)).await {
        return;
    }
    // What runs once or rarely is boxed: a connection's task is as large as its largest await,
    // and an idle connection should carry only what waiting needs.
    if first {
        Box::pin(announce_presence(&service, &user, "online")).await;
    }
    let with_sync = since.is_some();
    let mut last_sent = since.unwrap_or(0);
    if let Some(since) = since {
        match Box::pin(replay(&mut socket, &service, &user, since)).await {
            Replay::Done(last) => last_sent = last.unwrap_or(since),
            Replay::Gone => return,
            Replay::Failed => {
                close(socket, 1011, "backlog unavailable").await;
                return;
            }
        }
    }
    let idle = state.config.ws_idle_timeout;
    // One timer for the connection's life, moved only when the client shows activity: a timer
    // made and dropped per delivered frame costs more than the frame's own write.
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let mut partial = Partial::new(reads);
    // Deliveries come first, so that a wake-up for a frame does not also try to read the socket;
    // every DELIVERY_STREAK frames the socket and the idle timer are looked at anyway, so a
    // stream of deliveries cannot starve the client's frames.
    const DELIVERY_STREAK: u32 = 32;
    let mut streak = 0u32;
    loop {
        let incoming = if streak >= DELIVERY_STREAK {
            streak = 0;
            if Instant::now() >= idle_timer.deadline() {
                let (code, reason) = partial.idle_close();
                close(socket, code, reason).await;
                break;
            }
            socket.recv().now_or_never()
        } else {
            tokio::select! {
                biased;
                d = sub.rx.recv() => {
                    streak += 1;
                    match deliver(&mut socket, &sub, d, with_sync, &mut last_sent).await {
                        Flow::Go => continue,
                        Flow::Stop => break,
                        Flow::Close(code, reason) => {
                            close(socket, code, reason).await;
                            break;
                        }
                    }
                }
                m = socket.recv() => Some(m),
                _ = &mut idle_timer => {
                    let (code, reason) = partial.idle_close();
                    close(socket, code, reason).await;
                    break;
                }
            }
        };
        let Some(m) = incoming else { continue };
        streak = 0;
        match m {
            Some(Ok(Message::Text(text))) => {
                partial.completed();
                idle_timer.as_mut().reset(Instant::now() + idle);
                if let Some(reply) =
                    Box::pin(handle_client_frame(&state, &user, text.as_str())).await
                {
                    if !send(&mut socket, &reply).await {
                        break;
                    }
                }
            }
            Some(Ok(Message::Binary(_))) => {
                partial.completed();
                idle_timer.as_mut().reset(Instant::now() + idle);
            }
            Some(Ok(Message::Ping(p) | Message::Pong(p))) => {
                if !partial.control(p.len()) {
                    idle_timer.as_mut().reset(Instant::now() + idle);
                }
            }
            Some(Ok(Message::Close(_))) | None => break,
            Some(Err(e)) => {
                if let Some((code, reason)) = failure_close(e) {
                    close(socket, code, reason).await;
                }
                break;
            }
        }
    }
    let user_id = user.id.clone();
    drop(sub);
    if !service.hub().presence(&user_id).0 {
        Box::pin(announce_presence(&service, &user, "offline")).await;
    }
}

/// How the replay of the backlog ended.
enum Replay {
    /// Sent; the last event's seq, if there was any.
    Done(Option<Seq>),
    /// The connection went away.
    Gone,
    /// The store failed; the client was told.
    Failed,
}

/// Sends the caller's events after `since`, page by page.
async fn replay(
    socket: &mut WebSocket,
    service: &imsync_service::Service,
    user: &User,
    since: Seq,
) -> Replay {
    let mut backlog = Backlog::after(service, user, since);
    let mut last = None;
    loop {
        match backlog.next_page().await {
            Ok(Some(events)) => {
                for e in &events {
                    if !send(socket, &frames::sync_frame(e)).await {
                        return Replay::Gone;
                    }
                    last = Some(e.seq);
                }
            }
            Ok(None) => return Replay::Done(last),
            Err(e) => {
                let frame = frames::error_frame(e.code.as_str(), &e.message, None);
                let _ = send(socket, &frame).await;
                return Replay::Failed;
            }
        }
    }
}

/// The close frame for a client's protocol failure; `None` when the connection itself failed
/// and no frame would get through.
fn failure_close(e: axum::Error) -> Option<(u16, &'static str)> {
    use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
    let e = e.into_inner().downcast::<WsError>().ok()?;
    match *e {
        WsError::Capacity(_) => Some((CLOSE_TOO_BIG, "message too big")),
        WsError::Utf8(_) => Some((CLOSE_INVALID_DATA, "invalid UTF-8 in a text message")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some((CLOSE_PROTOCOL, "protocol error")),
        _ => None,
    }
}

/// Whether the client is partway through a message. Fragments show only once their message is
/// whole, so this compares the bytes the connection read with those the messages seen so far
/// account for: everything up to the last data message, plus the control frames since, whose
/// size is exact (a client's frames are masked: 2 header bytes, a 4-byte key, and a payload of
/// at most 125 bytes). Without a counter (a server loop other than ours) it never says so.
struct Partial {
    reads: Option<ReadCounter>,
    accounted: u64,
}

impl Partial {
    fn new(reads: Option<ReadCounter>) -> Self {
        let accounted = reads.as_ref().map_or(0, ReadCounter::bytes);
        Partial { reads, accounted }
    }

    /// A data message arrived whole: whatever was read so far belongs to it, or to the next.
    fn completed(&mut self) {
        if let Some(r) = &self.reads {
            self.accounted = r.bytes();
        }
    }

    /// A control frame with this payload arrived; answers whether a message is still partway.
    fn control(&mut self, payload: usize) -> bool {
        self.accounted += 6 + payload as u64;
        self.pending()
    }

    fn pending(&self) -> bool {
        self.reads
            .as_ref()
            .is_some_and(|r| r.bytes() > self.accounted)
    }

    /// The close for an idle timeout: a message left unfinished is a policy violation.
    fn idle_close(&self) -> (u16, &'static str) {
        if self.pending() {
            (CLOSE_POLICY, "message not finished in time")
        } else {
            (CLOSE_IDLE, "idle timeout")
        }
    }
}

enum Flow {
    Go,
    Stop,
    /// The hub ended the subscription: close with this code and reason.
    Close(u16, &'static str),
}

/// Writes one delivery from the hub; `Stop` when the connection is done for.
async fn deliver(
    socket: &mut WebSocket,
    sub: &imsync_service::hub::Subscription,
    d: Option<Delivery>,
    with_sync: bool,
    last_sent: &mut Seq,
) -> Flow {
    match d {
        Some(Delivery::Event(d)) => {
            if d.event.seq <= *last_sent {
                return Flow::Go;
            }
            *last_sent = d.event.seq;
            let rendered = frames::render(&d);
            if !send(socket, &rendered[0]).await {
                return Flow::Stop;
            }
            if with_sync && !send(socket, &rendered[1]).await {
                return Flow::Stop;
            }
            Flow::Go
        }
        Some(Delivery::Ephemeral(frame)) => {
            if send(socket, &frame.to_string()).await {
                Flow::Go
            } else {
                Flow::Stop
            }
        }
        None if sub.lagged() => Flow::Close(CLOSE_LAGGING, "lagging"),
        None if sub.revoked() => Flow::Close(CLOSE_UNAUTHORIZED, "session ended"),
        None => Flow::Close(1001, "going away"),
    }
}

/// Handles one client frame; answers the frame to send back, if any.
async fn handle_client_frame(state: &AppState, user: &User, text: &str) -> Option<String> {
    let frame: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return Some(frames::error_frame(
                "INVALID_FRAME",
                "Frames must be JSON objects",
                None,
            ))
        }
    };
    let request_id = frame.get("requestId").cloned();
    let payload = frame.get("payload").cloned().unwrap_or(Value::Null);
    let kind = frame
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let service = &state.service;
    let conversation_id = payload
        .get("conversationId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let err = |e: imsync_core::Error| {
        Some(frames::error_frame(
            e.code.as_str(),
            &e.message,
            request_id.as_ref(),
        ))
    };
    match kind {
        "ping" => {
            let id = payload
                .get("requestId")
                .cloned()
                .or_else(|| request_id.clone())
                .unwrap_or(Value::Null);
            Some(
                json!({ "type": "pong", "payload": { "requestId": id }, "requestId": id })
                    .to_string(),
            )
        }
        "conversation.join" => {
            let Some(conv) = conversation_id else {
                return err(imsync_core::Error::invalid(
                    "payload.conversationId is required",
                ));
            };
            // Every participant is subscribed to all of their conversations already.
            match service.conversation(user, &conv).await {
                Ok(_) => None,
                Err(e) => err(e),
            }
        }
        "message.send" => {
            let Some(conv) = conversation_id else {
                return err(imsync_core::Error::invalid(
                    "payload.conversationId is required",
                ));
            };
            // The same mapping as the REST send routes, so a message is the same either way.
            let new = match crate::native::socket_send(payload) {
                Ok(new) => new,
                Err(e) => return err(e),
            };
            match service.send(user, &conv, new).await {
                Ok(outcome) => Some(
                    json!({
                        "type": "message.ack",
                        "payload": {
                            "conversationId": conv,
                            "message": imsync_service::payload::message(&outcome.message),
                            "duplicate": !outcome.created,
                        },
                        "requestId": request_id,
                    })
                    .to_string(),
                ),
                Err(e) => err(e),
            }
        }
        "typing.start" | "typing.stop" => {
            let Some(conv) = conversation_id else {
                return err(imsync_core::Error::invalid(
                    "payload.conversationId is required",
                ));
            };
            match service.conversation(user, &conv).await {
                Ok(c) => {
                    let others: Vec<String> = c
                        .members
                        .iter()
                        .map(|m| m.user.id.clone())
                        .filter(|id| *id != user.id)
                        .collect();
                    let frame = json!({
                        "type": "typing.indicator",
                        "payload": { "conversationId": conv, "userId": user.id, "isTyping": kind == "typing.start" },
                        "timestamp": imsync_core::time::now_ms(),
                    });
                    service
                        .hub()
                        .deliver(&others, &Delivery::Ephemeral(std::sync::Arc::new(frame)));
                    None
                }
                Err(e) => err(e),
            }
        }
        "presence.update" => {
            let status = payload
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("online");
            if !matches!(status, "online" | "away" | "busy" | "offline") {
                return err(imsync_core::Error::invalid(
                    "status must be online, away, busy or offline",
                ));
            }
            super::announce_presence(service, user, status).await;
            None
        }
        "" => Some(frames::error_frame(
            "INVALID_FRAME",
            "Frames need a type",
            request_id.as_ref(),
        )),
        other => Some(frames::error_frame(
            "UNKNOWN_TYPE",
            &format!("Unknown frame type {other:?}"),
            request_id.as_ref(),
        )),
    }
}

/// Idle timeout default: the SDK pings every 25 s.
pub fn default_idle_timeout() -> Duration {
    Duration::from_secs(120)
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    /// The size of the future that a function of six arguments returns, without calling it.
    fn future_size<A, B, C, D, E, G, F: Future>(_: impl FnOnce(A, B, C, D, E, G) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// An idle connection's task is as large as the largest await of its loop (a debug build's
    /// layout, which is larger than a release build's).
    #[test]
    fn an_idle_connection_task_stays_small() {
        let size = future_size(super::run);
        assert!(size <= 2304, "a /ws connection's task takes {size} bytes");
    }
}
