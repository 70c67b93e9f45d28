//! Secrets never enter the store. One run uses every secret clusto is
//! given — EC2 keys (the controller against moto), SNMPv3 passphrases
//! (snmptrapd discovering a server from net-snmp's snmptrap), an API token
//! (`clusto serve`, an apply through the API) and a BMC password (the
//! power controller against ipmi_sim) — each doing a write, then the
//! SQLite database and its WAL are scanned byte for byte for every one of
//! them (free pages included, so nothing written and deleted hides).

mod common;
mod sims;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Clusto;

const AWS_KEY_ID: &str = "AKIACLUSTOSECRETSCAN1";
const AWS_SECRET: &str = "aws-secret-3f9c1e77d2b84a06b5e1";
const SNMP_AUTH: &str = "snmp-auth-5a1d0c9e4b";
const SNMP_PRIV: &str = "snmp-priv-8e2f7a3c61";
const API_TOKEN: &str = "api-token-c4d2b9e0f1a37658";
/// tests/oob/bmc-sim.sh's operator password.
const BMC_PASSWORD: &str = "operpw";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < Duration::from_secs(60), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn moto() -> (Proc, String) {
    let bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| {
        format!(
            "{}/.cache/moto-venv/bin/moto_server",
            std::env::var("HOME").unwrap()
        )
    });
    let port = free_port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin} (bash .ci/run installs it): {e}"));
    wait_for("moto did not start", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (Proc(child), format!("http://127.0.0.1:{port}"))
}

/// The discovery fixture, its switch moved to loopback (127.0.0.2).
fn discovery_world() -> String {
    let text = include_str!("../crates/clusto-snmp/tests/data/discovery.yaml");
    text.replace(
        "cidr: 10.0.0.0/24, gateway: 10.0.0.1",
        "cidr: 127.0.0.0/24, gateway: 127.0.0.1",
    )
    .replace("10.0.0.", "127.0.0.")
}

#[tokio::test]
async fn no_secret_reaches_the_store() {
    let c = Clusto::fresh("sqlite").await;
    let dir = std::env::temp_dir().join(format!("clusto-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // 1. EC2: the controller creates a VM in moto with keys from a file.
    let (_moto, url) = moto();
    let creds = dir.join("aws");
    std::fs::write(
        &creds,
        format!("[lab]\naws_access_key_id = {AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n"),
    )
    .unwrap();
    let bmc = sims::bmc([127, 0, 0, 93].into());
    let extra = format!(
        r#"apiVersion: clusto.dev/v1alpha1
kind: VMManager
metadata: {{name: aws}}
spec:
  backend: ec2
  ec2: {{region: us-east-1, endpoint: "{url}", credentialsFile: "{}", profile: lab}}
---
apiVersion: clusto.dev/v1alpha1
kind: VirtualMachine
metadata: {{name: vm1}}
spec: {{manager: aws, instanceType: t3.micro, image: ami-1e749f67}}
---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {{name: bmc1}}
spec:
  powerState: "On"
  addresses: [{{manager: mgmt, address: 127.0.0.93, osPort: ipmi}}]
  attrs:
    - {{key: ipmi, subkey: port, value: {}}}
    - {{key: ipmi, subkey: credentials, value: "env:SCAN_BMC"}}
"#,
        creds.display(),
        bmc.addr.port()
    );
    let world = format!("{}\n---\n{extra}", discovery_world());
    let f = dir.join("world.yaml");
    std::fs::write(&f, world).unwrap();
    c.ok(&["apply", "-f", f.to_str().unwrap()]);
    // 2. The BMC: the power controller switches it on in the same pass.
    let out = c
        .cmd()
        .args(["controller", "--once", "--lease-ttl", "2"])
        .env("SCAN_BMC", format!("oper:{BMC_PASSWORD}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.json(&["get", "virtualmachine", "vm1"])["status"]["phase"],
        "Running"
    );
    assert_eq!(bmc.state("power"), "1");
    assert_eq!(
        c.json(&["get", "server", "bmc1"])["status"]["powerState"],
        "On"
    );

    // 3. SNMPv3: snmptrapd discovers a server from an authPriv trap.
    let users = dir.join("v3-users");
    std::fs::write(
        &users,
        format!("createUser alice SHA-256 {SNMP_AUTH} AES {SNMP_PRIV}\n"),
    )
    .unwrap();
    let trap_port = free_port();
    let listen = format!("127.0.0.91:{trap_port}");
    let _trapd = Proc(
        c.cmd()
            .args(["snmptrapd", "--listen", &listen, "--v3-users"])
            .arg(&users)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let before = c.json(&["get", "servers"])["items"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    wait_for("snmptrapd did not discover the server", || {
        let _ = Command::new("snmptrap")
            .args([
                "-m", "", "-v", "3", "-r", "0", "-t", "1", "-u", "alice", "-l", "authPriv", "-a",
                "SHA-256",
            ])
            .args([
                "-A",
                SNMP_AUTH,
                "-x",
                "AES",
                "-X",
                SNMP_PRIV,
                "-e",
                "0x8000000001020304",
                "--clientaddr=127.0.0.2",
            ])
            .args([
                &listen,
                "",
                "1.3.6.1.4.1.9.9.215.2.0.1",
                "1.3.6.1.4.1.9.9.215.1.1.8.1.2.1",
                "x",
                "01000A02770000000A0001",
            ])
            .output();
        c.json(&["get", "servers"])["items"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
            > before
    });

    // 4. The API: an apply with a bearer token.
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("{API_TOKEN},ops,editor\n")).unwrap();
    let mut serve = c
        .cmd()
        .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(&tokens)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stderr.take().unwrap()).lines();
    let base = loop {
        let l = lines.next().expect("serve exited").unwrap();
        if let Some(u) = l.strip_prefix("clusto serve: listening on ") {
            break u.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let _serve = Proc(serve);
    let m = "apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: via-api}\nspec: {rack: r2, ru: 30}\n";
    let out = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {API_TOKEN}"),
        ])
        .args(["-H", "Content-Type: application/yaml", "--data-binary", m])
        .arg(format!(
            "{base}/apis/clusto.dev/v1alpha1/apply?applySet=api"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        c.json(&["get", "server", "via-api"])["metadata"]["name"],
        "via-api"
    );

    // 5. The scan: every byte the store holds.
    let db = c.store.trim_start_matches("sqlite://").to_string();
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        if let Ok(b) = std::fs::read(format!("{db}{suffix}")) {
            bytes.extend(b);
        }
    }
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"via-api") && has(b"vm1"), "the scan reads the store");
    // A community is an inventory attribute by design (as in the original):
    // the scan finds it, so it would find the others.
    assert!(has(b"s3cret"), "the scan sees attribute values");
    for secret in [
        AWS_KEY_ID,
        AWS_SECRET,
        SNMP_AUTH,
        SNMP_PRIV,
        API_TOKEN,
        BMC_PASSWORD,
    ] {
        assert!(!has(secret.as_bytes()), "{secret} is in the store");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
