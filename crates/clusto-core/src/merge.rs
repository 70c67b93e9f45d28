//! Merged attributes (the original's `merge_container_attrs`).
//!
//! Order: the thing's own attributes, then its containers level by level
//! outward. Level n+1 holds the containers of level n not seen before, so a
//! pool joined directly sits beside the rack, and the rack's datacenter one
//! level further out. Within a level: rack, zone, cage, datacenter, pools,
//! others, then by name. Last come the defaults of a user-defined driver.
//! Hidden (`_`) keys are never inherited. Nearest wins for single values.

use std::collections::HashSet;

use crate::inventory::{Inventory, attr_matches};
use crate::model::{Attr, EntityId};
use crate::value::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct MergedAttr<'a> {
    pub attr: &'a Attr,
    /// The entity the value came from.
    pub source: EntityId,
}

impl Inventory {
    /// Container levels outward from `id` (excluding `id`), each sorted.
    pub fn merge_levels(&self, id: EntityId) -> Vec<Vec<EntityId>> {
        let mut seen = HashSet::from([id]);
        let mut levels = Vec::new();
        let mut frontier = vec![id];
        loop {
            let mut next: Vec<EntityId> = Vec::new();
            for e in &frontier {
                for p in self.parents_of(*e) {
                    if seen.insert(p) {
                        next.push(p);
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            next.sort_by(|a, b| {
                let ka = self.kind_of(*a).map(|k| k.merge_rank());
                let kb = self.kind_of(*b).map(|k| k.merge_rank());
                (ka, self.name_of(*a)).cmp(&(kb, self.name_of(*b)))
            });
            levels.push(next.clone());
            frontier = next;
        }
        if let Some(e) = self.entity(id)
            && let Some(&d) = self.by_name.get(&e.driver)
            && self.user_drivers.contains_key(&e.driver)
        {
            levels.push(vec![d]);
        }
        levels
    }

    /// Every attribute `id` has or inherits, nearest first, with its source.
    pub fn merged_attrs(
        &self,
        id: EntityId,
        key: Option<&str>,
        subkey: Option<&str>,
        include_hidden: bool,
    ) -> Vec<MergedAttr<'_>> {
        let want = |a: &Attr| key.is_none_or(|k| attr_matches(a, k, subkey, None));
        let mut out: Vec<MergedAttr> = self
            .attrs(id, include_hidden)
            .into_iter()
            .filter(|a| want(a))
            .map(|attr| MergedAttr { attr, source: id })
            .collect();
        for level in self.merge_levels(id) {
            for src in level {
                out.extend(
                    self.attrs(src, false)
                        .into_iter()
                        .filter(|a| want(a))
                        .map(|attr| MergedAttr { attr, source: src }),
                );
            }
        }
        out
    }

    /// The nearest value of `key[.subkey]`, with its source.
    pub fn merged_value(
        &self,
        id: EntityId,
        key: &str,
        subkey: Option<&str>,
    ) -> Option<(&Value, EntityId)> {
        let hit = |e: EntityId, hidden: bool| {
            self.attr_rows(e)
                .iter()
                .map(|(_, a)| a)
                .filter(|a| hidden || !a.is_hidden())
                .filter(|a| a.key == key && a.subkey.as_deref() == subkey)
                .min_by_key(|a| a.number)
                .map(|a| (&a.value, e))
        };
        if let Some(v) = hit(id, true) {
            return Some(v);
        }
        self.merge_levels(id)
            .into_iter()
            .flatten()
            .find_map(|e| hit(e, false))
    }
}
