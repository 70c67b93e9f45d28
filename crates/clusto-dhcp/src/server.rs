//! The responder's I/O: one UDP socket, an index built once and then
//! patched from the rows each new revision changed (list-then-watch),
//! counters served to Prometheus. The request path reads the current index
//! and never waits for the store.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use std::collections::BTreeSet;

use clusto_core::inventory::{PORT_KEY_PREFIX, SPEC_KEY};
use clusto_core::{EntityId, Fact, Kind};
use clusto_http::Readiness;
use clusto_http::prometheus_client::metrics::counter::Counter;
use clusto_http::prometheus_client::metrics::family::Family;
use clusto_http::prometheus_client::metrics::gauge::Gauge;
use clusto_http::prometheus_client::metrics::histogram::Histogram;
use clusto_http::prometheus_client::registry::Registry;
use clusto_store::{Changes, Scope, Snapshot, Store, StoreError};
use dhcproto::v4::MessageType;
use tokio::net::UdpSocket;

use crate::handler::{Context, Destination, Ignored, Outcome, handle};
use crate::index::DhcpIndex;

#[derive(Clone, Debug)]
pub struct Options {
    pub listen: SocketAddr,
    /// Bind to this interface only (SO_BINDTODEVICE).
    pub interface: Option<String>,
    pub server_id: Ipv4Addr,
    /// How often the store's head revision is checked.
    pub refresh: Duration,
    pub metrics: Option<SocketAddr>,
    /// Learn NIC or BMC MACs from devices' `bootstrap.mac` (`--learn-ipmi`).
    pub learn: bool,
    /// Drop root to this account once the sockets are bound.
    pub run_as: Option<clusto_http::account::Account>,
}

/// Records a learnt MAC on the device's NIC 1 as one revision by the
/// `dhcpd` manager; nothing when it is already there.
pub async fn learn(
    store: &Store,
    device: &str,
    mac: &str,
    bmc: bool,
) -> Result<Option<i64>, clusto_store::StoreError> {
    let meta = clusto_store::RevisionMeta {
        manager: "dhcpd".into(),
        ..clusto_store::RevisionMeta::new(format!("dhcpd learnt {mac} for {device}"))
    };
    let key = if bmc { "ipmi-mac" } else { "mac" };
    let w = store
        .write_scope(
            &meta,
            &Scope::write([device]),
            |inv| -> Result<(), StoreError> {
                let id = inv.id_of(device)?;
                inv.port_attr_set(id, &"nic-eth:1".parse()?, key, mac)?;
                Ok(())
            },
        )
        .await?;
    Ok(w.revision)
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] clusto_store::StoreError),
    #[error(transparent)]
    Account(#[from] clusto_http::account::AccountError),
}

const TYPE_NAMES: [&str; 9] = [
    "other", "discover", "offer", "request", "decline", "ack", "nak", "release", "inform",
];

fn type_slot(t: Option<MessageType>) -> usize {
    match t.map(u8::from) {
        Some(n @ 1..=8) => n as usize,
        _ => 0,
    }
}

/// Latency buckets, seconds.
const BUCKETS: [f64; 8] = [10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3];

/// dhcpd's metrics. Counters by message type are made once, one per type,
/// so the request path pays one atomic add, not a label lookup.
#[derive(Clone)]
struct Metrics {
    requests: [Counter; 9],
    replies: [Counter; 9],
    ignored: Family<[(&'static str, &'static str); 1], Counter>,
    latency: Histogram,
    index_hosts: Gauge,
    index_revision: Gauge,
    index_built: Gauge,
    store_reachable: Gauge,
}

