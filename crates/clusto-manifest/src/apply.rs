//! Converging an inventory to manifests. The same function serves `plan`
//! (on a copy) and `apply` (inside the store's write), so what the plan shows
//! is what apply does. Every rule is the core's; this module only decides
//! what to ask for, and collects every failure instead of stopping at one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use clusto_core::{
    CoreError, EntityId, Inventory, Kind, PoolType, PortId, RuRange, Value, ValueType, model,
};
use serde_json::Value as Json;

use crate::layout;
use crate::parse::{Loc, ManifestError, Object, Spec};
use crate::types::*;

/// Who owns an object: an apply set, or another manager.
pub const MANAGED_BY: &str = "managedBy";
/// The owner an object records (`applyset:NAME`, or another manager).
pub fn managed_by(inv: &Inventory, id: EntityId) -> Option<&str> {
    match inv.meta(id, MANAGED_BY) {
        Some(Value::String(by)) => Some(by),
        _ => None,
    }
}

/// Hash of the object as last applied, to tell drift from edits.
pub const APPLIED: &str = "applied";
/// The claim that ties a `nameFrom` manifest to the name it was given.
pub const CLAIM: &str = "claim";

#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// The apply set that owns what these manifests declare.
    pub apply_set: String,
    /// Delete objects of this apply set that the manifests no longer declare.
    pub prune: bool,
    /// Take over the fields another apply set owns that these manifests change.
    pub force_conflicts: bool,
}

impl ApplyOptions {
    pub fn owner(&self) -> String {
        format!("applyset:{}", self.apply_set)
    }
}

/// The declared facts about one entity, gathered from its own manifest and
/// from others that mention it (pool members, layouts, cables).
#[derive(Default)]
struct Wanted {
    parents: Vec<(String, Option<String>)>,
}

pub(crate) fn err(loc: &Loc, object: &str, rule: impl Into<String>) -> ManifestError {
    ManifestError {
        loc: loc.clone(),
        object: Some(object.to_string()),
        rule: rule.into(),
    }
}

fn core_rule(e: CoreError) -> String {
    e.to_string()
}

/// A digest of an entity's visible state (spec, metadata, addresses).
pub fn state_hash(inv: &Inventory, id: EntityId) -> String {
    hash_flat(&crate::plan::flatten(&inv.resource(id, false)))
}

/// The digest of a flattened resource, ownership bookkeeping left out.
pub fn hash_flat(flat: &BTreeMap<String, serde_json::Value>) -> String {
    let text: Vec<String> = flat
        .iter()
        .filter(|(k, _)| *k != "metadata.applied" && *k != "metadata.managedBy")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{:016x}", clusto_core::hash::fnv64(&text.join("\n")))
}

/// Converts a manifest attribute value to a typed value.
pub(crate) fn attr_value(inv: &Inventory, item: &AttrItem) -> Result<Value, String> {
    let text = |v: &Json| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    match item.value_type.as_deref() {
        None => Ok(match &item.value {
            Json::String(s) => Value::String(s.clone()),
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            Json::Null => return Err(format!("attribute {} has no value", item.key)),
            other => Value::Json(other.clone()),
        }),
        Some(t) => {
            let ty: ValueType = t.parse().map_err(core_rule)?;
            match ty {
                ValueType::Json => Ok(Value::Json(item.value.clone())),
                ValueType::Ref => {
                    let name = text(&item.value);
                    inv.id_of(&name)
                        .map(Value::Ref)
                        .map_err(|_| format!("attribute {} refers to unknown {name}", item.key))
                }
                ty => Value::parse_as(ty, &text(&item.value)).map_err(core_rule),
            }
        }
    }
}

fn desired_driver(o: &Object) -> Option<String> {
    match &o.spec {
        Spec::Location(s) => s.driver.clone(),
        Spec::Rack(s) => s.driver.clone(),
        Spec::Device(s) => s.driver.clone(),
        Spec::Entity(s) => s.driver.clone(),
        Spec::Pool(s) => Some(
            match s.pool_type {
                PoolKind::Plain => PoolType::Plain,
                PoolKind::Exclusive => PoolType::Exclusive,
                PoolKind::Unique => PoolType::Unique,
            }
            .driver()
            .to_string(),
        ),
        _ => None,
    }
}

