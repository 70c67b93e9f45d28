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
    #[error("{0}")]
    Layout(String),
}

/// Places a new server in `rack` exactly as its layout's slot for
/// `switch_port` says: the slot's units, NIC 1 to the switch port, power
/// and console cabling. `name` names it, or `name_manager` does.
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

pub fn place_server(
    inv: &mut Inventory,
    rack: &str,
    switch: Option<&str>,
    switch_port: u32,
    name: Option<&str>,
    name_manager: Option<&str>,
) -> Result<EntityId, PlaceError> {
    let rack_id = inv.id_of(rack)?;
    if inv.kind_of(rack_id) != Some(Kind::Rack) {
        return Err(PlaceError::Layout(format!("{rack} is not a rack")));
    }
    let lname = match inv.setting(rack_id, "layout") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(PlaceError::Layout(format!("rack {rack} has no layout"))),
    };
    let layout = stored_layout(inv, &lname)
        .ok_or_else(|| PlaceError::Layout(format!("RackLayout {lname} does not exist")))?;
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
        .ok_or_else(|| {
            PlaceError::Layout(format!(
                "layout {lname} has no server slot for switch port {switch_port}"
            ))
        })?
        .clone();
    let sw = match &slot.switch {
        Some(t) => fill(t, rack),
        None if switches.len() == 1 => switches[0].clone(),
        None => {
            return Err(PlaceError::Layout(format!(
                "layout {lname} has {} switches; its slots must name theirs",
                switches.len()
            )));
        }
    };
    let sw_id = inv.id_of(&sw)?;
    let port = PortId {
        ptype: "nic-eth".into(),
        num: switch_port,
    };
    if let Some((peer, _)) = inv.port_peer(sw_id, &port) {
        return Err(PlaceError::Layout(format!(
            "switch port {sw}:{port} already has {} on it",
            inv.name_of(peer)
        )));
    }
    let driver = slot.driver.as_deref();
    let id = match (name, name_manager) {
        (Some(n), _) if inv.id_of(n).is_ok() => unplaced_server(inv, n, driver)?,
        (Some(n), _) => inv.create(Kind::Server, n, driver)?,
        (None, Some(m)) => {
            let m = inv.id_of(m)?;
            inv.name_allocate(m, Kind::Server, driver)?
        }
        (None, None) => {
            return Err(PlaceError::Layout(
                "name the server or give a NameManager".into(),
            ));
        }
    };
    inv.insert(rack_id, id, Some(slot.ru.text().parse()?))?;
    inv.connect(id, &"nic-eth:1".parse()?, sw_id, &port)?;
    for (what, mine) in [
        (&slot.power, "pwr-nema-5:1"),
        (&slot.console, "console-serial:1"),
    ] {
        if let Some(t) = what {
            let (peer, pp) =
                model::split_port_ref(&fill(t, rack)).map(|(n, p)| (n.to_string(), p))?;
            let peer_id = inv.id_of(&peer)?;
            inv.connect(id, &mine.parse()?, peer_id, &pp)?;
        }
    }
    Ok(id)
}
