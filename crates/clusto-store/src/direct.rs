//! One-statement reads at the head on SQLite, answered on the caller's
//! thread. sqlx runs each SQLite connection on a worker thread of its own:
//! a point lookup's SQL takes about 11 µs, and the two thread hand-offs
//! around it (the statement to the worker, the rows back) took three times
//! that. A read-only connection of this process's own (the same bundled
//! SQLite, through rusqlite) runs the statement where it is asked. In WAL
//! mode each statement reads the last commit, as a pooled reader would.
//!
//! Only statements at the head whose answer is one text column use it; a
//! snapshot, a write, anything on PostgreSQL stays on sqlx.

use std::sync::Mutex;

use crate::StoreError;

#[derive(Debug)]
pub(crate) struct Direct {
    conn: Mutex<rusqlite::Connection>,
}

impl Direct {
    /// A read-only connection to the database file at `path`; None when it
    /// cannot be opened (the caller then reads through sqlx).
    pub(crate) fn open(path: &str) -> Option<Direct> {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(path, flags).ok()?;
        // A checkpoint can hold the WAL briefly: wait as the pool's
        // connections do rather than fail a read.
        conn.busy_timeout(std::time::Duration::from_secs(60)).ok()?;
        Some(Direct {
            conn: Mutex::new(conn),
        })
    }

    /// Runs `sql` with `$1`, `$2`, … bound to `params` and hands column 0 of
    /// each row to `each`, in order.
    pub(crate) fn rows_each<E: From<StoreError>>(
        &self,
        sql: &str,
        params: &[String],
        mut each: impl FnMut(String) -> Result<(), E>,
    ) -> Result<(), E> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare_cached(sql).map_err(StoreError::from)?;
        for (i, p) in params.iter().enumerate() {
            // `$N` is a named parameter to SQLite, numbered by first
            // appearance: bind by name so the order in the text never matters.
            let Some(at) = stmt
                .parameter_index(&format!("${}", i + 1))
                .map_err(StoreError::from)?
            else {
                continue;
            };
            stmt.raw_bind_parameter(at, p.as_str())
                .map_err(StoreError::from)?;
        }
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            each(row.get::<_, String>(0).map_err(StoreError::from)?)?;
        }
        Ok(())
    }
}
