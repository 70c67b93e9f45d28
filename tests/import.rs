//! `clusto import clusto` against the real original: clusto 0.7.9 on
//! Python 2.7 builds an inventory with its own API (racks with devices at
//! units, the three pool kinds nested, an IPManager with allocations and a
//! gateway, a name manager, cabled ports, typed and merged attributes, a
//! deleted server) on SQLite and on PostgreSQL, prints what it answers about
//! every entity, and the same questions are asked of clusto after the import.

mod common;

use std::collections::BTreeSet;

use common::Clusto;
use serde_json::{Value as Json, json};

/// The venv `bash .ci/deps test` (tests/import/setup-original.sh) prepares.
fn original_python() -> String {
    let py = format!(
        "{}/.cache/clusto-original-venv/bin/python",
        std::env::var("HOME").unwrap()
    );
    assert!(
        std::path::Path::new(&py).exists(),
        "{py} is missing: run `bash tests/import/setup-original.sh` (or `bash .ci/deps test`)"
    );
    py
}

/// Builds the original's inventory at `dsn` and returns its answers.
fn build_original(dsn: &str) -> serde_json::Map<String, Json> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/import/build_original.py"
    );
    let out = std::process::Command::new(original_python())
        .arg(script)
        .arg(dsn)
        .output()
        .expect("run the original clusto");
    assert!(
        out.status.success(),
        "the original failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the original's answers")
}

/// The original's DSN (SQLAlchemy's) for one of our URLs.
fn dsn(url: &str) -> String {
    match url.strip_prefix("sqlite://") {
        Some(path) => format!("sqlite:///{path}"),
        None => url.replacen("postgres://", "postgresql://", 1).replacen(
            "mysql://",
            "mysql+pymysql://",
            1,
        ),
    }
}

/// An empty MariaDB database for the original: `CLUSTO_TEST_MYSQL`
/// (default the user `.ci/deps` makes), databases named `clusto_orig_*`.
fn fresh_mysql() -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let base = std::env::var("CLUSTO_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://clusto@127.0.0.1:3306".into());
    let db = format!(
        "clusto_orig_{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let hostpart = base.trim_start_matches("mysql://");
    let (user, host) = hostpart.split_once('@').unwrap();
    let (host, port) = host.split_once(':').unwrap_or((host, "3306"));
    let out = std::process::Command::new("mariadb")
        .args(["-h", host, "-P", port, "-u", user, "-e"])
        .arg(format!(
            "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}"
        ))
        .output()
        .expect("mariadb client (bash .ci/deps test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{base}/{db}")
}

fn set<T: Ord>(v: impl IntoIterator<Item = T>) -> BTreeSet<T> {
    v.into_iter().collect()
}

/// An attribute as (key, subkey, number, value), values in one spelling:
/// the original's naive datetimes are UTC.
fn row(key: &Json, subkey: &Json, number: &Json, value: &Json) -> String {
    let value = match value.as_str() {
        Some(t) if t.ends_with(".000Z") => json!(t.trim_end_matches(".000Z")),
        _ => value.clone(),
    };
    json!([key, subkey, number, value]).to_string()
}

