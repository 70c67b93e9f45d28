//! What a VMManager backend must do. Each call is one request to the
//! backend (or one per host), so the controller can count them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use clusto_core::vm::{Desired, Ec2Config, ManagerConfig, Observed};

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum BackendError {
    /// Worth retrying with backoff (network, throttling, a busy host).
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help until the spec or the backend changes.
    #[error("{0}")]
    Refused(String),
    #[error("not found: {0}")]
    NotFound(String),
}

/// Where a group of VMs lives: one hypervisor (libvirt) or one region of
/// one manager (EC2). Listing is per scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub manager: String,
    /// libvirt: the hypervisor's name; EC2: None.
    pub host: Option<String>,
    /// libvirt: connection URI; EC2: region.
    pub uri: String,
    /// libvirt: storage pool for disks.
    pub pool: Option<String>,
}

/// What `create` needs beyond the spec.
#[derive(Clone, Debug)]
pub struct CreateRequest<'a> {
    pub vm: &'a Desired,
    /// The ownership tag; also the libvirt domain UUID and EC2 ClientToken.
    pub uid: &'a str,
    /// The store's uid, tagged so listing can skip other inventories' VMs.
    pub store_uid: &'a str,
}

pub trait Backend: Send + Sync {
    /// What this store's VMs have in `scope` (resources tagged with a uid
    /// derived from `store_uid`). `want` names the uids being reconciled:
    /// a backend may report size details only for those.
    fn list<'a>(
        &'a self,
        scope: &'a Scope,
        store_uid: &'a str,
        want: &'a [String],
    ) -> BoxFut<'a, Vec<Observed>>;
    /// Creates (and, if the spec says Running, starts) the VM.
    fn create<'a>(&'a self, scope: &'a Scope, req: CreateRequest<'a>) -> BoxFut<'a, Observed>;
    fn start<'a>(&'a self, scope: &'a Scope, vm: &'a Observed) -> BoxFut<'a, Observed>;
    fn stop<'a>(&'a self, scope: &'a Scope, vm: &'a Observed) -> BoxFut<'a, Observed>;
    /// Brings size in line with the spec where the backend allows it.
    fn resize<'a>(
        &'a self,
        scope: &'a Scope,
        want: &'a Desired,
        vm: &'a Observed,
    ) -> BoxFut<'a, Observed>;
    /// Removes the VM and what it owns (disk volume).
    fn destroy<'a>(&'a self, scope: &'a Scope, vm: &'a Observed) -> BoxFut<'a, ()>;
    /// The command an operator runs to reach the VM's console.
    fn console(&self, scope: &Scope, name: &str, backend_id: Option<&str>) -> String;
    /// API requests sent so far (libvirt RPCs, EC2 HTTP requests), for
    /// metrics and benchmarks.
    fn requests(&self) -> u64;
}

/// Gives the backend for a manager; the binary composes the providers it
/// was built with.
pub trait Provider: Send + Sync {
    fn backend(&self, cfg: &ManagerConfig) -> Result<Arc<dyn Backend>, BackendError>;
    /// API requests all its backends have sent.
    fn requests(&self) -> u64;
}

/// The EC2 scope of a manager.
pub fn ec2_scope(cfg: &ManagerConfig, ec2: &Ec2Config) -> Scope {
    Scope {
        manager: cfg.name.clone(),
        host: None,
        uri: ec2.region.clone(),
        pool: None,
    }
}
