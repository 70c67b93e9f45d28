//! The reconcile loop. Level-triggered: every tick reads the inventory,
//! queues each VirtualMachine whose spec changed or whose time came
//! (backoff, recheck, resync), lists what the backends hold once per
//! scope, takes one step per VM ([`clusto_core::vm::decide`]) and writes
//! every status that changed in one revision.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusto_core::vm::{
    Action, BackendKind, Desired, ManagerConfig, Observed, VmStatus, decide, status_for, vm_uid,
};
use clusto_core::{EntityId, Inventory, Kind};
use clusto_store::{Leadership, Leading, RevisionMeta, Store, StoreError};
use futures::StreamExt;
use tracing::Instrument;

use crate::backend::{Backend, BackendError, CreateRequest, Provider, Scope, ec2_scope};
use crate::metrics::Metrics;

pub const LEASE_NAME: &str = "vm-controller";

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Core(#[from] clusto_core::CoreError),
    #[error("not converged within {}s", .0.as_secs())]
    NotConverged(Duration),
}

#[derive(Clone, Debug)]
pub struct Options {
    /// How often the store's head revision is polled.
    pub poll: Duration,
    /// Every VM is reconciled at least this often (drift detection).
    pub resync: Duration,
    /// A VM that is not yet as asked is looked at again after this.
    pub recheck: Duration,
    /// Reconciles per second, all objects together (token bucket).
    pub rate: f64,
    /// Backend requests in flight at once.
    pub workers: usize,
    pub lease_ttl: Duration,
    /// Who holds the lease (host:pid by default).
    pub holder: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            poll: Duration::from_millis(250),
            resync: Duration::from_secs(300),
            recheck: Duration::from_secs(1),
            rate: 200.0,
            workers: 16,
            lease_ttl: Duration::from_secs(15),
            holder: format!(
                "{}:{}",
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "localhost".into()),
                std::process::id()
            ),
        }
    }
}

/// Backoff after the n-th consecutive failure: 5 ms doubling, at most 5 min.
pub fn backoff(failures: u32) -> Duration {
    let ms = 5u64.saturating_mul(1u64 << failures.min(20));
    Duration::from_millis(ms.min(300_000))
}

struct Entry {
    /// What the object asked for at the last revision read, or why it is
    /// invalid.
    desired: Result<Desired, String>,
    due: Instant,
    failures: u32,
}

/// Whether two readings of an object ask for the same thing.
fn same_ask(a: &Result<Desired, String>, b: &Result<Desired, String>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a.fingerprint == b.fingerprint,
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// VMs reconciled.
    pub reconciled: usize,
    /// Whether status (or a finalized deletion) was written.
    pub wrote: bool,
    /// Backend operations (list per scope, create, start, stop, resize,
    /// destroy).
    pub calls: u64,
    /// API requests those made (libvirt RPCs, EC2 HTTP requests).
    pub requests: u64,
    /// Whether this controller holds the lease.
    pub leader: bool,
}

pub struct Controller {
    store: Store,
    provider: Arc<dyn Provider>,
    pub metrics: Arc<Metrics>,
    opts: Options,
    store_uid: String,
    queue: HashMap<EntityId, Entry>,
    /// What the controller reads: VMs, their managers and hosts (see
    /// [`world`]), kept current by following the store's changes.
    view: Option<Inventory>,
    last_rev: i64,
    resync_at: Instant,
    tokens: f64,
    refilled: Instant,
    lead: Leadership,
    /// Set while the rate limit holds objects back.
    throttled_until: Option<Instant>,
}

struct Job {
    desired: Desired,
    scope: Scope,
    backend: Arc<dyn Backend>,
    kind: BackendKind,
    observed: Option<Observed>,
    action: Action,
    uid: String,
    store_uid: String,
}

struct Done {
    desired: Desired,
    action: Action,
    after: Option<Observed>,
    error: Option<BackendError>,
    took: Duration,
}

impl Done {
    /// A VM whose backend was never asked (no scope, no backend, listing
    /// failed).
    fn unreached(desired: Desired, action: Action, error: Option<BackendError>) -> Done {
        Done {
            desired,
            action,
            after: None,
            error,
            took: Duration::ZERO,
        }
    }
}

