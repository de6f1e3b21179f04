//! The native `/ws` from a test's side: open one as a token's owner, and wait for the server to
//! close it.

use futures_util::StreamExt;
use std::fmt::Display;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/ws` on `addr` (`host:port`) with `token`, and checks its first frame, which says who
/// the connection is.
pub async fn open(addr: impl Display, token: &str, within: Duration) -> Ws {
    let url = format!("ws://{addr}/ws?token={token}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let first = tokio::time::timeout(within, ws.next())
        .await
        .expect("authenticated frame")
        .expect("frame")
        .expect("frame");
    assert!(
        first.to_text().unwrap().contains("authenticated"),
        "{first}"
    );
    ws
}

/// Reads frames until the server closes, and answers the close code; fails if the socket is
/// still open after `within`, or ends without a close frame.
pub async fn closed_with(ws: &mut Ws, within: Duration) -> u16 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the socket outlived its session");
        match next {
            Some(Ok(Message::Close(frame))) => return frame.map_or(1005, |f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("the socket failed instead of closing: {e}"),
            None => panic!("the socket ended with no close frame"),
        }
    }
}
