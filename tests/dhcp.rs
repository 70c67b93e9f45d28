//! `clusto dhcpd` against real clients (ISC dhclient, busybox udhcpc) in two
//! network namespaces joined by a veth pair. Needs root, iproute2 and the
//! clients (`.ci/run` installs them). Nothing leaves the namespaces.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Clusto;

struct Netns {
    srv: String,
    cli: String,
    vsrv: String,
    vcli: String,
    daemon: Option<Child>,
}

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run")
}

fn ok(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Netns {
    fn up() -> Netns {
        let id = std::process::id() % 100_000;
        let n = Netns {
            srv: format!("clds{id}"),
            cli: format!("cldc{id}"),
            vsrv: format!("vds{id}"),
            vcli: format!("vdc{id}"),
            daemon: None,
        };
        ok(&["ip", "netns", "add", &n.srv]);
        ok(&["ip", "netns", "add", &n.cli]);
        ok(&[
            "ip", "link", "add", &n.vsrv, "type", "veth", "peer", "name", &n.vcli,
        ]);
        ok(&["ip", "link", "set", &n.vsrv, "netns", &n.srv]);
        ok(&["ip", "link", "set", &n.vcli, "netns", &n.cli]);
        for ns in [&n.srv, &n.cli] {
            ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            // A namespace's own resolv.conf, so nothing a client runs can
            // reach the host's.
            let d = format!("/etc/netns/{ns}");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(format!("{d}/resolv.conf"), "# test namespace\n").unwrap();
        }
        ok(&[
            "ip",
            "-n",
            &n.srv,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            &n.vsrv,
        ]);
        ok(&["ip", "-n", &n.srv, "link", "set", &n.vsrv, "up"]);
        n.set_client_mac("02:77:00:00:00:01");
        n
    }

    fn set_client_mac(&self, mac: &str) {
        ok(&["ip", "-n", &self.cli, "link", "set", &self.vcli, "down"]);
        ok(&[
            "ip", "-n", &self.cli, "link", "set", &self.vcli, "address", mac,
        ]);
        ok(&["ip", "-n", &self.cli, "link", "set", &self.vcli, "up"]);
    }

    /// udhcpc once: the hook's line, or None when no server answered.
    fn udhcpc(&self) -> Option<String> {
        let hook = format!("{}/../../tests/dhcp-hook.sh", env!("CARGO_MANIFEST_DIR"));
        let o = sh(&[
            "ip", "netns", "exec", &self.cli, "busybox", "udhcpc", "-i", &self.vcli, "-n", "-q",
            "-f", "-t", "3", "-T", "1", "-s", &hook,
        ]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        err.lines()
            .find(|l| l.contains("reason=bound"))
            .map(str::to_string)
    }

    /// ISC dhclient in the foreground, ended by us once it has bound (or
    /// after 15 s): the hook's BOUND line, or None.
    fn dhclient(&self) -> Option<String> {
        let hook = format!("{}/../../tests/dhcp-hook.sh", env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!("clusto-dhclient-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("dhclient.conf");
        std::fs::write(
            &conf,
            "timeout 10;\nretry 1;\ninitial-interval 1;\nrequest subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name;\n",
        )
        .unwrap();
        let log = dir.join("stderr");
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", &self.cli, "dhclient", "-d", "-1", "-v", "-cf",
            ])
            .arg(&conf)
            .args(["-sf", &hook, "-lf"])
            .arg(dir.join("leases"))
            .arg("-pf")
            .arg(dir.join("pid"))
            .arg(&self.vcli)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut found = None;
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(l) = text.lines().find(|l| l.contains("reason=BOUND")) {
                found = Some(l.to_string());
                break;
            }
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        found
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        for ns in [&self.srv, &self.cli] {
            let _ = sh(&["ip", "netns", "del", ns]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
    }
}

const TEST_NET: &str = r#"apiVersion: clusto.dev/v1alpha1
kind: IPManager
metadata: {name: dhcp-testnet}
spec:
  cidr: 10.77.0.0/24
  gateway: 10.77.0.1
---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {name: dhcp-test1}
spec:
  datacenter: eqix-sv3
  ports:
    - {port: "nic-eth:1", mac: "02:77:00:00:00:01", osPort: eth0}
  addresses:
    - {address: 10.77.0.20, manager: dhcp-testnet, osPort: eth0, port: "nic-eth:1"}
  attrs:
    dhcp: {tftp_server: 10.77.0.1, tftp_filename: pxelinux.0}
"#;

fn md5(path: &str) -> String {
    String::from_utf8_lossy(&sh(&["md5sum", path]).stdout).to_string()
}

#[tokio::test]
async fn real_clients_get_what_the_inventory_says() {
    let resolv = md5("/etc/resolv.conf");
    let c = Clusto::fresh("sqlite").await;
    c.ok(&[
        "apply",
        "-f",
        &format!("{}/../../manifests", env!("CARGO_MANIFEST_DIR")),
    ]);
    let dir = std::env::temp_dir().join(format!("clusto-dhcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("testnet.yaml");
    std::fs::write(&f, TEST_NET).unwrap();
    c.ok(&[
        "apply",
        "-f",
        f.to_str().unwrap(),
        "--apply-set",
        "dhcp-test",
    ]);

    let mut n = Netns::up();
    let daemon = Command::new("ip")
        .args([
            "netns",
            "exec",
            &n.srv,
            env!("CARGO_BIN_EXE_clusto"),
            "--store",
            &c.store,
            "dhcpd",
        ])
        .args([
            "--interface",
            &n.vsrv,
            "--server-id",
            "10.77.0.1",
            "--refresh-ms",
            "100",
            "--metrics",
            "127.0.0.1:9467",
        ])
        .env("CLUSTO_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    n.daemon = Some(daemon);
    std::thread::sleep(Duration::from_millis(500));

    // ISC dhclient: address, router, DNS, domain and boot file from the inventory
    let bound = n.dhclient().expect("dhclient got a lease");
    assert!(bound.contains("ip=10.77.0.20"), "{bound}");
    assert!(bound.contains("mask=255.255.255.0"), "{bound}");
    assert!(bound.contains("router=10.77.0.1"), "{bound}");
    assert!(
        bound.contains("dns=192.168.20.2"),
        "merged from the datacenter: {bound}"
    );
    assert!(bound.contains("domain=sv3.example.com"), "{bound}");
    assert!(bound.contains("file=pxelinux.0"), "{bound}");
    assert!(bound.contains("serverid=10.77.0.1"), "{bound}");

    // busybox udhcpc
    let bound = n.udhcpc().expect("udhcpc got a lease");
    assert!(
        bound.contains("ip=10.77.0.20") && bound.contains("router=10.77.0.1"),
        "{bound}"
    );
    assert!(
        bound.contains("siaddr=10.77.0.1") && bound.contains("file=pxelinux.0"),
        "{bound}"
    );

    // an unknown MAC gets nothing
    n.set_client_mac("02:77:00:00:99:99");
    assert_eq!(n.udhcpc(), None);
    n.set_client_mac("02:77:00:00:00:01");

    // turning DHCP off for the host stops answers within a second
    c.ok(&["attr", "set", "dhcp-test1", "dhcp.enabled", "false"]);
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        n.udhcpc(),
        None,
        "still answered {:?} after disabling",
        t.elapsed()
    );
    c.ok(&["attr", "del", "dhcp-test1", "dhcp.enabled"]);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        n.udhcpc().is_some(),
        "answers again once the datacenter's setting applies"
    );

    // A relayed exchange: perfdhcp in relay mode (giaddr 10.77.0.2) runs a
    // full DORA for the bound MAC; the responder answers the relay on 67.
    ok(&[
        "ip",
        "-n",
        &n.cli,
        "addr",
        "add",
        "10.77.0.2/24",
        "dev",
        &n.vcli,
    ]);
    let macs = dir.join("macs.txt");
    std::fs::write(&macs, "02:77:00:00:00:01\n").unwrap();
    let o = sh(&[
        "ip",
        "netns",
        "exec",
        &n.cli,
        "perfdhcp",
        "-4",
        "-l",
        "10.77.0.2",
        "-M",
        macs.to_str().unwrap(),
        "-r",
        "5",
        "-p",
        "2",
        "10.77.0.1",
    ]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let acks = out
        .split("***Statistics for: REQUEST-ACK")
        .nth(1)
        .and_then(|t| t.lines().find(|l| l.contains("received packets:")))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(acks > 0, "relayed DORA got no ACK: {out}");

    // The metrics endpoint counts what happened.
    // curl inside the server's namespace: (body, HTTP status).
    let http = |path: &str| {
        let url = format!("http://127.0.0.1:9467{path}");
        let o = sh(&[
            "ip",
            "netns",
            "exec",
            &n.srv,
            "curl",
            "-s",
            "-w",
            "\n%{http_code}",
            &url,
        ]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", ""));
        (body.to_string(), code.to_string())
    };
    let metrics = http("/metrics").0;
    assert!(
        metrics.contains("clusto_dhcp_replies_total{type=\"ack\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("clusto_dhcp_ignored_total{reason=\"unknown_mac\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("clusto_dhcp_ignored_total{reason=\"disabled\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("clusto_dhcp_index_hosts"), "{metrics}");
    // The same server answers the probes a kubelet or load balancer sends.
    for (path, want) in [("/healthz", "200"), ("/readyz", "200"), ("/nothing", "404")] {
        assert_eq!(http(path).1, want, "{path}");
    }

    drop(n);
    assert_eq!(
        md5("/etc/resolv.conf"),
        resolv,
        "the host's resolv.conf is untouched"
    );
}
