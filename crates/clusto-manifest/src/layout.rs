//! Rack layouts (the original's rack factory, as data): the devices every
//! rack of a model holds, their cabling, and the server slot map that
//! `clusto rack add-server` and SNMP discovery place servers by.

use clusto_core::{CoreError, EntityId, Inventory, Kind, PortId, Value, model};

use crate::parse::{ManifestError, Object, Spec};
use crate::types::*;

/// A cable by names: `(a, a_port, b, b_port)`.
pub type NamedLink = (String, PortId, String, PortId);

fn fill(template: &str, rack: &str) -> String {
    template.replace("{rack}", rack)
}

/// The layout named `name`, from the manifests or the inventory.
pub fn find_layout(inv: &Inventory, objects: &[Object], name: &str) -> Option<RackLayoutSpec> {
    for o in objects {
        if o.kind == Kind::RackLayout
            && o.name() == name
            && let Spec::RackLayout(s) = &o.spec
        {
            return Some(s.clone());
        }
    }
    stored_layout(inv, name)
}

/// A layout as recorded in the inventory.
pub fn stored_layout(inv: &Inventory, name: &str) -> Option<RackLayoutSpec> {
    let id = inv.id_of(name).ok()?;
    if inv.kind_of(id) != Some(Kind::RackLayout) {
        return None;
    }
    let get = |f: &str| match inv.setting(id, f) {
        Some(Value::Json(j)) => j.clone(),
        _ => serde_json::Value::Array(vec![]),
    };
    Some(RackLayoutSpec {
        name_manager: match inv.setting(id, "nameManager") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        },
        devices: serde_json::from_value(get("devices")).ok()?,
        connections: serde_json::from_value(get("connections")).ok()?,
        server_slots: serde_json::from_value(get("serverSlots")).ok()?,
    })
}

/// The devices and cables every rack's layout adds to the objects.
/// Devices the manifests declare themselves are left to their own manifest.
#[allow(clippy::type_complexity)]
pub fn expand(
    inv: &Inventory,
    objects: &[Object],
) -> Result<(Vec<Object>, Vec<(NamedLink, String)>), Vec<ManifestError>> {
    let mut out: Vec<Object> = Vec::new();
    let mut links = Vec::new();
    let mut errors = Vec::new();
    let declared: std::collections::HashSet<String> =
        objects.iter().map(|o| o.name().to_string()).collect();
    for o in objects {
        let Spec::Rack(rs) = &o.spec else { continue };
        let Some(lname) = &rs.layout else { continue };
        let Some(layout) = find_layout(inv, objects, lname) else {
            errors.push(crate::apply::err(
                &o.loc,
                &o.label(),
                format!("RackLayout {lname} does not exist"),
            ));
            continue;
        };
        let rack = o.name();
        for d in &layout.devices {
            let name = fill(&d.name, rack);
            if declared.contains(&name) {
                continue;
            }
            let kind = match d.kind.parse::<Kind>() {
                Ok(k) if k.is_device() => k,
                _ => {
                    errors.push(crate::apply::err(
                        &o.loc,
                        &o.label(),
                        format!(
                            "layout {lname}: device {} has kind {:?}, not a device kind",
                            d.name, d.kind
                        ),
                    ));
                    continue;
                }
            };
            out.push(Object {
                kind,
                metadata: Metadata {
                    name,
                    ..Default::default()
                },
                spec: Spec::Device(DeviceSpec {
                    driver: d.driver.clone(),
                    rack: d.ru.as_ref().map(|_| rack.to_string()),
                    ru: d.ru.clone(),
                    addresses: d.addresses.clone(),
                    attrs: d.attrs.clone(),
                    ..Default::default()
                }),
                loc: o.loc.clone(),
                text: o.text.clone(),
            });
        }
        for [a, b] in &layout.connections {
            let (a, b) = (fill(a, rack), fill(b, rack));
            match (model::split_port_ref(&a), model::split_port_ref(&b)) {
                (Ok((an, ap)), Ok((bn, bp))) => {
                    links.push(((an.to_string(), ap, bn.to_string(), bp), rack.to_string()))
                }
                (Err(e), _) | (_, Err(e)) => errors.push(crate::apply::err(
                    &o.loc,
                    &o.label(),
                    format!("layout {lname}: {e}"),
                )),
            }
        }
    }
    if errors.is_empty() {
        Ok((out, links))
    } else {
        Err(errors)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("rack {rack} has no layout")]
    NoLayout { rack: String },
    #[error("layout {layout} has no server slot for switch port {port}")]
    NoSlot { layout: String, port: u32 },
    #[error("{0}")]
    Layout(String),
}

