//! clusto's store: a versioned fact store on SQLite or PostgreSQL.
//!
//! Every write is one transaction that takes the store's write lock
//! (`BEGIN IMMEDIATE` on SQLite, an advisory lock on PostgreSQL), loads the
//! inventory, applies the caller's change through the core's rules, and
//! persists the resulting change set as one revision. Serialising writers
//! is what makes allocation race-free across processes.

mod changes;
mod direct;
mod fsck;
mod guard;
mod history;
pub use changes::Changes;
mod lease;
mod probe;
pub use lease::{Leadership, Leading, Lease};
mod query;
pub mod reads;
mod schema;
mod scope;
pub use scope::Scope;
pub mod testing;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use clusto_core::{
    Address, Attr, ChangeSet, Containment, CoreError, Entity, EntityId, Fact, FactId, Inventory,
    Kind, Link, PortId, RuRange, Table, Value, ValueType,
};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};

pub use history::{Change, HistoryEntry, HistoryItem, HistoryQuery, revision_json};
pub use query::compile as compile_query;

/// Rows a write must change to count as bulk (see `Store::after_bulk_write`).
const BULK_ROWS: usize = 10_000;

/// PostgreSQL advisory lock key for clusto writers ("clusto" in ASCII).
const PG_WRITE_LOCK: i64 = 0x636c7573746f;

/// Scope reads and writes on PostgreSQL plan each statement once per
/// connection: their texts do not change with the ids they name (bound as
/// arrays), and their custom plans were re-made on every execution, since
/// the planner sees that a custom plan for one id is cheaper than the
/// generic one for any. With 8 writers that planning was most of the
/// server's CPU. Reads that answer a user's query keep custom plans: their
/// values' statistics matter there. A generic plan's estimates are
/// averages; JIT, which they could trigger, costs hundreds of milliseconds
/// a statement, so it is off for these transactions.
const GENERIC_PLANS: &str = "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL jit = off";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("store: {0}")]
    Db(sqlx::Error),
    /// A read on this process's own SQLite connection (see `direct`) failed.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database could not grow (SQLite's SQLITE_FULL, PostgreSQL's
    /// disk_full, ENOSPC): the transaction was rolled back.
    #[error("the disk holding the store is full; nothing was changed (free space and run again)")]
    DiskFull,
    #[error("unsupported store URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("revision {0} does not exist (latest is {1})")]
    NoSuchRevision(i64, i64),
    #[error("store holds an unreadable row: {0}")]
    Corrupt(String),
    #[error(
        "the inventory changed since the plan was made (planned against revision {planned}, now {head}); plan again"
    )]
    Stale { planned: i64, head: i64 },
    /// A rule the database holds refused the write (another writer's row
    /// the write's view did not hold).
    #[error("{object}: {rule} (refused by the store)")]
    Refused { object: String, rule: String },
    #[error("store schema version {0} is newer than this clusto understands ({1})")]
    SchemaTooNew(i64, i64),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        if disk_full(&e) {
            StoreError::DiskFull
        } else {
            StoreError::Db(e)
        }
    }
}

