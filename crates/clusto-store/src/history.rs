//! `clusto history`: what each revision added, changed and removed.

use std::collections::{BTreeMap, HashMap};

use clusto_core::{Fact, Table, Value};
use sqlx::{AssertSqlSafe, Row};

use crate::{
    Revision, Store, StoreError, TABLES, fact_from_row, revision_from_row, table_cols, table_name,
};

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Change {
    /// `+` added, `-` removed, `~` changed in place.
    pub op: char,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HistoryEntry {
    pub revision: Revision,
    pub changes: Vec<Change>,
}

/// Identity of a fact for pairing a removal with an addition into `~`.
fn slot(f: &Fact) -> Option<String> {
    match f {
        Fact::Entity(e) => Some(format!("e{}", e.id.0)),
        Fact::Attr(e, a) => Some(format!("a{}/{}/{:?}/{:?}", e.0, a.key, a.subkey, a.number)),
        Fact::Address(a) => Some(format!("ip{}", a.address)),
        _ => None,
    }
}

/// Facts a revision added and retired, with their row ids.
type AddedRemoved = (Vec<(i64, Fact)>, Vec<(i64, Fact)>);

struct Names(HashMap<i64, String>);

impl Names {
    fn n(&self, id: i64) -> &str {
        self.0.get(&id).map(String::as_str).unwrap_or("?")
    }

    fn value(&self, v: &Value) -> String {
        match v {
            Value::Ref(r) => format!("@{}", self.n(r.0)),
            other => other.to_text().unwrap_or_default(),
        }
    }

    fn describe(&self, f: &Fact) -> Option<String> {
        Some(match f {
            Fact::Entity(e) => format!("{} {} (driver {})", e.kind, e.name, e.driver),
            Fact::Attr(e, a) => {
                let who = self.n(e.0);
                if a.key == "_counter" {
                    return None;
                }
                if a.key == "_spec" {
                    format!(
                        "{who} {} = {}",
                        a.subkey.as_deref().unwrap_or(""),
                        self.value(&a.value)
                    )
                } else if let Some(pt) = a.key.strip_prefix("_port-") {
                    format!(
                        "{who} port {pt}:{} {} = {}",
                        a.number.unwrap_or(0),
                        a.subkey.as_deref().unwrap_or(""),
                        self.value(&a.value)
                    )
                } else {
                    format!("{who} attr {} = {}", a.path(), self.value(&a.value))
                }
            }
            Fact::Contains(c) => match c.ru {
                Some(ru) => format!("{} in {} at RU {ru}", self.n(c.child.0), self.n(c.parent.0)),
                None => format!("{} in {}", self.n(c.child.0), self.n(c.parent.0)),
            },
            Fact::Link(l) => format!(
                "{}:{} <-> {}:{}",
                self.n(l.a.0),
                l.a_port,
                self.n(l.b.0),
                l.b_port
            ),
            Fact::Address(a) => {
                let mut s = format!("{} address {}", self.n(a.holder.0), a.address);
                if let Some(m) = a.manager {
                    s.push_str(&format!(" from {}", self.n(m.0)));
                }
                if let Some(o) = &a.os_port {
                    s.push_str(&format!(" on {o}"));
                }
                if let Some(p) = &a.port {
                    s.push_str(&format!(" port {p}"));
                }
                s
            }
        })
    }

    fn changed(&self, old: &Fact, new: &Fact) -> Option<String> {
        Some(match (old, new) {
            (Fact::Entity(a), Fact::Entity(b)) if a.name != b.name => {
                format!("{} {} renamed to {}", a.kind, a.name, b.name)
            }
            (Fact::Entity(a), Fact::Entity(b)) => {
                format!("{} {} driver {} → {}", a.kind, b.name, a.driver, b.driver)
            }
            (Fact::Attr(_, a), Fact::Attr(_, b)) => {
                let d = self.describe(new)?;
                let head = d.rsplit_once(" = ").map(|x| x.0).unwrap_or(&d).to_string();
                format!(
                    "{head}: {} → {}",
                    self.value(&a.value),
                    self.value(&b.value)
                )
            }
            _ => format!("{} → {}", self.describe(old)?, self.describe(new)?),
        })
    }
}

impl Store {
    /// Revisions newest first, each with its changes; with `name`, only
    /// revisions that touched that entity (under any of its names).
    pub async fn history(
        &self,
        name: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let names_rows = sqlx::query("SELECT eid, name FROM entities ORDER BY rev_from, id")
            .fetch_all(&mut *conn)
            .await?;
        let mut names = HashMap::new();
        for r in &names_rows {
            names.insert(r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?);
        }
        let names = Names(names);
        let eids: Option<Vec<i64>> = match name {
            None => None,
            Some(n) => {
                let rows = sqlx::query("SELECT DISTINCT eid FROM entities WHERE name = $1")
                    .bind(n.to_string())
                    .fetch_all(&mut *conn)
                    .await?;
                if rows.is_empty() {
                    return Err(clusto_core::CoreError::NotFound(n.to_string()).into());
                }
                Some(
                    rows.iter()
                        .map(|r| r.try_get(0))
                        .collect::<Result<_, _>>()?,
                )
            }
        };
        let filter = |t: Table| -> String {
            let Some(ids) = &eids else {
                return "1=1".into();
            };
            let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            let l = list.join(",");
            match t {
                Table::Entities => format!("eid IN ({l})"),
                Table::Attrs => format!("(eid IN ({l}) OR ref_eid IN ({l}))"),
                Table::Contains => format!("(parent IN ({l}) OR child IN ({l}))"),
                Table::Links => format!("(a IN ({l}) OR b IN ({l}))"),
                Table::Addresses => format!("(holder IN ({l}) OR manager IN ({l}))"),
            }
        };
        // Which revisions: newest first, limited.
        let mut revs: Vec<i64> = Vec::new();
        {
            let mut parts = Vec::new();
            for t in TABLES {
                parts.push(format!(
                    "SELECT rev_from AS r FROM {} WHERE {}",
                    table_name(t),
                    filter(t)
                ));
                parts.push(format!(
                    "SELECT rev_to AS r FROM {} WHERE rev_to IS NOT NULL AND {}",
                    table_name(t),
                    filter(t)
                ));
            }
            let sql = format!(
                "SELECT DISTINCT r FROM ({}) x ORDER BY r DESC{}",
                parts.join(" UNION ALL "),
                limit
                    .map(|l| format!(" LIMIT {}", l.max(0)))
                    .unwrap_or_default()
            );
            for r in sqlx::query(AssertSqlSafe(sql))
                .fetch_all(&mut *conn)
                .await?
            {
                revs.push(r.try_get(0)?);
            }
        }
        if revs.is_empty() {
            return Ok(Vec::new());
        }
        let rev_list: Vec<String> = revs.iter().map(|r| r.to_string()).collect();
        let rev_list = rev_list.join(",");
        let meta_rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT rev, at_ms, user_name, message, manager FROM revisions WHERE rev IN ({rev_list})"
        )))
        .fetch_all(&mut *conn)
        .await?;
        let mut per_rev: BTreeMap<i64, AddedRemoved> = BTreeMap::new();
        for t in TABLES {
            let sql = format!(
                "SELECT id, {}, rev_from, rev_to FROM {} WHERE {} AND (rev_from IN ({rev_list}) OR rev_to IN ({rev_list})) ORDER BY id",
                table_cols(t),
                table_name(t),
                filter(t)
            );
            let ncols = table_cols(t).split(',').count();
            for r in sqlx::query(AssertSqlSafe(sql))
                .fetch_all(&mut *conn)
                .await?
            {
                let id: i64 = r.try_get(0)?;
                let f = fact_from_row(t, &r, 1)?;
                let from: i64 = r.try_get(1 + ncols)?;
                let to: Option<i64> = r.try_get(2 + ncols)?;
                if revs.contains(&from) {
                    per_rev.entry(from).or_default().0.push((id, f.clone()));
                }
                if let Some(to) = to
                    && revs.contains(&to)
                {
                    per_rev.entry(to).or_default().1.push((id, f));
                }
            }
        }
        let mut out = Vec::new();
        for r in &meta_rows {
            let revision = revision_from_row(r)?;
            let (added, removed) = per_rev.remove(&revision.rev).unwrap_or_default();
            let mut changes = Vec::new();
            let mut added_slots: HashMap<String, usize> = HashMap::new();
            for (i, (_, f)) in added.iter().enumerate() {
                if let Some(s) = slot(f) {
                    added_slots.insert(s, i);
                }
            }
            let mut paired = vec![false; added.len()];
            for (_, f) in &removed {
                if let Some(i) = slot(f).and_then(|s| added_slots.get(&s).copied())
                    && !paired[i]
                {
                    paired[i] = true;
                    if let Some(text) = names.changed(f, &added[i].1) {
                        changes.push(Change { op: '~', text });
                    }
                    continue;
                }
                if let Some(text) = names.describe(f) {
                    changes.push(Change { op: '-', text });
                }
            }
            for (i, (_, f)) in added.iter().enumerate() {
                if !paired[i]
                    && let Some(text) = names.describe(f)
                {
                    changes.push(Change { op: '+', text });
                }
            }
            out.push(HistoryEntry { revision, changes });
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.revision.rev));
        Ok(out)
    }
}
