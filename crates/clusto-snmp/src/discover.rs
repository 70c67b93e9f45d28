//! The discovery rule, pure over an inventory view: which switch a trap is
//! from, whether that switch may discover, and what each MAC record means
//! for the device on (or the slot behind) its port. The daemon runs it on
//! its cached view to see whether a trap changes anything, and again inside
//! the write transaction to make the change.

use std::net::IpAddr;

use clusto_core::inventory::NumberSpec;
use clusto_core::{CoreError, EntityId, Inventory, PortId, Value};
use clusto_manifest::layout::{self, PlaceError, Slot};

use crate::cmn::{MacRecord, Operation};
use crate::message::Principal;

/// Where a device keeps what discovery saw but did not record.
pub const OBSERVATION_KEY: &str = "discovery";

/// Why a whole trap is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `snmp.community` is set for the switch and the trap carried another.
    CommunityMismatch,
    /// `snmp.discovery` is not true on the switch or anything it inherits from.
    DiscoveryOff,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::CommunityMismatch => "bad_community",
            Refused::DiscoveryOff => "discovery_off",
        }
    }
}

/// What one record came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything it says is recorded already.
    Known { device: String },
    /// The cabled device's MAC, `bootstrap.mac` or the port's VLAN recorded.
    Recorded { device: String },
    /// The cabled device has another MAC on record: kept, and what was seen
    /// is recorded beside it as `discovery.observed-mac`/`-port`.
    Conflict { device: String, recorded: String },
    /// A new server, placed by the rack's layout.
    Created { server: String },
    /// Nothing cabled there and no layout slot for it (or no such port).
    NoSlot { why: String },
    /// A MAC left the port: nothing is deleted.
    Removed,
    /// Placing or recording failed; nothing of this record was written.
    Failed { why: String },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Known { .. } => "known",
            Outcome::Recorded { .. } => "recorded",
            Outcome::Conflict { .. } => "conflict",
            Outcome::Created { .. } => "created",
            Outcome::NoSlot { .. } => "no_slot",
            Outcome::Removed => "removed",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// The device holding `ip` (a trap's source, or a v1 trap's agent-addr).
pub fn switch_for(inv: &Inventory, ip: IpAddr) -> Option<EntityId> {
    inv.address(ip).map(|a| a.holder)
}

/// Community and discovery, from the switch's merged attributes (its own,
/// then its rack's, datacenter's and pools').
pub fn admit(inv: &Inventory, switch: EntityId, principal: &Principal) -> Result<(), Refused> {
    if let Principal::Community(got) = principal
        && let Some((want, _)) = inv.merged_value(switch, "snmp", Some("community"))
        && want.to_text().as_deref() != Some(got.as_str())
    {
        return Err(Refused::CommunityMismatch);
    }
    match inv.merged_value(switch, "snmp", Some("discovery")) {
        Some((v, _)) if truthy(v) => Ok(()),
        _ => Err(Refused::DiscoveryOff),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Int(n) => *n == 1,
        other => matches!(
            other
                .to_text()
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("true" | "1" | "yes" | "on")
        ),
    }
}

fn nic(num: u16) -> PortId {
    PortId {
        ptype: "nic-eth".into(),
        num: num as u32,
    }
}

/// The layout slot a learnt record on an empty port would fill, if any:
/// what a write must load beyond the view (its name and address managers).
pub fn slot_to_fill(inv: &Inventory, switch: EntityId, rec: &MacRecord) -> Option<Slot> {
    if rec.operation != Operation::Learnt || inv.port_peer(switch, &nic(rec.port)).is_some() {
        return None;
    }
    let (rack, _) = inv.rack_of(switch)?;
    layout::slot_for(
        inv,
        inv.name_of(rack),
        Some(inv.name_of(switch)),
        rec.port as u32,
    )
    .ok()
}