impl Metrics {
    fn new(reg: &mut Registry) -> Metrics {
        let by_type = |reg: &mut Registry, name: &str, help: &str| -> [Counter; 9] {
            let family = Family::<[(&'static str, &'static str); 1], Counter>::default();
            reg.register(name, help, family.clone());
            TYPE_NAMES.map(|t| family.get_or_create(&[("type", t)]).clone())
        };
        let m = Metrics {
            requests: by_type(reg, "clusto_dhcp_requests", "Requests by message type"),
            replies: by_type(reg, "clusto_dhcp_replies", "Replies by message type"),
            ignored: Family::default(),
            latency: Histogram::new(BUCKETS),
            index_hosts: Gauge::default(),
            index_revision: Gauge::default(),
            index_built: Gauge::default(),
            store_reachable: Gauge::default(),
        };
        reg.register(
            "clusto_dhcp_ignored",
            "Requests not answered, by reason",
            m.ignored.clone(),
        );
        reg.register(
            "clusto_dhcp_latency_seconds",
            "Time to answer a request",
            m.latency.clone(),
        );
        reg.register(
            "clusto_dhcp_index_hosts",
            "MACs in the index",
            m.index_hosts.clone(),
        );
        reg.register(
            "clusto_dhcp_index_revision",
            "Store revision the index is as of",
            m.index_revision.clone(),
        );
        reg.register(
            "clusto_dhcp_index_updated_timestamp_seconds",
            "When the index last changed (Unix time)",
            m.index_built.clone(),
        );
        reg.register(
            "clusto_dhcp_store_reachable",
            "1 while the last look at the store worked; 0 while answers come from the last index (stale but available)",
            m.store_reachable.clone(),
        );
        m.store_reachable.set(1);
        m
    }

    fn ignored(&self, reason: &'static str) {
        self.ignored.get_or_create(&[("reason", reason)]).inc();
    }

    fn published(&self, idx: &DhcpIndex) {
        self.index_hosts.set(idx.len() as i64);
        self.index_revision.set(idx.revision.max(0));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.index_built.set(now);
    }
}

fn socket(opts: &Options) -> Result<UdpSocket, ServerError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    if let Some(ifname) = &opts.interface {
        s.bind_device(Some(ifname.as_bytes()))?;
    }
    s.bind(&opts.listen.into())?;
    s.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(s.into())?)
}

/// Builds the index `clusto dhcpd` serves from, as of the head: the
/// start of its list-then-watch ([`refresh`] follows from there).
pub async fn build_index(store: &Store) -> Result<DhcpIndex, ServerError> {
    let t = Instant::now();
    // Only what answers need: dhcp.* and hostname attributes, ports,
    // settings, containment and addresses; nothing is kept but the index.
    let (head, inv) = store.load_slice(&["dhcp", "hostname", "bootstrap"]).await?;
    let idx = DhcpIndex::build(&inv, head);
    drop(inv);
    // The inventory was only scaffolding for the index: hand the freed
    // memory back so the long-running responder stays small.
    clusto_store::release_freed_memory();
    tracing::info!(hosts = idx.len(), revision = head, elapsed = ?t.elapsed(), "DHCP index built");
    Ok(idx)
}

/// Logs each kind of ignore at most once a second.
struct Limiter(HashMap<&'static str, Instant>);

impl Limiter {
    fn log(&mut self, i: &Ignored) {
        let now = Instant::now();
        let last = self
            .0
            .entry(i.reason())
            .or_insert(now - Duration::from_secs(2));
        if now.duration_since(*last) < Duration::from_secs(1) {
            return;
        }
        *last = now;
        match i {
            Ignored::Declined { .. } => {
                tracing::warn!(?i, "client declined its address: is it in use elsewhere?")
            }
            _ => tracing::info!(reason = i.reason(), ?i, "not answered"),
        }
    }
}

/// Panics inside dhcproto's decoder are caught per packet (see
/// [`crate::decode`]); report them as a quiet log line instead of a
/// backtrace on stderr for every crafted packet. Other panics keep the
/// default report.
fn quiet_decoder_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info
            .location()
            .is_some_and(|l| l.file().contains("dhcproto"))
        {
            tracing::debug!(%info, "malformed packet rejected by the decoder");
        } else {
            default(info);
        }
    }));
}

