//! Reads: lists (paged, or streamed whole), one object, its attributes,
//! its history, the revision log. Each read is one store snapshot, and
//! costs what it returns, not the size of the inventory.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use clusto_core::query::Query;
use clusto_core::{EntityId, Inventory, Kind};
use clusto_store::{HistoryQuery, Scope, Snapshot, Store};
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use crate::cache::ObjectCache;
use crate::status::ApiError;
use crate::{API_VERSION, Api};

/// Names per page read from the store while listing.
const PAGE: usize = 500;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    /// An expression in clusto's query language.
    pub query: Option<String>,
    pub limit: Option<usize>,
    #[serde(rename = "continue")]
    pub continue_: Option<String>,
    pub resource_version: Option<String>,
    pub watch: Option<bool>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: Option<bool>,
}

/// `resourceVersion` as a store revision.
pub fn revision(rv: Option<&str>) -> Result<Option<i64>, ApiError> {
    match rv {
        None | Some("") => Ok(None),
        Some(s) => match s.parse::<i64>() {
            Ok(r) if r >= 0 => Ok(Some(r)),
            _ => Err(ApiError::BadRequest(format!(
                "resourceVersion {s:?} is not a revision number"
            ))),
        },
    }
}

/// What a path's plural selects: one kind (`servers`), or `entities`,
/// every kind at once — clusto's extension for searching, looking a name
/// up without knowing its kind, and one watch over everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collection {
    Of(Kind),
    Entities,
}

impl Collection {
    pub const ENTITIES: &'static str = "entities";

    /// The collection a path segment names.
    pub fn parse(plural: &str) -> Result<Collection, ApiError> {
        if plural == Self::ENTITIES {
            return Ok(Collection::Entities);
        }
        Kind::ALL
            .into_iter()
            .find(|k| k.plural() == plural)
            .map(Collection::Of)
            .ok_or_else(|| ApiError::NoSuchPath(format!("/apis/{API_VERSION}/{plural}")))
    }

    pub fn kind(self) -> Option<Kind> {
        match self {
            Collection::Of(k) => Some(k),
            Collection::Entities => None,
        }
    }

    pub fn holds(self, kind: Kind) -> bool {
        self.kind().is_none_or(|k| k == kind)
    }

    pub fn plural(self) -> String {
        self.kind()
            .map_or_else(|| Self::ENTITIES.to_string(), |k| k.plural())
    }

    /// The kind of one item (`Entity` for the mixed collection).
    pub fn item_kind(self) -> &'static str {
        self.kind().map_or("Entity", |k| k.as_str())
    }

    pub(crate) fn not_found(self, name: &str) -> ApiError {
        ApiError::NotFound {
            plural: self.plural(),
            name: name.to_string(),
        }
    }
}

