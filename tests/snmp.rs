//! `clusto snmptrapd` against net-snmp's real senders: `snmptrap` and
//! `snmpinform` run in a network namespace holding the switch's address,
//! the daemon (and `clusto dhcpd`, for the zero-touch end) in another.

mod common;
mod netns;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Clusto;
use netns::{Netns, ok, sh};

const MAC_CHANGED: &str = "1.3.6.1.4.1.9.9.215.2.0.1";
const HIST_MSG: &str = "1.3.6.1.4.1.9.9.215.1.1.8.1.2.1";
const ENTERPRISE: &str = "1.3.6.1.4.1.9.9.215.2";

/// One 11-octet record, hex: operation, VLAN, MAC, port.
fn record(op: u8, vlan: u16, mac_last: u8, port: u16) -> String {
    format!("{op:02X}{vlan:04X}0277000000{mac_last:02X}{port:04X}")
}

/// Daemons started in the server namespace, ended by PID when the test ends.
struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct World {
    c: Clusto,
    n: Netns,
    _daemons: Daemons,
}

impl World {
    /// A command in the switch's namespace; its exit status.
    fn in_switch(&self, args: &[&str]) -> std::process::Output {
        let mut a = vec!["ip", "netns", "exec", &self.n.cli];
        a.extend(args);
        sh(&a)
    }

