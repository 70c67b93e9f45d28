//! The original's tables, as rows. The original never deletes: a row
//! carries the version that made it and the one that deleted it, so the
//! state at any version can be read back ([`Original::at`]).

use sqlx::Row;
use sqlx::any::AnyPoolOptions;

/// One entity: the original's `entities` row.
#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    pub id: i64,
    pub name: String,
    /// The `type` column (server, rack, pool, resourcemanager, …).
    pub clusto_type: String,
    pub driver: String,
    pub life: Life,
}

/// The versions a row lived in: from `version`, until `deleted` (exclusive).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Life {
    pub version: i64,
    pub deleted: Option<i64>,
}

impl Life {
    /// Alive at version `v` (at the latest when None).
    fn alive_at(&self, v: Option<i64>) -> bool {
        match v {
            None => self.deleted.is_none(),
            Some(v) => self.version <= v && self.deleted.is_none_or(|d| d > v),
        }
    }
}

/// The original's naive UTC timestamps (`2011-05-01 12:30:00.000000`) as
/// RFC 3339 (`2011-05-01T12:30:00.000Z`).
pub fn rfc3339(t: &str) -> String {
    let t = t.trim().replacen(' ', "T", 1);
    let (whole, frac) = t.split_once('.').unwrap_or((&t, ""));
    let ms: String = frac.chars().take(3).collect();
    if ms.is_empty() {
        format!("{whole}Z")
    } else {
        format!("{whole}.{ms:0<3}Z")
    }
}

/// One `clustoversioning` row: who made a version, when and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Version {
    pub version: i64,
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC), when recorded.
    pub at: Option<String>,
    pub user: Option<String>,
    pub description: Option<String>,
}

/// An attribute's typed value, as its `datatype` column says.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    String(String),
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]`, naive (the original stored UTC).
    DateTime(String),
    /// JSON text.
    Json(String),
    /// Another entity's id.
    Relation(i64),
    Null,
}

/// One `entity_attrs` row.
#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    pub entity: i64,
    pub key: String,
    pub subkey: Option<String>,
    pub number: Option<i64>,
    pub value: Value,
    pub life: Life,
}

/// One `counters` row (a NameManager's `next`, pools' insertion numbers).
#[derive(Clone, Debug, PartialEq)]
pub struct Counter {
    pub entity: i64,
    pub key: String,
    pub value: i64,
}

/// An original clusto database: every row, deleted ones included, and the
/// version log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Original {
    pub entities: Vec<Entity>,
    pub attrs: Vec<Attr>,
    pub counters: Vec<Counter>,
    pub versions: Vec<Version>,
}

impl Version {
    /// When it was recorded, in Unix milliseconds.
    pub fn at_ms(&self) -> Option<i64> {
        clusto_core::time::parse_rfc3339_ms(&rfc3339(self.at.as_deref()?))
    }
}

impl Original {
    /// The rows alive at version `v`, or now when None. Counters are not
    /// versioned in the original; every state gets their current values.
    pub fn at(&self, v: Option<i64>) -> Original {
        Original {
            entities: self
                .entities
                .iter()
                .filter(|e| e.life.alive_at(v))
                .cloned()
                .collect(),
            attrs: self
                .attrs
                .iter()
                .filter(|a| a.life.alive_at(v))
                .cloned()
                .collect(),
            counters: self.counters.clone(),
            versions: Vec::new(),
        }
    }

    /// The versions at which some row was made or deleted, in order.
    pub fn changing_versions(&self) -> Vec<i64> {
        let lives = self
            .entities
            .iter()
            .map(|e| e.life)
            .chain(self.attrs.iter().map(|a| a.life));
        let mut out: Vec<i64> = lives
            .flat_map(|l| std::iter::once(l.version).chain(l.deleted))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open the original clusto database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("{url} does not look like an original clusto database ({table}): {source}")]
    Query {
        url: String,
        table: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{url}: attribute row {attr_id} has unknown datatype {datatype:?}")]
    Datatype {
        url: String,
        attr_id: i64,
        datatype: String,
    },
}

/// The SQL spellings that differ between the databases the original ran
/// on. Casts keep the Any driver to portable types (i64, text) everywhere.
#[derive(Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
    Mysql,
}

impl Dialect {
    fn of(url: &str) -> Dialect {
        if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            Dialect::Mysql
        } else if url.starts_with("postgres") {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        }
    }

    fn int(self, col: &str) -> String {
        match self {
            Dialect::Mysql => format!("CAST({col} AS SIGNED)"),
            _ => format!("CAST({col} AS BIGINT)"),
        }
    }

    fn text(self, col: &str) -> String {
        match self {
            Dialect::Mysql => format!("CAST({col} AS CHAR)"),
            _ => format!("CAST({col} AS TEXT)"),
        }
    }

    /// A column named like a keyword (`user`, `timestamp`, `key`).
    fn id(self, col: &str) -> String {
        match self {
            Dialect::Mysql => format!("`{col}`"),
            _ => format!("\"{col}\""),
        }
    }

    fn entities(self) -> String {
        format!(
            "SELECT {}, name, {}, driver, {}, {} FROM entities ORDER BY entity_id",
            self.int("entity_id"),
            self.id("type"),
            self.int("version"),
            self.int("deleted_at_version")
        )
    }

    fn attrs(self) -> String {
        format!(
            "SELECT {}, {}, {}, subkey, {}, datatype, {}, string_value, {}, {}, {}, {} \
             FROM entity_attrs ORDER BY attr_id",
            self.int("attr_id"),
            self.int("entity_id"),
            self.id("key"),
            self.int("number"),
            self.int("int_value"),
            self.text("datetime_value"),
            self.int("relation_id"),
            self.int("version"),
            self.int("deleted_at_version")
        )
    }

    fn versions(self) -> String {
        format!(
            "SELECT {}, {}, {}, description FROM clustoversioning ORDER BY version",
            self.int("version"),
            self.text(&self.id("timestamp")),
            self.id("user")
        )
    }

    fn counters(self) -> String {
        format!(
            "SELECT {}, attr_key, {} FROM counters ORDER BY counter_id",
            self.int("entity_id"),
            self.int("value")
        )
    }
}

/// Reads the original at `url` (`sqlite://PATH`, `postgres://…`,
/// `mysql://…`), read-only.
pub async fn read(url: &str) -> Result<Original, ReadError> {
    sqlx::any::install_default_drivers();
    let d = Dialect::of(url);
    let connect_url = match url.strip_prefix("sqlite://") {
        Some(path) if !path.contains('?') => format!("sqlite://{path}?mode=ro"),
        _ => url.to_string(),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&connect_url)
        .await
        .map_err(|source| ReadError::Connect {
            url: url.into(),
            source,
        })?;
    let out = Original {
        entities: rows(&pool, url, "entities", &d.entities(), entity).await?,
        attrs: rows(&pool, url, "entity_attrs", &d.attrs(), attr).await?,
        counters: rows(&pool, url, "counters", &d.counters(), counter).await?,
        versions: rows(&pool, url, "clustoversioning", &d.versions(), version).await?,
    };
    pool.close().await;
    Ok(out)
}

