//! dhcpd and snmptrapd started as root drop to `--user` once their ports
//! are bound: every uid and gid of the process is the account's, root
//! cannot come back, and the bound socket still serves. A daemon that is
//! not root cannot switch and says so; an unknown account is refused
//! before anything starts.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Clusto;

const NOBODY: u32 = 65534;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A SQLite store in a directory of its own that nobody owns (the WAL
/// files are created beside the database).
fn store_for_nobody(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("clusto-nobody-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = Clusto {
        store: format!("sqlite://{}", dir.join("t.db").display()),
    };
    c.ok(&["get", "servers"]);
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    for f in std::fs::read_dir(&dir).unwrap().flatten() {
        std::os::unix::fs::chown(f.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    c.store
}

/// Uid and Gid lines of /proc/PID/status: (real, effective, saved, fs).
fn ids(pid: u32) -> (Vec<u32>, Vec<u32>, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| -> Vec<u32> {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .map(|n| n.parse().unwrap())
            .collect()
    };
    let groups = status
        .lines()
        .find(|l| l.starts_with("Groups:"))
        .unwrap()
        .to_string();
    (field("Uid:"), field("Gid:"), groups)
}

fn metrics(port: u16) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a daemon with `args`, waits for its metrics, sends one garbage
/// datagram to `udp` and waits until the daemon counted it (`counted`).
fn drops_root_and_still_serves(store: &str, args: &[&str], udp: &str, counted: &str) {
    let port = free_tcp_port();
    let child = Command::new(env!("CARGO_BIN_EXE_clusto"))
        .arg("--store")
        .arg(store)
        .args(args)
        .args([
            "--user",
            "nobody",
            "--metrics",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon(child);
    let t = Instant::now();
    while metrics(port).is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{args:?} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The socket was bound before the switch and still receives.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let t = Instant::now();
    loop {
        let (uid, gid, groups) = ids(d.0.id());
        if uid == [NOBODY; 4] && gid == [NOBODY; 4] {
            assert_eq!(
                groups.split_whitespace().skip(1).collect::<Vec<_>>(),
                ["65534"],
                "{groups}"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{args:?} still uid {uid:?} gid {gid:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = Instant::now();
    loop {
        sock.send_to(b"garbage", udp).unwrap();
        if metrics(port).is_some_and(|m| m.contains(counted)) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{args:?} did not count the datagram after dropping root"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(d);
    let db = store.trim_start_matches("sqlite://");
    let _ = std::fs::remove_dir_all(std::path::Path::new(db).parent().unwrap());
}

#[test]
fn dhcpd_drops_root_after_binding_port_67() {
    let store = store_for_nobody("dhcpd");
    drops_root_and_still_serves(
        &store,
        &[
            "dhcpd",
            "--listen",
            "127.0.0.77:67",
            "--server-id",
            "127.0.0.77",
        ],
        "127.0.0.77:67",
        "clusto_dhcp_ignored_total{reason=\"malformed\"}",
    );
}

#[test]
fn snmptrapd_drops_root_after_binding_port_162() {
    let store = store_for_nobody("snmptrapd");
    drops_root_and_still_serves(
        &store,
        &["snmptrapd", "--listen", "127.0.0.78:162"],
        "127.0.0.78:162",
        "clusto_snmp_traps_total{result=\"malformed\"}",
    );
}

#[tokio::test]
async fn switching_needs_root_and_a_known_account() {
    let c = Clusto::fresh("sqlite").await;
    let e = c.fail(&[
        "dhcpd",
        "--listen",
        "127.0.0.79:16767",
        "--server-id",
        "127.0.0.79",
        "--user",
        "no-such-account",
    ]);
    assert_eq!(
        e,
        "--user \"no-such-account\": no such user (give a name from /etc/passwd, a UID or UID:GID)"
    );
    let store = store_for_nobody("switch");
    // Already nobody: a high port binds, the switch to another account is refused.
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_clusto"))
        .args([
            "--store",
            &store,
            "snmptrapd",
            "--listen",
            "127.0.0.79:16162",
            "--user",
            "daemon",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot switch to user daemon: Operation not permitted")
            && err.contains("start as root, or leave out --user"),
        "{err}"
    );
}
