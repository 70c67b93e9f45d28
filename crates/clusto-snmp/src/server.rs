//! The daemon: one UDP socket, one view per switch (its rack and
//! everything in it, the layouts) kept current from the store's change
//! stream, and one revision per trap that changes anything. A trap that
//! changes nothing (the steady state: known servers re-learnt) is answered
//! from the views without a write.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusto_core::{EntityId, Fact, Inventory, Kind};
use clusto_http::Readiness;
use clusto_http::prometheus_client::metrics::counter::Counter;
use clusto_http::prometheus_client::metrics::family::Family;
use clusto_http::prometheus_client::metrics::gauge::Gauge;
use clusto_http::prometheus_client::metrics::histogram::Histogram;
use clusto_http::prometheus_client::registry::Registry;
use clusto_store::{RevisionMeta, Scope, Store, StoreError};
use tokio::net::UdpSocket;

use crate::cmn::{self, MacRecord};
use crate::discover::{self, Outcome, Refused};
use crate::message::{self, Dropped, Notification, Principal, Received};
use crate::usm::Usm;

#[derive(Debug)]
pub struct Options {
    pub listen: SocketAddr,
    pub metrics: Option<SocketAddr>,
    /// Drop root to this account once the sockets are bound.
    pub run_as: Option<clusto_http::account::Account>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("socket {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Account(#[from] clusto_http::account::AccountError),
}

/// What became of a whole trap; also the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapResult {
    /// Its records were acted on (whether or not anything changed).
    Accepted,
    Dropped(Dropped),
    UnknownSource,
    Refused(Refused),
    /// A notification, but not a MAC notification.
    Other,
    /// The store refused or failed the write; an INFORM goes unanswered so
    /// the switch sends it again.
    StoreError,
}

impl TrapResult {
    fn label(self) -> &'static str {
        match self {
            TrapResult::Accepted => "accepted",
            TrapResult::Dropped(d) => d.label(),
            TrapResult::UnknownSource => "unknown_source",
            TrapResult::Refused(r) => r.label(),
            TrapResult::Other => "not_mac_notification",
            TrapResult::StoreError => "store_error",
        }
    }
}

type Labels = [(&'static str, &'static str); 1];

/// Trap-to-commit latency buckets, seconds.
const BUCKETS: [f64; 9] = [1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1.0];

#[derive(Clone)]
struct Metrics {
    traps: Family<Labels, Counter>,
    records: Family<Labels, Counter>,
    commit: Histogram,
    views: Gauge,
    revision: Gauge,
}

impl Metrics {
    fn new(reg: &mut Registry) -> Metrics {
        let m = Metrics {
            traps: Family::default(),
            records: Family::default(),
            commit: Histogram::new(BUCKETS),
            views: Gauge::default(),
            revision: Gauge::default(),
        };
        reg.register("clusto_snmp_traps", "Datagrams by result", m.traps.clone());
        reg.register(
            "clusto_snmp_records",
            "MAC notification records by outcome",
            m.records.clone(),
        );
        reg.register(
            "clusto_snmp_trap_to_commit_seconds",
            "From a trap's arrival to its revision's commit",
            m.commit.clone(),
        );
        reg.register(
            "clusto_snmp_switch_views",
            "Switches with a view",
            m.views.clone(),
        );
        reg.register(
            "clusto_snmp_view_revision",
            "Store revision the views are as of",
            m.revision.clone(),
        );
        m
    }

    fn record(&self, o: &Outcome) {
        self.records.get_or_create(&[("outcome", o.label())]).inc();
    }

    fn trap(&self, r: TrapResult) {
        self.traps.get_or_create(&[("result", r.label())]).inc();
    }
}

/// One switch's world: the switch, its rack and everything in the rack,
/// the layouts, and the merged-attribute chain above them.
struct View {
    switch: EntityId,
    scope: Scope,
    inv: Inventory,
}

/// The views by source address, all as of one revision.
#[derive(Default)]
struct Views {
    rev: i64,
    by_ip: HashMap<IpAddr, View>,
    /// Which views hold each entity: a change is followed only by the
    /// views it concerns, whatever the number of switches.
    holders: HashMap<EntityId, Vec<IpAddr>>,
    /// IP and name managers some view holds (as the manager of an address
    /// it holds): their attributes move with every allocation anywhere,
    /// and no view decides by them, so views do not follow them.
    managers: std::collections::HashSet<EntityId>,
    /// Sources no device holds, and when they were last looked up.
    unknown: HashMap<IpAddr, Instant>,
}

