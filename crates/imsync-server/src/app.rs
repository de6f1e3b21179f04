//! Router assembly: the faces, health, metrics, OpenAPI, and the middleware every request passes
//! (request id, one log line per request with the client's address, metrics, rate limit, body
//! limit, panic guard).

use crate::client_addr::TrustedProxies;
use crate::error::Face;
use crate::ratelimit::RateLimiter;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use imsync_service::Service;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_body_bytes: usize,
    /// Requests per second per client address; 0 turns the limit off.
    pub rate_limit_per_sec: u32,
    /// A WebSocket that sends nothing for this long is closed.
    pub ws_idle_timeout: std::time::Duration,
    /// The address the WuKongIM TCP listener is bound to, if there is one: its port goes into
    /// `GET /v1/users/{uid}/im`'s `tcp_addr`.
    pub wukongim_tcp_addr: Option<std::net::SocketAddr>,
    /// Peers whose `X-Forwarded-For` names the client (reverse proxies).
    pub trusted_proxies: TrustedProxies,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 1024 * 1024,
            rate_limit_per_sec: 0,
            ws_idle_timeout: crate::realtime::default_idle_timeout(),
            wukongim_tcp_addr: None,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// What every handler shares. Axum clones the state for each extractor of each request, so it
/// is one `Arc`: one reference count to move instead of one per part.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

/// The parts of [`AppState`], which handlers reach through it.
pub struct AppParts {
    pub service: Service,
    pub metrics: PrometheusHandle,
    pub config: Arc<ServerConfig>,
}

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// Request ids `<process id in hex>-<count>`, so that the ids of two server processes on a host
/// differ. The process id is read once: each read of it is a system call.
#[derive(Clone)]
struct Counter {
    pid: u32,
    next: Arc<AtomicU64>,
}

impl Counter {
    fn new() -> Self {
        Counter {
            pid: std::process::id(),
            next: Arc::default(),
        }
    }
}

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{:x}-{n}", self.pid)
            .parse()
            .ok()
            .map(RequestId::new)
    }
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    // Read when asked for: a gauge set by the writer would stand still while a batch is stuck.
    let depth = state.service.store().writer_queue_depth();
    metrics::gauge!("imsync_writer_queue_depth").set(depth as f64);
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

// The body is read although unused: the document is large enough that, with a request body left
// unread, the connection's close could reset it before the client had read it all.
async fn openapi_json(
    _body: crate::extract::UnusedBody<crate::error::ApiError>,
) -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi())
}

async fn fallback(uri: Uri) -> Response {
    Face::of(uri.path()).no_route()
}

async fn wrong_method(uri: Uri) -> Response {
    Face::of(uri.path()).wrong_method()
}

/// Plain text, which [`crate::face_errors`] turns into the format of the face the request was for
/// (the panic hook does not see the request).
fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a handler panicked");
    (StatusCode::INTERNAL_SERVER_ERROR, "Internal server error").into_response()
}

/// Query parameters whose values are never logged: a name containing any of these (compared
/// case-insensitively after percent-decoding, as the extractors decode it) carries a credential.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "auth",
    "pass",
    "secret",
    "resume",
    "key",
    "session",
    "credential",
    "sig",
];

/// The path and query of `uri` for the log, with the values of credential-like query parameters
/// replaced: realtime clients put their bearer token in the URL.
fn loggable_uri(uri: &Uri) -> Cow<'_, str> {
    let Some(query) = uri.query() else {
        return Cow::Borrowed(uri.path());
    };
    // Every request with a query passes here: a name needs decoding only if it is encoded.
    let secret = |name: &str| {
        let decoded;
        let name = if name.contains(['%', '+']) {
            decoded = percent_decode(name);
            decoded.as_str()
        } else {
            name
        };
        SECRET_PARAMS.iter().any(|s| {
            name.as_bytes()
                .windows(s.len())
                .any(|w| w.eq_ignore_ascii_case(s.as_bytes()))
        })
    };
    if !query
        .split('&')
        .any(|kv| secret(kv.split('=').next().unwrap_or(kv)))
    {
        return Cow::Borrowed(uri.path_and_query().map_or(uri.path(), |pq| pq.as_str()));
    }
    let mut out = String::with_capacity(uri.path().len() + query.len() + 1);
    out.push_str(uri.path());
    out.push('?');
    for (i, kv) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match kv.split_once('=') {
            Some((name, _)) if secret(name) => {
                out.push_str(name);
                out.push_str("=[redacted]");
            }
            _ => out.push_str(kv),
        }
    }
    Cow::Owned(out)
}

