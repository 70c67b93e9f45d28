//! The power controller's Prometheus metrics (registered into the
//! daemon's registry beside the VM controller's; encoded by `clusto-http`).

use std::time::Duration;

use clusto_http::prometheus_client::metrics::counter::Counter;
use clusto_http::prometheus_client::metrics::family::Family;
use clusto_http::prometheus_client::metrics::gauge::Gauge;
use clusto_http::prometheus_client::metrics::histogram::Histogram;
use clusto_http::prometheus_client::registry::Registry;

type ByLabel = Family<[(&'static str, &'static str); 1], Counter>;

const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone)]
pub struct Metrics {
    /// By result: as_declared, switched, missing_path, error.
    reconciles: ByLabel,
    /// Power operations by kind: read, write.
    operations: ByLabel,
    duration: Histogram,
    devices: Gauge,
    lease_held: Gauge,
    revision: Gauge,
    status_writes: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            reconciles: ByLabel::default(),
            operations: ByLabel::default(),
            duration: Histogram::new(BUCKETS),
            devices: Gauge::default(),
            lease_held: Gauge::default(),
            revision: Gauge::default(),
            status_writes: Counter::default(),
        }
    }
}

impl Metrics {
    /// Adds every metric to `reg` (they share their values with `self`).
    pub fn register(&self, reg: &mut Registry) {
        let p = "clusto_power";
        reg.register(
            format!("{p}_reconciles"),
            "Power reconciles by result",
            self.reconciles.clone(),
        );
        reg.register(
            format!("{p}_operations"),
            "Power operations sent to BMCs and PDUs, by kind (read, write)",
            self.operations.clone(),
        );
        reg.register(
            format!("{p}_reconcile_duration_seconds"),
            "Time per power reconcile",
            self.duration.clone(),
        );
        reg.register(
            format!("{p}_devices"),
            "Devices that declare spec.powerState",
            self.devices.clone(),
        );
        reg.register(
            format!("{p}_lease_held"),
            "1 while this power controller holds the lease",
            self.lease_held.clone(),
        );
        reg.register(
            format!("{p}_observed_revision"),
            "Store revision the power controller last read",
            self.revision.clone(),
        );
        reg.register(
            format!("{p}_status_writes"),
            "Store revisions written with power status",
            self.status_writes.clone(),
        );
    }

    pub fn reconciled(&self, result: &'static str, took: Duration) {
        self.reconciles.get_or_create(&[("result", result)]).inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn operations(&self, reads: u64, writes: u64) {
        self.operations
            .get_or_create(&[("kind", "read")])
            .inc_by(reads);
        self.operations
            .get_or_create(&[("kind", "write")])
            .inc_by(writes);
    }

    pub fn set_devices(&self, n: usize) {
        self.devices.set(n as i64);
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
}
