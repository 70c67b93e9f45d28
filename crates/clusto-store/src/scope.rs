//! Point operations: load what a rule looks at, not the whole inventory.
//!
//! A [`Scope`] names the entities an operation is about. The store loads
//! them into an ordinary [`Inventory`] together with their neighbourhood,
//! so the core's rules run unchanged on a small, partial view:
//!
//! | tier | who | rows |
//! |---|---|---|
//! | named | the entities the command names (and with `descendants_of`, everything inside them) | entity, every attribute, containment both ways, cables, addresses held (and an IPManager's allocations), attributes that refer to them |
//! | context | their containers up to the top (merged attributes, pools, racks), every Driver, whole kinds a rule scans (IP managers on writes; VMs and VM managers when a write touches them or a host), managers allocated from | entity, every attribute, their own containers |
//! | edge | whatever a loaded row points at: contents, cable peers, address managers, referrers, reference targets | entity and `_spec` |
//!
//! Writes load inside the write transaction, so the view is exactly the
//! head it builds on; the database's unique indexes (live names, one holder
//! per address) refuse what a partial view could not see.

use std::collections::{BTreeMap, BTreeSet};

use clusto_core::inventory::SPEC_KEY;
use clusto_core::{Fact, FactId, Inventory, Kind, Table};
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::{StoreError, TABLES, fact_from_row, table_cols, table_name, vis};

/// What a point operation touches. Build with [`Scope::read`] or
/// [`Scope::write`], then widen.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    names: BTreeSet<String>,
    /// Named by id (a process that remembers entities across renames).
    ids: BTreeSet<i64>,
    /// Loaded as context: the entity and its attributes, no neighbourhood.
    context: BTreeSet<String>,
    kinds: BTreeSet<Kind>,
    vms: VmWorld,
    descendants_of: BTreeSet<String>,
    containers: BTreeSet<String>,
    addresses: BTreeSet<String>,
    next_address: BTreeSet<String>,
    next_name: BTreeSet<String>,
}

/// When the VMs' world (every VM and VM manager, and each manager's hosts)
/// is loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
enum VmWorld {
    #[default]
    Never,
    /// When the scope names a VM or VM manager, or a host inside one.
    IfTouched,
    Always,
}

const VM_KINDS: [Kind; 2] = [Kind::VirtualMachine, Kind::VmManager];

/// Candidates probed per query when looking for a free address or name.
const PROBE_WINDOW: usize = 256;
/// Ids per `IN (…)` list.
const IN_CHUNK: usize = 500;

impl Scope {
    /// A read about these entities (missing names are not an error here:
    /// the rule that looks them up reports them).
    pub fn read<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Scope {
        Scope {
            names: names.into_iter().map(|n| n.as_ref().to_string()).collect(),
            ..Scope::default()
        }
    }

    /// A write about these entities: also loads what write rules scan —
    /// every IPManager (the one covering an address), and when the write
    /// touches a VM, a VM manager or one of its hosts, every VM and VM
    /// manager with their hosts (placement, a host's guests).
    pub fn write<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Scope {
        let mut s = Scope::read(names);
        s.kinds.insert(Kind::IpManager);
        s.vms = VmWorld::IfTouched;
        s
    }

    /// Everything the VM controller's rules read: every VM and VM manager
    /// with the hosts inside each manager, their containers (merged
    /// settings), and what rules scan on a write. Its size follows the VMs,
    /// not the inventory.
    pub fn vm_world() -> Scope {
        Scope::write(Vec::<String>::new()).with_vms()
    }

    /// Also every VM and VM manager with their hosts, whatever is named
    /// (the VM controller's view).
    pub fn with_vms(mut self) -> Scope {
        self.vms = VmWorld::Always;
        self
    }

    /// Also load everything inside `name` (a pool join checks the pools of
    /// everything it brings along; recursive contents list them).
    pub fn with_descendants_of(mut self, name: &str) -> Scope {
        self.names.insert(name.to_string());
        self.descendants_of.insert(name.to_string());
        self
    }

    /// Also load who holds this address (an explicit allocation or bind).
    pub fn with_address(mut self, ip: std::net::IpAddr) -> Scope {
        self.addresses.insert(ip.to_string());
        self
    }

