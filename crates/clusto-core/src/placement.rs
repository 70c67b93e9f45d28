//! VM placement, as the original VMManager did it: a host's capacity is its
//! `system.memory` (MiB), `system.disk` (GiB) and `system.cpucount`, minus
//! what the VMs placed on it ask for; the best fit is the smallest host that
//! fits (by memory, then cpus, then disk). Hosts are the servers inserted
//! into the manager; hosts it lists under `reserved` take no VMs.

use crate::error::CoreError;

/// Hidden key for observed state recorded in the inventory (`status.*`).
pub const STATUS_KEY: &str = "_status";
use crate::inventory::Inventory;
use crate::kind::Kind;
use crate::model::EntityId;
use crate::value::Value;

/// What a VM asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub memory_mib: i64,
    pub disk_gib: i64,
    pub cpus: i64,
}

/// A host's free capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Free {
    pub memory_mib: i64,
    pub disk_gib: i64,
    pub cpus: i64,
}

impl Free {
    pub fn fits(&self, n: &Need) -> bool {
        self.memory_mib >= n.memory_mib && self.disk_gib >= n.disk_gib && self.cpus >= n.cpus
    }
}

/// A placement decision and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub host: EntityId,
    /// `xenhost2: needs 1024 MiB/20 GiB/1 cpu, free 15360/1980/7`
    pub reason: String,
}

fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Int(i)) => *i,
        Some(Value::Float(f)) => *f as i64,
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

impl Inventory {
    /// What a VirtualMachine asks for (defaults: 1024 MiB, 10 GiB, 1 cpu).
    pub fn vm_need(&self, vm: EntityId) -> Need {
        let get = |f: &str, d: i64| match self.setting(vm, f) {
            Some(v) => int(Some(v)),
            None => d,
        };
        Need {
            memory_mib: get("memoryMiB", 1024),
            disk_gib: get("diskGiB", 10),
            cpus: get("cpus", 1),
        }
    }

    /// The host a VM is pinned to (`host`) or was placed on.
    pub fn vm_host(&self, vm: EntityId) -> Option<&str> {
        match self
            .setting(vm, "host")
            .or_else(|| self.attr_value(vm, STATUS_KEY, Some("host")))
        {
            Some(Value::String(h)) => Some(h),
            _ => None,
        }
    }

    /// VMs pinned to or placed on this host.
    pub fn vms_on(&self, host: EntityId) -> Vec<EntityId> {
        let name = self.name_of(host);
        self.entities_of_kind(Kind::VirtualMachine)
            .into_iter()
            .filter(|vm| self.vm_host(vm.id) == Some(name))
            .map(|vm| vm.id)
            .collect()
    }

    /// Places a VM under its manager and records the decision and its
    /// reason (`status.host`, `status.placement`). A VM keeps the host it
    /// was placed on while that host still has it in its manager and fits.
    pub fn place_and_record(&mut self, vm: EntityId) -> Result<(), CoreError> {
        self.place_and_record_forced(vm, false)
    }