/// Above this many devices to re-resolve, rebuilding is cheaper than patching.
const PATCH_LIMIT: usize = 50_000;

/// The devices whose answers the rows in `ch` can change: a device's own
/// rows (entity, `dhcp.*`, `hostname`, `bootstrap`, port attributes,
/// addresses), everything inside what gained or lost `dhcp.*`/`hostname`
/// or moved, and the holders of an IPManager's addresses (and of unmanaged
/// ones) when its network or gateway changes.
async fn affected(snap: &mut Snapshot, ch: &Changes) -> Result<Vec<EntityId>, StoreError> {
    let mut direct = BTreeSet::new();
    let mut containers = Vec::new();
    let mut managers = Vec::new();
    for (_, f) in ch.added.iter().chain(&ch.retired) {
        match f {
            Fact::Entity(e) => {
                direct.insert(e.id);
            }
            Fact::Attr(e, a) => match a.key.as_str() {
                "dhcp" | "hostname" => {
                    direct.insert(*e);
                    containers.push(*e);
                }
                "bootstrap" => {
                    direct.insert(*e);
                }
                SPEC_KEY if matches!(a.subkey.as_deref(), Some("cidr" | "gateway")) => {
                    managers.push(*e);
                }
                k if k.starts_with(PORT_KEY_PREFIX) => {
                    direct.insert(*e);
                }
                _ => {}
            },
            Fact::Contains(c) => {
                direct.insert(c.child);
                containers.push(c.child);
            }
            Fact::Link(_) => {}
            Fact::Address(a) => {
                direct.insert(a.holder);
            }
        }
    }
    containers.sort_unstable();
    containers.dedup();
    managers.sort_unstable();
    managers.dedup();
    direct.extend(snap.descendants(&containers).await?);
    if !managers.is_empty() {
        direct.extend(snap.holders(&managers).await?);
    }
    Ok(direct.into_iter().collect())
}

/// What a patch reads: the devices by id, their containers (merged
/// `dhcp.*`), and every IPManager (an unmanaged address's network).
fn devices_scope(ids: &[EntityId]) -> Scope {
    Scope::read(Vec::<String>::new())
        .with_ids(ids.iter().copied())
        .with_kind(Kind::IpManager)
}

/// Brings `index` up to the head: reads the rows changed since its
/// revision, loads just the devices they affect and patches their MACs in
/// place (one short write lock). Returns how many MACs were re-resolved,
/// or None when the head had not moved.
pub async fn refresh(
    store: &Store,
    index: &RwLock<DhcpIndex>,
) -> Result<Option<usize>, ServerError> {
    let since = index.read().expect("index lock").revision;
    let mut snap = store.snapshot(None).await?;
    if snap.rev() == since {
        return Ok(None);
    }
    let ch = snap.changes_since(since).await?;
    let devices = affected(&mut snap, &ch).await?;
    if devices.len() > PATCH_LIMIT {
        drop(snap);
        let idx = build_index(store).await?;
        let n = idx.len();
        *index.write().expect("index lock") = idx;
        return Ok(Some(n));
    }
    let mut inv = snap.load(&devices_scope(&devices)).await?;
    let carriers = index.read().expect("index lock").carriers(&inv, &devices);
    if carriers.len() > devices.len() {
        inv = snap.load(&devices_scope(&carriers)).await?;
    }
    let patch = index
        .read()
        .expect("index lock")
        .patch(&inv, &devices, snap.rev());
    let n = patch.len();
    index.write().expect("index lock").apply(patch);
    Ok(Some(n))
}