    /// Load which of the next addresses `ip allocate` would try from this
    /// IPManager are taken (only as many as needed to find a free one).
    pub fn with_next_address(mut self, manager: &str) -> Scope {
        self.context.insert(manager.to_string());
        self.next_address.insert(manager.to_string());
        self
    }

    /// Also load `container` for a thing to enter or leave: as context (its
    /// settings and containers, for cycle and pool rules) plus whatever
    /// occupies its rack units, not all its contents (a pool may hold a
    /// hundred thousand things).
    pub fn with_container(mut self, container: &str) -> Scope {
        self.context.insert(container.to_string());
        self.containers.insert(container.to_string());
        self
    }

    /// Load which of the next names this NameManager would hand out are taken.
    pub fn with_next_name(mut self, manager: &str) -> Scope {
        self.context.insert(manager.to_string());
        self.next_name.insert(manager.to_string());
        self
    }

    /// Everything `other` loads, too: one load serving several writes.
    pub fn merge(mut self, other: &Scope) -> Scope {
        self.names.extend(other.names.iter().cloned());
        self.ids.extend(other.ids.iter().copied());
        self.context.extend(other.context.iter().cloned());
        self.kinds.extend(other.kinds.iter().copied());
        self.vms = self.vms.max(other.vms);
        self.descendants_of
            .extend(other.descendants_of.iter().cloned());
        self.containers.extend(other.containers.iter().cloned());
        self.addresses.extend(other.addresses.iter().cloned());
        self.next_address.extend(other.next_address.iter().cloned());
        self.next_name.extend(other.next_name.iter().cloned());
        self
    }

    /// Also load every entity of this kind (with attributes).
    pub fn with_kind(mut self, kind: Kind) -> Scope {
        self.kinds.insert(kind);
        self
    }

    /// Also these entities, by id, as if named.
    pub fn with_ids(mut self, ids: impl IntoIterator<Item = clusto_core::EntityId>) -> Scope {
        self.ids.extend(ids.into_iter().map(|e| e.0));
        self
    }

    /// Whether every entity of `kind` is loaded (drivers always are).
    pub fn loads_kind(&self, kind: Kind) -> bool {
        kind == Kind::Driver
            || self.kinds.contains(&kind)
            || (self.vms == VmWorld::Always && VM_KINDS.contains(&kind))
    }

    /// Whether everything inside entities of `kind` is loaded.
    pub fn loads_contents_of(&self, kind: Kind) -> bool {
        self.vms == VmWorld::Always && kind == Kind::VmManager
    }

    /// Whether what enters `container` (of `kind`, held in `inv` or joining
    /// it, a view of this scope) belongs in the view: it is a VM manager the scope loads whole
    /// with its hosts, or a container whose descendants the scope loads
    /// (it, or something above it, was given to `with_descendants_of`).
    pub fn loads_entrants_of(
        &self,
        inv: &clusto_core::Inventory,
        container: clusto_core::EntityId,
        kind: Option<Kind>,
    ) -> bool {
        if kind.is_some_and(|k| self.loads_contents_of(k)) {
            return true;
        }
        if self.descendants_of.is_empty() {
            return false;
        }
        let mut seen = BTreeSet::new();
        let mut todo = vec![container];
        while let Some(e) = todo.pop() {
            if !seen.insert(e) {
                continue;
            }
            if inv
                .entity(e)
                .is_some_and(|x| self.descendants_of.contains(&x.name))
            {
                return true;
            }
            todo.extend(inv.parents_of(e));
        }
        false
    }

    pub fn name(mut self, name: &str) -> Scope {
        self.names.insert(name.to_string());
        self
    }
}

pub(crate) fn in_list(ids: &[i64]) -> String {
    let v: Vec<String> = ids.iter().map(i64::to_string).collect();
    v.join(",")
}

/// A set of ids for `x IN (…)`. On PostgreSQL it is one bound array
/// (`$1`), so a statement's text is the same whatever the ids: the server
/// parses and plans it once per connection, and the driver runs it in one
/// round trip. Literal lists made every point write prepare a dozen new
/// statements, each in an extra round trip (measured: most of the server's
/// CPU with 8 writers). SQLite makes no round trips and keeps the literal
/// list, which its planner reads best.
pub(crate) struct IdSet {
    pub sql: String,
    bind: Option<String>,
}