fn disk_full(e: &sqlx::Error) -> bool {
    const SQLITE_FULL: &str = "13";
    const PG_DISK_FULL: &str = "53100";
    match e {
        sqlx::Error::Database(d) => {
            d.code()
                .is_some_and(|c| c == SQLITE_FULL || c == PG_DISK_FULL)
                || d.message().contains("database or disk is full")
        }
        sqlx::Error::Io(io) => io.raw_os_error() == Some(libc::ENOSPC),
        _ => false,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Who made a revision and why.
#[derive(Clone, Debug)]
pub struct RevisionMeta {
    pub user: String,
    pub message: String,
    /// `cli`, an apply set, `dhcpd`, `controller`, …
    pub manager: String,
    /// When it happened, in Unix milliseconds, for revisions replayed from
    /// another tool's history (`clusto import --with-history`); now if None.
    pub at_ms: Option<i64>,
}

/// The writer named by `--user` for this process, over every other source.
static PROCESS_USER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl RevisionMeta {
    pub fn new(message: impl Into<String>) -> RevisionMeta {
        RevisionMeta {
            user: writer(),
            message: message.into(),
            manager: "cli".into(),
            at_ms: None,
        }
    }

    /// Names the writer of every revision this process makes (`--user`).
    pub fn set_process_user(user: String) {
        let _ = PROCESS_USER.set(user);
    }
}

/// Who writes: `--user`, then `CLUSTO_USER`, `USER`, `LOGNAME`, then the
/// OS account as git does, so cron jobs, CI and containers (where `USER` is
/// often unset) still record someone.
fn writer() -> String {
    current_user()
}

/// Who this process acts as: `--user`, then `CLUSTO_USER`, `USER`,
/// `LOGNAME`, then the OS account (revisions record it; `clusto console`
/// logs in as it).
pub fn current_user() -> String {
    if let Some(u) = PROCESS_USER.get() {
        return u.clone();
    }
    ["CLUSTO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .or_else(os_account)
        .unwrap_or_else(|| format!("uid:{}", unsafe { libc::geteuid() }))
}

/// The passwd name of the effective user id.
fn os_account() -> Option<String> {
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to live memory of the stated size; on success
    // `out` points at `pw`, whose strings live in `buf`.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    if rc != 0 || out.is_null() || pw.pw_name.is_null() {
        return None;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty())
}

#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    pub rev: i64,
    pub at_ms: i64,
    pub user: String,
    pub message: String,
    pub manager: String,
}

/// Hands memory freed in bulk back to the system. glibc keeps freed
/// memory in the arena of the thread that allocated it, where other
/// threads' allocations cannot reuse it: call this after dropping
/// something large built on other threads or only as scaffolding (parsed
/// manifests, a whole-inventory read, the rows an index was built from).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What a write produced.
#[derive(Debug)]
pub struct Written<T> {
    pub value: T,
    /// None when nothing changed (no revision is made).
    pub revision: Option<i64>,
    pub changes: ChangeSet,
    /// SQL statements the write issued: batched, so this stays small
    /// however many rows change (in a group commit, the whole batch's).
    pub statements: usize,
}

#[cfg(test)]
mod tests {
    use super::loopback_without_tls as f;

    #[test]
    fn loopback_postgres_urls_skip_tls_unless_asked() {
        assert_eq!(
            f("postgres://postgres@127.0.0.1:5432/db"),
            "postgres://postgres@127.0.0.1:5432/db?sslmode=disable"
        );
        assert_eq!(
            f("postgres://u@localhost/db?application_name=x"),
            "postgres://u@localhost/db?application_name=x&sslmode=disable"
        );
        assert_eq!(
            f("postgresql://u:p@[::1]:5433/db"),
            "postgresql://u:p@[::1]:5433/db?sslmode=disable"
        );
        assert_eq!(
            f("postgres://u@db.example:5432/x"),
            "postgres://u@db.example:5432/x"
        );
        assert_eq!(
            f("postgres://u@127.0.0.1/x?sslmode=require"),
            "postgres://u@127.0.0.1/x?sslmode=require"
        );
    }
}

/// A scoped write reads its view before taking the lock; these check what
/// happens under the lock when another writer committed in between.
#[cfg(test)]
mod optimistic_writes {
    use clusto_core::{CoreError, Inventory, Kind, NumberSpec, Value};

    use crate::testing::{BACKENDS, Failure, fresh, write};
    use crate::{RevisionMeta, Scope, Store, current_view};

    async fn rack_with_two_servers(s: &Store) {
        write(s, "build", |inv| {
            let r = inv.create(Kind::Rack, "r1", None)?;
            for n in ["s1", "s2", "x"] {
                inv.create(Kind::Server, n, None)?;
            }
            let s2 = inv.id_of("s2")?;
            inv.insert(r, s2, Some("10".parse()?))?;
            Ok(())
        })
        .await;
    }

    /// Inserts `x` at unit 1 of `r1` in `inv`.
    fn place_x(inv: &mut Inventory) -> Result<(), CoreError> {
        let (r, x) = (inv.id_of("r1")?, inv.id_of("x")?);
        inv.insert(r, x, Some("1".parse()?))
    }

    /// The view a racing writer read before `s1` took unit 1 is read again
    /// under the lock, so the unit is seen taken and nothing is written.
    #[tokio::test]
    async fn a_view_another_writer_touched_is_read_again() {
        for b in BACKENDS {
            let s = fresh(b).await.unwrap();
            rack_with_two_servers(&s).await;
            let scope = Scope::write(["x"]).with_container("r1");
            let (seen, early) = s.load_scope(&scope, None).await.unwrap();
            write(&s, "s1 takes unit 1", |inv| {
                let (r, s1) = (inv.id_of("r1")?, inv.id_of("s1")?);
                inv.insert(r, s1, Some("1".parse()?))
            })
            .await;
            let mut tx = s.begin_write().await.unwrap();
            let (_, mut now) = current_view(&mut tx, &scope, seen, early).await.unwrap();
            assert!(
                matches!(place_x(&mut now), Err(CoreError::Rule { .. })),
                "{b}: unit 1 is seen taken"
            );
        }
    }

    /// Rows about nothing the view holds leave it as read, but new ids
    /// start past the rows committed meanwhile, so the write lands.
    #[tokio::test]
    async fn a_view_others_did_not_touch_is_kept_with_fresh_ids() {
        for b in BACKENDS {
            let s = fresh(b).await.unwrap();
            rack_with_two_servers(&s).await;
            let scope = Scope::write(["x"]).with_container("r1");
            let (seen, early) = s.load_scope(&scope, None).await.unwrap();
            let before = early.next_fact_id();
            write(&s, "unrelated", |inv| {
                let s1 = inv.id_of("s1")?;
                inv.attr_set(
                    s1,
                    "owner",
                    None,
                    NumberSpec::None,
                    Value::String("a".into()),
                )?;
                Ok(())
            })
            .await;
            let mut tx = s.begin_write().await.unwrap();
            let (head, now) = current_view(&mut tx, &scope, seen, early).await.unwrap();
            assert_eq!(head, seen + 1, "{b}: the head read with the changes");
            assert!(
                now.next_fact_id() > before,
                "{b}: ids moved past the new row"
            );
            let w = s
                .finish_write(
                    tx,
                    head,
                    now,
                    &RevisionMeta::new("place x"),
                    |inv| place_x(inv).map_err(Failure::from),
                    false,
                )
                .await
                .unwrap();
            assert_eq!(w.revision, Some(head + 1), "{b}");
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The inventory as of the revision this process last wrote or read.
    /// Every change to the store makes a revision, so when the head still
    /// equals that revision the copy is exact and a long-running process
    /// (apply, dhcpd, controller) skips reloading everything per write.
    cache: Arc<Mutex<Option<(i64, Inventory)>>>,
    /// SQLite: answers `head` without a query while nothing has committed.
    probe: Option<Arc<probe::HeadProbe>>,
    /// SQLite: a connection kept for one-statement reads at the head, whose
    /// pool checkout and return cost about as much as their SQL (a file
    /// connection does not go stale, so keeping one out is safe there).
    reader: Arc<Mutex<Option<sqlx::pool::PoolConnection<sqlx::Any>>>>,
    /// SQLite: one-statement reads at the head on the caller's thread.
    direct: Option<Arc<direct::Direct>>,
}

/// 128 random bits as hex, from the kernel.
fn random_hex() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        // No /dev/urandom: time and pid still make collisions unlikely.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (t ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A PostgreSQL URL for a server on this machine, without TLS unless the
/// URL asks for it: the bytes never leave the host, and the handshake costs
/// each short-lived `clusto` process ~0.1 s per connection.
fn loopback_without_tls(url: &str) -> String {
    if url.contains("sslmode=") {
        return url.to_string();
    }
    let rest = url.split_once("://").map(|x| x.1).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map(|x| x.1).unwrap_or(authority);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.split_once(']'))
        .map(|(h, _)| h)
        .unwrap_or_else(|| host.split(':').next().unwrap_or(host));
    if ["127.0.0.1", "::1", "localhost", ""].contains(&host) {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}sslmode=disable")
    } else {
        url.to_string()
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Visibility of a versioned row as of `at` (None = current).
pub(crate) fn vis(alias: &str, at: Option<i64>) -> String {
    match at {
        None => format!("{alias}.rev_to IS NULL"),
        Some(r) => format!(
            "({alias}.rev_from <= {r} AND ({alias}.rev_to IS NULL OR {alias}.rev_to > {r}))"
        ),
    }
}

enum Param {
    I(Option<i64>),
    S(Option<String>),
}

impl Store {
    /// Opens (creating if needed) the store at `url` and migrates it.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let mut probe = None;
        let mut direct_file = None;
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            if path.is_empty() {
                return Err(StoreError::UnsupportedUrl(url.into()));
            }
            let file = path.split('?').next().unwrap_or(path);
            if file != ":memory:" {
                probe = Some(Arc::new(probe::HeadProbe::new(file)));
                direct_file = Some(file.to_string());
            }
            let sep = if path.contains('?') { '&' } else { '?' };
            let u = if path.contains("mode=") {
                format!("sqlite://{path}")
            } else {
                format!("sqlite://{path}{sep}mode=rwc")
            };
            (Backend::Sqlite, u)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, loopback_without_tls(url))
        } else {
            return Err(StoreError::UnsupportedUrl(url.into()));
        };
        let mut opts =
            AnyPoolOptions::new().max_connections(if backend == Backend::Sqlite { 4 } else { 8 });
        if backend == Backend::Sqlite {
            // A connection to a file does not go stale; pinging it before
            // every use would double the round trips of a point read.
            opts = opts.test_before_acquire(false);
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; the long busy
                    // timeout makes concurrent writers queue instead of fail.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 60000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(&url).await?;
        let store = Store {
            pool,
            backend,
            cache: Arc::default(),
            reader: Arc::default(),
            probe,
            direct: None,
        };
        store.migrate().await?;
        // Opened once the file exists and is migrated; without it (an
        // unreadable file) reads take the pool as before.
        let direct = direct_file.and_then(|f| direct::Direct::open(&f));
        Ok(Store {
            direct: direct.map(Arc::new),
            ..store
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `read` on a connection for one statement at the head: the kept
    /// one when it is free (SQLite), else one from the pool. A connection
    /// that saw an error goes back to the pool instead of being kept.
    pub(crate) async fn one_statement<T, E: From<StoreError>>(
        &self,
        read: impl AsyncFnOnce(&mut sqlx::AnyConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        let kept = self.reader.lock().expect("reader lock").take();
        let mut conn = match kept {
            Some(c) => c,
            None => self.pool.acquire().await.map_err(StoreError::from)?,
        };
        let out = read(&mut conn).await;
        if out.is_ok() && self.backend == Backend::Sqlite {
            let mut slot = self.reader.lock().expect("reader lock");
            if slot.is_none() {
                *slot = Some(conn);
            }
        }
        out
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            // One round trip: the lock, and generic plans (see
            // `GENERIC_PLANS`) for what runs under it.
            Backend::Postgres => {
                self.pool
                    .begin_with(AssertSqlSafe(format!(
                        "BEGIN; {GENERIC_PLANS}; SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})"
                    )))
                    .await?
            }
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        tx.execute("CREATE TABLE IF NOT EXISTS clusto_schema (version BIGINT NOT NULL)")
            .await?;
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM clusto_schema")
            .fetch_one(&mut *tx)
            .await?;
        let v = v.unwrap_or(0);
        let latest = schema::MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        if v > latest {
            return Err(StoreError::SchemaTooNew(v, latest));
        }
        for (version, stmts) in schema::MIGRATIONS {
            if *version <= v {
                continue;
            }
            for s in *stmts {
                tx.execute(*s).await?;
            }
            sqlx::query("INSERT INTO clusto_schema (version) VALUES ($1)")
                .bind(*version)
                .execute(&mut *tx)
                .await?;
        }
        if self.backend == Backend::Postgres {
            // Listings page through names in byte order (see Snapshot::names).
            tx.execute(
                "CREATE INDEX IF NOT EXISTS entities_name_bytes ON entities (name COLLATE \"C\") WHERE rev_to IS NULL",
            )
            .await?;
            tx.execute(
                "CREATE INDEX IF NOT EXISTS entities_kind_name_bytes ON entities (kind, name COLLATE \"C\") WHERE rev_to IS NULL",
            )
            .await?;
        }
        sqlx::query(
            "INSERT INTO clusto_meta (key, value) SELECT 'uid', $1 \
             WHERE NOT EXISTS (SELECT 1 FROM clusto_meta WHERE key = 'uid')",
        )
        .bind(random_hex())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// This store's uid: random, made once when the store was created.
    /// Backend resources are tagged with uids derived from it, so two
    /// inventories never claim each other's VMs.
    pub async fn uid(&self) -> Result<String, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM clusto_meta WHERE key = 'uid'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The newest revision number (0 for an empty store).
    pub async fn head(&self) -> Result<i64, StoreError> {
        // Read before the query, so a commit in between changes the header
        // and the answer is not reused past it.
        let header = self.probe.as_ref().and_then(|p| p.header());
        if let (Some(p), Some(h)) = (&self.probe, &header)
            && let Some(rev) = p.known(h)
        {
            return Ok(rev);
        }
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(rev) FROM revisions")
            .fetch_one(&self.pool)
            .await?;
        let rev = v.unwrap_or(0);
        if let (Some(p), Some(h)) = (&self.probe, header) {
            p.record(h, rev);
        }
        Ok(rev)
    }

    /// The whole inventory as of `at` (None = now).
    pub async fn load(&self, at: Option<i64>) -> Result<Inventory, StoreError> {
        if at.is_none() {
            return self.load_head().await.map(|(_, inv)| inv);
        }
        let mut snap = self.snapshot(at).await?;
        load_from(&mut snap.tx, at).await
    }

    /// The current inventory with only the attributes whose keys are named
    /// (plus port attributes and settings), and its revision; not cached.
    pub async fn load_slice(&self, attr_keys: &[&str]) -> Result<(i64, Inventory), StoreError> {
        let mut tx = self.begin_read().await?;
        let head = head_of(&mut tx).await?;
        let inv = load_rows(&mut tx, None, Some(attr_keys)).await?;
        tx.rollback().await?;
        Ok((head, inv))
    }

    /// The current inventory with the revision it is as of: one snapshot
    /// (a read transaction), so writers landing meanwhile neither tear it
    /// nor make it start over. A copy of what this process's last whole
    /// write kept, when nothing landed since; a fresh load is not kept (a
    /// copy of a large inventory costs a fifth of the load and doubles the
    /// memory, and most readers never write).
    pub async fn load_head(&self) -> Result<(i64, Inventory), StoreError> {
        let mut tx = self.begin_read().await?;
        let head = head_of(&mut tx).await?;
        if let Some((rev, inv)) = self.cache.lock().expect("cache lock").as_ref()
            && *rev == head
        {
            return Ok((head, inv.clone()));
        }
        let inv = load_from(&mut tx, None).await?;
        tx.rollback().await?;
        Ok((head, inv))
    }

    /// The current inventory inside a write transaction: the cached copy
    /// when nothing changed since, else a fresh load.
    async fn load_for_write(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<(i64, Inventory), StoreError> {
        let head = head_of(conn).await?;
        let cached = self.cache.lock().expect("cache lock").take();
        match cached {
            Some((rev, inv)) if rev == head => Ok((head, inv)),
            _ => Ok((head, load_from(conn, None).await?)),
        }
    }

    /// Runs `f` against the current inventory inside the write lock and
    /// records what it changed as one revision. Nothing is written when `f`
    /// fails or changes nothing.
    pub async fn write<T, E>(
        &self,
        meta: &RevisionMeta,
        f: impl FnOnce(&mut Inventory) -> Result<T, E>,
    ) -> Result<Written<T>, E>
    where
        E: From<StoreError>,
    {
        self.write_at(meta, None, f).await
    }

    /// Like [`Store::write`], but refuses (changing nothing) unless the
    /// newest revision is `expect_head`: how a reviewed plan is applied
    /// exactly as reviewed.
    pub async fn write_at<T, E>(
        &self,
        meta: &RevisionMeta,
        expect_head: Option<i64>,
        f: impl FnOnce(&mut Inventory) -> Result<T, E>,
    ) -> Result<Written<T>, E>
    where
        E: From<StoreError>,
    {
        let mut tx = self.begin_write().await.map_err(E::from)?;
        let (head, inv) = self.load_for_write(&mut tx).await.map_err(E::from)?;
        if let Some(want) = expect_head
            && want != head
        {
            *self.cache.lock().expect("cache lock") = Some((head, inv));
            return Err(E::from(StoreError::Stale {
                planned: want,
                head,
            }));
        }
        self.finish_write(tx, head, inv, meta, f, true).await
    }

    /// Like [`Store::write`], but `f` sees only what `scope` names and its
    /// neighbourhood (see [`Scope`]): a point write costs what it touches,
    /// not the size of the inventory. On PostgreSQL the scope is read
    /// before the write lock is taken, so concurrent writers queue only for
    /// the change itself; under the lock, revisions that landed meanwhile
    /// are checked, and if any of them touches the view it is read again.
    pub async fn write_scope<T, E>(
        &self,
        meta: &RevisionMeta,
        scope: &Scope,
        f: impl FnOnce(&mut Inventory) -> Result<T, E>,
    ) -> Result<Written<T>, E>
    where
        E: From<StoreError>,
    {
        let (tx, head, inv) = self.begin_scoped(scope).await.map_err(E::from)?;
        self.finish_write(tx, head, inv, meta, f, false).await
    }

    /// A write transaction holding the lock, the head, and `scope`'s view
    /// as of it. SQLite's lock is in-process and reads under it make no
    /// round trips: the view is read there (measured: reading ahead costs
    /// 20 % of 8 writers' throughput on 2 cores). On PostgreSQL it is read
    /// ahead of the lock and brought up to date under it, or writers would
    /// queue behind every writer's round trips.
    async fn begin_scoped(
        &self,
        scope: &Scope,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Any>, i64, Inventory), StoreError> {
        let early = match self.backend {
            Backend::Postgres => Some(self.load_scope(scope, None).await?),
            Backend::Sqlite => None,
        };
        let mut tx = self.begin_write().await?;
        let (head, inv) = match early {
            Some((seen, inv)) => current_view(&mut tx, scope, seen, inv).await?,
            None => {
                let head = head_of(&mut tx).await?;
                (head, scope::load(&mut tx, None, scope).await?)
            }
        };
        Ok((tx, head, inv))
    }

    /// Several point writes under one lock and one commit, each its own
    /// revision (or none when it changes nothing): the group commit of a
    /// daemon turning a burst of events into revisions. `scope` must cover
    /// every write; each sees the ones before it. A write whose closure
    /// fails, or that the database's rules refuse, leaves nothing, and the
    /// others stand. Errors of the transaction itself fail them all.
    ///
    /// All revisions are first persisted together (a handful of statements
    /// for the batch); only if the database refuses that are they redone
    /// one at a time, each under a savepoint, to find the one it refuses —
    /// which is why a write may run twice and is `Fn`.
    pub async fn write_scope_each<T, E, F>(
        &self,
        scope: &Scope,
        writes: impl IntoIterator<Item = (RevisionMeta, F)>,
    ) -> Result<Vec<Result<Written<T>, E>>, StoreError>
    where
        E: From<StoreError>,
        F: Fn(&mut Inventory) -> Result<T, E>,
    {
        let writes: Vec<(RevisionMeta, F)> = writes.into_iter().collect();
        let (mut tx, head, mut inv) = self.begin_scoped(scope).await?;
        let sqlite = self.backend == Backend::Sqlite;
        let mut out: Vec<Result<Written<T>, E>> = Vec::with_capacity(writes.len());
        let mut rev = head;
        for (_, f) in &writes {
            out.push(run_one(&mut inv, f).map(|(value, changes)| {
                let revision = (!changes.is_empty()).then(|| {
                    rev += 1;
                    rev
                });
                Written {
                    value,
                    revision,
                    changes,
                    statements: 0,
                }
            }));
        }
        let batch: Vec<(i64, &RevisionMeta, &ChangeSet)> = writes
            .iter()
            .zip(&out)
            .filter_map(|((meta, _), r)| {
                let w = r.as_ref().ok()?;
                Some((w.revision?, meta, &w.changes))
            })
            .collect();
        tx.execute("SAVEPOINT clusto_batch").await?;
        let together = async {
            let n = persist_many(&mut tx, sqlite, &batch).await?;
            let live = live_rows(&batch);
            guard::check(&mut tx, &live).await?;
            Ok::<usize, StoreError>(n)
        }
        .await;
        drop(batch);
        match together {
            Ok(n) => {
                tx.execute("RELEASE SAVEPOINT clusto_batch").await?;
                for w in out.iter_mut().flatten().filter(|w| w.revision.is_some()) {
                    w.statements = n;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, writes = writes.len(), "batch refused; writing one at a time");
                tx.execute("ROLLBACK TO SAVEPOINT clusto_batch").await?;
                for w in out.iter().rev().flatten() {
                    inv.revert(&w.changes);
                }
                out = one_at_a_time(&mut tx, sqlite, head, &mut inv, &writes).await?;
            }
        };
        tx.commit().await?;
        Ok(out)
    }

    /// Runs the caller's change on `inv` (as of `head`) and persists what it
    /// changed as one revision. `full` says whether `inv` is the whole
    /// inventory, which is then kept for the next write of this process.
    async fn finish_write<T, E>(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        head: i64,
        mut inv: Inventory,
        meta: &RevisionMeta,
        f: impl FnOnce(&mut Inventory) -> Result<T, E>,
        full: bool,
    ) -> Result<Written<T>, E>
    where
        E: From<StoreError>,
    {
        // On error the half-changed inventory is dropped with the transaction.
        let value = f(&mut inv)?;
        let changes = inv.take_changes();
        let keep = |rev: i64, inv: Inventory| {
            if full {
                *self.cache.lock().expect("cache lock") = Some((rev, inv));
            }
        };
        if changes.is_empty() {
            tx.rollback().await.map_err(|e| E::from(e.into()))?;
            keep(head, inv);
            return Ok(Written {
                value,
                revision: None,
                changes,
                statements: 0,
            });
        }
        let rev = head + 1;
        let statements = persist(
            &mut tx,
            self.backend == Backend::Sqlite,
            rev,
            meta,
            &changes,
        )
        .await
        .map_err(E::from)?;
        if !full {
            guard::check(&mut tx, &changes).await.map_err(E::from)?;
        }
        tx.commit().await.map_err(|e| E::from(e.into()))?;
        if changes.added.len() + changes.removed.len() >= BULK_ROWS {
            self.after_bulk_write().await.map_err(E::from)?;
        }
        keep(rev, inv);
        Ok(Written {
            value,
            revision: Some(rev),
            changes,
            statements,
        })
    }

    /// After a write of many rows (a first apply): PostgreSQL's planner
    /// gets fresh statistics (else it plans point reads as if the tables
    /// were empty), SQLite folds its write-ahead log back into the file (else
    /// every later read looks through it).
    async fn after_bulk_write(&self) -> Result<(), StoreError> {
        let sql = match self.backend {
            Backend::Postgres => "ANALYZE",
            Backend::Sqlite => "PRAGMA wal_checkpoint(TRUNCATE)",
        };
        sqlx::query(sql).execute(&self.pool).await?;
        Ok(())
    }

    /// What `scope` names and its neighbourhood, as of `at` (None = now),
    /// read in one transaction so that it is exactly one revision; with the
    /// revision it is as of.
    pub async fn load_scope(
        &self,
        scope: &Scope,
        at: Option<i64>,
    ) -> Result<(i64, Inventory), StoreError> {
        let mut snap = self.snapshot_planned(at, true).await?;
        let inv = snap.load(scope).await?;
        Ok((snap.rev(), inv))
    }

    /// A read that sees one revision however many queries it makes: a
    /// listing reads page after page of it.
    pub async fn snapshot(&self, at: Option<i64>) -> Result<Snapshot, StoreError> {
        self.snapshot_planned(at, false).await
    }

    async fn snapshot_planned(
        &self,
        at: Option<i64>,
        generic: bool,
    ) -> Result<Snapshot, StoreError> {
        let mut tx = self.begin_read_planned(generic).await?;
        let head = head_of(&mut tx).await?;
        if let Some(r) = at
            && (r < 0 || r > head)
        {
            return Err(StoreError::NoSuchRevision(r, head));
        }
        Ok(Snapshot {
            tx,
            at,
            rev: at.unwrap_or(head),
            backend: self.backend,
        })
    }

    /// A read-only transaction that sees one snapshot throughout: SQLite's
    /// deferred transaction pins the WAL snapshot at its first read;
    /// PostgreSQL needs REPEATABLE READ for that.
    async fn begin_read(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        self.begin_read_planned(false).await
    }

    /// [`Store::begin_read`], with `generic` plans for a scope's reads.
    async fn begin_read_planned(
        &self,
        generic: bool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin().await?,
            Backend::Postgres => {
                let begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
                let sql = if generic {
                    format!("{begin}; {GENERIC_PLANS}")
                } else {
                    begin.to_string()
                };
                self.pool.begin_with(AssertSqlSafe(sql)).await?
            }
        })
    }

    pub async fn revisions(
        &self,
        limit: Option<i64>,
        since: Option<i64>,
    ) -> Result<Vec<Revision>, StoreError> {
        // Both are integers, so formatting them into the text is safe.
        let sql = format!(
            "SELECT rev, at_ms, user_name, message, manager FROM revisions WHERE rev > {} ORDER BY rev DESC{}",
            since.unwrap_or(-1),
            limit
                .map(|l| format!(" LIMIT {}", l.max(0)))
                .unwrap_or_default()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(revision_from_row).collect()
    }
}

/// One revision of the store, read through one transaction.
pub struct Snapshot {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    at: Option<i64>,
    rev: i64,
    backend: Backend,
}

impl Snapshot {
    /// The revision this snapshot is.
    pub fn rev(&self) -> i64 {
        self.rev
    }

    /// What `scope` names and its neighbourhood.
    pub async fn load(&mut self, scope: &Scope) -> Result<Inventory, StoreError> {
        scope::load(&mut self.tx, self.at, scope).await
    }

    /// Up to `n` entity names (of `kind`, or of every kind) after `after`,
    /// in byte order: one page of a listing.
    pub async fn names(
        &mut self,
        kind: Option<Kind>,
        after: Option<&str>,
        n: i64,
    ) -> Result<Vec<String>, StoreError> {
        // Byte order on both backends, as the in-memory inventory sorts.
        let collate = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " COLLATE \"C\"",
        };
        let kind = kind
            .map(|k| format!(" AND kind = '{}'", k.as_str()))
            .unwrap_or_default();
        // One JSON array for the page: the driver's per-row cost is most of
        // what a page of names costs otherwise.
        let agg = match self.backend {
            Backend::Sqlite => "json_group_array",
            Backend::Postgres => "json_agg",
        };
        let sql = format!(
            "SELECT CAST({agg}(x.name) AS TEXT) FROM (SELECT name FROM entities t WHERE {}{kind} \
             AND name{collate} > $1 ORDER BY name{collate} LIMIT {n}) x",
            vis("t", self.at)
        );
        let text: Option<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(after.unwrap_or("").to_string())
            .fetch_one(&mut *self.tx)
            .await?;
        let mut names: Vec<String> = match text {
            Some(t) => serde_json::from_str(&t).map_err(|e| corrupt(format!("names: {e}")))?,
            None => Vec::new(),
        };
        // An aggregate keeps no promised order: byte order, as asked.
        names.sort_unstable();
        Ok(names)
    }
}

fn revision_from_row(r: &AnyRow) -> Result<Revision, StoreError> {
    Ok(Revision {
        rev: r.try_get(0)?,
        at_ms: r.try_get(1)?,
        user: r.try_get(2)?,
        message: r.try_get(3)?,
        manager: r.try_get(4)?,
    })
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn entity_from_row(r: &AnyRow, off: usize) -> Result<Entity, StoreError> {
    let kind: String = r.try_get(off + 2)?;
    Ok(Entity {
        id: EntityId(r.try_get(off)?),
        name: r.try_get(off + 1)?,
        kind: kind
            .parse::<Kind>()
            .map_err(|_| corrupt(format!("kind {kind}")))?,
        driver: r.try_get(off + 3)?,
    })
}

pub(crate) fn attr_from_row(r: &AnyRow, off: usize) -> Result<(EntityId, Attr), StoreError> {
    let vtype: String = r.try_get(off + 4)?;
    let ty: ValueType = vtype
        .parse()
        .map_err(|_| corrupt(format!("value type {vtype}")))?;
    let text: Option<String> = r.try_get(off + 5)?;
    let reference: Option<i64> = r.try_get(off + 6)?;
    let value = Value::from_stored(ty, text.as_deref(), reference).map_err(corrupt)?;
    Ok((
        EntityId(r.try_get(off)?),
        Attr {
            key: r.try_get(off + 1)?,
            subkey: r.try_get(off + 2)?,
            number: r.try_get(off + 3)?,
            value,
        },
    ))
}

pub(crate) fn containment_from_row(r: &AnyRow, off: usize) -> Result<Containment, StoreError> {
    let s: Option<i64> = r.try_get(off + 2)?;
    let e: Option<i64> = r.try_get(off + 3)?;
    Ok(Containment {
        parent: EntityId(r.try_get(off)?),
        child: EntityId(r.try_get(off + 1)?),
        ru: match (s, e) {
            (Some(s), Some(e)) => Some(RuRange {
                start: s as u32,
                end: e as u32,
            }),
            _ => None,
        },
    })
}

fn port(s: &str) -> Result<PortId, StoreError> {
    s.parse().map_err(corrupt)
}

pub(crate) fn link_from_row(r: &AnyRow, off: usize) -> Result<Link, StoreError> {
    let ap: String = r.try_get(off + 1)?;
    let bp: String = r.try_get(off + 3)?;
    Ok(Link {
        a: EntityId(r.try_get(off)?),
        a_port: port(&ap)?,
        b: EntityId(r.try_get(off + 2)?),
        b_port: port(&bp)?,
    })
}

pub(crate) fn address_from_row(r: &AnyRow, off: usize) -> Result<Address, StoreError> {
    let a: String = r.try_get(off)?;
    let p: Option<String> = r.try_get(off + 4)?;
    let m: Option<i64> = r.try_get(off + 2)?;
    Ok(Address {
        address: a.parse().map_err(|_| corrupt(format!("address {a}")))?,
        holder: EntityId(r.try_get(off + 1)?),
        manager: m.map(EntityId),
        os_port: r.try_get(off + 3)?,
        port: p.as_deref().map(port).transpose()?,
    })
}

pub(crate) const ENTITY_COLS: &str = "eid, name, kind, driver";
pub(crate) const ATTR_COLS: &str = "eid, key, subkey, number, vtype, value, ref_eid";
pub(crate) const CONTAINMENT_COLS: &str = "parent, child, ru_start, ru_end";
pub(crate) const LINK_COLS: &str = "a, a_port, b, b_port";
pub(crate) const ADDRESS_COLS: &str = "address, holder, manager, os_port, port";

pub(crate) fn table_name(t: Table) -> &'static str {
    match t {
        Table::Entities => "entities",
        Table::Attrs => "attrs",
        Table::Contains => "containment",
        Table::Links => "links",
        Table::Addresses => "addresses",
    }
}

pub(crate) fn table_cols(t: Table) -> &'static str {
    match t {
        Table::Entities => ENTITY_COLS,
        Table::Attrs => ATTR_COLS,
        Table::Contains => CONTAINMENT_COLS,
        Table::Links => LINK_COLS,
        Table::Addresses => ADDRESS_COLS,
    }
}

pub(crate) const TABLES: [Table; 5] = [
    Table::Entities,
    Table::Attrs,
    Table::Contains,
    Table::Links,
    Table::Addresses,
];

pub(crate) fn fact_from_row(t: Table, r: &AnyRow, off: usize) -> Result<Fact, StoreError> {
    Ok(match t {
        Table::Entities => Fact::Entity(entity_from_row(r, off)?),
        Table::Attrs => {
            let (e, a) = attr_from_row(r, off)?;
            Fact::Attr(e, a)
        }
        Table::Contains => Fact::Contains(containment_from_row(r, off)?),
        Table::Links => Fact::Link(link_from_row(r, off)?),
        Table::Addresses => Fact::Address(address_from_row(r, off)?),
    })
}

async fn head_of(conn: &mut sqlx::AnyConnection) -> Result<i64, StoreError> {
    let v: Option<i64> = sqlx::query_scalar("SELECT MAX(rev) FROM revisions")
        .fetch_one(&mut *conn)
        .await?;
    Ok(v.unwrap_or(0))
}

/// Rows per aggregated chunk when loading.
const LOAD_CHUNK: i64 = 50_000;

/// Loads every visible row. Rows come back aggregated into JSON arrays, a
/// chunk at a time: one value per chunk instead of one driver round trip
/// per row, which is most of the cost of loading a big inventory.
async fn load_from(
    conn: &mut sqlx::AnyConnection,
    at: Option<i64>,
) -> Result<Inventory, StoreError> {
    load_rows(conn, at, None).await
}

/// Loads every visible row, or with `attr_keys` only the attributes with
/// those keys (and `_port-*`, `_spec`): what a service that needs a slice
/// of the attributes (the DHCP index) loads to stay small.
async fn load_rows(
    conn: &mut sqlx::AnyConnection,
    at: Option<i64>,
    attr_keys: Option<&[&str]>,
) -> Result<Inventory, StoreError> {
    let backend = if conn.backend_name().eq_ignore_ascii_case("postgresql") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let mut facts: Vec<(FactId, Fact)> = Vec::new();
    let mut decoding = Decoding::default();
    let mut max_fact = 0i64;
    for t in TABLES {
        let cols = table_cols(t);
        let filter = match (t, attr_keys) {
            // Keys are identifiers the caller names, never user input.
            (Table::Attrs, Some(keys)) => {
                let list: Vec<String> = keys
                    .iter()
                    .map(|k| format!("'{}'", k.replace('\'', "")))
                    .collect();
                format!(
                    " AND (t.key IN ('_spec', {}) OR substr(t.key, 1, 6) = '_port-')",
                    list.join(", ")
                )
            }
            _ => String::new(),
        };
        let mut after = 0i64;
        loop {
            let (agg, arr) = match backend {
                Backend::Sqlite => ("json_group_array", "json_array"),
                Backend::Postgres => ("json_agg", "json_build_array"),
            };
            let sql = format!(
                "SELECT CAST({agg}({arr}(id, {cols})) AS TEXT), MAX(id), COUNT(*) FROM \
                 (SELECT id, {cols} FROM {} t WHERE {}{filter} AND id > $1 ORDER BY id LIMIT {LOAD_CHUNK}) x",
                table_name(t),
                vis("t", at)
            );
            let row = sqlx::query(AssertSqlSafe(sql))
                .bind(after)
                .fetch_one(&mut *conn)
                .await?;
            let n: i64 = row.try_get(2)?;
            if n == 0 {
                break;
            }
            let text: String = row.try_get(0)?;
            after = row.try_get(1)?;
            decoding.push(t, text, &mut facts).await?;
            if n < LOAD_CHUNK {
                break;
            }
        }
        let m: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT MAX(id) FROM {}",
            table_name(t)
        )))
        .fetch_one(&mut *conn)
        .await?;
        max_fact = max_fact.max(m.unwrap_or(0));
    }
    let max_eid: Option<i64> = sqlx::query_scalar("SELECT MAX(eid) FROM entities")
        .fetch_one(&mut *conn)
        .await?;
    decoding.settle(&mut facts).await?;
    Ok(Inventory::from_facts(
        facts,
        max_fact + 1,
        max_eid.unwrap_or(0) + 1,
    ))
}

type EntityRow = (i64, i64, String, String, String);
type AttrRow = (
    i64,
    i64,
    String,
    Option<String>,
    Option<i64>,
    String,
    Option<String>,
    Option<i64>,
);
type ContainmentRow = (i64, i64, i64, Option<i64>, Option<i64>);
type LinkRow = (i64, i64, String, i64, String);
type AddressRow = (
    i64,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// Chunks decoded on a blocking thread while the next one is queried: the
/// database (its own process, or sqlx's SQLite thread) and the decoding
/// then work at once. One chunk at a time, so memory stays one chunk.
#[derive(Default)]
struct Decoding {
    pending: Option<tokio::task::JoinHandle<Result<FactRows, StoreError>>>,
}

type FactRows = Vec<(FactId, Fact)>;

impl Decoding {
    /// Waits for the previous chunk (appending it, in order), then starts `text`.
    async fn push(
        &mut self,
        t: Table,
        text: String,
        facts: &mut FactRows,
    ) -> Result<(), StoreError> {
        self.settle(facts).await?;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            decode_chunk(t, &text, &mut out)?;
            Ok(out)
        }));
        Ok(())
    }

    /// Appends the chunk being decoded, if any.
    async fn settle(&mut self, facts: &mut FactRows) -> Result<(), StoreError> {
        if let Some(p) = self.pending.take() {
            let chunk = p
                .await
                .map_err(|e| corrupt(format!("decoding rows: {e}")))??;
            if facts.is_empty() {
                *facts = chunk;
            } else {
                facts.extend(chunk);
            }
        }
        Ok(())
    }
}

