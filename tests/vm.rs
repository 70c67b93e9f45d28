//! The VM controller against libvirt's in-process test driver
//! (`test:///default`, real libvirt, no daemon). The controller runs in
//! this process (the test driver's state lives in the process that opens
//! it); desired state is written with the real `clusto` binary.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clusto_cli::backends::Backends;
use clusto_core::Kind;
use clusto_store::Store;
use clusto_vm::{Controller, Options};
use common::{Clusto, converge, ready};

/// How long the controller may take to converge in these tests.
const LIMIT: Duration = Duration::from_secs(30);
use serde_json::Value as Json;

const MANIFEST: &str = r#"
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {name: hv1}
spec:
  attrs:
    - {key: system, subkey: memory, value: 4096}
    - {key: system, subkey: disk, value: 100}
    - {key: system, subkey: cpucount, value: 4}
---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {name: hv2}
spec:
  attrs:
    - {key: system, subkey: memory, value: 8192}
    - {key: system, subkey: disk, value: 100}
    - {key: system, subkey: cpucount, value: 8}
---
apiVersion: clusto.dev/v1alpha1
kind: NameManager
metadata: {name: vmnames}
spec: {basename: lab-vm, digits: 2}
---
apiVersion: clusto.dev/v1alpha1
kind: VMManager
metadata: {name: lab}
spec:
  backend: libvirt
  libvirt: {uri: "test:///default", pool: default-pool}
  hosts: [hv1, hv2]
  names: vmnames
---
apiVersion: clusto.dev/v1alpha1
kind: VirtualMachine
metadata: {name: web1}
spec: {manager: lab, cpus: 2, memoryMiB: 2048, diskGiB: 10}
---
apiVersion: clusto.dev/v1alpha1
kind: VirtualMachine
metadata: {name: db1}
spec: {manager: lab, cpus: 1, memoryMiB: 3072, diskGiB: 20, powerState: Stopped}
"#;

fn opts(holder: &str) -> Options {
    Options {
        poll: Duration::from_millis(20),
        recheck: Duration::from_millis(20),
        lease_ttl: Duration::from_secs(2),
        holder: holder.into(),
        ..Options::default()
    }
}

async fn setup() -> (Clusto, Store, tempdir::Dir) {
    setup_on("sqlite").await
}

async fn setup_on(backend: &str) -> (Clusto, Store, tempdir::Dir) {
    let c = Clusto::fresh(backend).await;
    let dir = tempdir::Dir::new("vm");
    let f = dir.path().join("lab.yaml");
    std::fs::write(&f, MANIFEST).unwrap();
    c.ok(&["apply", "-f", f.to_str().unwrap()]);
    let store = Store::open(&c.store).await.unwrap();
    (c, store, dir)
}

async fn controller(store: &Store, holder: &str) -> Controller {
    Controller::new(store.clone(), Arc::new(Backends::new()), opts(holder))
        .await
        .unwrap()
}

fn libvirt() -> virt::connect::Connect {
    virt::error::clear_error_callback();
    virt::connect::Connect::open(Some("test:///default")).unwrap()
}

fn status(c: &Clusto, name: &str) -> Json {
    c.json(&["get", "VirtualMachine", name])["status"].clone()
}

