//! `GET …/{plural}/{name}/{view}`: the point reads the CLI prints
//! (`clusto_store::reads`), so `clusto --server` shows what `--store`
//! shows. `GET /apis/clusto.dev/v1alpha1/fsck` checks the whole store.

use clusto_core::{CoreError, Kind};
use clusto_store::StoreError;
use clusto_store::reads::Read;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::read::{Collection, revision};
use crate::status::ApiError;
use crate::{API_VERSION, Api};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewParams {
    pub resource_version: Option<String>,
    /// `contents` and `parents`: every level, not just the next.
    pub recursive: Option<bool>,
    /// `members`: further pools, comma-separated; the answer is what is in
    /// every one of them.
    pub and: Option<String>,
}

/// The views a path may name, with the kind each needs (`None`: any).
pub const VIEWS: &[(&str, Option<Kind>)] = &[
    ("description", None),
    ("locate", None),
    ("contents", None),
    ("parents", None),
    ("ports", None),
    ("members", Some(Kind::Pool)),
    ("addresses", Some(Kind::IpManager)),
    ("placement", Some(Kind::VirtualMachine)),
];

/// The read a path names with the kind it is of (`None`: any), or why
/// there is none.
fn read<'a>(
    coll: Collection,
    name: &'a str,
    view: &str,
    p: &ViewParams,
    pools: &'a mut Vec<String>,
) -> Result<(Read<'a>, Option<Kind>), ApiError> {
    let no_path = || {
        ApiError::NoSuchPath(format!(
            "/apis/{API_VERSION}/{}/{name}/{view}",
            coll.plural()
        ))
    };
    let needs = VIEWS
        .iter()
        .find(|(v, _)| *v == view)
        .ok_or_else(no_path)?
        .1;
    if needs.is_some() && coll.kind() != needs {
        return Err(no_path());
    }
    let recursive = p.recursive.unwrap_or(false);
    let read = match view {
        "description" => Read::Description(name),
        "locate" => Read::Locate(name),
        "contents" => Read::Contents { name, recursive },
        "parents" => Read::Parents { name, recursive },
        "ports" => Read::Ports(name),
        "addresses" => Read::Addresses(name),
        "placement" => Read::Placement(name),
        _ => {
            pools.push(name.to_string());
            let more = p.and.as_deref().unwrap_or("").split(',');
            pools.extend(more.filter(|s| !s.is_empty()).map(str::to_string));
            Read::Members(pools)
        }
    };
    Ok((read, needs))
}

/// One view of one object, read at one revision.
pub async fn view(
    api: &Api,
    coll: Collection,
    name: &str,
    view: &str,
    p: ViewParams,
) -> Result<Json, ApiError> {
    let at = revision(p.resource_version.as_deref())?;
    let mut pools = Vec::new();
    let (read, needs) = read(coll, name, view, &p, &mut pools)?;
    let answer = api
        .store
        .view(&read.scope(), at, |inv| {
            // The object must be of the path's collection, as for a GET of
            // it; a view of one kind says itself what else the name is.
            let id = inv.id_of(name)?;
            if needs.is_none() && !inv.kind_of(id).is_some_and(|k| coll.holds(k)) {
                return Err(CoreError::NotFound(name.to_string()));
            }
            read.view(inv)
        })
        .await;
    match answer {
        Err(StoreError::Core(CoreError::NotFound(n))) if n == name => Err(coll.not_found(name)),
        other => Ok(other?),
    }
}

/// `clusto fsck` over HTTP: every violation (none: an empty list).
pub async fn fsck(api: &Api, at: Option<i64>) -> Result<Json, ApiError> {
    Ok(json!({ "violations": api.store.fsck(at).await? }))
}