fn spec_attrs(o: &Object) -> Option<&Attrs> {
    match &o.spec {
        Spec::Location(s) => Some(&s.attrs),
        Spec::Rack(s) => Some(&s.attrs),
        Spec::Device(s) => Some(&s.attrs),
        Spec::Pool(s) => Some(&s.attrs),
        Spec::IpManager(s) => Some(&s.attrs),
        Spec::Driver(s) => Some(&s.attrs),
        Spec::VmManager(s) => Some(&s.attrs),
        Spec::VirtualMachine(s) => Some(&s.attrs),
        Spec::Entity(s) => Some(&s.attrs),
        Spec::NameManager(_) | Spec::RackLayout(_) => None,
    }
}

fn ports_of(o: &Object) -> &[PortItem] {
    match &o.spec {
        Spec::Device(s) => &s.ports,
        Spec::VirtualMachine(s) => &s.ports,
        _ => &[],
    }
}

fn addresses_of(o: &Object) -> &[AddressItem] {
    match &o.spec {
        Spec::Device(s) => &s.addresses,
        Spec::VirtualMachine(s) => &s.addresses,
        _ => &[],
    }
}

/// Direct containers the object declares for itself.
fn own_parents(o: &Object) -> Vec<(String, Option<String>)> {
    let mut v = Vec::new();
    let mut push = |n: &Option<String>| {
        if let Some(n) = n {
            v.push((n.clone(), None));
        }
    };
    match &o.spec {
        Spec::Location(s) => {
            push(&s.datacenter);
            push(&s.cage);
            push(&s.zone);
        }
        Spec::Rack(s) => {
            push(&s.datacenter);
            push(&s.cage);
            push(&s.zone);
        }
        Spec::Device(s) => {
            push(&s.datacenter);
            push(&s.cage);
            push(&s.zone);
            if let Some(r) = &s.rack {
                v.push((
                    r.clone(),
                    Some(s.ru.as_ref().map(Ru::text).unwrap_or_default()),
                ));
            }
        }
        _ => {}
    }
    let pools: &[String] = match &o.spec {
        Spec::Location(s) => &s.pools,
        Spec::Rack(s) => &s.pools,
        Spec::Device(s) => &s.pools,
        Spec::Pool(s) => &s.pools,
        Spec::IpManager(s) => &s.pools,
        Spec::VirtualMachine(s) => &s.pools,
        Spec::Entity(s) => &s.pools,
        _ => &[],
    };
    v.extend(pools.iter().map(|p| (p.clone(), None)));
    v
}

/// Kind-specific settings as `(field, text or None to clear)`.
fn settings(o: &Object) -> Vec<(&'static str, Option<String>)> {
    let js = |v: &dyn erased::Ser| Some(v.json());
    match &o.spec {
        Spec::Rack(s) => vec![
            ("minU", s.min_u.map(|n| n.to_string())),
            ("maxU", s.max_u.map(|n| n.to_string())),
            ("layout", s.layout.clone()),
        ],
        Spec::Pool(s) => vec![("group", s.group.clone())],
        Spec::Device(s) => vec![("powerState", s.power_state.map(|p| p.as_str().to_string()))],
        Spec::IpManager(s) => vec![
            ("cidr", Some(s.cidr.clone())),
            ("gateway", s.gateway.clone()),
            (
                "reserved",
                (!s.reserved.is_empty()).then(|| s.reserved.join(",")),
            ),
        ],
        Spec::NameManager(s) => vec![
            ("basename", Some(s.basename.clone())),
            ("digits", Some(s.digits.to_string())),
        ],
        Spec::Driver(s) => vec![
            ("base", Some(s.base.clone())),
            ("rackUnits", s.rack_units.map(|n| n.to_string())),
            (
                "ports",
                (!s.ports.is_empty()).then(|| serde_json::to_string(&s.ports).unwrap_or_default()),
            ),
            ("power", s.power.as_ref().and_then(|v| js(v))),
            ("console", s.console.as_ref().and_then(|v| js(v))),
        ],
        Spec::RackLayout(s) => vec![
            ("devices", js(&s.devices)),
            ("connections", js(&s.connections)),
            ("serverSlots", js(&s.server_slots)),
            ("nameManager", s.name_manager.clone()),
        ],
        Spec::VmManager(s) => vec![
            (
                "backend",
                Some(
                    serde_json::to_value(s.backend)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                ),
            ),
            ("libvirt", s.libvirt.as_ref().and_then(|v| js(v))),
            (
                "reserved",
                (!s.reserved.is_empty()).then(|| js(&s.reserved)).flatten(),
            ),
            ("ec2", s.ec2.as_ref().and_then(|v| js(v))),
            ("names", s.names.clone()),
        ],
        Spec::VirtualMachine(s) => vec![
            ("manager", Some(s.manager.clone())),
            ("host", s.host.clone()),
            ("cpus", s.cpus.map(|n| n.to_string())),
            ("memoryMiB", s.memory_mib.map(|n| n.to_string())),
            ("diskGiB", s.disk_gib.map(|n| n.to_string())),
            ("image", s.image.clone()),
            ("instanceType", s.instance_type.clone()),
            (
                "powerState",
                s.power_state
                    .and_then(|p| serde_json::to_value(p).ok())
                    .and_then(|v| v.as_str().map(str::to_string)),
            ),
            (
                "allowTermination",
                s.allow_termination.map(|b| b.to_string()),
            ),
        ],
        _ => vec![],
    }
}