pub(crate) fn decode_chunk(
    t: Table,
    text: &str,
    out: &mut Vec<(FactId, Fact)>,
) -> Result<(), StoreError> {
    let bad = |e: serde_json::Error| corrupt(format!("{}: {e}", table_name(t)));
    match t {
        Table::Entities => {
            for (id, eid, name, kind, driver) in
                serde_json::from_str::<Vec<EntityRow>>(text).map_err(bad)?
            {
                let kind = kind
                    .parse::<Kind>()
                    .map_err(|_| corrupt(format!("kind {kind}")))?;
                out.push((
                    FactId(id),
                    Fact::Entity(Entity {
                        id: EntityId(eid),
                        name,
                        kind,
                        driver,
                    }),
                ));
            }
        }
        Table::Attrs => {
            for (id, eid, key, subkey, number, vtype, value, reference) in
                serde_json::from_str::<Vec<AttrRow>>(text).map_err(bad)?
            {
                let ty: ValueType = vtype
                    .parse()
                    .map_err(|_| corrupt(format!("value type {vtype}")))?;
                let value = match (ty, value) {
                    // The common case needs no re-parse: take the string as is.
                    (ValueType::String, Some(v)) => Value::String(v),
                    (ty, v) => Value::from_stored(ty, v.as_deref(), reference).map_err(corrupt)?,
                };
                out.push((
                    FactId(id),
                    Fact::Attr(
                        EntityId(eid),
                        Attr {
                            key,
                            subkey,
                            number,
                            value,
                        },
                    ),
                ));
            }
        }
        Table::Contains => {
            for (id, parent, child, s, e) in
                serde_json::from_str::<Vec<ContainmentRow>>(text).map_err(bad)?
            {
                out.push((
                    FactId(id),
                    Fact::Contains(Containment {
                        parent: EntityId(parent),
                        child: EntityId(child),
                        ru: match (s, e) {
                            (Some(s), Some(e)) => Some(RuRange {
                                start: s as u32,
                                end: e as u32,
                            }),
                            _ => None,
                        },
                    }),
                ));
            }
        }
        Table::Links => {
            for (id, a, ap, b, bp) in serde_json::from_str::<Vec<LinkRow>>(text).map_err(bad)? {
                out.push((
                    FactId(id),
                    Fact::Link(Link {
                        a: EntityId(a),
                        a_port: port(&ap)?,
                        b: EntityId(b),
                        b_port: port(&bp)?,
                    }),
                ));
            }
        }
        Table::Addresses => {
            for (id, address, holder, manager, os_port, p) in
                serde_json::from_str::<Vec<AddressRow>>(text).map_err(bad)?
            {
                out.push((
                    FactId(id),
                    Fact::Address(Address {
                        address: address
                            .parse()
                            .map_err(|_| corrupt(format!("address {address}")))?,
                        holder: EntityId(holder),
                        manager: manager.map(EntityId),
                        os_port,
                        port: p.as_deref().map(port).transpose()?,
                    }),
                ));
            }
        }
    }
    Ok(())
}