/// Applies one record to `inv`, all or nothing.
pub fn discover(inv: &mut Inventory, switch: EntityId, rec: &MacRecord) -> Outcome {
    if rec.operation == Operation::Removed {
        return Outcome::Removed;
    }
    let port = nic(rec.port);
    if let Err(e) = inv.check_port(switch, &port) {
        return Outcome::NoSlot { why: e.to_string() };
    }
    let done = match inv.port_peer(switch, &port) {
        Some((device, dport)) => inv.attempt(|inv| cabled(inv, switch, device, &dport, rec)),
        None => inv.attempt(|inv| place(inv, switch, rec)),
    };
    done.unwrap_or_else(|e| match e {
        PlaceError::NoLayout { .. } | PlaceError::NoSlot { .. } => {
            Outcome::NoSlot { why: e.to_string() }
        }
        e => Outcome::Failed { why: e.to_string() },
    })
}

/// A device is cabled to the port: record what is missing, never
/// overwrite a different MAC.
fn cabled(
    inv: &mut Inventory,
    switch: EntityId,
    device: EntityId,
    dport: &PortId,
    rec: &MacRecord,
) -> Result<Outcome, PlaceError> {
    let mac = rec.mac_text();
    let name = inv.name_of(device).to_string();
    let before = inv.changes().added.len() + inv.changes().removed.len();
    set_vlan(inv, switch, rec)?;
    match inv.port_attr(device, dport, "mac") {
        Some(recorded) if recorded != mac => {
            let port = format!("{}:{}", inv.name_of(switch), nic(rec.port));
            observe(inv, device, "observed-mac", &mac)?;
            observe(inv, device, "observed-port", &port)?;
            return Ok(Outcome::Conflict {
                device: name,
                recorded,
            });
        }
        Some(_) => {}
        None => inv.port_attr_set(device, dport, "mac", &mac)?,
    }
    if inv.attr_value(device, "bootstrap", Some("mac")).is_none() {
        observe_at(inv, device, "bootstrap", "mac", &mac)?;
    }
    let after = inv.changes().added.len() + inv.changes().removed.len();
    Ok(if after == before {
        Outcome::Known { device: name }
    } else {
        Outcome::Recorded { device: name }
    })
}

/// Nothing is cabled to the port: the rack's layout places a new server.
fn place(inv: &mut Inventory, switch: EntityId, rec: &MacRecord) -> Result<Outcome, PlaceError> {
    let Some((rack, _)) = inv.rack_of(switch) else {
        return Ok(Outcome::NoSlot {
            why: format!("{} is in no rack", inv.name_of(switch)),
        });
    };
    let rack = inv.name_of(rack).to_string();
    let sw = inv.name_of(switch).to_string();
    let id = layout::place_server(inv, &rack, Some(&sw), rec.port as u32, None, None)?;
    let mac = rec.mac_text();
    inv.port_attr_set(id, &nic(1), "mac", &mac)?;
    observe_at(inv, id, "bootstrap", "mac", &mac)?;
    set_vlan(inv, switch, rec)?;
    Ok(Outcome::Created {
        server: inv.name_of(id).to_string(),
    })
}

fn set_vlan(inv: &mut Inventory, switch: EntityId, rec: &MacRecord) -> Result<(), CoreError> {
    let vlan = rec.vlan.to_string();
    if inv.port_attr(switch, &nic(rec.port), "vlan").as_deref() != Some(vlan.as_str()) {
        inv.port_attr_set(switch, &nic(rec.port), "vlan", &vlan)?;
    }
    Ok(())
}

fn observe(inv: &mut Inventory, id: EntityId, subkey: &str, text: &str) -> Result<(), CoreError> {
    observe_at(inv, id, OBSERVATION_KEY, subkey, text)
}

fn observe_at(
    inv: &mut Inventory,
    id: EntityId,
    key: &str,
    subkey: &str,
    text: &str,
) -> Result<(), CoreError> {
    inv.attr_set(
        id,
        key,
        Some(subkey),
        NumberSpec::None,
        Value::String(text.to_string()),
    )
    .map(|_| ())
}
