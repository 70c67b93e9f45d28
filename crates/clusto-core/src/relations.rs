//! Containment (locations, racks) and pools.

use std::collections::{BTreeSet, HashSet, VecDeque};

use crate::driver::PoolType;
use crate::error::CoreError;
use crate::inventory::Inventory;
use crate::kind::Kind;
use crate::model::*;
use crate::value::Value;

impl Inventory {
    /// Direct containment rows where `id` is the child.
    pub fn parent_rows(&self, id: EntityId) -> Vec<Containment> {
        self.parent_rows_iter(id).cloned().collect()
    }

    /// [`Inventory::parent_rows`] without copying them out.
    fn parent_rows_iter(&self, id: EntityId) -> impl Iterator<Item = &Containment> {
        self.parents
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|f| self.contains.get(f))
    }

    /// Whether `container` directly holds `id`: what a converge asks of
    /// every declared placement, so it neither copies nor sorts.
    pub fn holds(&self, container: EntityId, id: EntityId) -> bool {
        self.parent_rows_iter(id).any(|c| c.parent == container)
    }

    /// Direct containment rows where `id` is the container, sorted by RU then name.
    pub fn child_rows(&self, id: EntityId) -> Vec<Containment> {
        let mut v: Vec<Containment> = self
            .children
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|f| self.contains.get(f).cloned())
            .collect();
        v.sort_by(|a, b| {
            (a.ru.map(|r| r.start), self.name_of(a.child))
                .cmp(&(b.ru.map(|r| r.start), self.name_of(b.child)))
        });
        v
    }

    /// Direct containers, sorted by name so walks are deterministic.
    pub fn parents_of(&self, id: EntityId) -> Vec<EntityId> {
        let mut v: Vec<EntityId> = self.parent_rows(id).into_iter().map(|c| c.parent).collect();
        v.sort_by(|a, b| self.name_of(*a).cmp(self.name_of(*b)));
        v
    }

    pub fn contents(&self, id: EntityId) -> Vec<EntityId> {
        self.child_rows(id).into_iter().map(|c| c.child).collect()
    }

    /// Everything inside `id` at any depth, each once, breadth first.
    pub fn contents_recursive(&self, id: EntityId) -> Vec<EntityId> {
        self.walk(id, |inv, e| inv.contents(e))
    }

    /// Every container of `id` at any depth, each once, nearest first.
    pub fn ancestors(&self, id: EntityId) -> Vec<EntityId> {
        self.walk(id, |inv, e| inv.parents_of(e))
    }

    fn walk(
        &self,
        start: EntityId,
        next: impl Fn(&Inventory, EntityId) -> Vec<EntityId>,
    ) -> Vec<EntityId> {
        let mut seen = HashSet::from([start]);
        let mut out = Vec::new();
        let mut q = VecDeque::from([start]);
        while let Some(e) = q.pop_front() {
            for n in next(self, e) {
                if seen.insert(n) {
                    out.push(n);
                    q.push_back(n);
                }
            }
        }
        out
    }

    pub fn is_within(&self, id: EntityId, container: EntityId) -> bool {
        self.ancestors(id).contains(&container)
    }

    /// The rack a device is in, with its units.
    pub fn rack_of(&self, id: EntityId) -> Option<(EntityId, RuRange)> {
        self.parent_rows(id).into_iter().find_map(|c| {
            Some((c.parent, c.ru?)).filter(|(p, _)| self.kind_of(*p) == Some(Kind::Rack))
        })
    }

    /// The nearest container of the given kind, searching outward.
    pub fn nearest_of_kind(&self, id: EntityId, kind: Kind) -> Option<EntityId> {
        self.ancestors(id)
            .into_iter()
            .find(|a| self.kind_of(*a) == Some(kind))
    }

    /// Rack bounds (`minU`, `maxU`), defaulting to 1..=45.
    pub fn rack_bounds(&self, rack: EntityId) -> (u32, u32) {
        let get = |f: &str, d: u32| {
            self.spec(rack, f)
                .and_then(Value::as_int)
                .map(|n| n.clamp(0, u32::MAX as i64) as u32)
                .unwrap_or(d)
        };
        (get("minU", 1), get("maxU", 45))
    }

    /// Puts `thing` into `container`; racks need the units the thing's
    /// driver occupies.
    pub fn insert(
        &mut self,
        container: EntityId,
        thing: EntityId,
        ru: Option<RuRange>,
    ) -> Result<(), CoreError> {
        let c = self.entity(container).ok_or(CoreError::Gone)?.clone();
        let t = self.entity(thing).ok_or(CoreError::Gone)?.clone();
        let rule = |rule: String| CoreError::Rule {
            object: t.name.clone(),
            rule,
        };
        if container == thing {
            return Err(rule(format!("{} cannot contain itself", c.name)));
        }
        if self.parents_of(thing).contains(&container) {
            return Err(rule(format!("{} is already in {}", t.name, c.name)));
        }
        if !c.kind.may_contain(t.kind) {
            return Err(rule(format!(
                "a {} cannot contain a {} ({})",
                c.kind, t.kind, t.name
            )));
        }
        if self.is_within(container, thing) {
            return Err(rule(format!(
                "{} is inside {}; inserting would make a cycle",
                c.name, t.name
            )));
        }
        let mut stored_ru = None;
        if c.kind == Kind::Rack {
            stored_ru = Some(self.check_rack_slot(container, thing, ru)?);
        } else if ru.is_some() {
            return Err(rule(format!(
                "{} is a {}, not a rack: it has no rack units",
                c.name, c.kind
            )));
        }
        if c.kind.is_location()
            && let Some(other) = self
                .parents_of(thing)
                .into_iter()
                .find(|p| self.kind_of(*p) == Some(c.kind))
        {
            return Err(rule(format!(
                "{} is already in {} {}; a thing is in at most one {}",
                t.name,
                c.kind,
                self.name_of(other),
                c.kind
            )));
        }
        if c.kind == Kind::Pool {
            self.check_pool_join(container, thing)?;
        }
        self.add_fact(Fact::Contains(Containment {
            parent: container,
            child: thing,
            ru: stored_ru,
        }));
        Ok(())
    }

    fn check_rack_slot(
        &self,
        rack: EntityId,
        thing: EntityId,
        ru: Option<RuRange>,
    ) -> Result<RuRange, CoreError> {
        let t = self.entity(thing).expect("checked");
        let rack_name = self.name_of(rack).to_string();
        let rule = |rule: String| CoreError::Rule {
            object: t.name.clone(),
            rule,
        };
        if let Some((other, _)) = self.rack_of(thing) {
            return Err(rule(format!(
                "{} is already in rack {}; a thing is in at most one rack",
                t.name,
                self.name_of(other)
            )));
        }
        let height = self.driver(&t.driver)?.rack_units;
        if height == 0 {
            return Err(rule(format!(
                "driver {} has no rack height; it cannot go in a rack",
                t.driver
            )));
        }
        let ru = ru.ok_or_else(|| rule(format!("inserting into rack {rack_name} needs --ru")))?;
        // A single number means "starting here" for multi-unit devices.
        let ru = if ru.start == ru.end && height > 1 {
            RuRange {
                start: ru.start,
                end: ru.start + height - 1,
            }
        } else {
            ru
        };
        if ru.height() != height {
            return Err(rule(format!(
                "{} ({}) is {height}U but RU {ru} is {}U",
                t.name,
                t.driver,
                ru.height()
            )));
        }
        let (min, max) = self.rack_bounds(rack);
        if ru.start < min || ru.end > max {
            return Err(rule(format!(
                "RU {ru} is outside rack {rack_name}'s units {min}-{max}"
            )));
        }
        for c in self.child_rows(rack) {
            if let Some(o) = c.ru
                && o.start <= ru.end
                && ru.start <= o.end
            {
                return Err(rule(format!(
                    "RU {ru} of rack {rack_name} overlaps {} at RU {o}",
                    self.name_of(c.child)
                )));
            }
        }
        Ok(ru)
    }

    pub fn remove(&mut self, container: EntityId, thing: EntityId) -> Result<(), CoreError> {
        if self.kind_of(container) == Some(Kind::VmManager) {
            let vms: Vec<String> = self
                .vms_on(thing)
                .into_iter()
                .map(|v| self.name_of(v).to_string())
                .collect();
            if !vms.is_empty() {
                return Err(CoreError::Rule {
                    object: self.name_of(thing).to_string(),
                    rule: format!(
                        "{} still runs {}; move them before it leaves {}",
                        self.name_of(thing),
                        vms.join(", "),
                        self.name_of(container)
                    ),
                });
            }
        }
        let row = self
            .parents
            .get(&thing)
            .into_iter()
            .flatten()
            .copied()
            .find(|f| self.contains.get(f).is_some_and(|c| c.parent == container));
        match row {
            Some(f) => {
                self.remove_fact(Table::Contains, f);
                Ok(())
            }
            None => Err(CoreError::Rule {
                object: self.name_of(thing).to_string(),
                rule: format!(
                    "{} is not in {}",
                    self.name_of(thing),
                    self.name_of(container)
                ),
            }),
        }
    }

    // ----- pools --------------------------------------------------------

    pub fn pool_type(&self, pool: EntityId) -> Option<PoolType> {
        let e = self.entity(pool)?;
        (e.kind == Kind::Pool).then(|| PoolType::from_driver(&e.driver))
    }

    /// The group a unique pool excludes within; all ungrouped unique pools share one.
    pub fn pool_group(&self, pool: EntityId) -> Option<&str> {
        self.spec(pool, "group").and_then(Value::as_str)
    }

    /// Pools `id` is in, directly or through nested pools, nearest first.
    pub fn pools_of(&self, id: EntityId) -> Vec<EntityId> {
        self.walk(id, |inv, e| {
            inv.parents_of(e)
                .into_iter()
                .filter(|p| inv.kind_of(*p) == Some(Kind::Pool))
                .collect()
        })
    }

    fn direct_pools(&self, id: EntityId) -> Vec<EntityId> {
        self.parents_of(id)
            .into_iter()
            .filter(|p| self.kind_of(*p) == Some(Kind::Pool))
            .collect()
    }

    fn check_pool_join(&self, pool: EntityId, thing: EntityId) -> Result<(), CoreError> {
        let t = self.name_of(thing).to_string();
        let p = self.name_of(pool).to_string();
        let rule = |rule: String| CoreError::Rule {
            object: t.clone(),
            rule,
        };
        let ptype = self.pool_type(pool).expect("pool");
        if let Some(ex) = self
            .direct_pools(thing)
            .into_iter()
            .find(|q| self.pool_type(*q) == Some(PoolType::Exclusive))
        {
            return Err(rule(format!(
                "{t} is in exclusive pool {}; it cannot join {p}",
                self.name_of(ex)
            )));
        }
        if ptype == PoolType::Exclusive {
            let pools = self.pools_of(thing);
            if !pools.is_empty() {
                let names: Vec<&str> = pools.iter().map(|q| self.name_of(*q)).collect();
                return Err(rule(format!(
                    "exclusive pool {p} only takes things in no pool, but {t} is in {}",
                    names.join(", ")
                )));
            }
        }
        // Unique pools: after the join, neither the thing nor anything inside
        // it may be in two unique pools of one group.
        let mut new_pools = vec![pool];
        new_pools.extend(self.pools_of(pool));
        let affected: Vec<EntityId> = std::iter::once(thing)
            .chain(self.contents_recursive(thing))
            .collect();
        for x in affected {
            let mut seen: Vec<(Option<&str>, EntityId)> = Vec::new();
            let all: BTreeSet<EntityId> = self
                .pools_of(x)
                .into_iter()
                .chain(new_pools.iter().copied())
                .collect();
            for q in all {
                if self.pool_type(q) != Some(PoolType::Unique) {
                    continue;
                }
                let g = self.pool_group(q);
                if let Some((_, other)) = seen.iter().find(|(og, _)| *og == g) {
                    let group = g
                        .map(|g| format!("group {g}"))
                        .unwrap_or_else(|| "the default group".into());
                    return Err(rule(format!(
                        "{} would be in unique pools {} and {} of {group}",
                        self.name_of(x),
                        self.name_of(*other),
                        self.name_of(q)
                    )));
                }
                seen.push((g, q));
            }
        }
        Ok(())
    }

    /// Things that are (recursively) members of every listed pool.
    pub fn pool_intersection(&self, pools: &[EntityId]) -> Vec<EntityId> {
        let mut sets = pools.iter().map(|p| {
            self.contents_recursive(*p)
                .into_iter()
                .collect::<BTreeSet<EntityId>>()
        });
        let Some(first) = sets.next() else {
            return Vec::new();
        };
        let mut r = sets.fold(first, |acc, s| acc.intersection(&s).copied().collect());
        for p in pools {
            r.remove(p);
        }
        let mut v: Vec<EntityId> = r.into_iter().collect();
        v.sort_by(|a, b| self.name_of(*a).cmp(self.name_of(*b)));
        v
    }
}
