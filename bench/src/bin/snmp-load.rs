//! Trap load for `bench/snmp.sh`: CISCO-MAC-NOTIFICATION traps sent from
//! each switch's own loopback address (the inventory's `127.64.x.y`), paced
//! at a rate, and counted where the receiver says it handled them.
//!
//! `snmp-load noop TARGET RACKS RATE SECONDS COUNTER` — learnt records for
//!   the servers already cabled in racks `0..RACKS` (10 per v2c trap) at
//!   RATE records/s for SECONDS; COUNTER is `http://…/metrics` (clusto:
//!   the sum of `clusto_snmp_records_total`) or a log file (net-snmp's
//!   snmptrapd: lines, × 10 records).
//! `snmp-load new TARGET FIRST COUNT RATE [WARM_MS]` — one v2c INFORM per
//!   new server (racks from FIRST, 40 ports each) at RATE/s, after WARM_MS
//!   (default 2000) of records that load each rack's view and change
//!   nothing; latency is send → the Response, which clusto sends after the
//!   commit.
//!
//! Prints one JSON line.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clusto_snmp::ber;
use serde_json::json;
use tokio::net::UdpSocket;

const PER_TRAP: usize = 10;
const UNITS: u16 = 40;

/// Rack r's switch address (bench/snmp.sh gives the switches the same).
fn switch_ip(r: u32) -> Ipv4Addr {
    let n = u32::from(Ipv4Addr::new(127, 64, 0, 10)) + r;
    Ipv4Addr::from(n)
}

/// A learnt record: VLAN 10, MAC 02:`tag`:00:rr:rr:uu on port u.
fn record(tag: u8, r: u32, u: u16) -> Vec<u8> {
    let mut v = vec![1, 0, 10, 2, tag, 0, (r >> 8) as u8, r as u8, u as u8];
    v.extend(u.to_be_bytes());
    v
}

fn notification(pdu_tag: u8, req: i64, records: &[u8]) -> Vec<u8> {
    let vb = |oid: &[u64], value: Vec<u8>| ber::seq(&[&ber::oid(oid), &value]);
    let varbinds = ber::seq(&[
        &vb(&[1, 3, 6, 1, 2, 1, 1, 3, 0], ber::int(ber::TIMETICKS, 4242)),
        &vb(
            &[1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0],
            ber::oid(&[1, 3, 6, 1, 4, 1, 9, 9, 215, 2, 0, 1]),
        ),
        &vb(
            &[1, 3, 6, 1, 4, 1, 9, 9, 215, 1, 1, 8, 1, 2, 1],
            ber::octets(records),
        ),
    ]);
    let pdu = ber::tlv(
        pdu_tag,
        &[
            ber::int(ber::INTEGER, req),
            ber::int(ber::INTEGER, 0),
            ber::int(ber::INTEGER, 0),
            varbinds,
        ]
        .concat(),
    );
    ber::seq(&[&ber::int(ber::INTEGER, 1), &ber::octets(b"public"), &pdu])
}

async fn socket(r: u32) -> Result<UdpSocket> {
    UdpSocket::bind(SocketAddr::from((switch_ip(r), 0)))
        .await
        .with_context(|| format!("bind {}", switch_ip(r)))
}

/// Records the receiver says it handled so far.
async fn handled(counter: &str) -> Result<u64> {
    if let Some(rest) = counter.strip_prefix("http://") {
        let (host, path) = rest.split_once('/').unwrap_or((rest, "metrics"));
        let mut s = tokio::net::TcpStream::connect(host).await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
            .await?;
        let mut body = String::new();
        s.read_to_string(&mut body).await?;
        Ok(body
            .lines()
            .filter(|l| l.starts_with("clusto_snmp_records_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum())
    } else {
        let text = std::fs::read_to_string(counter).unwrap_or_default();
        Ok(text.lines().filter(|l| l.starts_with("TRAP")).count() as u64 * PER_TRAP as u64)
    }
}

async fn wait_for(counter: &str, want: u64, limit: Duration) -> Result<(u64, Instant)> {
    let t = Instant::now();
    let mut last = (handled(counter).await?, Instant::now());
    while last.0 < want && t.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = handled(counter).await?;
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            break; // nothing more is coming
        }
    }
    Ok(last)
}

/// Sends `traps` paced so that `per_second` leave each second, in bursts
/// every 5 ms.
async fn paced<F: FnMut(usize) -> (usize, Vec<u8>)>(
    socks: &[UdpSocket],
    target: SocketAddr,
    total: usize,
    per_second: f64,
    mut next: F,
) -> Result<f64> {
    let start = Instant::now();
    let mut sent = 0;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * per_second) as usize + 1).min(total);
        while sent < due {
            let (sock, bytes) = next(sent);
            socks[sock].send_to(&bytes, target).await?;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(start.elapsed().as_secs_f64())
}