/// `application/x-www-form-urlencoded` decoding of a query parameter's name, lossy: it only
/// decides whether the name is a credential's.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |i: usize| {
        b.get(i)
            .and_then(|c| (*c as char).to_digit(16))
            .map(|d| d as u8)
    };
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let trusted_proxies: Arc<TrustedProxies> = Arc::new(state.config.trusted_proxies.clone());
    let limiter = RateLimiter::new(state.config.rate_limit_per_sec, trusted_proxies.clone());
    let max_body_bytes = state.config.max_body_bytes;
    let (native, _) = crate::native::router().split_for_parts();
    // Metrics and the rate limit need the matched route, so they wrap each route.
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .route("/openapi.json", get(openapi_json))
        .merge(native)
        .merge(crate::native::files::router(state.service.max_file_bytes()))
        .merge(crate::realtime::router())
        .merge(crate::rocketchat::router())
        .merge(crate::ddp::router())
        .merge(crate::tsdd::router())
        .merge(crate::wukongim::router())
        .fallback(fallback)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(
            limiter,
            crate::ratelimit::limit,
        ))
        .layer(middleware::from_fn(crate::metrics::track))
        .with_state(state);
    // The rest wraps the router once: a layer given to `Router::layer` wraps every route in one
    // more boxed service, which each request clones, and these do not care about the route.
    let outer = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), Counter::new()))
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(move |req: &Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    let uri = loggable_uri(req.uri());
                    match trusted_proxies.client_of(req) {
                        Some(client) => tracing::info_span!(
                            "request", method = %req.method(), uri = %uri, id = %id,
                            client = %client
                        ),
                        None => tracing::info_span!(
                            "request", method = %req.method(), uri = %uri, id = %id
                        ),
                    }
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                // A 5xx's cause is logged at ERROR where it is made and its status is on the
                // response line: another ERROR line per failed request would only repeat them.
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(crate::face_errors::FaceErrorsLayer)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .service(routes);
    Router::new().fallback_service(outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(uri: &str) -> String {
        loggable_uri(&uri.parse().unwrap()).into_owned()
    }

    #[test]
    fn credentials_in_the_query_are_not_logged() {
        assert_eq!(
            logged("/api/im/sync/stream?token=dI1xSECRET&since=0"),
            "/api/im/sync/stream?token=[redacted]&since=0"
        );
        for (uri, secret) in [
            ("/ws?since=3&access_token=S3CRET", "S3CRET"),
            ("/sse?authToken=S3CRET", "S3CRET"),
            ("/api/v1/login?password=hunter2&user=a", "hunter2"),
            ("/x?resume=R3SUME", "R3SUME"),
            ("/x?%74oken=S3CRET", "S3CRET"),
            ("/x?TOKEN=S3CRET&token=S3CRET", "S3CRET"),
            ("/x?X-Auth-Token=S3CRET", "S3CRET"),
        ] {
            let line = logged(uri);
            assert!(!line.contains(secret), "{uri} logged as {line}");
            assert!(line.contains("[redacted]"), "{uri} logged as {line}");
        }
    }

    #[test]
    fn other_parameters_are_logged_as_sent() {
        for uri in [
            "/api/im/sync?since=10&limit=5",
            "/api/im/me",
            "/x?flag&since=%FF",
        ] {
            assert_eq!(logged(uri), uri);
        }
    }
}
