//! The point reads the CLI and the API share — `describe`, `locate`,
//! `contents`, `parents`, `pool members`, `port list`, `ip list`,
//! `vm explain`. Each loads only what its view needs, at one revision, and
//! answers with the core's typed view (`clusto_core::views`) as JSON: what
//! `clusto serve` sends, and what the CLI prints from, whether it read the
//! database itself or asked a server.

use clusto_core::{CoreError, Inventory};
use serde_json::Value as Json;

use crate::{Scope, Store, StoreError};

/// One point read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read<'a> {
    Description(&'a str),
    Locate(&'a str),
    Contents {
        name: &'a str,
        recursive: bool,
    },
    Parents {
        name: &'a str,
        recursive: bool,
    },
    /// What is in every one of these pools.
    Members(&'a [String]),
    Ports(&'a str),
    /// An IPManager's network and allocations.
    Addresses(&'a str),
    /// Where a VM goes and why.
    Placement(&'a str),
}

impl Read<'_> {
    /// What the read loads.
    pub fn scope(&self) -> Scope {
        match *self {
            Read::Contents {
                name,
                recursive: true,
            } => Scope::read([name]).with_descendants_of(name),
            Read::Members(pools) => pools
                .iter()
                .fold(Scope::read(pools), |s, p| s.with_descendants_of(p)),
            // Placement weighs every host of the VM's manager and its guests.
            Read::Placement(name) => Scope::vm_world().name(name),
            Read::Description(name)
            | Read::Locate(name)
            | Read::Contents { name, .. }
            | Read::Parents { name, .. }
            | Read::Ports(name)
            | Read::Addresses(name) => Scope::read([name]),
        }
    }

    /// The view, from an inventory holding at least [`Read::scope`].
    pub fn view(&self, inv: &Inventory) -> Result<Json, CoreError> {
        fn json<T: serde::Serialize>(v: T) -> Json {
            serde_json::to_value(v).unwrap_or(Json::Null)
        }
        Ok(match *self {
            Read::Description(n) => json(inv.description(n)?),
            Read::Locate(n) => json(inv.locate_view(n)?),
            Read::Contents { name, recursive } => json(inv.contents_view(name, recursive)?),
            Read::Parents { name, recursive } => json(inv.parents_view(name, recursive)?),
            Read::Members(pools) => json(inv.members_view(pools)?),
            Read::Ports(n) => json(inv.ports_view(n)?),
            Read::Addresses(n) => json(inv.address_book(n)?),
            Read::Placement(n) => json(inv.placement_view(n)?),
        })
    }
}

impl Store {
    /// `read`'s view at `at` (the head when `None`).
    pub async fn read_view(&self, read: &Read<'_>, at: Option<i64>) -> Result<Json, StoreError> {
        self.view(&read.scope(), at, |inv| read.view(inv)).await
    }

    /// `scope` at `at`, handed to `f`: one revision, one load.
    pub async fn view<T>(
        &self,
        scope: &Scope,
        at: Option<i64>,
        f: impl FnOnce(&Inventory) -> Result<T, CoreError>,
    ) -> Result<T, StoreError> {
        let (_, inv) = self.load_scope(scope, at).await?;
        Ok(f(&inv)?)
    }
}
