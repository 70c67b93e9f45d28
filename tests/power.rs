//! `clusto power` and `clusto console` end to end: the real binary, a
//! SQLite store, OpenIPMI's `ipmi_sim` as BMCs and net-snmp's `snmpd` as
//! PDUs on loopback addresses, and OpenSSH's client against a listener on
//! the port a console server's driver computes.

mod common;
mod sims;

use std::io::Read;
use std::net::{IpAddr, TcpListener};
use std::time::Duration;

use common::Clusto;

const PDU_IP: [u8; 4] = [127, 0, 0, 11];
const BMC_IP: [u8; 4] = [127, 0, 0, 12];
const TS_IP: [u8; 4] = [127, 0, 0, 13];

fn ip(a: [u8; 4]) -> IpAddr {
    a.into()
}

/// Two servers on one PDU (s1 with two supplies on outlets 3 and 4, s2 on
/// outlet 5), s2 also with a BMC, both on a console server.
fn manifest(pdu: &sims::Sim, bmc: Option<&sims::Sim>, creds: &str) -> String {
    let bmc_attrs = match bmc {
        Some(b) => format!(
            "  attrs:\n    - {{key: ipmi, subkey: port, value: {}}}\n    - {{key: ipmi, subkey: credentials, value: \"{creds}\"}}\n",
            b.addr.port()
        ),
        None => String::new(),
    };
    format!(
        r#"apiVersion: clusto.dev/v1alpha1
kind: IPManager
metadata: {{name: lo}}
spec: {{cidr: 127.0.0.0/24}}
---
apiVersion: clusto.dev/v1alpha1
kind: Driver
metadata: {{name: dualpsu}}
spec:
  base: Server
  ports: {{nic-eth: 2, pwr-nema-5: 2, console-serial: 1}}
---
apiVersion: clusto.dev/v1alpha1
kind: PowerStrip
metadata: {{name: pdu1}}
spec:
  driver: powertowerxm
  addresses: [{{manager: lo, address: 127.0.0.11}}]
  attrs:
    - {{key: snmp, subkey: community, value: private}}
    - {{key: snmp, subkey: port, value: {pdu_port}}}
---
apiVersion: clusto.dev/v1alpha1
kind: ConsoleServer
metadata: {{name: ts1}}
spec:
  driver: opengearcm4148
  addresses: [{{manager: lo, address: 127.0.0.13}}]
---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {{name: s1}}
spec:
  driver: dualpsu
  ports:
    - {{port: "pwr-nema-5:1", connectedTo: "pdu1:pwr-nema-5:3"}}
    - {{port: "pwr-nema-5:2", connectedTo: "pdu1:pwr-nema-5:4"}}
    - {{port: "console-serial:1", connectedTo: "ts1:console-serial:7"}}
---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {{name: s2}}
spec:
  ports:
    - {{port: "pwr-nema-5:1", connectedTo: "pdu1:pwr-nema-5:5"}}
  addresses: [{{manager: lo, address: 127.0.0.12, osPort: ipmi}}]
{bmc_attrs}"#,
        pdu_port = pdu.addr.port(),
    )
}

async fn world(
    bmc: bool,
    creds: &str,
) -> (Clusto, sims::Sim, Option<sims::Sim>, tempfile_dir::Dir) {
    let c = Clusto::fresh("sqlite").await;
    let pdu = sims::pdu(ip(PDU_IP), "private");
    let bmc = bmc.then(|| sims::bmc(ip(BMC_IP)));
    let dir = tempfile_dir::Dir::new("power");
    let f = dir.path.join("oob.yaml");
    std::fs::write(&f, manifest(&pdu, bmc.as_ref(), creds)).unwrap();
    c.ok(&["apply", "-f", f.to_str().unwrap()]);
    (c, pdu, bmc, dir)
}

