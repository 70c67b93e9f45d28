//! `clusto serve`: the inventory over HTTP, shaped like the Kubernetes API
//! so the objects are exactly what `clusto get -o json` prints.
//!
//! - `GET /apis/clusto.dev/v1alpha1/{plural}`: list (`?query=`, `?limit=` +
//!   `?continue=`, `?resourceVersion=`), or with `?watch=true` a watch.
//! - `GET …/{plural}/{name}`, `…/{name}/attributes[?merged=true]`,
//!   `…/{name}/history`, `GET /apis/clusto.dev/v1alpha1/revisions`.
//! - `POST /apis/clusto.dev/v1alpha1/plan` and `…/apply` take manifests
//!   (YAML or JSON; `?applySet=`, `?prune=true`, `?forceConflicts=true`,
//!   `?dryRun=All`) and answer with the plan as `clusto plan -o json` does.
//! - Errors are `Status` objects; bearer tokens from a file.

pub mod auth;
pub mod cache;
pub mod engine;
pub mod metrics;
pub mod openapi;
pub mod read;
pub mod status;
pub mod ui;
pub mod views;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, AUTHORIZATION};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use clusto_manifest::{ApplyOptions, Source, parse_sources};
use clusto_store::{RevisionMeta, Store};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{Caller, Role, Tokens};
use crate::read::{Collection, ListParams, ObjectParams};
use crate::status::{ApiError, Params, Segments, Text};
use crate::watch::{Hub, WatchOptions};

pub const API_VERSION: &str = "clusto.dev/v1alpha1";

/// What the API's handlers share.
pub struct Api {
    pub store: Store,
    pub tokens: Tokens,
    /// Reads without a token.
    pub anonymous_read: bool,
    pub hub: Arc<Hub>,
    pub cache: Arc<cache::ObjectCache>,
    /// Register these into the server's registry (`ApiMetrics::register`).
    pub metrics: metrics::ApiMetrics,
}

impl Api {
    pub async fn new(
        store: Store,
        tokens: Tokens,
        anonymous_read: bool,
        watch: WatchOptions,
    ) -> Result<Arc<Api>, clusto_store::StoreError> {
        let metrics = metrics::ApiMetrics::default();
        let hub = Hub::start(store.clone(), watch, metrics.watchers.clone()).await?;
        let cache = Arc::new(cache::ObjectCache::new(hub.published()));
        follow_into_cache(&hub, cache.clone());
        let (warming, to_warm) = (store.clone(), cache.clone());
        tokio::spawn(async move {
            let t = std::time::Instant::now();
            match read::warm(warming, to_warm).await {
                Ok(n) => {
                    // Warming read the whole inventory a page at a time.
                    clusto_store::release_freed_memory();
                    tracing::info!(objects = n, elapsed = ?t.elapsed(), "object cache warm")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "object cache not warmed; reads go to the store")
                }
            }
        });
        Ok(Arc::new(Api {
            store,
            tokens,
            anonymous_read,
            hub,
            cache,
            metrics,
        }))
    }
}

/// Keeps the object cache exact as revisions land.
fn follow_into_cache(hub: &Arc<Hub>, cache: Arc<cache::ObjectCache>) {
    let mut rx = hub.subscribe();
    let hub = hub.clone();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(b) => cache.advance(b.rev, &b.touched),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    cache.reset(hub.published())
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// The API's routes and the web UI's (merge them with
/// `clusto_http::routes` for the probes and metrics).
pub fn router(api: Arc<Api>) -> Router {
    let base = format!("/apis/{API_VERSION}");
    Router::new()
        .route(&format!("{base}/revisions"), get(revisions))
        .route(&format!("{base}/fsck"), get(fsck))
        .route(&format!("{base}/plan"), post(plan))
        .route(&format!("{base}/apply"), post(apply))
        .route(&format!("{base}/{{plural}}"), get(list))
        .route(&format!("{base}/{{plural}}/{{name}}"), get(object))
        .route(
            &format!("{base}/{{plural}}/{{name}}/attributes"),
            get(attributes),
        )
        .route(&format!("{base}/{{plural}}/{{name}}/history"), get(history))
        .route(
            &format!("{base}/{{plural}}/{{name}}/elevation"),
            get(elevation),
        )
        .route(&format!("{base}/{{plural}}/{{name}}/{{view}}"), get(view))
        .route("/openapi/v3", get(|| async { Json(openapi::document()) }))
        .fallback(|req: Request| async move { ApiError::NoSuchPath(req.uri().path().to_string()) })
        .method_not_allowed_fallback(status::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            api.metrics.clone(),
            metrics::record,
        ))
        .merge(ui::routes())
        .with_state(api)
}

