//! Kubernetes-shaped views of entities (`apiVersion`, `kind`, `metadata`,
//! `spec`, `status`): what `clusto get -o json` prints and what manifests
//! are made of.

use serde_json::{Map, Value as Json, json};

use crate::inventory::{Inventory, META_KEY, SPEC_KEY};
use crate::kind::Kind;
use crate::model::{Attr, EntityId};
use crate::value::Value;

pub const API_VERSION: &str = "clusto.dev/v1alpha1";

impl Inventory {
    /// An attribute as a manifest item: `{key, subkey?, number?, value, type?}`.
    /// `type` is given only where the JSON value alone would not say it.
    pub fn attr_json(&self, a: &Attr) -> Json {
        let mut m = Map::new();
        m.insert("key".into(), json!(a.key));
        if let Some(s) = &a.subkey {
            m.insert("subkey".into(), json!(s));
        }
        if let Some(n) = a.number {
            m.insert("number".into(), json!(n));
        }
        let (v, ty) = self.value_json(&a.value);
        m.insert("value".into(), v);
        if let Some(t) = ty {
            m.insert("type".into(), json!(t));
        }
        Json::Object(m)
    }

    /// A value as JSON, with the type name when JSON cannot carry it.
    /// An attribute row with the entity it comes from (`source`): what
    /// `attr get` and the API's `/attributes` show.
    pub fn attr_row_json(&self, a: &Attr, source: EntityId) -> Json {
        let mut j = self.attr_json(a);
        j["source"] = json!(self.name_of(source));
        j
    }

    pub fn value_json(&self, v: &Value) -> (Json, Option<&'static str>) {
        match v {
            Value::String(s) => (json!(s), None),
            Value::Int(i) => (json!(i), None),
            Value::Bool(b) => (json!(b), None),
            Value::Float(f) => (json!(f), Some("float")),
            Value::Ip(ip) => (json!(ip.to_string()), Some("ip")),
            Value::DateTime(_) => (json!(v.to_text()), Some("datetime")),
            Value::Json(j) => (j.clone(), Some("json")),
            Value::Ref(r) => (json!(self.name_of(*r)), Some("ref")),
        }
    }

    /// A value as a person reads it: strings bare, references by name,
    /// everything else as its JSON text.
    pub fn value_text(&self, v: &Value) -> String {
        match self.value_json(v).0 {
            Json::String(s) => s,
            other => other.to_string(),
        }
    }

    fn direct_parent_of_kind(&self, id: EntityId, kind: Kind) -> Option<&str> {
        self.parents_of(id)
            .into_iter()
            .find(|p| self.kind_of(*p) == Some(kind))
            .map(|p| self.name_of(p))
    }