impl Controller {
    pub async fn new(
        store: Store,
        provider: Arc<dyn Provider>,
        opts: Options,
    ) -> Result<Controller, ControllerError> {
        let store_uid = store.uid().await?;
        let now = Instant::now();
        Ok(Controller {
            store,
            provider,
            metrics: Arc::default(),
            tokens: opts.rate.max(1.0),
            // Everything is due at the first pass anyway.
            resync_at: now + opts.resync,
            lead: Leadership::new(LEASE_NAME, opts.holder.clone(), opts.lease_ttl),
            opts,
            store_uid,
            queue: HashMap::new(),
            view: None,
            last_rev: -1,
            refilled: now,
            throttled_until: None,
        })
    }

    /// The uid of a VM object (its ownership tag in the backend).
    pub fn uid_of(&self, id: EntityId) -> String {
        vm_uid(&self.store_uid, id)
    }

    /// Forces a resync at the next tick (what the timer does every
    /// `resync`).
    pub fn resync_now(&mut self) {
        self.resync_at = Instant::now();
    }

    async fn ensure_lease(&mut self) -> Result<bool, ControllerError> {
        let leading = self.lead.ensure(&self.store).await?;
        if leading == Leading::Acquired {
            // A new leader trusts nothing it saw before.
            self.queue.clear();
            self.last_rev = -1;
        }
        let held = leading != Leading::No;
        self.metrics.set_lease_held(held);
        Ok(held)
    }

    /// Gives up the lease (on shutdown) so a standby takes over at once.
    pub async fn release(&mut self) -> Result<(), ControllerError> {
        Ok(self.lead.release().await?)
    }

    /// When the next object is due (a retry, a recheck or the resync).
    pub fn next_due(&self) -> Instant {
        let due = self
            .queue
            .values()
            .map(|e| e.due)
            .min()
            .unwrap_or(self.resync_at)
            .min(self.resync_at);
        match self.throttled_until {
            Some(t) => due.max(t),
            None => due,
        }
    }

    /// When the loop should look again at the latest.
    pub fn next_wake(&self) -> Instant {
        self.next_due().min(Instant::now() + self.opts.poll)
    }

    /// Runs until `shutdown` resolves, then releases the lease.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ControllerError> {
        tokio::pin!(shutdown);
        loop {
            match self.tick().await {
                Ok(_) => {}
                // The store being away is not fatal: keep the last view
                // and try again.
                Err(e) => tracing::warn!(error = %e, "tick failed"),
            }
            let wake = tokio::time::Instant::from_std(self.next_wake());
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        self.release().await
    }

    /// Ticks until a pass finds nothing to do and nothing falls due within
    /// `quiet`, or this controller does not hold the lease (the last
    /// report says so); gives up after `limit`. For `--once`, tests and
    /// benchmarks.
    pub async fn converge(
        &mut self,
        quiet: Duration,
        limit: Duration,
    ) -> Result<Vec<TickReport>, ControllerError> {
        let started = Instant::now();
        let mut reports = Vec::new();
        loop {
            let r = self.tick().await?;
            let (idle, leader) = (r.reconciled == 0, r.leader);
            reports.push(r);
            if !leader || (idle && self.next_due() > Instant::now() + quiet) {
                return Ok(reports);
            }
            if started.elapsed() > limit {
                return Err(ControllerError::NotConverged(limit));
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(self.next_wake())).await;
        }
    }

    /// One pass of the loop.
    pub async fn tick(&mut self) -> Result<TickReport, ControllerError> {
        let mut report = TickReport::default();
        if !self.ensure_lease().await? {
            return Ok(report);
        }
        report.leader = true;
        let now = Instant::now();
        let head = self.store.head().await?;
        let any_due = now >= self.resync_at || self.queue.values().any(|e| e.due <= now);
        if head == self.last_rev && !any_due {
            return Ok(report);
        }
        let rev = self.follow_store().await?;
        self.last_rev = rev;
        self.metrics.set_revision(rev);
        // The view is lent to this pass, not copied, and put back after it.
        let inv = self.view.take().unwrap_or_default();
        let result = self.pass(&inv, now, report).await;
        self.view = Some(inv);
        result
    }

