//! Leases: so that only one controller acts on a store at a time.
//!
//! PostgreSQL: a session advisory lock held on a connection of its own;
//! when the holder dies its connection closes and the lock is free at
//! once. SQLite: a row with an expiry the holder keeps pushing forward;
//! another process takes over once it has expired.

use std::time::Duration;

use sqlx::{AnyConnection, AssertSqlSafe};

use crate::{Backend, Store, StoreError, now_ms};

/// Advisory-lock key space for leases (the write lock uses another key).
const PG_LEASE_BASE: i64 = 0x636c_7573_0000;

/// A held lease. Renew it more often than its ttl; drop or release it to
/// let another holder in.
pub struct Lease {
    store: Store,
    name: String,
    holder: String,
    ttl: Duration,
    /// PostgreSQL: the connection that holds the advisory lock, out of the
    /// pool so that dropping the lease closes it and frees the lock.
    conn: Option<AnyConnection>,
}

fn pg_key(name: &str) -> i64 {
    PG_LEASE_BASE + (clusto_core::hash::fnv64(name) & 0xffff) as i64
}

impl Store {
    /// Takes the lease `name` for `holder` if it is free (or expired, or
    /// already this holder's); None while another holder has it.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let mut lease = Lease {
            store: self.clone(),
            name: name.to_string(),
            holder: holder.to_string(),
            ttl,
            conn: None,
        };
        match self.backend {
            Backend::Postgres => {
                let mut conn = self.pool.acquire().await?;
                let got: bool = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT pg_try_advisory_lock({})",
                    pg_key(name)
                )))
                .fetch_one(&mut *conn)
                .await?;
                if !got {
                    return Ok(None);
                }
                lease.conn = Some(conn.detach());
                // The row only tells operators who holds it.
                lease.write_row().await?;
                Ok(Some(lease))
            }
            Backend::Sqlite => Ok(lease.write_row().await?.then_some(lease)),
        }
    }

    /// Who holds the lease `name` and until when (ms since the epoch).
    pub async fn lease_holder(&self, name: &str) -> Result<Option<(String, i64)>, StoreError> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT holder, expires_ms FROM clusto_leases WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row)
    }
}

impl Lease {
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Claims or extends the row; false when another live holder has it.
    async fn write_row(&mut self) -> Result<bool, StoreError> {
        let now = now_ms();
        let until = now + self.ttl.as_millis() as i64;
        let mut tx = self.store.begin_write().await?;
        let cur: Option<(String, i64)> =
            sqlx::query_as("SELECT holder, expires_ms FROM clusto_leases WHERE name = $1")
                .bind(&self.name)
                .fetch_optional(&mut *tx)
                .await?;
        let ours = match &cur {
            None => true,
            Some((h, exp)) => *h == self.holder || *exp < now || self.conn.is_some(),
        };
        if !ours {
            tx.rollback().await?;
            return Ok(false);
        }
        let sql = if cur.is_some() {
            "UPDATE clusto_leases SET holder = $2, expires_ms = $3 WHERE name = $1"
        } else {
            "INSERT INTO clusto_leases (name, holder, expires_ms) VALUES ($1, $2, $3)"
        };
        sqlx::query(sql)
            .bind(&self.name)
            .bind(&self.holder)
            .bind(until)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Keeps the lease; false when it was lost (expired and taken over, or
    /// the lock connection died).
    pub async fn renew(&mut self) -> Result<bool, StoreError> {
        if let Some(conn) = self.conn.as_mut() {
            let alive = sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(conn)
                .await
                .is_ok();
            if !alive {
                self.conn = None;
                return Ok(false);
            }
        }
        self.write_row().await
    }

    /// Gives the lease up so another holder can take it at once.
    pub async fn release(mut self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM clusto_leases WHERE name = $1 AND holder = $2")
            .bind(&self.name)
            .bind(&self.holder)
            .execute(&self.store.pool)
            .await?;
        if let Some(mut conn) = self.conn.take() {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT pg_advisory_unlock({})",
                pg_key(&self.name)
            )))
            .execute(&mut conn)
            .await?;
        }
        Ok(())
    }
}

/// A controller's claim on a named lease across ticks: taken when free,
/// renewed every third of its time-to-live, noticed when lost.
pub struct Leadership {
    name: &'static str,
    holder: String,
    ttl: Duration,
    lease: Option<Lease>,
    renew_at: std::time::Instant,
}

/// Whether this process acts, and whether it just started to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leading {
    No,
    /// Just acquired: a new leader trusts nothing it saw before.
    Acquired,
    Yes,
}

impl Leadership {
    pub fn new(name: &'static str, holder: String, ttl: Duration) -> Leadership {
        Leadership {
            name,
            holder,
            ttl,
            lease: None,
            renew_at: std::time::Instant::now(),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes, keeps or notices the loss of the lease.
    pub async fn ensure(&mut self, store: &Store) -> Result<Leading, StoreError> {
        let now = std::time::Instant::now();
        match self.lease.as_mut() {
            None => {
                self.lease = store.try_lease(self.name, &self.holder, self.ttl).await?;
                if self.lease.is_none() {
                    return Ok(Leading::No);
                }
                tracing::info!(lease = self.name, holder = %self.holder, "lease acquired; this controller acts");
                self.renew_at = now + self.ttl / 3;
                Ok(Leading::Acquired)
            }
            Some(l) if now >= self.renew_at => {
                if l.renew().await? {
                    self.renew_at = now + self.ttl / 3;
                    Ok(Leading::Yes)
                } else {
                    tracing::warn!(lease = self.name, "lease lost; standing by");
                    self.lease = None;
                    Ok(Leading::No)
                }
            }
            Some(_) => Ok(Leading::Yes),
        }
    }

    /// Gives the lease up (on shutdown) so a standby takes over at once.
    pub async fn release(&mut self) -> Result<(), StoreError> {
        if let Some(l) = self.lease.take() {
            l.release().await?;
        }
        Ok(())
    }
}