/// Every API request names its caller: a valid bearer token's user, or
/// anonymous (a viewer) when anonymous reads are on. Writes check roles in
/// their handlers.
async fn authenticate(State(api): State<Arc<Api>>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let caller = match presented {
        Some(t) => match api.tokens.check(t) {
            Some(c) => c,
            None => return ApiError::Unauthorized.into_response(),
        },
        None if api.anonymous_read => Caller {
            user: "anonymous".into(),
            role: Role::Viewer,
        },
        None => return ApiError::Unauthorized.into_response(),
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn require(c: &Caller, role: Role, what: &'static str) -> Result<(), ApiError> {
    if c.role >= role && !(c.user == "anonymous" && role > Role::Viewer) {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            user: c.user.clone(),
            role: c.role.as_str(),
            what,
        })
    }
}

async fn list(
    State(api): State<Arc<Api>>,
    Segments(plural): Segments<String>,
    Params(p): Params<ListParams>,
) -> Result<Response, ApiError> {
    let coll = Collection::parse(&plural)?;
    if p.watch.unwrap_or(false) {
        let from = read::revision(p.resource_version.as_deref())?;
        let timeout = p.timeout_seconds.map(Duration::from_secs);
        return api.hub.watch(api.store.clone(), coll, from, timeout).await;
    }
    read::list(&api, coll, p).await
}

async fn object(
    State(api): State<Arc<Api>>,
    Segments((plural, name)): Segments<(String, String)>,
    Params(p): Params<ObjectParams>,
) -> Result<Response, ApiError> {
    let body = read::get(&api, Collection::parse(&plural)?, &name, p).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

async fn attributes(
    State(api): State<Arc<Api>>,
    Segments((plural, name)): Segments<(String, String)>,
    Params(p): Params<ObjectParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        read::attributes(&api, Collection::parse(&plural)?, &name, p).await?,
    ))
}

async fn history(
    State(api): State<Arc<Api>>,
    Segments((plural, name)): Segments<(String, String)>,
    Params(p): Params<ObjectParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        read::history(&api, Collection::parse(&plural)?, &name, p).await?,
    ))
}

async fn elevation(
    State(api): State<Arc<Api>>,
    Segments((plural, name)): Segments<(String, String)>,
    Params(p): Params<ObjectParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        read::elevation(&api, Collection::parse(&plural)?, &name, p).await?,
    ))
}

