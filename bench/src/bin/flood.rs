//! Garbage at a UDP port as fast as one sender can go, for `bench/flood.sh`.
//!
//! `flood dhcp|snmp TARGET SECONDS FROM` sends, from address FROM,, in turn, random bytes of random
//! length, real packets of the protocol with random bytes overwritten or
//! cut short, and well-formed requests nobody in the inventory sent (DHCP
//! DISCOVERs from unknown MACs; SNMP traps with a wrong community, from an
//! unknown engine). Prints one JSON line: datagrams sent and the rate.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clusto_core::testing::Rng;
use serde_json::json;

/// A DISCOVER from `mac` (what a booting NIC sends).
fn discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    let mut p = vec![1u8, 1, 6, 0];
    p.extend(xid.to_be_bytes());
    p.extend([0u8; 8]); // secs, flags
    p.extend([0u8; 16]); // ciaddr yiaddr siaddr giaddr
    p.extend(mac);
    p.extend([0u8; 10 + 64 + 128]);
    p.extend([0x63, 0x82, 0x53, 0x63, 53, 1, 1, 55, 3, 1, 3, 6, 255]);
    p
}

/// The stored capture of a v2c CISCO-MAC-NOTIFICATION trap.
fn snmp_trap() -> Vec<u8> {
    let hex: String = include_str!("../../../crates/clusto-snmp/tests/data/cmn-trap-v2c.hex")
        .split_whitespace()
        .collect();
    (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut p = base.to_vec();
    for _ in 0..1 + rng.below(8) {
        let i = rng.below(p.len());
        p[i] = rng.below(256) as u8;
    }
    if rng.below(3) == 0 {
        p.truncate(rng.below(p.len() + 1));
    }
    p
}

/// 4,096 datagrams, made once so the send loop only sends.
fn garbage(kind: &str) -> Result<Vec<Vec<u8>>> {
    let mut rng = Rng(0xf100d);
    let real = match kind {
        "dhcp" => discover([2, 0, 0, 0, 0, 1], 1),
        "snmp" => snmp_trap(),
        other => bail!("kind {other:?}: dhcp or snmp"),
    };
    Ok((0..4096u32)
        .map(|n| match n % 3 {
            0 => (0..rng.below(600)).map(|_| rng.below(256) as u8).collect(),
            1 => mutate(&mut rng, &real),
            _ if kind == "dhcp" => {
                let m = [
                    2,
                    0xbe,
                    0xef,
                    rng.below(256) as u8,
                    rng.below(256) as u8,
                    n as u8,
                ];
                discover(m, n)
            }
            _ => {
                // Same trap, another community (the `public` at its start).
                let mut t = real.clone();
                if let Some(at) = t.windows(6).position(|w| w == b"public") {
                    t[at..at + 6].copy_from_slice(b"wrong!");
                }
                t
            }
        })
        .collect())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, target, secs, from] = args.as_slice() else {
        bail!("usage: flood dhcp|snmp TARGET SECONDS FROM");
    };
    let packets = garbage(kind)?;
    let secs: f64 = secs.parse().context("SECONDS")?;
    let sock = UdpSocket::bind((from.as_str(), 0)).with_context(|| format!("bind {from}"))?;
    sock.connect(target.as_str())
        .with_context(|| format!("connect {target}"))?;
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut next = packets.iter().cycle();
    while Instant::now() < until {
        for p in next.by_ref().take(256) {
            // A full socket buffer or an ICMP error from an earlier datagram
            // is the point of a flood: keep sending.
            if sock.send(p).is_ok() {
                sent += 1;
            }
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"sent": sent, "seconds": took, "per_second": (sent as f64 / took).round()})
    );
    Ok(())
}