/// How long an unknown source stays unknown before the store is asked
/// again (a switch added meanwhile is found by the change stream sooner).
const UNKNOWN_TTL: Duration = Duration::from_secs(30);

impl Views {
    /// Brings every view to the head: one read of the change stream
    /// serves them all.
    async fn sync(&mut self, store: &Store) -> Result<(), StoreError> {
        let mut snap = store.snapshot(None).await?;
        self.follow(&mut snap).await
    }

    /// Makes sure `ip` has a view (or is known to be no device's), loading
    /// it as of the head after bringing the others there too, so that all
    /// views stay at one revision.
    async fn ensure(&mut self, store: &Store, ip: IpAddr) -> Result<(), StoreError> {
        if self.by_ip.contains_key(&ip)
            || self
                .unknown
                .get(&ip)
                .is_some_and(|t| t.elapsed() < UNKNOWN_TTL)
        {
            return Ok(());
        }
        let mut snap = store.snapshot(None).await?;
        self.follow(&mut snap).await?;
        let probe = snap
            .load(&Scope::read([] as [&str; 0]).with_address(ip))
            .await?;
        let Some(switch) = discover::switch_for(&probe, ip) else {
            self.unknown.insert(ip, Instant::now());
            return Ok(());
        };
        let name = probe.name_of(switch).to_string();
        let own = snap.load(&Scope::read([&name])).await?;
        // A read scope: IP managers (which every write loads) are left to
        // the writes, so their allocation cursors move no view.
        let mut scope = Scope::read([&name]).with_kind(Kind::RackLayout);
        if let Some((rack, _)) = own.rack_of(switch) {
            scope = scope.with_descendants_of(own.name_of(rack));
        }
        let inv = snap.load(&scope).await?;
        tracing::info!(%ip, switch = %name, entities = inv.len(), "switch view loaded");
        self.insert(ip, View { switch, scope, inv });
        Ok(())
    }

    async fn follow(&mut self, snap: &mut clusto_store::Snapshot) -> Result<(), StoreError> {
        if snap.rev() == self.rev {
            return Ok(());
        }
        let ch = snap.changes_since(self.rev).await?;
        let mut affected: std::collections::BTreeSet<IpAddr> = std::collections::BTreeSet::new();
        for (_, f) in ch.added.iter().chain(&ch.retired) {
            match f {
                // An address someone now holds may be a switch's.
                Fact::Address(a) => {
                    self.unknown.remove(&a.address);
                }
                // A new layout joins every view.
                Fact::Entity(e) if matches!(e.kind, Kind::RackLayout) => {
                    affected.extend(self.by_ip.keys());
                }
                _ => {}
            }
            if let Fact::Attr(e, _) = f
                && self.managers.contains(e)
            {
                continue;
            }
            for e in concerned(f) {
                if let Some(ips) = self.holders.get(&e) {
                    affected.extend(ips);
                }
            }
        }
        tracing::debug!(
            views = affected.len(),
            rows = ch.added.len() + ch.retired.len(),
            "following"
        );
        for ip in affected {
            let Some(mut v) = self.remove(&ip) else {
                continue;
            };
            snap.follow(&mut v.inv, &v.scope, &ch).await?;
            if discover::switch_for(&v.inv, ip) == Some(v.switch) {
                self.insert(ip, v);
            }
        }
        self.rev = snap.rev();
        Ok(())
    }

    fn insert(&mut self, ip: IpAddr, v: View) {
        for e in v.inv.entities_unsorted() {
            self.holders.entry(e.id).or_default().push(ip);
            if matches!(e.kind, Kind::IpManager | Kind::NameManager) {
                self.managers.insert(e.id);
            }
        }
        self.by_ip.insert(ip, v);
    }

    fn remove(&mut self, ip: &IpAddr) -> Option<View> {
        let v = self.by_ip.remove(ip)?;
        for e in v.inv.entities_unsorted() {
            if let Some(ips) = self.holders.get_mut(&e.id) {
                ips.retain(|x| x != ip);
                if ips.is_empty() {
                    self.holders.remove(&e.id);
                }
            }
        }
        Some(v)
    }
}

