//! The libvirt VMManager backend. One connection per hypervisor URI,
//! reused; every libvirt call runs on tokio's blocking pool because the C
//! library blocks.
//!
//! Ownership: a domain's UUID *is* the VirtualMachine's uid (derived from
//! the store's uid and the object's id), so listing tells clusto's domains
//! apart without a metadata call per domain, a redefine with the same UUID
//! is idempotent, and a domain left by a crashed controller is adopted
//! rather than duplicated. The disk volume is named after the uid too,
//! so renaming the object does not orphan it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use clusto_core::vm::{Desired, Observed, ObservedState, Power, uid_prefix};
use clusto_vm::{Backend, BackendError, BoxFut, CreateRequest, Scope};
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::enumutil::Enum;
use virt::error::{Error as VirtError, ErrorNumber};
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;

/// XML namespace of clusto's domain metadata.
pub const XMLNS: &str = "https://clusto.dev/xmlns/vm/1";

#[derive(Default)]
pub struct Libvirt {
    conns: Mutex<HashMap<String, Connect>>,
    pools: Pools,
    /// libvirt API calls that go to the hypervisor (RPCs on a remote URI).
    calls: Arc<AtomicU64>,
}

/// Counts libvirt calls made inside a job.
#[derive(Clone)]
struct Calls(Arc<AtomicU64>);