fn compare(c: &Clusto, answers: &serde_json::Map<String, Json>) {
    let kinds: std::collections::HashMap<String, String> = c.json(&["get", "all"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap().to_string(),
                i["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(!kinds.contains_key("gone"), "a deleted entity came back");
    for (name, want) in answers {
        if name == "clustometa" || name.starts_with('_') {
            continue;
        }
        let kind = kinds
            .get(name)
            .unwrap_or_else(|| panic!("{name} not imported"));
        let expected_kind = match want["type"].as_str().unwrap() {
            "resourcemanager" if want["driver"] == "ipmanager" => "IPManager".to_string(),
            "resourcemanager" => "NameManager".to_string(),
            "networkswitch" => "NetworkSwitch".to_string(),
            "powerstrip" => "PowerStrip".to_string(),
            "consoleserver" => "ConsoleServer".to_string(),
            t => format!("{}{}", t[..1].to_uppercase(), &t[1..]),
        };
        assert_eq!(*kind, expected_kind, "{name}'s kind");

        // Attributes: the original's visible rows that stay attributes here
        // (addresses, ports and driver properties become fields).
        let theirs = set(want["attrs"].as_array().unwrap().iter().filter_map(|a| {
            let key = a[0].as_str().unwrap();
            let keep = key != "ip" && !key.starts_with("port-") && a[1] != "property";
            keep.then(|| row(&a[0], &a[1], &a[2], &a[4]))
        }));
        let ours = set(c
            .json(&["attr", "get", name])
            .as_array()
            .unwrap()
            .iter()
            .map(|a| row(&a["key"], &a["subkey"], &a["number"], &a["value"])));
        assert_eq!(ours, theirs, "{name}'s attributes");

        if let Some(merged) = want.get("merged_dhcp") {
            let theirs = set(merged.as_array().unwrap().iter().map(|x| x.to_string()));
            let ours = set(c
                .json(&["attr", "get", name, "dhcp", "--merged"])
                .as_array()
                .unwrap()
                .iter()
                .map(|a| json!([a["subkey"], a["value"]]).to_string()));
            assert_eq!(ours, theirs, "{name}'s merged dhcp attributes");
        }

        let parents = c.json(&["parents", name]);
        let ours = set(parents
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].to_string()));
        let theirs = set(want["parents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.to_string()));
        assert_eq!(ours, theirs, "{name}'s direct parents");

        let all = c.json(&["parents", name, "--recursive"]);
        let ours = set(all
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["kind"] == "Pool")
            .map(|p| p["name"].to_string()));
        let theirs = set(want["pools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.to_string()));
        assert_eq!(ours, theirs, "{name}'s pools (nested included)");

        if let Some(cables) = want.get("cables") {
            let ours = set(c
                .json(&["port", "list", name])
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| !p["connectedTo"].is_null())
                .map(|p| {
                    let to = p["connectedTo"].as_str().unwrap();
                    let (peer, port) = to.split_once(':').unwrap();
                    json!([p["port"], peer, port]).to_string()
                }));
            let theirs = set(cables.as_array().unwrap().iter().map(|x| x.to_string()));
            assert_eq!(ours, theirs, "{name}'s cables");
        }

        let located = c.json(&["locate", name]);
        let rack = located
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l.get("rack").is_some());
        match want.get("rack") {
            Some(r) => {
                let l = rack.unwrap_or_else(|| panic!("{name} is in no rack: {located}"));
                assert_eq!(l["rack"], r[0], "{name}'s rack");
                let units: Vec<i64> = r[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_i64().unwrap())
                    .collect();
                let ru = match (units.first(), units.last()) {
                    (Some(a), Some(b)) if a == b => a.to_string(),
                    (Some(a), Some(b)) => format!("{a}-{b}"),
                    _ => unreachable!(),
                };
                assert_eq!(l["ru"], ru.as_str(), "{name}'s units");
            }
            None => assert!(rack.is_none(), "{name} should be in no rack: {located}"),
        }
    }

    // Addresses: every one the original handed out, with its holder and OS port.
    let ours = set(c
        .json(&["ip", "list", "net-10"])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| json!([a["holder"], a["address"]]).to_string()));
    let theirs = set(answers.iter().flat_map(|(n, a)| {
        a.get("ips")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(move |ip| json!([n, ip]).to_string())
    }));
    assert_eq!(ours, theirs, "addresses");
    let net = &c.json(&["get", "ipmanager", "net-10"])["spec"];
    assert_eq!(net["cidr"], "10.0.0.0/24");
    assert_eq!(net["gateway"], "10.0.0.1");
    // Pool kinds keep their rules.
    assert_eq!(
        c.json(&["get", "pool", "unallocated"])["spec"]["type"],
        "exclusive"
    );
    assert_eq!(c.json(&["get", "pool", "role-a"])["spec"]["type"], "unique");
    // The name manager goes on from the original's counter.
    let name = c.ok(&["name", "allocate", "servernames", "--kind", "server"]);
    assert_eq!(name.trim(), "s0016");
    c.ok(&["fsck"]);
}

async fn imports_like_the_original(backend: &str) {
    let original_url = clusto_store::testing::fresh_url(backend).await.unwrap();
    imports_from(&original_url, backend).await;
}

async fn imports_from(original_url: &str, backend: &str) {
    let original_url = original_url.to_string();
    let answers = build_original(&dsn(&original_url));
    let c = Clusto::fresh(backend).await;
    let out = c.ok(&["import", "clusto", &original_url]);
    // 18 entities and the 2U driver the power strip across units 43-44 needs.
    assert!(out.contains("Imported 19 objects"), "{out}");
    assert!(out.contains("0 item(s) not imported"), "{out}");
    let h = c.json(&["history", "--limit", "0"]);
    assert_eq!(h["items"].as_array().unwrap().len(), 1, "one revision");
    compare(&c, &answers);
    // Importing again changes nothing.
    let again = c.ok(&["import", "clusto", &original_url]);
    assert!(again.contains("revision none"), "{again}");

    // With its history: the original's versions become revisions with their
    // user and time; the deleted server lived and went; the end state is
    // the same.
    let h = Clusto::fresh(backend).await;
    let out = h.ok(&["import", "clusto", &original_url, "--with-history"]);
    assert!(out.contains("with their history"), "{out}");
    compare(&h, &answers);
    let revs = h.json(&["history", "--limit", "0"])["items"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        revs.len() > 50,
        "one revision per changing version: {}",
        revs.len()
    );
    let versions = answers["_versions"].as_array().unwrap();
    let times: BTreeSet<String> = versions
        .iter()
        .map(|v| v[1].as_str().unwrap().to_string())
        .collect();
    // (compare() allocated a name afterwards, as the CLI)
    for r in revs.iter().filter(|r| r["manager"] == "applyset:import") {
        assert_eq!(r["user"], "ops-alice", "{r}");
        let t = r["time"].as_str().unwrap();
        assert!(
            times.contains(&t[..19]),
            "revision time {t} is an original version's"
        );
    }
    let gone = h.json(&["history", "gone"])["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(gone.len(), 3, "created, racked, deleted: {gone:?}");
    h.ok(&["fsck"]);
}

#[tokio::test]
async fn import_from_the_original_on_sqlite() {
    imports_like_the_original("sqlite").await;
}

#[tokio::test]
async fn import_from_the_original_on_postgres() {
    imports_like_the_original("postgres").await;
}

/// The original on MariaDB (its most common home), into a SQLite store.
#[tokio::test]
async fn import_from_the_original_on_mariadb() {
    imports_from(&fresh_mysql(), "sqlite").await;
}

/// `--out` writes manifests that `clusto apply` records as the import would,
/// and a database that is not the original's is a clear error that changes
/// nothing.
#[tokio::test]
async fn manifests_out_and_errors() {
    let original_url = clusto_store::testing::fresh_url("sqlite").await.unwrap();
    let answers = build_original(&dsn(&original_url));
    let dir = std::env::temp_dir().join(format!("clusto-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let c = Clusto::fresh("sqlite").await;
    let r = c.run(&[
        "import",
        "clusto",
        &original_url,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, vec!["dc1.yaml", "other.yaml"]);
    assert_eq!(
        c.json(&["get", "all"])["items"],
        json!([]),
        "--out writes no store"
    );
    c.ok(&["apply", "-f", dir.to_str().unwrap()]);
    compare(&c, &answers);
    let _ = std::fs::remove_dir_all(&dir);

    // Our own store is not an original clusto database.
    let other = Clusto::fresh("sqlite").await;
    let e = other.fail(&["import", "clusto", &c.store]);
    assert!(
        e.contains("does not look like an original clusto database"),
        "{e}"
    );
    assert_eq!(other.json(&["get", "all"])["items"], json!([]));
    let e = other.fail(&["import", "clusto", "sqlite:///nonexistent/dir/x.db"]);
    assert!(
        e.starts_with("cannot open the original clusto database"),
        "{e}"
    );
}