/// Our domains (UUID = object uid) by name.
fn domains(conn: &virt::connect::Connect) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = conn
        .list_all_domains(0)
        .unwrap()
        .into_iter()
        .filter(|d| d.name().unwrap() != "test")
        .map(|d| (d.name().unwrap(), d.is_active().unwrap()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libvirt_lifecycle_drift_resize_and_delete() {
    let conn = libvirt();
    let (c, store, _dir) = setup().await;
    let mut ctl = controller(&store, "a").await;
    converge(&mut ctl, LIMIT).await;

    // Created as placed: web1 running, db1 defined but stopped.
    assert_eq!(
        domains(&conn),
        vec![("db1".to_string(), false), ("web1".to_string(), true)]
    );
    let web = status(&c, "web1");
    assert_eq!(web["phase"], "Running");
    assert_eq!(web["powerState"], "Running");
    let (ok, reason, _) = ready(&web);
    assert_eq!((ok.as_str(), reason.as_str()), ("True", "Running"));
    let uid = web["backendId"].as_str().unwrap().to_string();
    let d = conn.lookup_domain_by_uuid_string(&uid).unwrap();
    assert_eq!(d.name().unwrap(), "web1");
    assert_eq!(d.info().unwrap().max_mem, 2048 * 1024);
    assert_eq!(d.info().unwrap().nr_virt_cpu, 2);
    let xml = d.xml_desc(0).unwrap();
    assert!(xml.contains("clusto-") && xml.contains(".qcow2"), "{xml}");
    assert!(web["observedRevision"].as_i64().is_some());
    assert_eq!(status(&c, "db1")["phase"], "Stopped");
    // Best fit puts one on the smaller hv1; the other no longer fits there.
    let hosts = [
        status(&c, "web1")["host"].clone(),
        status(&c, "db1")["host"].clone(),
    ];
    assert!(
        hosts.contains(&Json::from("hv1")) && hosts.contains(&Json::from("hv2")),
        "{hosts:?}"
    );
    // The disk volume exists in the pool.
    let pool = conn.lookup_storage_pool_by_name("default-pool").unwrap();
    assert!(
        pool.lookup_storage_vol_by_name(&format!("clusto-{uid}.qcow2"))
            .is_ok()
    );

    // A no-op resync: every VM looked at, one listing per host, no write.
    let head = store.head().await.unwrap();
    ctl.resync_now();
    let r = ctl.tick().await.unwrap();
    assert_eq!(r.reconciled, 2);
    assert!(!r.wrote, "{r:?}");
    assert_eq!(r.calls, 2, "one list per hypervisor: {r:?}");
    assert_eq!(store.head().await.unwrap(), head);

    // Drift: web1 powered off out of band is started again at resync.
    d.destroy().unwrap();
    ctl.resync_now();
    converge(&mut ctl, LIMIT).await;
    assert!(d.is_active().unwrap(), "drift repaired");

    // Drift: web1 undefined out of band is defined again, same UUID.
    d.destroy().unwrap();
    d.undefine().unwrap();
    ctl.resync_now();
    converge(&mut ctl, LIMIT).await;
    let d = conn.lookup_domain_by_uuid_string(&uid).unwrap();
    assert!(d.is_active().unwrap());

    // Stop, resize while stopped, start: the new size is in the domain.
    c.ok(&["vm", "stop", "web1"]);
    converge(&mut ctl, LIMIT).await;
    assert!(!d.is_active().unwrap());
    assert_eq!(status(&c, "web1")["phase"], "Stopped");
    c.ok(&["vm", "set", "web1", "memoryMiB", "1536"]);
    converge(&mut ctl, LIMIT).await;
    assert_eq!(d.info().unwrap().max_mem, 1536 * 1024);
    c.ok(&["vm", "start", "web1"]);
    converge(&mut ctl, LIMIT).await;
    assert!(d.is_active().unwrap());
    assert_eq!(ready(&status(&c, "web1")).0, "True");

    // Resizing a running domain records it and says when it applies.
    c.ok(&["vm", "set", "web1", "cpus", "3"]);
    converge(&mut ctl, LIMIT).await;
    let st = status(&c, "web1");
    let (ok, reason, _) = ready(&st);
    assert_eq!((ok.as_str(), reason.as_str()), ("False", "BackendRefused"));
    assert!(
        d.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
            .unwrap()
            .contains("<vcpu placement='static'>3</vcpu>")
            || d.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
                .unwrap()
                .contains(">3</vcpu>")
    );

    // Delete: the object waits (Terminating) until the domain and its
    // volume are gone, then goes.
    c.ok(&["vm", "delete", "db1"]);
    let db = c.json(&["vm", "list"]);
    assert!(db.to_string().contains("db1"));
    converge(&mut ctl, LIMIT).await;
    assert_eq!(domains(&conn), vec![("web1".to_string(), true)]);
    c.fail(&["get", "VirtualMachine", "db1"]);
    let vols = pool.list_volumes().unwrap();
    assert_eq!(
        vols.iter().filter(|v| v.starts_with("clusto-")).count(),
        1,
        "{vols:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_and_crash_adopt_without_duplicates() {
    let conn = libvirt();
    let (c, store, _dir) = setup().await;
    // A VM created by `clusto vm create`, named by the manager's NameManager.
    let name = c.ok(&[
        "vm",
        "create",
        "--manager",
        "lab",
        "--memory",
        "512",
        "--disk",
        "5",
    ]);
    assert_eq!(name.trim(), "lab-vm00");

    // Crash between the backend's create and the status write: the domain
    // exists, the inventory knows nothing of it.
    let inv = store.load(None).await.unwrap();
    let id = inv.id_of("lab-vm00").unwrap();
    let d = inv.vm_desired(id).unwrap();
    let uid = clusto_core::vm::vm_uid(&store.uid().await.unwrap(), id);
    let (scope, cfg) = clusto_vm::scope_of(&inv, &d).unwrap();
    let backend = clusto_vm::Provider::backend(&Backends::new(), &cfg).unwrap();
    backend
        .create(
            &scope,
            clusto_vm::CreateRequest {
                vm: &d,
                uid: &uid,
                store_uid: &store.uid().await.unwrap(),
            },
        )
        .await
        .unwrap();
    assert_eq!(domains(&conn).len(), 1);

    // First controller: adopts it, creates the other two, then dies
    // without releasing its lease.
    let mut a = controller(&store, "a").await;
    converge(&mut a, LIMIT).await;
    assert_eq!(domains(&conn).len(), 3);
    assert_eq!(status(&c, "lab-vm00")["backendId"], uid.as_str());
    drop(a);

    // A second controller with another identity waits for the lease to
    // expire, then takes over and finds nothing to do.
    let mut b = controller(&store, "b").await;
    let r = b.tick().await.unwrap();
    assert!(!r.leader, "the dead holder's lease is still live");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let head = store.head().await.unwrap();
    converge(&mut b, LIMIT).await;
    assert_eq!(domains(&conn).len(), 3, "no duplicate");
    assert_eq!(store.head().await.unwrap(), head, "no write after takeover");
    assert_eq!(
        store
            .lease_holder("vm-controller")
            .await
            .unwrap()
            .unwrap()
            .0,
        "b"
    );

    // While b holds the lease, another controller does nothing.
    let mut c2 = controller(&store, "c").await;
    assert!(!c2.tick().await.unwrap().leader);
    b.release().await.unwrap();
    assert!(
        c2.tick().await.unwrap().leader,
        "released lease is free at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libvirt_errors_show_in_status_and_change_nothing() {
    let conn = libvirt();
    let (c, store, dir) = setup().await;
    // An image volume the pool does not have; a manager without a URI.
    let f = dir.path().join("bad.yaml");
    std::fs::write(
        &f,
        r#"
apiVersion: clusto.dev/v1alpha1
kind: VirtualMachine
metadata: {name: imaged}
spec: {manager: lab, memoryMiB: 256, diskGiB: 1, image: no-such-image}
---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {name: hv9}
spec:
  attrs:
    - {key: system, subkey: memory, value: 4096}
    - {key: system, subkey: disk, value: 100}
    - {key: system, subkey: cpucount, value: 4}
---
apiVersion: clusto.dev/v1alpha1
kind: VMManager
metadata: {name: nouri}
spec: {backend: libvirt, hosts: [hv9]}
---
apiVersion: clusto.dev/v1alpha1
kind: VirtualMachine
metadata: {name: orphan}
spec: {manager: nouri, memoryMiB: 256, diskGiB: 1}
"#,
    )
    .unwrap();
    c.ok(&["apply", "-f", f.to_str().unwrap()]);
    let mut ctl = controller(&store, "a").await;
    converge(&mut ctl, LIMIT).await;
    let st = status(&c, "imaged");
    assert_eq!(st["phase"], "Failed");
    let (ok, reason, _) = ready(&st);
    assert_eq!((ok.as_str(), reason.as_str()), ("False", "BackendRefused"));
    assert!(
        st["conditions"].to_string().contains("no-such-image"),
        "{st}"
    );
    let st = status(&c, "orphan");
    assert_eq!(ready(&st).1, "Unschedulable");
    assert!(st["conditions"].to_string().contains("libvirt.uri"), "{st}");
    assert!(
        !domains(&conn)
            .iter()
            .any(|(n, _)| n == "imaged" || n == "orphan")
    );
    // A refused VM is not retried in a loop: nothing is due soon.
    assert!(ctl.next_due() > Instant::now() + Duration::from_secs(60));
    // A VM no controller has seen is deleted at once; one the controller
    // has seen but that never got a domain goes at its next reconcile.
    c.ok(&[
        "vm",
        "create",
        "--manager",
        "lab",
        "--name",
        "quick",
        "--memory",
        "64",
        "--disk",
        "1",
    ]);
    c.ok(&["vm", "delete", "quick"]);
    c.fail(&["get", "VirtualMachine", "quick"]);
    c.ok(&["vm", "delete", "orphan"]);
    assert_eq!(status(&c, "orphan")["phase"], "Failed");
    let l = c.ok(&["vm", "list"]);
    assert!(
        l.lines()
            .any(|x| x.starts_with("orphan") && x.contains("Terminating")),
        "{l}"
    );
    converge(&mut ctl, LIMIT).await;
    c.fail(&["get", "VirtualMachine", "orphan"]);
    // Bad CLI input: not a VM, unknown manager, pin outside the manager.
    assert!(
        c.fail(&["vm", "start", "hv1"])
            .contains("not a VirtualMachine")
    );
    assert!(
        c.fail(&["vm", "create", "--manager", "nope"])
            .contains("nope")
    );
    let e = c.fail(&[
        "vm",
        "create",
        "--manager",
        "lab",
        "--name",
        "x1",
        "--host",
        "hv9",
    ]);
    assert!(e.contains("not a host of VM manager lab"), "{e}");
    c.fail(&["get", "VirtualMachine", "x1"]);
    let kinds = store
        .load(None)
        .await
        .unwrap()
        .entities_of_kind(Kind::VirtualMachine)
        .len();
    assert_eq!(kinds, 3);
}

#[test]
fn backoff_doubles_from_5ms_to_5min() {
    assert_eq!(clusto_vm::backoff(0), Duration::from_millis(5));
    assert_eq!(clusto_vm::backoff(1), Duration::from_millis(10));
    assert_eq!(clusto_vm::backoff(10), Duration::from_millis(5120));
    assert_eq!(clusto_vm::backoff(17), Duration::from_secs(300));
    assert_eq!(clusto_vm::backoff(40), Duration::from_secs(300));
}

/// Minimal temporary directory (removed on drop).
mod tempdir {
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "clusto-{tag}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One controller per store: a second holder waits; a holder that dies
/// frees a PostgreSQL lease at once (its connection closes) and a SQLite
/// lease when its ttl runs out.
#[tokio::test]
async fn lease_excludes_and_is_taken_over_on_both_backends() {
    for backend in clusto_store::testing::BACKENDS {
        let store = clusto_store::testing::fresh(backend).await.unwrap();
        let ttl = Duration::from_millis(800);
        let mut a = store.try_lease("t", "a", ttl).await.unwrap().expect("free");
        assert!(
            store.try_lease("t", "b", ttl).await.unwrap().is_none(),
            "{backend}"
        );
        assert!(a.renew().await.unwrap());
        assert_eq!(store.lease_holder("t").await.unwrap().unwrap().0, "a");
        let died = Instant::now();
        drop(a);
        let b = loop {
            if let Some(b) = store.try_lease("t", "b", ttl).await.unwrap() {
                break b;
            }
            assert!(
                died.elapsed() < Duration::from_secs(5),
                "{backend}: no takeover"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let took = died.elapsed();
        if backend == "postgres" {
            assert!(took < ttl, "postgres frees at once, took {took:?}");
        } else {
            assert!(took >= ttl / 2, "sqlite waits for expiry, took {took:?}");
        }
        assert_eq!(store.lease_holder("t").await.unwrap().unwrap().0, "b");
        b.release().await.unwrap();
        assert!(store.try_lease("t", "c", ttl).await.unwrap().is_some());
    }
}

/// `clusto controller` as a daemon: reconciles what is applied while it
/// runs, serves Prometheus metrics, and on SIGTERM exits 0 and frees the
/// lease for the next controller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_daemon_metrics_and_clean_shutdown() {
    let (c, store, _dir) = setup().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = c
        .cmd()
        .args([
            "controller",
            "--metrics",
            &format!("127.0.0.1:{port}"),
            "--poll-ms",
            "50",
        ])
        .env("CLUSTO_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    loop {
        let inv = store.load(None).await.unwrap();
        let running = inv
            .entities_of_kind(Kind::VirtualMachine)
            .iter()
            .filter(|e| !inv.vm_status(e.id).phase.is_empty())
            .count();
        if running == 2 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "daemon did not reconcile"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A VM recorded while it runs is picked up from the new revision.
    c.ok(&[
        "vm",
        "create",
        "--manager",
        "lab",
        "--memory",
        "128",
        "--disk",
        "1",
    ]);
    let t = Instant::now();
    while status(&c, "lab-vm00")["phase"] != "Running" {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "new VM not reconciled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for line in [
        "clusto_controller_reconciles_total{result=\"ok\"}",
        "clusto_controller_backend_calls_total{op=\"create\"} 3",
        "clusto_controller_lease_held 1",
        "clusto_vms{phase=\"Running\"}",
        "clusto_controller_reconcile_duration_seconds_count",
        "clusto_controller_api_requests_total",
    ] {
        assert!(metrics.contains(line), "missing {line}: {metrics}");
    }
    // SIGTERM: clean exit, lease released at once.
    unsafe { libc_kill(child.id() as i32, 15) };
    let st = child.wait().unwrap();
    assert!(st.success(), "{st:?}");
    assert!(store.lease_holder("vm-controller").await.unwrap().is_none());
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("reconcile{vm=web1"), "{stderr}");
    assert!(stderr.contains("controller stopped"), "{stderr}");
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Pruning a provisioned VM from its apply set marks it for deletion: the
/// plan shows it deleted, the object stays Terminating until the controller
/// has removed the domain, and declaring it again meanwhile is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_waits_for_the_controller() {
    let conn = libvirt();
    let (c, store, dir) = setup().await;
    let mut ctl = controller(&store, "a").await;
    converge(&mut ctl, LIMIT).await;
    let f = dir.path().join("lab.yaml");
    let without_db1: String = MANIFEST
        .split("\n---\n")
        .filter(|d| !d.contains("name: db1"))
        .collect::<Vec<_>>()
        .join("\n---\n");
    let f2 = dir.path().join("lab2.yaml");
    std::fs::write(&f2, &without_db1).unwrap();
    let plan = c.ok(&[
        "plan",
        "-f",
        f2.to_str().unwrap(),
        "--apply-set",
        "lab",
        "--prune",
    ]);
    assert!(plan.contains("- VirtualMachine db1"), "{plan}");
    c.ok(&[
        "apply",
        "-f",
        f2.to_str().unwrap(),
        "--apply-set",
        "lab",
        "--prune",
    ]);
    assert!(c.ok(&["vm", "list"]).contains("Terminating"));
    let again = c.ok(&[
        "plan",
        "-f",
        f2.to_str().unwrap(),
        "--apply-set",
        "lab",
        "--prune",
    ]);
    assert!(again.contains("No changes"), "{again}");
    let r = c.run(&["apply", "-f", f.to_str().unwrap(), "--apply-set", "lab"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("lab.yaml:")
            && r.stderr
                .contains("VirtualMachine db1: db1 is being deleted"),
        "{}",
        r.stderr
    );
    converge(&mut ctl, LIMIT).await;
    c.fail(&["get", "VirtualMachine", "db1"]);
    assert_eq!(domains(&conn), vec![("web1".to_string(), true)]);
    // Once it is gone it can be declared again (a new object, a new domain).
    c.ok(&["apply", "-f", f.to_str().unwrap(), "--apply-set", "lab"]);
    converge(&mut ctl, LIMIT).await;
    assert_eq!(domains(&conn).len(), 2);
}

/// The same controller on a PostgreSQL store: statuses, finalized
/// deletion and the advisory-lock lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_on_postgres() {
    let conn = libvirt();
    let (c, store, _dir) = setup_on("postgres").await;
    let mut ctl = controller(&store, "pg").await;
    converge(&mut ctl, LIMIT).await;
    assert_eq!(status(&c, "web1")["phase"], "Running");
    assert_eq!(status(&c, "db1")["phase"], "Stopped");
    assert_eq!(domains(&conn).len(), 2);
    let mut other = controller(&store, "other").await;
    assert!(!other.tick().await.unwrap().leader);
    c.ok(&["vm", "delete", "web1"]);
    converge(&mut ctl, LIMIT).await;
    c.fail(&["get", "VirtualMachine", "web1"]);
    assert_eq!(domains(&conn), vec![("db1".to_string(), false)]);
}
