//! The HTTP/1 server loop: accepts connections up to a cap, bounds how long a client may take to
//! send a request, and shuts down with a deadline. `axum::serve` has none of these, so a client
//! that connects and stays silent, trickles a request a byte at a time, or stops halfway through
//! a body held a connection (and a shutdown) for as long as it liked.
//!
//! Four clocks, each for one thing a client may be slow at:
//! - the header timeout runs from the first byte of a request (or from the accept, for the first
//!   request) until its head is complete; a byte now and then does not move it;
//! - the keep-alive timeout runs while a connection waits between requests;
//! - the body timeout runs from the head until the handler has read the whole body; on the
//!   upload routes (which take files far larger than any other body) it is a stall clock
//!   instead, restarted by every chunk that arrives (see [`BodyClock`]);
//! - the shutdown grace runs from the shutdown signal; connections still open at its end are
//!   dropped.
//!
//! hyper's own `header_read_timeout` starts when it begins waiting for a head, so it also bounds
//! the wait between keep-alive requests: the header and idle clocks are kept here instead, in the
//! connection's I/O, which sees every read. Nothing is timed while a handler runs or a response
//! streams (an SSE stream may last hours), nor once a connection is upgraded to a WebSocket,
//! which has its own idle timeout.
//!
//! A handler that leaves its request body unread would make hyper close the connection after
//! the response, without saying so in a `Connection: close`, when the body was not already
//! buffered: the client's next request on it then fails. The body the handlers get drains what
//! is left when they drop it, up to the body limit, so the connection stays reusable.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use futures_util::task::AtomicWaker;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// Limits of [`serve`].
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Time to send a request's head, from its first byte (from the accept for the first).
    pub header_timeout: Duration,
    /// Time to send a request's body once its head is in.
    pub body_timeout: Duration,
    /// Time a connection may wait for its next request.
    pub keepalive_timeout: Duration,
    /// Connections served at once (WebSockets included); more wait in the listen backlog.
    pub max_connections: usize,
    /// After the shutdown signal, time the open connections get to finish.
    pub shutdown_grace: Duration,
    /// The most of an unread request body drained to keep its connection (the body limit).
    pub max_body_bytes: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Where shutdown is; connections watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stop {
    Running,
    /// Finish the request in progress, take no more.
    Graceful,
    /// The grace is over: drop the connection.
    Now,
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the open connections finish
/// for up to the shutdown grace and drops the rest. Handlers see the client's address as
/// `ConnectInfo<SocketAddr>`. WebSockets outlive this function once upgraded (their owner closes
/// them), but count toward the connection cap while they last.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    config: ServeConfig,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let config = Arc::new(ServeConfig {
        max_connections: config
            .max_connections
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize)),
        ..config
    });
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    tokio::pin!(shutdown);
    loop {
        // A slot before the accept: at the cap, new connections wait in the kernel's backlog
        // rather than being accepted and dropped.
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        tokio::spawn(connection(
            stream,
            remote,
            slot,
            app.clone(),
            config.clone(),
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(Stop::Graceful);
    let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(config.shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        let open = config.max_connections - slots.available_permits();
        tracing::warn!(
            open,
            "shutdown grace over: dropping the connections still open"
        );
        let _ = stop_tx.send(Stop::Now);
    }
    Ok(())
}

async fn accept_failed(e: io::Error) {
    // The peer gave up between its SYN and the accept: nothing to do about it.
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    // Out of descriptors or memory: accepting again at once would spin on the same error.
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    slot: OwnedSemaphorePermit,
    app: Router,
    config: Arc<ServeConfig>,
    mut stop: watch::Receiver<Stop>,
) {
    let state = Arc::new(ConnState::default());
    let io = TokioIo::new(Watched::new(stream, state.clone(), &config, slot));
    let svc = hyper::service::service_fn(move |req| {
        handle(app.clone(), req, remote, state.clone(), config.clone())
    });
    // The clocks are in `Watched`: hyper's header timer would also cut idle keep-alives short.
    let conn = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return finished(r),
        _ = stop.wait_for(|s| *s >= Stop::Graceful) => {}
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        r = conn.as_mut() => finished(r),
        _ = stop.wait_for(|s| *s >= Stop::Now) => {}
    }
}

fn finished(r: hyper::Result<()>) {
    // Clients that vanish or time out end here; that is their business, not an error of ours.
    if let Err(e) = r {
        tracing::debug!(error = %e, "connection ended");
    }
}

async fn handle(
    app: Router,
    mut req: Request<Incoming>,
    remote: SocketAddr,
    state: Arc<ConnState>,
    config: Arc<ServeConfig>,
) -> Result<Response<Tracked>, std::convert::Infallible> {
    let busy = Busy::new(state.clone());
    req.extensions_mut().insert(ConnectInfo(remote));
    let clock = BodyClock::default();
    req.extensions_mut().insert(clock.clone());
    if req.headers().contains_key(axum::http::header::UPGRADE) {
        req.extensions_mut().insert(ReadCounter(state.clone()));
    }
    // A body declared over the limit is never drained, so its connection cannot carry another
    // request: the answer says so, and the client opens a new one instead of failing on this.
    let oversized = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .is_some_and(|n| n > config.max_body_bytes as u64);
    let req = req.map(|b| Body::new(TimedBody::new(b, &config, clock.clone())));
    let mut resp = match app.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    // A body cut off by its clock leaves the rest of it on the connection.
    if oversized || clock.0.timed_out.load(Ordering::Relaxed) {
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        state.upgraded.store(true, Ordering::Relaxed);
    }
    Ok(resp.map(|inner| Tracked { inner, _busy: busy }))
}

/// What a connection is doing, as its I/O needs to know to pick a clock.
#[derive(Default)]
struct ConnState {
    /// Requests between their head and the end of their response.
    in_flight: AtomicUsize,
    /// Requests so far: a request may come and go between two reads, unseen by `in_flight`.
    started: AtomicUsize,
    /// The connection is a WebSocket now: no HTTP clocks.
    upgraded: AtomicBool,
    /// The connection's task as its last read left it. hyper does not read again after a
    /// response when its last read found nothing, so the idle clock would never start: the end
    /// of a request wakes it.
    reader: AtomicWaker,
    /// Bytes read off the socket so far.
    bytes_in: AtomicU64,
}

/// How many bytes a connection has read: an upgraded protocol's way to tell a client that is
/// sending something from one that sends nothing (a WebSocket message in fragments shows only
/// when whole). In the extensions of requests that ask for an upgrade.
#[derive(Clone)]
pub(crate) struct ReadCounter(Arc<ConnState>);

impl ReadCounter {
    pub(crate) fn bytes(&self) -> u64 {
        self.0.bytes_in.load(Ordering::Relaxed)
    }
}

/// One request in flight, from its head to the end (or drop) of its response body.
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(state: Arc<ConnState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        state.started.fetch_add(1, Ordering::Relaxed);
        Busy(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.reader.wake();
    }
}

/// A response body that marks its request finished when hyper is done with it.
pub struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The clock a connection's reads are on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Clock {
    /// Waiting for, or reading, a request head since this instant.
    Head(Instant),
    /// Between requests since this instant.
    Idle(Instant),
    /// A request is in flight, or the connection was upgraded.
    Off,
}