/// A directory removed when the test ends.
mod tempfile_dir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new(what: &str) -> Dir {
            let path = std::env::temp_dir().join(format!(
                "clusto-{what}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[tokio::test]
async fn pdu_outlets_follow_the_cables_on_off_cycle_and_mixed() {
    let (c, pdu, _, _d) = world(false, "").await;
    let st = c.json(&["power", "status", "s1", "s2"]);
    assert_eq!(st[0]["power"], "off");
    assert_eq!(st[0]["via"], "pdu");
    assert_eq!(st[0]["outlets"].as_array().unwrap().len(), 2);
    c.ok(&["power", "on", "s1"]);
    assert_eq!(
        (
            pdu.state("outlet-3"),
            pdu.state("outlet-4"),
            pdu.state("outlet-5")
        ),
        ("on".into(), "on".into(), String::new())
    );
    let table = c.ok(&["power", "status", "s1"]);
    assert!(
        table.contains("pdu1 outlet 3 on, pdu1 outlet 4 on"),
        "{table}"
    );
    // Someone switched one supply off by hand: the server reads as mixed.
    pdu.set_state("outlet-4", "off");
    assert_eq!(c.json(&["power", "status", "s1"])[0]["power"], "mixed");
    // A cycle turns every outlet off before any comes back.
    std::fs::remove_file(pdu.dir.join("sets")).unwrap();
    c.ok(&["power", "cycle", "s1", "--wait", "0.2"]);
    assert_eq!(pdu.state("sets"), "3 2\n4 2\n3 1\n4 1");
    c.ok(&["power", "off", "s1"]);
    assert_eq!(c.json(&["power", "status", "s1"])[0]["power"], "off");
}

#[tokio::test]
async fn pdu_errors_wrong_community_refusing_outlet_and_missing_cables() {
    let (c, pdu, _, _d) = world(false, "").await;
    pdu.set_state("refuse-5", "");
    let e = c.fail(&["power", "on", "s2"]);
    assert!(
        e.contains("pdu1 outlet 5") && e.contains("refused") && e.contains("genErr"),
        "{e}"
    );
    c.ok(&["attr", "set", "pdu1", "snmp.community", "wrong"]);
    let e = c.fail(&["power", "status", "s1", "--timeout", "0.2"]);
    assert!(
        e.contains("no answer from 127.0.0.11") && e.contains("community is wrong"),
        "{e}"
    );
    c.ok(&["create", "server", "bare"]);
    let e = c.fail(&["power", "status", "bare"]);
    assert_eq!(
        e,
        "bare has no power path: BMC: no address on OS port ipmi (clusto ip allocate MANAGER bare --osport ipmi); PDU: no pwr-* port is cabled to a power strip"
    );
    c.ok(&["attr", "del", "pdu1", "snmp.community"]);
    let e = c.fail(&["power", "status", "s1"]);
    assert!(
        e.contains("power strip pdu1 has no merged attribute snmp.community"),
        "{e}"
    );
    let e = c.fail(&["power", "status", "lo"]);
    assert_eq!(e, "lo (IPManager) is not a device with power");
}

#[tokio::test]
async fn bmc_first_with_credentials_from_a_file_or_the_environment() {
    let creds_dir = tempfile_dir::Dir::new("bmc-creds");
    let file = creds_dir.path.join("bmc");
    std::fs::write(&file, "oper:operpw\n").unwrap();
    let (c, pdu, bmc, _d) = world(true, &format!("file:{}", file.display())).await;
    let bmc = bmc.unwrap();
    let st = c.json(&["power", "status", "s2"]);
    assert_eq!(
        (st[0]["power"].as_str(), st[0]["via"].as_str()),
        (Some("off"), Some("bmc"))
    );
    c.ok(&["power", "on", "s2"]);
    assert_eq!(bmc.state("power"), "1");
    assert_eq!(
        pdu.state("outlet-5"),
        "",
        "the BMC path leaves the outlet alone"
    );
    assert_eq!(c.json(&["power", "status", "s2"])[0]["power"], "on");
    c.ok(&["power", "cycle", "s2", "--wait", "0"]);
    assert_eq!(bmc.state("power"), "1");
    c.ok(&["power", "off", "s2", "--via", "bmc"]);
    assert_eq!(bmc.state("power"), "0");
    // --via pdu takes the outlet even though a BMC exists.
    c.ok(&["power", "on", "s2", "--via", "pdu"]);
    assert_eq!(
        (pdu.state("outlet-5"), bmc.state("power")),
        ("on".into(), "0".into())
    );
    // No console cable: serial over LAN through the BMC, password never printed.
    let r = c.run(&["console", "s2", "--print"]);
    assert_eq!(
        r.stdout.trim(),
        format!(
            "ipmitool -I lanplus -H 127.0.0.12 -p {} -U oper -E sol activate",
            bmc.addr.port()
        )
    );
    assert!(!r.stdout.contains("operpw") && !r.stderr.contains("operpw"));
    // The environment instead of a file; then a wrong password.
    c.ok(&["attr", "set", "s2", "ipmi.credentials", "env:TEST_BMC"]);
    let r = c
        .cmd()
        .args(["power", "on", "s2"])
        .env("TEST_BMC", "oper:operpw")
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(bmc.state("power"), "1");
    let e = c.fail(&["power", "status", "s2"]);
    assert!(e.contains("environment variable TEST_BMC: not set"), "{e}");
    std::fs::write(&file, "oper:nope\n").unwrap();
    c.ok(&[
        "attr",
        "set",
        "s2",
        "ipmi.credentials",
        &format!("file:{}", file.display()),
    ]);
    let e = c.fail(&["power", "off", "s2", "--timeout", "0.3"]);
    assert!(
        e.contains("did not accept the credentials of user \"oper\"")
            && e.contains("wrong password"),
        "{e}"
    );
    assert_eq!(bmc.state("power"), "1", "nothing switched");
    std::fs::write(&file, "no colon\n").unwrap();
    let e = c.fail(&["power", "off", "s2"]);
    assert!(
        e.contains(&format!(
            "BMC credentials from file {}: the first line must be USER:PASSWORD",
            file.display()
        )),
        "{e}"
    );
    c.ok(&["attr", "set", "s2", "ipmi.credentials", "admin:secret"]);
    let e = c.fail(&["power", "off", "s2", "--via", "bmc"]);
    assert!(
        e.contains("merged attribute ipmi.credentials = \"admin:secret\": file:PATH or env:NAME"),
        "{e}"
    );
}

#[tokio::test]
async fn an_absent_bmc_fails_fast_and_a_silent_one_within_the_timeout() {
    let (c, _pdu, bmc, _d) = world(true, "env:TEST_BMC").await;
    let port = bmc.as_ref().unwrap().addr.port();
    drop(bmc);
    let t = std::time::Instant::now();
    let r = c
        .cmd()
        .args(["power", "status", "s2"])
        .env("TEST_BMC", "oper:operpw")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && e.contains(&format!("127.0.0.12:{port}")),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let silent = std::net::UdpSocket::bind((ip(BMC_IP), 0)).unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    c.ok(&["attr", "set", "s2", "ipmi.port", &port, "--type", "int"]);
    let t = std::time::Instant::now();
    let r = c
        .cmd()
        .args(["power", "status", "s2", "--timeout", "0.3"])
        .env("TEST_BMC", "oper:operpw")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(
        e.contains("no answer from the BMC") && e.contains("3 attempt(s)"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn console_prints_the_drivers_command_and_it_reaches_the_computed_port() {
    let (c, _pdu, _, _d) = world(false, "").await;
    let printed = c.ok(&["console", "s1", "--print", "--user", "alice"]);
    assert_eq!(printed.trim(), "ssh -p 3007 -l alice 127.0.0.13");
    // Run it: OpenSSH's client opens the port the driver computed.
    let listener = TcpListener::bind((ip(TS_IP), 3007)).unwrap();
    let mut argv = printed.split_whitespace();
    let mut ssh = std::process::Command::new(argv.next().unwrap())
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(argv)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut banner = [0u8; 8];
    conn.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    drop(conn);
    let _ = ssh.wait();
    let e = c.fail(&["console", "s2"]);
    assert_eq!(
        e,
        "s2 has no console path: no console-serial port is cabled to a console server; and no BMC for serial over LAN: merged attribute ipmi.credentials is not set (file:PATH or env:NAME)"
    );
}

#[tokio::test]
async fn user_drivers_bring_their_own_oids_and_commands() {
    let (c, pdu, _, d) = world(false, "").await;
    let f = d.path.join("apc.yaml");
    std::fs::write(
        &f,
        r#"apiVersion: clusto.dev/v1alpha1
kind: Driver
metadata: {name: apc7900}
spec:
  base: PowerStrip
  ports: {pwr-nema-5: 8, nic-eth: 1}
  power:
    control: 1.3.6.1.4.1.318.1.1.4.4.2.1.3.{outlet}
    status: 1.3.6.1.4.1.318.1.1.4.4.2.1.3.{outlet}
    on: 1
    off: 2
    statusOn: [1]
    statusOff: [2]
---
apiVersion: clusto.dev/v1alpha1
kind: Driver
metadata: {name: telnetconsole}
spec:
  base: ConsoleServer
  ports: {console-serial: 16, nic-eth: 1}
  console: {command: "telnet {address} {port+2000}"}
"#,
    )
    .unwrap();
    c.ok(&["apply", "-f", f.to_str().unwrap(), "--apply-set", "drivers"]);
    let world = d.path.join("oob.yaml");
    let text = std::fs::read_to_string(&world).unwrap();
    let text = text
        .replace("driver: powertowerxm", "driver: apc7900")
        .replace("driver: opengearcm4148", "driver: telnetconsole");
    std::fs::write(&world, text).unwrap();
    c.ok(&["apply", "-f", world.to_str().unwrap()]);
    c.ok(&["power", "on", "s2"]);
    assert_eq!(pdu.state("outlet-5"), "on");
    assert_eq!(c.ok(&["console", "s1"]).trim(), "telnet 127.0.0.13 2007");
    // Driver data that breaks a rule is refused with file, line and rule.
    std::fs::write(
        &f,
        "apiVersion: clusto.dev/v1alpha1\nkind: Driver\nmetadata: {name: bad}\nspec:\n  base: PowerStrip\n  power: {control: \"1.3.6.1\", status: \"1.3.6.2.{outlet}\", on: 1, off: 2, statusOn: [1], statusOff: [2]}\n",
    )
    .unwrap();
    let r = c.run(&["apply", "-f", f.to_str().unwrap(), "--apply-set", "bad"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("apc.yaml:6")
            && r.stderr.contains("Driver bad")
            && r.stderr
                .contains("power.control must be a dotted OID containing {outlet}"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was changed"), "{}", r.stderr);
    std::fs::write(
        &f,
        "apiVersion: clusto.dev/v1alpha1\nkind: Driver\nmetadata: {name: bad}\nspec:\n  base: Server\n  console: {command: \"ssh {address}\"}\n",
    )
    .unwrap();
    let r = c.run(&["apply", "-f", f.to_str().unwrap(), "--apply-set", "bad"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(
            "console is for drivers of base ConsoleServer, and this one's base is Server"
        ),
        "{}",
        r.stderr
    );
}

/// Declares power in the world's manifest (same file, same apply set).
fn declare(c: &Clusto, d: &tempfile_dir::Dir, power: &[(&str, &str)]) {
    let f = d.path.join("oob.yaml");
    let mut text = std::fs::read_to_string(&f).unwrap();
    for (name, state) in power {
        let head = format!("metadata: {{name: {name}}}\nspec:\n");
        let mut cleaned = String::new();
        // Drop an earlier declaration of this object, then add this one.
        let mut inside = false;
        for l in text.split_inclusive('\n') {
            if l.starts_with("metadata:") {
                inside = l.trim_end() == head.lines().next().unwrap();
            }
            if inside && l.starts_with("  powerState:") {
                continue;
            }
            cleaned.push_str(l);
        }
        text = cleaned.replace(&head, &format!("{head}  powerState: {state}\n"));
    }
    std::fs::write(&f, text).unwrap();
    c.ok(&["apply", "-f", f.to_str().unwrap()]);
}

fn controller_once(c: &Clusto) -> String {
    let r = c
        .cmd()
        .args(["controller", "--once", "--lease-ttl", "2"])
        .env("TEST_BMC", "oper:operpw")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert!(r.status.success(), "{err}");
    err
}

fn condition(c: &Clusto, name: &str, kind: &str) -> serde_json::Value {
    let st = c.json(&["get", "server", name])["status"].clone();
    st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["type"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("{name} has no {kind}: {st}"))
}

#[tokio::test]
async fn the_controller_makes_declared_power_so_and_corrects_drift() {
    let (c, pdu, bmc, d) = world(true, "env:TEST_BMC").await;
    let bmc = bmc.unwrap();
    bmc.set_state("power", "1");
    declare(&c, &d, &[("s1", "On"), ("s2", "Off")]);
    // s3 declares too, in another apply set, with no path at all.
    let s3 = d.path.join("s3.yaml");
    std::fs::write(&s3, "apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: s3}\nspec: {powerState: On}\n").unwrap();
    c.ok(&["apply", "-f", s3.to_str().unwrap()]);

    let err = controller_once(&c);
    assert!(
        err.contains("power: 2 device(s) switched, 1 not as declared"),
        "{err}"
    );
    assert_eq!(
        (pdu.state("outlet-3"), pdu.state("outlet-4")),
        ("on".into(), "on".into())
    );
    assert_eq!(bmc.state("power"), "0", "s2 went off through its BMC");
    let s1 = c.json(&["get", "server", "s1"])["status"].clone();
    assert_eq!(
        (s1["powerState"].as_str(), s1["powerVia"].as_str()),
        (Some("On"), Some("pdu"))
    );
    assert_eq!(
        condition(&c, "s1", "Ready")["message"],
        "switched On (was Off)"
    );
    assert_eq!(
        condition(&c, "s1", "PowerPath")["message"],
        "through pdu1 outlet 3, pdu1 outlet 4"
    );
    assert_eq!(
        condition(&c, "s2", "PowerPath")["message"],
        format!("through the BMC at {}", bmc.addr)
    );
    let missing = condition(&c, "s3", "PowerPath");
    assert_eq!(missing["status"], "False");
    assert!(missing["message"].as_str().unwrap().contains("no address on OS port ipmi (clusto ip allocate MANAGER s3 --osport ipmi); PDU: no pwr-* port is cabled to a power strip"), "{missing}");

    // A no-op pass: one read per outlet or BMC, no writes, no revision.
    let head = c.json(&["history", "--limit", "1"])[0]["revision"].clone();
    std::fs::remove_file(pdu.dir.join("gets")).unwrap();
    std::fs::remove_file(pdu.dir.join("sets")).unwrap();
    controller_once(&c);
    assert_eq!(pdu.state("gets"), "3\n4", "one status read per outlet");
    assert_eq!(pdu.state("sets"), "", "nothing switched");
    assert_eq!(
        c.json(&["history", "--limit", "1"])[0]["revision"],
        head,
        "no status revision"
    );

    // Someone pressed the button: the next pass reads it and switches back.
    pdu.set_state("outlet-4", "off");
    bmc.set_state("power", "1");
    controller_once(&c);
    assert_eq!(
        (pdu.state("outlet-4"), bmc.state("power")),
        ("on".into(), "0".into())
    );
    assert_eq!(
        condition(&c, "s1", "Ready")["message"],
        "switched On (was mixed)"
    );
    assert_eq!(pdu.state("sets"), "4 1", "only the outlet that drifted");

    // clusto plan shows what the controller could not do; CI needs no BMC.
    let f = d.path.join("oob.yaml");
    let plan = c.ok(&["plan", "-f", s3.to_str().unwrap()]);
    assert!(
        plan.contains("! Server s3: powerState On, observed unknown (MissingPath"),
        "{plan}"
    );
    let plan = c.ok(&["plan", "-f", f.to_str().unwrap()]);
    assert!(
        !plan.contains("Not as declared"),
        "s1 and s2 are as declared: {plan}"
    );
}

#[tokio::test]
async fn an_unreachable_bmc_is_reported_and_a_running_controller_follows_changes() {
    let (c, pdu, bmc, d) = world(true, "env:TEST_BMC").await;
    let port = bmc.as_ref().unwrap().addr.port();
    drop(bmc);
    declare(&c, &d, &[("s1", "On"), ("s2", "On")]);
    let err = controller_once(&c);
    assert!(err.contains("1 not as declared"), "{err}");
    let ready = condition(&c, "s2", "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("Unreachable"))
    );
    let last = c.json(&["get", "server", "s2"])["status"]["lastError"].clone();
    assert!(
        last.as_str()
            .unwrap()
            .contains(&format!("127.0.0.12:{port}")),
        "{last}"
    );

    // A running controller sees a new declaration without restarting.
    let mut daemon = c
        .cmd()
        .args(["controller", "--poll-ms", "100", "--lease-ttl", "2"])
        .env("TEST_BMC", "oper:operpw")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    declare(&c, &d, &[("s1", "Off")]);
    let t = std::time::Instant::now();
    while pdu.state("outlet-3") != "off" || pdu.state("outlet-4") != "off" {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the running controller did not switch s1 off"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
}

#[tokio::test]
async fn serial_over_lan_through_the_bmc_reaches_the_servers_console() {
    let (c, _pdu, _, _d) = world(false, "").await;
    // The server's serial line: a TCP service ipmi_sim connects to.
    let line = TcpListener::bind("127.0.0.1:0").unwrap();
    let sol_port = line.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        if let Ok((mut s, _)) = line.accept() {
            for _ in 0..300 {
                if s.write_all(b"login: ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let bmc = sims::bmc_with_sol(ip(BMC_IP), sol_port);
    c.ok(&[
        "attr",
        "set",
        "s2",
        "ipmi.port",
        &bmc.addr.port().to_string(),
        "--type",
        "int",
    ]);
    c.ok(&["attr", "set", "s2", "ipmi.credentials", "env:TEST_BMC"]);
    let r = c
        .cmd()
        .args(["console", "s2", "--print"])
        .env("TEST_BMC", "oper:operpw")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&r.stdout).trim().to_string();
    assert!(
        printed.starts_with("ipmitool -I lanplus -H 127.0.0.12"),
        "{printed}"
    );
    // Run it as a user would, the password in the environment.
    let mut sol = std::process::Command::new("sh")
        .args(["-c", &printed])
        .env("IPMI_PASSWORD", "operpw")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = sol.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&seen).contains("login: ") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(b) => seen.extend(b),
            Err(_) => break,
        }
    }
    let _ = sol.kill();
    let _ = sol.wait();
    let seen = String::from_utf8_lossy(&seen);
    assert!(
        seen.contains("SOL Session operational") && seen.contains("login: "),
        "{seen}"
    );
}
