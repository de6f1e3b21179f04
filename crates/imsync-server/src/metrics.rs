//! Prometheus metrics: requests by route and status with latency histograms, plus the counters
//! the service and store increment (`imsync_events_appended_total`,
//! `imsync_sync_pages_served_total`).

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and answers its handle.
pub fn install_recorder() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .expect("valid buckets")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed in this process (tests start several
            // servers); metrics then go to that one and this handle renders empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let resp = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let (requests, duration) = handles(route, &method, resp.status());
    requests.increment(1);
    duration.record(started.elapsed().as_secs_f64());
    resp
}

/// A route's metric handles by method and status.
type RouteHandles = Vec<(Method, StatusCode, Counter, Histogram)>;

/// The request counter and latency histogram of a route, method and status, registered once and
/// kept: building a metric's key from its labels cost each request more than this lookup.
fn handles(route: &str, method: &Method, status: StatusCode) -> (Counter, Histogram) {
    static HANDLES: OnceLock<Mutex<HashMap<String, RouteHandles>>> = OnceLock::new();
    let mut all = HANDLES.get_or_init(Default::default).lock();
    if let Some((.., c, h)) = all
        .get(route)
        .and_then(|v| v.iter().find(|(m, s, ..)| m == method && *s == status))
    {
        return (c.clone(), h.clone());
    }
    let labels = [
        ("route", route.to_owned()),
        ("method", method.as_str().to_owned()),
        ("status", status.as_u16().to_string()),
    ];
    let c = metrics::counter!("imsync_http_requests_total", &labels);
    let h = metrics::histogram!("imsync_http_request_duration_seconds", &labels[..2]);
    all.entry(route.to_owned())
        .or_default()
        .push((method.clone(), status, c.clone(), h.clone()));
    (c, h)
}