/// Why a row could not be read.
enum RowError {
    Sql(sqlx::Error),
    Datatype(i64, String),
}

impl From<sqlx::Error> for RowError {
    fn from(e: sqlx::Error) -> Self {
        RowError::Sql(e)
    }
}

/// Every row `sql` returns from `table`, each decoded by `decode`.
async fn rows<T>(
    pool: &sqlx::AnyPool,
    url: &str,
    table: &'static str,
    sql: &str,
    decode: fn(&sqlx::any::AnyRow) -> Result<T, RowError>,
) -> Result<Vec<T>, ReadError> {
    let err = |e| match e {
        RowError::Sql(source) => ReadError::Query {
            url: url.into(),
            table,
            source,
        },
        RowError::Datatype(attr_id, datatype) => ReadError::Datatype {
            url: url.into(),
            attr_id,
            datatype,
        },
    };
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(pool)
        .await
        .map_err(|e| err(RowError::Sql(e)))?
        .iter()
        .map(|r| decode(r).map_err(err))
        .collect()
}

fn entity(r: &sqlx::any::AnyRow) -> Result<Entity, RowError> {
    Ok(Entity {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        clusto_type: r.try_get(2)?,
        driver: r.try_get(3)?,
        life: Life {
            version: r.try_get(4)?,
            deleted: r.try_get(5)?,
        },
    })
}

fn counter(r: &sqlx::any::AnyRow) -> Result<Counter, RowError> {
    Ok(Counter {
        entity: r.try_get(0)?,
        key: r.try_get::<Option<String>, _>(1)?.unwrap_or_default(),
        value: r.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
    })
}

fn version(r: &sqlx::any::AnyRow) -> Result<Version, RowError> {
    Ok(Version {
        version: r.try_get(0)?,
        at: r.try_get(1)?,
        user: r.try_get(2)?,
        description: r.try_get(3)?,
    })
}

fn attr(r: &sqlx::any::AnyRow) -> Result<Attr, RowError> {
    let attr_id: i64 = r.try_get(0)?;
    let datatype: String = r.try_get(5)?;
    let int: Option<i64> = r.try_get(6)?;
    let text: Option<String> = r.try_get(7)?;
    let when: Option<String> = r.try_get(8)?;
    let rel: Option<i64> = r.try_get(9)?;
    let value = match datatype.as_str() {
        "int" => int.map(Value::Int),
        "string" => text.map(Value::String),
        "datetime" => when.map(Value::DateTime),
        "json" => text.map(Value::Json),
        "relation" => rel.map(Value::Relation),
        _ => return Err(RowError::Datatype(attr_id, datatype)),
    }
    .unwrap_or(Value::Null);
    Ok(Attr {
        entity: r.try_get(1)?,
        key: r.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
        subkey: r.try_get(3)?,
        number: r.try_get(4)?,
        value,
        life: Life {
            version: r.try_get(10)?,
            deleted: r.try_get(11)?,
        },
    })
}
