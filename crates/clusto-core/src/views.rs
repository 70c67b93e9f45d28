//! What the point reads show — `describe`, `locate`, `contents`,
//! `parents`, `pool members`, `port list`, `ip list`, `vm explain` — as
//! typed values. The CLI prints them, `clusto serve` answers with them as
//! JSON, and `clusto --server` reads that JSON back into the same types and
//! prints it with the same code: one shape for all three.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::placement::Placement;
use crate::{CoreError, EntityId, Inventory, Kind, Value};

/// An entity in a listing: its name and kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Named {
    pub name: String,
    pub kind: String,
}

/// One answer to "where is it": a cable, a rack unit, or a location
/// (datacenter, cage, zone, …) that holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Place {
    #[serde(rename_all = "camelCase")]
    Cable {
        port: String,
        peer: String,
        peer_port: String,
    },
    Rack {
        rack: String,
        ru: String,
    },
    Within {
        kind: String,
        name: String,
    },
}

impl Place {
    /// The line `clusto locate` prints for `name`.
    pub fn line(&self, name: &str) -> String {
        match self {
            Place::Cable {
                port,
                peer,
                peer_port,
            } => format!("{name} -> port {peer_port} on {peer} (its {port})"),
            Place::Rack { rack, ru } => format!("{name} -> RU {ru} in {rack}"),
            Place::Within { kind, name: loc } => format!("{name} -> in {kind} {loc}"),
        }
    }
}

/// A port of a device, with its cable and attributes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortView {
    pub port: String,
    /// `device:port` at the cable's other end.
    pub connected_to: Option<String>,
    pub attrs: std::collections::BTreeMap<String, String>,
}

/// An address handed out by an IPManager, or held by an entity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressView {
    pub address: String,
    pub holder: String,
    pub manager: Option<String>,
    pub os_port: Option<String>,
    pub port: Option<String>,
}

/// An IPManager's network and what it handed out, in address order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AddressBook {
    pub manager: String,
    pub cidr: String,
    pub gateway: Option<String>,
    pub items: Vec<AddressView>,
}

/// Where a VM goes (or went) and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlacementView {
    pub vm: String,
    pub host: String,
    pub reason: String,
}

/// A thing a container holds, at its rack units if it has them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Held {
    pub name: String,
    pub ru: Option<String>,
}

/// An attribute as `describe` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttrLine {
    /// `key`, `key.subkey` or `key.subkey.number`.
    pub path: String,
    pub value: String,
    /// The value's type when the text alone would not say it.
    pub value_type: Option<String>,
}

/// Everything `clusto describe` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Description {
    pub name: String,
    pub kind: String,
    pub driver: String,
    /// The rack and its units, for rack-mounted things.
    pub rack: Option<(String, String)>,
    /// Direct containers.
    pub parents: Vec<String>,
    pub pools: Vec<String>,
    /// The kind's settings (`cidr`, `layout`, …) as text.
    pub settings: Vec<(String, String)>,
    pub addresses: Vec<AddressView>,
    /// Ports with a cable or attributes.
    pub ports: Vec<PortView>,
    pub contains: Vec<Held>,
    pub attributes: Vec<AttrLine>,
}

fn named(inv: &Inventory, ids: Vec<EntityId>) -> Vec<Named> {
    ids.into_iter()
        .map(|i| Named {
            name: inv.name_of(i).to_string(),
            kind: inv.kind_of(i).map(|k| k.to_string()).unwrap_or_default(),
        })
        .collect()
}

impl Inventory {
    /// What `name` holds: directly, or every descendant.
    pub fn contents_view(&self, name: &str, recursive: bool) -> Result<Vec<Named>, CoreError> {
        let id = self.id_of(name)?;
        let ids = if recursive {
            self.contents_recursive(id)
        } else {
            self.contents(id)
        };
        Ok(named(self, ids))
    }

    /// What holds `name`: directly, or every ancestor nearest first.
    pub fn parents_view(&self, name: &str, recursive: bool) -> Result<Vec<Named>, CoreError> {
        let id = self.id_of(name)?;
        let ids = if recursive {
            self.ancestors(id)
        } else {
            self.parents_of(id)
        };
        Ok(named(self, ids))
    }

    /// The things in every one of `pools` (recursively), by name.
    pub fn members_view(&self, pools: &[String]) -> Result<Vec<Named>, CoreError> {
        let mut ids = Vec::with_capacity(pools.len());
        for p in pools {
            let id = self.id_of(p)?;
            self.expect_kind(id, Kind::Pool)?;
            ids.push(id);
        }
        Ok(named(self, self.pool_intersection(&ids)))
    }

    /// Cables, rack units and locations of `name`.
    pub fn locate_view(&self, name: &str) -> Result<Vec<Place>, CoreError> {
        let id = self.id_of(name)?;
        let mut places: Vec<Place> = self
            .connected_ports(id)
            .into_iter()
            .map(|(p, (peer, pp))| Place::Cable {
                port: p.to_string(),
                peer: self.name_of(peer).to_string(),
                peer_port: pp.to_string(),
            })
            .collect();
        if let Some((r, ru)) = self.rack_of(id) {
            places.push(Place::Rack {
                rack: self.name_of(r).to_string(),
                ru: ru.to_string(),
            });
        }
        for a in self.ancestors(id) {
            if let Some(k) = self.kind_of(a).filter(|k| k.is_location()) {
                places.push(Place::Within {
                    kind: k.as_str().to_string(),
                    name: self.name_of(a).to_string(),
                });
            }
        }
        Ok(places)
    }

