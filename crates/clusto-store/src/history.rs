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

impl HistoryEntry {
    /// The entry as `history -o json` prints it and the API serves it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "revision": self.revision.rev,
            "time": clusto_core::time::format_unix_ms(self.revision.at_ms),
            "user": self.revision.user,
            "manager": self.revision.manager,
            "message": self.revision.message,
            "changes": self.changes,
        })
    }
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

/// Which revisions `clusto history` shows.
#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    /// Only revisions that touched this entity (under any of its names).
    pub name: Option<String>,
    /// At most this many, newest first (None = all).
    pub limit: Option<i64>,
    /// Only revisions after this one.
    pub since: Option<i64>,
}

/// Revisions read per round: history streams in pages, so its memory
/// follows one page, not the whole log.
const PAGE: i64 = 20;

impl Store {
    /// Revisions newest first, each with its changes; with `name`, only
    /// revisions that touched that entity (under any of its names).
    pub async fn history(
        &self,
        name: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut out = Vec::new();
        let q = HistoryQuery {
            name: name.map(str::to_string),
            limit,
            since: None,
        };
        self.history_each(&q, |e| {
            out.push(e);
            Ok::<(), StoreError>(())
        })
        .await?;
        Ok(out)
    }

    /// Like [`Store::history`], handing each entry to `each` as soon as its
    /// page is read.
    pub async fn history_each<E: From<StoreError>>(
        &self,
        q: &HistoryQuery,
        mut each: impl FnMut(HistoryEntry) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut conn = self.pool.acquire().await.map_err(StoreError::from)?;
        let eids = match &q.name {
            None => None,
            Some(n) => Some(eids_named(&mut conn, n).await?),
        };
        let mut left = q.limit.map(|l| l.max(0)).unwrap_or(i64::MAX);
        let mut before = i64::MAX;
        while left > 0 {
            let page = PAGE.min(left);
            let revs = revisions_page(&mut conn, eids.as_deref(), q.since, before, page).await?;
            let Some(&oldest) = revs.last() else { break };
            for e in entries(&mut conn, eids.as_deref(), &revs).await? {
                each(e)?;
            }
            left -= revs.len() as i64;
            before = oldest;
            if (revs.len() as i64) < page {
                break;
            }
        }
        Ok(())
    }
}

async fn eids_named(conn: &mut sqlx::AnyConnection, n: &str) -> Result<Vec<i64>, StoreError> {
    let rows = sqlx::query("SELECT DISTINCT eid FROM entities WHERE name = $1")
        .bind(n.to_string())
        .fetch_all(&mut *conn)
        .await?;
    if rows.is_empty() {
        return Err(clusto_core::CoreError::NotFound(n.to_string()).into());
    }
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// Rows of table `t` about these entities (all rows without a filter).
fn about(t: Table, eids: Option<&[i64]>) -> String {
    let Some(ids) = eids else {
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
}

/// The next `page` revisions older than `before` and newer than `since`,
/// newest first; with `eids`, only those that touched them.
async fn revisions_page(
    conn: &mut sqlx::AnyConnection,
    eids: Option<&[i64]>,
    since: Option<i64>,
    before: i64,
    page: i64,
) -> Result<Vec<i64>, StoreError> {
    let after = since.unwrap_or(0);
    let sql = match eids {
        // Every revision changed something: the log itself says which.
        None => format!(
            "SELECT rev FROM revisions WHERE rev > {after} AND rev < {before} ORDER BY rev DESC LIMIT {page}"
        ),
        Some(_) => {
            let mut parts = Vec::new();
            for t in TABLES {
                let f = about(t, eids);
                parts.push(format!(
                    "SELECT rev_from AS r FROM {} WHERE {f}",
                    table_name(t)
                ));
                parts.push(format!(
                    "SELECT rev_to AS r FROM {} WHERE rev_to IS NOT NULL AND {f}",
                    table_name(t)
                ));
            }
            format!(
                "SELECT DISTINCT r FROM ({}) x WHERE r > {after} AND r < {before} ORDER BY r DESC LIMIT {page}",
                parts.join(" UNION ALL ")
            )
        }
    };
    let mut revs = Vec::new();
    for r in sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?
    {
        revs.push(r.try_get(0)?);
    }
    Ok(revs)
}

/// The entries of these revisions (newest first), described with the
/// newest name of every entity they mention.
async fn entries(
    conn: &mut sqlx::AnyConnection,
    eids: Option<&[i64]>,
    revs: &[i64],
) -> Result<Vec<HistoryEntry>, StoreError> {
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
            about(t, eids)
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
    let names = names_of(conn, &per_rev).await?;
    let mut out = Vec::new();
    for r in &meta_rows {
        let revision = revision_from_row(r)?;
        let (added, removed) = per_rev.remove(&revision.rev).unwrap_or_default();
        out.push(HistoryEntry {
            revision,
            changes: describe_changes(&names, added, removed),
        });
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.revision.rev));
    Ok(out)
}

/// The newest name of every entity these facts mention.
async fn names_of(
    conn: &mut sqlx::AnyConnection,
    per_rev: &BTreeMap<i64, AddedRemoved>,
) -> Result<Names, StoreError> {
    let mut eids: Vec<i64> = per_rev
        .values()
        .flat_map(|(a, r)| a.iter().chain(r))
        .flat_map(|(_, f)| f.entities())
        .map(|e| e.0)
        .collect();
    eids.sort_unstable();
    eids.dedup();
    let mut names = HashMap::new();
    for chunk in eids.chunks(500) {
        let list: Vec<String> = chunk.iter().map(|i| i.to_string()).collect();
        let sql = format!(
            "SELECT eid, name FROM entities WHERE eid IN ({}) ORDER BY rev_from, id",
            list.join(",")
        );
        for r in sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await?
        {
            names.insert(r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?);
        }
    }
    Ok(Names(names))
}

/// One revision's rows as `+`, `-` and `~` lines: a removal and an addition
/// of the same slot read as one change.
fn describe_changes(
    names: &Names,
    added: Vec<(i64, Fact)>,
    removed: Vec<(i64, Fact)>,
) -> Vec<Change> {
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
    changes
}
