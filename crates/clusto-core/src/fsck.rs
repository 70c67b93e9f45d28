//! `clusto fsck`'s model half: every rule the write path enforces, checked
//! again over a whole loaded inventory, so what slipped past (a bug, a
//! hand-edited database, a crash) is named with the objects involved. The
//! row half (dangling rows, revisions, uniqueness) is the store's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::driver::PoolType;
use crate::{EntityId, Inventory, Kind};

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Violation {
    /// A short stable name: `ru-overlap`, `address-outside-network`, …
    pub rule: &'static str,
    /// The objects involved, by name.
    pub objects: Vec<String>,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({})",
            self.rule,
            self.detail,
            self.objects.join(", ")
        )
    }
}

impl Inventory {
    /// Every model rule, over everything loaded; sorted, empty when clean.
    pub fn fsck(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        self.fsck_racks(&mut out);
        self.fsck_addresses(&mut out);
        self.fsck_pools(&mut out);
        self.fsck_cycles(&mut out);
        self.fsck_counters(&mut out);
        out.sort();
        out
    }

    fn violation(&self, rule: &'static str, ids: &[EntityId], detail: String) -> Violation {
        Violation {
            rule,
            objects: ids.iter().map(|i| self.name_of(*i).to_string()).collect(),
            detail,
        }
    }

    /// Units inside the rack's bounds, no two devices on one unit.
    fn fsck_racks(&self, out: &mut Vec<Violation>) {
        for rack in self.entities_of_kind(Kind::Rack) {
            let (lo, hi) = self.rack_bounds(rack.id);
            let placed: Vec<_> = self
                .child_rows(rack.id)
                .into_iter()
                .filter_map(|c| Some((c.child, c.ru?)))
                .collect();
            for (i, (a, ra)) in placed.iter().enumerate() {
                if ra.start < lo || ra.end > hi {
                    let d = format!("RU {ra} is outside rack {} ({lo}-{hi})", rack.name);
                    out.push(self.violation("ru-out-of-rack", &[*a, rack.id], d));
                }
                for (b, rb) in &placed[i + 1..] {
                    if ra.start <= rb.end && rb.start <= ra.end {
                        let d = format!("RU {ra} and RU {rb} of rack {} overlap", rack.name);
                        out.push(self.violation("ru-overlap", &[*a, *b], d));
                    }
                }
            }
        }
    }

    /// Every allocated address inside its manager's network.
    fn fsck_addresses(&self, out: &mut Vec<Violation>) {
        for m in self.entities_of_kind(Kind::IpManager) {
            let Ok(range) = self.ip_range(m.id) else {
                let d = format!("IPManager {} has no valid cidr", m.name);
                out.push(self.violation("ipmanager-without-network", &[m.id], d));
                continue;
            };
            for a in self.allocations(m.id) {
                if !range.cidr.contains(&a.address) {
                    let d = format!("{} is outside {} ({})", a.address, m.name, range.cidr);
                    out.push(self.violation("address-outside-network", &[a.holder, m.id], d));
                }
            }
        }
    }

    /// A member of an exclusive pool is in no other pool; unique pools of
    /// one group share no member.
    fn fsck_pools(&self, out: &mut Vec<Violation>) {
        for e in self.entities() {
            let pools = self.pools_of(e.id);
            for p in &pools {
                if self.pool_type(*p) == Some(PoolType::Exclusive) && pools.len() > 1 {
                    let d = format!(
                        "{} is in exclusive pool {} and {} other pool(s)",
                        e.name,
                        self.name_of(*p),
                        pools.len() - 1
                    );
                    out.push(self.violation("exclusive-pool", &[e.id, *p], d));
                }
            }
            let mut by_group: BTreeMap<&str, Vec<EntityId>> = BTreeMap::new();
            for p in &pools {
                if self.pool_type(*p) == Some(PoolType::Unique)
                    && let Some(g) = self.pool_group(*p)
                {
                    by_group.entry(g).or_default().push(*p);
                }
            }
            for (g, ps) in by_group.into_iter().filter(|(_, ps)| ps.len() > 1) {
                let mut ids = vec![e.id];
                ids.extend(&ps);
                let d = format!("{} is in {} unique pools of group {g}", e.name, ps.len());
                out.push(self.violation("unique-pool-group", &ids, d));
            }
        }
    }

    /// A NameManager's counter is past every name of its pattern that
    /// exists: the original clusto allocated the counter's name blindly, so
    /// a counter behind hands out a taken name there.
    fn fsck_counters(&self, out: &mut Vec<Violation>) {
        for m in self.entities_of_kind(Kind::NameManager) {
            let spec = self.name_spec(m.id);
            let width = spec.digits as usize;
            let taken = self.entities().into_iter().filter_map(|e| {
                let digits = e.name.strip_prefix(spec.base.as_str())?;
                (digits.len() == width && digits.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| digits.parse::<i64>().ok())
                    .flatten()
                    .map(|n| (n, e.id))
            });
            if let Some((_, e)) = taken.filter(|(n, _)| *n >= spec.next).max() {
                let d = format!(
                    "NameManager {} would hand out number {} but {} exists",
                    m.name,
                    spec.next,
                    self.name_of(e)
                );
                out.push(self.violation("name-counter-behind", &[m.id, e], d));
            }
        }
    }

