//! The `clusto` command end to end, on SQLite and PostgreSQL.

mod common;

use common::Clusto;
use serde_json::json;

const BACKENDS: [&str; 2] = ["sqlite", "postgres"];

fn setup(c: &Clusto) {
    c.ok(&["create", "datacenter", "dc1"]);
    c.ok(&["create", "rack", "r1", "--in", "dc1"]);
    c.ok(&["create", "NetworkSwitch", "sw1", "--in", "r1", "--ru", "45"]);
    c.ok(&["create", "servers", "s1", "--in", "r1", "--ru", "10"]);
    c.ok(&[
        "create",
        "ipmanager",
        "net1",
        "--set",
        "cidr=10.0.0.0/24",
        "--set",
        "gateway=10.0.0.1",
    ]);
    c.ok(&["create", "pool", "web"]);
    c.ok(&["create", "pool", "unallocated", "--set", "type=exclusive"]);
}

#[tokio::test]
async fn get_prints_kubernetes_shaped_resources() {
    for b in BACKENDS {
        let c = Clusto::fresh(b).await;
        setup(&c);
        assert_eq!(
            c.ok(&[
                "ip",
                "allocate",
                "net1",
                "s1",
                "--osport",
                "eth0",
                "--port",
                "nic-eth:1"
            ])
            .trim(),
            "10.0.0.2"
        );
        c.ok(&["insert", "web", "s1"]);
        c.ok(&["attr", "set", "s1", "system.memory", "4096"]);
        c.ok(&["connect", "s1:nic-eth:1", "sw1:nic-eth:10"]);
        c.ok(&["port", "set", "s1", "nic-eth:1", "mac", "00:11:22:33:44:55"]);
        let v = c.json(&["get", "server", "s1"]);
        assert_eq!(v["apiVersion"], "clusto.dev/v1alpha1", "{b}");
        assert_eq!(v["kind"], "Server");
        assert_eq!(v["metadata"]["name"], "s1");
        assert_eq!(v["spec"]["rack"], "r1");
        assert_eq!(v["spec"]["ru"], 10);
        assert_eq!(v["spec"]["pools"], json!(["web"]));
        assert_eq!(
            v["spec"]["attrs"],
            json!([{"key": "system", "subkey": "memory", "value": 4096}])
        );
        assert_eq!(
            v["spec"]["ports"],
            json!([{"port": "nic-eth:1", "mac": "00:11:22:33:44:55", "connectedTo": "sw1:nic-eth:10"}])
        );
        assert_eq!(
            v["status"]["addresses"],
            json!([{"address": "10.0.0.2", "manager": "net1", "osPort": "eth0", "port": "nic-eth:1"}])
        );
        assert_eq!(v["status"]["datacenter"], "dc1");
        let list = c.json(&["get", "servers"]);
        assert_eq!(list["kind"], "List");
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        let all = c.json(&["get", "all"]);
        assert_eq!(all["items"].as_array().unwrap().len(), 7);
        // yaml is the same data
        let y = c.ok(&["get", "server", "s1", "-o", "yaml"]);
        let yv: serde_json::Value = serde_saphyr::from_str(&y).unwrap();
        assert_eq!(yv, v);
        // table and name output
        assert!(
            c.ok(&["get", "servers"])
                .contains("s1    Server  basicserver  r1 RU 10  10.0.0.2")
        );
        assert_eq!(c.ok(&["get", "racks", "-o", "name"]), "r1\n");
        let d = c.ok(&["describe", "s1"]);
        assert!(
            d.contains("Rack:     r1 RU 10")
                && d.contains("10.0.0.2")
                && d.contains("-> sw1:nic-eth:10"),
            "{d}"
        );
        assert_eq!(c.fail(&["get", "rack", "s1"]), "s1 is a Server, not a rack");
        assert_eq!(c.fail(&["get", "server", "nope"]), "nope not found");
        assert!(
            c.fail(&["get", "spaceships"])
                .starts_with("unknown kind \"spaceships\"; kinds: Datacenter")
        );
    }
}

