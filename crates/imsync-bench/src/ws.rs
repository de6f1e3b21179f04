//! WebSocket clients of `GET /ws?token=`, and send → receive timing.
//!
//! A timed message carries its send time in its content (`stamp`): microseconds since this
//! process's epoch, and a one-character origin (e.g. the node it was sent through). A listener
//! finds the stamp in each `message.new` frame with two substring searches (no JSON parsing, so
//! a thousand listeners stay cheap) and keeps `receive time - send time`.

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
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
    let i = frame.find(MARK)? + MARK.len();
    let us = frame.get(i..i + 16)?.parse().ok()?;
    let origin = frame.get(i + 16..)?.chars().next()?;
    Some((us, origin))
}

/// `ws://HOST/ws?token=T` for an `http://HOST` base.
pub fn ws_url(base: &str, token: &str) -> String {
    let host = base
        .trim_end_matches('/')
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    format!("ws://{host}/ws?token={token}")
}

/// Opens `/ws` with `token` and waits (at most 30 s) for the `authenticated` frame.
pub async fn connect(base: &str, token: &str) -> Result<Ws> {
    // The default 128 KiB read buffer is zero-filled before every read: with a thousand
    // listeners that alone would take a core from the server being measured. Frames are small.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(ws_url(base, token), Some(config), true)
            .await
            .context("WebSocket handshake")?;
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

/// Reads frames until `stop` turns true or the connection ends; times stamped messages.
pub async fn listen(
    mut ws: Ws,
    mut stop: tokio::sync::watch::Receiver<bool>,
    tally: Arc<Tally>,
) -> Heard {
    let mut heard = Heard::default();
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let now = now_us();
                    match parse_stamp(t.as_str()) {
                        Some((at, origin)) => {
                            heard
                                .latency
                                .push((origin, Duration::from_micros(now.saturating_sub(at))));
                            tally.delivered.fetch_add(1, Ordering::Relaxed);
                            tally.last_delivery_us.fetch_max(now, Ordering::Relaxed);
                        }
                        None => {
                            tally.other.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    heard.closed = Some(format!("closed by the server: {frame:?}"));
                    break;
                }
                Some(Ok(_)) => {}
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