async fn noop(args: &[String]) -> Result<()> {
    let target: SocketAddr = args[0].parse()?;
    let racks: u32 = args[1].parse()?;
    let rate: f64 = args[2].parse()?;
    let secs: f64 = args[3].parse()?;
    let counter = &args[4];
    let mut socks = Vec::new();
    for r in 0..racks {
        socks.push(socket(r).await?);
    }
    // Every rack's traps: 40 servers in 10-record traps.
    let traps: Vec<(usize, Vec<u8>)> = (0..racks)
        .flat_map(|r| {
            (0..UNITS as usize / PER_TRAP).map(move |k| {
                let recs: Vec<u8> = (0..PER_TRAP as u16)
                    .flat_map(|i| record(0xbb, r, k as u16 * PER_TRAP as u16 + i + 1))
                    .collect();
                (
                    r as usize,
                    notification(ber::TRAP_V2, (r * 8 + k as u32) as i64, &recs),
                )
            })
        })
        .collect();
    // Warm up: every trap once (views loaded, anything missing recorded:
    // writes, so paced gently), and all of it handled before measuring.
    let before = handled(counter).await?;
    paced(&socks, target, traps.len(), 100.0, |i| traps[i].clone()).await?;
    let want = before + (traps.len() * PER_TRAP) as u64;
    let (warmed, _) = wait_for(counter, want, Duration::from_secs(600)).await?;
    if warmed < want {
        bail!(
            "warm-up: {} of {} records handled",
            warmed - before,
            want - before
        );
    }
    let base = handled(counter).await?;
    let n = ((rate * secs) as usize / PER_TRAP).max(1);
    let t = Instant::now();
    let send_s = paced(&socks, target, n, rate / PER_TRAP as f64, |i| {
        traps[i % traps.len()].clone()
    })
    .await?;
    let (done, at) = wait_for(
        counter,
        base + (n * PER_TRAP) as u64,
        Duration::from_secs(120),
    )
    .await?;
    let got = done - base;
    let elapsed = at.duration_since(t).as_secs_f64();
    println!(
        "{}",
        json!({"mode": "noop", "records_sent": n * PER_TRAP, "records_handled": got,
               "lost": (n * PER_TRAP) as i64 - got as i64, "send_s": send_s,
               "elapsed_s": elapsed, "records_per_s": got as f64 / elapsed})
    );
    Ok(())
}

async fn new_servers(args: &[String]) -> Result<()> {
    let target: SocketAddr = args[0].parse()?;
    let first: u32 = args[1].parse()?;
    let count: usize = args[2].parse()?;
    let rate: f64 = args[3].parse()?;
    let warm: u64 = args.get(4).map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let racks = count.div_ceil(UNITS as usize) as u32;
    let sent: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let lat: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut socks = Vec::new();
    for r in first..first + racks {
        socks.push(Arc::new(socket(r).await?));
    }
    for s in &socks {
        let (s, sent, lat) = (s.clone(), sent.clone(), lat.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok(n) = s.recv(&mut buf).await {
                if let Some(req) = response_id(&buf[..n])
                    && let Some(t0) = sent.lock().unwrap().remove(&req)
                {
                    lat.lock().unwrap().push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
        });
    }
    // Warm up each rack's view with a record that changes nothing.
    for (i, s) in socks.iter().enumerate() {
        let mut rec = record(0xcc, first + i as u32, 1);
        rec[0] = 2; // removed
        s.send_to(&notification(ber::TRAP_V2, 1, &rec), target)
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(warm)).await;
    let t = Instant::now();
    let start = Instant::now();
    let mut i = 0usize;
    while i < count {
        let due = ((start.elapsed().as_secs_f64() * rate) as usize + 1).min(count);
        while i < due {
            let r = i / UNITS as usize;
            let u = (i % UNITS as usize) as u16 + 1;
            let req = 1000 + i as i64;
            let bytes = notification(ber::INFORM, req, &record(0xcc, first + r as u32, u));
            sent.lock().unwrap().insert(req, Instant::now());
            socks[r].send_to(&bytes, target).await?;
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let send_s = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sent.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = t.elapsed().as_secs_f64();
    let mut l = lat.lock().unwrap().clone();
    l.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
    };
    println!(
        "{}",
        json!({"mode": "new", "informs": count, "acked": l.len(), "lost": count - l.len(),
               "send_s": send_s, "elapsed_s": elapsed, "servers_per_s": l.len() as f64 / elapsed,
               "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": l.last()})
    );
    Ok(())
}

/// The request-id of a v2c Response, if that is what `d` is.
fn response_id(d: &[u8]) -> Option<i64> {
    let (_, body, _) = ber::read(d)?;
    let parts = ber::children(body)?;
    let (tag, pdu) = *parts.get(2)?;
    if tag != ber::RESPONSE {
        return None;
    }
    let (_, req, _) = ber::read(pdu)?;
    Some(req.iter().fold(0i64, |a, b| a << 8 | *b as i64))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("noop") if args.len() == 6 => noop(&args[1..]).await,
        Some("new") if (5..=6).contains(&args.len()) => new_servers(&args[1..]).await,
        _ => bail!(
            "usage: snmp-load noop TARGET RACKS RATE SECONDS COUNTER | new TARGET FIRST COUNT RATE [WARM_MS]"
        ),
    }
}
