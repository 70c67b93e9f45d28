//! `clusto vm …` and `clusto controller`: the verbs write desired state,
//! the controller acts on it.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use clusto_cli::backends::Backends;
use clusto_core::vm::{BackendKind, Power};
use clusto_core::{Inventory, Kind, Value};
use clusto_store::{RevisionMeta, Scope, Store};
use clusto_vm::{Controller, Options, Provider};
use serde_json::json;

use crate::commands::WriteError;
use crate::output::{Format, emit};

fn vm_id(inv: &Inventory, name: &str) -> Result<clusto_core::EntityId, WriteError> {
    let id = inv.id_of(name)?;
    if inv.kind_of(id) != Some(Kind::VirtualMachine) {
        return Err(WriteError::Usage(format!("{name} is not a VirtualMachine")));
    }
    Ok(id)
}

pub struct ControllerArgs {
    pub metrics: Option<std::net::SocketAddr>,
    pub resync: Duration,
    pub rate: f64,
    pub workers: usize,
    pub poll: Duration,
    pub lease_ttl: Duration,
    pub once: bool,
    pub kube: crate::KubeArgs,
}

pub async fn controller(store: &Store, a: ControllerArgs) -> Result<ExitCode> {
    let opts = Options {
        poll: a.poll,
        resync: a.resync,
        rate: a.rate,
        workers: a.workers,
        lease_ttl: a.lease_ttl,
        ..Options::default()
    };
    let mut c = Controller::new(store.clone(), Arc::new(Backends::new()), opts).await?;
    let mut power = clusto_power::Controller::new(
        store.clone(),
        clusto_power::Options {
            resync: a.resync,
            rate: a.rate,
            workers: a.workers.max(1) * 2,
            lease_ttl: a.lease_ttl,
            ..clusto_power::Options::default()
        },
    );
    let kube_metrics = clusto_kube::Metrics::default();
    if let Some(addr) = a.metrics {
        let mut registry = clusto_http::prometheus_client::registry::Registry::default();
        c.metrics.register(&mut registry);
        power.metrics.register(&mut registry);
        if a.kube.kube {
            kube_metrics.register(&mut registry);
        }
        // Ready once constructed: the controller has read its world.
        let ready = clusto_http::Readiness::default();
        ready.set(true);
        clusto_http::serve(addr, clusto_http::routes(Arc::new(registry), ready)).await?;
    }
    if a.once {
        let (vms, power) = tokio::join!(
            vm_once(store, &mut c, a.lease_ttl),
            power_once(store, &mut power, a.lease_ttl)
        );
        let (vms, power) = (vms?, power?);
        eprintln!("{power}");
        eprintln!("{vms}");
        return Ok(ExitCode::SUCCESS);
    }
    tracing::info!("controller started");
    let sync = if a.kube.kube {
        Some(kube_sync(store, &a.kube, kube_metrics).await?)
    } else {
        None
    };
    tokio::try_join!(
        async { c.run(shutdown_signal()).await.map_err(anyhow::Error::from) },
        async {
            power
                .run(a.poll, shutdown_signal())
                .await
                .map_err(anyhow::Error::from)
        },
        async {
            match sync {
                Some(sync) => sync.await,
                None => Ok(()),
            }
        },
    )?;
    tracing::info!("controller stopped");
    Ok(ExitCode::SUCCESS)
}

/// `--once`: a pass ends after this long without work…
const QUIET: Duration = Duration::from_millis(1500);
/// …or after this long in all.
const PATIENCE: Duration = Duration::from_secs(600);

