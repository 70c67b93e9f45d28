//! VM controller benchmark: N VirtualMachine objects converged from an
//! empty backend (libvirt's test driver in-process, or EC2 on a moto
//! server), then a no-op resync. Prints one CSV line per phase.
//!
//! vm-converge libvirt N
//! vm-converge libvirtd N POOL          (a real libvirtd, qemu:///system; also deletes them)
//! vm-converge ec2 N ENDPOINT CREDENTIALS_FILE

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clusto_cli::backends::Backends;
use clusto_core::{Inventory, Kind, Value};
use clusto_store::{RevisionMeta, Store};
use clusto_vm::{Controller, Options};

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A hypervisor in the manager with `system.memory`, `.disk`, `.cpucount`.
fn hypervisor(
    inv: &mut Inventory,
    mgr: clusto_core::EntityId,
    name: &str,
    [memory, disk, cpus]: [i64; 3],
) -> Result<()> {
    let id = inv.create(Kind::Server, name, None)?;
    for (k, v) in [("memory", memory), ("disk", disk), ("cpucount", cpus)] {
        inv.attr_set(
            id,
            "system",
            Some(k),
            clusto_core::NumberSpec::None,
            Value::Int(v),
        )?;
    }
    inv.insert(mgr, id, None)?;
    Ok(())
}

