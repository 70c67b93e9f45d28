//! Bounded fuzzing in CI: mutated trap datagrams (real ones, captured from
//! net-snmp's `snmptrap`/`snmpinform` when they are installed, plus the
//! stored capture) are dropped or decoded, never a panic. Seeded, so a
//! failure reproduces.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use clusto_snmp::cmn;
use clusto_snmp::message::{Received, receive};
use clusto_snmp::usm::{Usm, engine_id_for, parse_users};

use clusto_core::testing::Rng;

fn usm() -> Usm {
    let users = parse_users("users", "alice SHA-256 alicepass1 AES alicepriv1\n").unwrap();
    Usm::new(engine_id_for("fuzz"), users)
}

fn stored_capture() -> Vec<u8> {
    let hex: String = include_str!("data/cmn-trap-v2c.hex")
        .split_whitespace()
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Datagrams net-snmp really sends, read off a loopback socket.
fn captures() -> Vec<Vec<u8>> {
    let mut out = vec![stored_capture()];
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let to = sock.local_addr().unwrap().to_string();
    let vb = [
        "1.3.6.1.4.1.9.9.215.1.1.8.1.2.7",
        "x",
        "01000A02770000000100050200140277000000020007",
    ];
    let senders: Vec<Vec<&str>> = vec![
        vec![
            "snmptrap",
            "-v",
            "1",
            "-c",
            "public",
            &to,
            "1.3.6.1.4.1.9.9.215.2",
            "10.0.0.2",
            "6",
            "1",
            "",
        ],
        vec![
            "snmptrap",
            "-v",
            "2c",
            "-c",
            "public",
            &to,
            "",
            "1.3.6.1.4.1.9.9.215.2.0.1",
        ],
        vec![
            "snmpinform",
            "-v",
            "2c",
            "-r",
            "0",
            "-t",
            "0.2",
            "-c",
            "public",
            &to,
            "",
            "1.3.6.1.4.1.9.9.215.2.0.1",
        ],
        vec![
            "snmptrap",
            "-v",
            "3",
            "-u",
            "alice",
            "-l",
            "authPriv",
            "-a",
            "SHA-256",
            "-A",
            "alicepass1",
            "-x",
            "AES",
            "-X",
            "alicepriv1",
            "-e",
            "0x8000000001020304",
            &to,
            "",
            "1.3.6.1.4.1.9.9.215.2.0.1",
        ],
        vec![
            "snmptrap",
            "-v",
            "3",
            "-u",
            "alice",
            "-l",
            "authNoPriv",
            "-a",
            "SHA-256",
            "-A",
            "alicepass1",
            "-e",
            "0x8000000001020304",
            &to,
            "",
            "1.3.6.1.4.1.9.9.215.2.0.1",
        ],
    ];
    for s in senders {
        let mut args = vec!["-m", ""];
        args.extend(&s[1..]);
        args.extend(vb);
        let Ok(mut child) = Command::new(s[0]).args(&args).spawn() else {
            eprintln!("{} is not installed: fuzzing the stored capture only", s[0]);
            continue;
        };
        let mut buf = [0u8; 65536];
        while let Ok(n) = sock.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    out
}

fn mutate(rng: &mut Rng, d: &[u8]) -> Vec<u8> {
    let mut b = d.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = [0x00, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xff][rng.below(7)];
            }
            2 => b.truncate(at),
            3 => {
                let end = (at + rng.below(16)).min(b.len());
                b.drain(at..end);
            }
            4 => {
                let from = rng.below(b.len() + 1);
                let len = rng.below(24).min(b.len() - from);
                let piece = b[from..from + len].to_vec();
                b.splice(at..at, piece);
            }
            _ => b.insert(at.min(b.len()), rng.below(256) as u8),
        }
    }
    b
}

#[test]
fn the_captures_decode() {
    let mut usm = usm();
    let caps = captures();
    if Command::new("snmptrap").arg("-V").output().is_ok() {
        assert!(caps.len() >= 6, "every sender was captured: {}", caps.len());
    }
    for c in &caps {
        match receive(c, &mut usm) {
            Received::Notification(n) => {
                let d = cmn::records(&n).expect("a MAC notification");
                assert!(!d.records.is_empty(), "{n:?}");
            }
            // snmpinform's v3 engine probe is not in this corpus; v2c
            // informs and every trap must decode.
            other => panic!("capture of {} bytes: {other:?}", c.len()),
        }
    }
}

#[test]
fn mutated_datagrams_never_panic() {
    let mut usm = usm();
    let caps = captures();
    let mut rng = Rng(0x5eed_cafe);
    let mut decoded = 0;
    for _ in 0..60_000 {
        let pick = rng.below(caps.len());
        let d = mutate(&mut rng, &caps[pick]);
        if let Received::Notification(n) = receive(&d, &mut usm) {
            let _ = cmn::records(&n);
            decoded += 1;
        }
    }
    assert!(decoded > 0, "some mutations should still decode");
    // Pure garbage and absurd sizes.
    for n in [0usize, 1, 2, 70_000] {
        let g: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
        assert!(matches!(receive(&g, &mut usm), Received::Dropped(_)));
    }
}
