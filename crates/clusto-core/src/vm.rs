//! Virtual machines as the controller sees them: what a `VirtualMachine`
//! asks for, what its manager's backend reports, the one decision that
//! takes the second towards the first, and the status written back. Pure:
//! the controller does the I/O, these rules decide.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use crate::error::CoreError;
use crate::hash::fnv64;
use crate::inventory::{Inventory, META_KEY};
use crate::kind::Kind;
use crate::model::EntityId;
use crate::placement::{Need, STATUS_KEY};
use crate::value::Value;

/// `_meta` key set when deletion of a provisioned VM was asked for; the
/// object stays (finalizer semantics) until the controller has removed
/// what the backend holds.
pub const DELETING: &str = "deleting";

/// An attribute's `(key, subkey)`.
pub type AttrName = (&'static str, &'static str);

/// The original clusto's attribute names that mean the same as this
/// project's: `(original key, subkey)` → `(key, subkey)`. One table, used
/// wherever these attributes are read.
pub const ORIGINAL_ATTR_NAMES: &[(AttrName, AttrName)] = &[
    (("aws", "ec2_instance_type"), ("aws", "instance-type")),
    (("aws", "ec2_ami"), ("aws", "ami")),
    (("aws", "ec2_region"), ("aws", "region")),
    (
        ("aws", "ec2_allow_termination"),
        ("aws", "allow-termination"),
    ),
    (("xen", "volume-group"), ("libvirt", "pool")),
];

/// This project's name for an attribute the original may have named.
pub fn canonical_attr<'a>(key: &'a str, sub: &'a str) -> (&'a str, &'a str) {
    ORIGINAL_ATTR_NAMES
        .iter()
        .find(|(orig, _)| *orig == (key, sub))
        .map(|(_, ours)| *ours)
        .unwrap_or((key, sub))
}

/// The original's names for this project's `key.sub`.
pub fn original_names_of<'a>(
    key: &'a str,
    sub: &'a str,
) -> impl Iterator<Item = (&'static str, &'static str)> + 'a {
    ORIGINAL_ATTR_NAMES
        .iter()
        .filter(move |(_, ours)| *ours == (key, sub))
        .map(|(orig, _)| *orig)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Libvirt,
    Ec2,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Libvirt => "libvirt",
            BackendKind::Ec2 => "ec2",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Running,
    Stopped,
}

impl Power {
    pub fn as_str(self) -> &'static str {
        match self {
            Power::Running => "Running",
            Power::Stopped => "Stopped",
        }
    }
}

/// What a VirtualMachine object asks for, read from the inventory.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub id: EntityId,
    pub name: String,
    pub manager: String,
    /// Pinned or placed host (libvirt); None until placed.
    pub host: Option<String>,
    /// Where it is placed, for status: the host, or the EC2 region.
    pub placement: Option<String>,
    pub need: Need,
    pub image: Option<String>,
    pub instance_type: Option<String>,
    pub power: Power,
    pub allow_termination: bool,
    pub deleting: bool,
    /// MACs of the VM's NIC ports, in port order.
    pub macs: Vec<String>,
    /// Merged `libvirt.*` / `aws.*` attributes (from the VM, its pools, its
    /// datacenter), `key.subkey` → text.
    pub attrs: BTreeMap<String, String>,
    /// Digest of everything above that the backend acts on.
    pub fingerprint: String,
}

/// A VMManager's backend settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagerConfig {
    pub name: String,
    pub backend: BackendKind,
    pub libvirt_uri: Option<String>,
    pub libvirt_pool: Option<String>,
    pub ec2: Option<Ec2Config>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ec2Config {
    pub region: String,
    pub endpoint: Option<String>,
    pub budget_per_hour: Option<f64>,
    pub prices: BTreeMap<String, f64>,
    /// A shared-credentials file and profile; credentials themselves are
    /// never stored in the inventory.
    pub credentials_file: Option<String>,
    pub profile: Option<String>,
}

/// What a backend reports about one VM it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// libvirt domain UUID or EC2 instance id.
    pub backend_id: String,
    pub name: String,
    /// The ownership tag: the object's uid, when the resource carries one.
    pub uid: Option<String>,
    pub state: ObservedState,
    pub cpus: Option<i64>,
    pub memory_mib: Option<i64>,
    pub instance_type: Option<String>,
    pub host: Option<String>,
    pub addresses: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObservedState {
    Running,
    Stopped,
    /// Starting, stopping, shutting down: look again soon.
    Transitional(String),
    /// EC2 keeps terminated instances visible for a while.
    Terminated,
}

impl ObservedState {
    pub fn as_str(&self) -> &str {
        match self {
            ObservedState::Running => "Running",
            ObservedState::Stopped => "Stopped",
            ObservedState::Transitional(s) => s,
            ObservedState::Terminated => "Terminated",
        }
    }
}

/// The one step a reconcile takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing to do: the backend matches the spec.
    None,
    Create,
    Start,
    Stop,
    /// Change cpus/memory (libvirt) or instance type (EC2).
    Resize,
    Destroy,
    /// Backend resources are gone: remove the object.
    Finalize,
    /// Look again soon (the backend is between states).
    Wait(String),
    /// Will not act; status says why (`reason`, `message`).
    Refuse {
        reason: String,
        message: String,
    },
}