/// Small helper so `settings` can JSON-encode any serialisable field.
mod erased {
    pub trait Ser {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

fn setting_text(v: &Value) -> String {
    match v {
        Value::Json(j) => j.to_string(),
        other => other.to_text().unwrap_or_default(),
    }
}

struct Applier<'a> {
    inv: &'a mut Inventory,
    errors: Vec<ManifestError>,
}

impl Applier<'_> {
    fn fail(&mut self, o: &Object, rule: impl Into<String>) {
        self.fail_at(o, "", rule);
    }

    /// An error positioned where `needle` (the value or key at fault)
    /// appears in the object's document.
    fn fail_at(&mut self, o: &Object, needle: &str, rule: impl Into<String>) {
        let rule = rule.into();
        // Core errors name their object first; the position already does.
        let rule = rule
            .strip_prefix(&format!("{}: ", o.name()))
            .map(str::to_string)
            .unwrap_or(rule);
        self.errors.push(err(&o.locate(needle), &o.label(), rule));
    }

    fn id(&mut self, o: &Object, name: &str, what: &str) -> Option<EntityId> {
        match self.inv.id_of(name) {
            Ok(id) => Some(id),
            Err(_) => {
                self.fail_at(
                    o,
                    name,
                    format!(
                        "{what} {name} does not exist (not in the inventory nor in the manifests)"
                    ),
                );
                None
            }
        }
    }
}