/// A continue token: the revision the list is read at and the last name
/// served, so every page of one list is the same revision.
fn encode_continue(rev: i64, after: &str) -> String {
    format!("{rev}:{after}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::BadRequest("invalid continue token; list again from the start".into());
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (rev, after) = text.split_once(':').ok_or_else(bad)?;
    Ok((rev.parse().map_err(|_| bad())?, after.to_string()))
}

/// Where a list starts: its revision and the name after which to go on.
struct Cursor {
    at: Option<i64>,
    after: Option<String>,
}

impl Cursor {
    fn of(p: &ListParams) -> Result<Cursor, ApiError> {
        match &p.continue_ {
            Some(t) => {
                let (rev, after) = decode_continue(t)?;
                Ok(Cursor {
                    at: Some(rev),
                    after: Some(after),
                })
            }
            None => Ok(Cursor {
                at: revision(p.resource_version.as_deref())?,
                after: None,
            }),
        }
    }
}

/// The names a list covers, in byte order, from one snapshot.
pub(crate) enum Names {
    /// Paged from the store's name index (every kind for None).
    Kind(Option<Kind>),
    /// Matched by a compiled query (names only; the objects load by page).
    Query(Vec<String>),
}

impl Names {
    async fn page(
        &mut self,
        snap: &mut Snapshot,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>, ApiError> {
        Ok(match self {
            Names::Kind(k) => snap.names(*k, after, n as i64).await?,
            Names::Query(all) => {
                let start = after
                    .map(|a| all.partition_point(|x| x.as_str() <= a))
                    .unwrap_or(0);
                all[start..].iter().take(n).cloned().collect()
            }
        })
    }
}

/// A page's objects that the cache holds at the snapshot's revision, and
/// the view the others are read into (None when every one was cached).
async fn read_page(
    cache: &ObjectCache,
    snap: &mut Snapshot,
    page: &[String],
) -> Result<(Vec<Option<Bytes>>, Option<Inventory>), clusto_store::StoreError> {
    let rev = snap.rev();
    let cached: Vec<Option<Bytes>> = page
        .iter()
        .map(|n| cache.get(rev, n).map(|(_, b)| b))
        .collect();
    let missing: Vec<&String> = page
        .iter()
        .zip(&cached)
        .filter(|(_, c)| c.is_none())
        .map(|(n, _)| n)
        .collect();
    let view = if missing.is_empty() {
        None
    } else {
        Some(snap.load(&Scope::read(missing)).await?)
    };
    Ok((cached, view))
}

pub async fn list(api: &Api, coll: Collection, p: ListParams) -> Result<Response, ApiError> {
    let cursor = Cursor::of(&p)?;
    let mut snap = api.store.snapshot(cursor.at).await?;
    let rev = snap.rev();
    let mut names = match &p.query {
        None => Names::Kind(coll.kind()),
        Some(q) => {
            let mut q = clusto_core::query::parse(q)
                .map_err(|e| ApiError::BadRequest(format!("query: {e}")))?;
            if let Some(kind) = coll.kind() {
                q = Query::And(vec![Query::Kind(kind), q]);
            }
            let mut all = api.store.query(&q, Some(rev)).await?;
            all.sort();
            Names::Query(all)
        }
    };
    let list_kind = match coll.kind() {
        Some(k) => format!("{}List", k.as_str()),
        None => "List".to_string(),
    };
    match p.limit.filter(|l| *l > 0) {
        Some(limit) => {
            let mut page = names
                .page(&mut snap, cursor.after.as_deref(), limit + 1)
                .await?;
            let more = page.len() > limit;
            page.truncate(limit);
            let mut meta = json!({"resourceVersion": rev.to_string()});
            if more && let Some(last) = page.last() {
                meta["continue"] = json!(encode_continue(rev, last));
            }
            let (cached, view) = read_page(&api.cache, &mut snap, &page).await?;
            let cache = api.cache.clone();
            let items = tokio::task::spawn_blocking(move || {
                encode_page(&cache, rev, view.as_ref(), &page, cached, false)
            })
            .await
            // Only a panic while encoding ends the task early.
            .map_err(|e| {
                ApiError::Store(clusto_store::StoreError::Corrupt(format!(
                    "encoding a page: {e}"
                )))
            })?;
            let mut body = format!(
                "{{\"apiVersion\":\"{API_VERSION}\",\"kind\":\"{list_kind}\",\"metadata\":{meta},\"items\":["
            )
            .into_bytes();
            body.extend_from_slice(&items);
            body.extend_from_slice(b"]}");
            Ok((
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response())
        }
        None => Ok(stream_list(
            api.cache.clone(),
            snap,
            names,
            cursor.after,
            list_kind,
        )),
    }
}

/// The whole list as one JSON document written page by page: memory
/// follows a page, not the list. Objects come from the object cache while
/// it is at the list's revision; the rest are read from the store, and two
/// stages overlap: while one page is encoded (on a blocking thread, which
/// also drops its view and caches what it encoded), the next is read.
fn stream_list(
    cache: Arc<ObjectCache>,
    snap: Snapshot,
    names: Names,
    after: Option<String>,
    list_kind: String,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let out = |b: Bytes| {
            let tx = tx.clone();
            async move { tx.send(b).await.is_ok() }
        };
        let head = format!(
            "{{\"apiVersion\":\"{API_VERSION}\",\"kind\":\"{list_kind}\",\"metadata\":{{\"resourceVersion\":\"{}\"}},\"items\":[",
            snap.rev()
        );
        if !out(Bytes::from(head)).await {
            return;
        }
        match each_page(&cache, snap, names, after, out).await {
            Ok(true) => {
                let _ = tx.send(Bytes::from_static(b"]}\n")).await;
            }
            Ok(false) => {} // the client went away
            // The status line is gone; a truncated document tells the client.
            Err(e) => tracing::error!(error = %e, "list stream failed"),
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    }));
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// Why a list stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListStop {
    #[error(transparent)]
    Read(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] clusto_store::StoreError),
    #[error("encoding a page: {0}")]
    Encode(#[from] tokio::task::JoinError),
}

/// Fills the object cache with every object at the head, page by page as a
/// list reads them, so the first list and GET after start are served from
/// memory (as an apiserver's watch cache is). Stops when the cache is full.
pub(crate) async fn warm(store: Store, cache: Arc<ObjectCache>) -> Result<usize, ListStop> {
    // The cache follows the feed; start from a snapshot at its revision.
    let mut snap = store.snapshot(None).await?;
    for _ in 0..100 {
        if snap.rev() == cache.rev() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        snap = store.snapshot(None).await?;
    }
    let full = || async { !cache.is_full() };
    each_page(&cache, snap, Names::Kind(None), None, |_| full()).await?;
    Ok(cache.len())
}

/// Every page of a list, encoded and handed to `out` in order (false from
/// `out`: stop, the reader is gone). Ok(false) when stopped that way.
pub(crate) async fn each_page<F, Fut>(
    cache: &Arc<ObjectCache>,
    mut snap: Snapshot,
    mut names: Names,
    mut after: Option<String>,
    out: F,
) -> Result<bool, ListStop>
where
    F: Fn(Bytes) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let rev = snap.rev();
    let mut encoding: Option<tokio::task::JoinHandle<Vec<u8>>> = None;
    let mut first = true;
    loop {
        let page = names.page(&mut snap, after.as_deref(), PAGE).await?;
        let full = page.len() == PAGE;
        after = page.last().cloned();
        let (cached, view) = read_page(cache, &mut snap, &page).await?;
        if let Some(done) = encoding.take()
            && !out(Bytes::from(done.await?)).await
        {
            return Ok(false);
        }
        if !page.is_empty() {
            let comma = !first;
            first = false;
            let cache = cache.clone();
            encoding = Some(tokio::task::spawn_blocking(move || {
                encode_page(&cache, rev, view.as_ref(), &page, cached, comma)
            }));
        }
        if !full {
            break;
        }
    }
    if let Some(done) = encoding.take() {
        return Ok(out(Bytes::from(done.await?)).await);
    }
    Ok(true)
}

