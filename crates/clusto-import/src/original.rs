//! The original's tables, as rows. Only live rows are read: the original
//! never deletes, it stamps `deleted_at_version`.

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
}

/// One `counters` row (a NameManager's `next`, pools' insertion numbers).
#[derive(Clone, Debug, PartialEq)]
pub struct Counter {
    pub entity: i64,
    pub key: String,
    pub value: i64,
}

/// Everything live in an original clusto database.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Original {
    pub entities: Vec<Entity>,
    pub attrs: Vec<Attr>,
    pub counters: Vec<Counter>,
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

const ENTITIES: &str = "SELECT CAST(entity_id AS BIGINT), name, type, driver FROM entities \
     WHERE deleted_at_version IS NULL ORDER BY entity_id";
// Casts keep the Any driver to four portable types on every database.
const ATTRS: &str = "SELECT CAST(attr_id AS BIGINT), CAST(entity_id AS BIGINT), key, subkey, \
     CAST(number AS BIGINT), datatype, CAST(int_value AS BIGINT), string_value, \
     CAST(datetime_value AS TEXT), CAST(relation_id AS BIGINT) FROM entity_attrs \
     WHERE deleted_at_version IS NULL ORDER BY attr_id";
const COUNTERS: &str = "SELECT CAST(entity_id AS BIGINT), attr_key, CAST(value AS BIGINT) \
     FROM counters ORDER BY counter_id";

/// Reads the live rows of the original at `url` (`sqlite://PATH`,
/// `postgres://…`), read-only.
pub async fn read(url: &str) -> Result<Original, ReadError> {
    sqlx::any::install_default_drivers();
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
    let q = |table: &'static str| {
        move |source| ReadError::Query {
            url: url.into(),
            table,
            source,
        }
    };
    let mut out = Original::default();
    for r in sqlx::query(ENTITIES)
        .fetch_all(&pool)
        .await
        .map_err(q("entities"))?
    {
        out.entities.push(Entity {
            id: r.try_get(0).map_err(q("entities"))?,
            name: r.try_get(1).map_err(q("entities"))?,
            clusto_type: r.try_get(2).map_err(q("entities"))?,
            driver: r.try_get(3).map_err(q("entities"))?,
        });
    }
    for r in sqlx::query(ATTRS)
        .fetch_all(&pool)
        .await
        .map_err(q("entity_attrs"))?
    {
        out.attrs.push(attr(&r).map_err(|e| match e {
            AttrError::Sql(source) => ReadError::Query {
                url: url.into(),
                table: "entity_attrs",
                source,
            },
            AttrError::Datatype(attr_id, datatype) => ReadError::Datatype {
                url: url.into(),
                attr_id,
                datatype,
            },
        })?);
    }
    for r in sqlx::query(COUNTERS)
        .fetch_all(&pool)
        .await
        .map_err(q("counters"))?
    {
        out.counters.push(Counter {
            entity: r.try_get(0).map_err(q("counters"))?,
            key: r
                .try_get::<Option<String>, _>(1)
                .map_err(q("counters"))?
                .unwrap_or_default(),
            value: r
                .try_get::<Option<i64>, _>(2)
                .map_err(q("counters"))?
                .unwrap_or(0),
        });
    }
    pool.close().await;
    Ok(out)
}

enum AttrError {
    Sql(sqlx::Error),
    Datatype(i64, String),
}

impl From<sqlx::Error> for AttrError {
    fn from(e: sqlx::Error) -> Self {
        AttrError::Sql(e)
    }
}

fn attr(r: &sqlx::any::AnyRow) -> Result<Attr, AttrError> {
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
        _ => return Err(AttrError::Datatype(attr_id, datatype)),
    }
    .unwrap_or(Value::Null);
    Ok(Attr {
        entity: r.try_get(1)?,
        key: r.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
        subkey: r.try_get(3)?,
        number: r.try_get(4)?,
        value,
    })
}
