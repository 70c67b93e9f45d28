//! Declarative manifests for clusto: parse (with positions), plan, apply,
//! export and JSON Schemas. Pure over an [`clusto_core::Inventory`]; the CLI
//! does the file and store I/O.

pub mod parse;
pub mod types;

pub use parse::{Loc, ManifestError, Object, Source, Spec, parse_sources, read_sources};