impl IdSet {
    pub(crate) fn new(conn: &AnyConnection, ids: &[i64]) -> IdSet {
        IdSet::param(conn, ids, 1)
    }

    /// A set bound as parameter `$n` (when the statement binds others first).
    pub(crate) fn param(conn: &AnyConnection, ids: &[i64], n: usize) -> IdSet {
        if is_postgres(conn) {
            IdSet {
                sql: format!("SELECT unnest(CAST(${n} AS BIGINT[]))"),
                bind: Some(format!("{{{}}}", in_list(ids))),
            }
        } else {
            IdSet {
                sql: in_list(ids),
                bind: None,
            }
        }
    }

    /// The ids written into the statement, on every backend: for a
    /// statement whose best plan depends on how many there are.
    pub(crate) fn literal(ids: &[i64]) -> IdSet {
        IdSet {
            sql: in_list(ids),
            bind: None,
        }
    }

    /// The set's bind, if it has one (it is a literal list otherwise).
    pub(crate) fn bind_value(&self) -> Option<String> {
        self.bind.clone()
    }

    /// `sql` (which uses `self.sql` and no other parameter) with the set bound.
    pub(crate) fn query(
        &self,
        sql: String,
    ) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let q = sqlx::query(AssertSqlSafe(sql));
        match &self.bind {
            Some(b) => q.bind(b.clone()),
            None => q,
        }
    }

    /// Like [`IdSet::query`], for a one-column answer.
    pub(crate) fn query_scalar<O>(
        &self,
        sql: String,
    ) -> sqlx::query::QueryScalar<'static, sqlx::Any, O, sqlx::any::AnyArguments>
    where
        (O,): for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        let q = sqlx::query_scalar(AssertSqlSafe(sql));
        match &self.bind {
            Some(b) => q.bind(b.clone()),
            None => q,
        }
    }
}

fn is_postgres(conn: &AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("postgresql")
}

/// Rows read so far, by fact id, so a row reached twice is kept once.
#[derive(Default)]
struct Rows {
    facts: BTreeMap<FactId, Fact>,
}

impl Rows {
    fn mentioned(&self) -> BTreeSet<i64> {
        self.facts
            .values()
            .flat_map(Fact::entities)
            .map(|e| e.0)
            .collect()
    }
}

/// A row filter given the `IN (…)` list of ids.
type Cond = fn(&str) -> String;

/// A query over one table for every chunk of `ids`: `cond` gets the id list.
async fn fetch(
    conn: &mut AnyConnection,
    at: Option<i64>,
    t: Table,
    ids: &[i64],
    cond: Cond,
    rows: &mut Rows,
) -> Result<(), StoreError> {
    // Rows come back as one JSON array per chunk, as a full load reads
    // them: one value to decode instead of a driver round trip per row.
    let (agg, arr) = json_fns(conn);
    let mut decoded = Vec::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let set = IdSet::new(conn, chunk);
        let sql = format!(
            "SELECT CAST({agg}({arr}(id, {cols})) AS TEXT) FROM {} t WHERE {} AND {}",
            table_name(t),
            vis("t", at),
            cond(&set.sql),
            cols = table_cols(t),
        );
        let text: Option<String> = set.query_scalar(sql).fetch_one(&mut *conn).await?;
        if let Some(text) = text {
            crate::decode_chunk(t, &text, &mut decoded)?;
        }
    }
    rows.facts.extend(decoded);
    Ok(())
}

/// The entity rows of `ids`.
async fn fetch_entities(
    conn: &mut AnyConnection,
    at: Option<i64>,
    ids: &[i64],
    rows: &mut Rows,
) -> Result<(), StoreError> {
    fetch(
        conn,
        at,
        Table::Entities,
        ids,
        |l| format!("eid IN ({l})"),
        rows,
    )
    .await
}

/// The backend's JSON aggregate and array constructor.
pub(crate) fn json_fns(conn: &AnyConnection) -> (&'static str, &'static str) {
    if is_postgres(conn) {
        ("json_agg", "json_build_array")
    } else {
        ("json_group_array", "json_array")
    }
}

