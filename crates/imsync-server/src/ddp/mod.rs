//! Rocket.Chat's realtime API: Meteor's DDP over `GET /websocket` (docs/ddp.md), for the bots,
//! SDKs and apps that take live messages this way rather than over REST.
//!
//! A connection starts anonymous: `connect`, then a `login` method (password, SHA-256 digest or
//! `resume` with any face's token). Logged in, it holds one hub subscription for its user, opened
//! with the session's key, so it ends when the session does, like `/ws`; the hub only offers a
//! user the events the native feed would show them, and each DDP subscription picks and renders
//! its share of them. Frames are handled in the order they arrive: a client may send `login`
//! right after `connect` without waiting for `connected`.
//!
//! Limits are `/ws`'s: frames no larger than a request body, a connection closed after the idle
//! timeout without a frame from the client (the server pings it halfway through), a consumer that
//! falls behind closed with 4008 to reconnect, and a session that ends closed with 4001.

mod methods;
mod protocol;
mod subscriptions;

use crate::app::AppState;
use crate::metrics::{OpenConnection, Protocol};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use imsync_core::model::User;
use imsync_service::hub::{Delivery, SessionKey, Subscription};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use subscriptions::Streams;
use tokio::time::Instant;

pub const CLOSE_UNAUTHORIZED: u16 = 4001;
pub const CLOSE_LAGGING: u16 = 4008;
pub const CLOSE_IDLE: u16 = 4000;

/// Bytes read from the socket at a time, and the read buffer's size while frames are small.
const READ_BUFFER: usize = 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/websocket", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return crate::rocketchat::error::RcError::plain(format!(
                "This endpoint takes a WebSocket upgrade: {}",
                rejection.body_text()
            ))
            .into_response()
        }
    };
    let max_message = state.config.max_body_bytes;
    // The read buffer is allocated, and zeroed up to its capacity, for every connection, and
    // stays that large while the connection idles. A DDP client's frames (method calls,
    // subscriptions, pongs) are a few hundred bytes; a larger one grows the buffer to its size
    // and is read in several reads.
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| run(socket, state))
}

/// A logged-in connection's user and session.
pub(crate) struct Login {
    pub user: User,
    pub token: String,
    pub key: SessionKey,
}

/// One connection's state.
pub(crate) struct Conn {
    pub state: AppState,
    pub connected: bool,
    pub login: Option<Login>,
    pub hub: Option<Subscription>,
    pub streams: Streams,
    pub out: Out,
}

/// A connection's frames to write, in order. A frame that many connections send (a room's new
/// message) is one buffer that they share.
#[derive(Default)]
pub(crate) struct Out(Vec<Utf8Bytes>);

impl Out {
    pub(crate) fn push(&mut self, frame: impl Into<Utf8Bytes>) {
        self.0.push(frame.into());
    }
}

impl Conn {
    /// Logs the connection in as `login`'s user, or as another user: the subscriptions of the
    /// previous user end, a new hub subscription starts.
    pub(crate) fn set_login(&mut self, login: Option<Login>) {
        self.hub = None;
        for id in self.streams.clear() {
            self.out.push(protocol::nosub(&id, None));
        }
        if let Some(l) = &login {
            let (sub, _) = self
                .state
                .service
                .hub()
                .subscribe(&l.user.id, Some(l.key.clone()));
            self.hub = Some(sub);
        }
        self.login = login;
    }
}

/// Boxed: it runs once, at the end, and its state would otherwise sit in every connection's
/// task.
fn close<'a>(
    socket: &'a mut WebSocket,
    code: u16,
    reason: &'static str,
) -> Pin<Box<impl Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            })))
            .await;
    })
}

async fn flush(socket: &mut WebSocket, conn: &mut Conn) -> bool {
    for frame in conn.out.0.drain(..) {
        if socket.send(Message::Text(frame)).await.is_err() {
            return false;
        }
    }
    true
}

