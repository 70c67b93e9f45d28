//! The Kubernetes side: watch every clusto kind, gather changes into
//! batches, apply each batch to the store, then write finalizers, status
//! and events back. Only the replica holding the lease acts; the others
//! keep their caches warm.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusto_core::Kind;
use clusto_manifest::crd::{GROUP, ObjectStatus, VERSION};
use clusto_store::{Store, StoreError};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use serde_json::json;

use crate::batch::{Batch, apply_batch, refresh};
use crate::convert::{self, FINALIZER, Key, Outcome};
use crate::lease::LeaderElector;

/// The field manager of everything this controller writes.
pub const FIELD_MANAGER: &str = "clusto-controller";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

pub struct Options {
    /// Watch one namespace (None: all).
    pub namespace: Option<String>,
    /// How long changes gather before a batch is applied.
    pub batch_window: Duration,
    /// How often store revisions are checked for status changes.
    pub poll: Duration,
    /// Leader election; None acts alone.
    pub leader: Option<LeaderElector>,
    /// Who writes the events (`clusto-controller`, the pod's name).
    pub reporter: Reporter,
    pub metrics: crate::Metrics,
}

/// What reconciling needs: the API client and the store.
pub struct Context {
    pub client: kube::Client,
    pub store: Store,
    recorder: Recorder,
    namespace: Option<String>,
    metrics: crate::Metrics,
}

pub fn api_resource(kind: Kind) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, VERSION, kind.as_str()),
        &kind.plural(),
    )
}

impl Context {
    fn api(&self, kind: Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = api_resource(kind);
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }
}

/// Resources seen and work due, between batches.
#[derive(Default)]
struct State {
    /// The newest version of every resource seen.
    seen: BTreeMap<Key, DynamicObject>,
    /// Changed since the last batch.
    pending: BTreeSet<Key>,
    /// When the first of `pending` came: the batch goes a window later.
    gathering_since: Option<Instant>,
    /// Refused or waiting: when to try again, and how many tries so far.
    retry: BTreeMap<Key, (Instant, u32)>,
    /// Synced resources by the entity id their object has in the store.
    by_entity: HashMap<i64, Key>,
    /// The refusal each resource was last warned of: a retry that comes
    /// before the watch shows our own status write must not warn again.
    warned: HashMap<Key, String>,
    /// The store revision statuses are as of.
    rev: i64,
}

fn watch_all(
    ctx: &Context,
) -> impl Stream<Item = (Kind, Result<watcher::Event<DynamicObject>, watcher::Error>)> + use<> {
    let streams: Vec<_> = Kind::ALL
        .into_iter()
        .map(|kind| {
            let api = ctx.api(kind, ctx.namespace.as_deref());
            watcher(api, watcher::Config::default())
                .map(move |ev| (kind, ev))
                .boxed()
        })
        .collect();
    futures::stream::select_all(streams)
}

