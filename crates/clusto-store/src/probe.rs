//! A commit detector for SQLite in WAL mode that costs one small read
//! instead of a query. SQLite keeps the wal-index header (two copies of 48
//! bytes at the start of the `-shm` file, documented in "WAL-mode File
//! Formats") and a writer rewrites it, with its change counter bumped,
//! before its COMMIT returns; every reader compares it before reading. So
//! when the header is what it was when the head was last queried, no
//! transaction has committed since — in any process — and the head is
//! unchanged. Anything unexpected (no file, copies that differ, a header not
//! yet initialised) answers "unknown" and the caller queries.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Mutex;

/// Both copies of the wal-index header.
type Header = [u8; 96];

#[derive(Debug)]
pub(crate) struct HeadProbe {
    shm: PathBuf,
    /// The `-shm` file, kept open between reads.
    file: Mutex<Option<File>>,
    last: Mutex<Option<(Header, i64)>>,
}

impl HeadProbe {
    /// For the database file at `db` (a SQLite path, without options).
    pub(crate) fn new(db: &str) -> HeadProbe {
        HeadProbe {
            shm: PathBuf::from(format!("{db}-shm")),
            file: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    /// The header now, if it can be read whole and settled. SQLite deletes
    /// the file when the last connection closes and makes a new one, so a
    /// kept handle whose file is gone (no links left) is opened again.
    pub(crate) fn header(&self) -> Option<Header> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let stale = match file.as_ref() {
            Some(f) => f.metadata().map(|m| m.nlink() == 0).unwrap_or(true),
            None => true,
        };
        if stale {
            *file = File::open(&self.shm).ok();
        }
        let mut h = [0u8; 96];
        file.as_ref()?.read_exact_at(&mut h, 0).ok()?;
        // The copies agree once a writer has finished; byte 12 is isInit.
        (h[..48] == h[48..] && h[12] == 1).then_some(h)
    }

    /// The head recorded with `header`, if that is still the header.
    pub(crate) fn known(&self, header: &Header) -> Option<i64> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref().filter(|(h, _)| h == header).map(|(_, r)| *r)
    }

    /// Pairs a header read before a head query with that query's answer:
    /// any commit after the read changes the header, so while the header
    /// stays the same the answer stays true.
    pub(crate) fn record(&self, header: Header, head: i64) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((header, head));
    }
}