/// The hub's next delivery; never, before login.
async fn next_delivery(hub: &mut Option<Subscription>) -> Option<Delivery> {
    match hub {
        Some(s) => s.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The close frame for a client's protocol failure; `None` when the connection itself failed
/// and no frame would get through.
fn failure_close(e: axum::Error) -> Option<(u16, &'static str)> {
    use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
    let e = e.into_inner().downcast::<WsError>().ok()?;
    match *e {
        WsError::Capacity(_) => Some((1009, "message too big")),
        WsError::Utf8(_) => Some((1007, "invalid UTF-8 in a text message")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some((1002, "protocol error")),
        _ => None,
    }
}

async fn run(mut socket: WebSocket, state: AppState) {
    let _running = state.service.hub().track();
    let _open = OpenConnection::new(Protocol::Ddp);
    let idle = state.config.ws_idle_timeout;
    let mut conn = Conn {
        state,
        connected: false,
        login: None,
        hub: None,
        streams: Streams::default(),
        out: Out::default(),
    };
    let mut last_heard = Instant::now();
    let mut pinged = false;
    let timer = tokio::time::sleep(idle / 2);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            biased;
            d = next_delivery(&mut conn.hub) => {
                match d {
                    Some(Delivery::Event(d)) => {
                        // Boxed like the client's frames below: rendering an event awaits the
                        // store, and that state would otherwise sit in every idle connection.
                        if !subscriptions::on_event_now(&mut conn, &d) {
                            Box::pin(subscriptions::on_event(&mut conn, &d)).await;
                        }
                    }
                    Some(Delivery::Ephemeral(_)) => {}
                    None => {
                        let sub = conn.hub.take();
                        let (code, reason) = match sub {
                            Some(s) if s.lagged() => (CLOSE_LAGGING, "lagging"),
                            Some(s) if s.revoked() => (CLOSE_UNAUTHORIZED, "session ended"),
                            _ => (1001, "going away"),
                        };
                        flush(&mut socket, &mut conn).await;
                        close(&mut socket, code, reason).await;
                        break;
                    }
                }
            }
            m = socket.recv() => {
                match m {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = Instant::now();
                        pinged = false;
                        // Boxed: the methods' state would otherwise sit in every idle
                        // connection's task, whose size is that of its largest await.
                        Box::pin(handle_text(&mut conn, text.as_str())).await;
                    }
                    Some(Ok(Message::Binary(_))) => {
                        last_heard = Instant::now();
                        conn.out.push(protocol::error("Bad request", None));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        last_heard = Instant::now();
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        if let Some((code, reason)) = failure_close(e) {
                            close(&mut socket, code, reason).await;
                        }
                        break;
                    }
                }
            }
            _ = &mut timer => {
                let quiet = last_heard.elapsed();
                if quiet >= idle {
                    close(&mut socket, CLOSE_IDLE, "idle timeout").await;
                    break;
                }
                if quiet >= idle / 2 && !pinged {
                    // Meteor's heartbeat: a client that is still there answers with a pong.
                    pinged = true;
                    conn.out.push(protocol::ping());
                }
                let next = if pinged { last_heard + idle } else { last_heard + idle / 2 };
                timer.as_mut().reset(next.max(Instant::now() + std::time::Duration::from_millis(10)));
            }
        }
        if !flush(&mut socket, &mut conn).await {
            break;
        }
    }
}

/// One client frame: its answers go to `conn.out`.
async fn handle_text(conn: &mut Conn, text: &str) {
    let frame: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            conn.out.push(protocol::error("Bad request", None));
            return;
        }
    };
    let msg = frame.get("msg").and_then(Value::as_str).unwrap_or_default();
    if !conn.connected {
        if msg != "connect" {
            conn.out
                .push(protocol::error("Must connect first", Some(&frame)));
            return;
        }
        let version = frame.get("version").and_then(Value::as_str);
        if version.is_some_and(|v| protocol::VERSIONS.contains(&v)) {
            conn.connected = true;
            conn.out
                .push(protocol::connected(&imsync_core::ids::new_id()));
        } else {
            conn.out.push(protocol::failed());
        }
        return;
    }
    match msg {
        "ping" => conn.out.push(protocol::pong(frame.get("id"))),
        "pong" => {}
        "method" => methods::call(conn, &frame).await,
        "sub" => subscriptions::sub(conn, &frame).await,
        "unsub" => subscriptions::unsub(conn, &frame),
        "connect" => conn
            .out
            .push(protocol::error("Already connected", Some(&frame))),
        _ => conn.out.push(protocol::error("Bad request", Some(&frame))),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    /// The size of the future that a function of two arguments returns, without calling it.
    fn future_size<A, B, F: Future>(_: impl FnOnce(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// An idle connection's task is as large as the largest await of its loop: what a rare
    /// frame or event needs must be boxed, or every connection carries it (a debug build's
    /// layout, which is larger than a release build's).
    #[test]
    fn an_idle_connection_task_stays_small() {
        let size = future_size(super::run);
        assert!(size <= 2048, "a DDP connection's task takes {size} bytes");
    }
}
