//! `clusto dhcpd` against real clients (ISC dhclient, busybox udhcpc) in two
//! network namespaces joined by a veth pair. Needs root, iproute2 and the
//! clients (`.ci/run` installs them). Nothing leaves the namespaces.

mod common;
mod netns;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Clusto;
use netns::{Netns, ok, sh};

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

    // The original clusto's option names still work: `dhcp.domain` and
    // `dhcp.name_server` on the host, nearer than the datacenter's
    // `domain-name` and `dns-servers`.
    c.ok(&["attr", "set", "dhcp-test1", "dhcp.domain", "bar.example"]);
    c.ok(&[
        "attr",
        "set",
        "dhcp-test1",
        "dhcp.name_server",
        "10.77.0.53",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let bound = n.dhclient().expect("dhclient got a lease");
    assert!(bound.contains("domain=bar.example"), "{bound}");
    assert!(bound.contains("dns=10.77.0.53"), "{bound}");
    c.ok(&["attr", "del", "dhcp-test1", "dhcp.domain"]);
    c.ok(&["attr", "del", "dhcp-test1", "dhcp.name_server"]);

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