#[tokio::test]
async fn errors_are_one_line_and_change_nothing() {
    for b in BACKENDS {
        let c = Clusto::fresh(b).await;
        setup(&c);
        let head = c.json(&["history", "--limit", "1"])["items"][0]["revision"].clone();
        assert_eq!(
            c.fail(&["create", "server", "s1"]),
            "Server s1 already exists"
        );
        assert_eq!(
            c.fail(&["create", "server", "s2", "--in", "r1", "--ru", "10"]),
            "s2: RU 10 of rack r1 overlaps s1 at RU 10"
        );
        assert_eq!(
            c.fail(&["create", "server", "s2", "--in", "r1", "--ru", "50"]),
            "s2: RU 50 is outside rack r1's units 1-45"
        );
        assert_eq!(
            c.fail(&["create", "server", "bad name"])
                .split(':')
                .next()
                .unwrap(),
            "invalid name \"bad name\""
        );
        assert_eq!(
            c.fail(&["connect", "s1:nic-eth:1", "sw1:pwr-nema-5:1"]),
            "s1: cannot connect nic-eth port nic-eth:1 to pwr-nema-5 port pwr-nema-5:1 of sw1"
        );
        assert_eq!(
            c.fail(&["insert", "r1", "web"]),
            "web: a Rack cannot contain a Pool (web)"
        );
        c.ok(&["insert", "unallocated", "s1"]);
        assert_eq!(
            c.fail(&["insert", "web", "s1"]),
            "s1: s1 is in exclusive pool unallocated; it cannot join web"
        );
        assert_eq!(
            c.fail(&["ip", "allocate", "net1", "s1", "--address", "10.9.0.1"]),
            "net1: 10.9.0.1 is not a host address of IPManager net1 (10.0.0.0/24)"
        );
        assert_eq!(
            c.fail(&["create", "ipmanager", "n2", "--set", "cidr=10.0.0.1/24"]),
            "n2: cidr 10.0.0.1/24 has host bits set; did you mean 10.0.0.0/24?"
        );
        // the failed create made nothing, and only the insert made a revision
        assert_eq!(c.fail(&["get", "ipmanager", "n2"]), "n2 not found");
        let now = c.json(&["history", "--limit", "1"])["items"][0]["revision"].clone();
        assert_eq!(now.as_i64().unwrap(), head.as_i64().unwrap() + 1, "{b}");
        // a no-op write makes no revision
        c.ok(&["attr", "set", "s1", "role", "web"]);
        let r1 = c.json(&["history", "--limit", "1"])["items"][0]["revision"].clone();
        let out = c.run(&["attr", "set", "s1", "role", "web"]);
        assert!(out.stderr.contains("no change"), "{}", out.stderr);
        assert_eq!(
            c.json(&["history", "--limit", "1"])["items"][0]["revision"],
            r1
        );
        let bad = Clusto {
            store: "mysql://x".into(),
        };
        assert!(bad.fail(&["get", "all"]).contains("unsupported store URL"));
        // usage errors exit 1 too
        assert_eq!(c.run(&["frobnicate"]).code, 1);
    }
}