    /// Queues what changed, then reconciles what is due (as many as the
    /// rate allows) against `inv`, the view as of this tick.
    async fn pass(
        &mut self,
        inv: &Inventory,
        now: Instant,
        mut report: TickReport,
    ) -> Result<TickReport, ControllerError> {
        let rev = self.last_rev;
        self.sync_queue(inv, now);
        if now >= self.resync_at {
            tracing::debug!(vms = self.queue.len(), "resync");
            for e in self.queue.values_mut() {
                e.due = e.due.min(now);
            }
            self.resync_at = now + self.opts.resync;
        }
        let due = self.take_due(now);
        self.metrics.set_due(due.len());
        if due.is_empty() {
            return Ok(report);
        }
        let calls_before = self.metrics.backend_calls();
        let requests_before = self.provider.requests();
        let (jobs, unscoped) = self.plan_jobs(inv, due).await;
        // Record "Provisioning" before any create: an object deleted from
        // now on waits for the controller, so a crash between the
        // backend's create and the status write leaks nothing.
        let first: Vec<(EntityId, String, VmStatus)> = jobs
            .iter()
            .filter(|j| j.action == Action::Create && inv.vm_status(j.desired.id).phase.is_empty())
            .map(|j| {
                (
                    j.desired.id,
                    j.desired.fingerprint.clone(),
                    status_for(&j.desired, None, None, None),
                )
            })
            .collect();
        if !first.is_empty() {
            self.write_status(first, Vec::new()).await?;
        }
        let workers = self.opts.workers.max(1);
        let metrics = self.metrics.clone();
        let mut done: Vec<Done> = futures::stream::iter(jobs)
            .map(|j| execute(j, metrics.clone()))
            .buffer_unordered(workers)
            .collect()
            .await;
        done.extend(unscoped);
        report.reconciled = done.len();
        let mut updates = Vec::new();
        let mut finalize = Vec::new();
        let mut phase_of: HashMap<EntityId, String> = inv
            .entities_of_kind(Kind::VirtualMachine)
            .iter()
            .map(|e| (e.id, inv.vm_phase(e.id)))
            .collect();
        for d in &done {
            let id = d.desired.id;
            // Whether a VM that is not yet as asked is looked at again soon;
            // refusals wait for a spec change or the resync.
            let (result, may_recheck) = match (&d.error, &d.action) {
                (Some(BackendError::Refused(_)), _) | (None, Action::Refuse { .. }) => {
                    ("refused", false)
                }
                (Some(_), _) => ("error", false),
                (None, Action::Finalize) => {
                    finalize.push(id);
                    ("ok", false)
                }
                (None, Action::Wait(_)) => ("wait", true),
                (None, _) => ("ok", true),
            };
            self.metrics.reconciled(result, d.took);
            let outcome = match (&d.error, &d.action) {
                (Some(BackendError::Refused(m)), _) => Some(Action::Refuse {
                    reason: "BackendRefused".into(),
                    message: m.clone(),
                }),
                (_, a @ Action::Refuse { .. }) => Some(a.clone()),
                _ => None,
            };
            let err = match &d.error {
                Some(BackendError::Refused(_)) | None => None,
                Some(e) => Some(e.to_string()),
            };
            let mut st = status_for(
                &d.desired,
                d.after.as_ref(),
                outcome.as_ref(),
                err.as_deref(),
            );
            let prev = inv.vm_status(id);
            st.observed_spec = Some(d.desired.fingerprint.clone());
            st.observed_revision = if prev.observed_spec.as_deref() == Some(&d.desired.fingerprint)
            {
                prev.observed_revision.or(Some(rev))
            } else {
                Some(rev)
            };
            phase_of.insert(id, st.phase.clone());
            let ready = st.condition("Ready").is_some_and(|c| c.status);
            if let Some(e) = self.queue.get_mut(&id) {
                match (result, may_recheck) {
                    ("error", _) => {
                        e.due = Instant::now() + backoff(e.failures);
                        e.failures += 1;
                    }
                    (_, true) if !ready || d.desired.deleting => {
                        e.failures = 0;
                        e.due = Instant::now() + self.opts.recheck;
                    }
                    _ => {
                        e.failures = 0;
                        e.due = Instant::now() + self.opts.resync;
                    }
                }
            }
            if st != prev && !finalize.contains(&id) {
                updates.push((id, d.desired.fingerprint.clone(), st));
            }
        }
        let mut phases = BTreeMap::new();
        for (id, p) in phase_of {
            if !finalize.contains(&id) {
                *phases.entry(p).or_insert(0u64) += 1;
            }
        }
        self.metrics.set_phases(phases);
        if !updates.is_empty() || !finalize.is_empty() {
            let ids: Vec<EntityId> = updates
                .iter()
                .map(|u| u.0)
                .chain(finalize.clone())
                .collect();
            match self.write_status(updates, finalize).await {
                Ok(w) => report.wrote = w,
                Err(e) => {
                    // What was done is not recorded: look again soon, not at
                    // the resync (the next pass finds the same backend state).
                    for id in ids {
                        if let Some(q) = self.queue.get_mut(&id) {
                            q.due = Instant::now() + backoff(q.failures);
                            q.failures += 1;
                        }
                    }
                    return Err(e);
                }
            }
        }
        report.calls = self.metrics.backend_calls() - calls_before;
        report.requests = self.provider.requests() - requests_before;
        self.metrics.api_requests(report.requests);
        Ok(report)
    }

