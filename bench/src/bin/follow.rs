//! Writers and followers on a large store (made beforehand by
//! `bench/point-ops.sh`'s generator, or `clusto apply` of `clusto generate`).
//!
//! `follow --store URL writers [--tasks 8] [--seconds 10]`: long-running
//! tasks, each with its own store handle (its own connections), each doing
//! point `attr set`s on its own servers. Prints writes/s and errors.
//!
//! `follow --store URL dhcp`: builds the DHCP index, then for 20 rounds sets
//! one host's `dhcp.lease-time` and measures how long until the patched
//! index answers with it, and the refresh's CPU time (this thread's).
//!
//! `follow --store URL controller`: loads the controller's world, changes
//! one VM's spec, measures the follow's wall and CPU time.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clusto_core::{Kind, NumberSpec, Value};
use clusto_dhcp::index::Entry;
use clusto_store::{RevisionMeta, Scope, Store};

use clusto_store::testing::Failure as E;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The `k`-th smallest of 20 rounds (10: median, 19: max), in ms.
fn ms(rounds: &[Duration], k: usize) -> f64 {
    let mut v = rounds.to_vec();
    v.sort();
    v[k].as_secs_f64() * 1e3
}

async fn servers(store: &Store) -> Result<Vec<String>> {
    let mut snap = store.snapshot(None).await?;
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = snap
            .names(Some(Kind::Server), after.as_deref(), 10_000)
            .await?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        out.extend(page);
        after = Some(last);
    }
    Ok(out)
}

