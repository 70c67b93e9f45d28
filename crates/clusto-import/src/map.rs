//! The original's rows → manifest documents. Pure: no database, no store.
//!
//! Drivers become kinds (basicserver → Server, exclusive_pool → Pool of type
//! exclusive, …); `_contains` rows become racks and units, datacenters and
//! pool members; `ip` resource rows become addresses; `port-<type>` rows
//! become ports and cables; every other visible row stays an attribute with
//! its key, subkey, number and type. What has no equivalent is reported,
//! never silently dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use clusto_core::Kind;
use serde_json::{Value as Json, json};

use crate::original::{Attr, Entity, Original, Value};

/// Something the import could not carry over, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unmapped {
    pub entity: String,
    /// `key[.subkey][#number]`, or none when the whole entity is left out.
    pub attribute: Option<String>,
    pub why: String,
}

impl std::fmt::Display for Unmapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.attribute {
            Some(a) => write!(f, "{} {a}: {}", self.entity, self.why),
            None => write!(f, "{}: {}", self.entity, self.why),
        }
    }
}

/// The manifests, file by file (one per top-level location, `other.yaml`
/// for the rest), and the report.
#[derive(Debug, Default)]
pub struct Mapped {
    pub files: Vec<(String, Vec<Json>)>,
    pub unmapped: Vec<Unmapped>,
}

/// Unique pools of the original are one namespace: a thing is in at most
/// one of them. Here that rule is per group, so they all share this one.
pub const UNIQUE_POOL_GROUP: &str = "unique_pool";

/// What a driver of the original becomes.
#[derive(Clone, Debug, PartialEq)]
enum Target {
    /// A kind, with the driver name to record (None: the kind's basic one).
    Kind(Kind, Option<String>),
    /// Nothing: internal bookkeeping of the original.
    Skip,
}

fn target(e: &Entity) -> Result<Target, String> {
    let k = |k: Kind| Ok(Target::Kind(k, None));
    match e.driver.as_str() {
        "clustometa" => Ok(Target::Skip),
        "basicdatacenter" => k(Kind::Datacenter),
        "basiccage" => k(Kind::Cage),
        "basiczone" => k(Kind::Zone),
        "basicrack" => k(Kind::Rack),
        "basicserver" => k(Kind::Server),
        "basicvirtualserver" => k(Kind::VirtualServer),
        "basicnetworkswitch" => k(Kind::NetworkSwitch),
        "basicpowerstrip" => k(Kind::PowerStrip),
        "basicconsoleserver" => k(Kind::ConsoleServer),
        "basicappliance" => k(Kind::Appliance),
        "pool" | "exclusive_pool" | "unique_pool" => k(Kind::Pool),
        "ipmanager" => k(Kind::IpManager),
        "simpleentitynamemanager" | "simplenamemanager" => k(Kind::NameManager),
        other => match base_of_type(&e.clusto_type) {
            Some(kind) => Ok(Target::Kind(kind, Some(other.to_string()))),
            None => Err(format!(
                "driver {other} (type {}) has no equivalent here",
                e.clusto_type
            )),
        },
    }
}

/// The base kind of a driver the original had but this project does not:
/// its `type` column names it.
fn base_of_type(t: &str) -> Option<Kind> {
    Some(match t {
        "datacenter" => Kind::Datacenter,
        "cage" => Kind::Cage,
        "zone" => Kind::Zone,
        "rack" => Kind::Rack,
        "server" => Kind::Server,
        "virtualserver" => Kind::VirtualServer,
        "networkswitch" => Kind::NetworkSwitch,
        "powerstrip" => Kind::PowerStrip,
        "consoleserver" => Kind::ConsoleServer,
        "appliance" => Kind::Appliance,
        "generic" | "entity" | "device" | "location" => Kind::Entity,
        _ => return None,
    })
}

/// One entity on its way to a manifest.
#[derive(Default)]
struct Doc {
    kind: Option<Kind>,
    driver: Option<String>,
    spec: serde_json::Map<String, Json>,
    attrs: Vec<Json>,
    units: Vec<i64>,
    rack: Option<String>,
    /// (type, number) → port item.
    ports: BTreeMap<(String, i64), serde_json::Map<String, Json>>,
    addresses: BTreeMap<i64, serde_json::Map<String, Json>>,
    members: BTreeSet<String>,
    /// The location it sits in, for grouping files.
    parent: Option<i64>,
}

