//! Declarative manifests for clusto: parse (with positions), plan, apply,
//! export and JSON Schemas. Pure over an [`clusto_core::Inventory`]; the CLI
//! does the file and store I/O.

pub mod apply;
pub mod crd;
pub mod export;
pub mod generate;
pub mod layout;
pub mod parse;
pub mod plan;
pub mod schema;
pub mod types;

pub use apply::{ApplyOptions, apply};
pub use parse::{Loc, ManifestError, Object, Source, Spec, parse_sources, read_sources};
pub use plan::{Plan, diff};
