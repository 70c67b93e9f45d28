//! The one HTTP stack of clusto's daemons. Every daemon (dhcpd, the
//! controller, `clusto serve`) serves `/healthz`, `/readyz` and `/metrics`
//! from here, and `clusto serve` adds the API beside them, so probes,
//! metrics encoding and request handling exist once.
//!
//! [`account`] is the other thing daemons share: dropping root after
//! binding their ports.
//!
//! Metrics use `prometheus-client` and are exposed in the OpenMetrics text
//! format (Prometheus scrapes it natively; counters end in `_total`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

pub mod account;
pub mod client;
pub mod tls;

pub use prometheus_client;

/// Whether a daemon is ready for work (its index built, its store
/// reachable); `/readyz` answers 503 until it is. `/healthz` only says the
/// process answers.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the probe and metrics routes read.
#[derive(Clone)]
struct Telemetry {
    registry: Arc<Registry>,
    ready: Readiness,
}

/// The routes every daemon serves: `/healthz`, `/readyz`, `/metrics`.
/// Merge a daemon's own routes into it.
pub fn routes(registry: Arc<Registry>, ready: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Telemetry { registry, ready })
}

async fn readyz(State(t): State<Telemetry>) -> Response {
    if t.ready.is_ready() {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// The OpenMetrics content type `/metrics` answers with.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(State(t): State<Telemetry>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &t.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Binds `addr` and serves `router` in the background; returns the bound
/// address (useful with port 0). The server lives as long as the runtime.
pub async fn serve(addr: SocketAddr, router: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "HTTP: /healthz /readyz /metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let code = head[9..12].parse().unwrap();
        (code, head.to_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn probes_and_metrics_answer_by_path() {
        let mut reg = Registry::default();
        let c = Counter::<u64>::default();
        reg.register("clusto_test_things", "Things seen.", c.clone());
        c.inc();
        let ready = Readiness::default();
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            routes(Arc::new(reg), ready.clone()),
        )
        .await
        .unwrap();
        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/readyz").await.0, 503);
        ready.set(true);
        assert_eq!(get(addr, "/readyz").await.0, 200);
        let (code, head, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(head.contains("application/openmetrics-text"), "{head}");
        assert!(body.contains("clusto_test_things_total 1"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert_eq!(get(addr, "/nothing").await.0, 404);
    }
}