fn fact_params(f: &Fact) -> Vec<Param> {
    use Param::*;
    match f {
        Fact::Entity(e) => vec![
            I(Some(e.id.0)),
            S(Some(e.name.clone())),
            S(Some(e.kind.as_str().into())),
            S(Some(e.driver.clone())),
        ],
        Fact::Attr(e, a) => vec![
            I(Some(e.0)),
            S(Some(a.key.clone())),
            S(a.subkey.clone()),
            I(a.number),
            S(Some(a.value.value_type().as_str().into())),
            S(a.value.to_text()),
            I(match a.value {
                Value::Ref(r) => Some(r.0),
                _ => None,
            }),
        ],
        Fact::Contains(c) => vec![
            I(Some(c.parent.0)),
            I(Some(c.child.0)),
            I(c.ru.map(|r| r.start as i64)),
            I(c.ru.map(|r| r.end as i64)),
        ],
        Fact::Link(l) => vec![
            I(Some(l.a.0)),
            S(Some(l.a_port.to_string())),
            I(Some(l.b.0)),
            S(Some(l.b_port.to_string())),
        ],
        Fact::Address(a) => vec![
            S(Some(a.address.to_string())),
            I(Some(a.holder.0)),
            I(a.manager.map(|m| m.0)),
            S(a.os_port.clone()),
            S(a.port.as_ref().map(|p| p.to_string())),
        ],
    }
}