/// The NameManager a layout names its servers with when it names none.
pub const DEFAULT_NAME_MANAGER: &str = "servernames";

/// A rack's layout and the slot it has for a switch port: what placing a
/// server there needs (its name manager, its address managers) before
/// anything is written.
#[derive(Clone, Debug)]
pub struct Slot {
    pub layout_name: String,
    pub layout: RackLayoutSpec,
    pub slot: ServerSlot,
    /// The switch the slot's NIC is cabled to.
    pub switch: String,
}

impl Slot {
    pub fn name_manager(&self) -> &str {
        self.layout
            .name_manager
            .as_deref()
            .unwrap_or(DEFAULT_NAME_MANAGER)
    }

    /// IPManagers the slot's addresses come from.
    pub fn address_managers(&self) -> impl Iterator<Item = &str> {
        self.slot
            .addresses
            .iter()
            .filter_map(|a| a.manager.as_deref())
    }
}

/// The slot `rack`'s layout has for `switch_port` (on `switch`, when the
/// layout has several switches).
pub fn slot_for(
    inv: &Inventory,
    rack: &str,
    switch: Option<&str>,
    switch_port: u32,
) -> Result<Slot, PlaceError> {
    let rack_id = inv.id_of(rack)?;
    if inv.kind_of(rack_id) != Some(Kind::Rack) {
        return Err(PlaceError::Layout(format!("{rack} is not a rack")));
    }
    let layout_name = match inv.setting(rack_id, "layout") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(PlaceError::NoLayout { rack: rack.into() }),
    };
    let layout = stored_layout(inv, &layout_name)
        .ok_or_else(|| PlaceError::Layout(format!("RackLayout {layout_name} does not exist")))?;
    let switches: Vec<String> = layout
        .devices
        .iter()
        .filter(|d| d.kind.parse::<Kind>().ok() == Some(Kind::NetworkSwitch))
        .map(|d| fill(&d.name, rack))
        .collect();
    let slot = layout
        .server_slots
        .iter()
        .find(|s| {
            s.switch_port == switch_port
                && match (switch, &s.switch) {
                    (Some(want), Some(t)) => fill(t, rack) == want,
                    (Some(want), None) => switches.len() == 1 && switches[0] == want,
                    (None, _) => true,
                }
        })
        .ok_or_else(|| PlaceError::NoSlot {
            layout: layout_name.clone(),
            port: switch_port,
        })?
        .clone();
    let switch = match &slot.switch {
        Some(t) => fill(t, rack),
        None if switches.len() == 1 => switches[0].clone(),
        None => {
            return Err(PlaceError::Layout(format!(
                "layout {layout_name} has {} switches; its slots must name theirs",
                switches.len()
            )));
        }
    };
    Ok(Slot {
        layout_name,
        layout,
        slot,
        switch,
    })
}

/// A server that exists already (discovered, or created by hand before its
/// rack was) may take a slot if it is in no rack and is the slot's model.
fn unplaced_server(
    inv: &Inventory,
    name: &str,
    driver: Option<&str>,
) -> Result<EntityId, PlaceError> {
    let id = inv.id_of(name)?;
    let e = inv
        .entity(id)
        .ok_or_else(|| PlaceError::Layout(format!("{name} does not exist")))?;
    if e.kind != Kind::Server {
        return Err(PlaceError::Layout(format!(
            "{name} is a {}, not a server",
            e.kind.as_str()
        )));
    }
    if let Some((rack, ru)) = inv.rack_of(id) {
        return Err(PlaceError::Layout(format!(
            "{name} is already in rack {} at RU {ru}",
            inv.name_of(rack)
        )));
    }
    if let Some(want) = driver
        && e.driver != want
    {
        return Err(PlaceError::Layout(format!(
            "{name} is a {} but the slot takes a {want}",
            e.driver
        )));
    }
    Ok(id)
}

