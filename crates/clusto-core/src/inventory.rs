//! The in-memory inventory: facts plus the indexes the rules need. Every
//! mutation goes through `add_fact` / `remove_fact`, which keep the indexes
//! and the change set in step, so the store only ever persists a diff.

use std::collections::{BTreeMap, BTreeSet};

/// The inventory's maps hash with foldhash: its keys come from the
/// operator's own store, and SipHash cost a tenth of a large plan.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::net::IpAddr;

use crate::driver::{self, Driver};
use crate::error::CoreError;
use crate::kind::Kind;
use crate::model::*;
use crate::names;
use crate::value::Value;

/// Attribute key holding kind-specific settings (`cidr`, `minU`, `basename`…).
pub const SPEC_KEY: &str = "_spec";
/// Attribute key holding object metadata: `labels`, `annotations`,
/// `managedBy` (who owns the object), `applied` (hash of what was applied).
pub const META_KEY: &str = "_meta";
/// Attribute key holding per-key counters for `number: auto`.
pub const COUNTER_KEY: &str = "_counter";
/// Port attributes live under `_port-<type>` with the port number as number.
pub const PORT_KEY_PREFIX: &str = "_port-";

/// What one write did: rows to insert and rows to retire (with what they said).
#[derive(Clone, Debug, Default)]
pub struct ChangeSet {
    pub added: BTreeMap<FactId, Fact>,
    pub removed: BTreeMap<FactId, Fact>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// Entities any added or removed fact is about.
    pub fn entities(&self) -> std::collections::BTreeSet<EntityId> {
        self.added
            .values()
            .chain(self.removed.values())
            .flat_map(Fact::entities)
            .collect()
    }

    /// Whether every entity in `ids` is one this change set creates.
    pub fn creates_all(&self, ids: &std::collections::BTreeSet<EntityId>) -> bool {
        let created = self
            .added
            .values()
            .filter(|f| matches!(f, Fact::Entity(e) if ids.contains(&e.id)))
            .count();
        created == ids.len()
    }
}

/// How `attr add`/`set` picks the number column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberSpec {
    None,
    Fixed(i64),
    /// The next per-(entity, key) number, never reused after deletion.
    Auto,
}

#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub(crate) entities: HashMap<EntityId, (FactId, Entity)>,
    pub(crate) by_name: HashMap<String, EntityId>,
    /// Entities per kind: listing the VMs (placement weighs every host's
    /// guests) must not scan a million servers.
    by_kind: HashMap<Kind, BTreeSet<EntityId>>,
    pub(crate) attrs: HashMap<EntityId, Vec<(FactId, Attr)>>,
    pub(crate) contains: HashMap<FactId, Containment>,
    pub(crate) children: HashMap<EntityId, Vec<FactId>>,
    pub(crate) parents: HashMap<EntityId, Vec<FactId>>,
    pub(crate) links: HashMap<FactId, Link>,
    pub(crate) port_links: HashMap<(EntityId, PortId), FactId>,
    /// Ports with a cable, per device: so finding a device's cables never
    /// scans every cable in the inventory.
    pub(crate) cabled: HashMap<EntityId, BTreeSet<PortId>>,
    /// Entities that have (or had) a reference attribute to an entity; may
    /// hold stale entries, which only cost a look.
    referrers: HashMap<EntityId, BTreeSet<EntityId>>,
    pub(crate) addresses: HashMap<IpAddr, (FactId, Address)>,
    pub(crate) held: HashMap<EntityId, BTreeSet<IpAddr>>,
    pub(crate) managed: HashMap<EntityId, BTreeSet<IpAddr>>,
    pub(crate) user_drivers: HashMap<String, Driver>,
    builtin_drivers: HashMap<String, Driver>,
    next_fact: i64,
    next_entity: i64,
    changes: ChangeSet,
    /// Set while loading so that loaded rows are not journaled.
    loading: bool,
}

impl Inventory {
    pub fn new() -> Inventory {
        Inventory {
            builtin_drivers: driver::builtins()
                .into_iter()
                .map(|d| (d.name.clone(), d))
                .collect(),
            next_fact: 1,
            next_entity: 1,
            ..Default::default()
        }
    }