/// The entities whose views a changed row can matter to. Not an address's
/// manager, nor what an attribute refers to: a view's business is its
/// rack's things, not who else holds addresses or refers to them.
fn concerned(f: &Fact) -> Vec<EntityId> {
    match f {
        Fact::Entity(e) => vec![e.id],
        Fact::Attr(e, _) => vec![*e],
        Fact::Contains(c) => vec![c.parent, c.child],
        Fact::Link(l) => vec![l.a, l.b],
        Fact::Address(a) => vec![a.holder],
    }
}

/// Logs an ignored trap at most once a minute per source and reason.
#[derive(Default)]
struct Limiter(HashMap<(IpAddr, &'static str), Instant>);

impl Limiter {
    fn allow(&mut self, ip: IpAddr, what: &'static str) -> bool {
        let now = Instant::now();
        match self.0.get(&(ip, what)) {
            Some(t) if now.duration_since(*t) < Duration::from_secs(60) => false,
            _ => {
                if self.0.len() > 10_000 {
                    self.0.clear();
                }
                self.0.insert((ip, what), now);
                true
            }
        }
    }
}

pub struct Daemon {
    store: Store,
    usm: Usm,
    views: Views,
    metrics: Metrics,
    limiter: Limiter,
}

/// Datagrams read per batch before the views are synced once.
const BATCH: usize = 256;

/// Room for a trap storm while a write is in progress: 8 MiB holds
/// thousands of traps (the kernel default holds a few hundred).
const RECV_BUFFER: usize = 8 << 20;

fn socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Beyond net.core.rmem_max only with CAP_NET_ADMIN; else as much as
    // the limit allows.
    if force_recv_buffer(&s, RECV_BUFFER).is_err() {
        s.set_recv_buffer_size(RECV_BUFFER)?;
    }
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    tracing::info!(bytes = s.recv_buffer_size()?, "receive buffer");
    UdpSocket::from_std(s.into())
}

fn force_recv_buffer(s: &socket2::Socket, bytes: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let v = bytes as libc::c_int;
    // SAFETY: setsockopt reads `v` (a c_int, its size given) on a socket
    // this function borrows.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub async fn run(store: Store, usm: Usm, opts: Options) -> Result<(), ServerError> {
    let socket = socket(opts.listen).map_err(|source| ServerError::Socket {
        addr: opts.listen,
        source,
    })?;
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let ready = Readiness::default();
    if let Some(addr) = opts.metrics {
        clusto_http::serve(addr, clusto_http::routes(Arc::new(registry), ready.clone()))
            .await
            .map_err(|source| ServerError::Socket { addr, source })?;
    }
    if let Some(account) = &opts.run_as {
        account.switch()?;
    }
    let rev = store.head().await?;
    let mut d = Daemon {
        store,
        usm,
        views: Views {
            rev,
            ..Views::default()
        },
        metrics,
        limiter: Limiter::default(),
    };
    ready.set(true);
    tracing::info!(listen = %socket.local_addr().map_err(|source| ServerError::Socket { addr: opts.listen, source })?, revision = rev, "snmptrapd listening");
    let mut buf = vec![0u8; message::MAX_DATAGRAM + 1];
    let mut batch: Vec<(Vec<u8>, SocketAddr, Instant)> = Vec::with_capacity(BATCH);
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "receive failed");
                continue;
            }
        };
        batch.push((buf[..n].to_vec(), src, Instant::now()));
        while batch.len() < BATCH {
            match socket.try_recv_from(&mut buf) {
                Ok((n, src)) => batch.push((buf[..n].to_vec(), src, Instant::now())),
                Err(_) => break,
            }
        }
        if let Err(e) = d.views.sync(&d.store).await {
            tracing::warn!(error = %e, "following the store failed; views may be stale");
        }
        d.handle_batch(&socket, &mut batch).await;
        d.metrics.views.set(d.views.by_ip.len() as i64);
        d.metrics.revision.set(d.views.rev);
    }
}

/// What one datagram comes to before any write.
enum Step {
    /// Done: counted, and maybe something to send back now.
    Done(Option<Vec<u8>>),
    /// Its records change the inventory: written with the batch's others.
    Write(Box<Pending>),
}

/// A trap whose records change something, waiting for the batch's commit.
struct Pending {
    switch: EntityId,
    switch_name: String,
    records: Vec<MacRecord>,
    principal: Principal,
    scope: Scope,
    ack: Option<Vec<u8>>,
    src: SocketAddr,
    at: Instant,
}