/// A page's objects as JSON text, comma-separated (led by a comma when it
/// follows another page): cached ones as they are, the others encoded
/// from `view` and cached with the entities each is made from.
fn encode_page(
    cache: &ObjectCache,
    rev: i64,
    view: Option<&Inventory>,
    page: &[String],
    cached: Vec<Option<Bytes>>,
    comma: bool,
) -> Vec<u8> {
    let mut chunk = Vec::with_capacity(page.len() * 600);
    let mut written = 0;
    for (name, hit) in page.iter().zip(cached) {
        let body = match (hit, view) {
            (Some(b), _) => b,
            (None, Some(inv)) => {
                let Ok(id) = inv.id_of(name) else { continue };
                let Some(kind) = inv.kind_of(id) else {
                    continue;
                };
                // Writing into a Vec cannot fail.
                let b =
                    Bytes::from(serde_json::to_vec(&inv.resource(id, false)).unwrap_or_default());
                cache.put(rev, kind, name, b.clone(), &inv.resource_view(id));
                b
            }
            (None, None) => continue,
        };
        if comma || written > 0 {
            chunk.push(b',');
        }
        chunk.extend_from_slice(&body);
        written += 1;
    }
    chunk
}

/// One object of the collection named `name`, as of `at`, with the view
/// it was read from and that view's revision.
async fn one(
    api: &Api,
    coll: Collection,
    name: &str,
    at: Option<i64>,
) -> Result<(i64, Inventory, EntityId), ApiError> {
    let (rev, inv) = api.store.load_scope(&Scope::read([name]), at).await?;
    let id = inv.id_of(name).map_err(|_| coll.not_found(name))?;
    if !inv.kind_of(id).is_some_and(|k| coll.holds(k)) {
        return Err(coll.not_found(name));
    }
    Ok((rev, inv, id))
}

