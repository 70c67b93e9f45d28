//! List-then-watch: what changed after a revision, read from the versioned
//! rows (`rev_from`/`rev_to`) alone. Every long-running process keeps its
//! view current this way instead of reloading: it loads once, remembers the
//! revision, and then reads only the rows later revisions added or retired.

use std::collections::{BTreeMap, BTreeSet};

use clusto_core::{EntityId, Fact, FactId, Inventory, Kind};
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::{Scope, Snapshot, Store, StoreError, TABLES, table_cols, table_name};

/// The rows revisions `from+1 ..= to` added and retired. A row both added
/// and retired in that span is in neither list.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    pub from: i64,
    pub to: i64,
    pub added: Vec<(FactId, Fact)>,
    pub retired: Vec<(FactId, Fact)>,
    /// One past the largest row id and entity id the span created (0 when
    /// it created none): how a writer's view learns which ids are taken.
    pub next_fact: i64,
    pub next_entity: i64,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.retired.is_empty()
    }

    /// Every entity a changed row is about.
    pub fn entities(&self) -> BTreeSet<EntityId> {
        self.added
            .iter()
            .chain(&self.retired)
            .flat_map(|(_, f)| f.entities())
            .collect()
    }
}

impl Snapshot {
    /// Everything inside these entities, at any depth.
    pub async fn descendants(&mut self, of: &[EntityId]) -> Result<Vec<EntityId>, StoreError> {
        let ids: Vec<i64> = of.iter().map(|e| e.0).collect();
        Ok(crate::scope::closure(&mut self.tx, self.at, &ids, false)
            .await?
            .into_iter()
            .map(EntityId)
            .collect())
    }

    /// The holders of addresses these IPManagers handed out.
    pub async fn holders(&mut self, managers: &[EntityId]) -> Result<Vec<EntityId>, StoreError> {
        let mut out = Vec::new();
        for chunk in managers.chunks(500) {
            let list: Vec<String> = chunk.iter().map(|e| e.0.to_string()).collect();
            let sql = format!(
                "SELECT DISTINCT holder FROM addresses t WHERE {} AND manager IN ({})",
                crate::vis("t", self.at),
                list.join(",")
            );
            for r in sqlx::query(AssertSqlSafe(sql))
                .fetch_all(&mut *self.tx)
                .await?
            {
                out.push(EntityId(r.try_get(0)?));
            }
        }
        Ok(out)
    }

    /// The rows changed after revision `since`, up to this snapshot.
    pub async fn changes_since(&mut self, since: i64) -> Result<Changes, StoreError> {
        let to = self.rev();
        changes_between(&mut self.tx, since, to).await
    }
}

/// The rows revisions `since+1 ..= to` added and retired, read on `conn`
/// (a snapshot, or the write transaction holding the lock) in one
/// statement: under the write lock every round trip is one other writers
/// wait for.
pub(crate) async fn changes_between(
    conn: &mut AnyConnection,
    since: i64,
    to: i64,
) -> Result<Changes, StoreError> {
    let mut ch = Changes {
        from: since,
        to,
        ..Changes::default()
    };
    if since >= to {
        return Ok(ch);
    }
    let row = sqlx::query(AssertSqlSafe(changes_sql(conn)))
        .bind(since)
        .bind(to)
        .fetch_one(&mut *conn)
        .await?;
    read_changes(&row, &mut ch)?;
    Ok(ch)
}

/// What landed after `since`, read by a writer holding the write lock (no
/// revision can land meanwhile, so the span is open-ended): its `to` is the
/// head, read by the same statement.
pub(crate) async fn changes_under_lock(
    conn: &mut AnyConnection,
    since: i64,
) -> Result<Changes, StoreError> {
    let row = sqlx::query(AssertSqlSafe(changes_sql(conn)))
        .bind(since)
        .bind(i64::MAX)
        .fetch_one(&mut *conn)
        .await?;
    let head: Option<i64> = row.try_get(3 * TABLES.len() + 1)?;
    let mut ch = Changes {
        from: since,
        to: head.unwrap_or(0),
        ..Changes::default()
    };
    read_changes(&row, &mut ch)?;
    Ok(ch)
}

/// Fills `ch` from a row of [`changes_sql`].
fn read_changes(row: &sqlx::any::AnyRow, ch: &mut Changes) -> Result<(), StoreError> {
    for (i, t) in TABLES.into_iter().enumerate() {
        for (col, list) in [(3 * i, &mut ch.added), (3 * i + 1, &mut ch.retired)] {
            if let Some(text) = row.try_get::<Option<String>, _>(col)? {
                crate::decode_chunk(t, &text, list)?;
            }
        }
        let top: Option<i64> = row.try_get(3 * i + 2)?;
        ch.next_fact = ch.next_fact.max(top.map_or(0, |m| m + 1));
    }
    let top_eid: Option<i64> = row.try_get(3 * TABLES.len())?;
    ch.next_entity = top_eid.map_or(0, |m| m + 1);
    ch.added.sort_by_key(|(id, _)| *id);
    ch.retired.sort_by_key(|(id, _)| *id);
    Ok(())
}