/// Decides the next step from the spec, what the backend shows, and
/// whether the object was provisioned before (`known`: status has a
/// backend id). Level-triggered: the same inputs always give the same step.
pub fn decide(d: &Desired, backend: BackendKind, o: Option<&Observed>, known: bool) -> Action {
    let present = o.filter(|o| o.state != ObservedState::Terminated);
    if d.deleting {
        return match present {
            None => Action::Finalize,
            Some(_) if backend == BackendKind::Ec2 && !d.allow_termination => Action::Refuse {
                reason: "TerminationRefused".into(),
                message: format!(
                    "{} is to be deleted but allowTermination is false; set it to true to terminate the instance",
                    d.name
                ),
            },
            Some(o) if matches!(o.state, ObservedState::Transitional(_)) => {
                Action::Wait(format!("{} is {}", o.backend_id, o.state.as_str()))
            }
            Some(_) => Action::Destroy,
        };
    }
    let Some(o) = present else {
        // An instance that disappeared is not silently replaced on EC2:
        // what was on it is gone and a new one costs money.
        if known && backend == BackendKind::Ec2 {
            return Action::Refuse {
                reason: "Lost".into(),
                message: match o {
                    Some(o) => format!("instance {} was terminated outside clusto; delete and re-create the object for a new one", o.backend_id),
                    None => "the instance is gone from the backend; delete and re-create the object for a new one".into(),
                },
            };
        }
        return Action::Create;
    };
    if let ObservedState::Transitional(s) = &o.state {
        return Action::Wait(format!("{} is {s}", o.backend_id));
    }
    if needs_resize(d, backend, o) {
        return Action::Resize;
    }
    match (d.power, &o.state) {
        (Power::Running, ObservedState::Stopped) => Action::Start,
        (Power::Stopped, ObservedState::Running) => Action::Stop,
        _ => Action::None,
    }
}

/// Whether the backend's size differs from the spec in what it can change.
pub fn needs_resize(d: &Desired, backend: BackendKind, o: &Observed) -> bool {
    match backend {
        BackendKind::Libvirt => {
            o.cpus.is_some_and(|c| c != d.need.cpus)
                || o.memory_mib.is_some_and(|m| m != d.need.memory_mib)
        }
        BackendKind::Ec2 => match (&d.instance_type, &o.instance_type) {
            (Some(want), Some(have)) => want != have,
            _ => false,
        },
    }
}

/// A condition in status, Kubernetes-style.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub kind: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// What the controller writes back under `status`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VmStatus {
    pub phase: String,
    pub backend_id: Option<String>,
    pub power_state: Option<String>,
    pub observed_addresses: Vec<String>,
    pub conditions: Vec<Condition>,
    pub observed_revision: Option<i64>,
    pub observed_spec: Option<String>,
    pub last_error: Option<String>,
}