    fn v2c_trap(&self, community: &str, records: &str) {
        let o = self.in_switch(&[
            "snmptrap",
            "-m",
            "",
            "-v",
            "2c",
            "-c",
            community,
            "10.0.0.1:162",
            "",
            MAC_CHANGED,
            HIST_MSG,
            "x",
            records,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// An SNMPv1 trap: the switch is named by its agent-addr.
    fn v1_trap(&self, agent: &str, community: &str, records: &str) {
        let o = self.in_switch(&[
            "snmptrap",
            "-m",
            "",
            "-v",
            "1",
            "-c",
            community,
            "10.0.0.1:162",
            ENTERPRISE,
            agent,
            "6",
            "1",
            "",
            HIST_MSG,
            "x",
            records,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// SNMPv3 authPriv as user alice. A trap carries the sender's engine
    /// ID (`-e`); an INFORM discovers the receiver's.
    fn v3(&self, cmd: &str, auth: &str, privacy: &str, records: &str) -> std::process::Output {
        let mut a = vec![
            cmd, "-m", "", "-v", "3", "-r", "1", "-t", "2", "-u", "alice", "-l", "authPriv", "-a",
            "SHA-256", "-A", auth, "-x", "AES", "-X", privacy,
        ];
        if cmd == "snmptrap" {
            a.extend(["-e", "0x8000000001020304"]);
        }
        a.extend(["10.0.0.1:162", "", MAC_CHANGED, HIST_MSG, "x", records]);
        self.in_switch(&a)
    }

    fn metrics(&self) -> String {
        let o = sh(&[
            "ip",
            "netns",
            "exec",
            &self.n.srv,
            "curl",
            "-sf",
            "127.0.0.1:9469/metrics",
        ]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The value of one sample line (`name{labels}`), 0 when absent.
    fn metric(&self, sample: &str) -> u64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until a sample reaches `at_least` (the daemon handled it).
    fn wait_metric(&self, sample: &str, at_least: u64) {
        let t = Instant::now();
        while self.metric(sample) < at_least {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{sample} never reached {at_least}:\n{}",
                self.metrics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn revisions(&self) -> usize {
        self.c.json(&["history"])["items"].as_array().unwrap().len()
    }

    fn describe(&self, name: &str) -> String {
        self.c.ok(&["describe", name])
    }
}

fn spawn_in(ns: &str, store: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_clusto"),
            "--store",
            store,
        ])
        .args(args)
        .env("CLUSTO_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn world() -> World {
    let c = Clusto::fresh("sqlite").await;
    let fixture = format!(
        "{}/../clusto-snmp/tests/data/discovery.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    c.ok(&["apply", "-f", &fixture]);
    let n = Netns::up();
    for a in ["10.0.0.1/24", "10.1.0.1/24"] {
        ok(&["ip", "-n", &n.srv, "addr", "add", a, "dev", &n.vsrv]);
    }
    // The switch: r1-sw1 holds 10.0.0.2 in the inventory.
    ok(&[
        "ip",
        "-n",
        &n.cli,
        "addr",
        "add",
        "10.0.0.2/24",
        "dev",
        &n.vcli,
    ]);
    let dir = std::env::temp_dir().join(format!("clusto-snmp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("v3-users");
    std::fs::write(
        &users,
        "createUser alice SHA-256 alicepass1 AES alicepriv1\ncreateUser bob SHA bobpass123\n",
    )
    .unwrap();
    let trapd = spawn_in(
        &n.srv,
        &c.store,
        &[
            "snmptrapd",
            "--listen",
            "10.0.0.1:162",
            "--metrics",
            "127.0.0.1:9469",
            "--v3-users",
            users.to_str().unwrap(),
        ],
    );
    let dhcpd = spawn_in(
        &n.srv,
        &c.store,
        &[
            "dhcpd",
            "--interface",
            &n.vsrv,
            "--server-id",
            "10.1.0.1",
            "--refresh-ms",
            "100",
        ],
    );
    let w = World {
        c,
        n,
        _daemons: Daemons(vec![trapd, dhcpd]),
    };
    let t = Instant::now();
    while !w.metrics().contains("clusto_snmp_traps") && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        w.metrics().contains("clusto_snmp"),
        "snmptrapd did not start"
    );
    w
}

#[tokio::test]
async fn traps_from_real_senders_discover_place_and_boot_servers() {
    let w = world().await;
    let base = w.revisions();

    // v2c: a MAC learnt on an empty slot makes a placed, cabled, addressed server.
    w.v2c_trap("s3cret", &record(1, 10, 1, 1));
    w.wait_metric("clusto_snmp_records_total{outcome=\"created\"}", 1);
    let d = w.describe("s0000");
    assert!(d.contains("Rack:     r1 RU 1"), "{d}");
    assert!(
        d.contains("-> r1-sw1:nic-eth:1 mac=02:77:00:00:00:01"),
        "{d}"
    );
    assert!(d.contains("-> r1-pdu1:pwr-nema-5:1"), "{d}");
    assert!(d.contains("-> r1-ts1:console-serial:1"), "{d}");
    assert!(d.contains("10.1.0.10  manager prod  os eth0"), "{d}");
    assert!(d.contains("bootstrap.mac = 02:77:00:00:00:01"), "{d}");
    assert!(w.describe("r1-sw1").contains("vlan=10"));
    assert_eq!(w.revisions(), base + 1, "one revision per trap");
    let h = w.c.json(&["history", "s0000"]);
    assert_eq!(h["items"][0]["manager"], "snmptrapd");
    assert!(
        h["items"][0]["message"]
            .as_str()
            .unwrap()
            .contains("r1-sw1 nic-eth:1 02:77:00:00:00:01")
    );

    // The same trap again: nothing changes, no revision.
    w.v2c_trap("s3cret", &record(1, 10, 1, 1));
    w.wait_metric("clusto_snmp_records_total{outcome=\"known\"}", 1);
    assert_eq!(w.revisions(), base + 1);

    // A wrong community and a switch without discovery are ignored.
    w.v2c_trap("public", &record(1, 10, 9, 2));
    w.wait_metric("clusto_snmp_traps_total{result=\"bad_community\"}", 1);
    w.v1_trap("10.0.0.3", "any", &record(1, 10, 9, 2));
    w.wait_metric("clusto_snmp_traps_total{result=\"discovery_off\"}", 1);
    // An address no device holds.
    w.v1_trap("10.0.0.99", "s3cret", &record(1, 10, 9, 2));
    w.wait_metric("clusto_snmp_traps_total{result=\"unknown_source\"}", 1);
    assert_eq!(w.revisions(), base + 1);

    // Removed: nothing is deleted.
    w.v2c_trap("s3cret", &record(2, 10, 1, 1));
    w.wait_metric("clusto_snmp_records_total{outcome=\"removed\"}", 1);
    assert!(w.describe("s0000").contains("Rack:     r1 RU 1"));

    // SNMPv1, two records in one trap: two servers, one revision.
    let two = format!("{}{}", record(1, 20, 3, 3), record(1, 20, 4, 4));
    w.v1_trap("10.0.0.2", "s3cret", &two);
    w.wait_metric("clusto_snmp_records_total{outcome=\"created\"}", 3);
    assert!(w.describe("s0001").contains("Rack:     r1 RU 3"));
    assert!(
        w.describe("s0002")
            .contains("-> r1-sw1:nic-eth:4 mac=02:77:00:00:00:04")
    );
    assert_eq!(w.revisions(), base + 2);

    // A v2c INFORM is acknowledged (snmpinform exits 0 only on a Response).
    let o = w.in_switch(&[
        "snmpinform",
        "-m",
        "",
        "-v",
        "2c",
        "-r",
        "1",
        "-t",
        "2",
        "-c",
        "s3cret",
        "10.0.0.1:162",
        "",
        MAC_CHANGED,
        HIST_MSG,
        "x",
        &record(1, 10, 1, 1),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // SNMPv3 authPriv: wrong keys are dropped, the right ones discover.
    assert!(
        w.v3("snmptrap", "wrongpass1", "alicepriv1", &record(1, 30, 2, 2))
            .status
            .success()
    );
    w.wait_metric("clusto_snmp_traps_total{result=\"wrong_digest\"}", 1);
    assert!(
        w.v3("snmptrap", "alicepass1", "wrongpriv1", &record(1, 30, 2, 2))
            .status
            .success()
    );
    w.wait_metric("clusto_snmp_traps_total{result=\"undecryptable\"}", 1);
    assert_eq!(w.c.run(&["get", "server", "s0003"]).code, 1);
    assert!(
        w.v3("snmptrap", "alicepass1", "alicepriv1", &record(1, 30, 2, 2))
            .status
            .success()
    );
    w.wait_metric("clusto_snmp_records_total{outcome=\"created\"}", 4);
    assert!(
        w.describe("s0003")
            .contains("-> r1-sw1:nic-eth:2 mac=02:77:00:00:00:02")
    );
    // A v3 INFORM: engine discovery, then an authenticated, encrypted Response.
    let o = w.v3(
        "snmpinform",
        "alicepass1",
        "alicepriv1",
        &record(1, 30, 2, 2),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A different MAC on a cabled port is kept apart, not overwritten.
    w.v2c_trap("s3cret", &record(1, 10, 0x55, 5));
    w.wait_metric("clusto_snmp_records_total{outcome=\"conflict\"}", 1);
    let old = w.describe("old1");
    assert!(old.contains("mac=02:00:00:00:00:05"), "{old}");
    assert!(
        old.contains("discovery.observed-mac = 02:77:00:00:00:55"),
        "{old}"
    );

    // Zero touch: the discovered server's MAC boots with the slot's address.
    ok(&["ip", "-n", &w.n.cli, "addr", "flush", "dev", &w.n.vcli]);
    w.n.set_client_mac("02:77:00:00:00:01");
    let bound =
        w.n.dhclient()
            .expect("dhclient got a lease for the discovered server");
    assert!(bound.contains("ip=10.1.0.10"), "{bound}");
    assert!(bound.contains("router=10.1.0.1"), "{bound}");
    assert!(bound.contains("file=pxelinux.0"), "{bound}");
    assert_eq!(w.c.run(&["fsck"]).code, 0, "the store is consistent");
}