/// Runs until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    store: Store,
    opts: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SyncError> {
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), opts.reporter.clone()),
        client,
        store,
        namespace: opts.namespace.clone(),
        metrics: opts.metrics.clone(),
    });
    let mut state = State {
        rev: ctx.store.head().await?,
        ..State::default()
    };
    let mut events = watch_all(&ctx);
    let mut leader = opts.leader.is_none();
    ctx.metrics.set_leader(leader);
    let mut next_lease = Instant::now();
    let mut next_poll = Instant::now() + opts.poll;
    tokio::pin!(shutdown);
    loop {
        let due = next_due(&state, opts.batch_window, next_lease, next_poll);
        tokio::select! {
            _ = &mut shutdown => break,
            ev = events.next() => match ev {
                Some((kind, Ok(ev))) => state.observe(kind, ev),
                Some((kind, Err(e))) => tracing::warn!(%kind, error = %e, "watch failed; retrying"),
                None => break,
            },
            _ = tokio::time::sleep_until(due.into()) => {}
        }
        let now = Instant::now();
        if let Some(l) = &opts.leader
            && now >= next_lease
        {
            let was = leader;
            leader = l.try_acquire().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "lease");
                false
            });
            if leader != was {
                tracing::info!(leader, "leadership changed");
            }
            ctx.metrics.set_leader(leader);
            next_lease = now + l.renew_every();
        }
        ctx.metrics.set_resources(state.seen.len());
        if !leader {
            continue;
        }
        if let Err(e) = step(
            &ctx,
            &mut state,
            now,
            opts.batch_window,
            &mut next_poll,
            opts.poll,
        )
        .await
        {
            tracing::warn!(error = %e, "sync failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    if let Some(l) = &opts.leader
        && leader
    {
        l.release().await?;
    }
    Ok(())
}

fn next_due(state: &State, window: Duration, lease: Instant, poll: Instant) -> Instant {
    let mut due = lease.min(poll);
    if let Some(t) = state.gathering_since {
        due = due.min(t + window);
    }
    if let Some((t, _)) = state.retry.values().min_by_key(|(t, _)| *t) {
        due = due.min(*t);
    }
    due
}

impl State {
    fn mark(&mut self, key: Key) {
        self.pending.insert(key);
        self.gathering_since.get_or_insert_with(Instant::now);
    }

    fn observe(&mut self, kind: Kind, ev: watcher::Event<DynamicObject>) {
        match ev {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                let key = Key::of(kind, &o);
                let old = self.seen.get(&key);
                if old.is_some_and(|old| convert::older(&o, old)) {
                    // Our own write's response got here first.
                    return;
                }
                if convert::needs_sync(old, &o) {
                    self.mark(key.clone());
                }
                self.seen.insert(key, o);
            }
            watcher::Event::Delete(o) => {
                let key = Key::of(kind, &o);
                self.seen.remove(&key);
                self.pending.remove(&key);
                self.retry.remove(&key);
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }
}

/// One round: the batch of what changed or is due again, then statuses the
/// store changed by itself.
async fn step(
    ctx: &Context,
    state: &mut State,
    now: Instant,
    window: Duration,
    next_poll: &mut Instant,
    poll: Duration,
) -> Result<(), SyncError> {
    let mut due = Vec::new();
    for (key, (t, _)) in state.retry.iter_mut().filter(|(_, (t, _))| *t <= now) {
        // Taken up now; the outcome sets the next time (the count stays
        // for the back-off).
        *t = now + Duration::from_secs(3600);
        due.push(key.clone());
    }
    for key in due {
        state.mark(key);
    }
    if state.gathering_since.is_some_and(|t| now >= t + window) {
        state.gathering_since = None;
        let keys = std::mem::take(&mut state.pending);
        sync(ctx, state, keys).await?;
    }
    if now >= *next_poll {
        *next_poll = now + poll;
        follow_store(ctx, state).await?;
    }
    Ok(())
}

async fn sync(ctx: &Context, state: &mut State, keys: BTreeSet<Key>) -> Result<(), SyncError> {
    let mut batches: BTreeMap<String, Batch> = BTreeMap::new();
    let mut missing = Vec::new();
    for key in keys {
        let Some(o) = state.seen.get(&key).cloned() else {
            continue;
        };
        let batch = batches
            .entry(key.namespace.clone())
            .or_insert_with(|| Batch {
                namespace: key.namespace.clone(),
                ..Batch::default()
            });
        if convert::deleting(&o) {
            if convert::has_finalizer(&o) {
                batch.deleting.push(key);
            }
            continue;
        }
        if !convert::has_finalizer(&o) {
            missing.push(key.clone());
        }
        let source = convert::manifest(&key, &o);
        batch.live.push((key, source));
    }
    // The finalizer goes on before the object exists in the store, so
    // deleting the resource can never leave it behind.
    let added = concurrently(missing, |key| async move {
        let r = add_finalizer(ctx, &key).await;
        (key, r)
    })
    .await;
    let mut gone = BTreeSet::new();
    for (key, r) in added {
        match r? {
            Some(updated) => {
                state.seen.insert(key, updated);
            }
            None => {
                gone.insert(key);
            }
        }
    }
    for mut batch in batches.into_values() {
        batch.live.retain(|(k, _)| !gone.contains(k));
        if batch.live.is_empty() && batch.deleting.is_empty() {
            continue;
        }
        let started = Instant::now();
        let applied = apply_batch(&ctx.store, batch).await?;
        ctx.metrics.batch(started.elapsed());
        let next = applied.revision == Some(state.rev + 1);
        let touched = applied.touched;
        let members: BTreeSet<Key> = applied.outcomes.keys().cloned().collect();
        write_back(ctx, state, applied.outcomes).await;
        // The batch's statuses were read after its revision: when it is the
        // next one, following the store need not read it again (at 10,000
        // resources, 70,000 rows); only the other resources it touched
        // (the racks servers went into) are refreshed.
        if next {
            state.rev += 1;
            let others = synced_keys(state, &touched, &members);
            if !others.is_empty() {
                let outcomes = refresh(&ctx.store, &others).await?;
                write_back(ctx, state, outcomes).await;
            }
        }
    }
    Ok(())
}

/// The synced resources whose objects are among `ids`, but for `except`
/// and those waiting for a retry.
fn synced_keys(
    state: &State,
    ids: &BTreeSet<clusto_core::EntityId>,
    except: &BTreeSet<Key>,
) -> Vec<Key> {
    ids.iter()
        .filter_map(|id| state.by_entity.get(&id.0))
        .filter(|k| !except.contains(*k) && !state.retry.contains_key(*k))
        .cloned()
        .collect()
}

/// Requests to the apiserver in flight at once (finalizers, statuses).
const IN_FLIGHT: usize = 16;

async fn concurrently<T, F, Fut>(items: Vec<T>, f: F) -> Vec<Fut::Output>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future,
{
    futures::stream::iter(items)
        .map(f)
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}

/// What the apiserver is told about one resource after a batch.
enum Write {
    /// Drop the finalizer: the object is gone from the store.
    Release,
    /// The new status, with a Warning event when a refusal is new.
    Status {
        status: Box<ObjectStatus>,
        warn: Option<String>,
    },
}

/// Outcomes written back, many requests in flight; one that fails is
/// tried again shortly.
async fn write_back(ctx: &Context, state: &mut State, outcomes: BTreeMap<Key, Outcome>) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let writes: Vec<(Key, DynamicObject, Write)> = outcomes
        .into_iter()
        .filter_map(|(key, outcome)| {
            let o = state.seen.get(&key)?.clone();
            ctx.metrics.outcome(&outcome);
            let w = bookkeep(state, &key, &o, &outcome, &now)?;
            Some((key, o, w))
        })
        .collect();
    let done = concurrently(writes, |(key, o, w)| async move {
        let r = perform(ctx, &key, &o, w).await;
        (key, r)
    })
    .await;
    for (key, r) in done {
        match r {
            Ok(Some(updated)) => {
                state.seen.insert(key, updated);
            }
            Ok(None) => {}
            Err(e) => {
                ctx.metrics.write_failed();
                tracing::warn!(resource = %key.file(), error = %e, "writing back failed; retrying");
                let tries = state.retry.get(&key).map(|(_, n)| *n).unwrap_or(0);
                state
                    .retry
                    .insert(key, (Instant::now() + Duration::from_secs(2), tries));
            }
        }
    }
}

/// The state side of an outcome (when to look again, which entity is
/// whose) and what, if anything, to write.
fn bookkeep(
    state: &mut State,
    key: &Key,
    o: &DynamicObject,
    outcome: &Outcome,
    now: &str,
) -> Option<Write> {
    let old = convert::current_status(o);
    let mut warn = None;
    match outcome {
        Outcome::Released => {
            state.retry.remove(key);
            state.warned.remove(key);
            state.by_entity.retain(|_, k| k != key);
            return Some(Write::Release);
        }
        Outcome::Terminating => {
            state
                .retry
                .insert(key.clone(), (Instant::now() + Duration::from_secs(2), 0));
        }
        Outcome::Refused(msg) => {
            let tries = state.retry.get(key).map(|(_, n)| n + 1).unwrap_or(0);
            // Often a reference not synced yet: look again, backing off.
            let wait = Duration::from_secs(2u64.saturating_pow(tries.min(8)));
            state
                .retry
                .insert(key.clone(), (Instant::now() + wait, tries));
            let already = state.warned.get(key) == Some(msg)
                || old.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Synced" && c.message == *msg)
                });
            if !already {
                state.warned.insert(key.clone(), msg.clone());
                warn = Some(msg.clone());
            }
        }
        Outcome::Synced { uid, .. } => {
            state.retry.remove(key);
            state.warned.remove(key);
            if let Some(uid) = uid {
                state.by_entity.insert(*uid, key.clone());
            }
        }
    }
    let status = convert::status(key.kind, o.metadata.generation, outcome, old.as_ref(), now);
    (old.as_ref() != Some(&status) || warn.is_some()).then(|| Write::Status {
        status: Box::new(status),
        warn,
    })
}