/// A scope's view read as of `seen`, brought to the head under the write
/// lock (one statement reads the head and what landed since `seen`): kept
/// when nothing that landed touches it (new rows only move the id floors),
/// read again otherwise. Returns the head and the view.
async fn current_view(
    conn: &mut sqlx::AnyConnection,
    scope: &Scope,
    seen: i64,
    mut inv: Inventory,
) -> Result<(i64, Inventory), StoreError> {
    let ch = changes::changes_under_lock(conn, seen).await?;
    if changes::stale_for_write(&inv, &ch) {
        return Ok((ch.to, scope::load(conn, None, scope).await?));
    }
    inv.raise_id_floors(ch.next_fact, ch.next_entity);
    Ok((ch.to, inv))
}

/// Records `ch` as revision `rev` (one past the head, read under the lock);
/// returns the statements it took.
async fn persist(
    tx: &mut sqlx::AnyConnection,
    sqlite: bool,
    rev: i64,
    meta: &RevisionMeta,
    ch: &ChangeSet,
) -> Result<usize, StoreError> {
    persist_many(tx, sqlite, &[(rev, meta, ch)]).await
}

/// One row to insert: its table, id, what it says, and the revisions it
/// lives in (a row a later revision of the same batch retires is inserted
/// retired).
struct NewRow<'a> {
    id: i64,
    fact: &'a Fact,
    from: i64,
    to: Option<i64>,
}

