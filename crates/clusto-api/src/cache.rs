//! One-object GETs from memory. An entry is the encoded object and every
//! entity its view held (itself, its containers, what it refers to): the
//! object is a function of the rows about those entities, so a revision
//! that touches none of them leaves it exact, and one that touches any
//! drops it. The cache follows the watch feed; a GET uses it only when the
//! store's head is the revision the cache has reached, so a client always
//! reads its own writes.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;
use clusto_core::{EntityId, Kind};

/// Entries kept before the cache starts over: a bound on memory (about
/// 1 KiB an entry with its view: ~250 MiB when full). Inventories larger
/// than this are served partly from the store.
const MAX_ENTRIES: usize = 250_000;

struct Entry {
    kind: Kind,
    body: Bytes,
}

#[derive(Default)]
struct Inner {
    /// The revision every entry is exact at.
    rev: i64,
    objects: HashMap<String, Entry>,
    /// Which entries each entity's rows shape (may name dropped entries).
    shaped_by: HashMap<EntityId, Vec<String>>,
}

#[derive(Default)]
pub struct ObjectCache(Mutex<Inner>);

impl ObjectCache {
    pub fn new(rev: i64) -> ObjectCache {
        ObjectCache(Mutex::new(Inner {
            rev,
            ..Inner::default()
        }))
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave an entry half made.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The object named `name` and its kind, if cached and the store is
    /// still at the cache's revision (`head`).
    pub fn get(&self, head: i64, name: &str) -> Option<(Kind, Bytes)> {
        let g = self.inner();
        if g.rev != head {
            return None;
        }
        g.objects.get(name).map(|e| (e.kind, e.body.clone()))
    }

    /// Keeps an object read at revision `rev` whose view held `view`;
    /// ignored when the cache has moved past `rev` meanwhile.
    pub fn put(&self, rev: i64, kind: Kind, name: &str, body: Bytes, view: &[EntityId]) {
        let mut g = self.inner();
        if g.rev != rev {
            return;
        }
        if g.objects.len() >= MAX_ENTRIES || g.shaped_by.len() >= 4 * MAX_ENTRIES {
            let rev = g.rev;
            *g = Inner {
                rev,
                ..Inner::default()
            };
        }
        for e in view {
            g.shaped_by.entry(*e).or_default().push(name.to_string());
        }
        g.objects.insert(name.to_string(), Entry { kind, body });
    }

    /// Revision `rev` landed, its rows about `touched`: drop what they shape.
    pub fn advance(&self, rev: i64, touched: &[EntityId]) {
        let mut g = self.inner();
        for e in touched {
            if let Some(names) = g.shaped_by.remove(e) {
                for n in names {
                    g.objects.remove(&n);
                }
            }
        }
        g.rev = rev;
    }

    /// The revision the entries are exact at.
    pub fn rev(&self) -> i64 {
        self.inner().rev
    }

    pub fn len(&self) -> usize {
        self.inner().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As many entries as it keeps (the next put starts over).
    pub fn is_full(&self) -> bool {
        self.len() >= MAX_ENTRIES
    }

    /// Forgets everything (the feed was missed); exact again from `rev`.
    pub fn reset(&self, rev: i64) {
        *self.inner() = Inner {
            rev,
            ..Inner::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_until_a_revision_touches_their_view() {
        let c = ObjectCache::new(5);
        let (s1, rack, other) = (EntityId(1), EntityId(2), EntityId(3));
        c.put(
            5,
            Kind::Server,
            "s1",
            Bytes::from_static(b"{}"),
            &[s1, rack],
        );
        assert_eq!(c.get(5, "s1").map(|(k, _)| k), Some(Kind::Server));
        assert!(c.get(6, "s1").is_none(), "store ahead of the cache");
        c.advance(6, &[other]);
        assert!(c.get(6, "s1").is_some(), "untouched view");
        c.advance(7, &[rack]);
        assert!(c.get(7, "s1").is_none(), "its rack changed");
        c.put(6, Kind::Server, "s1", Bytes::from_static(b"{}"), &[s1]);
        assert!(c.get(7, "s1").is_none(), "read before the cache's revision");
        c.put(7, Kind::Server, "s1", Bytes::from_static(b"{}"), &[s1]);
        c.reset(8);
        assert!(c.get(8, "s1").is_none());
    }
}
