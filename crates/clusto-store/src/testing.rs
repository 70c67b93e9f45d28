//! Fresh stores for tests: a new SQLite file, or a new PostgreSQL database
//! on the server named by `CLUSTO_TEST_PG` (default: the local one).

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{AssertSqlSafe, Connection};

use crate::{Store, StoreError};

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The PostgreSQL server tests use.
pub fn pg_admin_url() -> String {
    std::env::var("CLUSTO_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A URL for a new, empty store of the given backend.
pub async fn fresh_url(backend: &str) -> Result<String, StoreError> {
    match backend {
        "sqlite" => {
            let dir = std::env::temp_dir().join("clusto-tests");
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(format!(
                "sqlite://{}",
                dir.join(format!("t_{}.db", unique())).display()
            ))
        }
        "postgres" => {
            sqlx::any::install_default_drivers();
            let admin = pg_admin_url();
            let db = format!("clusto_t_{}", unique());
            let mut conn = sqlx::AnyConnection::connect(&admin).await?;
            sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
            Ok(format!("{base}/{db}"))
        }
        other => Err(StoreError::UnsupportedUrl(other.into())),
    }
}

/// A new store of the given backend.
pub async fn fresh(backend: &str) -> Result<Store, StoreError> {
    Store::open(&fresh_url(backend).await?).await
}

/// Both backends, for tests that must pass on each.
pub const BACKENDS: [&str; 2] = ["sqlite", "postgres"];

/// What a test's write closure fails with: a rule broken or the store
/// failing (so tests can use `?` on both).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Core(#[from] clusto_core::CoreError),
}

/// Records what `f` changes as one revision and returns it (None when
/// nothing changed); panics when the write fails, as a test should.
pub async fn write(
    store: &Store,
    message: &str,
    f: impl FnOnce(&mut clusto_core::Inventory) -> Result<(), clusto_core::CoreError>,
) -> Option<i64> {
    store
        .write(&crate::RevisionMeta::new(message), |inv| {
            f(inv).map_err(Failure::from)
        })
        .await
        .unwrap_or_else(|e| panic!("{message}: {e}"))
        .revision
}
