//! plan / apply / export end to end, on SQLite and PostgreSQL.

mod common;

use std::io::Write;

use common::Clusto;

const BACKENDS: [&str; 2] = ["sqlite", "postgres"];

fn repo(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "clusto-manifest-test-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn head(c: &Clusto) -> i64 {
    c.json(&["history", "--limit", "1"])["items"][0]["revision"]
        .as_i64()
        .unwrap_or(0)
}

#[tokio::test]
async fn example_manifests_plan_apply_and_reapply() {
    for b in BACKENDS {
        let c = Clusto::fresh(b).await;
        let m = repo("manifests");
        let r = c.run(&["plan", "-f", &m, "--detailed-exitcode"]);
        assert_eq!(r.code, 2, "{b}: {}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("+ Rack sv3-001"), "{}", r.stdout);
        assert!(
            r.stdout.contains("+ NetworkSwitch sv3-001-sw1"),
            "layout devices are in the plan"
        );
        assert!(
            r.stdout
                .ends_with("Plan: 21 to add, 0 to change, 0 to destroy.\n"),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout.contains("+ Server s0000"),
            "nameFrom allocates in the plan too"
        );
        assert!(
            r.stdout.contains(
                "status.placement = \"xenhost1: needs 1024 MiB/20 GiB/1 cpu, free 16384/2000/8\""
            ),
            "{}",
            r.stdout
        );
        let p = c.json(&["plan", "-f", &m]);
        assert_eq!(p["summary"]["add"], 21);
        assert_eq!(head(&c), 0, "plan writes nothing");
        let out = c.ok(&["apply", "-f", &m]);
        assert!(
            out.contains(
                "Apply complete! Resources: 21 added, 0 changed, 0 destroyed (revision 1)."
            ),
            "{out}"
        );
        // order in files does not matter; layout cabling and slot placement happened
        let sw = c.json(&["port", "list", "sv3-001-sw1", "--connected"]);
        let peers: Vec<&str> = sw
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["connectedTo"].as_str().unwrap())
            .collect();
        assert!(
            peers.contains(&"xenhost1:nic-eth:1") && peers.contains(&"sv3-001-ts1:nic-eth:1"),
            "{peers:?}"
        );
        assert_eq!(
            c.json(&["get", "datacenter", "eqix-sv3"])["spec"]["driver"],
            "equinixdatacenter"
        );
        let addr =
            c.json(&["get", "server", "xenhost1"])["status"]["addresses"][0]["address"].clone();
        assert_eq!(
            addr, "192.168.20.10",
            "reserved .2-.9 and the gateway are skipped"
        );
        // re-apply: no changes, no revision; allocations are stable
        assert_eq!(c.ok(&["apply", "-f", &m]), "No changes.\n");
        assert_eq!(head(&c), 1);
        assert_eq!(c.run(&["plan", "-f", &m, "--detailed-exitcode"]).code, 0);
        assert_eq!(
            c.json(&["get", "server", "xenhost1"])["status"]["addresses"][0]["address"],
            addr
        );
        // the NameManager-named spare kept its name: no s0001 appeared
        assert_eq!(
            c.json(&["get", "server", "s0000"])["spec"]["pools"],
            serde_json::json!(["unallocated"])
        );
        assert_eq!(c.fail(&["get", "server", "s0001"]), "s0001 not found");
        // VM placement: best fit among the manager's hosts, with its reason
        assert_eq!(
            c.ok(&["vm", "explain", "vm-web1"]),
            "vm-web1 -> xenhost1: needs 1024 MiB/20 GiB/1 cpu, free 16384/2000/8\n"
        );
        // recorded at apply, counting the VMs placed before it
        let db = c.json(&["get", "virtualmachine", "vm-db1"]);
        assert_eq!(db["status"]["host"], "xenhost1");
        assert_eq!(
            db["status"]["placement"],
            "xenhost1: needs 4096 MiB/100 GiB/2 cpu, free 15360/1980/7"
        );
        // history names the apply set
        assert_eq!(
            c.json(&["history", "--limit", "1"])["items"][0]["manager"],
            "applyset:manifests"
        );
        // merged attributes from the datacenter reach the servers
        let merged = c.json(&["attr", "get", "xenhost1", "dhcp.enabled", "--merged"]);
        assert_eq!(merged[0]["source"], "eqix-sv3");
        // stdin works and is its own apply set
        let mut child = c
            .cmd()
            .args(["plan", "-f", "-", "--apply-set", "manifests"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                std::fs::read_to_string(repo("manifests/datacenter.yaml"))
                    .unwrap()
                    .as_bytes(),
            )
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("No changes."),
            "{b}"
        );
    }
}