/// Runs `converge` until its last pass was made holding the lease, waiting
/// for a lease another controller holds, or giving up once a dead holder's
/// SQLite lease should have expired. Returns that run's reports.
async fn until_led<R>(
    store: &Store,
    lease: &str,
    ttl: Duration,
    mut converge: impl AsyncFnMut() -> Result<Vec<R>>,
    led: impl Fn(&R) -> bool,
) -> Result<Vec<R>> {
    let started = Instant::now();
    loop {
        let reports = converge().await?;
        if reports.last().is_some_and(&led) {
            return Ok(reports);
        }
        if started.elapsed() > ttl * 2 {
            let who = store.lease_holder(lease).await?;
            bail!(
                "another controller holds the lease {lease} ({})",
                who.map(|w| w.0).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `--once` for VMs: converge, release, say where the VMs are.
async fn vm_once(store: &Store, c: &mut Controller, ttl: Duration) -> Result<String> {
    let lease = clusto_vm::controller::LEASE_NAME;
    let converge = async || Ok(c.converge(QUIET, PATIENCE).await?);
    until_led(store, lease, ttl, converge, |r| r.leader).await?;
    c.release().await?;
    let inv = vm_view(store, None, None).await?;
    let mut phases: std::collections::BTreeMap<String, usize> = Default::default();
    let vms = inv.entities_of_kind(Kind::VirtualMachine);
    for e in &vms {
        *phases.entry(inv.vm_phase(e.id)).or_default() += 1;
    }
    let by: Vec<String> = phases.iter().map(|(p, n)| format!("{n} {p}")).collect();
    Ok(format!("converged: {} VMs ({})", vms.len(), by.join(", ")))
}

/// `--once` for declared power: converge, release, say what it did.
async fn power_once(
    store: &Store,
    p: &mut clusto_power::Controller,
    ttl: Duration,
) -> Result<String> {
    let lease = clusto_power::controller::LEASE_NAME;
    let converge = async || Ok(p.converge(QUIET, PATIENCE).await?);
    let reports = until_led(store, lease, ttl, converge, |r| r.leader).await?;
    p.release().await?;
    let sum =
        |f: fn(&clusto_power::controller::TickReport) -> u64| reports.iter().map(f).sum::<u64>();
    let busy: Duration = reports
        .iter()
        .filter(|r| r.reconciled > 0)
        .map(|r| r.took)
        .sum();
    Ok(format!(
        "power: {} device(s) switched, {} not as declared; {} reads, {} writes in {:.2} s of passes",
        sum(|r| r.switched as u64),
        p.failing(),
        sum(|r| r.reads),
        sum(|r| r.writes),
        busy.as_secs_f64()
    ))
}

/// The custom-resource sync of `controller --kube`, ready to run.
async fn kube_sync(
    store: &Store,
    k: &crate::KubeArgs,
    metrics: clusto_kube::Metrics,
) -> Result<impl std::future::Future<Output = Result<()>> + use<>> {
    let config = match &k.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let client = kube::Client::try_from(config)?;
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let leases = kube::Api::namespaced(client.clone(), &k.lease_namespace);
    let opts = clusto_kube::Options {
        namespace: k.namespace.clone(),
        batch_window: Duration::from_millis(200),
        poll: Duration::from_secs(1),
        leader: Some(clusto_kube::LeaderElector::new(
            leases,
            "clusto-controller",
            &identity,
            Duration::from_secs(k.lease_seconds),
        )),
        reporter: kube::runtime::events::Reporter {
            controller: "clusto-controller".into(),
            instance: Some(identity),
        },
        metrics,
    };
    let store = store.clone();
    Ok(async move {
        clusto_kube::run(client, store, opts, shutdown_signal()).await?;
        Ok(())
    })
}

/// SIGINT or SIGTERM: how every daemon is asked to stop.
pub(crate) async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

pub struct CreateArgs<'a> {
    pub manager: &'a str,
    pub name: Option<&'a str>,
    pub memory: u64,
    pub disk: u64,
    pub cpus: u32,
    pub image: Option<&'a str>,
    pub instance_type: Option<&'a str>,
    pub host: Option<&'a str>,
    pub force: bool,
    pub stopped: bool,
}

pub async fn create(
    store: &Store,
    meta: &RevisionMeta,
    fmt: Format,
    a: CreateArgs<'_>,
) -> Result<()> {
    let mut scope = Scope::write([a.manager]);
    if let Some(n) = a.name {
        scope = scope.name(n);
    } else if let Some(names) = names_manager(store, a.manager).await? {
        scope = scope.with_next_name(&names);
    }
    let w = store
        .write_scope(
            meta,
            &scope,
            |inv| -> Result<(String, String), WriteError> {
                let mgr = inv.id_of(a.manager)?;
                if inv.kind_of(mgr) != Some(Kind::VmManager) {
                    return Err(WriteError::Usage(format!(
                        "{} is not a VMManager",
                        a.manager
                    )));
                }
                let id = match a.name {
                    Some(n) => inv.create(Kind::VirtualMachine, n, None)?,
                    None => {
                        let names = match inv.setting(mgr, "names") {
                            Some(Value::String(n)) => n.clone(),
                            _ => {
                                return Err(WriteError::Usage(format!(
                                    "VM manager {} has no names (a NameManager); give --name",
                                    a.manager
                                )));
                            }
                        };
                        let nm = inv.id_of(&names)?;
                        inv.name_allocate(nm, Kind::VirtualMachine, None)?
                    }
                };
                let mut set = |f: &str, v: String| inv.configure(id, f, &v);
                set("manager", a.manager.to_string())?;
                set("cpus", a.cpus.to_string())?;
                set("memoryMiB", a.memory.to_string())?;
                set("diskGiB", a.disk.to_string())?;
                if let Some(i) = a.image {
                    set("image", i.to_string())?;
                }
                if let Some(t) = a.instance_type {
                    set("instanceType", t.to_string())?;
                }
                set(
                    "powerState",
                    if a.stopped { "Stopped" } else { "Running" }.to_string(),
                )?;
                if let Some(h) = a.host {
                    set("host", h.to_string())?;
                }
                inv.place_and_record_forced(id, a.force)?;
                let name = inv.name_of(id).to_string();
                let reason = inv.vm_placement(id).unwrap_or_default();
                Ok((name, reason))
            },
        )
        .await?;
    let (name, reason) = w.value;
    match fmt {
        Format::Json | Format::Yaml => emit(
            fmt,
            &json!({"name": name, "placement": reason}),
            &[],
            vec![],
        )?,
        _ => {
            println!("{name}");
            if !reason.is_empty() {
                eprintln!("placed: {reason}");
            }
        }
    }
    Ok(())
}

/// What VM commands read: every VM and VM manager with its hosts (the
/// controller's world) and the entity named, as of `at`; its size follows
/// the VMs. The name is loaded too so that naming a non-VM says so.
pub(crate) async fn vm_view(
    store: &Store,
    name: Option<&str>,
    at: Option<i64>,
) -> Result<Inventory> {
    let mut scope = clusto_store::Scope::vm_world();
    if let Some(n) = name {
        scope = scope.name(n);
    }
    Ok(store.load_scope(&scope, at).await?.1)
}

/// The NameManager a VMManager names its VMs with, read ahead of the write
/// so the write loads which of its next names are taken.
async fn names_manager(store: &Store, manager: &str) -> Result<Option<String>> {
    let (_, inv) = store.load_scope(&Scope::read([manager]), None).await?;
    Ok(
        match inv
            .id_of(manager)
            .ok()
            .and_then(|m| inv.setting(m, "names"))
        {
            Some(Value::String(n)) => Some(n.clone()),
            _ => None,
        },
    )
}

pub async fn power(store: &Store, meta: &RevisionMeta, name: &str, p: Power) -> Result<()> {
    let w = store
        .write_scope(
            meta,
            &Scope::write([name]),
            |inv| -> Result<(), WriteError> {
                let id = vm_id(inv, name)?;
                inv.set_vm_power(id, p)?;
                Ok(())
            },
        )
        .await?;
    if w.revision.is_none() {
        eprintln!("{name} is already asked to be {}", p.as_str());
    }
    Ok(())
}

pub async fn set(
    store: &Store,
    meta: &RevisionMeta,
    name: &str,
    field: &str,
    value: &str,
) -> Result<()> {
    store
        .write_scope(
            meta,
            &Scope::write([name]),
            |inv| -> Result<(), WriteError> {
                let id = vm_id(inv, name)?;
                if field == "manager" || field == "powerState" {
                    return Err(WriteError::Usage(format!(
                        "{field} is not changed with vm set (use vm start/stop, or a new VM for another manager)"
                    )));
                }
                inv.configure(id, field, value)?;
                // As apply does: the core keeps the placement when it still holds.
                inv.place_and_record(id)?;
                Ok(())
            },
        )
        .await?;
    Ok(())
}

pub async fn delete(
    store: &Store,
    meta: &RevisionMeta,
    name: &str,
    wait: bool,
    timeout: Duration,
) -> Result<()> {
    let w = store
        .write_scope(
            meta,
            &Scope::write([name]),
            |inv| -> Result<bool, WriteError> {
                let id = vm_id(inv, name)?;
                inv.delete(id)?;
                Ok(inv.entity(id).is_some())
            },
        )
        .await?;
    if !w.value {
        eprintln!("{name} deleted");
        return Ok(());
    }
    if !wait {
        eprintln!(
            "{name} is terminating; the controller removes it once its backend resources are gone"
        );
        return Ok(());
    }
    let until = Instant::now() + timeout;
    loop {
        let (_, inv) = store.load_scope(&Scope::read([name]), None).await?;
        let Ok(id) = inv.id_of(name) else {
            eprintln!("{name} deleted");
            return Ok(());
        };
        if Instant::now() > until {
            let st = inv.vm_status(id);
            let why = st
                .condition("Ready")
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_default();
            bail!(
                "{name} still terminating after {}s ({why})",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn console(store: &Store, name: &str) -> Result<ExitCode> {
    let inv = vm_view(store, Some(name), None).await?;
    let id = vm_id(&inv, name)?;
    let d = inv.vm_desired(id)?;
    let (scope, cfg) = clusto_vm::scope_of(&inv, &d).map_err(|e| anyhow!("{name}: {e}"))?;
    let b = Backends::new()
        .backend(&cfg)
        .map_err(|e| anyhow!("{name}: {e}"))?;
    let st = inv.vm_status(id);
    let cmd = b.console(&scope, &d.name, st.backend_id.as_deref());
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() && cfg.backend == BackendKind::Libvirt {
        let parts: Vec<&str> = cmd.split_whitespace().collect();
        let status = std::process::Command::new(parts[0])
            .args(&parts[1..])
            .status();
        return match status {
            Ok(s) if s.success() => Ok(ExitCode::SUCCESS),
            Ok(_) => Ok(ExitCode::FAILURE),
            Err(e) => bail!("cannot run {cmd}: {e}"),
        };
    }
    println!("{cmd}");
    Ok(ExitCode::SUCCESS)
}