/// One JSON array from a query's rows, decoded: a single value through
/// the driver, whose per-row cost dominates reads of hundreds of rows.
async fn aggregated<T: serde::de::DeserializeOwned>(
    conn: &mut AnyConnection,
    query: sqlx::query::QueryScalar<'_, sqlx::Any, Option<String>, sqlx::any::AnyArguments>,
) -> Result<Vec<T>, StoreError> {
    let text: Option<String> = query.fetch_one(&mut *conn).await?;
    match text {
        Some(t) => serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("{e}"))),
        None => Ok(Vec::new()),
    }
}

/// Entity ids from `sql`, whose one column is named `e`.
async fn ids(conn: &mut AnyConnection, sql: String) -> Result<Vec<i64>, StoreError> {
    ids_in(conn, sql, &IdSet::literal(&[])).await
}

/// Like [`ids`], for `sql` using `set`.
async fn ids_in(
    conn: &mut AnyConnection,
    sql: String,
    set: &IdSet,
) -> Result<Vec<i64>, StoreError> {
    let (agg, _) = json_fns(conn);
    let wrapped = format!("SELECT CAST({agg}(x.e) AS TEXT) FROM ({sql}) x");
    aggregated(conn, set.query_scalar(wrapped)).await
}

/// A named entity: id, name, kind.
type Seed = (i64, String, String);

/// The named entities and those named as context, and the ids of whole kinds.
async fn seeds(
    conn: &mut AnyConnection,
    at: Option<i64>,
    scope: &Scope,
) -> Result<(Vec<Seed>, Vec<i64>), StoreError> {
    let names: Vec<&String> = scope.names.iter().chain(&scope.context).collect();
    let mut named = Vec::new();
    let (agg, arr) = json_fns(conn);
    let select = format!("SELECT CAST({agg}({arr}(eid, name, kind)) AS TEXT) FROM entities t");
    for chunk in names.chunks(IN_CHUNK) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "{select} WHERE {} AND name IN ({})",
            vis("t", at),
            marks.join(",")
        );
        let mut q = sqlx::query_scalar(AssertSqlSafe(sql));
        for n in chunk {
            q = q.bind(n.to_string());
        }
        named.extend(aggregated::<Seed>(conn, q).await?);
    }
    let by_id: Vec<i64> = scope.ids.iter().copied().collect();
    for chunk in by_id.chunks(IN_CHUNK) {
        let set = IdSet::new(conn, chunk);
        let sql = format!("{select} WHERE {} AND eid IN ({})", vis("t", at), set.sql);
        named.extend(aggregated::<Seed>(conn, set.query_scalar(sql)).await?);
    }
    let mut kinds = scope.kinds.clone();
    kinds.insert(Kind::Driver);
    let whole = ids(conn, kinds_sql(at, &kinds)).await?;
    Ok((named, whole))
}

fn kinds_sql(at: Option<i64>, kinds: &BTreeSet<Kind>) -> String {
    let list: Vec<String> = kinds.iter().map(|k| format!("'{}'", k.as_str())).collect();
    format!(
        "SELECT eid AS e FROM entities t WHERE {} AND kind IN ({})",
        vis("t", at),
        list.join(",")
    )
}

/// Everything reachable from `from` along containment, upward (containers)
/// or downward (contents).
pub(crate) async fn closure(
    conn: &mut AnyConnection,
    at: Option<i64>,
    from: &[i64],
    up: bool,
) -> Result<Vec<i64>, StoreError> {
    let (next, prev) = if up {
        ("parent", "child")
    } else {
        ("child", "parent")
    };
    let mut out = Vec::new();
    for chunk in from.chunks(IN_CHUNK) {
        let v = vis("t", at);
        // Downward, a generic plan must assume an average container (a
        // pool holds tens of thousands), and merge-joins the whole
        // containment index at every step; the ids' own plan walks the few
        // rows each level has.
        let set = if up {
            IdSet::new(conn, chunk)
        } else {
            IdSet::literal(chunk)
        };
        let sql = format!(
            "WITH RECURSIVE walk(e) AS (SELECT {next} FROM containment t WHERE {v} AND {prev} IN ({}) \
             UNION SELECT t.{next} FROM containment t JOIN walk ON t.{prev} = walk.e WHERE {v}) \
             SELECT e FROM walk",
            set.sql
        );
        out.extend(ids_in(conn, sql, &set).await?);
    }
    Ok(out)
}