/// Applies `objects` to `inv`. Returns every error; when there are any the
/// caller must discard `inv` (the store's write does, so nothing is written).
pub fn apply(inv: &mut Inventory, objects: &[Object], opts: &ApplyOptions) -> Vec<ManifestError> {
    let mut a = Applier {
        inv,
        errors: Vec::new(),
    };
    let (generated, links) = match layout::expand(a.inv, objects) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let named = name_from_managers(&mut a, objects, opts);
    let objects: Vec<&Object> = objects
        .iter()
        .filter(|o| !o.name().is_empty())
        .chain(named.iter())
        .chain(generated.iter())
        .collect();
    let owner = opts.owner();
    let declared: HashSet<&str> = objects.iter().map(|o| o.name()).collect();
    // Ownership is per field, as in server-side apply: what other apply
    // sets own is remembered now and checked once every phase has run.
    let guarded = guard(a.inv, &objects, &owner);
    let owned: Vec<&Object> = objects.clone();

    // Prune first, so what it frees (units, ports, addresses) can be reused.
    if opts.prune {
        let stale: Vec<(EntityId, String)> = a
            .inv
            .entities()
            .into_iter()
            .filter(|e| !declared.contains(e.name.as_str()))
            .filter(|e| managed_by(a.inv, e.id) == Some(owner.as_str()))
            .map(|e| (e.id, e.name.clone()))
            .collect();
        for (id, name) in stale {
            if let Err(e) = a.inv.delete(id) {
                a.errors.push(ManifestError {
                    loc: Loc::default(),
                    object: Some(name),
                    rule: format!("cannot prune: {e}"),
                });
            }
        }
    }

    // 1. Entities and drivers; user-defined drivers first so others can use them.
    let mut order: Vec<&Object> = owned.clone();
    order.sort_by_key(|o| if o.kind == Kind::Driver { 0 } else { 1 });
    for o in &order {
        match a.inv.get(o.name()).map(|e| (e.id, e.kind)) {
            Ok((_, k)) if k != o.kind => {
                a.fail(o, format!("{} already exists as a {k}", o.name()));
            }
            Ok((id, _)) if a.inv.vm_deleting(id) => {
                a.fail(
                    o,
                    format!(
                        "{} is being deleted (Terminating); apply it again once the controller has removed it",
                        o.name()
                    ),
                );
            }
            Ok(_) => {}
            Err(_) => {
                if let Err(e) = a.inv.create(o.kind, o.name(), None) {
                    a.fail(o, core_rule(e));
                }
            }
        }
        if o.kind == Kind::Driver
            && let Ok(id) = a.inv.id_of(o.name())
        {
            for (f, v) in settings(o) {
                apply_setting(&mut a, o, id, f, v);
            }
        }
    }
    // Failed creations leave nothing to converge.
    // Each object's entity is resolved once: no phase renames or deletes.
    let owned: Vec<(&Object, EntityId)> = owned
        .into_iter()
        .filter_map(|o| {
            let e = a.inv.get(o.name()).ok()?;
            (e.kind == o.kind).then_some((o, e.id))
        })
        .collect();

    // 2. Ownership, metadata, settings.
    for &(o, id) in &owned {
        let labels = (!o.metadata.labels.is_empty())
            .then(|| Value::Json(serde_json::json!(o.metadata.labels)));
        a.inv.set_meta(id, "labels", labels);
        let ann = (!o.metadata.annotations.is_empty())
            .then(|| Value::Json(serde_json::json!(o.metadata.annotations)));
        a.inv.set_meta(id, "annotations", ann);
        if o.kind != Kind::Driver {
            for (f, v) in settings(o) {
                apply_setting(&mut a, o, id, f, v);
            }
        }
        if let Spec::NameManager(s) = &o.spec {
            // `next` only ever moves forward: allocations already made stand.
            let cur = a.inv.setting(id, "next").and_then(Value::as_int);
            let want = s.next.unwrap_or(0);
            if cur.is_none_or(|c| want > c)
                && let Err(e) = a.inv.configure(id, "next", &want.to_string())
            {
                a.fail_at(o, "next", core_rule(e));
            }
        }
    }

    // 3. Drivers of existing things (after settings: a driver's height may change).
    for &(o, id) in &owned {
        let want = desired_driver(o).unwrap_or_else(|| o.kind.default_driver().to_string());
        if a.inv.entity(id).is_some_and(|e| e.driver != want) {
            // A driver change can only succeed once the thing is out of its rack.
            let racked = a.inv.rack_of(id);
            if let Some((rack, _)) = racked {
                let _ = a.inv.remove(rack, id);
            }
            if let Err(e) = a.inv.set_driver(id, &want) {
                a.fail_at(o, "driver", core_rule(e));
            }
        }
    }

    // 4. Containment: what each entity should be directly in.
    let mut wanted: BTreeMap<&str, Wanted> = BTreeMap::new();
    let mut reshaped: HashSet<&str> = HashSet::new();
    for &(o, _) in &owned {
        reshaped.insert(o.name());
        wanted
            .entry(o.name())
            .or_default()
            .parents
            .extend(own_parents(o));
    }
    for &(o, _) in &owned {
        match &o.spec {
            Spec::Pool(s) => {
                for m in &s.members {
                    wanted
                        .entry(m.as_str())
                        .or_default()
                        .parents
                        .push((o.name().to_string(), None));
                }
            }
            Spec::VmManager(s) => {
                for h in &s.hosts {
                    wanted
                        .entry(h.as_str())
                        .or_default()
                        .parents
                        .push((o.name().to_string(), None));
                }
            }
            _ => {}
        }
    }
    let by_name: HashMap<&str, &Object> = owned.iter().map(|&(o, _)| (o.name(), o)).collect();
    let anchor = |name: &str| {
        by_name
            .get(name)
            .copied()
            .or_else(|| owned.first().map(|&(o, _)| o))
    };
    // Resolve, then remove what is no longer wanted, then add what is missing.
    type Placement<'o> = (EntityId, &'o Object, Vec<(EntityId, Option<RuRange>)>);
    let mut plan: Vec<Placement> = Vec::new();
    for (name, w) in &wanted {
        let Some(o) = anchor(name) else {
            continue;
        };
        let Some(id) = a.id(o, name, "member") else {
            continue;
        };
        let mut want = Vec::new();
        for (p, ru) in &w.parents {
            let Some(pid) = a.id(o, p, "container") else {
                continue;
            };
            let ru = match ru.as_deref() {
                Some("") => {
                    a.fail_at(o, p, format!("rack {p} needs ru"));
                    continue;
                }
                Some(t) => match t.parse::<RuRange>() {
                    Ok(r) => Some(r),
                    Err(e) => {
                        a.fail_at(o, "ru", core_rule(e));
                        continue;
                    }
                },
                None => None,
            };
            want.push((pid, ru));
        }
        plan.push((id, o, want));
    }
    for (id, _, want) in &plan {
        if !reshaped.contains(a.inv.name_of(*id)) {
            continue;
        }
        for c in a.inv.parent_rows(*id) {
            let keep = want.iter().any(|(p, ru)| {
                *p == c.parent
                    && (ru.is_none()
                        || ru.map(|r| (r.start, r.start)) == c.ru.map(|r| (r.start, r.start)))
            });
            // Only containers these manifests speak for are touched: a
            // pool made by hand keeps its hand-made members.
            let parent_kind = a.inv.kind_of(c.parent);
            let speaks = parent_kind.is_some_and(|k| {
                k.is_location() || k == Kind::Rack || k == Kind::Pool || k == Kind::VmManager
            });
            if !keep && speaks {
                let _ = a.inv.remove(c.parent, *id);
            }
        }
    }
    // Locations and racks before pools, so pool rules see final placement.
    for pass in 0..2 {
        for (id, o, want) in &plan {
            for (p, ru) in want {
                let is_pool = a.inv.kind_of(*p) == Some(Kind::Pool);
                if (pass == 0) == is_pool || a.inv.holds(*p, *id) {
                    continue;
                }
                if let Err(e) = a.inv.insert(*p, *id, *ru) {
                    let o = if reshaped.contains(a.inv.name_of(*id)) {
                        *o
                    } else {
                        anchor(a.inv.name_of(*p)).unwrap_or(*o)
                    };
                    // Rack errors are about units; others about the container.
                    let needle = if a.inv.kind_of(*p) == Some(Kind::Rack) {
                        "ru".to_string()
                    } else {
                        a.inv.name_of(*p).to_string()
                    };
                    a.fail_at(o, &needle, core_rule(e));
                }
            }
        }
    }

    // 5. Cables, declared from either end or by a layout.
    let mut want_links: Vec<(String, PortId, String, PortId, &Object)> = Vec::new();
    for &(o, _) in &owned {
        for p in ports_of(o) {
            let Some(to) = &p.connected_to else { continue };
            let port: PortId = match p.port.parse() {
                Ok(x) => x,
                Err(e) => {
                    a.fail_at(o, &p.port, core_rule(e));
                    continue;
                }
            };
            match model::split_port_ref(to) {
                Ok((peer, pp)) => {
                    want_links.push((o.name().to_string(), port, peer.to_string(), pp, o))
                }
                Err(e) => a.fail_at(o, to, core_rule(e)),
            }
        }
    }
    for (l, o) in &links {
        let Some(o) = anchor(o) else {
            continue;
        };
        want_links.push((l.0.clone(), l.1.clone(), l.2.clone(), l.3.clone(), o));
    }
    let wanted_pairs: HashSet<(String, PortId, String, PortId)> = want_links
        .iter()
        .flat_map(|(an, ap, bn, bp, _)| {
            [
                (an.clone(), ap.clone(), bn.clone(), bp.clone()),
                (bn.clone(), bp.clone(), an.clone(), ap.clone()),
            ]
        })
        .collect();
    // A cable goes only when a manifest speaks for it: one of its ports is
    // declared, or both ends are objects of these manifests. So servers
    // cabled by hand or by discovery to a layout's switch stay cabled.
    let declared_ports: HashSet<(String, PortId)> = owned
        .iter()
        .flat_map(|&(o, _)| {
            ports_of(o)
                .iter()
                .filter_map(move |p| Some((o.name().to_string(), p.port.parse().ok()?)))
        })
        .collect();
    let owned_names: HashSet<&str> = owned.iter().map(|&(o, _)| o.name()).collect();
    for &(o, id) in &owned {
        for (port, (peer, pp)) in a.inv.connected_ports(id) {
            let peer_name = a.inv.name_of(peer).to_string();
            let spoken = declared_ports.contains(&(o.name().to_string(), port.clone()))
                || declared_ports.contains(&(peer_name.clone(), pp.clone()))
                || owned_names.contains(peer_name.as_str());
            let key = (o.name().to_string(), port.clone(), peer_name, pp.clone());
            if spoken && !wanted_pairs.contains(&key) {
                let _ = a.inv.disconnect(id, &port);
            }
        }
    }
    for (an, ap, bn, bp, o) in &want_links {
        let (Some(ai), Some(bi)) = (a.id(o, an, "device"), a.id(o, bn, "device")) else {
            continue;
        };
        if a.inv.port_peer(ai, ap) == Some((bi, bp.clone())) {
            continue;
        }
        if let Err(e) = a.inv.connect(ai, ap, bi, bp) {
            a.fail_at(o, &format!("{bn}:{bp}"), core_rule(e));
        }
    }

    // 6. Port attributes.
    for &(o, id) in &owned {
        let mut want: BTreeMap<(PortId, String), String> = BTreeMap::new();
        for p in ports_of(o) {
            let Ok(port) = p.port.parse::<PortId>() else {
                continue;
            };
            if let Some(m) = &p.mac {
                want.insert((port.clone(), "mac".into()), m.clone());
            }
            if let Some(os) = &p.os_port {
                want.insert((port.clone(), "osportname".into()), os.clone());
            }
            for (k, v) in &p.attrs {
                want.insert((port.clone(), k.clone()), v.clone());
            }
        }
        for info in a.inv.ports(id) {
            for k in info.attrs.keys() {
                if !want.contains_key(&(info.port.clone(), k.clone())) {
                    let _ = a.inv.port_attr_del(id, &info.port, k);
                }
            }
        }
        for ((port, k), v) in want {
            if let Err(e) = a.inv.port_attr_set(id, &port, &k, &v) {
                a.fail_at(o, &port.to_string(), core_rule(e));
            }
        }
    }

    // 7. Addresses: fixed ones bound, manager ones kept stable or allocated.
    for &(o, id) in &owned {
        converge_addresses(&mut a, o, id);
    }

    // 8. Attributes: the declared rows are the whole visible set.
    for &(o, id) in &owned {
        let Some(attrs) = spec_attrs(o) else { continue };
        let mut want = Vec::new();
        for item in attrs.items() {
            match attr_value(a.inv, &item) {
                Ok(v) => want.push(clusto_core::Attr {
                    key: item.key.clone(),
                    subkey: item.subkey.clone(),
                    number: item.number,
                    value: v,
                }),
                Err(e) => a.fail_at(o, &item.key, e),
            }
        }
        if let Err(e) = a.inv.converge_attrs(id, want) {
            a.fail(o, core_rule(e));
        }
    }

    // 8b. Virtual machines (once hosts have their system.* attributes): placed on their manager's hosts (or checked
    // against their pin), decision and reason recorded.
    for &(o, id) in &owned {
        if o.kind != Kind::VirtualMachine {
            continue;
        }
        if let Err(e) = a.inv.place_and_record(id) {
            a.fail_at(o, "manager", core_rule(e));
        }
    }

    // 9. Fields other apply sets own may change only when forced; forced
    // fields become this apply set's, the object stays its owner's.
    let foreign = check_fields(&mut a, &guarded, &owner, opts.force_conflicts);

    // 10. An apply set owns what it creates or changes, and remembers the
    // state it left, so a later plan can tell edits made outside it (drift).
    // An object that already matched its manifest is left as it was (and
    // unowned if it was), so applying an export back to its store is a no-op.
    let touched = a.inv.changes().entities();
    for &(_, id) in &owned {
        if foreign.contains(&id) {
            continue;
        }
        let ours = matches!(a.inv.meta(id, MANAGED_BY), Some(Value::String(x)) if *x == owner);
        if !touched.contains(&id) && (!ours || a.inv.meta(id, APPLIED).is_some()) {
            continue;
        }
        let h = state_hash(a.inv, id);
        a.inv
            .set_meta(id, MANAGED_BY, Some(Value::String(owner.clone())));
        a.inv.set_meta(id, APPLIED, Some(Value::String(h)));
    }

    let mut errors = a.errors;
    errors.sort();
    errors.dedup();
    errors
}