#[tokio::test]
async fn attributes_merged_and_typed() {
    for b in BACKENDS {
        let c = Clusto::fresh(b).await;
        setup(&c);
        c.ok(&["insert", "web", "s1"]);
        c.ok(&["attr", "set", "dc1", "dhcp", "true", "--subkey", "enabled"]);
        c.ok(&["attr", "set", "web", "dhcp.enabled", "false"]);
        c.ok(&["attr", "set", "r1", "dhcp.filename", "pxelinux.0"]);
        let m = c.json(&["attr", "get", "s1", "dhcp", "--merged"]);
        assert_eq!(
            m,
            json!([
                {"key": "dhcp", "subkey": "filename", "value": "pxelinux.0", "source": "r1"},
                {"key": "dhcp", "subkey": "enabled", "value": false, "source": "web"},
                {"key": "dhcp", "subkey": "enabled", "value": true, "source": "dc1"},
            ]),
            "{b}"
        );
        // numbers: auto starts at 0 and is never reused
        assert!(
            c.run(&["attr", "add", "s1", "disk", "500", "--number", "auto"])
                .stderr
                .contains("number 0")
        );
        assert!(
            c.run(&["attr", "add", "s1", "disk", "500", "--number", "auto"])
                .stderr
                .contains("number 1")
        );
        c.ok(&["attr", "del", "s1", "disk", "--number", "1"]);
        assert!(
            c.run(&["attr", "add", "s1", "disk", "750", "--number", "auto"])
                .stderr
                .contains("number 2")
        );
        c.ok(&["attr", "add", "s1", "disk", "750"]);
        c.ok(&["attr", "add", "s1", "disk", "750"]);
        assert_eq!(
            c.fail(&["attr", "set", "s1", "disk", "1"]),
            "s1: 2 attributes match disk; name one with --subkey/--number or use add/del"
        );
        // typed values
        c.ok(&["attr", "set", "s1", "bmc", "10.1.1.1", "--type", "ip"]);
        c.ok(&["attr", "set", "s1", "owner", "dc1", "--type", "ref"]);
        c.ok(&["attr", "set", "s1", "serial", "0123"]);
        let a = c.json(&["attr", "get", "s1", "bmc"]);
        assert_eq!(
            a,
            json!([{"key": "bmc", "value": "10.1.1.1", "type": "ip", "source": "s1"}])
        );
        assert_eq!(c.json(&["attr", "get", "s1", "serial"])[0]["value"], "0123");
        assert_eq!(c.json(&["attr", "get", "s1", "owner"])[0]["value"], "dc1");
        assert_eq!(
            c.fail(&["attr", "set", "s1", "bmc", "x", "--type", "ip"]),
            "\"x\" is not a valid ip"
        );
        assert_eq!(
            c.fail(&["attr", "set", "s1", "9lives", "x"]),
            "invalid key \"9lives\": keys and subkeys match ^[A-Za-z_][0-9A-Za-z_-]*$"
        );
        // hidden keys
        c.ok(&["attr", "set", "s1", "_secret", "x"]);
        assert!(
            c.json(&["attr", "get", "s1"])
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["key"] != "_secret")
        );
        assert!(
            c.json(&["attr", "get", "s1", "--show-hidden"])
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["key"] == "_secret")
        );
        assert!(
            c.run(&["attr", "del", "s1", "disk", "750"])
                .stderr
                .contains("3 attribute row(s) deleted")
        );
        assert_eq!(
            c.json(&["attr", "get", "s1", "disk"]),
            json!([{"key": "disk", "number": 0, "value": 500, "source": "s1"}])
        );
        c.ok(&["attr", "del", "s1", "disk"]);
        assert!(
            c.fail(&["attr", "get", "s1", "disk"])
                .contains("s1 has no attribute disk")
        );
        // query by attribute
        assert_eq!(c.json(&["query", "attr:serial=0123"]), json!(["s1"]));
    }
}