/// Per table: the rows added (and still live at `$2`), the rows retired
/// (and born by `$1`), and the largest id of any row the span touched; then
/// the largest entity id created; last, the head. A row born and retired within the span
/// comes from both range scans and is in neither list. The text is the
/// same for every span, so PostgreSQL plans it once per connection; the
/// classifying conditions sit in the aggregates' filters, where they cannot
/// turn the two index range scans into a scan of a whole index.
fn changes_sql(conn: &AnyConnection) -> String {
    let (agg, arr) = crate::scope::json_fns(conn);
    let mut parts = Vec::new();
    for (i, t) in TABLES.into_iter().enumerate() {
        let (cols, tn) = (table_cols(t), table_name(t));
        let eid = if t == clusto_core::Table::Entities {
            ", MAX(eid) AS top_eid"
        } else {
            ""
        };
        parts.push(format!(
            "(SELECT CAST({agg}({arr}(id, {cols})) FILTER (WHERE rev_from > $1 AND (rev_to IS NULL OR rev_to > $2)) AS TEXT) AS added{i}, \
             CAST({agg}({arr}(id, {cols})) FILTER (WHERE rev_from <= $1) AS TEXT) AS retired{i}, \
             MAX(id) AS top{i}{eid} FROM \
             (SELECT id, {cols}, rev_from, rev_to FROM {tn} WHERE rev_from > $1 AND rev_from <= $2 \
              UNION ALL SELECT id, {cols}, rev_from, rev_to FROM {tn} WHERE rev_to > $1 AND rev_to <= $2) x) t{i}"
        ));
    }
    let cols: Vec<String> = (0..TABLES.len())
        .map(|i| format!("t{i}.added{i}, t{i}.retired{i}, t{i}.top{i}"))
        .collect();
    format!(
        "SELECT {}, t0.top_eid, (SELECT MAX(rev) FROM revisions) AS head FROM {}",
        cols.join(", "),
        parts.join(", ")
    )
}

/// Whether a write's view, loaded before its writer took the lock, may
/// decide differently now that these rows landed: they are about an entity
/// it holds, or they add or retire an entity (whose name a probe may have
/// seen free, or whose kind the scope loads whole). Deliberately wider than
/// [`Store::follow`]'s rule: a write re-reads rather than reason about what
/// its rules looked at.
pub(crate) fn stale_for_write(inv: &Inventory, ch: &Changes) -> bool {
    ch.added.iter().chain(&ch.retired).any(|(_, f)| {
        matches!(f, Fact::Entity(_)) || f.entities().iter().any(|e| inv.entity(*e).is_some())
    })
}

impl Store {
    /// The rows changed after revision `since`, up to the head now.
    pub async fn changes_since(&self, since: i64) -> Result<Changes, StoreError> {
        self.snapshot(None).await?.changes_since(since).await
    }

    /// Brings `inv`, loaded for `scope` as of revision `since`, up to the
    /// head: rows about entities it holds (or that join it, being of a kind
    /// `scope` loads whole) are applied in place; rows about anything else
    /// are skipped. When a change reaches out of the view (an existing
    /// entity put inside one it holds, say), the scope is loaded again:
    /// that costs what the scope holds, never the inventory. Returns the
    /// revision `inv` is now as of and whether anything in it changed.
    pub async fn follow(
        &self,
        inv: &mut Inventory,
        since: i64,
        scope: &Scope,
    ) -> Result<(i64, bool), StoreError> {
        let mut snap = self.snapshot(None).await?;
        let ch = snap.changes_since(since).await?;
        let changed = snap.follow(inv, scope, &ch).await?;
        Ok((ch.to, changed))
    }
}