    /// The controller's view brought up to the head: loaded once, then only
    /// rows later revisions changed are read. Returns its revision.
    async fn follow_store(&mut self) -> Result<i64, ControllerError> {
        let scope = clusto_store::Scope::vm_world();
        Ok(match &mut self.view {
            Some(inv) if self.last_rev >= 0 => {
                self.store.follow(inv, self.last_rev, &scope).await?.0
            }
            _ => {
                let (rev, inv) = self.store.load_scope(&scope, None).await?;
                self.view = Some(inv);
                rev
            }
        })
    }

    /// Queues new and changed VMs; forgets deleted ones.
    fn sync_queue(&mut self, inv: &Inventory, now: Instant) {
        let mut seen = BTreeSet::new();
        for e in inv.entities_of_kind(Kind::VirtualMachine) {
            seen.insert(e.id);
            let desired = inv.vm_desired(e.id).map_err(|err| err.to_string());
            // Nothing to act on until an invalid spec changes.
            let due = if desired.is_ok() {
                now
            } else {
                now + self.opts.resync
            };
            let changed = match self.queue.get_mut(&e.id) {
                // Same ask: keep the schedule, take the newest reading
                // (a rename changes the name, not the fingerprint).
                Some(q) if same_ask(&q.desired, &desired) => {
                    q.desired = desired;
                    continue;
                }
                Some(q) => {
                    q.due = due;
                    q.failures = 0;
                    q.desired = desired;
                    q
                }
                None => self.queue.entry(e.id).or_insert(Entry {
                    desired,
                    due,
                    failures: 0,
                }),
            };
            if let Err(err) = &changed.desired {
                tracing::warn!(vm = %e.name, error = %err, "invalid VirtualMachine; not reconciled");
            }
        }
        self.queue.retain(|id, _| seen.contains(id));
        self.metrics.set_queue_depth(self.queue.len());
    }