/// Records consecutive revisions, each `(rev, meta, changes)`, in a
/// handful of statements whatever their number: one insert of the
/// revisions, per table one update retiring old rows and one insert of new
/// ones. Returns the statements it took.
async fn persist_many(
    tx: &mut sqlx::AnyConnection,
    sqlite: bool,
    revs: &[(i64, &RevisionMeta, &ChangeSet)],
) -> Result<usize, StoreError> {
    let mut statements = 0;
    for chunk in revs.chunks(1000) {
        let mut sql =
            String::from("INSERT INTO revisions (rev, at_ms, user_name, message, manager) VALUES ");
        let mut n = 1;
        for (i, _) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..5 {
                if c > 0 {
                    sql.push(',');
                }
                push_param(&mut sql, sqlite, &mut n);
            }
            sql.push(')');
        }
        let mut q = sqlx::query(AssertSqlSafe(sql));
        let at = now_ms();
        for (rev, meta, _) in chunk {
            q = q
                .bind(*rev)
                .bind(meta.at_ms.unwrap_or(at))
                .bind(meta.user.clone())
                .bind(meta.message.clone())
                .bind(meta.manager.clone());
        }
        q.execute(&mut *tx).await?;
        statements += 1;
    }
    let mut retire: std::collections::BTreeMap<Table, std::collections::BTreeMap<i64, i64>> =
        Default::default();
    let mut rows: std::collections::BTreeMap<i64, (Table, NewRow)> = Default::default();
    for (rev, _, ch) in revs {
        for (id, f) in &ch.removed {
            match rows.get_mut(&id.0) {
                Some((_, row)) => row.to = Some(*rev),
                None => {
                    retire.entry(f.table()).or_default().insert(id.0, *rev);
                }
            }
        }
        for (id, f) in &ch.added {
            let row = NewRow {
                id: id.0,
                fact: f,
                from: *rev,
                to: None,
            };
            rows.insert(id.0, (f.table(), row));
        }
    }
    // Retire first so that a re-added unique row (a renamed entity's new
    // name, a re-bound address) never meets its old self.
    for t in TABLES {
        let Some(ids) = retire.get(&t) else { continue };
        let ids: Vec<(&i64, &i64)> = ids.iter().collect();
        for chunk in ids.chunks(500) {
            retire_rows(tx, t, chunk).await?;
            statements += 1;
        }
    }
    for t in TABLES {
        let table_rows: Vec<&NewRow> = rows
            .values()
            .filter(|(rt, _)| *rt == t)
            .map(|(_, r)| r)
            .collect();
        let ncols = table_cols(t).split(',').count() + 3;
        let per_chunk = (30_000 / ncols).max(1);
        for chunk in table_rows.chunks(per_chunk) {
            let mut sql = format!(
                "INSERT INTO {} (id, {}, rev_from, rev_to) VALUES ",
                table_name(t),
                table_cols(t)
            );
            let mut n = 1;
            for (i, _) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                for c in 0..ncols {
                    if c > 0 {
                        sql.push(',');
                    }
                    push_param(&mut sql, sqlite, &mut n);
                }
                sql.push(')');
            }
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for row in chunk {
                q = q.bind(row.id);
                for p in fact_params(row.fact) {
                    q = match p {
                        Param::I(v) => q.bind(v),
                        Param::S(v) => q.bind(v),
                    };
                }
                q = q.bind(row.from).bind(row.to);
            }
            q.execute(&mut *tx).await?;
            statements += 1;
        }
    }
    Ok(statements)
}