struct Mapper<'a> {
    names: HashMap<i64, &'a str>,
    docs: BTreeMap<i64, Doc>,
    unmapped: Vec<Unmapped>,
    counters: HashMap<(i64, &'a str), i64>,
}

/// Maps an original inventory to manifests plus what could not be mapped.
pub fn map(o: &Original) -> Mapped {
    let mut m = Mapper {
        names: o.entities.iter().map(|e| (e.id, e.name.as_str())).collect(),
        docs: BTreeMap::new(),
        unmapped: Vec::new(),
        counters: o
            .counters
            .iter()
            .map(|c| ((c.entity, c.key.as_str()), c.value))
            .collect(),
    };
    for e in &o.entities {
        m.entity(e);
    }
    let mut by_entity: BTreeMap<i64, Vec<&Attr>> = BTreeMap::new();
    for a in &o.attrs {
        by_entity.entry(a.entity).or_default().push(a);
    }
    for (id, attrs) in &by_entity {
        if !m.docs.contains_key(id) {
            continue;
        }
        for a in attrs {
            m.attr(*id, a, attrs);
        }
    }
    let drivers = m.drivers(o);
    m.finish(o, drivers)
}

impl<'a> Mapper<'a> {
    fn name(&self, id: i64) -> &'a str {
        self.names.get(&id).copied().unwrap_or("?")
    }

    fn report(&mut self, id: i64, attribute: Option<String>, why: impl Into<String>) {
        self.unmapped.push(Unmapped {
            entity: self.name(id).to_string(),
            attribute,
            why: why.into(),
        });
    }

    fn entity(&mut self, e: &Entity) {
        match target(e) {
            Ok(Target::Skip) => {}
            Ok(Target::Kind(kind, driver)) => {
                let mut d = Doc {
                    kind: Some(kind),
                    driver,
                    ..Doc::default()
                };
                match e.driver.as_str() {
                    "exclusive_pool" => {
                        d.spec.insert("type".into(), json!("exclusive"));
                    }
                    "unique_pool" => {
                        d.spec.insert("type".into(), json!("unique"));
                        d.spec.insert("group".into(), json!(UNIQUE_POOL_GROUP));
                    }
                    _ => {}
                }
                self.docs.insert(e.id, d);
            }
            Err(why) => self.report(e.id, None, why),
        }
    }

    fn kind(&self, id: i64) -> Option<Kind> {
        self.docs.get(&id).and_then(|d| d.kind)
    }

    /// One visible or hidden row of entity `id`; `all` are its rows (a
    /// resource's rows are read together).
    fn attr(&mut self, id: i64, a: &Attr, all: &[&Attr]) {
        let label = label(a);
        if a.key == "_contains" {
            return self.contains(id, a, label);
        }
        if a.key.starts_with('_') {
            // The original's own bookkeeping (e.g. an IPManager's `_lastip`
            // cursor); allocation here starts from the lowest free address.
            return;
        }
        if a.subkey.as_deref() == Some("property") && self.property(id, a) {
            return;
        }
        if a.key == "ip" && is_resource(a, all) {
            return self.address(id, a, label);
        }
        if let Some(ptype) = a.key.strip_prefix("port-") {
            return self.port(id, ptype, a, label);
        }
        if is_resource(a, all) {
            let why = "allocation from a resource manager other than an IPManager";
            return self.report(id, Some(label), why);
        }
        match self.value(a) {
            Ok(v) => {
                let mut item = serde_json::Map::new();
                item.insert("key".into(), json!(a.key));
                if let Some(s) = &a.subkey {
                    item.insert("subkey".into(), json!(s));
                }
                if let Some(n) = a.number {
                    item.insert("number".into(), json!(n));
                }
                item.insert("value".into(), v.0);
                if let Some(t) = v.1 {
                    item.insert("type".into(), json!(t));
                }
                if self.kind(id) == Some(Kind::NameManager) {
                    let why = "a NameManager holds no attributes here";
                    return self.report(id, Some(label), why);
                }
                self.docs
                    .get_mut(&id)
                    .unwrap()
                    .attrs
                    .push(Json::Object(item));
            }
            Err(why) => self.report(id, Some(label), why),
        }
    }

    /// A value with the type to declare (None: JSON's own type says it).
    fn value(&self, a: &Attr) -> Result<(Json, Option<&'static str>), String> {
        match &a.value {
            Value::Int(i) => Ok((json!(i), None)),
            Value::String(s) => Ok((json!(s), None)),
            Value::DateTime(t) => Ok((json!(crate::original::rfc3339(t)), Some("datetime"))),
            Value::Json(text) => serde_json::from_str::<Json>(text)
                .map(|v| (v, Some("json")))
                .map_err(|e| format!("JSON value does not parse: {e}")),
            Value::Relation(to) => match self.docs.get(to) {
                Some(_) => Ok((json!(self.name(*to)), Some("ref"))),
                None => Err(format!(
                    "refers to {}, which is not imported",
                    self.name(*to)
                )),
            },
            Value::Null => Err("has no value".into()),
        }
    }

    fn contains(&mut self, container: i64, a: &Attr, label: String) {
        let Value::Relation(child) = a.value else {
            return self.report(container, Some(label), "_contains row without an entity");
        };
        let (Some(ck), Some(kk)) = (self.kind(container), self.kind(child)) else {
            // Either side was left out, and the report already says so.
            return;
        };
        let cname = self.name(container).to_string();
        let child_doc = self.docs.get_mut(&child).unwrap();
        match ck {
            Kind::Pool => {
                let child_name = self.name(child).to_string();
                self.docs
                    .get_mut(&container)
                    .unwrap()
                    .members
                    .insert(child_name);
            }
            Kind::Rack if kk.is_device() && a.subkey.as_deref() == Some("ru") => {
                match (&child_doc.rack, a.number) {
                    (Some(r), _) if *r != cname => {
                        let why = format!("also in rack {r}; a device is in one rack");
                        self.report(container, Some(label), why);
                    }
                    (_, Some(u)) => {
                        child_doc.rack = Some(cname);
                        child_doc.units.push(u);
                        child_doc.parent = Some(container);
                    }
                    (_, None) => self.report(container, Some(label), "rack row without a unit"),
                }
            }
            Kind::Rack if kk.is_device() => {
                child_doc.rack = Some(cname);
                child_doc.parent = Some(container);
            }
            Kind::Datacenter | Kind::Cage | Kind::Zone
                if kk.is_device() || matches!(kk, Kind::Rack | Kind::Cage | Kind::Zone) =>
            {
                let field = match ck {
                    Kind::Datacenter => "datacenter",
                    Kind::Cage => "cage",
                    _ => "zone",
                };
                child_doc.spec.insert(field.into(), json!(cname));
                child_doc.parent = Some(container);
            }
            _ => {
                let why = format!("a {ck} cannot hold a {kk} here");
                let child_name = self.name(child).to_string();
                self.report(container, Some(format!("{label} → {child_name}")), why);
            }
        }
    }

    /// A driver property (`subkey = property`) that is a setting here.
    fn property(&mut self, id: i64, a: &Attr) -> bool {
        let Some(kind) = self.kind(id) else {
            return false;
        };
        let int = match &a.value {
            Value::Int(i) => Some(*i),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        let text = match &a.value {
            Value::String(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        };
        let d = self.docs.get_mut(&id).unwrap();
        match (kind, a.key.as_str()) {
            (Kind::Rack, "minu") => d.spec.insert("minU".into(), json!(int)),
            (Kind::Rack, "maxu") => d.spec.insert("maxU".into(), json!(int)),
            (Kind::IpManager, "baseip" | "netmask" | "gateway") => {
                d.spec.insert(format!("_{}", a.key), json!(text))
            }
            (Kind::NameManager, "basename") => d.spec.insert("basename".into(), json!(text)),
            (Kind::NameManager, "digits") => d.spec.insert("digits".into(), json!(int)),
            (Kind::NameManager, "next") => d.spec.insert("_next".into(), json!(int)),
            (Kind::NameManager, "leadingZeros") => {
                if int == Some(0) {
                    self.report(
                        id,
                        Some("leadingZeros.property".into()),
                        "names without leading zeros are not made here; digits pads them",
                    );
                }
                None
            }
            _ => return false,
        };
        true
    }

    fn address(&mut self, id: i64, a: &Attr, label: String) {
        let Some(n) = a.number else {
            return self.report(id, Some(label), "address row without a number");
        };
        if !self.kind(id).is_some_and(Kind::is_device) {
            let why = "only devices hold addresses here";
            if a.subkey.as_deref() == Some("manager") {
                self.report(id, Some(label), why);
            }
            return;
        }
        let manager_ok = match a.value {
            Value::Relation(m) => self.kind(m) == Some(Kind::IpManager),
            _ => true,
        };
        let mname = match a.value {
            Value::Relation(m) => self.name(m).to_string(),
            _ => String::new(),
        };
        let item = self
            .docs
            .get_mut(&id)
            .unwrap()
            .addresses
            .entry(n)
            .or_default();
        match (a.subkey.as_deref(), &a.value) {
            (Some("manager"), Value::Relation(_)) if manager_ok => {
                item.insert("manager".into(), json!(mname));
            }
            (Some("manager"), _) => {
                let why = format!("address from {mname}, which is not an imported IPManager");
                self.docs.get_mut(&id).unwrap().addresses.remove(&n);
                self.report(id, Some(label), why);
            }
            (Some("ipstring"), Value::String(s)) => {
                item.insert("address".into(), json!(s));
            }
            (Some("osportname"), Value::String(s)) => {
                item.insert("osPort".into(), json!(s));
            }
            // The integer form and the cidr are derived from the address.
            (None | Some("cidr"), _) => {}
            _ => self.report(id, Some(label), "address attribute with no equivalent"),
        }
    }

    fn port(&mut self, id: i64, ptype: &str, a: &Attr, label: String) {
        let Some(n) = a.number else {
            return self.report(id, Some(label), "port row without a port number");
        };
        if !self.kind(id).is_some_and(Kind::is_device) {
            return self.report(id, Some(label), "only devices have ports here");
        }
        let peer = match a.value {
            Value::Relation(p) => Some((p, self.kind(p).is_some_and(Kind::is_device))),
            _ => None,
        };
        let peer_name = peer.map(|(p, _)| self.name(p).to_string());
        let item = self
            .docs
            .get_mut(&id)
            .unwrap()
            .ports
            .entry((ptype.to_string(), n))
            .or_default();
        let text = match &a.value {
            Value::String(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        };
        match (a.subkey.as_deref(), peer) {
            (Some("connection"), Some((_, true))) => {
                item.insert("_peer".into(), json!(peer_name));
            }
            (Some("connection"), _) => {
                let why = "cabled to something that is not an imported device";
                self.report(id, Some(label), why)
            }
            (Some("otherportnum"), _) => {
                item.insert("_otherport".into(), json!(text));
            }
            (Some("mac"), _) if text.is_some() => {
                item.insert("mac".into(), json!(text));
            }
            (Some("osportname"), _) if text.is_some() => {
                item.insert("osPort".into(), json!(text));
            }
            (Some(k), _) if text.is_some() => {
                let attrs = item
                    .entry("attrs")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                    .unwrap();
                attrs.insert(k.to_string(), json!(text));
            }
            _ => self.report(id, Some(label), "port attribute with no equivalent"),
        }
    }

    /// User-defined Drivers: the original's drivers this project lacks, and
    /// built-in drivers at a unit count their built-in size does not have.
    fn drivers(&mut self, o: &Original) -> Vec<Json> {
        let builtins: HashMap<String, clusto_core::Driver> = clusto_core::driver::builtins()
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
        let mut wanted: BTreeMap<String, (Kind, u32, BTreeMap<String, i64>)> = BTreeMap::new();
        for e in &o.entities {
            let Some(d) = self.docs.get_mut(&e.id) else {
                continue;
            };
            let kind = d.kind.unwrap();
            let units = d.units.len() as u32;
            let builtin_name = d
                .driver
                .clone()
                .unwrap_or_else(|| kind.default_driver().into());
            let (name, base_ports) = match builtins.get(&builtin_name) {
                Some(b) if !kind.is_device() || units == 0 || units == b.rack_units => continue,
                Some(b) => (format!("{builtin_name}-{units}u"), b.ports.clone()),
                None => (builtin_name, BTreeMap::new()),
            };
            d.driver = Some(name.clone());
            let entry = wanted
                .entry(name)
                .or_insert_with(|| (kind, units, BTreeMap::new()));
            entry.1 = entry.1.max(units);
            for (t, n) in base_ports {
                let c = entry.2.entry(t).or_default();
                *c = (*c).max(n as i64);
            }
            for (t, n) in d.ports.keys() {
                let c = entry.2.entry(t.clone()).or_default();
                *c = (*c).max(*n);
            }
        }
        wanted
            .into_iter()
            .map(|(name, (kind, units, ports))| {
                let mut spec = json!({"base": kind.to_string()});
                if kind.is_device() {
                    spec["rackUnits"] = json!(units.max(1));
                }
                if !ports.is_empty() {
                    spec["ports"] = json!(ports);
                }
                document("Driver", &name, spec)
            })
            .collect()
    }

    fn finish(mut self, o: &Original, drivers: Vec<Json>) -> Mapped {
        let mut files: BTreeMap<String, Vec<Json>> = BTreeMap::new();
        files
            .entry("other.yaml".into())
            .or_default()
            .extend(drivers);
        let cables = self.cables();
        for e in &o.entities {
            let Some(mut d) = self.docs.remove(&e.id) else {
                continue;
            };
            let file = self.file_of(o, e.id, &d);
            let spec = self.spec(e.id, &mut d, &cables);
            let kind = d.kind.unwrap();
            files
                .entry(file)
                .or_default()
                .push(document(&kind.to_string(), &e.name, spec));
        }
        let mut unmapped = self.unmapped;
        unmapped.sort();
        unmapped.dedup();
        Mapped {
            files: files.into_iter().filter(|(_, d)| !d.is_empty()).collect(),
            unmapped,
        }
    }

    /// Each cable once, from its lower end, as `connectedTo` text.
    fn cables(&self) -> HashMap<(i64, String, i64), String> {
        let ids: HashMap<&str, i64> = self.names.iter().map(|(i, n)| (*n, *i)).collect();
        let mut out = HashMap::new();
        for (id, d) in &self.docs {
            for ((t, n), item) in &d.ports {
                let (Some(peer), Some(other)) = (
                    item.get("_peer").and_then(Json::as_str),
                    item.get("_otherport")
                        .and_then(Json::as_str)
                        .and_then(|s| s.parse::<i64>().ok()),
                ) else {
                    continue;
                };
                let me = (self.name(*id), t.as_str(), *n);
                let them = (peer, t.as_str(), other);
                // Declared once, by the end whose (name, port) sorts first;
                // a one-sided row in the original is declared by its holder.
                let peer_declares =
                    ids.get(peer)
                        .and_then(|p| self.docs.get(p))
                        .is_some_and(|pd| {
                            pd.ports.get(&(t.clone(), other)).is_some_and(|pi| {
                                pi.get("_peer").and_then(Json::as_str) == Some(self.name(*id))
                            })
                        });
                if !peer_declares || me < them {
                    out.insert((*id, t.clone(), *n), format!("{peer}:{t}:{other}"));
                }
            }
        }
        out
    }

    /// The file an entity's manifest goes to: its top-level location's.
    fn file_of(&self, o: &Original, id: i64, d: &Doc) -> String {
        let _ = o;
        let mut top = (id, d.kind);
        let mut parent = d.parent;
        let mut hops = 0;
        while let Some(p) = parent {
            top = (p, self.kind(p));
            parent = self.docs.get(&p).and_then(|pd| pd.parent);
            hops += 1;
            if hops > 64 {
                break;
            }
        }
        match top.1 {
            Some(Kind::Datacenter | Kind::Cage | Kind::Zone | Kind::Rack) => {
                format!("{}.yaml", file_safe(self.name(top.0)))
            }
            _ => "other.yaml".into(),
        }
    }

    fn spec(&mut self, id: i64, d: &mut Doc, cables: &HashMap<(i64, String, i64), String>) -> Json {
        let kind = d.kind.unwrap();
        let mut spec = std::mem::take(&mut d.spec);
        if let Some(driver) = &d.driver {
            spec.insert("driver".into(), json!(driver));
        }
        if let Some(r) = &d.rack {
            spec.insert("rack".into(), json!(r));
        }
        if !d.units.is_empty() {
            d.units.sort();
            let (lo, hi) = (d.units[0], *d.units.last().unwrap());
            if hi - lo + 1 != d.units.len() as i64 {
                self.report(
                    id,
                    Some("_contains.ru".into()),
                    "rack units are not adjacent",
                );
            } else if lo == hi {
                spec.insert("ru".into(), json!(lo));
            } else {
                spec.insert("ru".into(), json!(format!("{lo}-{hi}")));
            }
        }
        if kind == Kind::IpManager {
            self.ip_manager(id, &mut spec);
        }
        if kind == Kind::NameManager {
            let next = self.counters.get(&(id, "next")).copied();
            let prop = spec.remove("_next").and_then(|v| v.as_i64());
            if let Some(n) = next.or(prop) {
                spec.insert("next".into(), json!(n));
            }
            spec.entry("basename").or_insert(json!(""));
            spec.entry("digits").or_insert(json!(0));
        }
        if kind == Kind::Pool && !d.members.is_empty() {
            spec.insert("members".into(), json!(d.members));
        }
        let mut ports = Vec::new();
        for ((t, n), mut item) in std::mem::take(&mut d.ports) {
            item.remove("_peer");
            item.remove("_otherport");
            if let Some(c) = cables.get(&(id, t.clone(), n)) {
                item.insert("connectedTo".into(), json!(c));
            }
            if item.is_empty() {
                continue;
            }
            item.insert("port".into(), json!(format!("{t}:{n}")));
            ports.push(Json::Object(item));
        }
        if !ports.is_empty() {
            spec.insert("ports".into(), Json::Array(ports.clone()));
        }
        let mut addresses = Vec::new();
        for (_, mut item) in std::mem::take(&mut d.addresses) {
            if !item.contains_key("manager") || !item.contains_key("address") {
                continue;
            }
            // The port an OS interface is on, when a port says so.
            let os = item.get("osPort").cloned();
            if let Some(p) = ports
                .iter()
                .find(|p| os.is_some() && p.get("osPort") == os.as_ref())
            {
                item.insert("port".into(), p["port"].clone());
            }
            addresses.push(Json::Object(item));
        }
        if !addresses.is_empty() {
            spec.insert("addresses".into(), Json::Array(addresses));
        }
        if !d.attrs.is_empty() {
            spec.insert("attrs".into(), Json::Array(std::mem::take(&mut d.attrs)));
        }
        Json::Object(spec)
    }

    fn ip_manager(&mut self, id: i64, spec: &mut serde_json::Map<String, Json>) {
        let text = |v: Option<Json>| v.and_then(|v| v.as_str().map(str::to_string));
        let base = text(spec.remove("_baseip"));
        let mask = text(spec.remove("_netmask"));
        let gateway = text(spec.remove("_gateway"));
        let cidr = base.as_deref().and_then(|b| {
            let b: Ipv4Addr = b.parse().ok()?;
            let m: Ipv4Addr = mask.as_deref().unwrap_or("255.255.255.255").parse().ok()?;
            let bits = u32::from(m);
            (bits.leading_ones() == bits.count_ones()).then(|| {
                format!(
                    "{}/{}",
                    Ipv4Addr::from(u32::from(b) & bits),
                    bits.count_ones()
                )
            })
        });
        match cidr {
            Some(c) => {
                spec.insert("cidr".into(), json!(c));
            }
            None => self.report(
                id,
                Some("baseip.property".into()),
                "no network: baseip or netmask missing or not a contiguous mask",
            ),
        }
        if let Some(g) = gateway {
            spec.insert("gateway".into(), json!(g));
        }
    }
}

/// Is this row part of a resource allocation (a row at the same key and
/// number says which manager made it)?
fn is_resource(a: &Attr, all: &[&Attr]) -> bool {
    all.iter().any(|b| {
        b.key == a.key
            && b.number == a.number
            && b.subkey.as_deref() == Some("manager")
            && matches!(b.value, Value::Relation(_))
    })
}

fn label(a: &Attr) -> String {
    let mut s = a.key.clone();
    if let Some(k) = &a.subkey {
        s.push('.');
        s.push_str(k);
    }
    if let Some(n) = a.number {
        s.push_str(&format!("#{n}"));
    }
    s
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn document(kind: &str, name: &str, spec: Json) -> Json {
    json!({
        "apiVersion": "clusto.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::original::{Counter, Entity};

    fn e(id: i64, name: &str, t: &str, driver: &str) -> Entity {
        Entity {
            id,
            name: name.into(),
            clusto_type: t.into(),
            driver: driver.into(),
            life: Default::default(),
        }
    }

    fn a(entity: i64, key: &str, subkey: Option<&str>, number: Option<i64>, value: Value) -> Attr {
        Attr {
            entity,
            key: key.into(),
            subkey: subkey.map(Into::into),
            number,
            value,
            life: Default::default(),
        }
    }

    fn doc<'a>(m: &'a Mapped, name: &str) -> &'a Json {
        m.files
            .iter()
            .flat_map(|(_, d)| d)
            .find(|d| d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} not mapped: {:?}", m.files))
    }

    #[test]
    fn racks_units_addresses_cables_and_pools() {
        use Value::*;
        let o = Original {
            entities: vec![
                e(1, "dc1", "datacenter", "basicdatacenter"),
                e(2, "r1", "rack", "basicrack"),
                e(3, "s1", "server", "basicserver"),
                e(4, "sw1", "networkswitch", "basicnetworkswitch"),
                e(5, "net", "resourcemanager", "ipmanager"),
                e(6, "u", "pool", "unique_pool"),
                e(7, "names", "resourcemanager", "simpleentitynamemanager"),
                e(8, "pdu", "powerstrip", "basicpowerstrip"),
            ],
            attrs: vec![
                a(1, "_contains", None, Some(0), Relation(2)),
                a(2, "_contains", Some("ru"), Some(3), Relation(3)),
                a(2, "_contains", Some("ru"), Some(40), Relation(8)),
                a(2, "_contains", Some("ru"), Some(41), Relation(8)),
                a(3, "ip", None, Some(0), Int(-1)),
                a(3, "ip", Some("manager"), Some(0), Relation(5)),
                a(
                    3,
                    "ip",
                    Some("ipstring"),
                    Some(0),
                    String("10.0.0.5".into()),
                ),
                a(3, "ip", Some("osportname"), Some(0), String("eth0".into())),
                a(3, "port-nic-eth", Some("connection"), Some(1), Relation(4)),
                a(3, "port-nic-eth", Some("otherportnum"), Some(1), Int(7)),
                a(
                    3,
                    "port-nic-eth",
                    Some("osportname"),
                    Some(1),
                    String("eth0".into()),
                ),
                a(4, "port-nic-eth", Some("connection"), Some(7), Relation(3)),
                a(4, "port-nic-eth", Some("otherportnum"), Some(7), Int(1)),
                a(
                    3,
                    "bought",
                    None,
                    None,
                    DateTime("2011-05-01 12:30:00.000000".into()),
                ),
                a(3, "buddy", None, None, Relation(4)),
                a(
                    5,
                    "baseip",
                    Some("property"),
                    None,
                    String("10.0.0.0".into()),
                ),
                a(
                    5,
                    "netmask",
                    Some("property"),
                    None,
                    String("255.255.255.0".into()),
                ),
                a(6, "_contains", None, Some(0), Relation(3)),
                a(7, "basename", Some("property"), None, String("s".into())),
                a(7, "digits", Some("property"), None, Int(4)),
                a(7, "next", Some("property"), None, Int(1)),
            ],
            counters: vec![Counter {
                entity: 7,
                key: "next".into(),
                value: 12,
            }],
            versions: vec![],
        };
        let m = map(&o);
        assert_eq!(m.unmapped, vec![], "nothing left out");
        let s1 = doc(&m, "s1");
        assert_eq!(s1["kind"], "Server");
        assert_eq!(s1["spec"]["rack"], "r1");
        assert_eq!(s1["spec"]["ru"], 3);
        assert_eq!(
            s1["spec"]["addresses"],
            json!([{"manager": "net", "address": "10.0.0.5", "osPort": "eth0", "port": "nic-eth:1"}])
        );
        assert_eq!(
            s1["spec"]["ports"],
            json!([{"port": "nic-eth:1", "osPort": "eth0", "connectedTo": "sw1:nic-eth:7"}])
        );
        assert!(
            doc(&m, "sw1")["spec"].get("ports").is_none(),
            "one end declares a cable"
        );
        let attrs = s1["spec"]["attrs"].as_array().unwrap();
        assert!(attrs.contains(
            &json!({"key": "bought", "value": "2011-05-01T12:30:00.000Z", "type": "datetime"})
        ));
        assert!(attrs.contains(&json!({"key": "buddy", "value": "sw1", "type": "ref"})));
        assert_eq!(doc(&m, "r1")["spec"]["datacenter"], "dc1");
        assert_eq!(doc(&m, "net")["spec"]["cidr"], "10.0.0.0/24");
        assert_eq!(
            doc(&m, "u")["spec"],
            json!({"type": "unique", "group": UNIQUE_POOL_GROUP, "members": ["s1"]})
        );
        assert_eq!(
            doc(&m, "names")["spec"],
            json!({"basename": "s", "digits": 4, "next": 12})
        );
        // A 1U power strip the original put across two units gets a 2U driver.
        let pdu = doc(&m, "pdu");
        assert_eq!(pdu["spec"]["ru"], "40-41");
        assert_eq!(pdu["spec"]["driver"], "basicpowerstrip-2u");
        let d = doc(&m, "basicpowerstrip-2u");
        assert_eq!(d["spec"]["rackUnits"], 2);
        assert_eq!(d["spec"]["ports"]["pwr-nema-5"], 24);
        // Files: the datacenter's, and the rest.
        let files: Vec<&str> = m.files.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(files, vec!["dc1.yaml", "other.yaml"]);
    }

    #[test]
    fn what_has_no_equivalent_is_reported() {
        use Value::*;
        let o = Original {
            entities: vec![
                e(1, "n1", "resourcemanager", "simplenummanager"),
                e(2, "s1", "server", "basicserver"),
                e(3, "x1", "server", "fancyserver"),
                e(4, "p", "pool", "pool"),
            ],
            attrs: vec![
                a(2, "resource", None, Some(0), Int(5)),
                a(2, "resource", Some("manager"), Some(0), Relation(1)),
                a(2, "cfg", None, None, Json("{nope".into())),
                a(2, "link", None, None, Relation(1)),
                a(2, "_contains", None, Some(0), Relation(3)),
                a(4, "_contains", None, Some(0), Relation(3)),
            ],
            counters: vec![],
            versions: vec![],
        };
        let m = map(&o);
        let report: Vec<std::string::String> = m.unmapped.iter().map(|u| u.to_string()).collect();
        assert!(
            report.contains(
                &"n1: driver simplenummanager (type resourcemanager) has no equivalent here"
                    .to_owned()
            ),
            "{report:?}"
        );
        assert!(
            report
                .iter()
                .any(|r| r.starts_with("s1 resource#0: allocation")),
            "{report:?}"
        );
        assert!(
            report
                .iter()
                .any(|r| r.starts_with("s1 cfg: JSON value does not parse")),
            "{report:?}"
        );
        assert!(
            report.contains(&"s1 link: refers to n1, which is not imported".to_owned()),
            "{report:?}"
        );
        assert!(
            report.contains(&"s1 _contains#0 → x1: a Server cannot hold a Server here".to_owned()),
            "{report:?}"
        );
        // An unknown driver becomes a user-defined Driver on its type's base.
        assert_eq!(doc(&m, "x1")["spec"]["driver"], "fancyserver");
        assert_eq!(doc(&m, "fancyserver")["spec"]["base"], "Server");
        assert_eq!(doc(&m, "p")["spec"]["members"], json!(["x1"]));
    }
}