async fn view(
    State(api): State<Arc<Api>>,
    Segments((plural, name, view)): Segments<(String, String, String)>,
    Params(p): Params<views::ViewParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let coll = Collection::parse(&plural)?;
    Ok(Json(views::view(&api, coll, &name, &view, p).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AtParams {
    resource_version: Option<String>,
}

/// Reads the whole store: for operators, not for every viewer.
async fn fsck(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    Params(p): Params<AtParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require(&caller, Role::Admin, "run fsck")?;
    let at = read::revision(p.resource_version.as_deref())?;
    Ok(Json(views::fsck(&api, at).await?))
}

#[derive(Debug, Default, Deserialize)]
struct RevisionParams {
    limit: Option<u64>,
    since: Option<u64>,
}

async fn revisions(
    State(api): State<Arc<Api>>,
    Params(p): Params<RevisionParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        read::revisions(
            &api.store,
            p.limit.map(read::count),
            p.since.map(read::count),
        )
        .await?,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WriteParams {
    apply_set: Option<String>,
    #[serde(default)]
    prune: bool,
    #[serde(default)]
    force_conflicts: bool,
    dry_run: Option<String>,
}

impl WriteParams {
    fn options(&self) -> ApplyOptions {
        ApplyOptions {
            apply_set: self.apply_set.clone().unwrap_or_else(|| "api".into()),
            prune: self.prune,
            force_conflicts: self.force_conflicts,
        }
    }
}

/// Manifests from a request body (YAML, or JSON, which is YAML too).
fn objects(body: String) -> Result<Vec<clusto_manifest::Object>, ApiError> {
    let source = Source {
        file: "request".into(),
        text: body,
    };
    let (objects, errors) = parse_sources(&[source]);
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    // As `kubectl apply` refuses no objects: an empty body is a client's
    // mistake far more often than a wish to prune a whole apply set.
    if objects.is_empty() {
        return Err(ApiError::BadRequest(
            "the request body holds no manifests".into(),
        ));
    }
    Ok(objects)
}

fn plan_json(plan: &clusto_manifest::Plan, base: i64) -> serde_json::Value {
    json!({"baseRevision": base, "changes": plan.changes, "summary": plan.summary})
}

/// How a plan is answered: the JSON of `clusto plan -o json`, or with
/// `Accept: text/plain` the text `clusto plan` prints (the UI's preview).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PlanForm {
    Json,
    Text,
}

impl PlanForm {
    fn of(headers: &HeaderMap) -> PlanForm {
        let accept = headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("text/plain") && !accept.contains("application/json") {
            PlanForm::Text
        } else {
            PlanForm::Json
        }
    }
}

async fn plan_response(
    api: &Api,
    p: &WriteParams,
    form: PlanForm,
    body: String,
) -> Result<Response, ApiError> {
    let objects = objects(body)?;
    let (head, mut inv) = api.store.load_head().await?;
    let plan = engine::plan(&mut inv, &objects, &p.options()).map_err(ApiError::Invalid)?;
    Ok(match form {
        PlanForm::Json => Json(plan_json(&plan, head)).into_response(),
        PlanForm::Text => plan.render(&|_, text| text.to_string()).into_response(),
    })
}

async fn plan(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Params(p): Params<WriteParams>,
    Text(body): Text,
) -> Result<Response, ApiError> {
    plan_response(&api, &p, PlanForm::of(&headers), body).await
}

async fn apply(
    State(api): State<Arc<Api>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Params(p): Params<WriteParams>,
    Text(body): Text,
) -> Result<Response, ApiError> {
    if p.dry_run.as_deref() == Some("All") {
        return plan_response(&api, &p, PlanForm::of(&headers), body).await;
    }
    if let Some(other) = &p.dry_run {
        return Err(ApiError::BadRequest(format!(
            "dryRun={other:?}: the only dry run is All"
        )));
    }
    require(&caller, Role::Editor, "apply")?;
    if p.prune || p.force_conflicts {
        require(&caller, Role::Admin, "prune or force conflicts")?;
    }
    let objects = objects(body)?;
    let opts = p.options();
    let meta = RevisionMeta {
        user: caller.user.clone(),
        message: format!("apply via API ({})", opts.apply_set),
        manager: opts.owner(),
        at_ms: None,
    };
    let w = engine::apply_manifests(
        &api.store,
        engine::ApplyRequest {
            meta: &meta,
            objects,
            opts: &opts,
            expect_head: None,
            reviewed: None,
        },
    )
    .await?;
    Ok(Json(
        json!({"revision": w.revision, "changes": w.value.changes, "summary": w.value.summary}),
    )
    .into_response())
}