    /// Rebuilds an inventory from stored rows; rows are trusted, not re-checked.
    pub fn from_facts(
        facts: impl IntoIterator<Item = (FactId, Fact)>,
        next_fact: i64,
        next_entity: i64,
    ) -> Inventory {
        let mut inv = Inventory::new();
        inv.loading = true;
        for (id, f) in facts {
            inv.index(id, f);
        }
        inv.loading = false;
        inv.next_fact = inv.next_fact.max(next_fact);
        inv.next_entity = inv.next_entity.max(next_entity);
        inv.refresh_user_drivers();
        inv
    }

    /// Adds stored rows to an inventory loaded in part: the rows a rule is
    /// about to look at. Like loading, nothing is journaled; the caller
    /// passes only rows not already present.
    pub fn absorb(&mut self, facts: impl IntoIterator<Item = (FactId, Fact)>) {
        let was = std::mem::replace(&mut self.loading, true);
        let mut drivers = false;
        for (id, f) in facts {
            drivers |= matches!(&f, Fact::Entity(e) if e.kind == Kind::Driver);
            self.index(id, f);
        }
        self.loading = was;
        if drivers {
            self.refresh_user_drivers();
        }
    }

    /// Applies rows other writers retired and added (oldest first), as a
    /// process that follows the store does: nothing is journaled.
    pub fn follow(&mut self, retired: &[(FactId, Fact)], added: &[(FactId, Fact)]) {
        // Undoing a change set that added `retired` and removed `added`.
        let ch = ChangeSet {
            added: retired.iter().cloned().collect(),
            removed: added.iter().cloned().collect(),
        };
        let pending = std::mem::take(&mut self.changes);
        self.revert(&ch);
        self.changes = pending;
    }

    pub fn changes(&self) -> &ChangeSet {
        &self.changes
    }

    pub fn take_changes(&mut self) -> ChangeSet {
        std::mem::take(&mut self.changes)
    }

    /// Runs `op` all or nothing within the pending write: on error, what
    /// `op` changed is undone and the changes made before it stay, so one
    /// failing step of a batch (one trap record, say) leaves no half state.
    pub fn attempt<T, E>(&mut self, op: impl FnOnce(&mut Self) -> Result<T, E>) -> Result<T, E> {
        let pending = std::mem::take(&mut self.changes);
        let result = op(self);
        let mine = std::mem::replace(&mut self.changes, pending);
        match &result {
            Ok(_) => {
                for (id, f) in mine.removed {
                    self.journal_removed(id, f);
                }
                self.changes.added.extend(mine.added);
            }
            Err(_) => {
                let pending = std::mem::take(&mut self.changes);
                self.revert(&mine);
                self.changes = pending;
            }
        }
        result
    }

    /// Raises the first ids new rows get: a view read before other writers
    /// committed must not hand out the ids they used.
    pub fn raise_id_floors(&mut self, next_fact: i64, next_entity: i64) {
        self.next_fact = self.next_fact.max(next_fact);
        self.next_entity = self.next_entity.max(next_entity);
    }

    pub fn next_fact_id(&self) -> i64 {
        self.next_fact
    }

    pub fn next_entity_id(&self) -> i64 {
        self.next_entity
    }

    // ----- primitives ---------------------------------------------------

    fn index(&mut self, id: FactId, f: Fact) {
        self.next_fact = self.next_fact.max(id.0 + 1);
        match f {
            Fact::Entity(e) => {
                self.next_entity = self.next_entity.max(e.id.0 + 1);
                self.by_name.insert(e.name.clone(), e.id);
                self.by_kind.entry(e.kind).or_default().insert(e.id);
                self.entities.insert(e.id, (id, e));
            }
            Fact::Attr(e, a) => {
                if let Value::Ref(r) = a.value {
                    self.referrers.entry(r).or_default().insert(e);
                }
                self.attrs.entry(e).or_default().push((id, a))
            }
            Fact::Contains(c) => {
                self.children.entry(c.parent).or_default().push(id);
                self.parents.entry(c.child).or_default().push(id);
                self.contains.insert(id, c);
            }
            Fact::Link(l) => {
                self.port_links.insert((l.a, l.a_port.clone()), id);
                self.port_links.insert((l.b, l.b_port.clone()), id);
                self.cabled.entry(l.a).or_default().insert(l.a_port.clone());
                self.cabled.entry(l.b).or_default().insert(l.b_port.clone());
                self.links.insert(id, l);
            }
            Fact::Address(a) => {
                self.held.entry(a.holder).or_default().insert(a.address);
                if let Some(m) = a.manager {
                    self.managed.entry(m).or_default().insert(a.address);
                }
                self.addresses.insert(a.address, (id, a));
            }
        }
    }