/// Adds everything inside `outer` to `named`.
async fn add_descendants(
    conn: &mut AnyConnection,
    at: Option<i64>,
    named: &mut Vec<i64>,
    outer: &[i64],
) -> Result<(), StoreError> {
    if !outer.is_empty() {
        named.extend(closure(conn, at, outer, false).await?);
        named.sort_unstable();
        named.dedup();
    }
    Ok(())
}

/// Those of `ids` that are of one of `kinds`.
async fn of_kinds(
    conn: &mut AnyConnection,
    at: Option<i64>,
    of: &[i64],
    kinds: &[Kind],
) -> Result<Vec<i64>, StoreError> {
    let list: Vec<String> = kinds.iter().map(|k| format!("'{}'", k.as_str())).collect();
    let mut out = Vec::new();
    for chunk in of.chunks(IN_CHUNK) {
        let set = IdSet::new(conn, chunk);
        let sql = format!(
            "SELECT eid AS e FROM entities t WHERE {} AND eid IN ({}) AND kind IN ({})",
            vis("t", at),
            set.sql,
            list.join(",")
        );
        out.extend(ids_in(conn, sql, &set).await?);
    }
    Ok(out)
}

/// The first ids a write may use: one past the largest in any table (ids
/// of retired rows are never reused).
pub(crate) async fn next_ids(conn: &mut AnyConnection) -> Result<(i64, i64), StoreError> {
    let parts: Vec<String> = TABLES
        .iter()
        .map(|t| format!("(SELECT MAX(id) FROM {})", table_name(*t)))
        .collect();
    let sql = format!(
        "SELECT {}, (SELECT MAX(eid) FROM entities)",
        parts.join(", ")
    );
    let r = sqlx::query(AssertSqlSafe(sql))
        .fetch_one(&mut *conn)
        .await?;
    let mut max_fact = 0;
    for i in 0..TABLES.len() {
        max_fact = max_fact.max(r.try_get::<Option<i64>, _>(i)?.unwrap_or(0));
    }
    let max_eid = r.try_get::<Option<i64>, _>(TABLES.len())?.unwrap_or(0);
    Ok((max_fact + 1, max_eid + 1))
}

/// Loads `scope` as of `at` (None = the live rows; callers read those
/// inside one transaction so every query sees the same revision).
pub(crate) async fn load(
    conn: &mut AnyConnection,
    at: Option<i64>,
    scope: &Scope,
) -> Result<Inventory, StoreError> {
    let tiers = tiers(conn, at, scope).await?;
    let mut rows = Rows::default();
    read_tiers(conn, at, &tiers, &mut rows).await?;
    read_edges(conn, at, &tiers, &mut rows).await?;
    read_addresses(conn, at, scope, &tiers, &mut rows).await?;
    let (next_fact, next_entity) = next_ids(conn).await?;
    let mut inv = Inventory::from_facts(rows.facts, next_fact, next_entity);
    for m in &scope.next_address {
        probe_addresses(conn, at, &mut inv, m).await?;
    }
    for m in &scope.next_name {
        probe_names(conn, at, &mut inv, m).await?;
    }
    Ok(inv)
}

/// Who is loaded how (see the module's table).
struct Tiers {
    named: Vec<i64>,
    context: Vec<i64>,
    /// Containers things enter or leave: their occupied rack units are read.
    containers: Vec<i64>,
    /// Named IPManagers (their allocations are read) and drivers (their users are).
    managers: Vec<i64>,
    drivers: Vec<String>,
}

impl Tiers {
    fn loaded(&self) -> BTreeSet<i64> {
        self.named.iter().chain(&self.context).copied().collect()
    }
}

