//! WebSocket clients of `GET /ws?token=`, and send → receive timing.
//!
//! A timed message carries its send time in its content (`stamp`): microseconds since this
//! process's epoch, and a one-character origin (e.g. the node it was sent through). A listener
//! finds the stamp in each `message.new` frame with two substring searches (no JSON parsing, so
//! a thousand listeners stay cheap) and keeps `receive time - send time`.

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Microseconds since this process's timing epoch.
pub fn now_us() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

const MARK: &str = "~bt~";
const NEW_MESSAGE: &str = "\"type\":\"message.new\"";

/// Message content stamped with the send time and `origin`, then `rest`.
pub fn stamp(origin: char, rest: &str) -> String {
    format!("{MARK}{:016}{origin}~{rest}", now_us())
}

/// The send time and origin of a stamped `message.new` frame.
pub fn parse_stamp(frame: &str) -> Option<(u64, char)> {
    if !frame.contains(NEW_MESSAGE) {
        return None;
    }
    find_stamp(frame)
}

/// The send time and origin of the first stamp anywhere in `text`.
pub fn find_stamp(text: &str) -> Option<(u64, char)> {
    let i = text.find(MARK)? + MARK.len();
    let us = text.get(i..i + 16)?.parse().ok()?;
    let origin = text.get(i + 16..)?.chars().next()?;
    Some((us, origin))
}

/// `ws://HOST/ws?token=T` for an `http://HOST` base.
pub fn ws_url(base: &str, token: &str) -> String {
    ws_path(base, &format!("/ws?token={token}"))
}

/// `ws://HOST<path>` for an `http://HOST` base.
pub fn ws_path(base: &str, path: &str) -> String {
    let host = base
        .trim_end_matches('/')
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    format!("ws://{host}{path}")
}

/// Opens a WebSocket at `url`.
pub async fn open(url: &str) -> Result<Ws> {
    // The default 128 KiB read buffer is zero-filled before every read: with a thousand
    // listeners that alone would take a core from the server being measured. Frames are small.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .context("WebSocket handshake")?;
    Ok(ws)
}

/// Opens `/ws` with `token` and waits (at most 30 s) for the `authenticated` frame.
pub async fn connect(base: &str, token: &str) -> Result<Ws> {
    let mut ws = open(&ws_url(base, token)).await?;
    let first = tokio::time::timeout(Duration::from_secs(30), ws.next())
        .await
        .context("no frame within 30 s of the handshake")?;
    match first {
        Some(Ok(Message::Text(t))) if t.as_str().contains("\"type\":\"authenticated\"") => Ok(ws),
        other => bail!("expected an authenticated frame first, got {other:?}"),
    }
}

/// Counters shared by every listener of a scenario.
#[derive(Default)]
pub struct Tally {
    /// Stamped `message.new` frames received.
    pub delivered: AtomicU64,
    /// Every other frame (presence, conversation updates, ...).
    pub other: AtomicU64,
    /// Connections the server closed (or that failed) before the scenario ended.
    pub closed: AtomicU64,
    /// Deliveries the client refused (see [`Reading::Rejected`]).
    pub rejected: AtomicU64,
    /// `now_us` of the latest stamped delivery.
    pub last_delivery_us: AtomicU64,
}

/// What one listener heard.
#[derive(Debug, Default)]
pub struct Heard {
    /// `(origin, send → receive)` per stamped delivery.
    pub latency: Vec<(char, Duration)>,
    /// Why the connection ended before the stop signal, if it did.
    pub closed: Option<String>,
}

/// What a listener makes of one message from the server.
pub enum Reading {
    /// A stamped delivery: its send time (`now_us`) and origin.
    Timed(u64, char),
    /// Any other frame (presence, conversation updates, ...).
    Other,
    /// A delivery the client refused (a failed integrity check, a payload it cannot decrypt).
    Rejected,
    /// A frame the protocol wants answered (e.g. a DDP ping): the answer.
    Answer(Message),
    /// Nothing for the protocol (WebSocket pings and pongs).
    Ignored,
}

/// `/ws`'s frames: a stamped `message.new` is timed.
pub fn native_reading(m: Message) -> Reading {
    match m {
        Message::Text(t) => match parse_stamp(t.as_str()) {
            Some((at, origin)) => Reading::Timed(at, origin),
            None => Reading::Other,
        },
        _ => Reading::Ignored,
    }
}

/// Reads `/ws` frames until `stop` turns true or the connection ends; times stamped messages.
pub async fn listen(ws: Ws, stop: tokio::sync::watch::Receiver<bool>, tally: Arc<Tally>) -> Heard {
    listen_with(ws, stop, tally, native_reading).await
}

/// Reads frames until `stop` turns true or the connection ends; `read` says what each is.
pub async fn listen_with<F>(
    mut ws: Ws,
    mut stop: tokio::sync::watch::Receiver<bool>,
    tally: Arc<Tally>,
    mut read: F,
) -> Heard
where
    F: FnMut(Message) -> Reading,
{
    let mut heard = Heard::default();
    loop {
        let answer = tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Close(frame))) => {
                    heard.closed = Some(format!("closed by the server: {frame:?}"));
                    break;
                }
                Some(Ok(m)) => match read(m) {
                    Reading::Timed(at, origin) => {
                        let now = now_us();
                        heard
                            .latency
                            .push((origin, Duration::from_micros(now.saturating_sub(at))));
                        tally.delivered.fetch_add(1, Ordering::Relaxed);
                        tally.last_delivery_us.fetch_max(now, Ordering::Relaxed);
                        None
                    }
                    Reading::Other => {
                        tally.other.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    Reading::Rejected => {
                        tally.rejected.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    Reading::Answer(reply) => {
                        tally.other.fetch_add(1, Ordering::Relaxed);
                        Some(reply)
                    }
                    Reading::Ignored => None,
                },
                Some(Err(e)) => {
                    heard.closed = Some(format!("error: {e}"));
                    break;
                }
                None => {
                    heard.closed = Some("ended".to_owned());
                    break;
                }
            },
            r = stop.wait_for(|s| *s) => {
                let _ = r;
                break;
            }
        };
        // Answered outside the select: the stop signal's borrow must not live across a send.
        if let Some(reply) = answer {
            if let Err(e) = ws.send(reply).await {
                heard.closed = Some(format!("error: {e}"));
                break;
            }
        }
    }
    if heard.closed.is_some() {
        tally.closed.fetch_add(1, Ordering::Relaxed);
    } else {
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
    heard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_through_a_frame() {
        let content = stamp('B', "hello");
        let frame = format!(
            r#"{{"payload":{{"content":"{content}","type":"text"}},"seq":7,"type":"message.new"}}"#
        );
        let (us, origin) = parse_stamp(&frame).unwrap();
        assert_eq!(origin, 'B');
        assert!(us <= now_us());
        let other = frame.replace("message.new", "conversation.updated");
        assert_eq!(parse_stamp(&other), None);
        assert_eq!(
            ws_url("http://127.0.0.1:9/", "t"),
            "ws://127.0.0.1:9/ws?token=t"
        );
    }
}