/// One resource's write: the resource as it now is, if it still exists.
async fn perform(
    ctx: &Context,
    key: &Key,
    o: &DynamicObject,
    w: Write,
) -> Result<Option<DynamicObject>, SyncError> {
    let (status, warn) = match w {
        Write::Release => return release_finalizer(ctx, key, o).await,
        Write::Status { status, warn } => (status, warn),
    };
    if let Some(msg) = warn {
        ctx.metrics.write("event");
        warn_event(ctx, o, key, &msg).await;
    }
    ctx.metrics.write("status");
    let api = ctx.api(key.kind, Some(&key.namespace));
    // A merge patch (measured: server-side apply's field tracking made
    // the apiserver the bottleneck at 10,000 resources); this controller is
    // the status's only writer, so the patch says it all.
    let body = json!({"status": convert::status_patch(o.data.get("status"), &status)});
    not_found_is_none(
        api.patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&body))
            .await,
    )
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Adds this controller's finalizer by server-side apply, whatever
/// others hold (where the chart's admission policy is not installed; with
/// it, the finalizer came with the create).
async fn add_finalizer(ctx: &Context, key: &Key) -> Result<Option<DynamicObject>, SyncError> {
    ctx.metrics.write("finalizer");
    let api = ctx.api(key.kind, Some(&key.namespace));
    let body = json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": key.kind.as_str(),
        "metadata": {"name": key.name, "finalizers": [FINALIZER]},
    });
    not_found_is_none(
        api.patch(&key.name, &apply_params(), &Patch::Apply(&body))
            .await,
    )
}