impl VmStatus {
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

/// Conditions as stored under `status.conditions`.
pub fn conditions_json(conditions: &[Condition]) -> Json {
    Json::Array(
        conditions
            .iter()
            .map(|c| {
                json!({"type": c.kind, "status": if c.status {"True"} else {"False"},
                       "reason": c.reason, "message": c.message})
            })
            .collect(),
    )
}

/// Conditions read back from `status.conditions`: those of the `known`
/// types (others are not this reader's).
pub fn conditions_from(v: Option<&Value>, known: &[&'static str]) -> Vec<Condition> {
    let Some(Value::Json(Json::Array(a))) = v else {
        return Vec::new();
    };
    a.iter()
        .filter_map(|c| {
            let kind = *known.iter().find(|k| c["type"].as_str() == Some(**k))?;
            Some(Condition {
                kind,
                status: c["status"] == "True",
                reason: c["reason"].as_str().unwrap_or_default().into(),
                message: c["message"].as_str().unwrap_or_default().into(),
            })
        })
        .collect()
}

/// Builds the status after a reconcile: `after` is what the backend holds
/// now, `outcome` the refusal or error that stopped it, if any.
pub fn status_for(
    d: &Desired,
    after: Option<&Observed>,
    outcome: Option<&Action>,
    error: Option<&str>,
) -> VmStatus {
    let placed = d.placement.is_some();
    let present = after.filter(|o| o.state != ObservedState::Terminated);
    let mut st = VmStatus {
        backend_id: present.map(|o| o.backend_id.clone()),
        power_state: present.map(|o| o.state.as_str().to_string()),
        observed_addresses: present.map(|o| o.addresses.clone()).unwrap_or_default(),
        last_error: error.map(str::to_string),
        ..VmStatus::default()
    };
    let refused = match outcome {
        Some(Action::Refuse { reason, message }) => Some((reason.clone(), message.clone())),
        _ => None,
    };
    st.phase = if d.deleting {
        "Terminating".into()
    } else if let Some((r, _)) = refused.as_ref().filter(|(r, _)| r == "Lost") {
        r.clone()
    } else if let Some(o) = present {
        match &o.state {
            ObservedState::Running => "Running".into(),
            ObservedState::Stopped => "Stopped".into(),
            ObservedState::Transitional(_) => "Pending".into(),
            ObservedState::Terminated => "Terminated".into(),
        }
    } else if error.is_some() || refused.is_some() {
        "Failed".into()
    } else {
        "Provisioning".into()
    };
    st.conditions.push(Condition {
        kind: "Placed",
        status: placed,
        reason: if placed { "Placed" } else { "Unplaced" }.into(),
        message: d.placement.clone().unwrap_or_default(),
    });
    st.conditions.push(Condition {
        kind: "Provisioned",
        status: present.is_some(),
        reason: if present.is_some() {
            "Provisioned"
        } else {
            "NotProvisioned"
        }
        .into(),
        message: present.map(|o| o.backend_id.clone()).unwrap_or_default(),
    });
    let ready = !d.deleting
        && error.is_none()
        && refused.is_none()
        && present.is_some_and(|o| o.state.as_str() == d.power.as_str());
    let (reason, message) = if let Some((r, m)) = refused {
        (r, m)
    } else if let Some(e) = error {
        ("ReconcileError".into(), e.to_string())
    } else if d.deleting {
        ("Deleting".into(), String::new())
    } else if ready {
        (d.power.as_str().into(), String::new())
    } else {
        let have = present.map(|o| o.state.as_str()).unwrap_or("absent");
        (
            "Converging".into(),
            format!("want {}, have {have}", d.power.as_str()),
        )
    };
    st.conditions.push(Condition {
        kind: "Ready",
        status: ready,
        reason,
        message,
    });
    st
}

/// The object's uid: unique across stores (the store's own uid) and
/// never reused (entity ids are not), shaped as a UUID so libvirt can use
/// it as the domain UUID.
pub fn vm_uid(store_uid: &str, id: EntityId) -> String {
    format!(
        "{}{:04x}-{:012x}",
        uid_prefix(store_uid),
        (id.0 as u64) >> 48,
        (id.0 as u64) & 0xffff_ffff_ffff
    )
}

/// The part of every VM uid that names the store (`xxxxxxxx-xxxx-xxxx-`).
pub fn uid_prefix(store_uid: &str) -> String {
    let s: String = store_uid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .chain(std::iter::repeat('0'))
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("{}-{}-{}-", &s[..8], &s[8..12], &s[12..16])
}

fn text(v: Option<&Value>) -> Option<String> {
    match v {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => v.to_text(),
    }
}

fn json_setting(inv: &Inventory, id: EntityId, f: &str) -> Json {
    match inv.setting(id, f) {
        Some(Value::Json(j)) => j.clone(),
        _ => Json::Null,
    }
}

impl Inventory {
    fn vm_rule(&self, id: EntityId, rule: impl Into<String>) -> CoreError {
        CoreError::Rule {
            object: self.name_of(id).to_string(),
            rule: rule.into(),
        }
    }

    /// VMs name their manager, and only it knows where their resources
    /// are: a manager with VMs is neither renamed nor deleted.
    pub(crate) fn check_vm_manager_unused(
        &self,
        id: EntityId,
        what: &str,
    ) -> Result<(), CoreError> {
        if self.kind_of(id) != Some(Kind::VmManager) {
            return Ok(());
        }
        let name = self.name_of(id);
        let users: Vec<&str> = self
            .entities_of_kind(Kind::VirtualMachine)
            .into_iter()
            .filter(|v| text(self.setting(v.id, "manager")).as_deref() == Some(name))
            .map(|v| v.name.as_str())
            .collect();
        if users.is_empty() {
            return Ok(());
        }
        Err(self.vm_rule(
            id,
            format!(
                "VM manager cannot be {what} while it has VMs ({}); delete them first",
                users.join(", ")
            ),
        ))
    }

    /// Whether deletion of this VM was asked for and awaits the controller.
    pub fn vm_deleting(&self, id: EntityId) -> bool {
        matches!(
            self.attr_value(id, META_KEY, Some(DELETING)),
            Some(Value::Bool(true))
        )
    }

    /// What a VirtualMachine asks for. Its `libvirt.*` and `aws.*` merged
    /// attributes travel along (the original's names become this
    /// project's, see [`ORIGINAL_ATTR_NAMES`]).
    pub fn vm_desired(&self, id: EntityId) -> Result<Desired, CoreError> {
        if self.kind_of(id) != Some(Kind::VirtualMachine) {
            return Err(self.vm_rule(id, "not a VirtualMachine"));
        }
        let power = match text(self.setting(id, "powerState")).as_deref() {
            None | Some("Running") => Power::Running,
            Some("Stopped") => Power::Stopped,
            Some(p) => {
                return Err(self.vm_rule(
                    id,
                    format!("powerState must be Running or Stopped, not {p:?}"),
                ));
            }
        };
        let mut attrs = BTreeMap::new();
        for m in self.merged_attrs(id, None, None, false) {
            let Some(sk) = &m.attr.subkey else {
                continue;
            };
            // Nearest first, whichever spelling (this project's or the
            // original's) a level uses.
            let (key, sk) = canonical_attr(&m.attr.key, sk);
            if key == "libvirt" || key == "aws" {
                attrs
                    .entry(format!("{key}.{sk}"))
                    .or_insert_with(|| self.value_text(&m.attr.value));
            }
        }
        let mut d = Desired {
            id,
            name: self.name_of(id).to_string(),
            manager: text(self.setting(id, "manager")).unwrap_or_default(),
            host: self.vm_host(id).map(str::to_string),
            placement: None,
            need: self.vm_need(id),
            image: text(self.setting(id, "image")),
            instance_type: text(self.setting(id, "instanceType")),
            power,
            allow_termination: match self.setting(id, "allowTermination") {
                Some(v) => {
                    matches!(v, Value::Bool(true)) || text(Some(v)).as_deref() == Some("true")
                }
                None => attrs
                    .get("aws.allow-termination")
                    .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True")),
            },
            deleting: self.vm_deleting(id),
            macs: self
                .nic_macs(id)
                .into_iter()
                .map(|(_, m)| m.clone())
                .collect(),
            attrs,
            fingerprint: String::new(),
        };
        d.placement = match self
            .id_of(&d.manager)
            .and_then(|m| self.vm_manager_config(m))
        {
            Ok(ManagerConfig {
                ec2: Some(e),
                backend: BackendKind::Ec2,
                ..
            }) => {
                if let Some(r) = d.attrs.get("aws.region").filter(|r| **r != e.region) {
                    return Err(self.vm_rule(
                        id,
                        format!(
                            "aws.region asks for {r} but VMManager {} runs in {}; give the VM \
                             a VMManager for {r}",
                            d.manager, e.region
                        ),
                    ));
                }
                Some(format!("ec2 region {}", e.region))
            }
            _ => d.host.clone(),
        };
        let fp = format!(
            "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}|{:?}|{:?}",
            d.manager,
            d.host,
            d.need,
            d.image,
            d.instance_type,
            d.power,
            d.allow_termination,
            d.deleting,
            d.macs,
            d.attrs
        );
        d.fingerprint = format!("{:016x}", fnv64(&fp));
        Ok(d)
    }

    /// A VMManager's backend settings.
    pub fn vm_manager_config(&self, mgr: EntityId) -> Result<ManagerConfig, CoreError> {
        if self.kind_of(mgr) != Some(Kind::VmManager) {
            return Err(self.vm_rule(mgr, "not a VMManager"));
        }
        let backend = match text(self.setting(mgr, "backend")).as_deref() {
            None | Some("libvirt") => BackendKind::Libvirt,
            Some("ec2") => BackendKind::Ec2,
            Some(b) => return Err(self.vm_rule(mgr, format!("unknown backend {b:?}"))),
        };
        let lv = json_setting(self, mgr, "libvirt");
        let ec2 = json_setting(self, mgr, "ec2");
        let ec2 = match backend {
            BackendKind::Libvirt => None,
            BackendKind::Ec2 => {
                let Some(region) = ec2["region"].as_str() else {
                    return Err(self.vm_rule(mgr, "an ec2 VMManager needs ec2.region"));
                };
                let mut prices: BTreeMap<String, f64> = BTreeMap::new();
                for table in [&json_setting(self, mgr, "prices"), &ec2["prices"]] {
                    for (k, v) in table.as_object().into_iter().flatten() {
                        if let Some(p) = v.as_f64() {
                            prices.insert(k.clone(), p);
                        }
                    }
                }
                let s = |k: &str| ec2[k].as_str().map(str::to_string);
                Some(Ec2Config {
                    region: region.to_string(),
                    endpoint: s("endpoint"),
                    budget_per_hour: ec2["budgetPerHour"].as_f64(),
                    prices,
                    credentials_file: s("credentialsFile"),
                    profile: s("profile"),
                })
            }
        };
        Ok(ManagerConfig {
            name: self.name_of(mgr).to_string(),
            backend,
            libvirt_uri: lv["uri"].as_str().map(str::to_string),
            libvirt_pool: lv["pool"].as_str().map(str::to_string),
            ec2,
        })
    }

    /// The libvirt connection of a hypervisor: its own `libvirt.uri`
    /// attribute (merged), else the manager's template with `{hostname}`
    /// and `{address}` filled in.
    pub fn libvirt_uri(&self, mgr: EntityId, host: EntityId) -> Result<String, CoreError> {
        if let Some((v, _)) = self.merged_value(host, "libvirt", Some("uri")) {
            return Ok(self.value_text(v));
        }
        let cfg = self.vm_manager_config(mgr)?;
        let Some(t) = cfg.libvirt_uri else {
            return Err(self.vm_rule(
                host,
                format!(
                    "no libvirt.uri attribute and VM manager {} has no libvirt.uri template",
                    cfg.name
                ),
            ));
        };
        let mut uri = t.replace("{hostname}", self.name_of(host));
        if uri.contains("{address}") {
            let Some(a) = self.addresses_of(host).into_iter().next() else {
                return Err(self.vm_rule(
                    host,
                    format!("libvirt.uri template {t} needs an address and the host has none"),
                ));
            };
            uri = uri.replace("{address}", &a.address.to_string());
        }
        Ok(uri)
    }

    /// The storage pool for a hypervisor's VM disks: `libvirt.pool`
    /// (merged; the original's `xen.volume-group` too), else the manager's.
    pub fn libvirt_pool(&self, mgr: EntityId, host: EntityId) -> String {
        for (k, sk) in
            std::iter::once(("libvirt", "pool")).chain(original_names_of("libvirt", "pool"))
        {
            if let Some((v, _)) = self.merged_value(host, k, Some(sk)) {
                return self.value_text(v);
            }
        }
        self.vm_manager_config(mgr)
            .ok()
            .and_then(|c| c.libvirt_pool)
            .unwrap_or_else(|| "default".into())
    }

    /// The EC2 budget rule: the hourly price of the manager's provisioned
    /// VMs plus this one may not exceed `budgetPerHour`.
    /// `pending` are VMs approved for creation but not yet recorded.
    pub fn ec2_budget_check(
        &self,
        vm: EntityId,
        pending: &std::collections::BTreeSet<EntityId>,
    ) -> Result<(), String> {
        let d = self.vm_desired(vm).map_err(|e| e.to_string())?;
        let mgr = self.id_of(&d.manager).map_err(|e| e.to_string())?;
        let cfg = self.vm_manager_config(mgr).map_err(|e| e.to_string())?;
        let Some(ec2) = cfg.ec2 else { return Ok(()) };
        let Some(budget) = ec2.budget_per_hour else {
            return Ok(());
        };
        let price = |id: EntityId| -> Result<f64, String> {
            let t = text(self.setting(id, "instanceType")).unwrap_or_default();
            ec2.prices.get(&t).copied().ok_or_else(|| {
                format!(
                    "instance type {t:?} has no price in {}'s price table, and the manager has a budget",
                    cfg.name
                )
            })
        };
        let mut spent = 0.0;
        for other in self.entities_of_kind(Kind::VirtualMachine) {
            if other.id == vm
                || text(self.setting(other.id, "manager")).as_deref() != Some(&cfg.name)
                || (self
                    .attr_value(other.id, STATUS_KEY, Some("backendId"))
                    .is_none()
                    && !pending.contains(&other.id))
            {
                continue;
            }
            spent += price(other.id).unwrap_or(0.0);
        }
        let mine = price(vm)?;
        if spent + mine > budget + 1e-9 {
            return Err(format!(
                "budget exceeded: {:.4} USD/h running + {mine:.4} for {} > budgetPerHour {budget:.4} of {}",
                spent, d.name, cfg.name
            ));
        }
        Ok(())
    }

    /// The status the controller last wrote.
    pub fn vm_status(&self, id: EntityId) -> VmStatus {
        let s = |k: &str| text(self.attr_value(id, STATUS_KEY, Some(k)));
        let conditions = conditions_from(
            self.attr_value(id, STATUS_KEY, Some("conditions")),
            &["Placed", "Provisioned", "Ready"],
        );
        VmStatus {
            phase: s("phase").unwrap_or_default(),
            backend_id: s("backendId"),
            power_state: s("powerState"),
            observed_addresses: match self.attr_value(id, STATUS_KEY, Some("observedAddresses")) {
                Some(Value::Json(Json::Array(a))) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            },
            conditions,
            observed_revision: match self.attr_value(id, STATUS_KEY, Some("observedRevision")) {
                Some(Value::Int(i)) => Some(*i),
                _ => None,
            },
            observed_spec: s("observedSpec"),
            last_error: s("lastError"),
        }
    }

    /// The phase to show: `Terminating` as soon as deletion is asked for,
    /// `Pending` until a controller has written one.
    pub fn vm_phase(&self, id: EntityId) -> String {
        if self.vm_deleting(id) {
            return "Terminating".into();
        }
        match text(self.attr_value(id, STATUS_KEY, Some("phase"))) {
            Some(p) if !p.is_empty() => p,
            _ => "Pending".into(),
        }
    }

    /// Records a VM's status; writes only the fields that changed.
    pub fn set_vm_status(&mut self, id: EntityId, st: &VmStatus) {
        let mut put = |k: &str, v: Option<Value>| match v {
            Some(v) => self.put_internal(id, STATUS_KEY, k, v),
            None => self.clear_internal(id, STATUS_KEY, k),
        };
        put("phase", Some(Value::String(st.phase.clone())));
        put("backendId", st.backend_id.clone().map(Value::String));
        put("powerState", st.power_state.clone().map(Value::String));
        put(
            "observedAddresses",
            (!st.observed_addresses.is_empty()).then(|| Value::Json(json!(st.observed_addresses))),
        );
        put(
            "conditions",
            Some(Value::Json(conditions_json(&st.conditions))),
        );
        put("observedRevision", st.observed_revision.map(Value::Int));
        put("observedSpec", st.observed_spec.clone().map(Value::String));
        put("lastError", st.last_error.clone().map(Value::String));
    }

    /// Removes a VM whose backend resources are gone (the finalizer's end).
    pub fn finalize_vm(&mut self, id: EntityId) -> Result<(), CoreError> {
        if self.kind_of(id) != Some(Kind::VirtualMachine) {
            return Err(self.vm_rule(id, "not a VirtualMachine"));
        }
        self.remove_entity(id)
    }

    /// Sets a VM's desired power state (`clusto vm start|stop`).
    pub fn set_vm_power(&mut self, id: EntityId, power: Power) -> Result<(), CoreError> {
        if self.kind_of(id) != Some(Kind::VirtualMachine) {
            return Err(self.vm_rule(id, "not a VirtualMachine"));
        }
        if self.vm_deleting(id) {
            return Err(self.vm_rule(id, "is being deleted"));
        }
        self.put_internal(
            id,
            crate::inventory::SPEC_KEY,
            "powerState",
            Value::String(power.as_str().into()),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;

    fn desired(power: Power) -> Desired {
        Desired {
            id: EntityId(7),
            name: "vm1".into(),
            manager: "m".into(),
            host: Some("h1".into()),
            placement: Some("h1".into()),
            need: Need {
                memory_mib: 1024,
                disk_gib: 10,
                cpus: 2,
            },
            image: None,
            instance_type: Some("t3.micro".into()),
            power,
            allow_termination: false,
            deleting: false,
            macs: vec![],
            attrs: BTreeMap::new(),
            fingerprint: "f".into(),
        }
    }

    fn observed(state: ObservedState) -> Observed {
        Observed {
            backend_id: "id-1".into(),
            name: "vm1".into(),
            uid: Some("u".into()),
            state,
            cpus: Some(2),
            memory_mib: Some(1024),
            instance_type: Some("t3.micro".into()),
            host: None,
            addresses: vec![],
        }
    }

    #[test]
    fn decide_creates_starts_stops_and_leaves_alone() {
        let run = desired(Power::Running);
        let stop = desired(Power::Stopped);
        let lv = BackendKind::Libvirt;
        assert_eq!(decide(&run, lv, None, false), Action::Create);
        // libvirt: a domain gone out of band is defined again.
        assert_eq!(decide(&run, lv, None, true), Action::Create);
        let off = observed(ObservedState::Stopped);
        let on = observed(ObservedState::Running);
        assert_eq!(decide(&run, lv, Some(&off), true), Action::Start);
        assert_eq!(decide(&stop, lv, Some(&on), true), Action::Stop);
        assert_eq!(decide(&run, lv, Some(&on), true), Action::None);
        let busy = observed(ObservedState::Transitional("pending".into()));
        assert!(matches!(
            decide(&run, lv, Some(&busy), true),
            Action::Wait(_)
        ));
    }

    #[test]
    fn decide_resizes_what_the_backend_can_change() {
        let mut d = desired(Power::Running);
        let o = observed(ObservedState::Running);
        d.need.memory_mib = 2048;
        assert_eq!(
            decide(&d, BackendKind::Libvirt, Some(&o), true),
            Action::Resize
        );
        // EC2 sizes by instance type only.
        assert_eq!(decide(&d, BackendKind::Ec2, Some(&o), true), Action::None);
        d.instance_type = Some("t3.small".into());
        assert_eq!(decide(&d, BackendKind::Ec2, Some(&o), true), Action::Resize);
    }

    #[test]
    fn ec2_instances_lost_out_of_band_are_reported_not_replaced() {
        let d = desired(Power::Running);
        let gone = observed(ObservedState::Terminated);
        match decide(&d, BackendKind::Ec2, Some(&gone), true) {
            Action::Refuse { reason, message } => {
                assert_eq!(reason, "Lost");
                assert!(message.contains("id-1"), "{message}");
            }
            a => panic!("{a:?}"),
        }
        assert!(matches!(
            decide(&d, BackendKind::Ec2, None, true),
            Action::Refuse { .. }
        ));
        // Never provisioned: create.
        assert_eq!(decide(&d, BackendKind::Ec2, None, false), Action::Create);
    }

    #[test]
    fn deletion_destroys_then_finalizes_and_guards_ec2() {
        let mut d = desired(Power::Running);
        d.deleting = true;
        let on = observed(ObservedState::Running);
        assert_eq!(
            decide(&d, BackendKind::Libvirt, Some(&on), true),
            Action::Destroy
        );
        assert_eq!(
            decide(&d, BackendKind::Libvirt, None, true),
            Action::Finalize
        );
        match decide(&d, BackendKind::Ec2, Some(&on), true) {
            Action::Refuse { reason, .. } => assert_eq!(reason, "TerminationRefused"),
            a => panic!("{a:?}"),
        }
        d.allow_termination = true;
        assert_eq!(
            decide(&d, BackendKind::Ec2, Some(&on), true),
            Action::Destroy
        );
        let t = observed(ObservedState::Terminated);
        assert_eq!(
            decide(&d, BackendKind::Ec2, Some(&t), true),
            Action::Finalize
        );
    }

    #[test]
    fn status_says_phase_and_why_not_ready() {
        let d = desired(Power::Running);
        let on = observed(ObservedState::Running);
        let st = status_for(&d, Some(&on), None, None);
        assert_eq!(st.phase, "Running");
        assert!(st.condition("Ready").unwrap().status);
        assert!(st.condition("Placed").unwrap().status);
        let off = observed(ObservedState::Stopped);
        let st = status_for(&d, Some(&off), None, None);
        let r = st.condition("Ready").unwrap();
        assert!(!r.status);
        assert_eq!(r.message, "want Running, have Stopped");
        let st = status_for(&d, None, None, Some("connection refused"));
        assert_eq!(st.phase, "Failed");
        assert_eq!(st.condition("Ready").unwrap().reason, "ReconcileError");
        assert_eq!(st.last_error.as_deref(), Some("connection refused"));
        assert!(!st.condition("Provisioned").unwrap().status);
    }

    #[test]
    fn uids_are_uuid_shaped_and_carry_the_store() {
        let u = vm_uid("0123456789abcdef0123456789abcdef", EntityId(42));
        assert_eq!(u, "01234567-89ab-cdef-0000-00000000002a");
        assert!(u.starts_with(&uid_prefix("0123456789abcdef0123456789abcdef")));
        assert_ne!(u, vm_uid("ffff456789abcdef0123456789abcdef", EntityId(42)));
    }

    fn ec2_inventory(budget: f64) -> (Inventory, Vec<EntityId>) {
        let mut inv = Inventory::new();
        let m = inv.create(Kind::VmManager, "aws", None).unwrap();
        inv.configure(m, "backend", "ec2").unwrap();
        inv.configure(
            m,
            "ec2",
            &json!({"region": "eu-west-1", "budgetPerHour": budget,
                    "prices": {"small": 0.5, "big": 2.0}})
            .to_string(),
        )
        .unwrap();
        let mut vms = Vec::new();
        for (n, t) in [
            ("a", "small"),
            ("b", "small"),
            ("c", "big"),
            ("d", "unpriced"),
        ] {
            let v = inv.create(Kind::VirtualMachine, n, None).unwrap();
            inv.configure(v, "manager", "aws").unwrap();
            inv.configure(v, "instanceType", t).unwrap();
            vms.push(v);
        }
        (inv, vms)
    }

    /// The original's `aws.ec2_*` names, set on a pool the VM is in, mean
    /// what this project's names mean; a region the manager does not run in
    /// is refused with the rule, not ignored.
    #[test]
    fn the_original_aws_attribute_names_are_understood() {
        use crate::inventory::NumberSpec;
        let (mut inv, vms) = ec2_inventory(100.0);
        let pool = inv.create(Kind::Pool, "web", None).unwrap();
        inv.insert(pool, vms[0], None).unwrap();
        let set = |inv: &mut Inventory, e, sk: &str, v: Value| {
            inv.attr_set(e, "aws", Some(sk), NumberSpec::None, v)
                .unwrap();
        };
        set(&mut inv, pool, "ec2_ami", Value::String("ami-123".into()));
        set(
            &mut inv,
            pool,
            "ec2_instance_type",
            Value::String("m5.large".into()),
        );
        set(&mut inv, pool, "ec2_allow_termination", Value::Int(1));
        set(
            &mut inv,
            pool,
            "ec2_region",
            Value::String("eu-west-1".into()),
        );
        let d = inv.vm_desired(vms[0]).unwrap();
        assert_eq!(d.attrs.get("aws.ami").map(String::as_str), Some("ami-123"));
        assert_eq!(
            d.attrs.get("aws.instance-type").map(String::as_str),
            Some("m5.large")
        );
        assert!(d.allow_termination);
        // The VM's own (nearer) value wins whichever name either level uses.
        set(&mut inv, vms[0], "ami", Value::String("ami-own".into()));
        assert_eq!(inv.vm_desired(vms[0]).unwrap().attrs["aws.ami"], "ami-own");
        set(
            &mut inv,
            pool,
            "ec2_region",
            Value::String("us-west-2".into()),
        );
        let e = inv.vm_desired(vms[0]).unwrap_err().to_string();
        assert!(
            e.contains("aws.region asks for us-west-2 but VMManager aws runs in eu-west-1"),
            "{e}"
        );
        // xen.volume-group on a hypervisor is its libvirt storage pool.
        let mgr = inv.create(Kind::VmManager, "xen", None).unwrap();
        let host = inv.create(Kind::Server, "h1", None).unwrap();
        inv.attr_set(
            host,
            "xen",
            Some("volume-group"),
            NumberSpec::None,
            Value::String("vg0".into()),
        )
        .unwrap();
        assert_eq!(inv.libvirt_pool(mgr, host), "vg0");
    }

    #[test]
    fn ec2_budget_counts_provisioned_and_pending_vms() {
        let (mut inv, vms) = ec2_inventory(1.2);
        let none = std::collections::BTreeSet::new();
        assert_eq!(inv.ec2_budget_check(vms[0], &none), Ok(()));
        inv.put_internal(vms[0], STATUS_KEY, "backendId", Value::String("i-1".into()));
        // a (0.5) recorded + b (0.5) fits 1.2; with c (2.0) it would not.
        assert_eq!(inv.ec2_budget_check(vms[1], &none), Ok(()));
        let e = inv.ec2_budget_check(vms[2], &none).unwrap_err();
        assert!(
            e.contains("budget exceeded") && e.contains("budgetPerHour"),
            "{e}"
        );
        // A VM approved earlier in the same pass counts too: a (recorded)
        // + b (pending) + e would be 1.5 > 1.2.
        let e = inv.create(Kind::VirtualMachine, "e", None).unwrap();
        inv.configure(e, "manager", "aws").unwrap();
        inv.configure(e, "instanceType", "small").unwrap();
        assert_eq!(inv.ec2_budget_check(e, &none), Ok(()));
        let pending = std::collections::BTreeSet::from([vms[1]]);
        assert!(inv.ec2_budget_check(e, &pending).is_err());
        // No price for the type: refused while there is a budget.
        let e = inv.ec2_budget_check(vms[3], &none).unwrap_err();
        assert!(e.contains("no price"), "{e}");
    }

    #[test]
    fn deleting_a_vm_a_controller_touched_only_marks_it() {
        let mut inv = Inventory::new();
        let v = inv.create(Kind::VirtualMachine, "v", None).unwrap();
        inv.delete(v).unwrap();
        assert!(inv.entity(v).is_none(), "never reconciled: gone at once");
        let v = inv.create(Kind::VirtualMachine, "w", None).unwrap();
        inv.put_internal(v, STATUS_KEY, "phase", Value::String("Running".into()));
        inv.delete(v).unwrap();
        assert!(inv.entity(v).is_some() && inv.vm_deleting(v));
        assert!(inv.set_vm_power(v, Power::Stopped).is_err());
        inv.finalize_vm(v).unwrap();
        assert!(inv.entity(v).is_none());
    }

    #[test]
    fn managers_with_vms_stay_and_hosts_carry_their_vms_on_rename() {
        let mut inv = Inventory::new();
        let m = inv.create(Kind::VmManager, "m", None).unwrap();
        let h = inv.create(Kind::Server, "h1", None).unwrap();
        for (k, v) in [("memory", 4096), ("disk", 100), ("cpucount", 4)] {
            inv.attr_set(h, "system", Some(k), crate::NumberSpec::None, Value::Int(v))
                .unwrap();
        }
        inv.insert(m, h, None).unwrap();
        let v = inv.create(Kind::VirtualMachine, "v", None).unwrap();
        inv.configure(v, "manager", "m").unwrap();
        inv.place_and_record(v).unwrap();
        assert_eq!(inv.vm_host(v), Some("h1"));
        let e = inv.delete(m).unwrap_err().to_string();
        assert!(e.contains("cannot be deleted while it has VMs (v)"), "{e}");
        assert!(inv.rename(m, "m2").is_err());
        inv.rename(h, "h9").unwrap();
        assert_eq!(inv.vm_host(v), Some("h9"));
        assert_eq!(inv.vms_on(h), vec![v]);
        inv.delete(v).unwrap();
        inv.delete(m).unwrap();
    }

    #[test]
    fn a_provisioned_vm_stays_on_its_host() {
        let mut inv = Inventory::new();
        let m = inv.create(Kind::VmManager, "m", None).unwrap();
        for (h, mem) in [("h1", 2048), ("h2", 8192)] {
            let id = inv.create(Kind::Server, h, None).unwrap();
            for (k, v) in [("memory", mem), ("disk", 100), ("cpucount", 4)] {
                inv.attr_set(
                    id,
                    "system",
                    Some(k),
                    crate::NumberSpec::None,
                    Value::Int(v),
                )
                .unwrap();
            }
            inv.insert(m, id, None).unwrap();
        }
        let v = inv.create(Kind::VirtualMachine, "v", None).unwrap();
        inv.configure(v, "manager", "m").unwrap();
        inv.configure(v, "memoryMiB", "1024").unwrap();
        inv.place_and_record(v).unwrap();
        assert_eq!(inv.vm_host(v), Some("h1"));
        inv.put_internal(v, STATUS_KEY, "backendId", Value::String("uuid".into()));
        // Bigger than h1 can hold: not silently moved to h2 (a second domain).
        inv.configure(v, "memoryMiB", "4096").unwrap();
        let e = inv.place_and_record(v).unwrap_err().to_string();
        assert!(e.contains("stays on the host it runs on"), "{e}");
        assert!(inv.place_and_record_forced(v, true).is_ok());
        assert_eq!(inv.vm_host(v), Some("h1"));
        // Pinned elsewhere: refused, no migration.
        inv.configure(v, "memoryMiB", "1024").unwrap();
        inv.configure(v, "host", "h2").unwrap();
        let e = inv.place_and_record(v).unwrap_err().to_string();
        assert!(e.contains("does not migrate"), "{e}");
        // Nor moved to another manager (EC2 here).
        inv.clear_setting(v, "host");
        let m2 = inv.create(Kind::VmManager, "aws", None).unwrap();
        inv.configure(m2, "backend", "ec2").unwrap();
        inv.configure(m2, "ec2", r#"{"region": "us-east-1"}"#)
            .unwrap();
        inv.configure(v, "manager", "aws").unwrap();
        let e = inv.place_and_record(v).unwrap_err().to_string();
        assert!(e.contains("between managers"), "{e}");
    }
}
