//! Compiles the core's query AST to SQL, so queries run in the database
//! rather than over a loaded inventory.

use clusto_core::query::Query;
use clusto_core::{CoreError, Value, ValueType};
use sqlx::{AssertSqlSafe, Row};

use crate::{Backend, Store, StoreError, vis};

struct Compiler {
    backend: Backend,
    at: Option<i64>,
    params: Vec<String>,
    names: Vec<String>,
}

impl Compiler {
    fn p(&mut self, v: impl Into<String>) -> String {
        self.params.push(v.into());
        format!("${}", self.params.len())
    }

    fn glob(&mut self, pattern: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("e.name GLOB {}", self.p(pattern)),
            Backend::Postgres => {
                let mut like = String::new();
                for c in pattern.chars() {
                    match c {
                        '*' => like.push('%'),
                        '?' => like.push('_'),
                        '%' | '_' | '\\' => {
                            like.push('\\');
                            like.push(c);
                        }
                        c => like.push(c),
                    }
                }
                format!("e.name LIKE {} ESCAPE '\\'", self.p(like))
            }
        }
    }

    fn entity_named(&mut self, alias: &str, name: &str) -> String {
        self.names.push(name.to_string());
        let v = vis(alias, self.at);
        format!(
            "(SELECT {alias}.eid FROM entities {alias} WHERE {alias}.name = {} AND {v})",
            self.p(name)
        )
    }

    fn compile(&mut self, q: &Query) -> String {
        let at = self.at;
        match q {
            Query::Name(g) => self.glob(g),
            Query::Driver(d) => format!("e.driver = {}", self.p(d.as_str())),
            Query::Kind(k) => format!("e.kind = {}", self.p(k.as_str())),
            // Uncorrelated `e.eid IN (SELECT …)` subqueries: evaluated once,
            // through the (key, subkey, value) index, instead of once per entity.
            Query::HasAttr { key, subkey } => {
                let mut s = format!(
                    "e.eid IN (SELECT a.eid FROM attrs a WHERE {} AND a.key = {}",
                    vis("a", at),
                    self.p(key.as_str())
                );
                if let Some(sk) = subkey {
                    s.push_str(&format!(" AND a.subkey = {}", self.p(sk.as_str())));
                }
                s.push(')');
                s
            }
            Query::AttrEq { key, subkey, value } => {
                // Typed values compare by their stored text; accept the
                // spellings a person might type for booleans and floats.
                let mut forms = vec![value.clone()];
                for ty in [
                    ValueType::Bool,
                    ValueType::Float,
                    ValueType::Ip,
                    ValueType::DateTime,
                ] {
                    if let Ok(v) = Value::parse_as(ty, value)
                        && let Some(t) = v.to_text()
                        && !forms.contains(&t)
                    {
                        forms.push(t);
                    }
                }
                let list: Vec<String> = forms.into_iter().map(|f| self.p(f)).collect();
                let mut key_match =
                    format!("{} AND a.key = {}", vis("a", at), self.p(key.as_str()));
                if let Some(sk) = subkey {
                    key_match.push_str(&format!(" AND a.subkey = {}", self.p(sk.as_str())));
                }
                let refname = self.p(value.as_str());
                // UNION ALL: `IN` ignores duplicates, and SQLite's UNION
                // builds a temporary B-tree (half a point lookup's SQL time).
                format!(
                    "e.eid IN (SELECT a.eid FROM attrs a WHERE {key_match} AND a.value IN ({}) \
                     UNION ALL SELECT a.eid FROM entities r JOIN attrs a ON a.ref_eid = r.eid \
                     WHERE r.name = {refname} AND {} AND {key_match})",
                    list.join(", "),
                    vis("r", at)
                )
            }
            Query::In(name) => {
                let root = self.entity_named("p", name);
                format!(
                    "e.eid IN (WITH RECURSIVE sub(eid) AS (SELECT c.child FROM containment c WHERE c.parent IN {root} AND {cv} \
                     UNION SELECT c.child FROM containment c JOIN sub ON c.parent = sub.eid WHERE {cv}) SELECT eid FROM sub)",
                    cv = vis("c", at)
                )
            }
            Query::ConnectedTo(name) => {
                let other = self.entity_named("x", name);
                let lv = vis("l", at);
                format!(
                    "e.eid IN (SELECT l.a FROM links l WHERE {lv} AND l.b IN {other} \
                     UNION ALL SELECT l.b FROM links l WHERE {lv} AND l.a IN {other})"
                )
            }
            Query::Not(q) => format!("NOT ({})", self.compile(q)),
            Query::And(v) => {
                let parts: Vec<String> =
                    v.iter().map(|q| format!("({})", self.compile(q))).collect();
                parts.join(" AND ")
            }
            Query::Or(v) => {
                let parts: Vec<String> =
                    v.iter().map(|q| format!("({})", self.compile(q))).collect();
                parts.join(" OR ")
            }
        }
    }
}

