//! The two transports a WuKongIM connection runs over, behind one interface: a WebSocket (one
//! packet per binary message) and a plain TCP stream (packets back to back, cut by their
//! length). The connection logic in `socket.rs` sees whole packets and does not know which.
//!
//! Reading is cancellation-safe on both (the connection selects between the client and its hub
//! deliveries): the TCP side keeps what it has read of a packet in its own buffer.

use super::codec;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use bytes::BytesMut;
use futures_util::SinkExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// WebSocket close codes (a TCP stream just ends).
pub const CLOSE_IDLE: u16 = 4000;
pub const CLOSE_LAGGING: u16 = 4008;
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_UNSUPPORTED: u16 = 1003;
pub const CLOSE_TOO_BIG: u16 = 1009;

/// What a read gives.
pub enum Inbound {
    /// The bytes of one packet, not yet decoded.
    Packet(Bytes),
    /// A transport-level frame (a WebSocket ping or pong): nothing for the protocol.
    Nothing,
    /// Bytes that cannot be a packet (TCP framing: unknown type, a five-byte length, a length
    /// over the limit): the connection gets DISCONNECT.
    Malformed,
    /// The transport refuses what came (a text message, a message over the limit): close.
    Refuse(u16, &'static str),
    /// The peer is gone.
    Closed,
}

// One per connection, owned by its task and moved only into `close`: boxing the larger
// variant would add an allocation per connection and save nothing.
#[allow(clippy::large_enum_variant)]
pub enum Wire {
    Ws(WebSocket),
    Tcp(TcpWire),
}

impl Wire {
    pub async fn recv(&mut self) -> Inbound {
        match self {
            Wire::Ws(ws) => match ws.recv().await {
                Some(Ok(WsMessage::Binary(b))) => Inbound::Packet(b),
                Some(Ok(WsMessage::Text(_))) => {
                    Inbound::Refuse(CLOSE_UNSUPPORTED, "binary messages only")
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => Inbound::Nothing,
                Some(Ok(WsMessage::Close(_))) | None => Inbound::Closed,
                Some(Err(e)) => match too_big(e) {
                    true => Inbound::Refuse(CLOSE_TOO_BIG, "message too big"),
                    false => Inbound::Closed,
                },
            },
            Wire::Tcp(t) => t.recv().await,
        }
    }

    /// Sends one encoded packet; false when the peer is gone (or, on TCP, stopped reading).
    pub async fn send(&mut self, packet: Vec<u8>) -> bool {
        self.feed(packet).await && self.flush().await
    }

    /// Queues one encoded packet for the next [`Wire::flush`], which writes every packet
    /// queued since the last one at once (it may go out earlier when much is queued); false
    /// when the peer is gone.
    pub async fn feed(&mut self, packet: Vec<u8>) -> bool {
        match self {
            Wire::Ws(ws) => ws.feed(WsMessage::Binary(packet.into())).await.is_ok(),
            Wire::Tcp(t) => t.feed(packet).await,
        }
    }

    /// Writes what [`Wire::feed`] queued.
    pub async fn flush(&mut self) -> bool {
        match self {
            Wire::Ws(ws) => SinkExt::flush(ws).await.is_ok(),
            Wire::Tcp(t) => t.flush().await,
        }
    }

    /// Ends the connection: a close frame with `code` on a WebSocket, the end of the stream on
    /// TCP.
    pub async fn close(self, code: u16, reason: &'static str) {
        match self {
            Wire::Ws(mut ws) => {
                let _ = ws
                    .send(WsMessage::Close(Some(CloseFrame {
                        code,
                        reason: Utf8Bytes::from_static(reason),
                    })))
                    .await;
            }
            Wire::Tcp(mut t) => {
                let _ = tokio::time::timeout(t.write_timeout, t.stream.shutdown()).await;
            }
        }
    }
}

fn too_big(e: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::error::Error as WsError;
    e.into_inner()
        .downcast::<WsError>()
        .is_ok_and(|e| matches!(*e, WsError::Capacity(_)))
}

/// How much a TCP read asks for at a time: the buffer grows by this much only while a packet
/// is incomplete, so it never holds much more than the largest packet allowed.
const READ_CHUNK: usize = 4096;
/// Queued packets past this many bytes are written without waiting for the flush; the same
/// bound as the WebSocket's write buffer, so a busy connection keeps no more than this.
pub const WRITE_BATCH: usize = 8 * 1024;

/// A TCP stream cut into packets by [`codec::frame_len`].
pub struct TcpWire {
    stream: TcpStream,
    buf: BytesMut,
    /// Packets fed and not yet written.
    out: Vec<u8>,
    max: usize,
    /// A packet not written within this long means the client stopped reading: the
    /// connection ends (a WebSocket's would wait for the lagging close instead).
    write_timeout: Duration,
}

impl TcpWire {
    pub fn new(stream: TcpStream, max: usize, write_timeout: Duration) -> TcpWire {
        let _ = stream.set_nodelay(true);
        TcpWire {
            stream,
            buf: BytesMut::new(),
            out: Vec::new(),
            max,
            write_timeout,
        }
    }

    async fn recv(&mut self) -> Inbound {
        loop {
            match codec::frame_len(&self.buf, self.max) {
                Ok(Some(n)) => return Inbound::Packet(self.buf.split_to(n).freeze()),
                Ok(None) => {}
                Err(_) => return Inbound::Malformed,
            }
            self.buf.reserve(READ_CHUNK);
            // `read_buf` is cancellation-safe: bytes it read stay in `buf`.
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Inbound::Closed,
                Ok(_) => {}
            }
        }
    }

    async fn feed(&mut self, packet: Vec<u8>) -> bool {
        if self.out.is_empty() {
            self.out = packet;
        } else {
            self.out.extend_from_slice(&packet);
        }
        self.out.len() <= WRITE_BATCH || self.flush().await
    }

    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let written = matches!(
            tokio::time::timeout(self.write_timeout, self.stream.write_all(&self.out)).await,
            Ok(Ok(()))
        );
        self.out.clear();
        if self.out.capacity() > WRITE_BATCH * 2 {
            self.out = Vec::new();
        }
        written
    }
}
