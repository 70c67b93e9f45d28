//! Ports: cabling between devices and per-port attributes.

use std::collections::BTreeMap;

use crate::error::CoreError;
use crate::inventory::{Inventory, PORT_KEY_PREFIX};
use crate::model::*;
use crate::names;
use crate::value::Value;

/// One port of a device as listings show it.
#[derive(Clone, Debug, PartialEq)]
pub struct PortInfo {
    pub port: PortId,
    pub peer: Option<(EntityId, PortId)>,
    pub attrs: BTreeMap<String, String>,
}

impl Inventory {
    /// Whether `id` has `port` (its driver says so); the error names both.
    pub fn check_port(&self, id: EntityId, port: &PortId) -> Result<(), CoreError> {
        let e = self.entity(id).ok_or(CoreError::Gone)?;
        let d = self.driver(&e.driver)?;
        if d.has_port(&port.ptype, port.num) {
            Ok(())
        } else {
            Err(CoreError::Rule {
                object: e.name.clone(),
                rule: format!("{} ({}) has no port {port}", e.name, e.driver),
            })
        }
    }

    pub fn port_peer(&self, id: EntityId, port: &PortId) -> Option<(EntityId, PortId)> {
        let f = self.port_links.get(&(id, port.clone()))?;
        let (e, p) = self.links.get(f)?.other_end(id, port)?;
        Some((e, p.clone()))
    }

    /// Ports of `id` that have a cable, with the far end.
    pub fn connected_ports(&self, id: EntityId) -> Vec<(PortId, (EntityId, PortId))> {
        self.cabled
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p.clone(), self.port_peer(id, p)?)))
            .collect()
    }

    /// Every port the driver defines, with cabling and attributes.
    pub fn ports(&self, id: EntityId) -> Vec<PortInfo> {
        let Some(d) = self.driver_of(id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (ptype, &n) in &d.ports {
            for num in 1..=n {
                let port = PortId {
                    ptype: ptype.clone(),
                    num,
                };
                let peer = self.port_peer(id, &port);
                let attrs = self.port_attrs(id, &port);
                out.push(PortInfo { port, peer, attrs });
            }
        }
        out
    }

    pub fn port_attrs(&self, id: EntityId, port: &PortId) -> BTreeMap<String, String> {
        let key = format!("{PORT_KEY_PREFIX}{}", port.ptype);
        self.attr_rows(id)
            .iter()
            .filter(|(_, a)| a.key == key && a.number == Some(port.num as i64))
            .filter_map(|(_, a)| Some((a.subkey.clone()?, a.value.to_text()?)))
            .collect()
    }

    pub fn port_attr(&self, id: EntityId, port: &PortId, name: &str) -> Option<String> {
        let key = format!("{PORT_KEY_PREFIX}{}", port.ptype);
        self.attr_rows(id)
            .iter()
            .find(|(_, a)| {
                a.key == key
                    && a.number == Some(port.num as i64)
                    && a.subkey.as_deref() == Some(name)
            })
            .and_then(|(_, a)| a.value.to_text())
    }

    /// Cables `a:pa` to `b:pb`: same port type, both ports exist and are free.
    pub fn connect(
        &mut self,
        a: EntityId,
        pa: &PortId,
        b: EntityId,
        pb: &PortId,
    ) -> Result<(), CoreError> {
        self.check_port(a, pa)?;
        self.check_port(b, pb)?;
        let an = self.name_of(a).to_string();
        let bn = self.name_of(b).to_string();
        if pa.ptype != pb.ptype {
            return Err(CoreError::Rule {
                object: an,
                rule: format!(
                    "cannot connect {} port {pa} to {} port {pb} of {bn}",
                    pa.ptype, pb.ptype
                ),
            });
        }
        if a == b && pa == pb {
            return Err(CoreError::Rule {
                object: an,
                rule: format!("port {pa} cannot be connected to itself"),
            });
        }
        if self.port_peer(a, pa) == Some((b, pb.clone())) {
            return Ok(());
        }
        for (e, p, n) in [(a, pa, &an), (b, pb, &bn)] {
            if let Some((o, op)) = self.port_peer(e, p) {
                return Err(CoreError::Rule {
                    object: n.clone(),
                    rule: format!(
                        "port {n}:{p} is already connected to {}:{op}",
                        self.name_of(o)
                    ),
                });
            }
        }
        self.add_fact(Fact::Link(Link {
            a,
            a_port: pa.clone(),
            b,
            b_port: pb.clone(),
        }));
        Ok(())
    }

    /// Removes the cable on `a:pa`, from whichever end.
    pub fn disconnect(&mut self, a: EntityId, pa: &PortId) -> Result<(), CoreError> {
        self.check_port(a, pa)?;
        match self.port_links.get(&(a, pa.clone())).copied() {
            Some(f) => {
                self.remove_fact(Table::Links, f);
                Ok(())
            }
            None => Err(CoreError::Rule {
                object: self.name_of(a).to_string(),
                rule: format!("port {}:{pa} is not connected", self.name_of(a)),
            }),
        }
    }

    /// Sets a port attribute. `mac` and `ipmi-mac` are checked and normalised.
    pub fn port_attr_set(
        &mut self,
        id: EntityId,
        port: &PortId,
        name: &str,
        value: &str,
    ) -> Result<(), CoreError> {
        self.check_port(id, port)?;
        names::check_key(name)?;
        let value = if name == "mac" || name.ends_with("-mac") {
            names::normalize_mac(value).ok_or_else(|| CoreError::Rule {
                object: self.name_of(id).to_string(),
                rule: format!("{value:?} is not a MAC address (port {port} {name})"),
            })?
        } else {
            value.to_string()
        };
        let key = format!("{PORT_KEY_PREFIX}{}", port.ptype);
        let n = crate::inventory::NumberSpec::Fixed(port.num as i64);
        self.attr_set(id, &key, Some(name), n, Value::String(value))?;
        Ok(())
    }

    pub fn port_attr_del(
        &mut self,
        id: EntityId,
        port: &PortId,
        name: &str,
    ) -> Result<usize, CoreError> {
        self.check_port(id, port)?;
        let key = format!("{PORT_KEY_PREFIX}{}", port.ptype);
        self.attr_del(id, &key, Some(name), Some(port.num as i64), None)
    }

    /// The `mac` and `ipmi-mac` port attributes of a device, with their ports:
    /// how a device is known on the wire.
    pub fn nic_macs(&self, id: EntityId) -> Vec<(PortId, &String)> {
        self.attr_rows(id)
            .iter()
            .filter_map(|(_, a)| {
                match (
                    a.key.strip_prefix(PORT_KEY_PREFIX),
                    a.subkey.as_deref(),
                    a.number,
                    &a.value,
                ) {
                    (Some(ptype), Some("mac" | "ipmi-mac"), Some(n), Value::String(m)) => Some((
                        PortId {
                            ptype: ptype.to_string(),
                            num: n as u32,
                        },
                        m,
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    /// Devices whose NIC `mac` or `ipmi-mac` port attribute equals `mac`.
    pub fn find_by_mac(&self, mac: &str) -> Vec<(EntityId, PortId)> {
        let Some(mac) = names::normalize_mac(mac) else {
            return Vec::new();
        };
        let mut v: Vec<(EntityId, PortId)> = self
            .attrs
            .keys()
            .flat_map(|e| {
                self.nic_macs(*e)
                    .into_iter()
                    .filter(|(_, m)| **m == mac)
                    .map(move |(p, _)| (*e, p))
            })
            .collect();
        v.sort();
        v
    }
}