/// Serves until the socket fails.
pub async fn run(store: Store, opts: Options) -> Result<(), ServerError> {
    quiet_decoder_panics();
    let index = Arc::new(RwLock::new(build_index(&store).await?));
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let ready = Readiness::default();
    metrics.published(&index.read().expect("index lock"));
    // Follow the store off the request path: patch what each revision changed.
    {
        let (store, index, metrics, every) =
            (store.clone(), index.clone(), metrics.clone(), opts.refresh);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let t = Instant::now();
                let result = refresh(&store, &index).await;
                metrics.store_reachable.set(result.is_ok() as i64);
                match result {
                    Ok(Some(n)) => {
                        metrics.published(&index.read().expect("index lock"));
                        tracing::debug!(macs = n, elapsed = ?t.elapsed(), "DHCP index patched");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "index refresh failed; serving the current one")
                    }
                }
            }
        });
    }
    if let Some(addr) = opts.metrics {
        clusto_http::serve(addr, clusto_http::routes(Arc::new(registry), ready.clone())).await?;
    }
    let sock = socket(&opts)?.into_std()?;
    sock.set_nonblocking(false)?;
    if let Some(account) = &opts.run_as {
        account.switch()?;
    }
    tracing::info!(listen = %opts.listen, server_id = %opts.server_id, "DHCP responder ready");
    ready.set(true);
    let ctx = Context {
        server_id: opts.server_id,
        learn: opts.learn,
    };
    // Learning writes go to the store off the request path.
    let (learnt, mut to_learn) = tokio::sync::mpsc::unbounded_channel::<(String, String, bool)>();
    {
        let store = store.clone();
        tokio::spawn(async move {
            while let Some((device, mac, bmc)) = to_learn.recv().await {
                match learn(&store, &device, &mac, bmc).await {
                    Ok(Some(rev)) => {
                        tracing::info!(%device, %mac, bmc, revision = rev, "learnt a MAC")
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(%device, %mac, error = %e, "could not record a learnt MAC")
                    }
                }
            }
        });
    }
    // The request path is a plain blocking loop on its own thread: no
    // executor between the socket and the answer.
    let serve = std::thread::spawn(move || -> std::io::Result<()> {
        let mut limiter = Limiter(HashMap::new());
        let mut buf = vec![0u8; 4096];
        let mut out = Vec::with_capacity(1024);
        loop {
            let (n, _peer) = sock.recv_from(&mut buf)?;
            let t = Instant::now();
            if let Some(i) = crate::handler::screen(&index.read().expect("index lock"), &buf[..n]) {
                metrics.ignored(i.reason());
                limiter.log(&i);
                continue;
            }
            let Some(req) = crate::decode(&buf[..n]) else {
                metrics.ignored("malformed");
                continue;
            };
            metrics.requests[type_slot(req.opts().msg_type())].inc();
            let outcome = handle(&index.read().expect("index lock"), &ctx, &req);
            match outcome {
                Outcome::Reply(reply, dest) => {
                    if crate::handler::encode_reply(&reply, &req, &mut out).is_err() {
                        metrics.ignored("encode_failed");
                        continue;
                    }
                    let to = match dest {
                        Destination::Relay(g) => SocketAddrV4::new(g, 67),
                        Destination::Unicast(c) => SocketAddrV4::new(c, 68),
                        Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
                    };
                    if let Err(e) = sock.send_to(&out, to) {
                        tracing::warn!(error = %e, %to, "send failed");
                        continue;
                    }
                    metrics.replies[type_slot(reply.opts().msg_type())].inc();
                    metrics.latency.observe(t.elapsed().as_secs_f64());
                }
                Outcome::Ignore(i) => {
                    metrics.ignored(i.reason());
                    limiter.log(&i);
                }
                Outcome::Learn { device, mac, bmc } => {
                    metrics.ignored("learning");
                    let _ = learnt.send((device, mac, bmc));
                }
            }
        }
    });
    tokio::task::spawn_blocking(move || serve.join())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .map_err(|_| std::io::Error::other("the responder thread panicked"))??;
    Ok(())
}