/// Drops this controller's finalizer, whoever put it on (the admission
/// policy puts it on in the creator's name, so server-side apply would not
/// let this controller take it off): the list without it, on condition
/// that the resource is still the version seen, so a concurrent change to
/// the list is a conflict tried again, never lost.
async fn release_finalizer(
    ctx: &Context,
    key: &Key,
    o: &DynamicObject,
) -> Result<Option<DynamicObject>, SyncError> {
    ctx.metrics.write("finalizer");
    let api = ctx.api(key.kind, Some(&key.namespace));
    let rest: Vec<&String> = (o.metadata.finalizers.iter().flatten())
        .filter(|f| *f != FINALIZER)
        .collect();
    let body = json!({"metadata": {
        "finalizers": rest,
        "resourceVersion": o.metadata.resource_version,
    }});
    not_found_is_none(
        api.patch(&key.name, &PatchParams::default(), &Patch::Merge(&body))
            .await,
    )
}

/// A resource deleted meanwhile is no error: its Delete event follows.
fn not_found_is_none(
    r: Result<DynamicObject, kube::Error>,
) -> Result<Option<DynamicObject>, SyncError> {
    match r {
        Ok(o) => Ok(Some(o)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn warn_event(ctx: &Context, o: &DynamicObject, key: &Key, msg: &str) {
    let reference = ObjectReference {
        api_version: Some(format!("{GROUP}/{VERSION}")),
        kind: Some(key.kind.as_str().to_string()),
        name: o.metadata.name.clone(),
        namespace: o.metadata.namespace.clone(),
        uid: o.metadata.uid.clone(),
        resource_version: o.metadata.resource_version.clone(),
        ..ObjectReference::default()
    };
    let ev = KubeEvent {
        type_: EventType::Warning,
        reason: "Refused".into(),
        note: Some(msg.chars().take(1000).collect()),
        action: "Apply".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
        tracing::warn!(error = %e, resource = %key.file(), "could not record an event");
    }
}

/// Statuses the store changed by itself (the VM controller's phases, an
/// address allocated by hand): only the resources whose objects a newer
/// revision touched are read again.
async fn follow_store(ctx: &Context, state: &mut State) -> Result<(), SyncError> {
    let ch = ctx.store.changes_since(state.rev).await?;
    state.rev = ch.to;
    if ch.is_empty() || state.by_entity.is_empty() {
        return Ok(());
    }
    let keys = synced_keys(state, &ch.entities(), &BTreeSet::new());
    if keys.is_empty() {
        return Ok(());
    }
    let outcomes = refresh(&ctx.store, &keys).await?;
    write_back(ctx, state, outcomes).await;
    Ok(())
}
