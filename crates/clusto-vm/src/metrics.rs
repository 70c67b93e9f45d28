//! The controller's Prometheus metrics (registered into the daemon's
//! registry; encoded by `clusto-http`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clusto_http::prometheus_client::metrics::counter::Counter;
use clusto_http::prometheus_client::metrics::family::Family;
use clusto_http::prometheus_client::metrics::gauge::Gauge;
use clusto_http::prometheus_client::metrics::histogram::Histogram;
use clusto_http::prometheus_client::registry::Registry;

/// A counter family with one label.
type ByLabel = Family<[(&'static str, &'static str); 1], Counter>;

const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone)]
pub struct Metrics {
    /// By result: ok, wait, refused, error.
    reconciles: ByLabel,
    /// By operation: list, create, start, stop, resize, destroy.
    backend_calls: ByLabel,
    backend_errors: ByLabel,
    duration: Histogram,
    queue_depth: Gauge,
    due: Gauge,
    lease_held: Gauge,
    revision: Gauge,
    status_writes: Counter,
    api_requests: Counter,
    phases: Family<[(&'static str, String); 1], Gauge>,
    /// Every backend call, for a pass's report.
    calls: std::sync::Arc<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            reconciles: ByLabel::default(),
            backend_calls: ByLabel::default(),
            backend_errors: ByLabel::default(),
            duration: Histogram::new(BUCKETS),
            queue_depth: Gauge::default(),
            due: Gauge::default(),
            lease_held: Gauge::default(),
            revision: Gauge::default(),
            status_writes: Counter::default(),
            api_requests: Counter::default(),
            phases: Family::default(),
            calls: Default::default(),
        }
    }
}

impl Metrics {
    /// Adds every metric to `reg` (they share their values with `self`).
    pub fn register(&self, reg: &mut Registry) {
        let p = "clusto_controller";
        reg.register(
            format!("{p}_reconciles"),
            "Reconciles by result",
            self.reconciles.clone(),
        );
        reg.register(
            format!("{p}_backend_calls"),
            "Backend requests by operation",
            self.backend_calls.clone(),
        );
        reg.register(
            format!("{p}_backend_errors"),
            "Failed backend requests by operation",
            self.backend_errors.clone(),
        );
        reg.register(
            format!("{p}_reconcile_duration_seconds"),
            "Time per reconcile",
            self.duration.clone(),
        );
        reg.register(
            format!("{p}_queue_depth"),
            "VirtualMachine objects tracked",
            self.queue_depth.clone(),
        );
        reg.register(
            format!("{p}_due"),
            "Objects due for a reconcile at the last tick",
            self.due.clone(),
        );
        reg.register(
            format!("{p}_lease_held"),
            "1 while this controller holds the lease",
            self.lease_held.clone(),
        );
        reg.register(
            format!("{p}_observed_revision"),
            "Store revision the controller last read",
            self.revision.clone(),
        );
        reg.register(
            format!("{p}_status_writes"),
            "Store revisions written with VM status",
            self.status_writes.clone(),
        );
        reg.register(
            format!("{p}_api_requests"),
            "Requests sent to backends (libvirt RPCs, EC2 API calls)",
            self.api_requests.clone(),
        );
        reg.register("clusto_vms", "VMs by phase", self.phases.clone());
    }

    pub fn reconciled(&self, result: &'static str, took: Duration) {
        self.reconciles.get_or_create(&[("result", result)]).inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn call(&self, op: &'static str) {
        self.backend_calls.get_or_create(&[("op", op)]).inc();
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn call_failed(&self, op: &'static str) {
        self.backend_errors.get_or_create(&[("op", op)]).inc();
    }

    /// Backend calls made so far (every operation).
    pub fn backend_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn set_phases(&self, p: BTreeMap<String, u64>) {
        // Phases no VM is in any more read 0 rather than vanish mid-series.
        self.phases.clear();
        for (phase, n) in p {
            self.phases.get_or_create(&[("phase", phase)]).set(n as i64);
        }
    }

    pub fn set_queue_depth(&self, n: usize) {
        self.queue_depth.set(n as i64);
    }

    pub fn set_due(&self, n: usize) {
        self.due.set(n as i64);
    }

    pub fn set_lease_held(&self, held: bool) {
        self.lease_held.set(held as i64);
    }

    pub fn set_revision(&self, rev: i64) {
        self.revision.set(rev);
    }

    pub fn status_written(&self) {
        self.status_writes.inc();
    }

    pub fn api_requests(&self, n: u64) {
        self.api_requests.inc_by(n);
    }
}
