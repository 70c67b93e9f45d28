//! Rules the database holds for every write, whatever its view loaded.
//! The core checks them first, in memory; these queries are the backstop
//! for a view that missed the conflicting row (a scope too narrow, or a
//! writer that raced). Unique live names and one holder per address are
//! unique indexes (see `schema.rs`); what an index cannot say is checked
//! here, inside the write transaction, over the rows the revision added.
//! Unique pools' group rule (which walks nested pools) is the core's alone.

use clusto_core::{ChangeSet, Fact, Kind, PoolType};
use sqlx::{AnyConnection, Row};

use crate::StoreError;
use crate::scope::IdSet;

/// Checks the containment rows a scoped write added (whole-inventory
/// writes saw every row, so only partial views need this); a violation is
/// [`StoreError::Refused`] and the caller's transaction is dropped. The
/// queries start from the new rows' ids, so they cost what the write added
/// whatever the planner knows about the tables.
pub(crate) async fn check(conn: &mut AnyConnection, ch: &ChangeSet) -> Result<(), StoreError> {
    let (mut units, mut any) = (Vec::new(), Vec::new());
    for (id, f) in &ch.added {
        if let Fact::Contains(c) = f {
            any.push(id.0);
            if c.ru.is_some() {
                units.push(id.0);
            }
        }
    }
    for chunk in units.chunks(500) {
        let set = IdSet::new(conn, chunk);
        first_violation(conn, &set, rack_units(&set.sql)).await?;
    }
    for chunk in any.chunks(500) {
        let set = IdSet::new(conn, chunk);
        first_violation(conn, &set, exclusive_pools(&set.sql)).await?;
    }
    Ok(())
}

/// Two live rows of one rack whose units overlap, one of them new.
fn rack_units(ids: &str) -> String {
    format!(
        "SELECT n.name, 'RU ' || a.ru_start || '-' || a.ru_end || ' of rack ' || r.name || ' overlaps ' \
         || o.name || ' at RU ' || b.ru_start || '-' || b.ru_end \
         FROM containment a \
         JOIN containment b ON b.parent = a.parent AND b.id <> a.id AND b.rev_to IS NULL \
           AND b.ru_start IS NOT NULL AND b.ru_start <= a.ru_end AND a.ru_start <= b.ru_end \
         JOIN entities n ON n.eid = a.child AND n.rev_to IS NULL \
         JOIN entities o ON o.eid = b.child AND o.rev_to IS NULL \
         JOIN entities r ON r.eid = a.parent AND r.rev_to IS NULL \
         WHERE a.id IN ({ids}) AND a.ru_start IS NOT NULL LIMIT 1"
    )
}

/// A thing in an exclusive pool and in another pool, one membership new.
fn exclusive_pools(ids: &str) -> String {
    let ex = PoolType::Exclusive.driver();
    let pool = Kind::Pool.as_str();
    format!(
        "SELECT n.name, n.name || ' is in exclusive pool ' || \
           CASE WHEN pa.driver = '{ex}' THEN pa.name ELSE pb.name END || ' and in pool ' || \
           CASE WHEN pa.driver = '{ex}' THEN pb.name ELSE pa.name END \
         FROM containment a \
         JOIN entities pa ON pa.eid = a.parent AND pa.rev_to IS NULL AND pa.kind = '{pool}' \
         JOIN containment b ON b.child = a.child AND b.id <> a.id AND b.rev_to IS NULL \
         JOIN entities pb ON pb.eid = b.parent AND pb.rev_to IS NULL AND pb.kind = '{pool}' \
         JOIN entities n ON n.eid = a.child AND n.rev_to IS NULL \
         WHERE a.id IN ({ids}) AND (pa.driver = '{ex}' OR pb.driver = '{ex}') LIMIT 1"
    )
}

async fn first_violation(
    conn: &mut AnyConnection,
    set: &IdSet,
    sql: String,
) -> Result<(), StoreError> {
    match set.query(sql).fetch_optional(&mut *conn).await? {
        None => Ok(()),
        Some(r) => Err(StoreError::Refused {
            object: r.try_get(0)?,
            rule: r.try_get(1)?,
        }),
    }
}
