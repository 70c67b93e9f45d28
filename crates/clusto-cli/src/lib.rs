//! What the `clusto` binary composes from the workspace and tests reuse.

pub mod backends {
    //! The VMManager backends this build includes.

    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::Mutex;

    use clusto_core::vm::{BackendKind, ManagerConfig};
    use clusto_vm::{Backend, BackendError, Provider};

    /// The backends this binary was built with.
    pub struct Backends {
        libvirt: Arc<clusto_libvirt::Libvirt>,
        ec2: Mutex<HashMap<String, Arc<clusto_ec2::Ec2>>>,
    }

    impl Default for Backends {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Backends {
        pub fn new() -> Backends {
            Backends {
                libvirt: clusto_libvirt::shared(),
                ec2: Mutex::default(),
            }
        }
    }

    impl Provider for Backends {
        fn requests(&self) -> u64 {
            let ec2: u64 = self
                .ec2
                .lock()
                .map(|g| g.values().map(|b| b.requests()).sum())
                .unwrap_or(0);
            self.libvirt.requests() + ec2
        }

        fn backend(&self, cfg: &ManagerConfig) -> Result<Arc<dyn Backend>, BackendError> {
            match cfg.backend {
                BackendKind::Libvirt => Ok(self.libvirt.clone()),
                BackendKind::Ec2 => {
                    let ec2 = cfg
                        .ec2
                        .clone()
                        .ok_or_else(|| BackendError::Refused("no ec2 settings".into()))?;
                    // One client per distinct configuration.
                    let key = format!("{ec2:?}");
                    let mut g = self
                        .ec2
                        .lock()
                        .map_err(|_| BackendError::Transient("client cache poisoned".into()))?;
                    Ok(g.entry(key)
                        .or_insert_with(|| clusto_ec2::shared(ec2))
                        .clone())
                }
            }
        }
    }
}
