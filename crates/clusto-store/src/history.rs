//! `clusto history`: what each revision added, changed and removed.

use std::collections::HashMap;

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
        let mut j = revision_json(&self.revision);
        j["changes"] = serde_json::json!(self.changes);
        j
    }
}

/// A revision's fields as history shows them (its changes aside).
pub fn revision_json(r: &Revision) -> serde_json::Value {
    serde_json::json!({
        "revision": r.rev,
        "time": clusto_core::time::format_unix_ms(r.at_ms),
        "user": r.user,
        "manager": r.manager,
        "message": r.message,
    })
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

/// What [`Store::history_stream`] hands out, in order: a revision, then
/// each of its changes.
#[derive(Clone, Debug, PartialEq)]
pub enum HistoryItem {
    Revision(Revision),
    Change(Change),
}

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

    /// Like [`Store::history`], handing each whole entry to `each` (a
    /// revision's changes are gathered first: for bounded revisions, such
    /// as one object's).
    pub async fn history_each<E: From<StoreError>>(
        &self,
        q: &HistoryQuery,
        mut each: impl FnMut(HistoryEntry) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut current: Option<HistoryEntry> = None;
        self.history_stream(q, |item| match item {
            HistoryItem::Revision(revision) => match current.replace(HistoryEntry {
                revision,
                changes: Vec::new(),
            }) {
                Some(done) => each(done),
                None => Ok(()),
            },
            HistoryItem::Change(c) => {
                if let Some(e) = current.as_mut() {
                    e.changes.push(c);
                }
                Ok(())
            }
        })
        .await?;
        match current {
            Some(done) => each(done),
            None => Ok(()),
        }
    }

    /// Revisions newest first, each followed by its changes as they are
    /// read: memory follows a batch of rows, whatever a revision holds.
    pub async fn history_stream<E: From<StoreError>>(
        &self,
        q: &HistoryQuery,
        mut each: impl FnMut(HistoryItem) -> Result<(), E>,
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
            let log = revision_rows(&mut conn, &revs).await?;
            // The log's connection goes back while the rows are read on another.
            drop(conn);
            let changes = RevisionChanges {
                eids: eids.as_deref(),
                backend: self.backend,
            };
            let mut gathered = changes.gather(&self.pool, &revs).await?;
            for revision in log {
                let rev = revision.rev;
                each(HistoryItem::Revision(revision))?;
                match gathered.as_mut() {
                    Some(by_rev) => {
                        for c in by_rev.remove(&rev).unwrap_or_default() {
                            each(HistoryItem::Change(c))?;
                        }
                    }
                    None => {
                        changes
                            .each(&self.pool, rev, &mut |c| each(HistoryItem::Change(c)))
                            .await?
                    }
                }
            }
            conn = self.pool.acquire().await.map_err(StoreError::from)?;
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

/// Rows of table `t` (as `alias`) about these entities (all rows without a
/// filter).
fn about(t: Table, eids: Option<&[i64]>, alias: &str) -> String {
    let Some(ids) = eids else {
        return "1=1".into();
    };
    let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let l = list.join(",");
    let either = |a: &str, b: &str| format!("({alias}.{a} IN ({l}) OR {alias}.{b} IN ({l}))");
    match t {
        Table::Entities => format!("{alias}.eid IN ({l})"),
        Table::Attrs => either("eid", "ref_eid"),
        Table::Contains => either("parent", "child"),
        Table::Links => either("a", "b"),
        Table::Addresses => either("holder", "manager"),
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
                let f = about(t, eids, table_name(t));
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

/// These revisions' log rows, newest first.
async fn revision_rows(
    conn: &mut sqlx::AnyConnection,
    revs: &[i64],
) -> Result<Vec<Revision>, StoreError> {
    let list: Vec<String> = revs.iter().map(|r| r.to_string()).collect();
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT rev, at_ms, user_name, message, manager FROM revisions WHERE rev IN ({}) ORDER BY rev DESC",
        list.join(",")
    )))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(revision_from_row).collect()
}

/// `cols` with each column qualified by `alias`.
fn qualified(alias: &str, cols: &str) -> String {
    cols.split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What makes a retired row and a new row of `t` the same thing changed in
/// place (`~`): the same entity, attribute slot or address.
fn same_slot(t: Table, backend: crate::Backend) -> Option<String> {
    let same = match backend {
        crate::Backend::Sqlite => "IS",
        crate::Backend::Postgres => "IS NOT DISTINCT FROM",
    };
    match t {
        Table::Entities => Some("n.eid = o.eid".into()),
        Table::Attrs => Some(format!(
            "n.eid = o.eid AND n.key = o.key AND n.subkey {same} o.subkey AND n.number {same} o.number"
        )),
        Table::Addresses => Some("n.address = o.address".into()),
        Table::Contains | Table::Links => None,
    }
}

/// One revision's changes: first what it retired (each paired with the
/// row that replaced it, as `~`, or alone, as `-`), then what it added
/// without replacing anything (`+`), table by table in row order. Each
/// row arrives with the newest names of the entities it mentions, so a
/// revision streams from one statement per table and side, in constant
/// memory.
struct RevisionChanges<'a> {
    eids: Option<&'a [i64]>,
    backend: crate::Backend,
}

/// The columns of `t` that hold entity ids (their names are read along).
fn id_columns(t: Table) -> [&'static str; 2] {
    match t {
        // The eid twice keeps every table's shape the same.
        Table::Entities => ["eid", "eid"],
        Table::Attrs => ["eid", "ref_eid"],
        Table::Contains => ["parent", "child"],
        Table::Links => ["a", "b"],
        Table::Addresses => ["holder", "manager"],
    }
}

/// `cols` of `t` as `alias`, then the id and newest name of each entity
/// the row mentions.
fn with_names(t: Table, alias: &str) -> String {
    let mut s = qualified(alias, table_cols(t));
    for c in id_columns(t) {
        s.push_str(&format!(
            ", {alias}.{c}, (SELECT x.name FROM entities x WHERE x.eid = {alias}.{c} \
             ORDER BY x.rev_from DESC, x.id DESC LIMIT 1)"
        ));
    }
    s
}

/// Which revisions a statement reads: one, as its parameter (the
/// prepared statement is reused), or a page of small ones at once.
enum Revs<'a> {
    One(i64),
    Page(&'a [i64]),
}

impl Revs<'_> {
    fn condition(&self) -> String {
        match self {
            Revs::One(_) => "= $1".into(),
            Revs::Page(revs) => {
                let list: Vec<String> = revs.iter().map(|r| r.to_string()).collect();
                format!("IN ({})", list.join(","))
            }
        }
    }
}

