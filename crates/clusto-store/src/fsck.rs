//! `clusto fsck`: the rows' invariants, checked in SQL (a loaded inventory
//! could not even show them), then every model rule over the inventory
//! (`Inventory::fsck`).

use clusto_core::fsck::Violation;
use sqlx::{AssertSqlSafe, Row};

use crate::{Snapshot, Store, StoreError, vis};

/// Row references to entities: (table, column, what the row is).
const REFERENCES: [(&str, &str, &str); 8] = [
    ("attrs", "eid", "attribute"),
    ("attrs", "ref_eid", "reference attribute's target"),
    ("containment", "parent", "containment's container"),
    ("containment", "child", "containment's content"),
    ("links", "a", "cable end"),
    ("links", "b", "cable end"),
    ("addresses", "holder", "address holder"),
    ("addresses", "manager", "address manager"),
];

const TABLES: [&str; 5] = ["entities", "attrs", "containment", "links", "addresses"];

impl Store {
    /// Every invariant over the whole store as of `at` (None = now):
    /// sorted violations, empty when clean.
    pub async fn fsck(&self, at: Option<i64>) -> Result<Vec<Violation>, StoreError> {
        let mut snap = self.snapshot(at).await?;
        let mut out = snap.fsck_rows().await?;
        let inv = self.load(Some(snap.rev())).await?;
        out.extend(inv.fsck());
        out.sort();
        Ok(out)
    }
}

fn violation(rule: &'static str, objects: Vec<String>, detail: String) -> Violation {
    Violation {
        rule,
        objects,
        detail,
    }
}

impl Snapshot {
    async fn rows(&mut self, sql: String) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        Ok(sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&mut *self.tx)
            .await?)
    }

    async fn fsck_rows(&mut self) -> Result<Vec<Violation>, StoreError> {
        let mut out = Vec::new();
        self.fsck_revisions(&mut out).await?;
        self.fsck_unique(&mut out).await?;
        self.fsck_dangling(&mut out).await?;
        self.fsck_ports(&mut out).await?;
        Ok(out)
    }

    /// Revisions 1..=head, each once; no row from a revision past the head
    /// or retired before it was added.
    async fn fsck_revisions(&mut self, out: &mut Vec<Violation>) -> Result<(), StoreError> {
        let head = self.rev;
        let sql =
            format!("SELECT COUNT(*), COALESCE(MIN(rev), 1) FROM revisions WHERE rev <= {head}");
        let r = &self.rows(sql).await?[0];
        let (n, first): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
        if n != head || (n > 0 && first != 1) {
            let d = format!("{n} revisions recorded for 1..={head}: revisions are missing");
            out.push(violation("revisions-not-contiguous", vec![], d));
        }
        for t in TABLES {
            let sql = format!(
                "SELECT COUNT(*) FROM {t} WHERE rev_from > {head} OR (rev_to IS NOT NULL AND rev_to <= rev_from)"
            );
            let bad: i64 = self.rows(sql).await?[0].try_get(0)?;
            if bad > 0 && self.at.is_none() {
                let d = format!(
                    "{bad} row(s) of {t} from past the head ({head}) or retired before they were added"
                );
                out.push(violation("row-revisions", vec![t.to_string()], d));
            }
        }
        Ok(())
    }

    /// One live entity per name, one holder per address.
    async fn fsck_unique(&mut self, out: &mut Vec<Violation>) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT name, COUNT(*) FROM entities t WHERE {} GROUP BY name HAVING COUNT(*) > 1",
            vis("t", self.at)
        );
        for r in self.rows(sql).await? {
            let (name, n): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
            out.push(violation(
                "duplicate-name",
                vec![name.clone()],
                format!("{n} live entities are named {name}"),
            ));
        }
        let sql = format!(
            "SELECT address, COUNT(*) FROM addresses t WHERE {} GROUP BY address HAVING COUNT(*) > 1",
            vis("t", self.at)
        );
        for r in self.rows(sql).await? {
            let (addr, n): (String, i64) = (r.try_get(0)?, r.try_get(1)?);
            out.push(violation(
                "duplicate-address",
                vec![addr.clone()],
                format!("{addr} has {n} holders"),
            ));
        }
        Ok(())
    }

    /// No live row refers to an entity that is not live.
    async fn fsck_dangling(&mut self, out: &mut Vec<Violation>) -> Result<(), StoreError> {
        for (t, col, what) in REFERENCES {
            let sql = format!(
                "SELECT t.id, t.{col} FROM {t} t WHERE {} AND t.{col} IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM entities e WHERE e.eid = t.{col} AND {})",
                vis("t", self.at),
                vis("e", self.at)
            );
            for r in self.rows(sql).await? {
                let (row, eid): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
                let d =
                    format!("{t} row {row}: the {what} (entity {eid}) is deleted or never existed");
                out.push(violation("dangling-row", vec![format!("{t}#{row}")], d));
            }
        }
        Ok(())
    }

    /// A port holds at most one cable.
    async fn fsck_ports(&mut self, out: &mut Vec<Violation>) -> Result<(), StoreError> {
        let v = vis("t", self.at);
        let sql = format!(
            "SELECT e, p, COUNT(*) FROM (SELECT a AS e, a_port AS p FROM links t WHERE {v} \
             UNION ALL SELECT b AS e, b_port AS p FROM links t WHERE {v}) ends \
             GROUP BY e, p HAVING COUNT(*) > 1"
        );
        for r in self.rows(sql).await? {
            let (eid, port, n): (i64, String, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let d = format!("port {port} of entity {eid} has {n} cables");
            out.push(violation(
                "port-cabled-twice",
                vec![format!("entity {eid}")],
                d,
            ));
        }
        Ok(())
    }
}