/// Fields of an object owned by another apply set than its own: `{path: owner}`.
pub const FIELD_MANAGERS: &str = "fieldManagers";

fn field_managers(inv: &Inventory, id: EntityId) -> BTreeMap<String, String> {
    match inv.meta(id, FIELD_MANAGERS) {
        Some(Value::Json(j)) => serde_json::from_value(j.clone()).unwrap_or_default(),
        _ => BTreeMap::new(),
    }
}

/// A declared object some of whose fields another apply set owns, as it
/// was before this apply.
struct Guarded<'o> {
    id: EntityId,
    object: &'o Object,
    /// The object's owner when it is another apply set.
    foreign_owner: Option<String>,
    fields: BTreeMap<String, String>,
    before: BTreeMap<String, Json>,
}

impl Guarded<'_> {
    /// Who owns a field: its own entry, else the object's owner for fields
    /// the object had; a field nobody declared yet is nobody's.
    fn owner_of(&self, path: &str) -> Option<&str> {
        self.fields.get(path).map(String::as_str).or(self
            .foreign_owner
            .as_deref()
            .filter(|_| self.before.contains_key(path)))
    }
}

fn guard<'o>(inv: &Inventory, objects: &[&'o Object], owner: &str) -> Vec<Guarded<'o>> {
    let mut out = Vec::new();
    for &o in objects {
        let Ok(id) = inv.id_of(o.name()) else {
            continue;
        };
        let foreign_owner = managed_by(inv, id)
            .filter(|by| by.starts_with("applyset:") && *by != owner)
            .map(str::to_string);
        let fields = field_managers(inv, id);
        if foreign_owner.is_none() && fields.values().all(|f| f == owner) {
            continue;
        }
        out.push(Guarded {
            id,
            object: o,
            foreign_owner,
            fields,
            before: crate::plan::flatten(&inv.resource(id, false)),
        });
    }
    out
}

