//! The controller's Prometheus metrics.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
pub struct Metrics {
    /// By result: ok, wait, refused, error.
    reconciles: Mutex<BTreeMap<&'static str, u64>>,
    /// By operation: list, create, start, stop, resize, destroy.
    backend_calls: Mutex<BTreeMap<&'static str, u64>>,
    backend_errors: Mutex<BTreeMap<&'static str, u64>>,
    duration: Mutex<(Vec<u64>, f64, u64)>,
    pub queue_depth: AtomicU64,
    pub due: AtomicU64,
    pub lease_held: AtomicU64,
    pub status_writes: AtomicU64,
    pub api_requests: AtomicU64,
    pub revision: AtomicU64,
    phases: Mutex<BTreeMap<String, u64>>,
}

fn bump(m: &Mutex<BTreeMap<&'static str, u64>>, k: &'static str) {
    if let Ok(mut g) = m.lock() {
        *g.entry(k).or_default() += 1;
    }
}

impl Metrics {
    pub fn reconciled(&self, result: &'static str, took: Duration) {
        bump(&self.reconciles, result);
        if let Ok(mut g) = self.duration.lock() {
            if g.0.is_empty() {
                g.0 = vec![0; BUCKETS.len()];
            }
            let s = took.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    g.0[i] += 1;
                }
            }
            g.1 += s;
            g.2 += 1;
        }
    }

    pub fn call(&self, op: &'static str) {
        bump(&self.backend_calls, op);
    }

    pub fn call_failed(&self, op: &'static str) {
        bump(&self.backend_errors, op);
    }

    pub fn backend_calls(&self) -> u64 {
        self.backend_calls
            .lock()
            .map(|g| g.values().sum())
            .unwrap_or(0)
    }

    pub fn set_phases(&self, p: BTreeMap<String, u64>) {
        if let Ok(mut g) = self.phases.lock() {
            *g = p;
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let family =
            |s: &mut String, name: &str, help: &str, label: &str, m: &BTreeMap<&str, u64>| {
                let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
                for (k, v) in m {
                    let _ = writeln!(s, "{name}{{{label}=\"{k}\"}} {v}");
                }
            };
        if let Ok(g) = self.reconciles.lock() {
            family(
                &mut s,
                "clusto_controller_reconciles_total",
                "Reconciles by result.",
                "result",
                &g,
            );
        }
        if let Ok(g) = self.backend_calls.lock() {
            family(
                &mut s,
                "clusto_controller_backend_calls_total",
                "Backend requests by operation.",
                "op",
                &g,
            );
        }
        if let Ok(g) = self.backend_errors.lock() {
            family(
                &mut s,
                "clusto_controller_backend_errors_total",
                "Failed backend requests by operation.",
                "op",
                &g,
            );
        }
        if let Ok(g) = self.duration.lock() {
            let name = "clusto_controller_reconcile_duration_seconds";
            let _ = writeln!(
                s,
                "# HELP {name} Time per reconcile.\n# TYPE {name} histogram"
            );
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "{name}_bucket{{le=\"{b}\"}} {}",
                    g.0.get(i).copied().unwrap_or(0)
                );
            }
            let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {}", g.2);
            let _ = writeln!(s, "{name}_sum {}\n{name}_count {}", g.1, g.2);
        }
        for (name, help, v) in [
            (
                "clusto_controller_queue_depth",
                "VirtualMachine objects tracked.",
                &self.queue_depth,
            ),
            (
                "clusto_controller_due",
                "Objects due for a reconcile at the last tick.",
                &self.due,
            ),
            (
                "clusto_controller_lease_held",
                "1 while this controller holds the lease.",
                &self.lease_held,
            ),
            (
                "clusto_controller_observed_revision",
                "Store revision the controller last read.",
                &self.revision,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let name = "clusto_controller_status_writes_total";
        let _ = writeln!(
            s,
            "# HELP {name} Store revisions written with VM status.\n# TYPE {name} counter\n{name} {}",
            self.status_writes.load(Ordering::Relaxed)
        );
        let name = "clusto_controller_api_requests_total";
        let _ = writeln!(
            s,
            "# HELP {name} Requests sent to backends (libvirt RPCs, EC2 API calls).\n# TYPE {name} counter\n{name} {}",
            self.api_requests.load(Ordering::Relaxed)
        );
        if let Ok(g) = self.phases.lock() {
            let name = "clusto_vms";
            let _ = writeln!(s, "# HELP {name} VMs by phase.\n# TYPE {name} gauge");
            for (k, v) in g.iter() {
                let _ = writeln!(s, "{name}{{phase=\"{k}\"}} {v}");
            }
        }
        s
    }
}