/// A rack's elevation, as `clusto rack show RACK -o json` prints it.
pub async fn elevation(
    api: &Api,
    coll: Collection,
    name: &str,
    p: ObjectParams,
) -> Result<Json_, ApiError> {
    if coll != Collection::Of(Kind::Rack) {
        return Err(ApiError::NoSuchPath(format!(
            "/apis/{API_VERSION}/{}/{name}/elevation: only racks have one",
            coll.plural()
        )));
    }
    let at = revision(p.resource_version.as_deref())?;
    let scope = Scope::read([name]).with_descendants_of(name);
    let (_, inv) = api.store.load_scope(&scope, at).await?;
    let id = inv.id_of(name).map_err(|_| coll.not_found(name))?;
    if inv.kind_of(id) != Some(Kind::Rack) {
        return Err(coll.not_found(name));
    }
    Ok(inv.elevation(id).to_json(name))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectParams {
    pub resource_version: Option<String>,
    pub merged: Option<bool>,
    /// Counts and revisions: a negative one is refused as a bad parameter.
    pub limit: Option<u64>,
    pub since: Option<u64>,
}

/// A count or revision from a request, as the store's integer.
pub fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One object, encoded. Reads at the head come from the object cache when
/// the store is still at the cache's revision (one cheap query instead of
/// a scope load).
pub async fn get(
    api: &Api,
    coll: Collection,
    name: &str,
    p: ObjectParams,
) -> Result<Bytes, ApiError> {
    let at = revision(p.resource_version.as_deref())?;
    if at.is_none() {
        let head = api.store.head().await?;
        let hit = api.cache.get(head, name);
        api.metrics.cache(hit.is_some());
        match hit {
            Some((kind, body)) if coll.holds(kind) => return Ok(body),
            Some(_) => return Err(coll.not_found(name)),
            None => {}
        }
    }
    let (rev, inv, id) = one(api, coll, name, at).await?;
    let body = Bytes::from(inv.resource(id, false).to_string());
    if at.is_none()
        && let Some(kind) = inv.kind_of(id)
    {
        api.cache
            .put(rev, kind, name, body.clone(), &inv.resource_view(id));
    }
    Ok(body)
}

/// Attributes, each with the entity it comes from (with `merged`, the
/// containers' too, nearest first, as `attr get --merged` shows them).
pub async fn attributes(
    api: &Api,
    coll: Collection,
    name: &str,
    p: ObjectParams,
) -> Result<Json_, ApiError> {
    let (_, inv, id) = one(api, coll, name, revision(p.resource_version.as_deref())?).await?;
    let rows: Vec<Json_> = if p.merged.unwrap_or(false) {
        inv.merged_attrs(id, None, None, false)
            .into_iter()
            .map(|m| inv.attr_row_json(m.attr, m.source))
            .collect()
    } else {
        inv.attrs(id, false)
            .into_iter()
            .map(|a| inv.attr_row_json(a, id))
            .collect()
    };
    Ok(json!({"apiVersion": API_VERSION, "kind": "AttributeList", "items": rows}))
}

/// Revisions that touched the object, newest first (default 50).
pub async fn history(
    api: &Api,
    coll: Collection,
    name: &str,
    p: ObjectParams,
) -> Result<Json_, ApiError> {
    // The object must exist now or have existed: history outlives deletes.
    let q = HistoryQuery {
        name: Some(name.to_string()),
        limit: Some(p.limit.map_or(50, count)).filter(|l| *l > 0),
        since: p.since.map(count),
    };
    let mut items = Vec::new();
    let r = api
        .store
        .history_each(&q, |e| {
            items.push(e.to_json());
            Ok::<(), clusto_store::StoreError>(())
        })
        .await;
    match r {
        Err(clusto_store::StoreError::Core(clusto_core::CoreError::NotFound(_))) => {
            Err(coll.not_found(name))
        }
        other => {
            other?;
            Ok(json!({"apiVersion": API_VERSION, "kind": "HistoryList", "items": items}))
        }
    }
}

pub async fn revisions(
    store: &Store,
    limit: Option<i64>,
    since: Option<i64>,
) -> Result<Json_, ApiError> {
    let items: Vec<Json_> = store
        .revisions(Some(limit.unwrap_or(50)).filter(|l| *l > 0), since)
        .await?
        .into_iter()
        .map(|r| {
            json!({
                "revision": r.rev,
                "time": clusto_core::time::format_unix_ms(r.at_ms),
                "user": r.user,
                "manager": r.manager,
                "message": r.message,
            })
        })
        .collect();
    Ok(json!({"apiVersion": API_VERSION, "kind": "RevisionList", "items": items}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_refuse_garbage() {
        let t = encode_continue(42, "gen-s0001:x");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "gen-s0001:x".to_string())
        );
        for bad in ["zz", "abc", "", "3a3a"] {
            assert!(decode_continue(bad).is_err(), "{bad}");
        }
    }
}