/// Compares each guarded object with what the phases made of it: a field
/// another apply set owns that changed is a conflict naming the field and
/// its owner, unless forced; forced fields are recorded as this apply set's.
/// Returns the objects another apply set owns (their owner stays).
fn check_fields(
    a: &mut Applier,
    guarded: &[Guarded],
    owner: &str,
    force: bool,
) -> HashSet<EntityId> {
    let mut foreign = HashSet::new();
    for g in guarded {
        if g.foreign_owner.is_some() {
            foreign.insert(g.id);
        }
        if a.inv.entity(g.id).is_none() {
            continue;
        }
        let after = crate::plan::flatten(&a.inv.resource(g.id, false));
        let paths: BTreeSet<&String> = g.before.keys().chain(after.keys()).collect();
        let mut fields = g.fields.clone();
        for path in paths {
            if path.starts_with("metadata.") || g.before.get(path) == after.get(path) {
                continue;
            }
            match g.owner_of(path) {
                Some(by) if by != owner && !force => {
                    let show =
                        |v: Option<&Json>| v.map(|v| v.to_string()).unwrap_or("nothing".into());
                    let needle = path.rsplit('.').next().unwrap_or(path);
                    a.fail_at(
                        g.object,
                        needle,
                        format!(
                            "conflict: {path} of {} is owned by {by} and would change from {} to {}; \
                             use --force-conflicts to take over this field",
                            g.object.name(),
                            show(g.before.get(path)),
                            show(after.get(path)),
                        ),
                    );
                }
                _ if g.foreign_owner.is_some() => {
                    fields.insert(path.clone(), owner.to_string());
                }
                _ => {
                    fields.remove(path);
                }
            }
        }
        if fields != g.fields {
            let v = (!fields.is_empty()).then(|| Value::Json(serde_json::json!(fields)));
            a.inv.set_meta(g.id, FIELD_MANAGERS, v);
        }
    }
    foreign
}

