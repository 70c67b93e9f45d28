//! Out-of-band simulators, started for a test and ended by PID when it
//! drops: OpenIPMI's `ipmi_sim` as a BMC and net-snmp's `snmpd` as a PDU
//! (scripts in `tests/oob/`), each on its own loopback address and port.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sim {
    child: Child,
    pub dir: PathBuf,
    pub addr: SocketAddr,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Sim {
    /// A state file's content, trimmed ("" when missing).
    pub fn state(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    pub fn set_state(&self, file: &str, content: &str) {
        std::fs::write(self.dir.join(file), content).unwrap();
    }
}

fn script(name: &str) -> String {
    format!("{}/../../tests/oob/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A UDP port free on `ip` right now.
pub fn free_port(ip: IpAddr) -> u16 {
    UdpSocket::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(what: &str, ip: IpAddr, args: impl Fn(&PathBuf, u16) -> Vec<String>) -> Sim {
    let port = free_port(ip);
    let dir =
        std::env::temp_dir().join(format!("clusto-{what}-{}-{ip}-{port}", std::process::id()));
    let child = Command::new("sh")
        .arg(script(&format!("{what}-sim.sh")))
        .args(args(&dir, port))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}-sim.sh: {e}"));
    let addr = SocketAddr::new(ip, port);
    let t = Instant::now();
    // Bound once our own bind of the port fails.
    while UdpSocket::bind(addr).is_ok() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{what} did not bind {addr} (is it installed? .ci/deps installs it)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Sim { child, dir, addr }
}

/// A BMC (users oper/operpw at operator, admin/secret), power off.
pub fn bmc(ip: IpAddr) -> Sim {
    start_bmc(ip, None)
}

/// A BMC whose serial-over-LAN console is the TCP service at
/// 127.0.0.1:`sol_port`.
pub fn bmc_with_sol(ip: IpAddr, sol_port: u16) -> Sim {
    start_bmc(ip, Some(sol_port))
}

fn start_bmc(ip: IpAddr, sol_port: Option<u16>) -> Sim {
    start("bmc", ip, |dir, port| {
        let mut args = vec![
            dir.display().to_string(),
            port.to_string(),
            "0".into(),
            ip.to_string(),
        ];
        args.extend(sol_port.map(|p| p.to_string()));
        args
    })
}

/// A PDU with read-write `community`: Sentry and APC outlet tables.
pub fn pdu(ip: IpAddr, community: &str) -> Sim {
    start("pdu", ip, |dir, port| {
        vec![
            dir.display().to_string(),
            port.to_string(),
            community.into(),
            ip.to_string(),
        ]
    })
}