    pub(crate) fn add_fact(&mut self, f: Fact) -> FactId {
        let id = FactId(self.next_fact);
        self.next_fact += 1;
        if !self.loading {
            self.changes.added.insert(id, f.clone());
        }
        let driver_changed = matches!(&f, Fact::Entity(e) if e.kind == Kind::Driver)
            || matches!(&f, Fact::Attr(e, _) if self.kind_of(*e) == Some(Kind::Driver));
        self.index(id, f);
        if driver_changed {
            self.refresh_user_drivers();
        }
        id
    }

    /// Records a removal; a fact added in this same write simply vanishes.
    fn journal_removed(&mut self, id: FactId, fact: Fact) {
        if self.changes.added.remove(&id).is_none() {
            self.changes.removed.insert(id, fact);
        }
    }

    /// Removes a containment or link row.
    pub(crate) fn remove_fact(&mut self, table: Table, id: FactId) {
        let fact = match table {
            Table::Contains => self.contains.remove(&id).map(|c| {
                if let Some(v) = self.children.get_mut(&c.parent) {
                    v.retain(|f| *f != id);
                }
                if let Some(v) = self.parents.get_mut(&c.child) {
                    v.retain(|f| *f != id);
                }
                Fact::Contains(c)
            }),
            Table::Links => self.links.remove(&id).map(|l| {
                self.port_links.remove(&(l.a, l.a_port.clone()));
                self.port_links.remove(&(l.b, l.b_port.clone()));
                for (e, p) in [(l.a, &l.a_port), (l.b, &l.b_port)] {
                    if let Some(set) = self.cabled.get_mut(&e) {
                        set.remove(p);
                    }
                }
                Fact::Link(l)
            }),
            _ => unreachable!("entities, attributes and addresses have their own removers"),
        };
        if let Some(f) = fact {
            self.journal_removed(id, f);
        }
    }

    /// Removes an attribute row known by its owner, without scanning every entity.
    pub(crate) fn remove_attr_row(&mut self, e: EntityId, id: FactId) {
        let is_driver = self.kind_of(e) == Some(Kind::Driver);
        if let Some(rows) = self.attrs.get_mut(&e)
            && let Some(pos) = rows.iter().position(|(f, _)| *f == id)
        {
            let (_, attr) = rows.remove(pos);
            self.journal_removed(id, Fact::Attr(e, attr));
            if is_driver {
                self.refresh_user_drivers();
            }
        }
    }

    /// Removes an address row known by its address.
    pub(crate) fn remove_address(&mut self, ip: IpAddr) {
        if let Some((id, a)) = self.addresses.remove(&ip) {
            if let Some(s) = self.held.get_mut(&a.holder) {
                s.remove(&ip);
            }
            if let Some(m) = a.manager
                && let Some(s) = self.managed.get_mut(&m)
            {
                s.remove(&ip);
            }
            self.journal_removed(id, Fact::Address(a));
        }
    }

    fn remove_entity_row(&mut self, e: EntityId) {
        if let Some((id, ent)) = self.entities.remove(&e) {
            self.by_name.remove(&ent.name);
            if let Some(ids) = self.by_kind.get_mut(&ent.kind) {
                ids.remove(&e);
            }
            let is_driver = ent.kind == Kind::Driver;
            self.journal_removed(id, Fact::Entity(ent));
            if is_driver {
                self.refresh_user_drivers();
            }
        }
    }

    /// Undoes a change set this inventory made (and took): what a plan does
    /// to see the before-state of what it touched without copying everything.
    pub fn revert(&mut self, ch: &ChangeSet) {
        for (id, f) in ch.added.iter().rev() {
            self.unindex(*id, f);
        }
        for (id, f) in &ch.removed {
            self.index(*id, f.clone());
        }
        self.refresh_user_drivers();
        self.changes = ChangeSet::default();
    }

    /// Makes a change set [`Inventory::revert`] undid again, pending as it
    /// was: how apply sees the before-state of what it touched without a
    /// copy of the whole inventory.
    pub fn redo(&mut self, ch: ChangeSet) {
        for (id, f) in &ch.removed {
            self.unindex(*id, f);
        }
        for (id, f) in &ch.added {
            self.index(*id, f.clone());
        }
        self.refresh_user_drivers();
        self.changes = ch;
    }

