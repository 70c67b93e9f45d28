//! The custom-resource sync's Prometheus metrics (registered into the
//! controller's registry; encoded by `clusto-http`).

use clusto_http::prometheus_client::metrics::counter::Counter;
use clusto_http::prometheus_client::metrics::family::Family;
use clusto_http::prometheus_client::metrics::gauge::Gauge;
use clusto_http::prometheus_client::metrics::histogram::Histogram;
use clusto_http::prometheus_client::registry::Registry;

use crate::convert::Outcome;

type ByLabel = Family<[(&'static str, &'static str); 1], Counter>;

#[derive(Clone)]
pub struct Metrics {
    /// By outcome: synced, refused, released, terminating.
    outcomes: ByLabel,
    /// Apiserver writes by what they set: finalizer, status, event.
    writes: ByLabel,
    write_errors: Counter,
    batch_seconds: Histogram,
    leader: Gauge,
    resources: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            outcomes: ByLabel::default(),
            writes: ByLabel::default(),
            write_errors: Counter::default(),
            batch_seconds: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            leader: Gauge::default(),
            resources: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Adds every metric to `reg` (they share their values with `self`).
    pub fn register(&self, reg: &mut Registry) {
        let p = "clusto_kube";
        reg.register(
            format!("{p}_outcomes"),
            "Custom resources synced, by outcome (synced, refused, released, terminating)",
            self.outcomes.clone(),
        );
        reg.register(
            format!("{p}_writes"),
            "Apiserver writes by what they set (finalizer, status, event)",
            self.writes.clone(),
        );
        reg.register(
            format!("{p}_write_errors"),
            "Apiserver writes that failed (retried)",
            self.write_errors.clone(),
        );
        reg.register(
            format!("{p}_batch_duration_seconds"),
            "Time to apply one namespace's batch to the store",
            self.batch_seconds.clone(),
        );
        reg.register(
            format!("{p}_leader"),
            "1 while this replica holds the Lease and syncs",
            self.leader.clone(),
        );
        reg.register(
            format!("{p}_resources"),
            "Custom resources seen",
            self.resources.clone(),
        );
    }

    pub(crate) fn outcome(&self, o: &Outcome) {
        let label = match o {
            Outcome::Synced { .. } => "synced",
            Outcome::Refused(_) => "refused",
            Outcome::Released => "released",
            Outcome::Terminating => "terminating",
        };
        self.outcomes.get_or_create(&[("outcome", label)]).inc();
    }

    pub(crate) fn write(&self, what: &'static str) {
        self.writes.get_or_create(&[("write", what)]).inc();
    }

    pub(crate) fn write_failed(&self) {
        self.write_errors.inc();
    }

    pub(crate) fn batch(&self, elapsed: std::time::Duration) {
        self.batch_seconds.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub(crate) fn set_resources(&self, n: usize) {
        self.resources.set(n as i64);
    }
}
