//! clusto custom resources synced to the store: `clusto controller --kube`
//! watches every clusto kind, applies what the resources declare with the
//! same code as `clusto apply` (apply set `k8s:<namespace>`, one revision
//! per batch), holds a finalizer so deleting a resource removes its object,
//! and writes `Synced`/`Ready` and the object's inventory status back.

pub mod batch;
pub mod convert;
pub mod lease;
pub mod metrics;
pub mod sync;

pub use lease::LeaderElector;
pub use metrics::Metrics;
pub use sync::{Options, SyncError, api_resource, run};
