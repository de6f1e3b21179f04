//! The WuKongIM socket on a plain TCP listener (`--wukongim-tcp-listen`), what native
//! TangSengDaoDao apps use: the same connection as the WebSocket path, packets back to back on
//! the stream.
//!
//! The limits are those of the HTTP listener: at most `max_connections` at once (more wait in
//! the listen backlog), the CONNECT deadline and the idle timeout of the connection itself, the
//! slow-consumer close, and on shutdown the connections end (the hub closes their
//! subscriptions) and any still open after the shutdown grace are dropped. A client that stops
//! reading holds its connection for at most the idle timeout: a packet not written by then ends
//! it.

use super::socket;
use super::wire::{TcpWire, Wire};
use crate::app::AppState;
use crate::metrics::{OpenConnection, Protocol};
use crate::serve::ServeConfig;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Serves WuKongIM connections on `listener` until `shutdown` completes, then gives the open
/// ones the shutdown grace to end and drops the rest.
pub async fn serve_tcp<F>(
    listener: TcpListener,
    state: AppState,
    config: ServeConfig,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let cap = config
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(cap));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Finished connections are reaped as we go, so the set holds only the open ones.
        while conns.try_join_next().is_some() {}
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let max = state.config.max_body_bytes;
        let write_timeout = state.config.ws_idle_timeout;
        conns.spawn(async move {
            let _slot = slot;
            let _running = state.service.hub().track();
            let _open = OpenConnection::new(Protocol::WukongimTcp);
            let wire = Wire::Tcp(TcpWire::new(stream, max, write_timeout));
            socket::connect(wire, state).await;
        });
    }
    drop(listener);
    // The hub's subscriptions are closed by the owner of the shutdown: connections end with
    // their pending writes done, or are dropped at the end of the grace.
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(config.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            open = conns.len(),
            "shutdown grace over: dropping the WuKongIM TCP connections still open"
        );
        conns.abort_all();
    }
    Ok(())
}

async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "WuKongIM TCP accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