impl Daemon {
    /// A batch of datagrams: each decoded and decided on the views, then
    /// every trap that changes something written in one transaction (each
    /// its own revision), then the acknowledgements those traps are owed.
    async fn handle_batch(
        &mut self,
        socket: &UdpSocket,
        batch: &mut Vec<(Vec<u8>, SocketAddr, Instant)>,
    ) {
        let mut pending = Vec::new();
        for (bytes, src, at) in batch.drain(..) {
            match self.classify(&bytes, src, at).await {
                Step::Done(Some(reply)) => send(socket, &reply, src).await,
                Step::Done(None) => {}
                Step::Write(p) => pending.push(*p),
            }
        }
        if !pending.is_empty() {
            self.write(socket, pending).await;
        }
    }

    async fn classify(&mut self, bytes: &[u8], src: SocketAddr, at: Instant) -> Step {
        let received = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            message::receive(bytes, &mut self.usm)
        }))
        .unwrap_or(Received::Dropped(Dropped::Malformed));
        let n = match received {
            Received::Notification(n) => n,
            Received::Report(r) => return Step::Done(Some(r)),
            Received::Dropped(d) => {
                self.metrics.trap(TrapResult::Dropped(d));
                if self.limiter.allow(src.ip(), d.label()) {
                    tracing::info!(%src, reason = d.label(), "datagram dropped");
                }
                return Step::Done(None);
            }
        };
        match self.decide(*n, src, at).await {
            Ok(pending) => Step::Write(pending),
            Err((result, ack)) => {
                self.metrics.trap(result);
                Step::Done(match result {
                    TrapResult::Refused(Refused::CommunityMismatch) | TrapResult::StoreError => {
                        None
                    }
                    _ => ack,
                })
            }
        }
    }

    /// Decides a notification on its switch's view: a trap that changes
    /// nothing is finished here (Err: its result and its ack); one that
    /// changes something is returned to be written.
    async fn decide(
        &mut self,
        n: Notification,
        src: SocketAddr,
        at: Instant,
    ) -> Result<Box<Pending>, (TrapResult, Option<Vec<u8>>)> {
        let ack = n.ack.clone();
        // A v1 trap names its agent; v2c and v3 are known by their source.
        let ip = n.agent_addr.map(IpAddr::V4).unwrap_or(src.ip());
        let Some(decoded) = cmn::records(&n) else {
            return Err((TrapResult::Other, ack));
        };
        if let Err(e) = self.views.ensure(&self.store, ip).await {
            tracing::warn!(error = %e, "loading the switch's view failed");
            return Err((TrapResult::StoreError, None));
        }
        let Some(view) = self.views.by_ip.get_mut(&ip) else {
            if self.limiter.allow(ip, "unknown_source") {
                tracing::warn!(%ip, "trap from an address no device holds: ignored");
            }
            return Err((TrapResult::UnknownSource, ack));
        };
        if let Err(r) = discover::admit(&view.inv, view.switch, &n.principal) {
            if self.limiter.allow(ip, r.label()) {
                tracing::warn!(%ip, switch = view.inv.name_of(view.switch), reason = r.label(), "trap ignored");
            }
            return Err((TrapResult::Refused(r), ack));
        }
        for _ in 0..decoded.malformed {
            self.metrics.record(&Outcome::Failed {
                why: "malformed record".into(),
            });
        }
        let outcomes = dry_run(view, &decoded.records);
        let needs_write = outcomes.iter().any(|o| {
            matches!(
                o,
                Outcome::Created { .. }
                    | Outcome::Recorded { .. }
                    | Outcome::Conflict { .. }
                    | Outcome::Failed { .. }
            )
        });
        if !needs_write {
            outcomes.iter().for_each(|o| self.metrics.record(o));
            return Err((TrapResult::Accepted, ack));
        }
        Ok(Box::new(Pending {
            switch: view.switch,
            switch_name: view.inv.name_of(view.switch).to_string(),
            scope: write_scope(view, &decoded.records),
            records: decoded.records,
            principal: n.principal,
            ack,
            src,
            at,
        }))
    }

    /// Writes the batch's traps in one transaction, one revision each.
    async fn write(&mut self, socket: &UdpSocket, pending: Vec<Pending>) {
        let t = Instant::now();
        let scope = pending
            .iter()
            .skip(1)
            .fold(pending[0].scope.clone(), |s, p| s.merge(&p.scope));
        let writes = pending.iter().map(|p| {
            let meta = RevisionMeta {
                manager: "snmptrapd".into(),
                ..RevisionMeta::new(describe(&p.switch_name, &p.records))
            };
            let (switch, records, principal) = (p.switch, &p.records, &p.principal);
            let op = move |inv: &mut Inventory| -> Result<Vec<Outcome>, StoreError> {
                if discover::admit(inv, switch, principal).is_err() {
                    return Ok(vec![]);
                }
                Ok(records
                    .iter()
                    .map(|r| discover::discover(inv, switch, r))
                    .collect())
            };
            (meta, op)
        });
        let results = match self.store.write_scope_each(&scope, writes).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(traps = pending.len(), error = %e, "recording traps failed");
                pending
                    .iter()
                    .for_each(|_| self.metrics.trap(TrapResult::StoreError));
                return;
            }
        };
        let written = t.elapsed();
        for (p, r) in pending.iter().zip(results) {
            match r {
                Ok(w) => {
                    if w.revision.is_some() {
                        self.metrics.commit.observe(p.at.elapsed().as_secs_f64());
                    }
                    for (o, rec) in w.value.iter().zip(&p.records) {
                        self.metrics.record(o);
                        log_outcome(&p.switch_name, rec, o, w.revision);
                    }
                    self.metrics.trap(TrapResult::Accepted);
                    if let Some(ack) = &p.ack {
                        send(socket, ack, p.src).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(switch = %p.switch_name, error = %e, "recording the trap failed");
                    self.metrics.trap(TrapResult::StoreError);
                }
            }
        }
        let t_follow = Instant::now();
        if let Err(e) = self.views.sync(&self.store).await {
            tracing::warn!(error = %e, "following the store failed");
        }
        tracing::debug!(traps = pending.len(), write = ?written, follow = ?t_follow.elapsed(), "traps written");
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, to).await {
        tracing::debug!(%to, error = %e, "reply not sent");
    }
}