impl Calls {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

fn err(e: VirtError) -> BackendError {
    match e.code() {
        Enum::Known(ErrorNumber::NoDomain) | Enum::Known(ErrorNumber::NoStorageVolume) => {
            BackendError::NotFound(e.message().to_string())
        }
        Enum::Known(ErrorNumber::NoStoragePool) | Enum::Known(ErrorNumber::XmlError) => {
            BackendError::Refused(e.message().to_string())
        }
        _ => BackendError::Transient(e.message().to_string()),
    }
}

fn is(e: &VirtError, n: ErrorNumber) -> bool {
    e.code() == Enum::Known(n)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The volume holding a VM's disk.
pub fn volume_name(uid: &str) -> String {
    format!("clusto-{uid}.qcow2")
}

/// The domain definition for a VM. `kind` is libvirt's domain type
/// (`kvm`, `qemu`, `test`, `xen`).
pub fn domain_xml(
    vm: &Desired,
    uid: &str,
    store_uid: &str,
    kind: &str,
    pool: &str,
    volume: &str,
) -> String {
    let network = vm.attrs.get("libvirt.network");
    let nics: String = match network {
        Some(net) => vm
            .macs
            .iter()
            .map(|m| {
                format!(
                    "<interface type='network'><source network='{}'/><mac address='{}'/><model type='virtio'/></interface>",
                    esc(net),
                    esc(m)
                )
            })
            .collect(),
        None => String::new(),
    };
    format!(
        "<domain type='{kind}'>\
<name>{name}</name><uuid>{uid}</uuid>\
<description>clusto VirtualMachine {name}</description>\
<metadata><clusto:vm xmlns:clusto='{XMLNS}' store='{store}' object='{name}'/></metadata>\
<memory unit='MiB'>{mem}</memory><currentMemory unit='MiB'>{mem}</currentMemory><vcpu>{cpus}</vcpu>\
<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>\
<on_crash>destroy</on_crash>\
<devices>\
<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/><source pool='{pool}' volume='{volume}'/><target dev='vda' bus='virtio'/></disk>\
{nics}<serial type='pty'/><console type='pty'/>\
</devices></domain>",
        kind = esc(kind),
        name = esc(&vm.name),
        uid = esc(uid),
        store = esc(store_uid),
        mem = vm.need.memory_mib,
        cpus = vm.need.cpus,
        pool = esc(pool),
        volume = esc(volume),
    )
}

type Pools = Arc<Mutex<HashMap<String, StoragePool>>>;

/// The storage pool `key` ("URI POOL") names, looked up once per
/// hypervisor: concurrent creates wait for the first lookup instead of
/// each making their own.
fn pool_handle(pools: &Pools, key: &str, c: &Connect, n: &Calls) -> Result<StoragePool, VirtError> {
    let mut g = pools.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = g.get(key) {
        return Ok(p.clone());
    }
    let name = key.rsplit_once(' ').map(|(_, p)| p).unwrap_or(key);
    n.add(1);
    let p = c.lookup_storage_pool_by_name(name)?;
    g.insert(key.to_string(), p.clone());
    Ok(p)
}

fn forget_pool(pools: &Pools, key: &str) {
    pools.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
}

fn observe(d: &Domain, host: Option<&str>) -> Result<Observed, VirtError> {
    let info = d.info()?;
    let state = match info.state {
        Enum::Known(DomainState::Running) | Enum::Known(DomainState::Blocked) => {
            ObservedState::Running
        }
        Enum::Known(DomainState::Shutoff) | Enum::Known(DomainState::Crashed) => {
            ObservedState::Stopped
        }
        Enum::Known(DomainState::Paused) => ObservedState::Transitional("Paused".into()),
        Enum::Known(DomainState::Shutdown) => ObservedState::Transitional("ShuttingDown".into()),
        other => ObservedState::Transitional(format!("{other:?}")),
    };
    let uuid = d.uuid_string()?;
    Ok(Observed {
        backend_id: uuid.clone(),
        name: d.name()?,
        uid: Some(uuid),
        state,
        cpus: Some(info.nr_virt_cpu as i64),
        memory_mib: Some((info.max_mem / 1024) as i64),
        instance_type: None,
        host: host.map(str::to_string),
        addresses: Vec::new(),
    })
}

impl Libvirt {
    pub fn new() -> Libvirt {
        // libvirt prints every error to stderr by default; ours are
        // reported through status and logs instead.
        virt::error::clear_error_callback();
        Libvirt::default()
    }

    /// The cached connection to `uri`, reopened if it died.
    fn conn(&self, uri: &str) -> Result<Connect, BackendError> {
        let mut g = self
            .conns
            .lock()
            .map_err(|_| BackendError::Transient("connection cache poisoned".into()))?;
        if let Some(c) = g.get(uri)
            && c.is_alive().unwrap_or(false)
        {
            return Ok(c.clone());
        }
        let c = Connect::open(Some(uri)).map_err(|e| {
            BackendError::Transient(format!("cannot connect to {uri}: {}", e.message()))
        })?;
        g.insert(uri.to_string(), c.clone());
        Ok(c)
    }

    /// Runs a blocking libvirt job against the scope's connection.
    fn job<'a, T: Send + 'static>(
        &'a self,
        scope: &'a Scope,
        f: impl FnOnce(Connect, Calls) -> Result<T, BackendError> + Send + 'static,
    ) -> BoxFut<'a, T> {
        let calls = Calls(self.calls.clone());
        Box::pin(async move {
            let c = self.conn(&scope.uri)?;
            tokio::task::spawn_blocking(move || f(c, calls))
                .await
                .map_err(|e| BackendError::Transient(format!("libvirt worker: {e}")))?
        })
    }
}

/// The domain type: `libvirt.domain-type`, else from the URI's driver
/// (no call to the hypervisor).
/// Treats "the domain is not in a state for that" (already running,
/// already off) as done: the goal is met.
fn goal_met(r: Result<(), VirtError>) -> Result<(), BackendError> {
    match r {
        Err(e) if !is(&e, ErrorNumber::OperationInvalid) => Err(err(e)),
        _ => Ok(()),
    }
}

impl Libvirt {
    /// Starts, or hard powers off, a domain: the spec says Stopped, and a
    /// guest without ACPI (or without an OS) would ignore a polite shutdown.
    fn power<'a>(&'a self, scope: &'a Scope, vm: &'a Observed, p: Power) -> BoxFut<'a, Observed> {
        let id = vm.backend_id.clone();
        let host = scope.host.clone();
        self.job(scope, move |c, n| {
            n.add(3);
            let d = c.lookup_domain_by_uuid_string(&id).map_err(err)?;
            goal_met(match p {
                Power::Running => d.create(),
                Power::Stopped => d.destroy(),
            })?;
            observe(&d, host.as_deref()).map_err(err)
        })
    }
}

fn domain_kind(uri: &str, vm: &Desired) -> String {
    if let Some(k) = vm.attrs.get("libvirt.domain-type") {
        return k.clone();
    }
    let driver = uri.split([':', '+']).next().unwrap_or_default();
    match driver {
        "test" => "test".into(),
        "xen" | "libxl" => "xen".into(),
        _ => "kvm".into(),
    }
}