    /// Every port of `id` with its cable and attributes.
    fn port_views(&self, id: EntityId) -> Vec<PortView> {
        self.ports(id)
            .into_iter()
            .map(|p| PortView {
                port: p.port.to_string(),
                connected_to: p.peer.map(|(e, pp)| format!("{}:{pp}", self.name_of(e))),
                attrs: p.attrs,
            })
            .collect()
    }

    /// The ports of `name`.
    pub fn ports_view(&self, name: &str) -> Result<Vec<PortView>, CoreError> {
        Ok(self.port_views(self.id_of(name)?))
    }

    fn address_view(&self, a: &crate::Address) -> AddressView {
        AddressView {
            address: a.address.to_string(),
            holder: self.name_of(a.holder).to_string(),
            manager: a.manager.map(|m| self.name_of(m).to_string()),
            os_port: a.os_port.clone(),
            port: a.port.as_ref().map(|p| p.to_string()),
        }
    }

    /// An IPManager's network and its allocations in address order.
    pub fn address_book(&self, manager: &str) -> Result<AddressBook, CoreError> {
        let m = self.id_of(manager)?;
        self.expect_kind(m, Kind::IpManager)?;
        let range = self.ip_range(m)?;
        let mut allocs = self.allocations(m);
        allocs.sort_by_key(|a| a.address);
        Ok(AddressBook {
            manager: manager.to_string(),
            cidr: range.cidr.to_string(),
            gateway: range.gateway.map(|g| g.to_string()),
            items: allocs.into_iter().map(|a| self.address_view(a)).collect(),
        })
    }

    /// Where VM `name` is placed and why: the recorded decision when there
    /// is one, else what placing it now would choose.
    pub fn placement_view(&self, name: &str) -> Result<PlacementView, CoreError> {
        let vm = self.id_of(name)?;
        self.expect_kind(vm, Kind::VirtualMachine)?;
        let setting = |f: &str| match self.setting(vm, f) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let rule = |r: &str| CoreError::Rule {
            object: name.to_string(),
            rule: r.to_string(),
        };
        let mgr = self.id_of(&setting("manager").ok_or_else(|| rule("has no manager"))?)?;
        let pin = setting("host").map(|h| self.id_of(&h)).transpose()?;
        let recorded = match (
            self.vm_host(vm),
            self.attr_value(vm, crate::placement::STATUS_KEY, Some("placement")),
        ) {
            (Some(h), Some(Value::String(r))) => Some(Placement {
                host: self.id_of(h)?,
                reason: r.clone(),
            }),
            _ => None,
        };
        let p = match recorded {
            Some(p) => p,
            None => self.place_vm(mgr, vm, pin, false)?,
        };
        Ok(PlacementView {
            vm: name.to_string(),
            host: self.name_of(p.host).to_string(),
            reason: p.reason,
        })
    }

    /// Everything `describe` shows about `name`.
    pub fn description(&self, name: &str) -> Result<Description, CoreError> {
        let id = self.id_of(name)?;
        let e = self
            .entity(id)
            .ok_or_else(|| CoreError::NotFound(name.to_string()))?;
        let names = |ids: Vec<EntityId>| -> Vec<String> {
            ids.into_iter()
                .map(|i| self.name_of(i).to_string())
                .collect()
        };
        Ok(Description {
            name: e.name.clone(),
            kind: e.kind.to_string(),
            driver: e.driver.clone(),
            rack: self
                .rack_of(id)
                .map(|(r, ru)| (self.name_of(r).to_string(), ru.to_string())),
            parents: names(self.parents_of(id)),
            pools: names(self.pools_of(id)),
            settings: self
                .settings(id)
                .into_iter()
                // A NameManager's cursor is its point; elsewhere it is noise.
                .filter(|(k, _)| k != "last" && k != "next" || e.kind == Kind::NameManager)
                .map(|(k, v)| (k, v.to_text().unwrap_or_default()))
                .collect(),
            addresses: self
                .addresses_of(id)
                .into_iter()
                .map(|a| self.address_view(a))
                .collect(),
            ports: self
                .port_views(id)
                .into_iter()
                .filter(|p| p.connected_to.is_some() || !p.attrs.is_empty())
                .collect(),
            contains: self
                .child_rows(id)
                .into_iter()
                .map(|c| Held {
                    name: self.name_of(c.child).to_string(),
                    ru: c.ru.map(|r| r.to_string()),
                })
                .collect(),
            attributes: self
                .attrs(id, false)
                .into_iter()
                .map(|a| AttrLine {
                    path: a.path(),
                    value: self.value_text(&a.value),
                    value_type: self.value_json(&a.value).1.map(str::to_string),
                })
                .collect(),
        })
    }
}