const BAD: &str = r#"apiVersion: clusto.dev/v1alpha1
kind: Rack
metadata: {name: r1}
---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {name: a}
spec:
  rack: r1
  ru: 5
---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {name: b}
spec:
  rack: r1
  ru: 5
---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {name: c}
spec:
  rakc: r1
---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {name: d}
spec:
  datacenter: nowhere
  addresses:
    - {manager: net, address: 10.9.9.9}
---
apiVersion: clusto.dev/v1alpha1
kind: IPManager
metadata: {name: net}
spec:
  cidr: 10.0.0.0/24
---
apiVersion: clusto.dev/v1alpha1
kind: Pool
metadata: {name: free}
spec:
  type: exclusive
  members: [a]
---
apiVersion: clusto.dev/v1alpha1
kind: Pool
metadata: {name: web}
spec:
  members: [a]
"#;

#[tokio::test]
async fn every_error_reported_with_position_and_nothing_written() {
    for b in BACKENDS {
        let c = Clusto::fresh(b).await;
        let d = tmpdir("bad");
        let f = write(&d, "bad.yaml", BAD);
        // a syntax/type error stops before any semantic check, with its position
        let r = c.run(&["apply", "-f", &f]);
        assert_eq!(r.code, 1);
        assert!(
            r.stderr.contains("bad.yaml:23:3: Server c: unknown field"),
            "{b}: {}",
            r.stderr
        );
        let fixed = BAD.replace("rakc: r1", "rack: r1\n  ru: 7");
        let f = write(&d, "bad.yaml", &fixed);
        let r = c.run(&["apply", "-f", &f]);
        assert_eq!(r.code, 1, "{}", r.stdout);
        let e = &r.stderr;
        assert!(
            e.contains("bad.yaml:17:3: Server b: RU 5 of rack r1 overlaps a at RU 5"),
            "{b}: {e}"
        );
        assert!(
            e.contains("bad.yaml:30:15: Server d: container nowhere does not exist"),
            "{e}"
        );
        assert!(
            e.contains(
                "bad.yaml:32:31: Server d: net: 10.9.9.9 is not a host address of IPManager net (10.0.0.0/24)"
            ),
            "{e}"
        );
        assert!(
            e.contains("bad.yaml:5:1: Server a: a is in exclusive pool free; it cannot join web"),
            "{e}"
        );
        assert!(e.contains("error(s); nothing was changed."), "{e}");
        assert_eq!(head(&c), 0, "{b}: nothing written");
        assert!(
            c.json(&["get", "all"])["items"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }
}

const OWNED: &str = r#"apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {name: s1}
spec:
  attrs: {role: web}
---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {name: s2}
"#;

#[tokio::test]
async fn ownership_prune_conflicts_drift_and_plan_files() {
    for b in BACKENDS {
        let c = Clusto::fresh(b).await;
        let d = tmpdir("own");
        let f = write(&d, "a.yaml", OWNED);
        c.ok(&["apply", "-f", &f, "--apply-set", "team-a"]);
        c.ok(&["create", "server", "handmade"]);
        // Declaring what is recorded is never a conflict, and moves nothing.
        let same = write(&d, "same.yaml", OWNED);
        let r = c.ok(&["apply", "-f", &same, "--apply-set", "team-b"]);
        assert_eq!(r, "No changes.\n", "{b}");
        let s1 = || c.json(&["get", "server", "s1"]);
        assert_eq!(s1()["metadata"]["managedBy"], "applyset:team-a");
        // A value another apply set owns that would change is a conflict,
        // per field, naming the owner; nothing is written.
        let g = write(&d, "b.yaml", &OWNED.replace("role: web", "role: db"));
        let r = c.run(&["apply", "-f", &g, "--apply-set", "team-b"]);
        assert_eq!(r.code, 1);
        assert!(
            r.stderr.contains(
                "b.yaml:5:11: Server s1: conflict: spec.attrs.role of s1 is owned by \
                 applyset:team-a and would change from \"web\" to \"db\"; use \
                 --force-conflicts to take over this field"
            ),
            "{b}: {}",
            r.stderr
        );
        assert_eq!(c.json(&["attr", "get", "s1", "role"])[0]["value"], "web");
        // A field nobody declared is nobody's: adding it is no conflict.
        let more = write(
            &d,
            "more.yaml",
            &OWNED.replace("role: web", "role: web, rack: r9"),
        );
        c.ok(&["apply", "-f", &more, "--apply-set", "team-b"]);
        assert_eq!(c.json(&["attr", "get", "s1", "rack"])[0]["value"], "r9");
        // Forcing takes over just that field; the object stays team-a's,
        // and team-a changing it back is now the conflict.
        let forced = write(
            &d,
            "forced.yaml",
            &OWNED.replace("role: web", "role: db, rack: r9"),
        );
        c.ok(&[
            "apply",
            "-f",
            &forced,
            "--apply-set",
            "team-b",
            "--force-conflicts",
        ]);
        assert_eq!(c.json(&["attr", "get", "s1", "role"])[0]["value"], "db");
        assert_eq!(s1()["metadata"]["managedBy"], "applyset:team-a");
        let back = write(
            &d,
            "back.yaml",
            &OWNED.replace("role: web", "role: web, rack: r9"),
        );
        let r = c.run(&["apply", "-f", &back, "--apply-set", "team-a"]);
        assert_eq!(r.code, 1);
        assert!(
            r.stderr
                .contains("spec.attrs.role of s1 is owned by applyset:team-b"),
            "{b}: {}",
            r.stderr
        );
        c.ok(&[
            "apply",
            "-f",
            &f,
            "--apply-set",
            "team-a",
            "--force-conflicts",
        ]);
        assert_eq!(c.json(&["attr", "get", "s1", "role"])[0]["value"], "web");
        // prune: only team-a's objects that left the manifests, shown first
        let only_s1 = write(&d, "a.yaml", OWNED.split("---").next().unwrap());
        let plan = c.ok(&["plan", "-f", &only_s1, "--apply-set", "team-a", "--prune"]);
        assert!(
            plan.contains("- Server s2") && plan.contains("0 to add, 0 to change, 1 to destroy"),
            "{plan}"
        );
        assert!(!plan.contains("handmade"));
        let without = c.ok(&["plan", "-f", &only_s1, "--apply-set", "team-a"]);
        assert!(
            without.contains("No changes"),
            "without --prune nothing is deleted: {without}"
        );
        c.ok(&["apply", "-f", &only_s1, "--apply-set", "team-a", "--prune"]);
        assert_eq!(c.fail(&["get", "server", "s2"]), "s2 not found");
        assert!(
            c.json(&["get", "server", "handmade"])["metadata"]["name"] == "handmade",
            "{b}: CLI objects are never pruned"
        );
        // drift: an out-of-band change on an owned object shows in the plan
        c.ok(&["attr", "set", "s1", "role", "cache"]);
        let r = c.run(&[
            "plan",
            "-f",
            &only_s1,
            "--apply-set",
            "team-a",
            "--detailed-exitcode",
        ]);
        assert_eq!(r.code, 2);
        assert!(
            r.stdout
                .contains("~ Server s1 (drift: changed outside this apply set)"),
            "{}",
            r.stdout
        );
        assert!(
            r.stdout.contains("spec.attrs.role: \"cache\" → \"web\""),
            "{}",
            r.stdout
        );
        // plan files: applied exactly, refused when stale
        let pf = d.join("plan.json").display().to_string();
        c.ok(&[
            "plan",
            "-f",
            &only_s1,
            "--apply-set",
            "team-a",
            "--out",
            &pf,
        ]);
        let before = head(&c);
        c.ok(&["apply", &pf]);
        assert_eq!(head(&c), before + 1);
        assert_eq!(c.json(&["attr", "get", "s1", "role"])[0]["value"], "web");
        c.ok(&["attr", "set", "s1", "role", "cache"]);
        c.ok(&[
            "plan",
            "-f",
            &only_s1,
            "--apply-set",
            "team-a",
            "--out",
            &pf,
        ]);
        c.ok(&["attr", "set", "s1", "role", "other"]);
        let e = c.run(&["apply", &pf]);
        assert_eq!(e.code, 1);
        assert!(
            e.stderr
                .contains("the inventory changed since the plan was made"),
            "{b}: {}",
            e.stderr
        );
        assert_eq!(
            c.json(&["attr", "get", "s1", "role"])[0]["value"],
            "other",
            "refused apply changed nothing"
        );
    }
}

#[tokio::test]
async fn export_round_trips() {
    for b in BACKENDS {
        let c = Clusto::fresh(b).await;
        c.ok(&["apply", "-f", &repo("manifests")]);
        // imperative additions are exported too
        c.ok(&["create", "server", "extra", "--in", "sv3-001", "--ru", "20"]);
        c.ok(&[
            "attr",
            "add",
            "extra",
            "note",
            "2024-01-01T00:00:00Z",
            "--type",
            "datetime",
        ]);
        c.ok(&["attr", "add", "extra", "owner", "eqix-sv3", "--type", "ref"]);
        c.ok(&["ip", "allocate", "subnet-dmz", "extra", "--osport", "eth0"]);
        c.ok(&["insert", "unallocated", "extra"]);
        c.ok(&[
            "rack",
            "add-server",
            "sv3-001",
            "--switch-port",
            "5",
            "--name-manager",
            "servernames",
        ]);
        let exported = c.ok(&["export"]);
        let d = tmpdir("export");
        let f = write(&d, "export.yaml", &exported);
        // applying the export to its own store changes nothing
        let h = head(&c);
        // whatever the apply set and file name: same values are no conflict
        let r = c.ok(&["apply", "-f", &f, "--apply-set", "dc"]);
        assert_eq!(r, "No changes.\n", "{b}");
        assert!(c.ok(&["plan", "-f", &f]).contains("No changes"), "{b}");
        assert_eq!(head(&c), h);
        // and to an empty store reproduces the inventory
        let fresh = Clusto::fresh(b).await;
        fresh.ok(&["apply", "-f", &f]);
        assert_eq!(fresh.ok(&["export"]), exported, "{b}: round trip");
        // a query exports a part
        let part = c.ok(&["export", "kind:server and in:production"]);
        assert_eq!(part.matches("kind: Server").count(), 2, "{part}");
    }
}

#[tokio::test]
async fn rack_layout_places_servers_by_switch_port() {
    for b in BACKENDS {
        let c = Clusto::fresh(b).await;
        c.ok(&["apply", "-f", &repo("manifests")]);
        assert_eq!(
            c.ok(&[
                "rack",
                "add-server",
                "sv3-001",
                "--switch-port",
                "4",
                "--name-manager",
                "servernames"
            ]),
            "s0001\n"
        );
        let s = c.json(&["get", "server", "s0001"]);
        assert_eq!(s["spec"]["rack"], "sv3-001");
        assert_eq!(s["spec"]["ru"], 4);
        let ports = s["spec"]["ports"].as_array().unwrap();
        let to: Vec<&str> = ports
            .iter()
            .map(|p| p["connectedTo"].as_str().unwrap())
            .collect();
        assert_eq!(
            to,
            [
                "sv3-001-ts1:console-serial:4",
                "sv3-001-sw1:nic-eth:4",
                "sv3-001-pwr1:pwr-nema-5:4"
            ],
            "{b}"
        );
        assert!(
            c.fail(&[
                "rack",
                "add-server",
                "sv3-001",
                "--switch-port",
                "4",
                "--name",
                "x"
            ])
            .contains("already has s0001 on it")
        );
        assert!(
            c.fail(&[
                "rack",
                "add-server",
                "sv3-001",
                "--switch-port",
                "40",
                "--name",
                "x"
            ])
            .contains("no server slot for switch port 40")
        );
        assert!(
            c.fail(&[
                "rack",
                "add-server",
                "sv3-001",
                "--switch-port",
                "1",
                "--name",
                "x"
            ])
            .contains("already has xenhost1")
        );
        assert!(
            c.fail(&["get", "server", "x"]).contains("not found"),
            "failed placement leaves nothing"
        );
        // A server that exists in no rack takes the slot; one already racked,
        // or something not a server, does not.
        c.ok(&["create", "server", "newbox"]);
        let place = |name: &'static str, port: &'static str| {
            [
                "rack",
                "add-server",
                "sv3-001",
                "--switch-port",
                port,
                "--name",
                name,
            ]
        };
        assert_eq!(c.ok(&place("newbox", "5")), "newbox\n", "{b}");
        let s = c.json(&["get", "server", "newbox"]);
        assert_eq!(
            (s["spec"]["rack"].as_str(), s["spec"]["ru"].as_i64()),
            (Some("sv3-001"), Some(5)),
            "{b}: {s}"
        );
        assert!(
            c.fail(&place("newbox", "6"))
                .contains("newbox is already in rack sv3-001 at RU 5"),
            "{b}"
        );
        assert!(
            c.fail(&place("servernames", "6"))
                .contains("servernames is a NameManager, not a server"),
            "{b}"
        );
        // Without --name, the layout's NameManager (default servernames) names it.
        assert_eq!(
            c.ok(&["rack", "add-server", "sv3-001", "--switch-port", "6"]),
            "s0002\n",
            "{b}"
        );
        assert!(
            c.fail(&[
                "rack",
                "add-server",
                "sv3-001",
                "--switch-port",
                "7",
                "--name-manager",
                "nosuch"
            ])
            .contains("nosuch"),
            "{b}"
        );
    }
}

/// One file serves `kubectl apply` (a custom resource, with its namespace)
/// and `clusto plan|apply` alike: the namespace is accepted, not a name part.
#[tokio::test]
async fn custom_resource_files_plan_and_apply() {
    let c = Clusto::fresh("sqlite").await;
    let dir = tmpdir("cr");
    let f = dir.join("dc.yaml");
    std::fs::write(
        &f,
        "apiVersion: clusto.dev/v1alpha1\nkind: Datacenter\nmetadata:\n  name: dc9\n  namespace: sites\nspec: {}\n",
    )
    .unwrap();
    let f = f.to_str().unwrap();
    let r = c.run(&[
        "plan",
        "-f",
        f,
        "--apply-set",
        "k8s:sites",
        "--detailed-exitcode",
    ]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("+ Datacenter dc9"), "{}", r.stdout);
    c.ok(&["apply", "-f", f, "--apply-set", "k8s:sites"]);
    let got = c.json(&["get", "datacenter", "dc9"]);
    assert_eq!(got["metadata"]["managedBy"], "applyset:k8s:sites");
}

/// The most memory any child of this test process has used, in KiB
/// (nextest runs each test in its own process, so these are our children).
fn children_peak_rss_kib() -> i64 {
    // struct rusage on 64-bit Linux: two timevals, then ru_maxrss.
    unsafe extern "C" {
        fn getrusage(who: i32, usage: *mut [i64; 18]) -> i32;
    }
    const RUSAGE_CHILDREN: i32 = -1;
    let mut usage = [0i64; 18];
    assert_eq!(unsafe { getrusage(RUSAGE_CHILDREN, &mut usage) }, 0);
    usage[4]
}

/// Hostile YAML (issue 12): each is refused with one error naming the file,
/// the line and the rule, nothing is written, and no run needs more than
/// 256 MiB.
#[tokio::test]
async fn hostile_yaml_is_refused_clearly_within_256_mib() {
    let c = Clusto::fresh("sqlite").await;
    let d = tmpdir("hostile");
    let mut bomb = vec!["a: &a [x, x, x, x, x, x, x, x, x, x]".to_string()];
    for i in 1..9 {
        let prev = if i == 1 {
            "a".into()
        } else {
            format!("l{}", i - 1)
        };
        bomb.push(format!(
            "l{i}: &l{i} [{}]",
            vec![format!("*{prev}"); 10].join(", ")
        ));
    }
    let bomb = write(&d, "bomb.yaml", &bomb.join("\n"));
    let flow = format!(
        "kind: Server\nspec: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let flow = write(&d, "flow.yaml", &flow);
    let block: String = (1..=10_000)
        .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
        .collect();
    let block = write(&d, "block.yaml", &format!("kind: Server\nspec:\n{block}"));
    let utf8 = d.join("latin1.yaml");
    std::fs::write(&utf8, b"kind: Server\nmetadata:\n  name: caf\xe9\n").unwrap();
    let utf8 = utf8.display().to_string();
    // 1 GiB without using the disk: a sparse file.
    let huge = d.join("huge.yaml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let huge = huge.display().to_string();
    let cases: [(&str, &str); 5] = [
        (&bomb, "bomb.yaml:6:15:"),
        (&flow, "flow.yaml:2:"),
        (&block, "block.yaml:"),
        (&utf8, "latin1.yaml:3:12: not UTF-8 text (byte 0xE9)"),
        (
            &huge,
            "huge.yaml: 1024.0 MiB is larger than the 128.0 MiB a manifest file may be",
        ),
    ];
    for (file, says) in cases {
        let r = c.run(&["apply", "-f", file]);
        assert_eq!(r.code, 1, "{file}: {}{}", r.stdout, r.stderr);
        let e = r.stderr;
        assert!(e.contains(says), "{file}: {e}");
        assert_eq!(
            e.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{e}"
        );
        if !file.ends_with("latin1.yaml") && !file.ends_with("huge.yaml") {
            assert!(e.contains("manifest too large to read safely"), "{e}");
        }
    }
    // A pipe that never ends is cut off at the same limit.
    let mut cat = std::process::Command::new("cat")
        .arg("/dev/zero")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = c
        .cmd()
        .args(["apply", "-f", "-"])
        .stdin(cat.stdout.take().unwrap())
        .output()
        .unwrap();
    let _ = cat.kill();
    let _ = cat.wait();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("-: larger than the 128.0 MiB"), "{e}");
    assert_eq!(head(&c), 0, "nothing was written");
    let peak = children_peak_rss_kib();
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
    let _ = std::fs::remove_dir_all(&d);
}
