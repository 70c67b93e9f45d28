//! The container image, built by image/build.sh (umoci, no daemon) and run
//! with runc: `clusto --version`, then `clusto dhcpd` from the image —
//! non-root, read-only root filesystem, NET_BIND_SERVICE as its only
//! capability, as the Helm chart runs it — answering ISC dhclient in a
//! network namespace. Needs root, umoci, runc (.ci/deps installs them).

mod common;
mod netns;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Clusto;
use netns::{Netns, ok};
use serde_json::{Value, json};

/// An unpacked image (an OCI runtime bundle) and the container run from
/// it, deleted when dropped.
struct Bundle {
    dir: PathBuf,
    id: String,
}

impl Bundle {
    fn unpack(image: &str, dir: PathBuf, id: &str) -> Bundle {
        let _ = std::fs::remove_dir_all(&dir);
        ok(&["umoci", "unpack", "--image", image, dir.to_str().unwrap()]);
        Bundle { dir, id: id.into() }
    }

    fn edit(&self, f: impl FnOnce(&mut Value)) {
        let path = self.dir.join("config.json");
        let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["process"]["terminal"] = json!(false);
        f(&mut config);
        std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    }

    /// The uid the container's process runs as (from the image's config).
    fn user(&self) -> u64 {
        let config: Value =
            serde_json::from_slice(&std::fs::read(self.dir.join("config.json")).unwrap()).unwrap();
        config["process"]["user"]["uid"].as_u64().unwrap_or(0)
    }

    fn runc(&self, args: &[&str]) -> Command {
        let mut c = Command::new("runc");
        c.args(args).arg("--bundle").arg(&self.dir).arg(&self.id);
        c
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.id])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const NET: &str = r#"apiVersion: clusto.dev/v1alpha1
kind: IPManager
metadata: {name: img-net}
spec: {cidr: 10.77.0.0/24, gateway: 10.77.0.1}
---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {name: img-s1}
spec:
  ports:
    - {port: "nic-eth:1", mac: "02:77:00:00:00:01", osPort: eth0}
  addresses:
    - {address: 10.77.0.30, manager: img-net, osPort: eth0, port: "nic-eth:1"}
  attrs:
    dhcp: {enabled: true}
"#;

fn build_image(dir: &Path) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../image/build.sh");
    let out = Command::new("bash")
        .arg(script)
        .args([
            "--binary",
            env!("CARGO_BIN_EXE_clusto"),
            "--tag",
            "test",
            "--out",
        ])
        .arg(dir.join("oci"))
        .output()
        .expect("run image/build.sh");
    assert!(
        out.status.success(),
        "image/build.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_image_runs_clusto_and_dhcpd_answers_from_it() {
    let tmp = std::env::temp_dir().join(format!("clusto-image-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let image = build_image(&tmp);
    let id = format!("clusto-t-{}", std::process::id());

    let version = Bundle::unpack(&image, tmp.join("version"), &format!("{id}-v"));
    version.edit(|c| c["process"]["args"] = json!(["/usr/local/bin/clusto", "--version"]));
    let out = version.runc(&["run"]).output().expect("runc run");
    assert!(
        out.status.success(),
        "runc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("clusto {}", env!("CARGO_PKG_VERSION"))
    );

    // The store on a volume the image's user owns.
    let data = tmp.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let c = Clusto {
        store: format!("sqlite://{}/clusto.db", data.display()),
    };
    std::fs::write(tmp.join("net.yaml"), NET).unwrap();
    c.ok(&["apply", "-f", tmp.join("net.yaml").to_str().unwrap()]);
    ok(&["chown", "-R", "65532:65532", data.to_str().unwrap()]);

    let n = Netns::up();
    let dhcpd = Bundle::unpack(&image, tmp.join("dhcpd"), &format!("{id}-d"));
    let vsrv = n.vsrv.clone();
    let netns_path = format!("/var/run/netns/{}", n.srv);
    let data_dir = data.display().to_string();
    dhcpd.edit(|c| {
        c["process"]["args"] = json!([
            "/usr/local/bin/clusto",
            "dhcpd",
            "--interface",
            vsrv,
            "--server-id",
            "10.77.0.1",
            "--refresh-ms",
            "100"
        ]);
        let caps = json!(["CAP_NET_BIND_SERVICE"]);
        c["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps,
        });
        c["process"]["noNewPrivileges"] = json!(true);
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("CLUSTO_LOG=info"));
        c["root"]["readonly"] = json!(true);
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!(netns_path);
            }
        }
        c["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/data", "type": "bind", "source": data_dir,
                         "options": ["rbind", "rw"]}),
        );
    });
    assert_eq!(dhcpd.user(), 65532, "the image runs as its non-root user");
    let log = std::fs::File::create(tmp.join("dhcpd.log")).unwrap();
    let status = dhcpd
        .runc(&["run", "--detach"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .expect("runc run --detach");
    assert!(status.success(), "runc run dhcpd");
    std::thread::sleep(Duration::from_millis(500));
    let bound = n.dhclient();
    let log = std::fs::read_to_string(tmp.join("dhcpd.log")).unwrap_or_default();
    let bound = bound
        .unwrap_or_else(|| panic!("dhclient got no lease from the container; its log:\n{log}"));
    assert!(bound.contains("ip=10.77.0.30"), "{bound}");
    assert!(bound.contains("router=10.77.0.1"), "{bound}");
    let _ = Command::new("runc")
        .args(["kill", &dhcpd.id, "KILL"])
        .output();
    drop(dhcpd);
    drop(n);
    let _ = std::fs::remove_dir_all(&tmp);
}