#[tokio::test]
async fn placement_ports_names_and_history() {
    for b in BACKENDS {
        let c = Clusto::fresh(b).await;
        setup(&c);
        c.ok(&["connect", "s1:nic-eth:1", "sw1:nic-eth:4"]);
        let loc = c.ok(&["locate", "s1"]);
        assert!(loc.contains("s1 -> port nic-eth:4 on sw1"), "{loc}");
        assert!(
            loc.contains("s1 -> RU 13 in r1") || loc.contains("s1 -> RU 10 in r1"),
            "{loc}"
        );
        assert_eq!(
            c.fail(&["connect", "s1:nic-eth:2", "sw1:nic-eth:4"]),
            "sw1: port sw1:nic-eth:4 is already connected to s1:nic-eth:1"
        );
        let free = c.json(&["port", "list", "sw1", "--free"]);
        assert_eq!(free.as_array().unwrap().len(), 48);
        let conn = c.json(&["port", "list", "sw1", "--connected"]);
        assert_eq!(conn[0]["connectedTo"], "s1:nic-eth:1");
        c.ok(&["disconnect", "sw1:nic-eth:4"]);
        assert!(
            c.json(&["port", "list", "s1", "--connected"])
                .as_array()
                .unwrap()
                .is_empty()
        );
        c.ok(&["connect", "s1:nic-eth:1", "sw1:nic-eth:4"]);
        c.ok(&["delete", "s1"]);
        assert!(
            c.json(&["port", "list", "sw1", "--connected"])
                .as_array()
                .unwrap()
                .is_empty(),
            "{b}: delete frees peer ports"
        );
        // remove / insert / contents / parents
        c.ok(&["create", "server", "s2"]);
        c.ok(&["insert", "r1", "s2", "--ru", "3"]);
        assert_eq!(
            c.json(&["contents", "dc1", "--recursive"]),
            json!([{"name": "r1", "kind": "Rack"}, {"name": "s2", "kind": "Server"}, {"name": "sw1", "kind": "NetworkSwitch"}])
        );
        assert_eq!(
            c.json(&["parents", "s2", "-r"]),
            json!([{"name": "r1", "kind": "Rack"}, {"name": "dc1", "kind": "Datacenter"}])
        );
        c.ok(&["remove", "r1", "s2"]);
        assert_eq!(c.fail(&["remove", "r1", "s2"]), "s2: s2 is not in r1");
        // name manager
        c.ok(&[
            "create",
            "namemanager",
            "servernames",
            "--set",
            "basename=s",
            "--set",
            "digits=4",
        ]);
        assert_eq!(
            c.ok(&["name", "allocate", "servernames", "--kind", "server"]),
            "s0000\n"
        );
        c.ok(&["create", "server", "s0001"]);
        assert_eq!(
            c.ok(&["name", "allocate", "servernames", "--kind", "server"]),
            "s0002\n"
        );
        c.ok(&[
            "create",
            "namemanager",
            "tiny",
            "--set",
            "basename=t",
            "--set",
            "digits=1",
            "--set",
            "next=9",
        ]);
        c.ok(&["name", "allocate", "tiny", "--kind", "server"]);
        assert_eq!(
            c.fail(&["name", "allocate", "tiny", "--kind", "server"]),
            "tiny: NameManager tiny is out of digits (1 digits)"
        );
        // ip release and exhaustion
        c.ok(&["create", "ipmanager", "small", "--set", "cidr=10.5.0.0/30"]);
        c.ok(&["ip", "allocate", "small", "s2"]);
        c.ok(&["ip", "allocate", "small", "s0000"]);
        assert_eq!(
            c.fail(&["ip", "allocate", "small", "s0002"]),
            "IPManager small is exhausted"
        );
        c.ok(&["ip", "release", "s2"]);
        assert_eq!(
            c.ok(&["ip", "allocate", "small", "s0002"]).trim(),
            "10.5.0.1"
        );
        assert_eq!(
            c.fail(&["ip", "release", "s2"]),
            "s2: s2 holds no addresses"
        );
        // history: items carry revisions; --at reads the past; rename keeps history
        let h = c.json(&["history", "s2"]);
        let revs: Vec<i64> = h["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["revision"].as_i64().unwrap())
            .collect();
        assert!(
            revs.len() >= 4 && revs.windows(2).all(|w| w[0] > w[1]),
            "{revs:?}"
        );
        let created = *revs.last().unwrap();
        c.ok(&["rename", "s2", "db1"]);
        assert_eq!(
            c.json(&["history", "db1"])["items"]
                .as_array()
                .unwrap()
                .len(),
            revs.len() + 1
        );
        assert_eq!(
            c.json(&["get", "server", "s2", "--at", &created.to_string()])["metadata"]["name"],
            "s2"
        );
        assert_eq!(c.fail(&["get", "server", "s2"]), "s2 not found");
        assert!(
            c.fail(&["get", "all", "--at", "999"])
                .starts_with("revision 999 does not exist")
        );
        let h = c.json(&["history", "--limit", "1"]);
        assert_eq!(h["items"][0]["user"], "tester");
        assert_eq!(h["items"][0]["changes"][0]["op"], "~");
        // queries
        assert_eq!(c.json(&["query", "kind:server and in:dc1"]), json!([]));
        assert!(c.fail(&["query", "kind:server and"]).starts_with("query: "));
        assert!(
            c.ok(&["query", "in:dc1", "--explain"])
                .contains("WITH RECURSIVE")
        );
        // completions
        assert!(c.ok(&["completions", "bash"]).contains("clusto"));
    }
}

#[tokio::test]
async fn eight_concurrent_allocating_processes_get_distinct_addresses() {
    for b in BACKENDS {
        let c = Clusto::fresh(b).await;
        c.ok(&["create", "ipmanager", "net", "--set", "cidr=10.2.0.0/24"]);
        for i in 0..8 {
            c.ok(&["create", "server", &format!("h{i}")]);
        }
        let children: Vec<_> = (0..8)
            .map(|i| {
                c.cmd()
                    .args(["ip", "allocate", "net", &format!("h{i}")])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut got: Vec<String> = children
            .into_iter()
            .map(|ch| {
                let o = ch.wait_with_output().unwrap();
                assert!(
                    o.status.success(),
                    "{b}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                String::from_utf8(o.stdout).unwrap().trim().to_string()
            })
            .collect();
        got.sort();
        let n = got.len();
        got.dedup();
        assert_eq!(got.len(), n, "{b}: {got:?}");
        let expected: Vec<String> = (1..=8).map(|i| format!("10.2.0.{i}")).collect();
        let mut sorted_expected = expected.clone();
        sorted_expected.sort();
        assert_eq!(
            got, sorted_expected,
            "{b}: allocation is sequential and gap-free"
        );
    }
}

/// Lists come out page by page in name order (more than one page here),
/// in every format; a reader that hangs up early ends the command quietly.
#[tokio::test]
async fn lists_stream_in_pages_and_a_closed_pipe_is_quiet() {
    for b in BACKENDS {
        let c = Clusto::fresh(b).await;
        let dir = std::env::temp_dir().join(format!("clusto-lists-{}-{b}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = dir.join("gen.yaml");
        let text = c.ok(&["generate", "--racks", "30", "--servers-per-rack", "40"]);
        std::fs::write(&manifest, text).unwrap();
        c.ok(&["apply", "-f", manifest.to_str().unwrap()]);
        let names: Vec<String> = c
            .ok(&["get", "server", "-o", "name"])
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(names.len(), 1200, "{b}");
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "{b}: byte order across pages");
        let j = c.json(&["get", "server"]);
        let items = j["items"].as_array().unwrap();
        assert_eq!(items.len(), 1200, "{b}");
        assert_eq!(items[777]["metadata"]["name"], names[777].as_str());
        assert_eq!(items[777]["spec"]["pools"].as_array().unwrap().len(), 1);
        let y: serde_json::Value =
            serde_saphyr::from_str(&c.ok(&["get", "racks", "-o", "yaml"])).unwrap();
        assert_eq!(y["items"].as_array().unwrap().len(), 30, "{b}");
        let table = c.ok(&["get", "server"]);
        assert!(table.starts_with("NAME"), "{table:.80}");
        assert_eq!(table.lines().count(), 1201);
        let empty = c.json(&["get", "vms"]);
        assert_eq!(empty["items"], json!([]), "{b}");
        // A closed pipe: no panic, no message, and no non-zero status but
        // the one SIGPIPE gives.
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; '{}' --store '{}' get server -o name | head -3; echo status ${{PIPESTATUS[0]}}",
                env!("CARGO_BIN_EXE_clusto"),
                c.store
            ))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stdout.lines().take(3).count(), 3, "{stdout}");
        let status = stdout.lines().last().unwrap();
        assert!(
            status == "status 0" || status == "status 141",
            "{b}: {status}"
        );
        assert!(stderr.is_empty(), "{b}: {stderr}");
        // History pages: --limit 0 is all, --since only what came after.
        for n in names.iter().take(30) {
            c.ok(&["attr", "set", n, "owner", "alice"]);
        }
        let all = c.json(&["history", "--limit", "0"]);
        let revs: Vec<i64> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["revision"].as_i64().unwrap())
            .collect();
        assert_eq!(revs, (1..=31).rev().collect::<Vec<i64>>(), "{b}");
        assert_eq!(c.json(&["history"])["items"].as_array().unwrap().len(), 31);
        assert_eq!(
            c.json(&["history", "--limit", "5"])["items"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
        let since = c.json(&["history", "--since", "25"]);
        let revs: Vec<i64> = since["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["revision"].as_i64().unwrap())
            .collect();
        assert_eq!(revs, vec![31, 30, 29, 28, 27, 26], "{b}");
        let mine = c.json(&["history", &names[3], "--since", "1"]);
        assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{b}");
        assert_eq!(
            mine["items"][0]["changes"][0]["text"],
            format!("{} attr owner: team-3 → alice", names[3]).as_str()
        );
        assert_eq!(c.ok(&["history", "--since", "31", "-o", "name"]), "");
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// A VM's settings are typed: what apply refuses, a point write refuses.
#[tokio::test]
async fn vm_settings_are_checked_by_type() {
    for b in BACKENDS {
        let c = Clusto::fresh(b).await;
        for (f, v, why) in [
            ("cpus", "abc", "cpus must be a whole number"),
            ("cpus", "0", "cpus must be a whole number from 1"),
            ("memoryMiB", "-5", "memoryMiB must be a whole number"),
            (
                "powerState",
                "Paused",
                "powerState must be Running or Stopped",
            ),
            (
                "allowTermination",
                "yes",
                "allowTermination must be true or false",
            ),
        ] {
            let e = c.fail(&[
                "create",
                "virtualmachine",
                "v1",
                "--set",
                &format!("{f}={v}"),
            ]);
            assert!(e.contains(why), "{b}: {f}={v}: {e}");
        }
        assert_eq!(
            c.json(&["get", "vms"])["items"],
            json!([]),
            "{b}: nothing written"
        );
        c.ok(&[
            "create",
            "virtualmachine",
            "v1",
            "--set",
            "cpus=4",
            "--set",
            "allowTermination=true",
        ]);
        let attrs = c.json(&["attr", "get", "v1", "--show-hidden"]);
        let cpus = attrs
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["subkey"] == "cpus")
            .unwrap();
        assert_eq!(cpus["value"], 4, "{b}: stored as a number: {cpus}");
    }
}

/// `rack show`: every unit numbered top to bottom, each device on its
/// units (a 2U one across two), empty units blank; its data as JSON; a
/// non-rack refused.
#[tokio::test]
async fn rack_show_draws_the_elevation() {
    let c = Clusto::fresh("sqlite").await;
    setup(&c);
    c.ok(&[
        "create",
        "driver",
        "big",
        "--set",
        "base=server",
        "--set",
        "rackUnits=2",
    ]);
    c.ok(&[
        "create", "server", "b1", "--driver", "big", "--in", "r1", "--ru", "20",
    ]);
    let out = c.ok(&["rack", "show", "r1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "r1 (45U, 1-45), front", "{out}");
    // Units run 45 down to 1 between the two rules.
    let units: Vec<u32> = lines[2..lines.len() - 1]
        .iter()
        .map(|l| l[..4].trim().parse().unwrap())
        .collect();
    assert_eq!(units, (1..=45).rev().collect::<Vec<_>>(), "{out}");
    let row = |u: u32| lines[2 + (45 - u) as usize];
    assert!(row(45).contains("| sw1 "), "{out}");
    assert!(row(10).contains("| s1 "), "{out}");
    assert!(row(21).contains("| b1 (2U) "), "{out}");
    assert!(row(20).contains("|   | "), "{out}");
    assert_eq!(
        row(11).trim_end(),
        format!("  11 | {} |", " ".repeat(32)),
        "{out}"
    );
    let j = c.json(&["rack", "show", "r1"]);
    assert_eq!(
        j["mounted"][1],
        json!({"name": "b1", "kind": "Server", "driver": "big", "ru": {"start": 20, "end": 21}, "face": "front", "fullDepth": true})
    );
    // The rear: a device mounted there drawn plainly, the backs of
    // full-depth front devices in brackets, half-depth front ones not at all.
    c.ok(&["attr", "set", "sw1", "rack.face", "rear"]);
    c.ok(&["attr", "set", "s1", "rack.depth", "half"]);
    let rear = c.ok(&["rack", "show", "r1", "--rear"]);
    let lines: Vec<&str> = rear.lines().collect();
    assert_eq!(lines[0], "r1 (45U, 1-45), rear", "{rear}");
    let row = |u: u32| lines[2 + (45 - u) as usize];
    assert!(row(45).contains("| sw1 "), "{rear}");
    assert!(row(21).contains("| [b1 (2U)] "), "{rear}");
    assert!(
        row(10)
            .trim_end()
            .ends_with(&format!("{} |", " ".repeat(32))),
        "{rear}"
    );
    assert!(
        rear.contains("[name]: a full-depth device mounted on the other side"),
        "{rear}"
    );
    let front = c.ok(&["rack", "show", "r1"]);
    assert!(
        front.lines().nth(2).unwrap().contains("| [sw1] "),
        "{front}"
    );
    assert!(front.contains("| s1 "), "{front}");
    let j = c.json(&["rack", "show", "r1"]);
    assert_eq!(j["mounted"][2]["face"], "rear", "{j}");
    assert_eq!(j["mounted"][0]["fullDepth"], false, "{j}");
    assert_eq!(
        c.fail(&["rack", "show", "s1"]),
        "s1 is a Server, not a rack"
    );
    assert!(c.fail(&["rack", "show", "nope"]).contains("nope"));
}

/// `clusto fsck`: silent and 0 on a healthy store; each violation with its
/// objects and exit 1 on a damaged one (damaged here by hand, as an
/// incident would).
#[tokio::test]
async fn fsck_reports_damage_with_the_objects_involved() {
    let c = Clusto::fresh("sqlite").await;
    c.ok(&[
        "apply",
        "-f",
        &format!("{}/../../manifests", env!("CARGO_MANIFEST_DIR")),
    ]);
    let r = c.run(&["fsck"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    assert_eq!(r.stderr, "fsck: no violations\n");
    assert_eq!(c.json(&["fsck"])["violations"], serde_json::json!([]));
    let file = c.store.trim_start_matches("sqlite://");
    let damage = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE containment SET ru_start=1, ru_end=1 WHERE rev_to IS NULL AND child=(SELECT eid FROM entities WHERE name='xenhost2' AND rev_to IS NULL)\"); c.commit()",
            file,
        ])
        .status()
        .unwrap();
    assert!(damage.success());
    let r = c.run(&["fsck"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("ru-overlap"), "{}", r.stdout);
    assert!(r.stdout.contains("xenhost1,xenhost2"), "{}", r.stdout);
    assert_eq!(r.stderr, "fsck: 1 violation(s)\n");
    let j = c.run(&["fsck", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(
        v["violations"][0]["objects"],
        serde_json::json!(["xenhost1", "xenhost2"])
    );
}

/// Under cron, CI or a container `USER` is often unset: the revision names
/// the OS account, as git does; `--user` and `CLUSTO_USER` override it, and
/// `-m` names every write, VM commands included.
#[tokio::test]
async fn revisions_name_their_writer_without_user_in_the_environment() {
    let c = Clusto::fresh("sqlite").await;
    let account = String::from_utf8(
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let bare = |args: &[&str]| {
        let out = c
            .cmd()
            .env_remove("CLUSTO_USER")
            .env_remove("USER")
            .env_remove("LOGNAME")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    let last = || c.json(&["history", "--limit", "1"])["items"][0].clone();
    bare(&["create", "datacenter", "dc1"]);
    assert_eq!(last()["user"], account.as_str());
    bare(&["create", "rack", "r1", "--user", "alice", "-m", "new row"]);
    assert_eq!(last()["user"], "alice");
    assert_eq!(last()["message"], "new row");
    c.ok(&["attr", "set", "r1", "owner", "bob"]);
    assert_eq!(last()["user"], "tester", "CLUSTO_USER names the writer");
}

/// A tmpfs mounted for one test, unmounted (and removed) when it ends.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("clusto-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test]
async fn a_full_disk_changes_nothing_and_the_store_works_once_space_is_freed() {
    let disk = Tmpfs::mount("12m");
    let db = disk.0.join("clusto.db");
    let c = Clusto {
        store: format!("sqlite://{}", db.display()),
    };
    setup(&c);
    let before = c.json(&["get", "servers"])["items"]
        .as_array()
        .unwrap()
        .len();
    // Something else on the disk takes most of what is left.
    let filler = disk.0.join("filler");
    std::fs::write(&filler, vec![0u8; 6 << 20]).unwrap();
    let manifest = c.ok(&["generate", "--racks", "250", "--servers-per-rack", "40"]);
    let f = disk
        .0
        .join("..")
        .join(format!("clusto-full-{}.yaml", std::process::id()));
    std::fs::write(&f, manifest).unwrap();
    let e = c.fail(&["apply", "-f", f.to_str().unwrap()]);
    assert_eq!(
        e,
        format!(
            "the disk holding {} is full; nothing was changed (free space and run again)",
            db.display()
        )
    );
    // Intact: readable, unchanged, consistent.
    assert_eq!(
        c.json(&["get", "servers"])["items"]
            .as_array()
            .unwrap()
            .len(),
        before
    );
    assert_eq!(
        c.run(&["fsck"]).code,
        0,
        "fsck clean after the failed apply"
    );
    // Space freed: writes work again, and the store is still consistent.
    std::fs::remove_file(&filler).unwrap();
    c.ok(&["create", "server", "after-full"]);
    assert_eq!(
        c.json(&["get", "server", "after-full"])["metadata"]["name"],
        "after-full"
    );
    assert_eq!(c.run(&["fsck"]).code, 0);
    let _ = std::fs::remove_file(&f);
}
