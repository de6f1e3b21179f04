//! Prometheus metrics: requests by route and status with latency histograms, the counters the
//! service and store increment, the open connections of each realtime protocol and the writer's
//! queue and batches. [`CATALOGUE`] lists them all; the README's metrics table is checked
//! against it.

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Every metric: its name, its Prometheus type and what it means (the `# HELP` line).
pub const CATALOGUE: &[(&str, &str, &str)] = &[
    (
        "imsync_http_requests_total",
        "counter",
        "HTTP requests answered, by route, method and status",
    ),
    (
        "imsync_http_request_duration_seconds",
        "histogram",
        "Time to answer an HTTP request, by route and method",
    ),
    (
        "imsync_events_appended_total",
        "counter",
        "Events committed to the event log by this node",
    ),
    (
        "imsync_sync_pages_served_total",
        "counter",
        "Pages of the sync feed served (GET /api/im/sync and realtime catch-up)",
    ),
    (
        "imsync_realtime_lagging_closed_total",
        "counter",
        "Realtime connections closed because they fell 1024 events behind",
    ),
    (
        "imsync_connections_open",
        "gauge",
        "Open realtime connections, by protocol: native_ws (/ws), native_sse (/sse and \
         /api/im/sync/stream), ddp (/websocket), wukongim_ws (/v1/wukongim/ws), wukongim_tcp \
         (--wukongim-tcp-listen)",
    ),
    (
        "imsync_writer_queue_depth",
        "gauge",
        "Writes submitted to the database writer and not yet answered, after its last batch",
    ),
    (
        "imsync_writer_batch_size_last",
        "gauge",
        "Writes committed together in the writer's last batch",
    ),
    (
        "imsync_writer_batch_size_average",
        "gauge",
        "Average writes per batch since the server started",
    ),
    (
        "imsync_writer_batches_total",
        "counter",
        "Batches (transactions) the database writer committed or tried to",
    ),
    (
        "imsync_writer_batched_writes_total",
        "counter",
        "Writes the database writer ran in its batches",
    ),
    (
        "imsync_pg_writer_round_trips_total",
        "counter",
        "Network round trips the PostgreSQL writer made to the database (pipelined statements \
         count once)",
    ),
    (
        "imsync_pg_writer_merged_rows_total",
        "counter",
        "Writes the PostgreSQL writer sent as rows of a multi-row statement rather than one \
         statement each",
    ),
    (
        "imsync_files_stored_total",
        "counter",
        "Files stored (uploads completed) by this node",
    ),
    (
        "imsync_file_bytes_stored_total",
        "counter",
        "Bytes of the files stored by this node",
    ),
    (
        "imsync_files_collected_total",
        "counter",
        "Files removed by the collector: their messages deleted, uploads never finished, stray bytes",
    ),
];

/// The realtime protocols whose open connections are counted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Protocol {
    NativeWs,
    NativeSse,
    Ddp,
    WukongimWs,
    WukongimTcp,
}

impl Protocol {
    const ALL: [Protocol; 5] = [
        Protocol::NativeWs,
        Protocol::NativeSse,
        Protocol::Ddp,
        Protocol::WukongimWs,
        Protocol::WukongimTcp,
    ];

    fn label(self) -> &'static str {
        match self {
            Protocol::NativeWs => "native_ws",
            Protocol::NativeSse => "native_sse",
            Protocol::Ddp => "ddp",
            Protocol::WukongimWs => "wukongim_ws",
            Protocol::WukongimTcp => "wukongim_tcp",
        }
    }

    fn gauge(self) -> Gauge {
        metrics::gauge!("imsync_connections_open", "protocol" => self.label())
    }
}

/// One open connection of a protocol, counted in `imsync_connections_open` for as long as it is
/// held: however a connection ends, dropping this is the one way it stops being counted.
pub(crate) struct OpenConnection(Gauge);

impl OpenConnection {
    pub(crate) fn new(protocol: Protocol) -> Self {
        let gauge = protocol.gauge();
        gauge.increment(1.0);
        OpenConnection(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

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
            if metrics::set_global_recorder(recorder).is_ok() {
                describe();
            }
            handle
        })
        .clone()
}

/// Gives every metric its help text, and the gauges their zero, so that a scrape shows them
/// before anything happened.
fn describe() {
    for (name, kind, help) in CATALOGUE {
        match *kind {
            "counter" => metrics::describe_counter!(*name, *help),
            "gauge" => metrics::describe_gauge!(*name, *help),
            _ => metrics::describe_histogram!(*name, *help),
        }
    }
    for protocol in Protocol::ALL {
        protocol.gauge().set(0.0);
    }
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

#[cfg(test)]
mod tests {
    use super::CATALOGUE;

    /// README.md's metrics table (its rows starting with "| `imsync_") lists every metric of
    /// the catalogue with its type, in its order.
    #[test]
    fn the_readme_lists_every_metric() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
        let listed: Vec<(String, String)> = readme
            .lines()
            .filter(|line| line.starts_with("| `imsync_"))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
                let name = cells[0].trim().trim_matches('`');
                let name = name.split('{').next().unwrap().to_owned();
                (name, cells[1].trim().to_owned())
            })
            .collect();
        let declared: Vec<(String, String)> = CATALOGUE
            .iter()
            .map(|(name, kind, _)| (name.to_string(), kind.to_string()))
            .collect();
        assert_eq!(listed, declared);
    }
}