    /// Nothing contains itself, however deep.
    fn fsck_cycles(&self, out: &mut Vec<Violation>) {
        let mut reported = BTreeSet::new();
        for e in self.entities() {
            let mut seen = BTreeSet::new();
            let mut todo = self.parents_of(e.id);
            while let Some(p) = todo.pop() {
                if p == e.id {
                    if reported.insert(e.id) {
                        let d = format!("{} is inside itself", e.name);
                        out.push(self.violation("containment-cycle", &[e.id], d));
                    }
                    break;
                }
                if seen.insert(p) {
                    todo.extend(self.parents_of(p));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Address, Containment, Fact, FactId, RuRange};

    /// Adds rows the write path would refuse, as a damaged store holds them.
    fn smuggle(inv: &mut Inventory, facts: Vec<Fact>) {
        let base = inv.next_fact_id();
        let added: Vec<(FactId, Fact)> = facts
            .into_iter()
            .enumerate()
            .map(|(i, f)| (FactId(base + i as i64), f))
            .collect();
        inv.follow(&[], &added);
    }

    fn world() -> (Inventory, EntityId, EntityId, EntityId) {
        let mut inv = Inventory::new();
        let rack = inv.create(Kind::Rack, "r1", None).unwrap();
        let a = inv.create(Kind::Server, "a", None).unwrap();
        let b = inv.create(Kind::Server, "b", None).unwrap();
        inv.insert(rack, a, Some(RuRange { start: 2, end: 2 }))
            .unwrap();
        inv.insert(rack, b, Some(RuRange { start: 3, end: 3 }))
            .unwrap();
        let m = inv.create(Kind::IpManager, "net", None).unwrap();
        inv.configure(m, "cidr", "10.0.0.0/24").unwrap();
        inv.ip_bind(a, "10.0.0.5".parse().unwrap(), None, None)
            .unwrap();
        let ex = inv
            .create(Kind::Pool, "spare", Some("exclusivepool"))
            .unwrap();
        inv.insert(ex, b, None).unwrap();
        (inv, rack, a, b)
    }

    #[test]
    fn a_consistent_inventory_is_clean() {
        assert_eq!(world().0.fsck(), Vec::new());
    }

    #[test]
    fn each_broken_rule_is_named_with_its_objects() {
        let (mut inv, rack, a, b) = world();
        let m = inv.id_of("net").unwrap();
        let web = inv.create(Kind::Pool, "web", None).unwrap();
        let c = inv.create(Kind::Server, "c", None).unwrap();
        smuggle(
            &mut inv,
            vec![
                Fact::Contains(Containment {
                    parent: rack,
                    child: c,
                    ru: Some(RuRange { start: 2, end: 2 }),
                }),
                Fact::Contains(Containment {
                    parent: web,
                    child: b,
                    ru: None,
                }),
                Fact::Address(Address {
                    address: "192.168.1.1".parse().unwrap(),
                    holder: a,
                    manager: Some(m),
                    os_port: None,
                    port: None,
                }),
                Fact::Contains(Containment {
                    parent: c,
                    child: rack,
                    ru: None,
                }),
            ],
        );
        let found: Vec<(&str, Vec<String>)> = inv
            .fsck()
            .into_iter()
            .map(|v| (v.rule, v.objects))
            .collect();
        let has = |rule: &str, objs: &[&str]| {
            found
                .iter()
                .any(|(r, o)| *r == rule && objs.iter().all(|x| o.iter().any(|y| y == x)))
        };
        assert!(has("ru-overlap", &["a", "c"]), "{found:?}");
        assert!(has("exclusive-pool", &["b", "spare"]), "{found:?}");
        assert!(has("address-outside-network", &["a", "net"]), "{found:?}");
        assert!(has("containment-cycle", &["r1"]), "{found:?}");
        assert!(has("containment-cycle", &["c"]), "{found:?}");
    }

    #[test]
    fn a_name_counter_behind_a_taken_name_is_found() {
        let mut inv = Inventory::new();
        let m = inv.create(Kind::NameManager, "names", None).unwrap();
        inv.configure(m, "basename", "s").unwrap();
        inv.configure(m, "digits", "3").unwrap();
        inv.name_allocate(m, Kind::Server, None).unwrap();
        assert_eq!(inv.fsck(), Vec::new(), "s000 handed out, next is 1");
        inv.create(Kind::Server, "s007", None).unwrap();
        inv.create(Kind::Server, "s07", None).unwrap();
        let v = inv.fsck();
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(
            (v[0].rule, v[0].objects.clone()),
            ("name-counter-behind", vec!["names".into(), "s007".into()])
        );
    }
}
