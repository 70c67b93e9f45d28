//! The VM controller against a real `libvirtd` with `qemu:///system`
//! (started by `.ci/run`): a tiny domain (64 MiB, no OS, no NIC) is
//! defined, started, stopped, repaired after drift and destroyed, by the
//! `clusto controller --once` binary. Checked with `virsh`.

mod common;

use std::process::Command;

use common::Clusto;

const URI: &str = "qemu:///system";

fn virsh(args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .expect("virsh (bash .ci/run installs libvirt-clients)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .trim()
        .to_string(),
    )
}

/// A transient directory pool for this test; removed with what is in it.
struct Pool {
    name: String,
    dir: std::path::PathBuf,
    domain: String,
}

impl Pool {
    fn new() -> Pool {
        let name = format!("clusto-t-{}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let (ok, out) = virsh(&[
            "pool-create-as",
            &name,
            "dir",
            "--target",
            dir.to_str().unwrap(),
        ]);
        assert!(
            ok,
            "pool-create-as (is libvirtd running? .ci/run starts it): {out}"
        );
        Pool {
            domain: format!("{name}-vm"),
            name,
            dir,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        virsh(&["destroy", &self.domain]);
        virsh(&["undefine", &self.domain]);
        virsh(&["pool-destroy", &self.name]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn domstate(d: &str) -> String {
    virsh(&["domstate", d]).1
}

#[tokio::test]
async fn real_libvirtd_define_start_stop_repair_destroy() {
    let pool = Pool::new();
    let c = Clusto::fresh("sqlite").await;
    let f = pool.dir.join("lab.yaml");
    std::fs::write(
        &f,
        format!(
            r#"
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {{name: localhv}}
spec:
  attrs:
    - {{key: system, subkey: memory, value: 1024}}
    - {{key: system, subkey: disk, value: 10}}
    - {{key: system, subkey: cpucount, value: 2}}
    - {{key: libvirt, subkey: uri, value: "{URI}"}}
---
apiVersion: clusto.dev/v1alpha1
kind: VMManager
metadata: {{name: local}}
spec:
  backend: libvirt
  libvirt: {{pool: {pool}}}
  hosts: [localhv]
---
apiVersion: clusto.dev/v1alpha1
kind: VirtualMachine
metadata: {{name: {vm}}}
spec:
  manager: local
  cpus: 1
  memoryMiB: 64
  diskGiB: 1
  attrs:
    - {{key: libvirt, subkey: domain-type, value: qemu}}
"#,
            pool = pool.name,
            vm = pool.domain
        ),
    )
    .unwrap();
    c.ok(&["apply", "-f", f.to_str().unwrap()]);
    let once = || c.ok(&["controller", "--once", "--lease-ttl", "2"]);
    let vm = pool.domain.as_str();

    once();
    assert_eq!(domstate(vm), "running");
    let st = c.json(&["get", "VirtualMachine", vm])["status"].clone();
    assert_eq!(st["phase"], "Running", "{st}");
    let uuid = virsh(&["domuuid", vm]).1;
    assert_eq!(st["backendId"], uuid.as_str());
    let vols = virsh(&["vol-list", &pool.name]).1;
    assert!(vols.contains(&format!("clusto-{uuid}.qcow2")), "{vols}");

    // Powered off out of band: repaired.
    assert!(virsh(&["destroy", vm]).0);
    once();
    assert_eq!(domstate(vm), "running");

    // Stopped through clusto.
    c.ok(&["vm", "stop", vm]);
    once();
    assert_eq!(domstate(vm), "shut off");
    assert_eq!(
        c.json(&["get", "VirtualMachine", vm])["status"]["phase"],
        "Stopped"
    );

    // The console command names the hypervisor's URI.
    let con = c.ok(&["vm", "console", vm]);
    assert_eq!(con.trim(), format!("virsh -c {URI} console {vm}"));

    // Deleted: domain and volume go, then the object.
    c.ok(&["vm", "delete", vm]);
    once();
    assert!(!virsh(&["dominfo", vm]).0, "domain still defined");
    let vols = virsh(&["vol-list", &pool.name]).1;
    assert!(!vols.contains("clusto-"), "{vols}");
    c.fail(&["get", "VirtualMachine", vm]);
}