/// Places a server in `rack` exactly as its layout's slot for
/// `switch_port` says: the slot's units, NIC 1 to the switch port, power
/// and console cabling, and the slot's addresses. `name` names it (an
/// existing server not yet in a rack may be named), else `name_manager`,
/// else the layout's NameManager does.
pub fn place_server(
    inv: &mut Inventory,
    rack: &str,
    switch: Option<&str>,
    switch_port: u32,
    name: Option<&str>,
    name_manager: Option<&str>,
) -> Result<EntityId, PlaceError> {
    let slot = slot_for(inv, rack, switch, switch_port)?;
    let rack_id = inv.id_of(rack)?;
    let sw_id = inv.id_of(&slot.switch)?;
    let port = PortId {
        ptype: "nic-eth".into(),
        num: switch_port,
    };
    if let Some((peer, _)) = inv.port_peer(sw_id, &port) {
        return Err(PlaceError::Layout(format!(
            "switch port {}:{port} already has {} on it",
            slot.switch,
            inv.name_of(peer)
        )));
    }
    let driver = slot.slot.driver.as_deref();
    let id = match name {
        Some(n) if inv.id_of(n).is_ok() => unplaced_server(inv, n, driver)?,
        Some(n) => inv.create(Kind::Server, n, driver)?,
        None => {
            let m = inv.id_of(name_manager.unwrap_or(slot.name_manager()))?;
            inv.name_allocate(m, Kind::Server, driver)?
        }
    };
    inv.insert(rack_id, id, Some(slot.slot.ru.text().parse()?))?;
    inv.connect(id, &"nic-eth:1".parse()?, sw_id, &port)?;
    for (what, mine) in [
        (&slot.slot.power, "pwr-nema-5:1"),
        (&slot.slot.console, "console-serial:1"),
    ] {
        if let Some(t) = what {
            let (peer, pp) =
                model::split_port_ref(&fill(t, rack)).map(|(n, p)| (n.to_string(), p))?;
            let peer_id = inv.id_of(&peer)?;
            inv.connect(id, &mine.parse()?, peer_id, &pp)?;
        }
    }
    allocate_slot_addresses(inv, id, &slot.slot.addresses)?;
    Ok(id)
}

/// Gives a placed server its slot's addresses, unless it holds one from
/// that manager (or that very address) already.
fn allocate_slot_addresses(
    inv: &mut Inventory,
    id: EntityId,
    items: &[AddressItem],
) -> Result<(), PlaceError> {
    for item in items {
        let port = item.port.as_deref().map(str::parse::<PortId>).transpose()?;
        let os_port = item.os_port.as_deref();
        let fixed = match &item.address {
            Some(a) => Some(a.parse::<std::net::IpAddr>().map_err(|_| {
                PlaceError::Layout(format!("slot address {a:?} is not an IP address"))
            })?),
            None => None,
        };
        let manager = item.manager.as_deref().map(|m| inv.id_of(m)).transpose()?;
        let held = inv.addresses_of(id).into_iter().any(|h| {
            Some(h.address) == fixed
                || (fixed.is_none() && manager.is_some() && h.manager == manager)
        });
        if held {
            continue;
        }
        match (manager, fixed) {
            (Some(m), ip) => inv
                .ip_allocate(m, id, ip, os_port, port.as_ref())
                .map(|_| ())?,
            (None, Some(ip)) => inv.ip_bind(id, ip, os_port, port.as_ref())?,
            (None, None) => {
                return Err(PlaceError::Layout(
                    "a slot address needs manager or address".into(),
                ));
            }
        }
    }
    Ok(())
}