async fn tiers(
    conn: &mut AnyConnection,
    at: Option<i64>,
    scope: &Scope,
) -> Result<Tiers, StoreError> {
    let (seeds, whole) = seeds(conn, at, scope).await?;
    let (seeds, as_context): (Vec<Seed>, Vec<Seed>) = seeds
        .into_iter()
        .partition(|s| scope.names.contains(&s.1) || scope.ids.contains(&s.0));
    let mut named: Vec<i64> = seeds.iter().map(|s| s.0).collect();
    let outer: Vec<i64> = seeds
        .iter()
        .filter(|s| scope.descendants_of.contains(&s.1))
        .map(|s| s.0)
        .collect();
    add_descendants(conn, at, &mut named, &outer).await?;
    // Containers up from the named entities and from those named as context
    // (inserting into C must know whether C sits inside the thing).
    let as_context_ids: Vec<i64> = as_context.iter().map(|s| s.0).collect();
    let mut up_from: Vec<i64> = named
        .iter()
        .copied()
        .chain(as_context_ids.clone())
        .collect();
    let mut context: Vec<i64> = closure(conn, at, &up_from, true).await?;
    let touched = seeds
        .iter()
        .chain(&as_context)
        .any(|s| VM_KINDS.iter().any(|k| k.as_str() == s.2))
        || !of_kinds(conn, at, &context, &[Kind::VmManager])
            .await?
            .is_empty();
    if scope.vms == VmWorld::Always || (scope.vms == VmWorld::IfTouched && touched) {
        let vms = ids(conn, kinds_sql(at, &VM_KINDS.into_iter().collect())).await?;
        let managers = of_kinds(conn, at, &vms, &[Kind::VmManager]).await?;
        // Placement weighs every host of a manager: hosts are named.
        add_descendants(conn, at, &mut named, &managers).await?;
        up_from = named.clone();
        context = closure(conn, at, &up_from, true).await?;
        context.extend(vms);
    }
    context.extend(whole);
    context.extend(as_context_ids);
    let named_set: BTreeSet<i64> = named.iter().copied().collect();
    context.retain(|e| !named_set.contains(e));
    context.sort_unstable();
    context.dedup();
    let of_kind = |k: Kind| seeds.iter().filter(move |s| s.2 == k.as_str());
    Ok(Tiers {
        containers: as_context
            .iter()
            .filter(|s| scope.containers.contains(&s.1))
            .map(|s| s.0)
            .collect(),
        managers: of_kind(Kind::IpManager).map(|s| s.0).collect(),
        drivers: of_kind(Kind::Driver).map(|s| s.1.clone()).collect(),
        named,
        context,
    })
}

/// The named and context tiers' own rows.
async fn read_tiers(
    conn: &mut AnyConnection,
    at: Option<i64>,
    t: &Tiers,
    rows: &mut Rows,
) -> Result<(), StoreError> {
    let full: Vec<i64> = t.loaded().into_iter().collect();
    let reads: [(Table, &[i64], Cond); 9] = [
        (Table::Entities, &full, |l| format!("eid IN ({l})")),
        (Table::Attrs, &full, |l| format!("eid IN ({l})")),
        (Table::Contains, &full, |l| format!("child IN ({l})")),
        (Table::Contains, &t.named, |l| format!("parent IN ({l})")),
        (Table::Links, &t.named, |l| {
            format!("(a IN ({l}) OR b IN ({l}))")
        }),
        (Table::Addresses, &t.named, |l| format!("holder IN ({l})")),
        // A named IPManager shows (and its rules weigh) what it handed out.
        (Table::Addresses, &t.managers, |l| {
            format!("manager IN ({l})")
        }),
        (Table::Attrs, &t.named, |l| format!("ref_eid IN ({l})")),
        (Table::Contains, &t.containers, |l| {
            format!("parent IN ({l}) AND ru_start IS NOT NULL")
        }),
    ];
    for (table, ids, cond) in reads {
        fetch(conn, at, table, ids, cond, rows).await?;
    }
    // A driver is deleted or renamed only when nothing uses it.
    if !t.drivers.is_empty() {
        let users = rows_where(conn, at, Table::Entities, "driver", &t.drivers).await?;
        rows.facts.extend(users);
    }
    Ok(())
}

