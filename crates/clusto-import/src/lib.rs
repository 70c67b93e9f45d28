//! `clusto import clusto URL`: an original (Digg) clusto database read
//! through its SQLAlchemy schema and mapped to this project's manifests.
//!
//! [`original`] reads the live rows (the only part that needs a database);
//! [`map`] turns them into manifest documents plus a report of what has no
//! equivalent, so the mapping is tested without any database.

pub mod map;
pub mod original;

pub use map::{Mapped, Unmapped, map};
pub use original::{Original, read};