/// What the records would do to the view, without keeping it.
fn dry_run(view: &mut View, records: &[MacRecord]) -> Vec<Outcome> {
    let out: Vec<Outcome> = records
        .iter()
        .map(|r| discover::discover(&mut view.inv, view.switch, r))
        .collect();
    let ch = view.inv.take_changes();
    view.inv.revert(&ch);
    out
}

/// The view's scope as a write's (with what write rules scan), widened by
/// what placing servers needs: the slots' name and address managers.
fn write_scope(view: &View, records: &[MacRecord]) -> Scope {
    let mut scope = Scope::write([view.inv.name_of(view.switch)]).merge(&view.scope);
    for r in records {
        if let Some(slot) = discover::slot_to_fill(&view.inv, view.switch, r) {
            scope = scope.with_next_name(slot.name_manager());
            for m in slot.address_managers() {
                scope = scope.with_next_address(m);
            }
        }
    }
    scope
}

fn describe(switch: &str, records: &[MacRecord]) -> String {
    let first = records
        .first()
        .map(|r| format!(" nic-eth:{} {}", r.port, r.mac_text()))
        .unwrap_or_default();
    let more = match records.len() {
        0 | 1 => String::new(),
        n => format!(" (+{} more)", n - 1),
    };
    format!("snmptrapd: {switch}{first}{more}")
}

fn log_outcome(switch: &str, r: &MacRecord, o: &Outcome, rev: Option<i64>) {
    let (port, mac) = (r.port, r.mac_text());
    match o {
        Outcome::Created { server } => {
            tracing::info!(switch, port, %mac, %server, revision = rev, "server discovered")
        }
        Outcome::Recorded { device } => {
            tracing::info!(switch, port, %mac, %device, revision = rev, "MAC recorded")
        }
        Outcome::Conflict { device, recorded } => tracing::warn!(
            switch, port, %mac, %device, %recorded,
            "a different MAC than the recorded one: kept the record, noted the observation"
        ),
        Outcome::Failed { why } => tracing::warn!(switch, port, %mac, why, "record not applied"),
        Outcome::NoSlot { why } => tracing::info!(switch, port, %mac, why, "no slot: ignored"),
        Outcome::Known { .. } | Outcome::Removed => {}
    }
}
