//! The inventory-core workload of ../shared/bench/clusto_original.py, through
//! clusto's public Rust API on an SQLite file: 1 datacenter, R racks,
//! S servers (5 attributes, 1 of 3 pools, 1 address from a /16 each), then
//! 1,000 attribute lookups, "4 unallocated servers in dc1 in different
//! racks", and 1,000 merged-attribute reads. Prints JSON.
//!
//! Usage: inventory-core [-R 50] [-S 2000] [--db PATH] [--txn all|rack]

use std::time::Instant;

use anyhow::{Result, bail};
use clusto_bench::{Rng, peak_rss_mib, secs};
use clusto_core::query::parse;
use clusto_core::{CoreError, EntityId, Inventory, Kind, NumberSpec, Value};
use clusto_store::{RevisionMeta, Store, StoreError};
use serde_json::json;

#[derive(Debug)]
struct E(String);
impl From<StoreError> for E {
    fn from(e: StoreError) -> E {
        E(e.to_string())
    }
}
impl From<CoreError> for E {
    fn from(e: CoreError) -> E {
        E(e.to_string())
    }
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn setup(inv: &mut Inventory, racks: usize) -> Result<(), CoreError> {
    let dc = inv.create(Kind::Datacenter, "dc1", None)?;
    for r in 0..racks {
        let rack = inv.create(Kind::Rack, &format!("rack-{r:03}"), None)?;
        inv.insert(dc, rack, None)?;
    }
    for p in ["unallocated", "web", "db"] {
        inv.create(Kind::Pool, p, None)?;
    }
    let ipm = inv.create(Kind::IpManager, "net-10.0", None)?;
    inv.configure(ipm, "cidr", "10.0.0.0/16")?;
    inv.configure(ipm, "gateway", "10.0.0.1")?;
    inv.attr_set(dc, "dhcp", Some("enabled"), NumberSpec::None, Value::Int(1))?;
    let web = inv.id_of("web")?;
    inv.attr_set(
        web,
        "dhcp",
        Some("filename"),
        NumberSpec::None,
        Value::String("pxelinux.0".into()),
    )?;
    Ok(())
}

fn add_server(inv: &mut Inventory, i: usize, racks: usize) -> Result<(), CoreError> {
    let pools = ["unallocated", "web", "db"];
    let s = inv.create(Kind::Server, &format!("s{i:05}"), None)?;
    let rack = inv.id_of(&format!("rack-{:03}", i % racks))?;
    let ru = (i / racks + 1).to_string().parse()?;
    inv.insert(rack, s, Some(ru))?;
    let i64_ = i as i64;
    inv.attr_set(
        s,
        "system",
        Some("serial"),
        NumberSpec::None,
        Value::String(format!("P{i:010}")),
    )?;
    inv.attr_set(
        s,
        "system",
        Some("memory"),
        NumberSpec::None,
        Value::Int(1024 * (1 + i64_ % 64)),
    )?;
    inv.attr_set(
        s,
        "system",
        Some("cpucount"),
        NumberSpec::None,
        Value::Int(1 + i64_ % 32),
    )?;
    inv.attr_set(
        s,
        "owner",
        None,
        NumberSpec::None,
        Value::String(format!("team-{}", i % 10)),
    )?;
    inv.attr_set(
        s,
        "role",
        None,
        NumberSpec::None,
        Value::String(format!("role-{}", i % 7)),
    )?;
    let pool = inv.id_of(pools[i % 3])?;
    inv.insert(pool, s, None)?;
    let ipm = inv.id_of("net-10.0")?;
    inv.ip_allocate(ipm, s, None, None, None)?;
    Ok(())
}

/// The original's pick4: walk dc1's racks in order, take each rack's first
/// server that is in `unallocated`, stop at four.
fn pick4(inv: &Inventory) -> Vec<(String, String)> {
    let dc = inv.id_of("dc1").expect("dc1");
    let unalloc = inv.id_of("unallocated").expect("pool");
    let mut racks: Vec<EntityId> = inv
        .contents(dc)
        .into_iter()
        .filter(|r| inv.kind_of(*r) == Some(Kind::Rack))
        .collect();
    racks.sort_by(|a, b| inv.name_of(*a).cmp(inv.name_of(*b)));
    let mut out = Vec::new();
    for r in racks {
        if let Some(s) = inv.contents(r).into_iter().find(|s| {
            inv.kind_of(*s) == Some(Kind::Server) && inv.parents_of(*s).contains(&unalloc)
        }) {
            out.push((inv.name_of(s).to_string(), inv.name_of(r).to_string()));
        }
        if out.len() == 4 {
            break;
        }
    }
    out
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let racks: usize = arg(&args, "-R", "50").parse()?;
    let servers: usize = arg(&args, "-S", "2000").parse()?;
    let db = arg(&args, "--db", "/tmp/clusto_rs_bench.db");
    let txn = arg(&args, "--txn", "rack");
    let lookups = 1000;
    if servers > racks * 45 {
        bail!("S/R must be <= 45");
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{db}{suffix}"));
    }
    let mut res = serde_json::Map::new();
    res.insert("R".into(), json!(racks));
    res.insert("S".into(), json!(servers));
    res.insert("txn".into(), json!(txn));

    let t = Instant::now();
    let store = Store::open(&format!("sqlite://{db}")).await?;
    let meta = RevisionMeta::new("bench");
    match txn.as_str() {
        "all" => {
            store
                .write(&meta, |inv| -> Result<(), E> {
                    setup(inv, racks)?;
                    for i in 0..servers {
                        add_server(inv, i, racks)?;
                    }
                    Ok(())
                })
                .await
                .map_err(|e| anyhow::anyhow!(e.0))?;
        }
        "rack" => {
            store
                .write(&meta, |inv| -> Result<(), E> { Ok(setup(inv, racks)?) })
                .await
                .map_err(|e| anyhow::anyhow!(e.0))?;
            for r in 0..racks {
                store
                    .write(&meta, |inv| -> Result<(), E> {
                        for i in (r..servers).step_by(racks) {
                            add_server(inv, i, racks)?;
                        }
                        Ok(())
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!(e.0))?;
            }
        }
        other => bail!("--txn {other}: use all or rack"),
    }
    res.insert("a_build_s".into(), json!(secs(t.elapsed())));
    res.insert("revisions".into(), json!(store.head().await?));

    // b) attribute lookups, each one SQL query through the query language
    let mut rng = Rng::new(42);
    let t = Instant::now();
    let mut ok = 0;
    for _ in 0..lookups {
        let i = rng.below(servers as u64);
        let q = parse(&format!("attr:system.serial=P{i:010}"))?;
        let hits = store.query(&q, None).await?;
        if hits.len() == 1 && hits[0] == format!("s{i:05}") {
            ok += 1;
        }
    }
    res.insert("b_get_by_attr_s".into(), json!(secs(t.elapsed())));
    res.insert("b_get_by_attr_correct".into(), json!(ok));

    // c) pick4: as one SQL query plus the rack walk, and on a loaded inventory
    let t = Instant::now();
    let candidates = store
        .query(&parse("kind:server and in:dc1 and in:unallocated")?, None)
        .await?;
    res.insert("c_query_sql_s".into(), json!(secs(t.elapsed())));
    res.insert("c_query_sql_matches".into(), json!(candidates.len()));
    // A cold load through a new handle: what a fresh `clusto` process pays.
    let t = Instant::now();
    let cold = Store::open(&format!("sqlite://{db}")).await?;
    let inv = cold.load(None).await?;
    let load = t.elapsed();
    res.insert("load_inventory_s".into(), json!(secs(load)));
    let mut runs = Vec::new();
    let mut picked = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        picked = pick4(&inv);
        runs.push(t.elapsed());
    }
    res.insert("c_pick4_first_s".into(), json!(secs(runs[0])));
    res.insert(
        "c_pick4_first_with_load_s".into(),
        json!(secs(runs[0] + load)),
    );
    res.insert(
        "c_pick4_mean_s".into(),
        json!(secs(
            runs.iter().sum::<std::time::Duration>() / runs.len() as u32
        )),
    );
    res.insert("c_pick4_result".into(), json!(picked));

    // d) merged reads of dhcp.enabled for 1,000 random servers (pre-fetched by name)
    let t = Instant::now();
    let ids: Vec<EntityId> = (0..lookups)
        .map(|_| inv.id_of(&format!("s{:05}", rng.below(servers as u64))))
        .collect::<Result<_, _>>()?;
    res.insert("get_by_name_x1000_s".into(), json!(secs(t.elapsed())));
    let t = Instant::now();
    let mut enabled = 0;
    for id in &ids {
        if inv
            .merged_value(*id, "dhcp", Some("enabled"))
            .map(|(v, _)| v)
            == Some(&Value::Int(1))
        {
            enabled += 1;
        }
    }
    res.insert("d_merged_read_s".into(), json!(secs(t.elapsed())));
    res.insert("d_merged_read_enabled".into(), json!(enabled));
    // the same read with a cold load before each: the worst case, a new
    // process per read
    let t = Instant::now();
    for id in ids.iter().take(20) {
        let inv = Store::open(&format!("sqlite://{db}"))
            .await?
            .load(None)
            .await?;
        let _ = inv.merged_value(*id, "dhcp", Some("enabled"));
    }
    res.insert(
        "d_merged_read_with_load_per_read_ms".into(),
        json!(t.elapsed().as_secs_f64() * 1000.0 / 20.0),
    );

    res.insert("entities".into(), json!(inv.len()));
    res.insert(
        "peak_rss_mib".into(),
        json!((peak_rss_mib() * 10.0).round() / 10.0),
    );
    res.insert(
        "db_bytes".into(),
        json!(std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)),
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::Value::Object(res))?
    );
    Ok(())
}