/// Rows a page of revisions is read in at once before it is read one
/// revision at a time instead (a bulk apply's million rows stream).
const GATHER: usize = 20_000;

impl RevisionChanges<'_> {
    /// One revision's changes, streamed.
    async fn each<E: From<StoreError>>(
        &self,
        pool: &sqlx::AnyPool,
        rev: i64,
        each: &mut impl FnMut(Change) -> Result<(), E>,
    ) -> Result<(), E> {
        self.read(pool, &Revs::One(rev), &mut |_, c| each(c)).await
    }

    /// The changes of a page of revisions, by revision, when they hold at
    /// most [`GATHER`] rows in all: ten statements for the page instead
    /// of ten per revision.
    async fn gather(
        &self,
        pool: &sqlx::AnyPool,
        revs: &[i64],
    ) -> Result<Option<HashMap<i64, Vec<Change>>>, StoreError> {
        let mut by_rev: HashMap<i64, Vec<Change>> = HashMap::new();
        let mut rows = 0;
        let r = self
            .read(pool, &Revs::Page(revs), &mut |rev, c| {
                rows += 1;
                if rows > GATHER {
                    return Err(Gathered::TooMany);
                }
                by_rev.entry(rev).or_default().push(c);
                Ok(())
            })
            .await;
        match r {
            Ok(()) => Ok(Some(by_rev)),
            Err(Gathered::TooMany) => Ok(None),
            Err(Gathered::Store(e)) => Err(e),
        }
    }

    /// Retired rows of every table, then added ones, each statement's rows
    /// in row order, handed out with their revision as they are read.
    async fn read<E: From<StoreError>>(
        &self,
        pool: &sqlx::AnyPool,
        revs: &Revs<'_>,
        each: &mut impl FnMut(i64, Change) -> Result<(), E>,
    ) -> Result<(), E> {
        use futures::TryStreamExt;
        let mut conn = pool.acquire().await.map_err(StoreError::from)?;
        for retired in [true, false] {
            for t in TABLES {
                let paired = retired && same_slot(t, self.backend).is_some();
                let mut q = sqlx::query(AssertSqlSafe(self.sql(t, retired, revs)));
                if let Revs::One(rev) = revs {
                    q = q.bind(*rev);
                }
                let mut rows = q.fetch(&mut *conn);
                while let Some(r) = rows.try_next().await.map_err(StoreError::from)? {
                    let rev: i64 = r.try_get(0).map_err(StoreError::from)?;
                    if let Some(c) = row_change(t, &r, paired, retired)? {
                        each(rev, c)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The statement for one table and side: the revision, the row with
    /// the names it mentions, and for a retired row what replaced it.
    fn sql(&self, t: Table, retired: bool, revs: &Revs<'_>) -> String {
        let (tn, cond) = (table_name(t), revs.condition());
        let slot = same_slot(t, self.backend);
        if retired {
            let (pair_cols, join) = match &slot {
                Some(eq) => (
                    format!(", n.id, {}", with_names(t, "n")),
                    format!(" LEFT JOIN {tn} n ON n.rev_from = o.rev_to AND {eq}"),
                ),
                None => (String::new(), String::new()),
            };
            format!(
                "SELECT o.rev_to, {}{pair_cols} FROM {tn} o{join} WHERE o.rev_to {cond} AND {} ORDER BY o.id",
                with_names(t, "o"),
                about(t, self.eids, "o")
            )
        } else {
            let unpaired = match &slot {
                Some(eq) => format!(
                    " AND NOT EXISTS (SELECT 1 FROM {tn} o WHERE o.rev_to = n.rev_from AND {eq})"
                ),
                None => String::new(),
            };
            format!(
                "SELECT n.rev_from, {} FROM {tn} n WHERE n.rev_from {cond} AND {}{unpaired} ORDER BY n.id",
                with_names(t, "n"),
                about(t, self.eids, "n")
            )
        }
    }
}

/// Why a gathered read stopped.
enum Gathered {
    TooMany,
    Store(StoreError),
}

impl From<StoreError> for Gathered {
    fn from(e: StoreError) -> Gathered {
        Gathered::Store(e)
    }
}

/// The change one row stands for (its columns after the revision's), or
/// none for bookkeeping rows.
fn row_change(
    t: Table,
    r: &sqlx::any::AnyRow,
    paired: bool,
    retired: bool,
) -> Result<Option<Change>, StoreError> {
    let width = table_cols(t).split(',').count() + 4;
    let mut names = Names::of_row(t, r, 1)?;
    let fact = fact_from_row(t, r, 1)?;
    // A retired row with no replacement reads NULLs on the pair's side.
    let replaced_by = match paired && r.try_get::<Option<i64>, _>(1 + width)?.is_some() {
        true => {
            names.0.extend(Names::of_row(t, r, width + 2)?.0);
            Some(fact_from_row(t, r, width + 2)?)
        }
        false => None,
    };
    Ok(match (&replaced_by, retired) {
        (Some(new), _) => names
            .changed(&fact, new)
            .map(|text| Change { op: '~', text }),
        (None, true) => names.describe(&fact).map(|text| Change { op: '-', text }),
        (None, false) => names.describe(&fact).map(|text| Change { op: '+', text }),
    })
}

/// The newest names of the entities one row mentions.
struct Names(HashMap<i64, String>);

impl Names {
    /// The names read along with a row whose columns start at `off`.
    fn of_row(t: Table, r: &sqlx::any::AnyRow, off: usize) -> Result<Names, StoreError> {
        let mut names = HashMap::new();
        let mut at = off + table_cols(t).split(',').count();
        for _ in id_columns(t) {
            if let (Some(id), Some(name)) = (
                r.try_get::<Option<i64>, _>(at)?,
                r.try_get::<Option<String>, _>(at + 1)?,
            ) {
                names.insert(id, name);
            }
            at += 2;
        }
        Ok(Names(names))
    }

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
