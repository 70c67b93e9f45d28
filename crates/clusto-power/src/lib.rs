//! The power controller. [`reconcile`] is one device's step (read the
//! power, switch it if it is not as declared) with its [`error_policy`]
//! and the status it leaves, testable alone; [`controller`] is the loop
//! around it: leader lease, a queue with due times and a rate limit, a
//! view of the declared devices and their power paths kept current from
//! the store's changes, and one status revision per pass.

pub mod controller;
pub mod metrics;
pub mod reconcile;

pub use controller::{Controller, Options};
pub use reconcile::{
    Context, Object, Outcome, ReconcileError, Requeue, error_policy, reconcile, status_for,
};