/// The SQL a query compiles to, with its parameters (for `--explain`).
pub fn compile(q: &Query, backend: Backend, at: Option<i64>) -> (String, Vec<String>, Vec<String>) {
    let mut c = Compiler {
        backend,
        at,
        params: Vec::new(),
        names: Vec::new(),
    };
    let cond = c.compile(q);
    let sql = format!(
        "SELECT e.name FROM entities e WHERE {} AND e.kind NOT IN ('Driver', 'RackLayout') AND ({cond}) ORDER BY e.name",
        vis("e", at)
    );
    (sql, c.params, c.names)
}

impl Store {
    /// Names of the entities matching `q`, sorted.
    pub async fn query(&self, q: &Query, at: Option<i64>) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        self.query_each(q, at, |n| {
            out.push(n);
            Ok::<(), StoreError>(())
        })
        .await?;
        Ok(out)
    }

    /// Like [`Store::query`], handing each name to `each` as its row
    /// arrives: a listing of any size in constant memory.
    pub async fn query_each<E: From<StoreError>>(
        &self,
        q: &Query,
        at: Option<i64>,
        each: impl FnMut(String) -> Result<(), E>,
    ) -> Result<(), E> {
        let (sql, params, names) = compile(q, self.backend, at);
        if at.is_none() && names.is_empty() {
            // One statement at the head sees one snapshot by itself: no
            // transaction, no revision lookup (a point lookup's cost is
            // its round trips).
            if let Some(d) = &self.direct {
                return d.rows_each(&sql, &params, each);
            }
            return self
                .one_statement(async |conn: &mut sqlx::AnyConnection| {
                    rows_each(conn, sql, params, each).await
                })
                .await;
        }
        // One snapshot: the name checks and the rows see one revision.
        let mut snap = self.snapshot(at).await?;
        let conn = &mut *snap.tx;
        // A misspelt container name should be an error, not an empty answer.
        for n in names {
            let found: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT e.eid FROM entities e WHERE e.name = $1 AND {}",
                vis("e", at)
            )))
            .bind(n.clone())
            .fetch_optional(&mut *conn)
            .await
            .map_err(StoreError::from)?;
            if found.is_none() {
                return Err(StoreError::from(CoreError::NotFound(n)).into());
            }
        }
        rows_each(conn, sql, params, each).await
    }
}

/// Runs a compiled query, handing each name to `each`.
async fn rows_each<E: From<StoreError>>(
    conn: &mut sqlx::AnyConnection,
    sql: String,
    params: Vec<String>,
    mut each: impl FnMut(String) -> Result<(), E>,
) -> Result<(), E> {
    use futures::TryStreamExt;
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for p in params {
        query = query.bind(p);
    }
    let mut rows = query.fetch(&mut *conn);
    while let Some(r) = rows.try_next().await.map_err(StoreError::from)? {
        each(r.try_get::<String, _>(0).map_err(StoreError::from)?)?;
    }
    Ok(())
}