    /// The recorded placement reason (`status.placement`).
    pub fn vm_placement(&self, vm: EntityId) -> Option<String> {
        match self.attr_value(vm, STATUS_KEY, Some("placement")) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// [`Inventory::place_and_record`], optionally forcing a pinned host
    /// that does not fit.
    pub fn place_and_record_forced(&mut self, vm: EntityId, force: bool) -> Result<(), CoreError> {
        let name = self.name_of(vm).to_string();
        let mgr = match self.setting(vm, "manager") {
            Some(Value::String(m)) => self.id_of(&m.clone())?,
            _ => {
                return Err(CoreError::Rule {
                    object: name,
                    rule: "a VirtualMachine needs a manager".into(),
                });
            }
        };
        let ec2 = self
            .vm_manager_config(mgr)
            .is_ok_and(|c| c.backend == crate::vm::BackendKind::Ec2);
        let placed = match self.attr_value(vm, STATUS_KEY, Some("host")) {
            Some(Value::String(h)) => self.id_of(&h.clone()).ok(),
            _ => None,
        };
        // What exists lives where its manager put it; under another manager
        // the controller would create a second one and lose the first.
        let provisioned = self.attr_value(vm, STATUS_KEY, Some("backendId")).is_some();
        let moved = match (ec2, placed) {
            (true, h) => h.is_some(),
            (false, None) => true,
            (false, Some(h)) => !self.contents(mgr).contains(&h),
        };
        if provisioned && moved {
            return Err(CoreError::Rule {
                object: name,
                rule: format!(
                    "exists under another VM manager and clusto does not move VMs between managers; delete it and create it again under {}",
                    self.name_of(mgr)
                ),
            });
        }
        // EC2 places by region: there are no hypervisors to choose.
        if ec2 {
            return Ok(());
        }
        let pin = match self.setting(vm, "host") {
            Some(Value::String(h)) => Some(self.id_of(&h.clone())?),
            _ => None,
        };
        // A VM that exists on its host stays there: clusto does not migrate,
        // and placing it elsewhere would create a second one.
        if self.attr_value(vm, STATUS_KEY, Some("backendId")).is_some()
            && let Some(h) = placed
        {
            if let Some(p) = pin
                && p != h
            {
                return Err(CoreError::Rule {
                    object: name,
                    rule: format!(
                        "runs on {} and clusto does not migrate VMs; to move it to {}, delete it and create it again",
                        self.name_of(h),
                        self.name_of(p)
                    ),
                });
            }
            let need = self.vm_need(vm);
            let free = self.host_free(h, Some(vm));
            if !free.fits(&need) && !force {
                return Err(CoreError::Rule {
                    object: name,
                    rule: format!(
                        "{} (it stays on the host it runs on, which lacks the room)",
                        self.describe_fit(h, &need, &free)
                    ),
                });
            }
            return Ok(());
        }
        if pin.is_none()
            && let Some(h) = placed
            && self.contents(mgr).contains(&h)
            && self.host_free(h, Some(vm)).fits(&self.vm_need(vm))
        {
            return Ok(());
        }
        let p = self.place_vm(mgr, vm, pin, force)?;
        let host = self.name_of(p.host).to_string();
        self.put_internal(vm, STATUS_KEY, "host", Value::String(host));
        self.put_internal(vm, STATUS_KEY, "placement", Value::String(p.reason));
        Ok(())
    }

    /// A host's capacity minus what its VMs ask for (`except` is left out,
    /// so a VM being re-placed does not count against itself).
    pub fn host_free(&self, host: EntityId, except: Option<EntityId>) -> Free {
        let sys = |k: &str| int(self.merged_value(host, "system", Some(k)).map(|(v, _)| v));
        let mut f = Free {
            memory_mib: sys("memory"),
            disk_gib: sys("disk"),
            cpus: sys("cpucount"),
        };
        for vm in self.vms_on(host) {
            if Some(vm) == except {
                continue;
            }
            let n = self.vm_need(vm);
            f.memory_mib -= n.memory_mib;
            f.disk_gib -= n.disk_gib;
            f.cpus -= n.cpus;
        }
        f
    }

    fn reserved_hosts(&self, mgr: EntityId) -> Vec<String> {
        match self.setting(mgr, "reserved") {
            Some(Value::Json(serde_json::Value::Array(a))) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn describe_fit(&self, host: EntityId, n: &Need, f: &Free) -> String {
        format!(
            "{}: needs {} MiB/{} GiB/{} cpu, free {}/{}/{}",
            self.name_of(host),
            n.memory_mib,
            n.disk_gib,
            n.cpus,
            f.memory_mib,
            f.disk_gib,
            f.cpus
        )
    }

    /// Chooses a host for `vm` under `mgr`: the pinned one (which must
    /// belong to the manager and fit unless `force`), or the best fit.
    pub fn place_vm(
        &self,
        mgr: EntityId,
        vm: EntityId,
        pin: Option<EntityId>,
        force: bool,
    ) -> Result<Placement, CoreError> {
        let vm_name = self.name_of(vm).to_string();
        let rule = |r: String| CoreError::Rule {
            object: vm_name.clone(),
            rule: r,
        };
        let need = self.vm_need(vm);
        let reserved = self.reserved_hosts(mgr);
        let hosts: Vec<EntityId> = self.contents(mgr);
        if let Some(h) = pin {
            if !hosts.contains(&h) {
                return Err(rule(format!(
                    "host {} is not a host of VM manager {}",
                    self.name_of(h),
                    self.name_of(mgr)
                )));
            }
            let free = self.host_free(h, Some(vm));
            if !free.fits(&need) && !force {
                return Err(rule(format!(
                    "{} (does not fit; --force to place it anyway)",
                    self.describe_fit(h, &need, &free)
                )));
            }
            return Ok(Placement {
                host: h,
                reason: format!("pinned to {}", self.describe_fit(h, &need, &free)),
            });
        }
        let mut fitting: Vec<(Free, EntityId)> = hosts
            .into_iter()
            .filter(|h| !reserved.iter().any(|r| r == self.name_of(*h)))
            .map(|h| (self.host_free(h, Some(vm)), h))
            .filter(|(f, _)| f.fits(&need))
            .collect();
        // Smallest that fits: by memory, then cpus, then disk, then name.
        fitting.sort_by(|(a, ha), (b, hb)| {
            (a.memory_mib, a.cpus, a.disk_gib, self.name_of(*ha)).cmp(&(
                b.memory_mib,
                b.cpus,
                b.disk_gib,
                self.name_of(*hb),
            ))
        });
        match fitting.first() {
            Some((f, h)) => Ok(Placement {
                host: *h,
                reason: self.describe_fit(*h, &need, f),
            }),
            None => Err(rule(format!(
                "no host of {} has {} MiB/{} GiB/{} cpu free",
                self.name_of(mgr),
                need.memory_mib,
                need.disk_gib,
                need.cpus
            ))),
        }
    }
}
