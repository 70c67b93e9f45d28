//! clusto's domain: entities with typed attributes, containment, pools,
//! ports, resource managers, merged attributes and the query language.
//! No I/O: the store loads facts into an [`Inventory`], commands mutate it
//! through these rules, and the store persists the resulting [`ChangeSet`].

pub mod driver;
pub mod elevation;
pub mod error;
pub mod fsck;
pub mod hash;
pub mod inventory;
pub mod kind;
pub mod merge;
pub mod model;
pub mod names;
pub mod outofband;
pub mod placement;
pub mod ports;
pub mod query;
pub mod relations;
pub mod resource;
pub mod resources;
pub mod testing;
pub mod time;
pub mod value;
pub mod views;
pub mod vm;

pub use driver::{Driver, PoolType};
pub use error::CoreError;
pub use inventory::{ChangeSet, Inventory, NumberSpec};
pub use kind::Kind;
pub use merge::MergedAttr;
pub use model::*;
pub use value::{Value, ValueType};

#[cfg(test)]
mod tests;
