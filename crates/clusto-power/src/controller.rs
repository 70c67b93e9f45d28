//! The loop around [`reconcile`]: level-triggered like the VM
//! controller. Every tick follows the store's changes into a view of the
//! devices that declare `spec.powerState` (with the PDUs, console servers
//! and containers their power paths read), queues each device whose
//! declaration changed or whose time came (backoff, resync), reconciles as
//! many as the rate allows, and writes every status that changed in one
//! revision.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use clusto_core::inventory::SPEC_KEY;
use clusto_core::outofband::{PowerState, PowerStatus};
use clusto_core::{EntityId, Fact, Inventory};
use clusto_oob::path;
use clusto_oob::power::{self, Timing};
use clusto_store::{Leadership, Leading, RevisionMeta, Scope, Store, StoreError};
use futures::StreamExt;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::reconcile::{
    Context, Object, Outcome, ReconcileError, Requeue, error_policy, reconcile, status_for,
};

pub const LEASE_NAME: &str = "power-controller";

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
    /// Every device is read at least this often (drift: someone pressed
    /// the button).
    pub resync: Duration,
    /// Reconciles per second, all devices together (token bucket).
    pub rate: f64,
    /// BMC sessions and PDU requests in flight at once.
    pub workers: usize,
    /// Per answer from a BMC or PDU (each request is tried three times).
    pub timeout: Duration,
    pub lease_ttl: Duration,
    pub holder: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            resync: Duration::from_secs(300),
            rate: 200.0,
            workers: 32,
            timeout: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(15),
            holder: format!("power:{}", std::process::id()),
        }
    }
}

struct Entry {
    want: PowerState,
    due: Instant,
    failures: u32,
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    pub reconciled: usize,
    pub switched: usize,
    pub failed: usize,
    /// Power reads and writes sent to BMCs and PDUs.
    pub reads: u64,
    pub writes: u64,
    pub wrote_status: bool,
    pub leader: bool,
    /// How long the tick took.
    pub took: Duration,
}

pub struct Controller {
    store: Store,
    opts: Options,
    ctx: Context,
    pub metrics: Metrics,
    lead: Leadership,
    /// Devices that declare their power.
    members: BTreeSet<EntityId>,
    /// They and what their power paths read, kept current from changes.
    view: Option<(Scope, Inventory)>,
    /// The entities the view was loaded for.
    loaded: BTreeSet<EntityId>,
    last_rev: i64,
    queue: HashMap<EntityId, Entry>,
    resync_at: Instant,
    tokens: f64,
    refilled: Instant,
}

/// The query that finds devices declaring their power.
const DECLARED: &str = "attr:_spec.powerState";

impl Controller {
    pub fn new(store: Store, opts: Options) -> Controller {
        let now = Instant::now();
        Controller {
            lead: Leadership::new(LEASE_NAME, opts.holder.clone(), opts.lease_ttl),
            ctx: Context {
                timing: Timing {
                    timeout: opts.timeout,
                    ..Timing::default()
                },
            },
            tokens: opts.rate.max(1.0),
            resync_at: now + opts.resync,
            opts,
            store,
            metrics: Metrics::default(),
            members: BTreeSet::new(),
            view: None,
            loaded: BTreeSet::new(),
            last_rev: -1,
            queue: HashMap::new(),
            refilled: now,
        }
    }

    /// Reads every device at the next tick (what the timer does every
    /// `resync`).
    pub fn resync_now(&mut self) {
        self.resync_at = Instant::now();
    }

    pub async fn release(&mut self) -> Result<(), ControllerError> {
        Ok(self.lead.release().await?)
    }

    /// Devices whose last reconcile failed (path missing, BMC or PDU
    /// unreachable or refusing).
    pub fn failing(&self) -> usize {
        self.queue.values().filter(|e| e.failures > 0).count()
    }

    /// When the next device is due.
    pub fn next_due(&self) -> Instant {
        self.queue
            .values()
            .map(|e| e.due)
            .min()
            .unwrap_or(self.resync_at)
            .min(self.resync_at)
    }