fn build(
    inv: &mut Inventory,
    backend: &str,
    n: usize,
    ec2: Option<(&str, &str)>,
    pool: Option<&str>,
) -> Result<()> {
    let mgr = inv.create(Kind::VmManager, "bench", None)?;
    match ec2 {
        None if backend == "libvirtd" => {
            inv.configure(mgr, "backend", "libvirt")?;
            inv.configure(
                mgr,
                "libvirt",
                &serde_json::json!({"uri": "qemu:///system", "pool": pool}).to_string(),
            )?;
            hypervisor(inv, mgr, "localhv", [1 << 20, 1 << 20, 1 << 10])?;
        }
        None => {
            inv.configure(mgr, "backend", "libvirt")?;
            inv.configure(
                mgr,
                "libvirt",
                r#"{"uri": "test:///default", "pool": "default-pool"}"#,
            )?;
            // Ten hypervisors with room for everything.
            for h in 0..10 {
                hypervisor(inv, mgr, &format!("hv{h:02}"), [1 << 22, 1 << 20, 1 << 12])?;
            }
        }
        Some((endpoint, creds)) => {
            inv.configure(mgr, "backend", "ec2")?;
            inv.configure(
                mgr,
                "ec2",
                &serde_json::json!({"region": "us-east-1", "endpoint": endpoint,
                    "credentialsFile": creds, "profile": "bench"})
                .to_string(),
            )?;
        }
    }
    for i in 0..n {
        let vm = inv.create(Kind::VirtualMachine, &format!("vm{i:05}"), None)?;
        inv.configure(vm, "manager", "bench")?;
        inv.configure(
            vm,
            "memoryMiB",
            if backend == "libvirtd" { "64" } else { "256" },
        )?;
        if backend == "libvirtd" {
            inv.attr_set(
                vm,
                "libvirt",
                Some("domain-type"),
                clusto_core::NumberSpec::None,
                Value::String("qemu".into()),
            )?;
        }
        inv.configure(vm, "diskGiB", "1")?;
        inv.configure(vm, "cpus", "1")?;
        if backend == "ec2" {
            inv.configure(vm, "image", "ami-1e749f67")?;
            inv.configure(vm, "instanceType", "t3.micro")?;
        }
        inv.place_and_record(vm)?;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).map(String::as_str).unwrap_or("libvirt");
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let pool = (backend == "libvirtd")
        .then(|| args.get(3).cloned())
        .flatten();
    let ec2 = match backend {
        "libvirt" | "libvirtd" => None,
        "ec2" => Some((
            args.get(3).context("endpoint")?.as_str(),
            args.get(4).context("credentials file")?.as_str(),
        )),
        b => bail!("unknown backend {b}"),
    };
    let dir = std::env::temp_dir().join(format!("clusto-vm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = Store::open(&format!("sqlite://{}", dir.join("s.db").display())).await?;
    store
        .write(&RevisionMeta::new("bench"), |inv| {
            build(inv, backend, n, ec2, pool.as_deref())
        })
        .await?;
    let rate = std::env::var("RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200.0);
    let workers = std::env::var("WORKERS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(16);
    let provider = Arc::new(Backends::new());
    let mut c = Controller::new(
        store.clone(),
        provider.clone(),
        Options {
            rate,
            workers,
            ..Options::default()
        },
    )
    .await?;
    println!(
        "backend,vms,phase,wall_s,backend_ops,api_requests,requests_per_vm,revisions_written,ticks,rss_mib,peak_rss_mib,rate,workers"
    );
    let report = |phase: &str,
                  t: Duration,
                  calls: u64,
                  requests: u64,
                  writes: u64,
                  ticks: usize| {
        println!(
            "{backend},{n},{phase},{:.2},{calls},{requests},{:.2},{writes},{ticks},{:.1},{:.1},{rate},{workers}",
            t.as_secs_f64(),
            requests as f64 / n as f64,
            status_kib("VmRSS:") as f64 / 1024.0,
            status_kib("VmHWM:") as f64 / 1024.0
        );
    };
    let head0 = store.head().await?;
    let t = Instant::now();
    let ticks = c
        .converge(Duration::from_secs(2), Duration::from_secs(3600))
        .await?
        .len();
    let converge = t.elapsed();
    let calls = c.metrics.backend_calls();
    let requests = clusto_vm::Provider::requests(provider.as_ref());
    let writes = (store.head().await? - head0) as u64;
    report("converge", converge, calls, requests, writes, ticks);
    // Check: every VM Running with a backend id.
    let inv = store.load(None).await?;
    let running = inv
        .entities_of_kind(Kind::VirtualMachine)
        .iter()
        .filter(|e| inv.vm_status(e.id).phase == "Running")
        .count();
    if running != n {
        bail!("only {running} of {n} VMs Running");
    }
    // No-op resync: every VM looked at again; nothing to do or write.
    let head1 = store.head().await?;
    c.resync_now();
    let t = Instant::now();
    let mut ticks = 0;
    let mut reconciled = 0;
    while reconciled < n {
        let r = c.tick().await?;
        reconciled += r.reconciled;
        ticks += 1;
        if reconciled < n {
            tokio::time::sleep_until(tokio::time::Instant::from_std(c.next_wake())).await;
        }
    }
    let resync = t.elapsed();
    report(
        "noop-resync",
        resync,
        c.metrics.backend_calls() - calls,
        clusto_vm::Provider::requests(provider.as_ref()) - requests,
        (store.head().await? - head1) as u64,
        ticks,
    );
    if backend == "libvirtd" {
        // Tear down: every VM deleted at once; the controller destroys the
        // domains and volumes, then removes the objects.
        let (calls, requests, head) = (
            c.metrics.backend_calls(),
            clusto_vm::Provider::requests(provider.as_ref()),
            store.head().await?,
        );
        store
            .write(&RevisionMeta::new("delete all"), |inv| -> Result<()> {
                let vms: Vec<_> = inv
                    .entities_of_kind(Kind::VirtualMachine)
                    .iter()
                    .map(|e| e.id)
                    .collect();
                for v in vms {
                    inv.delete(v)?;
                }
                Ok(())
            })
            .await?;
        let t = Instant::now();
        let mut ticks = 0;
        loop {
            c.tick().await?;
            ticks += 1;
            let left = store
                .load(None)
                .await?
                .entities_of_kind(Kind::VirtualMachine)
                .len();
            if left == 0 {
                break;
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(c.next_wake())).await;
        }
        report(
            "delete-all",
            t.elapsed(),
            c.metrics.backend_calls() - calls,
            clusto_vm::Provider::requests(provider.as_ref()) - requests,
            (store.head().await? - head - 1) as u64,
            ticks,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