impl Snapshot {
    /// Brings `inv`, loaded for `scope` as of `ch.from`, to `ch.to` (this
    /// snapshot's revision) — see [`Store::follow`]. One read of the
    /// changes serves any number of views this way. Returns whether
    /// anything in the view changed.
    pub async fn follow(
        &mut self,
        inv: &mut Inventory,
        scope: &Scope,
        ch: &Changes,
    ) -> Result<bool, StoreError> {
        if ch.is_empty() || !concerns(inv, scope, ch) {
            return Ok(false);
        }
        let joining = joining(inv, scope, ch);
        let mut relevant = Changes {
            from: ch.from,
            to: ch.to,
            ..Changes::default()
        };
        for (list, retired) in [(&ch.added, false), (&ch.retired, true)] {
            for (id, f) in list {
                match reach(inv, &joining, scope, f) {
                    Reach::Outside => {}
                    Reach::Inside if retired => relevant.retired.push((*id, f.clone())),
                    Reach::Inside => relevant.added.push((*id, f.clone())),
                    Reach::Beyond => {
                        *inv = self.load(scope).await?;
                        return Ok(true);
                    }
                }
            }
        }
        let changed = !relevant.is_empty();
        inv.follow(&relevant.retired, &relevant.added);
        Ok(changed)
    }
}

/// Whether a change can matter to a view at all: it is about an entity
/// the view holds, or it creates one of a kind the view loads whole. The
/// common answer for a daemon holding many small views is no, and this is
/// the cheap way to get it.
fn concerns(inv: &Inventory, scope: &Scope, ch: &Changes) -> bool {
    let held = |e: EntityId| inv.entity(e).is_some();
    ch.added.iter().chain(&ch.retired).any(|(_, f)| match f {
        Fact::Entity(e) => held(e.id) || scope.loads_kind(e.kind),
        Fact::Attr(e, a) => held(*e) || matches!(a.value, clusto_core::Value::Ref(r) if held(r)),
        Fact::Contains(c) => held(c.parent) || held(c.child),
        Fact::Link(l) => held(l.a) || held(l.b),
        Fact::Address(a) => held(a.holder) || a.manager.is_some_and(held),
    })
}

/// Entities that join the view with the change, with their kind (they are
/// not in `inv` yet): new entities of kinds the scope loads whole, and
/// entities created in the span and put inside a container whose entrants
/// the view holds (every row of a new entity is in the change, so it joins
/// in place; an old entity moved in brings rows the change lacks, and
/// reaches beyond).
fn joining(inv: &Inventory, scope: &Scope, ch: &Changes) -> BTreeMap<EntityId, Kind> {
    let created: BTreeMap<EntityId, Kind> = ch
        .added
        .iter()
        .filter_map(|(_, f)| match f {
            Fact::Entity(e) => Some((e.id, e.kind)),
            _ => None,
        })
        .collect();
    let mut out: BTreeMap<EntityId, Kind> = created
        .iter()
        .filter(|(_, k)| scope.loads_kind(**k))
        .map(|(e, k)| (*e, *k))
        .collect();
    for (_, f) in &ch.added {
        if let Fact::Contains(c) = f
            && let Some(k) = created.get(&c.child)
            && inv.entity(c.parent).is_some()
            && scope.loads_entrants_of(inv, c.parent, inv.kind_of(c.parent))
        {
            out.insert(c.child, *k);
        }
    }
    out
}

/// Where a changed row falls for a view.
enum Reach {
    /// About nothing the view holds.
    Outside,
    /// About what it holds, and only that: applied in place.
    Inside,
    /// Ties something it holds to something it never loaded.
    Beyond,
}

/// A row belongs to the entity it describes (an attribute's owner, a
/// contained thing, an address's holder); it reaches beyond the view when
/// it ties that entity to one the view lacks, or brings new contents into
/// an entity whose contents the scope loads.
fn reach(inv: &Inventory, joining: &BTreeMap<EntityId, Kind>, scope: &Scope, f: &Fact) -> Reach {
    let held = |e: EntityId| inv.entity(e).is_some() || joining.contains_key(&e);
    let kind_of = |e: EntityId| inv.kind_of(e).or_else(|| joining.get(&e).copied());
    let inside_if = |owner: EntityId, others: &[EntityId]| {
        if !held(owner) {
            Reach::Outside
        } else if others.iter().all(|o| held(*o)) {
            Reach::Inside
        } else {
            Reach::Beyond
        }
    };
    match f {
        Fact::Entity(e) => inside_if(e.id, &[]),
        Fact::Attr(e, a) => match a.value {
            clusto_core::Value::Ref(r) => inside_if(*e, &[r]),
            _ => inside_if(*e, &[]),
        },
        Fact::Contains(c) if held(c.child) => inside_if(c.child, &[c.parent]),
        Fact::Contains(c)
            if held(c.parent) && scope.loads_entrants_of(inv, c.parent, kind_of(c.parent)) =>
        {
            Reach::Beyond
        }
        Fact::Contains(_) => Reach::Outside,
        Fact::Link(l) if held(l.a) => inside_if(l.a, &[l.b]),
        Fact::Link(l) => inside_if(l.b, &[l.a]),
        Fact::Address(a) => inside_if(a.holder, a.manager.as_slice()),
    }
}
