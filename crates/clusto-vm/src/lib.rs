//! `clusto controller`: reconciles `VirtualMachine` objects against their
//! `VMManager`'s backend. The decisions live in `clusto_core::vm`; this
//! crate owns the loop (queue, backoff, rate limit, resync, lease), the
//! backend interface and the metrics.

pub mod backend;
pub mod controller;
pub mod metrics;

pub use backend::{Backend, BackendError, BoxFut, CreateRequest, Provider, Scope};
pub use controller::{Controller, ControllerError, Options, TickReport, backoff, scope_of};
pub use metrics::Metrics;