/// Gives objects that ask for a name from a NameManager the name they got
/// before (found by their claim), or a new one now.
fn name_from_managers(a: &mut Applier, objects: &[Object], opts: &ApplyOptions) -> Vec<Object> {
    let nameless: Vec<&Object> = objects.iter().filter(|o| o.name().is_empty()).collect();
    if nameless.is_empty() {
        return Vec::new();
    }
    // The NameManagers these manifests declare must exist (with their
    // settings) before they can name anything; the later phases will find
    // them already converged.
    for o in objects
        .iter()
        .filter(|o| o.kind == Kind::NameManager && !o.name().is_empty())
    {
        let id = match a.inv.id_of(o.name()) {
            Ok(id) => id,
            Err(_) => match a.inv.create(Kind::NameManager, o.name(), None) {
                Ok(id) => id,
                Err(e) => {
                    a.fail(o, core_rule(e));
                    continue;
                }
            },
        };
        for (f, v) in settings(o) {
            apply_setting(a, o, id, f, v);
        }
    }
    let owner = opts.owner();
    let mut claimed: HashMap<String, String> = HashMap::new();
    for e in a.inv.entities() {
        if let Some(Value::String(c)) = a.inv.meta(e.id, CLAIM)
            && matches!(a.inv.meta(e.id, MANAGED_BY), Some(Value::String(by)) if *by == owner)
        {
            claimed.insert(c.clone(), e.name.clone());
        }
    }
    let mut out = Vec::new();
    for o in nameless {
        let (Some(from), Some(claim)) = (&o.metadata.name_from, &o.metadata.claim) else {
            continue;
        };
        let name = match claimed.get(claim) {
            Some(n) => n.clone(),
            None => {
                let Some(mgr) = a.id(o, from, "NameManager") else {
                    continue;
                };
                let driver = desired_driver(o);
                match a.inv.name_allocate(mgr, o.kind, driver.as_deref()) {
                    Ok(id) => {
                        a.inv
                            .set_meta(id, CLAIM, Some(Value::String(claim.clone())));
                        a.inv
                            .set_meta(id, MANAGED_BY, Some(Value::String(owner.clone())));
                        a.inv.name_of(id).to_string()
                    }
                    Err(e) => {
                        a.fail(o, core_rule(e));
                        continue;
                    }
                }
            }
        };
        let mut named = o.clone();
        named.metadata.name = name;
        out.push(named);
    }
    out
}