impl Backend for Libvirt {
    fn list<'a>(
        &'a self,
        scope: &'a Scope,
        store_uid: &'a str,
        want: &'a [String],
    ) -> BoxFut<'a, Vec<Observed>> {
        // Two listings (running, not running) give every domain's power
        // state; only this store's domains (UUID prefix) that are being
        // reconciled cost one more call each, for their size. Other
        // domains on a shared hypervisor cost nothing.
        let host = scope.host.clone();
        let prefix = uid_prefix(store_uid);
        let want: std::collections::HashSet<String> = want.iter().cloned().collect();
        self.job(scope, move |c, n| {
            let mut out = Vec::new();
            for (flag, state) in [
                (
                    virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE,
                    ObservedState::Running,
                ),
                (
                    virt::sys::VIR_CONNECT_LIST_DOMAINS_INACTIVE,
                    ObservedState::Stopped,
                ),
            ] {
                n.add(1);
                for d in c.list_all_domains(flag).map_err(err)? {
                    // Local: the handle carries its UUID and name.
                    let Ok(uuid) = d.uuid_string() else { continue };
                    if !uuid.starts_with(&prefix) {
                        continue;
                    }
                    if want.contains(&uuid) {
                        n.add(1);
                        match observe(&d, host.as_deref()) {
                            Ok(o) => out.push(o),
                            // Undefined between the listing and the look.
                            Err(e) if is(&e, ErrorNumber::NoDomain) => {}
                            Err(e) => return Err(err(e)),
                        }
                    } else {
                        out.push(Observed {
                            backend_id: uuid.clone(),
                            name: d.name().unwrap_or_default(),
                            uid: Some(uuid),
                            state: state.clone(),
                            cpus: None,
                            memory_mib: None,
                            instance_type: None,
                            host: host.clone(),
                            addresses: Vec::new(),
                        });
                    }
                }
            }
            Ok(out)
        })
    }

    fn create<'a>(&'a self, scope: &'a Scope, req: CreateRequest<'a>) -> BoxFut<'a, Observed> {
        let vm = req.vm.clone();
        let uid = req.uid.to_string();
        let store_uid = req.store_uid.to_string();
        let pool_name = scope.pool.clone().unwrap_or_else(|| "default".into());
        let host = scope.host.clone();
        let pools = self.pools.clone();
        let key = format!("{} {pool_name}", scope.uri);
        let uri = scope.uri.clone();
        self.job(scope, move |c, n| {
            let pool = pool_handle(&pools, &key, &c, &n).map_err(|e| {
                BackendError::Refused(format!(
                    "storage pool {pool_name:?} on {}: {}",
                    host.as_deref().unwrap_or("?"),
                    e.message()
                ))
            })?;
            let vname = volume_name(&uid);
            // Allocation 0: thin. Left out, libvirt preallocates the whole
            // capacity (40 s for 1 GiB here).
            let vol_xml = format!(
                "<volume><name>{}</name><capacity unit='GiB'>{}</capacity><allocation>0</allocation><target><format type='qcow2'/></target></volume>",
                esc(&vname),
                vm.need.disk_gib
            );
            let made = match &vm.image {
                Some(image) => {
                    n.add(1);
                    let src = pool.lookup_storage_vol_by_name(image).map_err(|e| {
                        BackendError::Refused(format!(
                            "image volume {image:?} is not in pool {pool_name:?}: {}",
                            e.message()
                        ))
                    })?;
                    n.add(1);
                    StorageVol::create_xml_from(&pool, &vol_xml, &src, 0)
                }
                None => {
                    n.add(1);
                    StorageVol::create_xml(&pool, &vol_xml, 0)
                }
            };
            match made {
                Ok(_) => {}
                // Left by an earlier attempt: reuse it.
                Err(e) if is(&e, ErrorNumber::StorageVolExist) || e.message().contains("exist") => {}
                Err(e) => {
                    forget_pool(&pools, &key);
                    return Err(err(e));
                }
            }
            let xml = domain_xml(&vm, &uid, &store_uid, &domain_kind(&uri, &vm), &pool_name, &vname);
            n.add(1);
            let d = c.define_domain_xml(&xml).map_err(err)?;
            if vm.power == Power::Running {
                n.add(1);
                d.create().map_err(err)?;
            }
            // What was just defined and started: no need to ask.
            Ok(Observed {
                backend_id: uid.clone(),
                name: vm.name.clone(),
                uid: Some(uid),
                state: match vm.power {
                    Power::Running => ObservedState::Running,
                    Power::Stopped => ObservedState::Stopped,
                },
                cpus: Some(vm.need.cpus),
                memory_mib: Some(vm.need.memory_mib),
                instance_type: None,
                host,
                addresses: Vec::new(),
            })
        })
    }

    fn start<'a>(&'a self, scope: &'a Scope, vm: &'a Observed) -> BoxFut<'a, Observed> {
        self.power(scope, vm, Power::Running)
    }

    fn stop<'a>(&'a self, scope: &'a Scope, vm: &'a Observed) -> BoxFut<'a, Observed> {
        self.power(scope, vm, Power::Stopped)
    }

    fn resize<'a>(
        &'a self,
        scope: &'a Scope,
        want: &'a Desired,
        vm: &'a Observed,
    ) -> BoxFut<'a, Observed> {
        let id = vm.backend_id.clone();
        let host = scope.host.clone();
        let want = want.clone();
        self.job(scope, move |c, n| {
            n.add(4);
            let d = c.lookup_domain_by_uuid_string(&id).map_err(err)?;
            let xml = d.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE).map_err(err)?;
            let xml = replace_element(
                &xml,
                "memory",
                &format!("<memory unit='MiB'>{}</memory>", want.need.memory_mib),
            );
            let xml = replace_element(
                &xml,
                "currentMemory",
                &format!(
                    "<currentMemory unit='MiB'>{}</currentMemory>",
                    want.need.memory_mib
                ),
            );
            let xml = replace_element(&xml, "vcpu", &format!("<vcpu>{}</vcpu>", want.need.cpus));
            c.define_domain_xml(&xml).map_err(err)?;
            let o = observe(&d, host.as_deref()).map_err(err)?;
            if o.state == ObservedState::Running {
                return Err(BackendError::Refused(format!(
                    "{} cpu/{} MiB recorded in the domain's definition; it takes effect when the domain next starts",
                    want.need.cpus, want.need.memory_mib
                )));
            }
            Ok(o)
        })
    }

    fn destroy<'a>(&'a self, scope: &'a Scope, vm: &'a Observed) -> BoxFut<'a, ()> {
        let id = vm.backend_id.clone();
        let pool_name = scope.pool.clone().unwrap_or_else(|| "default".into());
        let key = format!("{} {pool_name}", scope.uri);
        let pools = self.pools.clone();
        // Listed as stopped a moment ago: no power-off (a domain started
        // since then makes undefine keep it as transient; the next pass
        // sees it and destroys it).
        let running = vm.state != ObservedState::Stopped;
        self.job(scope, move |c, n| {
            n.add(1);
            match c.lookup_domain_by_uuid_string(&id) {
                Ok(d) => {
                    if running {
                        n.add(1);
                        goal_met(d.destroy())?;
                    }
                    n.add(1);
                    match d.undefine() {
                        Ok(()) => {}
                        Err(e) if is(&e, ErrorNumber::NoDomain) => {}
                        Err(e) => return Err(err(e)),
                    }
                }
                Err(e) if is(&e, ErrorNumber::NoDomain) => {}
                Err(e) => return Err(err(e)),
            }
            let pool = match pool_handle(&pools, &key, &c, &n) {
                Ok(p) => p,
                // No pool, no volume.
                Err(e) if is(&e, ErrorNumber::NoStoragePool) => return Ok(()),
                Err(e) => return Err(err(e)),
            };
            n.add(1);
            let gone = match pool.lookup_storage_vol_by_name(&volume_name(&id)) {
                Ok(v) => {
                    n.add(1);
                    v.delete(0)
                }
                Err(e) if is(&e, ErrorNumber::NoStorageVolume) => Ok(()),
                Err(e) => Err(e),
            };
            gone.map_err(|e| {
                // The cached handle may be stale (pool redefined): look it
                // up again next time.
                forget_pool(&pools, &key);
                err(e)
            })
        })
    }

    fn console(&self, scope: &Scope, name: &str, _backend_id: Option<&str>) -> String {
        format!("virsh -c {} console {name}", scope.uri)
    }

    fn requests(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// Replaces the first `<tag …>…</tag>` element (or adds it before
/// `</domain>` when absent).
fn replace_element(xml: &str, tag: &str, with: &str) -> String {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut from = 0;
    while let Some(i) = xml[from..].find(&open).map(|i| i + from) {
        // `<memory` must not match `<memoryBacking`.
        let next = xml[i + open.len()..].chars().next();
        if matches!(next, Some('>') | Some(' ')) {
            if let Some(j) = xml[i..].find(&close) {
                let end = i + j + close.len();
                return format!("{}{with}{}", &xml[..i], &xml[end..]);
            }
            return xml.to_string();
        }
        from = i + open.len();
    }
    xml.replacen("</domain>", &format!("{with}</domain>"), 1)
}

/// A shared handle, for providers that hand out `Arc<dyn Backend>`.
pub fn shared() -> Arc<Libvirt> {
    Arc::new(Libvirt::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_element_keeps_similar_tags() {
        let x = "<domain><memoryBacking/><memory unit='KiB'>1</memory><vcpu placement='static'>1</vcpu></domain>";
        let y = replace_element(x, "memory", "<memory unit='MiB'>2</memory>");
        assert_eq!(
            y,
            "<domain><memoryBacking/><memory unit='MiB'>2</memory><vcpu placement='static'>1</vcpu></domain>"
        );
        let z = replace_element(&y, "vcpu", "<vcpu>4</vcpu>");
        assert!(z.contains("<vcpu>4</vcpu>") && !z.contains("placement"));
        let w = replace_element(
            "<domain></domain>",
            "currentMemory",
            "<currentMemory>1</currentMemory>",
        );
        assert_eq!(w, "<domain><currentMemory>1</currentMemory></domain>");
    }
}
