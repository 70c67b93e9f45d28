//! The web UI in a real browser: Debian's chromium driven by
//! playwright-core (tests/ui/ui.mjs) against `clusto serve` over a store
//! built here. The script searches, opens a server, opens its rack and
//! checks every device is drawn at its units (front and rear), sees a
//! change arrive from the watch stream, and previews a plan; screenshots
//! land in the target directory (`tmp/ui-screenshots`).

mod common;

use std::path::Path;
use std::process::Command;

use common::{Clusto, EDITOR, VIEWER, serve};
use serde_json::json;

fn build(c: &Clusto) {
    c.ok(&["create", "datacenter", "dc1"]);
    c.ok(&["attr", "set", "dc1", "owner", "ops"]);
    c.ok(&["create", "rack", "r1", "--in", "dc1"]);
    c.ok(&[
        "create",
        "driver",
        "big",
        "--set",
        "base=server",
        "--set",
        "rackUnits=2",
    ]);
    c.ok(&["create", "server", "web1", "--in", "r1", "--ru", "3"]);
    c.ok(&[
        "create", "server", "db1", "--driver", "big", "--in", "r1", "--ru", "10",
    ]);
    c.ok(&["create", "networkswitch", "sw1", "--in", "r1", "--ru", "45"]);
    c.ok(&["create", "powerstrip", "pdu1", "--in", "r1", "--ru", "30"]);
    // A half-depth strip at the back, and a switch facing the rear.
    c.ok(&["attr", "set", "pdu1", "rack.face", "rear"]);
    c.ok(&["attr", "set", "pdu1", "rack.depth", "half"]);
    c.ok(&["create", "networkswitch", "sw2", "--in", "r1", "--ru", "44"]);
    c.ok(&["attr", "set", "sw2", "rack.face", "rear"]);
    c.ok(&["connect", "web1:nic-eth:1", "sw1:nic-eth:3"]);
    c.ok(&[
        "create",
        "ipmanager",
        "net1",
        "--set",
        "cidr=10.2.0.0/24",
        "--set",
        "gateway=10.2.0.1",
    ]);
    c.ok(&["ip", "allocate", "net1", "web1"]);
    c.ok(&["create", "pool", "web"]);
    c.ok(&["insert", "web", "web1"]);
}

#[tokio::test]
async fn a_technician_finds_a_server_and_its_rack_in_the_browser() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ui");
    assert!(
        ui.join("node_modules/playwright-core").exists(),
        "run `bash .ci/deps test` (npm ci in tests/ui) first"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "run `bash .ci/deps test` (Debian's chromium) first"
    );
    let c = Clusto::fresh("sqlite").await;
    build(&c);
    let s = serve(&c, &[]);
    let elevation = c.json(&["rack", "show", "r1"]);
    let web1 = c.json(&["get", "server", "web1"]);
    let address = web1["status"]["addresses"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let expect = json!({
        "rack": "r1",
        "elevation": elevation,
        "server": "web1",
        "freeUnit": 20,
        "ipUsed": 1,
        "ipCapacity": 253,
        // Merged from the datacenter, the cable, the address, the pool, history.
        "entityShows": ["owner", "ops", "dc1", "sw1", ":nic-eth:3", address, "net1", "web", "create Server web1"],
    });
    let dir = std::env::temp_dir().join(format!("clusto-ui-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let expect_file = dir.join("expect.json");
    std::fs::write(&expect_file, expect.to_string()).unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let out = Command::new("node")
        .arg(ui.join("ui.mjs"))
        .current_dir(&ui)
        .env("CLUSTO_URL", &s.url)
        .env("VIEWER", VIEWER)
        .env("EDITOR", EDITOR)
        .env("EXPECT", &expect_file)
        .env("SHOTS", &shots)
        .output()
        .expect("run node");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["ok"], true);
    for shot in ["home", "server", "rack", "rack-rear", "plan"] {
        let png = shots.join(format!("{shot}.png"));
        let len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(len > 5_000, "{} is {len} bytes", png.display());
    }
    eprintln!(
        "live change drawn after {} ms; screenshots in {}",
        report["liveMs"],
        shots.display()
    );
}