/// Retires the rows `(id, rev)` of `t` as of their revisions. The common
/// case, one revision, is one statement whose text does not change from
/// write to write (on PostgreSQL, planned once per connection).
async fn retire_rows(
    tx: &mut sqlx::AnyConnection,
    t: Table,
    chunk: &[(&i64, &i64)],
) -> Result<(), StoreError> {
    let ids: Vec<i64> = chunk.iter().map(|(i, _)| **i).collect();
    let single = chunk.iter().all(|(_, r)| *r == chunk[0].1);
    let set = scope::IdSet::param(tx, &ids, if single { 2 } else { 1 });
    let rev_to = if single {
        "$1".to_string()
    } else {
        let arms: Vec<String> = chunk
            .iter()
            .map(|(id, r)| format!("WHEN {id} THEN {r}"))
            .collect();
        format!("CASE id {} END", arms.join(" "))
    };
    let sql = format!(
        "UPDATE {} SET rev_to = {rev_to} WHERE id IN ({}) AND rev_to IS NULL",
        table_name(t),
        set.sql
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    if single {
        q = q.bind(*chunk[0].1);
    }
    if let Some(b) = set.bind_value() {
        q = q.bind(b);
    }
    q.execute(&mut *tx).await?;
    Ok(())
}

/// A bind parameter: SQLite looks numbered parameters up in a list, which
/// turns big batches quadratic; anonymous ones are free.
fn push_param(sql: &mut String, sqlite: bool, n: &mut usize) {
    if sqlite {
        sql.push('?');
    } else {
        sql.push('$');
        sql.push_str(&n.to_string());
        *n += 1;
    }
}

/// Runs one write of a batch on `inv`: its value and what it changed, or
/// its error with `inv` as it was.
fn run_one<T, E>(
    inv: &mut Inventory,
    f: impl Fn(&mut Inventory) -> Result<T, E>,
) -> Result<(T, ChangeSet), E> {
    match f(inv) {
        Ok(v) => Ok((v, inv.take_changes())),
        Err(e) => {
            let ch = inv.take_changes();
            inv.revert(&ch);
            Err(e)
        }
    }
}

/// The rows a batch adds that are still live after it: what the database's
/// write rules check (a row a later revision retired is history already).
fn live_rows(batch: &[(i64, &RevisionMeta, &ChangeSet)]) -> ChangeSet {
    let mut live = ChangeSet::default();
    for (_, _, ch) in batch {
        for id in ch.removed.keys() {
            live.added.remove(id);
        }
        live.added
            .extend(ch.added.iter().map(|(id, f)| (*id, f.clone())));
    }
    live
}

/// A batch the database refused as a whole, redone write by write, each
/// under a savepoint: the refused one leaves nothing (in the database and
/// in `inv`), the others stand and are numbered on from `head`.
async fn one_at_a_time<T, E, F>(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    sqlite: bool,
    head: i64,
    inv: &mut Inventory,
    writes: &[(RevisionMeta, F)],
) -> Result<Vec<Result<Written<T>, E>>, StoreError>
where
    E: From<StoreError>,
    F: Fn(&mut Inventory) -> Result<T, E>,
{
    let mut rev = head;
    let mut out = Vec::with_capacity(writes.len());
    for (meta, f) in writes {
        let (value, changes) = match run_one(inv, f) {
            Ok(x) => x,
            Err(e) => {
                out.push(Err(e));
                continue;
            }
        };
        if changes.is_empty() {
            out.push(Ok(Written {
                value,
                revision: None,
                changes,
                statements: 0,
            }));
            continue;
        }
        tx.execute("SAVEPOINT clusto_each").await?;
        let persisted = async {
            let n = persist(&mut *tx, sqlite, rev + 1, meta, &changes).await?;
            guard::check(&mut *tx, &changes).await?;
            Ok::<usize, StoreError>(n)
        }
        .await;
        match persisted {
            Ok(statements) => {
                tx.execute("RELEASE SAVEPOINT clusto_each").await?;
                rev += 1;
                out.push(Ok(Written {
                    value,
                    revision: Some(rev),
                    changes,
                    statements,
                }));
            }
            Err(e) => {
                tx.execute("ROLLBACK TO SAVEPOINT clusto_each").await?;
                tx.execute("RELEASE SAVEPOINT clusto_each").await?;
                inv.revert(&changes);
                out.push(Err(E::from(e)));
            }
        }
    }
    Ok(out)
}
