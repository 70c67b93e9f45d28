//! Two network namespaces joined by a veth pair, and the real DHCP clients
//! run in one of them (ISC dhclient, busybox udhcpc) with the no-op hook, so
//! nothing leaves the namespaces or touches the host's resolv.conf.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Netns {
    pub srv: String,
    pub cli: String,
    pub vsrv: String,
    pub vcli: String,
    pub daemon: Option<Child>,
}

pub fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run")
}

pub fn ok(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Netns {
    pub fn up() -> Netns {
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

    pub fn set_client_mac(&self, mac: &str) {
        ok(&["ip", "-n", &self.cli, "link", "set", &self.vcli, "down"]);
        ok(&[
            "ip", "-n", &self.cli, "link", "set", &self.vcli, "address", mac,
        ]);
        ok(&["ip", "-n", &self.cli, "link", "set", &self.vcli, "up"]);
    }

    /// udhcpc once: the hook's line, or None when no server answered.
    pub fn udhcpc(&self) -> Option<String> {
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
    pub fn dhclient(&self) -> Option<String> {
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
        // Without the last lease a run is a full DISCOVER (reason BOUND), not
        // an INIT-REBOOT of the previous one.
        let _ = std::fs::remove_file(dir.join("leases"));
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