async fn writers(url: &str, tasks: usize, seconds: u64) -> Result<()> {
    let names = servers(&Store::open(url).await?).await?;
    if names.len() < tasks {
        bail!(
            "the store has {} servers; need at least {tasks}",
            names.len()
        );
    }
    let until = Instant::now() + Duration::from_secs(seconds);
    // Values no earlier run wrote: a value already there is no write at all.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let mut handles = Vec::new();
    for t in 0..tasks {
        // Each task: its own handle, its own servers (every tasks-th one).
        let mine: Vec<String> = names.iter().skip(t).step_by(tasks).cloned().collect();
        let url = url.to_string();
        handles.push(tokio::spawn(async move {
            let store = Store::open(&url).await?;
            let (mut ok, mut failed, mut i) = (0u64, 0u64, 0usize);
            while Instant::now() < until {
                let name = &mine[(i * 7919) % mine.len()];
                i += 1;
                let v = format!("writer-{run}-{t}-{i}");
                let r = store
                    .write_scope(
                        &RevisionMeta::new("bench"),
                        &Scope::write([name]),
                        |inv| -> Result<(), E> {
                            let id = inv.id_of(name)?;
                            inv.attr_set(id, "owner", None, NumberSpec::None, Value::String(v))?;
                            Ok(())
                        },
                    )
                    .await;
                match r {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        failed += 1;
                        eprintln!("task {t}: {e}");
                    }
                }
            }
            anyhow::Ok((ok, failed))
        }));
    }
    let t = Instant::now();
    let (mut ok, mut failed) = (0, 0);
    for h in handles {
        let (o, f) = h.await??;
        ok += o;
        failed += f;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{{\"servers\": {}, \"tasks\": {tasks}, \"seconds\": {secs:.2}, \"writes\": {ok}, \"errors\": {failed}, \"writes_per_s\": {:.1}}}",
        names.len(),
        ok as f64 / secs
    );
    Ok(())
}

async fn dhcp(url: &str) -> Result<()> {
    let store = Store::open(url).await?;
    let t = Instant::now();
    let index = RwLock::new(clusto_dhcp::server::build_index(&store).await?);
    let build = t.elapsed();
    // What the responder holds once built (before this bench lists names).
    let serving = clusto_bench::rss_mib();
    let hosts = index.read().expect("lock").len();
    let names = servers(&store).await?;
    let (mut lat, mut cpu) = (Vec::new(), Vec::new());
    // Lease times no earlier run set: a value already there is no write.
    let base = 600
        + 20 * (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            % 10_000) as i64;
    for round in 0..20u64 {
        let name = &names[(round as usize * 4999) % names.len()];
        let lease = base + round as i64;
        let t = Instant::now();
        store
            .write_scope(
                &RevisionMeta::new("bench"),
                &Scope::write([name]),
                |inv| -> Result<(), E> {
                    let id = inv.id_of(name)?;
                    inv.attr_set(
                        id,
                        "dhcp",
                        Some("lease-time"),
                        NumberSpec::None,
                        Value::Int(lease),
                    )?;
                    Ok(())
                },
            )
            .await?;
        let c = thread_cpu();
        let n = clusto_dhcp::server::refresh(&store, &index).await?;
        cpu.push(thread_cpu() - c);
        lat.push(t.elapsed());
        let idx = index.read().expect("lock");
        let answered = idx
            .by_mac
            .values()
            .any(|e| matches!(e, Entry::Serve(h) if h.device == *name && h.lease == lease as u32));
        if !answered || n.is_none() {
            bail!("round {round}: the index does not answer {name} with lease {lease}");
        }
    }
    println!(
        "{{\"hosts\": {hosts}, \"build_s\": {:.3}, \"write_to_answer_ms_median\": {:.2}, \"write_to_answer_ms_max\": {:.2}, \"refresh_cpu_ms_median\": {:.2}, \"refresh_cpu_ms_max\": {:.2}, \"serving_rss_mib\": {serving:.0}, \"peak_rss_mib\": {:.0}}}",
        build.as_secs_f64(),
        ms(&lat, 10),
        ms(&lat, 19),
        ms(&cpu, 10),
        ms(&cpu, 19),
        clusto_bench::peak_rss_mib()
    );
    Ok(())
}

async fn controller(url: &str) -> Result<()> {
    let store = Store::open(url).await?;
    let scope = clusto_store::Scope::vm_world();
    let t = Instant::now();
    let (mut rev, mut view) = store.load_scope(&scope, None).await?;
    let load = t.elapsed();
    let vms: Vec<String> = view
        .entities_of_kind(Kind::VirtualMachine)
        .iter()
        .map(|e| e.name.clone())
        .collect();
    if vms.is_empty() {
        bail!("no VirtualMachines in the store");
    }
    let (mut lat, mut cpu) = (Vec::new(), Vec::new());
    for round in 0..20usize {
        let name = &vms[(round * 37) % vms.len()];
        // Always a change, whatever an earlier run left.
        let mem = view.vm_need(view.id_of(name)?).memory_mib + 64;
        let t = Instant::now();
        store
            .write_scope(
                &RevisionMeta::new("bench"),
                &Scope::write([name]),
                |inv| -> Result<(), E> {
                    let id = inv.id_of(name)?;
                    inv.configure(id, "memoryMiB", &mem.to_string())?;
                    Ok(())
                },
            )
            .await?;
        let c = thread_cpu();
        let (now, changed) = store.follow(&mut view, rev, &scope).await?;
        cpu.push(thread_cpu() - c);
        lat.push(t.elapsed());
        rev = now;
        let id = view.id_of(name).context("vm in view")?;
        if !changed || view.vm_need(id).memory_mib != mem {
            bail!("round {round}: the view does not show {name} at {mem} MiB");
        }
    }
    println!(
        "{{\"vms\": {}, \"entities_in_view\": {}, \"load_s\": {:.3}, \"write_to_view_ms_median\": {:.2}, \"write_to_view_ms_max\": {:.2}, \"follow_cpu_ms_median\": {:.2}, \"peak_rss_mib\": {:.0}}}",
        vms.len(),
        view.len(),
        load.as_secs_f64(),
        ms(&lat, 10),
        ms(&lat, 19),
        ms(&cpu, 10),
        clusto_bench::peak_rss_mib()
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
    };
    let url = flag("--store").context("--store URL")?.clone();
    let tasks: usize = flag("--tasks").map(|s| s.parse()).transpose()?.unwrap_or(8);
    let seconds: u64 = flag("--seconds")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10);
    match args
        .iter()
        .find(|a| ["writers", "dhcp", "controller"].contains(&a.as_str()))
    {
        Some(m) if m == "writers" => writers(&url, tasks, seconds).await,
        Some(m) if m == "dhcp" => dhcp(&url).await,
        Some(_) => controller(&url).await,
        None => bail!("usage: follow --store URL writers|dhcp|controller"),
    }
}