fn apply_setting(a: &mut Applier, o: &Object, id: EntityId, field: &str, want: Option<String>) {
    let cur = a.inv.setting(id, field).map(setting_text);
    match (want, cur) {
        (Some(w), Some(c)) if w == c => {}
        (Some(w), _) => {
            if let Err(e) = a.inv.configure(id, field, &w) {
                a.fail_at(o, field, core_rule(e));
            }
        }
        (None, Some(_)) => a.inv.clear_setting(id, field),
        (None, None) => {}
    }
}

fn converge_addresses(a: &mut Applier, o: &Object, id: EntityId) {
    let items = addresses_of(o);
    let held: Vec<clusto_core::Address> = a.inv.addresses_of(id).into_iter().cloned().collect();
    let mut taken: HashSet<IpAddr> = HashSet::new();
    // (item, the address it keeps or binds; None = allocate)
    let mut decided: Vec<(&AddressItem, Option<IpAddr>, Option<EntityId>)> = Vec::new();
    for item in items {
        let port = match item.port.as_deref().map(str::parse::<PortId>).transpose() {
            Ok(p) => p,
            Err(e) => {
                a.fail_at(o, item.port.as_deref().unwrap_or("port"), core_rule(e));
                continue;
            }
        };
        match (&item.address, &item.manager) {
            (Some(addr), m) => match addr.parse::<IpAddr>() {
                Ok(ip) => {
                    taken.insert(ip);
                    // With a manager, the fixed address comes from it.
                    let mid = match m {
                        Some(m) => match a.id(o, m, "IPManager") {
                            Some(x) => Some(x),
                            None => continue,
                        },
                        None => None,
                    };
                    decided.push((item, Some(ip), mid));
                }
                Err(_) => a.fail_at(o, addr, format!("address {addr:?} is not an IP address")),
            },
            (None, Some(m)) => {
                let Some(mid) = a.id(o, m, "IPManager") else {
                    continue;
                };
                let same = |h: &&clusto_core::Address| {
                    h.manager == Some(mid) && !taken.contains(&h.address)
                };
                let exact = held
                    .iter()
                    .filter(same)
                    .find(|h| h.os_port == item.os_port && h.port == port)
                    .or_else(|| held.iter().find(same))
                    .map(|h| h.address);
                if let Some(ip) = exact {
                    taken.insert(ip);
                }
                decided.push((item, exact, Some(mid)));
            }
            (None, None) => a.fail(o, "an address item needs manager or address"),
        }
    }
    for h in &held {
        if !taken.contains(&h.address) {
            let _ = a.inv.ip_release(id, Some(h.address));
        }
    }
    for (item, ip, mgr) in decided {
        let port = item.port.as_deref().and_then(|p| p.parse::<PortId>().ok());
        let r = match (ip, mgr) {
            (Some(ip), None) => a
                .inv
                .ip_bind(id, ip, item.os_port.as_deref(), port.as_ref()),
            (ip, Some(m)) => a
                .inv
                .ip_allocate(m, id, ip, item.os_port.as_deref(), port.as_ref())
                .map(|_| ()),
            (None, None) => Ok(()),
        };
        if let Err(e) = r {
            let needle = item
                .address
                .as_deref()
                .or(item.manager.as_deref())
                .unwrap_or("addresses");
            a.fail_at(o, needle, core_rule(e));
        }
    }
}
