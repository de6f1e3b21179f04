//! Router assembly: the faces, health, metrics, OpenAPI, and the middleware every request passes
//! (request id, one log line per request, metrics, rate limit, body limit, panic guard).

use crate::error::{method_not_allowed, not_found_route, ApiError};
use crate::ratelimit::RateLimiter;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Json, Router};
use imsync_core::Error;
use imsync_service::Service;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_body_bytes: usize,
    /// Requests per second per client address; 0 turns the limit off.
    pub rate_limit_per_sec: u32,
    /// A WebSocket that sends nothing for this long is closed.
    pub ws_idle_timeout: std::time::Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 1024 * 1024,
            rate_limit_per_sec: 0,
            ws_idle_timeout: crate::realtime::default_idle_timeout(),
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
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi())
}

async fn fallback() -> ApiError {
    not_found_route()
}

async fn wrong_method() -> ApiError {
    method_not_allowed()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError(Error::internal("a handler panicked")).into_response()
}

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let limiter = RateLimiter::new(state.config.rate_limit_per_sec);
    let max_body_bytes = state.config.max_body_bytes;
    let (native, _) = crate::native::router().split_for_parts();
    // Metrics and the rate limit need the matched route, so they wrap each route.
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .route("/openapi.json", get(openapi_json))
        .merge(native)
        .merge(crate::realtime::router())
        .merge(crate::rocketchat::router())
        .merge(crate::tsdd::router())
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
                .make_span_with(|req: &Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), uri = %req.uri(), id = %id)
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .service(routes);
    Router::new().fallback_service(outer)
}