    /// Every entity whose rows `resource(id)` reads, so a cache of the
    /// object stays exact until a revision touches one of them: the entity,
    /// its containers at any depth (placement, pools, the datacenter), what
    /// it contains, its cable peers, its addresses' managers, what its
    /// attributes refer to, and every user-defined driver (ports come from
    /// drivers, which may build on one another).
    pub fn resource_view(&self, id: EntityId) -> Vec<EntityId> {
        let mut v = vec![id];
        v.extend(self.ancestors(id));
        v.extend(self.contents(id));
        v.extend(self.connected_ports(id).into_iter().map(|(_, (e, _))| e));
        v.extend(self.addresses_of(id).iter().filter_map(|a| a.manager));
        v.extend(self.attrs(id, true).iter().filter_map(|a| match a.value {
            Value::Ref(r) => Some(r),
            _ => None,
        }));
        v.extend(self.user_drivers.keys().filter_map(|d| self.id_of(d).ok()));
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The resource view of one entity.
    pub fn resource(&self, id: EntityId, include_hidden: bool) -> Json {
        let Some(e) = self.entity(id) else {
            return Json::Null;
        };
        let mut spec = Map::new();
        if e.driver != e.kind.default_driver() && e.kind != Kind::Pool {
            spec.insert("driver".into(), json!(e.driver));
        }
        for k in [Kind::Datacenter, Kind::Cage, Kind::Zone] {
            if let Some(p) = self.direct_parent_of_kind(id, k) {
                spec.insert(k.as_str().to_ascii_lowercase(), json!(p));
            }
        }
        if let Some((rack, ru)) = self.rack_of(id) {
            spec.insert("rack".into(), json!(self.name_of(rack)));
            spec.insert(
                "ru".into(),
                if ru.start == ru.end {
                    json!(ru.start)
                } else {
                    json!(ru.to_string())
                },
            );
        }
        let pools: Vec<&str> = self
            .parents_of(id)
            .into_iter()
            .filter(|p| self.kind_of(*p) == Some(Kind::Pool))
            .map(|p| self.name_of(p))
            .collect();
        match e.kind {
            Kind::Pool => {
                spec.insert("type".into(), json!(self.pool_type(id).map(|t| t.as_str())));
                if let Some(g) = self.pool_group(id) {
                    spec.insert("group".into(), json!(g));
                }
            }
            Kind::IpManager => {
                for f in ["cidr", "gateway"] {
                    if let Some(v) = self.spec(id, f) {
                        spec.insert(f.into(), json!(v.to_text()));
                    }
                }
                if let Some(Value::Json(r)) = self.spec(id, "reserved") {
                    spec.insert("reserved".into(), r.clone());
                }
            }
            Kind::NameManager => {
                for f in ["basename", "digits", "next"] {
                    if let Some(v) = self.spec(id, f) {
                        spec.insert(f.into(), self.value_json(v).0);
                    }
                }
            }
            Kind::Rack => {
                for f in ["minU", "maxU"] {
                    if let Some(v) = self.spec(id, f) {
                        spec.insert(f.into(), self.value_json(v).0);
                    }
                }
                if let Some(v) = self.spec(id, "layout") {
                    spec.insert("layout".into(), self.value_json(v).0);
                }
            }
            Kind::RackLayout | Kind::VmManager | Kind::VirtualMachine => {
                for (k, v) in self.settings(id) {
                    spec.insert(k, self.value_json(&v).0);
                }
                if e.kind == Kind::VmManager {
                    let hosts: Vec<&str> = self
                        .contents(id)
                        .into_iter()
                        .map(|h| self.name_of(h))
                        .collect();
                    if !hosts.is_empty() {
                        spec.insert("hosts".into(), json!(hosts));
                    }
                }
            }
            Kind::Driver => {
                // What was set, not what it resolves to: unset fields
                // inherit from the base kind's basic driver.
                for (k, v) in self.settings(id) {
                    spec.insert(k, self.value_json(&v).0);
                }
            }
            k if crate::outofband::has_power(k) => {
                if let Some(p) = self.power_desired(id) {
                    spec.insert("powerState".into(), json!(p.as_str()));
                }
            }
            _ => {}
        }
        if !pools.is_empty() {
            spec.insert("pools".into(), json!(pools));
        }
        let ports: Vec<Json> = self
            .ports(id)
            .into_iter()
            .filter(|p| p.peer.is_some() || !p.attrs.is_empty())
            .map(|p| {
                let mut m = Map::new();
                m.insert("port".into(), json!(p.port.to_string()));
                let mut extra = Map::new();
                for (k, v) in &p.attrs {
                    match k.as_str() {
                        "mac" => {
                            m.insert("mac".into(), json!(v));
                        }
                        "osportname" => {
                            m.insert("osPort".into(), json!(v));
                        }
                        _ => {
                            extra.insert(k.clone(), json!(v));
                        }
                    }
                }
                if let Some((peer, pp)) = &p.peer {
                    m.insert(
                        "connectedTo".into(),
                        json!(format!("{}:{pp}", self.name_of(*peer))),
                    );
                }
                if !extra.is_empty() {
                    m.insert("attrs".into(), Json::Object(extra));
                }
                Json::Object(m)
            })
            .collect();
        if !ports.is_empty() {
            spec.insert("ports".into(), Json::Array(ports));
        }
        let attrs: Vec<Json> = self
            .attrs(id, include_hidden)
            .into_iter()
            .filter(|a| {
                include_hidden
                    || (a.key != SPEC_KEY
                        && a.key != META_KEY
                        && a.key != crate::placement::STATUS_KEY)
            })
            .map(|a| self.attr_json(a))
            .collect();
        if !attrs.is_empty() {
            spec.insert("attrs".into(), Json::Array(attrs));
        }
        let mut status = Map::new();
        let addrs: Vec<Json> = self
            .addresses_of(id)
            .into_iter()
            .map(|a| {
                let mut m = Map::new();
                m.insert("address".into(), json!(a.address.to_string()));
                if let Some(mg) = a.manager {
                    m.insert("manager".into(), json!(self.name_of(mg)));
                }
                if let Some(o) = &a.os_port {
                    m.insert("osPort".into(), json!(o));
                }
                if let Some(p) = &a.port {
                    m.insert("port".into(), json!(p.to_string()));
                }
                Json::Object(m)
            })
            .collect();
        if !addrs.is_empty() {
            status.insert("addresses".into(), Json::Array(addrs));
        }
        if let Some(dc) = self.nearest_of_kind(id, Kind::Datacenter) {
            status.insert("datacenter".into(), json!(self.name_of(dc)));
        }
        let contents: Vec<&str> = self
            .contents(id)
            .into_iter()
            .map(|c| self.name_of(c))
            .collect();
        if !contents.is_empty() {
            let key = if e.kind == Kind::Pool {
                "members"
            } else {
                "contents"
            };
            status.insert(key.into(), json!(contents));
        }
        for (k, v) in self
            .attrs(id, true)
            .into_iter()
            .filter(|a| a.key == crate::placement::STATUS_KEY)
            .filter_map(|a| Some((a.subkey.clone()?, a.value.clone())))
        {
            status.insert(k, self.value_json(&v).0);
        }
        if e.kind == Kind::IpManager {
            status.insert("allocated".into(), json!(self.allocations(id).len()));
            if let Ok(range) = self.ip_range(id) {
                // Past u64 (a /64 and wider) the exact figure tells nobody anything.
                let capacity = u64::try_from(range.capacity()).unwrap_or(u64::MAX);
                status.insert("capacity".into(), json!(capacity));
            }
            if let Some(v) = self.spec(id, "last") {
                status.insert("lastAllocated".into(), json!(v.to_text()));
            }
        }
        let mut metadata = Map::new();
        metadata.insert("name".into(), json!(e.name));
        metadata.insert("uid".into(), json!(e.id.0));
        for (field, key) in [
            ("labels", "labels"),
            ("annotations", "annotations"),
            ("managedBy", "managedBy"),
            // Asked to go, waiting for the controller (a VM's backend).
            ("deleting", crate::vm::DELETING),
        ] {
            if let Some(v) = self.attr_value(id, META_KEY, Some(key)) {
                metadata.insert(field.into(), self.value_json(v).0);
            }
        }
        json!({
            "apiVersion": API_VERSION,
            "kind": e.kind.as_str(),
            "metadata": metadata,
            "spec": spec,
            "status": status,
        })
    }
}

/// Wraps items the way `kubectl get -o json` does.
pub fn list(items: Vec<Json>) -> Json {
    json!({ "apiVersion": "v1", "kind": "List", "items": items })
}