/// A TCP stream that fails its reads once the client has been too slow for the current clock.
/// It also holds the connection's slot, so that the slot lasts as long as the socket, upgrade or
/// not.
struct Watched {
    io: TcpStream,
    state: Arc<ConnState>,
    clock: Clock,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    timer: Pin<Box<Sleep>>,
    /// `ConnState::started` when the clock last moved.
    seen: usize,
    _slot: OwnedSemaphorePermit,
}

impl Watched {
    fn new(
        io: TcpStream,
        state: Arc<ConnState>,
        config: &ServeConfig,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        let now = Instant::now();
        let clock = Clock::Head(now);
        Watched {
            io,
            state,
            clock,
            header_timeout: config.header_timeout,
            keepalive_timeout: config.keepalive_timeout,
            timer: Box::pin(tokio::time::sleep_until(now + config.header_timeout)),
            seen: 0,
            _slot: slot,
        }
    }

    /// Moves the clock along with the connection: off while a request is in flight, idle once
    /// it is done, head from the first byte after that.
    fn observe(&mut self, got_bytes: bool) {
        if self.state.upgraded.load(Ordering::Relaxed)
            || self.state.in_flight.load(Ordering::Relaxed) > 0
        {
            self.clock = Clock::Off;
            return;
        }
        let started = self.state.started.load(Ordering::Relaxed);
        if started != self.seen {
            // A request was served since the last read: the wait for the next one starts now.
            self.seen = started;
            self.clock = Clock::Off;
        }
        self.clock = match self.clock {
            Clock::Off if got_bytes => Clock::Head(Instant::now()),
            Clock::Off => Clock::Idle(Instant::now()),
            Clock::Idle(_) if got_bytes => Clock::Head(Instant::now()),
            c => c,
        };
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        match r {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                this.state.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                this.observe(n > 0);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Before looking at the state, so that a request ending in between still wakes.
                this.state.reader.register(cx.waker());
                this.observe(false);
                let deadline = match this.clock {
                    Clock::Head(t) => t + this.header_timeout,
                    Clock::Idle(t) => t + this.keepalive_timeout,
                    Clock::Off => return Poll::Pending,
                };
                if this.timer.deadline() != deadline {
                    this.timer.as_mut().reset(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        let what = match this.clock {
                            Clock::Head(_) => "request head not received in time",
                            _ => "keep-alive connection idle too long",
                        };
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How a request's body is timed. By default the body timeout bounds the whole body; a route
/// that takes uploads calls [`BodyClock::per_progress`] before it reads, and the timeout then
/// bounds each wait for the next chunk: a large file over a slow link goes through, a client
/// that stops sending is cut off as soon.
#[derive(Clone, Default)]
pub struct BodyClock(Arc<ClockState>);

#[derive(Default)]
struct ClockState {
    per_progress: AtomicBool,
    timed_out: AtomicBool,
}

impl BodyClock {
    pub fn per_progress(&self) {
        self.0.per_progress.store(true, Ordering::Relaxed);
    }
}

/// The error a request body gives when its client took longer than the body timeout.
#[derive(Debug)]
pub(crate) struct BodyTimedOut;

/// [`BodyTimedOut`]'s text: what is left of it once a multipart parser has put it in its own
/// error's text.
pub(crate) const BODY_TIMED_OUT: &str = "request body not received in time";

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(BODY_TIMED_OUT)
    }
}

impl std::error::Error for BodyTimedOut {}

/// A request body with the body timeout, which drains what its handler left unread.
struct TimedBody {
    /// `None` once handed to the drain.
    inner: Option<Incoming>,
    deadline: Instant,
    /// Made on the first wait only: most bodies are in the buffer by the time they are read.
    timer: Option<Pin<Box<Sleep>>>,
    read: usize,
    max_bytes: usize,
    done: bool,
    clock: BodyClock,
    timeout: Duration,
    /// The clock runs per chunk now (it was switched before the first read).
    per_progress: bool,
}

impl TimedBody {
    fn new(inner: Incoming, config: &ServeConfig, clock: BodyClock) -> Self {
        TimedBody {
            inner: Some(inner),
            deadline: Instant::now() + config.body_timeout,
            timer: None,
            read: 0,
            max_bytes: config.max_body_bytes,
            done: false,
            clock,
            timeout: config.body_timeout,
            per_progress: false,
        }
    }

    /// Moves the deadline to a timeout from now.
    fn restart(&mut self) {
        self.deadline = Instant::now() + self.timeout;
        if let Some(t) = self.timer.as_mut() {
            t.as_mut().reset(self.deadline);
        }
    }
}

impl HttpBody for TimedBody {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if !this.per_progress && this.clock.0.per_progress.load(Ordering::Relaxed) {
            this.per_progress = true;
            this.restart();
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read = this.read.saturating_add(data.len());
                    if this.per_progress && !data.is_empty() {
                        this.restart();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.done = true;
                        this.clock.0.timed_out.store(true, Ordering::Relaxed);
                        Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        if self.is_end_stream() {
            return;
        }
        let Some(mut body) = self.inner.take() else {
            return;
        };
        // A body over the limit is not worth reading: the connection closes instead.
        let room = self.max_bytes.saturating_sub(self.read);
        let declared = body.size_hint().exact().unwrap_or(0);
        if room == 0 || declared > room as u64 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let deadline = self.deadline;
        runtime.spawn(async move {
            let drain = async {
                let mut left = room;
                while let Some(Ok(frame)) =
                    std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
                {
                    if let Some(data) = frame.data_ref() {
                        if data.len() > left {
                            return;
                        }
                        left -= data.len();
                    }
                }
            };
            let _ = tokio::time::timeout_at(deadline, drain).await;
        });
    }
}