/// Whatever the rows read so far point at: its entity row and settings.
async fn read_edges(
    conn: &mut AnyConnection,
    at: Option<i64>,
    t: &Tiers,
    rows: &mut Rows,
) -> Result<(), StoreError> {
    let loaded = t.loaded();
    let edge: Vec<i64> = rows
        .mentioned()
        .into_iter()
        .filter(|e| !loaded.contains(e))
        .collect();
    fetch_entities(conn, at, &edge, rows).await?;
    fetch(
        conn,
        at,
        Table::Attrs,
        &edge,
        |l| format!("eid IN ({l}) AND key = '{SPEC_KEY}'"),
        rows,
    )
    .await
}

/// Addresses the scope names, with their holders' entity rows.
async fn read_addresses(
    conn: &mut AnyConnection,
    at: Option<i64>,
    scope: &Scope,
    t: &Tiers,
    rows: &mut Rows,
) -> Result<(), StoreError> {
    if scope.addresses.is_empty() {
        return Ok(());
    }
    let wanted: Vec<String> = scope.addresses.iter().cloned().collect();
    let held = rows_where(conn, at, Table::Addresses, "address", &wanted).await?;
    let loaded = t.loaded();
    let holders: Vec<i64> = held
        .iter()
        .flat_map(|(_, f)| f.entities())
        .map(|e| e.0)
        .filter(|e| !loaded.contains(e))
        .collect();
    rows.facts.extend(held);
    fetch_entities(conn, at, &holders, rows).await
}

/// Reads which of the addresses `ip allocate` would try next are taken, a
/// window at a time, until one is free or the range is walked.
async fn probe_addresses(
    conn: &mut AnyConnection,
    at: Option<i64>,
    inv: &mut Inventory,
    manager: &str,
) -> Result<(), StoreError> {
    let Ok(mgr) = inv.id_of(manager) else {
        return Ok(());
    };
    let Ok(range) = inv.ip_range(mgr) else {
        return Ok(()); // the rule itself reports what is wrong
    };
    let mut walk = inv.allocation_walk(mgr, &range).peekable();
    while walk.peek().is_some() {
        let window: Vec<String> = walk
            .by_ref()
            .take(PROBE_WINDOW)
            .filter(|ip| inv.address(*ip).is_none())
            .map(|ip| ip.to_string())
            .collect();
        if window.is_empty() {
            continue;
        }
        let taken = rows_where(conn, at, Table::Addresses, "address", &window).await?;
        let any_free = taken.len() < window.len();
        inv.absorb(taken);
        if any_free {
            break;
        }
    }
    Ok(())
}

/// Reads which of the names a NameManager would hand out next are taken.
async fn probe_names(
    conn: &mut AnyConnection,
    at: Option<i64>,
    inv: &mut Inventory,
    manager: &str,
) -> Result<(), StoreError> {
    let Ok(mgr) = inv.id_of(manager) else {
        return Ok(());
    };
    let mut skip = 0;
    loop {
        let tried = inv.name_candidates(mgr, skip, PROBE_WINDOW);
        if tried.is_empty() {
            return Ok(());
        }
        skip += tried.len();
        let window: Vec<String> = tried.into_iter().filter(|n| !inv.exists(n)).collect();
        if window.is_empty() {
            continue;
        }
        let taken = rows_where(conn, at, Table::Entities, "name", &window).await?;
        let any_free = taken.len() < window.len();
        inv.absorb(taken);
        if any_free {
            return Ok(());
        }
    }
}

/// Rows of `t` whose text column `col` is one of `values`.
async fn rows_where(
    conn: &mut AnyConnection,
    at: Option<i64>,
    t: Table,
    col: &str,
    values: &[String],
) -> Result<Vec<(FactId, Fact)>, StoreError> {
    let marks: Vec<String> = (1..=values.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT id, {} FROM {} t WHERE {} AND {col} IN ({})",
        table_cols(t),
        table_name(t),
        vis("t", at),
        marks.join(",")
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for v in values {
        q = q.bind(v.clone());
    }
    let mut out = Vec::new();
    for r in q.fetch_all(&mut *conn).await? {
        out.push((FactId(r.try_get(0)?), fact_from_row(t, &r, 1)?));
    }
    Ok(out)
}