    /// Runs until `shutdown` resolves, looking for changes every `poll`.
    pub async fn run(
        mut self,
        poll: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ControllerError> {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "power tick failed");
            }
            let wake = self.next_due().min(Instant::now() + poll);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        self.release().await
    }

    /// Ticks until a pass finds nothing due within `quiet` (or this
    /// controller is not the leader); gives up after `limit`.
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
            let wake = self
                .next_due()
                .min(Instant::now() + Duration::from_millis(100));
            tokio::time::sleep_until(wake.into()).await;
        }
    }

    /// One pass.
    pub async fn tick(&mut self) -> Result<TickReport, ControllerError> {
        let started = Instant::now();
        let mut report = self.tick_inner().await?;
        report.took = started.elapsed();
        Ok(report)
    }

    async fn tick_inner(&mut self) -> Result<TickReport, ControllerError> {
        let mut report = TickReport::default();
        let leading = self.lead.ensure(&self.store).await?;
        self.metrics.set_lease_held(leading != Leading::No);
        match leading {
            Leading::No => return Ok(report),
            Leading::Acquired => {
                self.view = None;
                self.queue.clear();
            }
            Leading::Yes => {}
        }
        report.leader = true;
        let now = Instant::now();
        let head = self.store.head().await?;
        let any_due = now >= self.resync_at || self.queue.values().any(|e| e.due <= now);
        if head == self.last_rev && self.view.is_some() && !any_due {
            return Ok(report);
        }
        self.follow().await?;
        self.metrics.set_revision(self.last_rev);
        self.sync_queue(now);
        if now >= self.resync_at {
            for e in self.queue.values_mut() {
                e.due = e.due.min(now);
            }
            self.resync_at = now + self.opts.resync;
        }
        let due = self.take_due(now);
        if due.is_empty() {
            return Ok(report);
        }
        self.pass(due, report).await
    }

    /// Brings the view to the head: loaded once, then followed; loaded
    /// again (at the cost of the declared devices, not the inventory) when
    /// a device starts declaring its power or a power cable moves.
    async fn follow(&mut self) -> Result<(), ControllerError> {
        if let Some((scope, inv)) = self.view.as_mut() {
            let mut snap = self.store.snapshot(None).await?;
            let ch = snap.changes_since(self.last_rev).await?;
            let joined = ch.added.iter().any(|(_, f)| match f {
                Fact::Attr(id, a) => {
                    a.key == SPEC_KEY
                        && a.subkey.as_deref() == Some("powerState")
                        && !self.members.contains(id)
                }
                _ => false,
            });
            if !joined {
                snap.follow(inv, scope, &ch).await?;
                self.last_rev = ch.to;
                self.members = inv.power_declared().into_iter().collect();
                if needed(inv, &self.members).is_subset(&self.loaded) {
                    return Ok(());
                }
            }
        }
        self.load().await
    }

    async fn load(&mut self) -> Result<(), ControllerError> {
        let rev = self.store.head().await?;
        let q = clusto_core::query::parse(DECLARED)?;
        let names = self.store.query(&q, Some(rev)).await?;
        let (_, first) = self
            .store
            .load_scope(&Scope::read(&names), Some(rev))
            .await?;
        let members: BTreeSet<EntityId> = first.power_declared().into_iter().collect();
        let ids = needed(&first, &members);
        let scope = Scope::read(Vec::<String>::new()).with_ids(ids.iter().copied());
        let (_, inv) = self.store.load_scope(&scope, Some(rev)).await?;
        tracing::debug!(devices = members.len(), revision = rev, "power view loaded");
        self.members = members;
        self.loaded = ids;
        self.view = Some((scope, inv));
        self.last_rev = rev;
        Ok(())
    }

    /// Queues devices whose declaration is new or changed; forgets those
    /// that no longer declare one.
    fn sync_queue(&mut self, now: Instant) {
        let Some((_, inv)) = &self.view else { return };
        let mut seen = BTreeSet::new();
        for &id in &self.members {
            let Some(want) = inv.power_desired(id) else {
                continue;
            };
            seen.insert(id);
            let e = self.queue.entry(id).or_insert(Entry {
                want,
                due: now,
                failures: 0,
            });
            if e.want != want {
                *e = Entry {
                    want,
                    due: now,
                    failures: 0,
                };
            }
        }
        self.queue.retain(|id, _| seen.contains(id));
        self.metrics.set_devices(self.queue.len());
    }

    /// Due devices, as many as the rate allows, the longest waiting first.
    fn take_due(&mut self, now: Instant) -> Vec<EntityId> {
        let rate = self.opts.rate.max(1.0);
        self.tokens =
            (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(rate);
        self.refilled = now;
        let mut due: Vec<(Instant, EntityId)> = self
            .queue
            .iter()
            .filter(|(_, e)| e.due <= now)
            .map(|(id, e)| (e.due, *id))
            .collect();
        due.sort();
        due.truncate(self.tokens.floor() as usize);
        self.tokens -= due.len() as f64;
        // Taken off the schedule until their reconcile says when.
        for (_, id) in &due {
            if let Some(e) = self.queue.get_mut(id) {
                e.due = now + self.opts.resync;
            }
        }
        due.into_iter().map(|(_, id)| id).collect()
    }

    async fn pass(
        &mut self,
        due: Vec<EntityId>,
        mut report: TickReport,
    ) -> Result<TickReport, ControllerError> {
        let Some((_, inv)) = &self.view else {
            return Ok(report);
        };
        let objects: Vec<Object> = due.iter().filter_map(|&id| object(inv, id)).collect();
        let (reads, writes) = self.ctx.timing.tally.snapshot();
        let ctx = &self.ctx;
        let done: Vec<(Object, Result<Outcome, ReconcileError>, Duration)> =
            futures::stream::iter(objects)
                .map(|o| {
                    let via = o.path.as_ref().map(|p| p.via().as_str()).unwrap_or("none");
                    let span =
                        tracing::info_span!("power", device = %o.name, want = o.want.as_str(), via);
                    async move {
                        let t = Instant::now();
                        let r = reconcile(&o, ctx).await;
                        if let Ok(Outcome::Switched { from }) = &r {
                            let from = from.map(PowerState::as_str).unwrap_or("mixed");
                            tracing::info!(from, "switched");
                        }
                        (o, r, t.elapsed())
                    }
                    .instrument(span)
                })
                .buffer_unordered(self.opts.workers.max(1))
                .collect()
                .await;
        let (reads2, writes2) = self.ctx.timing.tally.snapshot();
        (report.reads, report.writes) = (reads2 - reads, writes2 - writes);
        self.metrics.operations(report.reads, report.writes);
        report.reconciled = done.len();
        let mut updates = Vec::new();
        for (o, r, took) in &done {
            let prev = inv.power_status(o.id);
            let st = status_for(o, r, &prev, self.last_rev);
            self.metrics.reconciled(result_label(r), *took);
            match r {
                Ok(Outcome::Switched { .. }) => report.switched += 1,
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(device = %o.name, error = %e, "power not as declared");
                }
                Ok(Outcome::AsDeclared) => {}
            }
            if let Some(e) = self.queue.get_mut(&o.id) {
                schedule(e, r, self.opts.resync);
            }
            // observedRevision alone moving is not worth a revision.
            let same = PowerStatus {
                observed_revision: prev.observed_revision,
                ..st.clone()
            } == prev;
            if !same {
                updates.push((o.id, o.want, st));
            }
        }
        report.wrote_status = self.write_status(updates).await?;
        Ok(report)
    }

    /// One revision with every status that changed, for devices that still
    /// declare what was reconciled.
    async fn write_status(
        &self,
        updates: Vec<(EntityId, PowerState, PowerStatus)>,
    ) -> Result<bool, ControllerError> {
        if updates.is_empty() {
            return Ok(false);
        }
        let mut meta = RevisionMeta::new(format!(
            "power controller: status of {} device(s)",
            updates.len()
        ));
        meta.manager = "power-controller".into();
        let scope = Scope::read(Vec::<String>::new()).with_ids(updates.iter().map(|u| u.0));
        let w = self
            .store
            .write_scope(
                &meta,
                &scope,
                |inv: &mut Inventory| -> Result<(), ControllerError> {
                    for (id, want, st) in &updates {
                        if inv.entity(*id).is_some() && inv.power_desired(*id) == Some(*want) {
                            inv.set_power_status(*id, st);
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

/// The members and every device their power paths lead to.
fn needed(inv: &Inventory, members: &BTreeSet<EntityId>) -> BTreeSet<EntityId> {
    let mut ids = members.clone();
    for &m in members {
        for peer in path::peers(inv, m) {
            if let Ok(id) = inv.id_of(&peer) {
                ids.insert(id);
            }
        }
    }
    ids
}

fn object(inv: &Inventory, id: EntityId) -> Option<Object> {
    let want = inv.power_desired(id)?;
    let name = inv.name_of(id).to_string();
    let path = power::choose(&name, path::power_paths(inv, id), None);
    Some(Object {
        id,
        name,
        want,
        path,
    })
}

fn schedule(e: &mut Entry, r: &Result<Outcome, ReconcileError>, resync: Duration) {
    let now = Instant::now();
    match r {
        Ok(_) => {
            e.failures = 0;
            e.due = now + resync;
        }
        Err(err) => {
            e.due = match error_policy(err, e.failures) {
                Requeue::After(d) => now + d,
                Requeue::AtResync => now + resync,
            };
            e.failures += 1;
        }
    }
}

fn result_label(r: &Result<Outcome, ReconcileError>) -> &'static str {
    match r {
        Ok(Outcome::AsDeclared) => "as_declared",
        Ok(Outcome::Switched { .. }) => "switched",
        Err(ReconcileError::NoPath(_)) => "missing_path",
        Err(ReconcileError::Power(_)) => "error",
    }
}
