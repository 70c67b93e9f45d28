//! `clusto serve`'s metrics: requests by route and status, their latency,
//! open watches, and the object cache's hits and misses.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use clusto_http::prometheus_client::metrics::counter::Counter;
use clusto_http::prometheus_client::metrics::family::Family;
use clusto_http::prometheus_client::metrics::gauge::Gauge;
use clusto_http::prometheus_client::metrics::histogram::Histogram;
use clusto_http::prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

#[derive(Clone)]
pub struct ApiMetrics {
    requests: Family<Labels, Counter>,
    duration: Histogram,
    /// Watches open now.
    pub watchers: Gauge,
    cache: Family<[(&'static str, &'static str); 1], Counter>,
}

impl Default for ApiMetrics {
    fn default() -> ApiMetrics {
        ApiMetrics {
            requests: Family::default(),
            duration: Histogram::new(BUCKETS),
            watchers: Gauge::default(),
            cache: Family::default(),
        }
    }
}

impl ApiMetrics {
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "clusto_api_requests",
            "API requests by route and HTTP status",
            self.requests.clone(),
        );
        reg.register(
            "clusto_api_request_duration_seconds",
            "Time to the response's head (a streamed list or watch goes on after it)",
            self.duration.clone(),
        );
        reg.register("clusto_api_watchers", "Watches open", self.watchers.clone());
        reg.register(
            "clusto_api_object_cache",
            "One-object GETs by cache result (hit, miss)",
            self.cache.clone(),
        );
    }

    pub fn cache(&self, hit: bool) {
        let r = if hit { "hit" } else { "miss" };
        self.cache.get_or_create(&[("result", r)]).inc();
    }
}

/// Counts each request under its route pattern (not its path: names
/// would make a series per object).
pub async fn record(State(m): State<ApiMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let t = Instant::now();
    let resp = next.run(req).await;
    m.duration.observe(t.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&vec![
            ("route", route),
            ("code", resp.status().as_u16().to_string()),
        ])
        .inc();
    resp
}

/// Holds a watch's place in the gauge while its stream lives.
pub struct Watching(pub Gauge);

impl Watching {
    pub fn new(g: &Gauge) -> Watching {
        g.inc();
        Watching(g.clone())
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.dec();
    }
}