    /// Drops one row from the indexes, journaling nothing.
    fn unindex(&mut self, id: FactId, f: &Fact) {
        match f {
            Fact::Entity(e) => self.remove_entity_row(e.id),
            Fact::Attr(e, _) => self.remove_attr_row(*e, id),
            Fact::Contains(_) => self.remove_fact(Table::Contains, id),
            Fact::Link(_) => self.remove_fact(Table::Links, id),
            Fact::Address(a) => self.remove_address(a.address),
        }
    }

    // ----- entities -----------------------------------------------------

    pub fn entity(&self, id: EntityId) -> Option<&Entity> {
        self.entities.get(&id).map(|(_, e)| e)
    }

    pub fn kind_of(&self, id: EntityId) -> Option<Kind> {
        self.entity(id).map(|e| e.kind)
    }

    pub fn name_of(&self, id: EntityId) -> &str {
        self.entity(id)
            .map(|e| e.name.as_str())
            .unwrap_or("<deleted>")
    }

    pub fn id_of(&self, name: &str) -> Result<EntityId, CoreError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| CoreError::NotFound(name.to_string()))
    }

    pub fn get(&self, name: &str) -> Result<&Entity, CoreError> {
        self.id_of(name).map(|id| self.entity(id).expect("indexed"))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.entities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// All entities, in no particular order (no sorting cost).
    pub fn entities_unsorted(&self) -> impl Iterator<Item = &Entity> {
        self.entities.values().map(|(_, e)| e)
    }

    /// All entities sorted by name.
    pub fn entities(&self) -> Vec<&Entity> {
        let mut v: Vec<&Entity> = self.entities.values().map(|(_, e)| e).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn entities_of_kind(&self, kind: Kind) -> Vec<&Entity> {
        let mut v: Vec<&Entity> = self
            .by_kind
            .get(&kind)
            .into_iter()
            .flatten()
            .filter_map(|id| Some(&self.entities.get(id)?.1))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Looks a driver up: built-in first, then user-defined.
    pub fn driver(&self, name: &str) -> Result<&Driver, CoreError> {
        self.builtin_drivers
            .get(name)
            .or_else(|| self.user_drivers.get(name))
            .ok_or_else(|| CoreError::UnknownDriver(name.to_string()))
    }

    pub fn drivers(&self) -> Vec<&Driver> {
        let mut v: Vec<&Driver> = self
            .builtin_drivers
            .values()
            .chain(self.user_drivers.values())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn driver_of(&self, id: EntityId) -> Option<&Driver> {
        self.entity(id).and_then(|e| self.driver(&e.driver).ok())
    }

    pub(crate) fn refresh_user_drivers(&mut self) {
        if self.loading {
            return;
        }
        let mut map = HashMap::default();
        for (_, e) in self.entities.values() {
            if e.kind != Kind::Driver {
                continue;
            }
            let base = self
                .spec(e.id, "base")
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<Kind>().ok())
                .unwrap_or(Kind::Entity);
            let default = self.builtin_drivers.get(base.default_driver());
            let rack_units = match self.spec(e.id, "rackUnits").and_then(Value::as_int) {
                Some(n) => n.clamp(0, 1000) as u32,
                None => default.map(|d| d.rack_units).unwrap_or(0),
            };
            let ports = match self.spec(e.id, "ports") {
                Some(Value::Json(serde_json::Value::Object(m))) => m
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?.min(100_000) as u32)))
                    .collect(),
                _ => default.map(|d| d.ports.clone()).unwrap_or_default(),
            };
            map.insert(
                e.name.clone(),
                Driver {
                    name: e.name.clone(),
                    kind: base,
                    rack_units,
                    ports,
                    builtin: false,
                    outlets: self.spec_json(e.id, "power"),
                    console: self.spec_json(e.id, "console"),
                },
            );
        }
        self.user_drivers = map;
    }

    /// Creates an entity. The driver defaults to the kind's basic one and must
    /// be a driver of that kind.
    pub fn create(
        &mut self,
        kind: Kind,
        name: &str,
        driver: Option<&str>,
    ) -> Result<EntityId, CoreError> {
        names::check_name(name)?;
        if let Some(&existing) = self.by_name.get(name) {
            return Err(CoreError::Exists {
                name: name.to_string(),
                kind: self.kind_of(existing).unwrap_or(Kind::Entity),
            });
        }
        if kind == Kind::Driver && self.builtin_drivers.contains_key(name) {
            return Err(CoreError::Exists {
                name: name.to_string(),
                kind: Kind::Driver,
            });
        }
        let driver = driver.unwrap_or(kind.default_driver());
        let d = self.driver(driver)?;
        if d.kind != kind {
            return Err(CoreError::DriverKindMismatch {
                driver: driver.to_string(),
                driver_kind: d.kind,
                kind,
            });
        }
        let id = EntityId(self.next_entity);
        self.next_entity += 1;
        self.add_fact(Fact::Entity(Entity {
            id,
            name: name.to_string(),
            kind,
            driver: driver.to_string(),
        }));
        Ok(id)
    }

    /// Changes an entity's driver; the new driver must fit where it stands.
    pub fn set_driver(&mut self, id: EntityId, driver: &str) -> Result<(), CoreError> {
        let e = self.entity(id).ok_or(CoreError::Gone)?.clone();
        if e.driver == driver {
            return Ok(());
        }
        let d = self.driver(driver)?.clone();
        if d.kind != e.kind {
            return Err(CoreError::DriverKindMismatch {
                driver: driver.to_string(),
                driver_kind: d.kind,
                kind: e.kind,
            });
        }
        for c in self.parent_rows(id) {
            if let Some(ru) = c.ru
                && ru.height() != d.rack_units
            {
                return Err(CoreError::Rule {
                    object: e.name.clone(),
                    rule: format!(
                        "driver {driver} is {}U but {} occupies RU {ru} in {}",
                        d.rack_units,
                        e.name,
                        self.name_of(c.parent)
                    ),
                });
            }
        }
        for (port, _) in self.connected_ports(id) {
            if !d.has_port(&port.ptype, port.num) {
                return Err(CoreError::Rule {
                    object: e.name.clone(),
                    rule: format!("driver {driver} has no port {port}, which is connected"),
                });
            }
        }
        self.remove_entity_row(id);
        self.add_fact(Fact::Entity(Entity {
            driver: driver.to_string(),
            ..e
        }));
        Ok(())
    }

    pub fn rename(&mut self, id: EntityId, new: &str) -> Result<(), CoreError> {
        names::check_name(new)?;
        let e = self.entity(id).ok_or(CoreError::Gone)?.clone();
        if e.name == new {
            return Ok(());
        }
        if let Some(&other) = self.by_name.get(new) {
            return Err(CoreError::Exists {
                name: new.to_string(),
                kind: self.kind_of(other).unwrap_or(Kind::Entity),
            });
        }
        if e.kind == Kind::Driver && !self.users_of_driver(&e.name).is_empty() {
            return Err(CoreError::Rule {
                object: e.name.clone(),
                rule: "a driver in use cannot be renamed".into(),
            });
        }
        self.check_vm_manager_unused(id, "renamed")?;
        // VMs name their host: they follow it.
        let guests = self.vms_on(id);
        self.remove_entity_row(id);
        self.add_fact(Fact::Entity(Entity {
            name: new.to_string(),
            ..e
        }));
        for vm in guests {
            for key in [SPEC_KEY, crate::placement::STATUS_KEY] {
                if matches!(self.attr_value(vm, key, Some("host")), Some(Value::String(h)) if *h == e.name)
                {
                    self.put_internal(vm, key, "host", Value::String(new.to_string()));
                }
            }
        }
        Ok(())
    }

    fn users_of_driver(&self, driver: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .entities
            .values()
            .filter(|(_, e)| e.driver == driver && e.kind != Kind::Driver)
            .map(|(_, e)| e.name.as_str())
            .collect();
        v.sort();
        v
    }

    /// Deletes an entity and every fact about it: its attributes, its place
    /// in containers, what it contains, its cables (freeing the peers'
    /// ports), its addresses, and references to it from other entities.
    ///
    /// A VirtualMachine a controller has acted on is only marked for
    /// deletion: it stays until the controller has removed what the backend
    /// holds (see [`Inventory::finalize_vm`]).
    pub fn delete(&mut self, id: EntityId) -> Result<(), CoreError> {
        let e = self.entity(id).ok_or(CoreError::Gone)?;
        if e.kind == Kind::VirtualMachine
            && self
                .attr_value(id, crate::placement::STATUS_KEY, Some("phase"))
                .is_some()
        {
            self.put_internal(id, META_KEY, crate::vm::DELETING, Value::Bool(true));
            return Ok(());
        }
        self.remove_entity(id)
    }

    pub(crate) fn remove_entity(&mut self, id: EntityId) -> Result<(), CoreError> {
        self.check_vm_manager_unused(id, "deleted")?;
        let e = self.entity(id).ok_or(CoreError::Gone)?.clone();
        if e.kind == Kind::Driver {
            let users = self.users_of_driver(&e.name);
            if !users.is_empty() {
                return Err(CoreError::Rule {
                    object: e.name,
                    rule: format!("driver is used by {}", users.join(", ")),
                });
            }
        }
        if let Some(m) = self.managed.get(&id)
            && !m.is_empty()
        {
            return Err(CoreError::Rule {
                object: e.name,
                rule: format!(
                    "IPManager still has {} allocated addresses; release them first",
                    m.len()
                ),
            });
        }
        for (fid, attr) in self.attrs.remove(&id).unwrap_or_default() {
            self.journal_removed(fid, Fact::Attr(id, attr));
        }
        let rows: Vec<FactId> = self
            .children
            .get(&id)
            .into_iter()
            .flatten()
            .chain(self.parents.get(&id).into_iter().flatten())
            .copied()
            .collect();
        for f in rows {
            self.remove_fact(Table::Contains, f);
        }
        self.children.remove(&id);
        self.parents.remove(&id);
        let links: Vec<FactId> = self
            .cabled
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|p| self.port_links.get(&(id, p.clone())).copied())
            .collect();
        for f in links {
            self.remove_fact(Table::Links, f);
        }
        for ip in self.held.remove(&id).unwrap_or_default() {
            self.remove_address(ip);
        }
        // References from other entities' attributes would dangle.
        let refs: Vec<(EntityId, FactId)> = self
            .referrers
            .remove(&id)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|owner| {
                self.attr_rows(owner)
                    .iter()
                    .filter(|(_, a)| a.value == Value::Ref(id))
                    .map(move |(f, _)| (owner, *f))
            })
            .collect();
        for (owner, f) in refs {
            self.remove_attr_row(owner, f);
        }
        self.remove_entity_row(id);
        Ok(())
    }

    // ----- attributes ---------------------------------------------------

    /// All attribute rows of an entity, hidden ones included, in insertion order.
    pub fn attr_rows(&self, id: EntityId) -> &[(FactId, Attr)] {
        self.attrs.get(&id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Visible (or all) attributes sorted by key, subkey, number.
    pub fn attrs(&self, id: EntityId, include_hidden: bool) -> Vec<&Attr> {
        let mut v: Vec<&Attr> = self
            .attr_rows(id)
            .iter()
            .map(|(_, a)| a)
            .filter(|a| include_hidden || !a.is_hidden())
            .collect();
        v.sort_by(|a, b| (&a.key, &a.subkey, a.number).cmp(&(&b.key, &b.subkey, b.number)));
        v
    }

    /// Rows matching key and, when given, subkey and number.
    pub fn attrs_matching(
        &self,
        id: EntityId,
        key: &str,
        subkey: Option<&str>,
        number: Option<i64>,
    ) -> Vec<&Attr> {
        self.attr_rows(id)
            .iter()
            .map(|(_, a)| a)
            .filter(|a| attr_matches(a, key, subkey, number))
            .collect()
    }

    /// The single value of `key[.subkey]` (no number), if set.
    pub fn attr_value(&self, id: EntityId, key: &str, subkey: Option<&str>) -> Option<&Value> {
        self.attr_rows(id)
            .iter()
            .find(|(_, a)| a.key == key && a.subkey.as_deref() == subkey && a.number.is_none())
            .map(|(_, a)| &a.value)
    }

    pub(crate) fn spec(&self, id: EntityId, field: &str) -> Option<&Value> {
        self.attr_value(id, SPEC_KEY, Some(field))
    }

    /// A structured setting, typed (`None` when unset or not that shape:
    /// `configure` checked it on the way in).
    pub(crate) fn spec_json<T: serde::de::DeserializeOwned>(
        &self,
        id: EntityId,
        field: &str,
    ) -> Option<T> {
        match self.spec(id, field)? {
            Value::Json(j) => serde_json::from_value(j.clone()).ok(),
            _ => None,
        }
    }

    /// A kind-specific setting (`cidr`, `minU`, `next`, …).
    pub fn setting(&self, id: EntityId, field: &str) -> Option<&Value> {
        self.spec(id, field)
    }

    /// Removes a setting so the kind's default applies again.
    pub fn clear_setting(&mut self, id: EntityId, field: &str) {
        self.clear_internal(id, SPEC_KEY, field);
    }

    /// Object metadata (`labels`, `annotations`, `managedBy`, `applied`).
    pub fn meta(&self, id: EntityId, key: &str) -> Option<&Value> {
        self.attr_value(id, META_KEY, Some(key))
    }

    pub fn set_meta(&mut self, id: EntityId, key: &str, value: Option<Value>) {
        match value {
            Some(v) => self.put_internal(id, META_KEY, key, v),
            None => self.clear_internal(id, META_KEY, key),
        }
    }

    fn check_attr_path(key: &str, subkey: Option<&str>) -> Result<(), CoreError> {
        names::check_key(key)?;
        if let Some(s) = subkey {
            names::check_key(s)?;
        }
        Ok(())
    }

    fn resolve_number(
        &mut self,
        id: EntityId,
        key: &str,
        number: NumberSpec,
    ) -> Result<Option<i64>, CoreError> {
        Ok(match number {
            NumberSpec::None => None,
            NumberSpec::Fixed(n) => {
                if n < 0 {
                    return Err(CoreError::Rule {
                        object: self.name_of(id).to_string(),
                        rule: format!("attribute number {n} is negative"),
                    });
                }
                // A fixed number also moves the counter past it, so `auto`
                // never hands it out again.
                let next = self.counter(id, key);
                if n >= next {
                    self.put_internal(id, COUNTER_KEY, key, Value::Int(n + 1));
                }
                Some(n)
            }
            NumberSpec::Auto => {
                let n = self.counter(id, key);
                self.put_internal(id, COUNTER_KEY, key, Value::Int(n + 1));
                Some(n)
            }
        })
    }

    fn counter(&self, id: EntityId, key: &str) -> i64 {
        let stored = self
            .attr_value(id, COUNTER_KEY, Some(key))
            .and_then(Value::as_int)
            .unwrap_or(0);
        // Rows numbered before counters existed (or loaded from elsewhere) still count.
        let seen = self
            .attr_rows(id)
            .iter()
            .filter(|(_, a)| a.key == key)
            .filter_map(|(_, a)| a.number)
            .max()
            .map(|n| n + 1)
            .unwrap_or(0);
        stored.max(seen)
    }

    /// Sets a hidden single-valued attribute without validation.
    pub(crate) fn put_internal(&mut self, id: EntityId, key: &str, subkey: &str, value: Value) {
        let existing: Vec<(FactId, bool)> = self
            .attr_rows(id)
            .iter()
            .filter(|(_, a)| {
                a.key == key && a.subkey.as_deref() == Some(subkey) && a.number.is_none()
            })
            .map(|(f, a)| (*f, a.value == value))
            .collect();
        if existing.len() == 1 && existing[0].1 {
            return;
        }
        for (f, _) in existing {
            self.remove_attr_row(id, f);
        }
        self.add_fact(Fact::Attr(id, Attr::new(key, Some(subkey), None, value)));
    }

    pub(crate) fn clear_internal(&mut self, id: EntityId, key: &str, subkey: &str) {
        let rows: Vec<FactId> = self
            .attr_rows(id)
            .iter()
            .filter(|(_, a)| a.key == key && a.subkey.as_deref() == Some(subkey))
            .map(|(f, _)| *f)
            .collect();
        for f in rows {
            self.remove_attr_row(id, f);
        }
    }

    fn check_ref(&self, v: &Value) -> Result<(), CoreError> {
        if let Value::Ref(r) = v
            && self.entity(*r).is_none()
        {
            return Err(CoreError::Gone);
        }
        Ok(())
    }

    /// Appends an attribute row. Returns the number used.
    pub fn attr_add(
        &mut self,
        id: EntityId,
        key: &str,
        subkey: Option<&str>,
        number: NumberSpec,
        value: Value,
    ) -> Result<Option<i64>, CoreError> {
        Self::check_attr_path(key, subkey)?;
        self.check_ref(&value)?;
        self.entity(id).ok_or(CoreError::Gone)?;
        let number = self.resolve_number(id, key, number)?;
        self.add_fact(Fact::Attr(id, Attr::new(key, subkey, number, value)));
        Ok(number)
    }

    /// Replaces the single row with exactly this key/subkey/number. Equal
    /// value: nothing changes. Several matching rows: an error, because
    /// replacing them all would silently drop data.
    pub fn attr_set(
        &mut self,
        id: EntityId,
        key: &str,
        subkey: Option<&str>,
        number: NumberSpec,
        value: Value,
    ) -> Result<Option<i64>, CoreError> {
        Self::check_attr_path(key, subkey)?;
        self.check_ref(&value)?;
        self.entity(id).ok_or(CoreError::Gone)?;
        if number == NumberSpec::Auto {
            return self.attr_add(id, key, subkey, number, value);
        }
        let n = match number {
            NumberSpec::Fixed(n) => Some(n),
            _ => None,
        };
        let rows: Vec<(FactId, Value)> = self
            .attr_rows(id)
            .iter()
            .filter(|(_, a)| a.key == key && a.subkey.as_deref() == subkey && a.number == n)
            .map(|(f, a)| (*f, a.value.clone()))
            .collect();
        match rows.as_slice() {
            [] => self.attr_add(id, key, subkey, number, value),
            [(f, old)] => {
                if *old != value {
                    self.remove_attr_row(id, *f);
                    self.add_fact(Fact::Attr(id, Attr::new(key, subkey, n, value)));
                }
                Ok(n)
            }
            _ => Err(CoreError::AmbiguousAttr {
                entity: self.name_of(id).to_string(),
                path: Attr::new(key, subkey, n, Value::Bool(true)).path(),
                count: rows.len(),
            }),
        }
    }

    /// Makes the visible attributes exactly `want` (a multiset), touching
    /// only the rows that differ: what declarative apply needs.
    pub fn converge_attrs(&mut self, id: EntityId, want: Vec<Attr>) -> Result<(), CoreError> {
        self.entity(id).ok_or(CoreError::Gone)?;
        for a in &want {
            if a.is_hidden() {
                return Err(CoreError::Rule {
                    object: self.name_of(id).to_string(),
                    rule: format!(
                        "attribute key {} is reserved (keys starting with _ are internal)",
                        a.key
                    ),
                });
            }
            Self::check_attr_path(&a.key, a.subkey.as_deref())?;
            self.check_ref(&a.value)?;
        }
        let mut missing: Vec<Option<Attr>> = want.into_iter().map(Some).collect();
        let mut stale = Vec::new();
        for (f, a) in self.attr_rows(id).iter().filter(|(_, a)| !a.is_hidden()) {
            match missing.iter_mut().find(|w| w.as_ref() == Some(a)) {
                Some(slot) => *slot = None,
                None => stale.push(*f),
            }
        }
        for f in stale {
            self.remove_attr_row(id, f);
        }
        for a in missing.into_iter().flatten() {
            if let Some(n) = a.number {
                self.resolve_number(id, &a.key, NumberSpec::Fixed(n))?;
            }
            self.add_fact(Fact::Attr(id, a));
        }
        Ok(())
    }

    /// Deletes rows matching key and, when given, subkey, number and value.
    /// Returns how many went.
    pub fn attr_del(
        &mut self,
        id: EntityId,
        key: &str,
        subkey: Option<&str>,
        number: Option<i64>,
        value: Option<&Value>,
    ) -> Result<usize, CoreError> {
        self.entity(id).ok_or(CoreError::Gone)?;
        let rows: Vec<FactId> = self
            .attr_rows(id)
            .iter()
            .filter(|(_, a)| {
                attr_matches(a, key, subkey, number) && value.is_none_or(|v| *v == a.value)
            })
            .map(|(f, _)| *f)
            .collect();
        for f in &rows {
            self.remove_attr_row(id, *f);
        }
        Ok(rows.len())
    }
}

pub(crate) fn attr_matches(a: &Attr, key: &str, subkey: Option<&str>, number: Option<i64>) -> bool {
    a.key == key
        && subkey.is_none_or(|s| a.subkey.as_deref() == Some(s))
        && number.is_none_or(|n| a.number == Some(n))
}