    /// Due objects, as many as the rate limit allows, oldest first.
    fn take_due(&mut self, now: Instant) -> Vec<Desired> {
        let rate = self.opts.rate.max(1.0);
        self.tokens =
            (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(rate);
        self.refilled = now;
        let mut due: Vec<(Instant, EntityId)> = self
            .queue
            .iter()
            .filter(|(_, e)| e.due <= now && e.desired.is_ok())
            .map(|(id, e)| (e.due, *id))
            .collect();
        due.sort();
        // While throttled, wait for a poll's worth of tokens rather than
        // reconciling in dribbles (each batch costs a listing per scope).
        if self.throttled_until.is_some_and(|t| now < t) {
            return Vec::new();
        }
        let n = (self.tokens.floor() as usize).min(due.len());
        self.tokens -= n as f64;
        self.throttled_until = None;
        if n < due.len() {
            tracing::debug!(waiting = due.len() - n, "rate limited");
            self.throttled_until = Some(now + self.opts.poll);
        }
        due.into_iter()
            .take(n)
            .filter_map(|(_, id)| self.queue.get(&id)?.desired.clone().ok())
            .collect()
    }

    /// Lists each scope once and decides every due VM's step.
    async fn plan_jobs(&self, inv: &Inventory, due: Vec<Desired>) -> (Vec<Job>, Vec<Done>) {
        let mut unscoped = Vec::new();
        let mut groups: BTreeMap<Scope, (ManagerConfig, Vec<Desired>)> = BTreeMap::new();
        for d in due {
            match scope_of(inv, &d) {
                Ok((scope, cfg)) => groups.entry(scope).or_insert((cfg, Vec::new())).1.push(d),
                Err(msg) => {
                    // Nothing exists in a backend for an object that
                    // cannot name one; a deletion can complete.
                    let action = if d.deleting {
                        Action::Finalize
                    } else {
                        Action::Refuse {
                            reason: "Unschedulable".into(),
                            message: msg,
                        }
                    };
                    unscoped.push(Done::unreached(d, action, None))
                }
            }
        }
        let mut jobs = Vec::new();
        let mut approved: BTreeSet<EntityId> = BTreeSet::new();
        for (scope, (cfg, vms)) in groups {
            let backend = match self.provider.backend(&cfg) {
                Ok(b) => b,
                Err(e) => {
                    unscoped.extend(
                        vms.into_iter()
                            .map(|d| Done::unreached(d, Action::None, Some(e.clone()))),
                    );
                    continue;
                }
            };
            self.metrics.call("list");
            let want: Vec<String> = vms.iter().map(|d| self.uid_of(d.id)).collect();
            let listed = backend.list(&scope, &self.store_uid, &want).await;
            let observed: HashMap<String, Observed> = match listed {
                Ok(v) => {
                    let mut m: HashMap<String, Observed> = HashMap::new();
                    for o in v {
                        let Some(uid) = o.uid.clone() else { continue };
                        // Prefer a live resource over a terminated one.
                        let keep = m.get(&uid).is_some_and(|cur| {
                            cur.state != clusto_core::vm::ObservedState::Terminated
                        });
                        if !keep {
                            m.insert(uid, o);
                        }
                    }
                    m
                }
                Err(e) => {
                    self.metrics.call_failed("list");
                    tracing::warn!(scope = %scope.uri, error = %e, "listing failed");
                    unscoped.extend(
                        vms.into_iter()
                            .map(|d| Done::unreached(d, Action::None, Some(e.clone()))),
                    );
                    continue;
                }
            };
            for (d, uid) in vms.into_iter().zip(want) {
                let o = observed.get(&uid).cloned();
                let known = inv.vm_status(d.id).backend_id.is_some();
                let mut action = decide(&d, cfg.backend, o.as_ref(), known);
                if action == Action::Create && cfg.backend == BackendKind::Ec2 {
                    match inv.ec2_budget_check(d.id, &approved) {
                        Ok(()) => {
                            approved.insert(d.id);
                        }
                        Err(m) => {
                            action = Action::Refuse {
                                reason: "BudgetExceeded".into(),
                                message: m,
                            }
                        }
                    }
                }
                jobs.push(Job {
                    desired: d,
                    scope: scope.clone(),
                    backend: backend.clone(),
                    kind: cfg.backend,
                    observed: o,
                    action,
                    uid,
                    store_uid: self.store_uid.clone(),
                });
            }
        }
        (jobs, unscoped)
    }

    /// Writes statuses (skipping objects whose spec changed meanwhile:
    /// they are queued again) and removes finalized VMs, in one revision.
    async fn write_status(
        &self,
        updates: Vec<(EntityId, String, VmStatus)>,
        finalize: Vec<EntityId>,
    ) -> Result<bool, ControllerError> {
        let mut meta = RevisionMeta::new(format!(
            "controller: status of {} VM(s){}",
            updates.len(),
            if finalize.is_empty() {
                String::new()
            } else {
                format!(", {} deleted", finalize.len())
            }
        ));
        meta.manager = "controller".into();
        let touched = updates
            .iter()
            .map(|(id, _, _)| *id)
            .chain(finalize.iter().copied());
        let w = self
            .store
            .write_scope(
                &meta,
                &clusto_store::Scope::vm_world().with_ids(touched),
                |inv: &mut Inventory| -> Result<(), ControllerError> {
                    for (id, fp, st) in &updates {
                        let same = inv.entity(*id).is_some()
                            && inv.vm_desired(*id).is_ok_and(|d| d.fingerprint == *fp);
                        if same {
                            inv.set_vm_status(*id, st);
                        }
                    }
                    for id in &finalize {
                        if inv.entity(*id).is_some() && inv.vm_deleting(*id) {
                            inv.finalize_vm(*id)?;
                        }
                    }
                    Ok(())
                },
            )
            .await?;
        if w.revision.is_some() {
            self.metrics.status_written();
        }
        Ok(w.revision.is_some())
    }
}

/// Where a VM lives, from its manager's settings and its host.
pub fn scope_of(inv: &Inventory, d: &Desired) -> Result<(Scope, ManagerConfig), String> {
    let mgr = inv
        .id_of(&d.manager)
        .map_err(|_| format!("VM manager {:?} does not exist", d.manager))?;
    let cfg = inv.vm_manager_config(mgr).map_err(|e| e.to_string())?;
    match cfg.backend {
        BackendKind::Ec2 => {
            let ec2 = cfg.ec2.clone().ok_or("an ec2 VMManager needs ec2.region")?;
            Ok((ec2_scope(&cfg, &ec2), cfg))
        }
        BackendKind::Libvirt => {
            let host = d
                .host
                .clone()
                .ok_or_else(|| format!("not placed on a host of {}", cfg.name))?;
            let hid = inv.id_of(&host).map_err(|e| e.to_string())?;
            let uri = inv.libvirt_uri(mgr, hid).map_err(|e| e.to_string())?;
            Ok((
                Scope {
                    manager: cfg.name.clone(),
                    host: Some(host),
                    uri,
                    pool: Some(inv.libvirt_pool(mgr, hid)),
                },
                cfg,
            ))
        }
    }
}

async fn execute(j: Job, metrics: Arc<Metrics>) -> Done {
    let span = tracing::info_span!("reconcile", vm = %j.desired.name, manager = %j.desired.manager,
        backend = j.kind.as_str(), action = tracing::field::Empty);
    async move {
        let t = Instant::now();
        let b = j.backend.as_ref();
        let op: Option<&'static str> = match &j.action {
            Action::Create => Some("create"),
            Action::Start => Some("start"),
            Action::Stop => Some("stop"),
            Action::Resize => Some("resize"),
            Action::Destroy => Some("destroy"),
            _ => None,
        };
        tracing::Span::current().record("action", format!("{:?}", j.action));
        let res: Result<Option<Observed>, BackendError> = match (&j.action, &j.observed) {
            (Action::Create, _) => {
                let req = CreateRequest {
                    vm: &j.desired,
                    uid: &j.uid,
                    store_uid: &j.store_uid,
                };
                b.create(&j.scope, req).await.map(Some)
            }
            (Action::Start, Some(o)) => b.start(&j.scope, o).await.map(Some),
            (Action::Stop, Some(o)) => b.stop(&j.scope, o).await.map(Some),
            (Action::Resize, Some(o)) => b.resize(&j.scope, &j.desired, o).await.map(Some),
            (Action::Destroy, Some(o)) => b.destroy(&j.scope, o).await.map(|_| None),
            _ => Ok(j.observed.clone()),
        };
        if let Some(op) = op {
            metrics.call(op);
            if res.is_err() {
                metrics.call_failed(op);
            }
        }
        let (after, error) = match res {
            Ok(a) => (a, None),
            Err(e) => {
                tracing::warn!(error = %e, "reconcile failed");
                (j.observed.clone(), Some(e))
            }
        };
        if error.is_none() && op.is_some() {
            tracing::info!("done");
        }
        Done {
            desired: j.desired,
            action: j.action,
            after,
            error,
            took: t.elapsed(),
        }
    }
    .instrument(span)
    .await
}
