//! The VM controller against a real EC2 API: the `moto` server (PyPI),
//! started per test on a free loopback port, driven by aws-sdk-ec2.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusto_cli::backends::Backends;
use clusto_core::vm::Ec2Config;
use clusto_store::Store;
use clusto_vm::{Controller, Options};
use common::{Clusto, converge, ready};

/// How long the controller may take to converge in these tests.
const LIMIT: Duration = Duration::from_secs(60);
use serde_json::Value as Json;

struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Moto {
        let bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| {
            format!(
                "{}/.cache/moto-venv/bin/moto_server",
                std::env::var("HOME").unwrap()
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (bash .ci/run installs it): {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, url }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Lab {
    c: Clusto,
    store: Store,
    moto: Moto,
    dir: std::path::PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    async fn new(vms: &str) -> Lab {
        Lab::with_budget(vms, Some(0.025)).await
    }

    async fn with_budget(vms: &str, budget: Option<f64>) -> Lab {
        let moto = Moto::start();
        let dir = std::env::temp_dir().join(format!("clusto-ec2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let creds = dir.join("credentials");
        std::fs::write(
            &creds,
            "[lab]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
        )
        .unwrap();
        let manifest = format!(
            r#"
apiVersion: clusto.dev/v1alpha1
kind: VMManager
metadata: {{name: aws}}
spec:
  backend: ec2
  ec2:
    region: us-east-1
    endpoint: "{}"
    credentialsFile: "{}"
    profile: lab
{}
    prices: {{t3.micro: 0.0104, t3.small: 0.0208, m5.large: 0.096}}
{vms}"#,
            moto.url,
            creds.display(),
            budget
                .map(|b| format!("    budgetPerHour: {b}"))
                .unwrap_or_default()
        );
        let f = dir.join("aws.yaml");
        std::fs::write(&f, manifest).unwrap();
        let c = Clusto::fresh("sqlite").await;
        c.ok(&["apply", "-f", f.to_str().unwrap()]);
        let store = Store::open(&c.store).await.unwrap();
        Lab {
            c,
            store,
            moto,
            dir,
        }
    }

    fn ec2(&self) -> clusto_ec2::Ec2 {
        clusto_ec2::Ec2::new(Ec2Config {
            region: "us-east-1".into(),
            endpoint: Some(self.moto.url.clone()),
            budget_per_hour: None,
            prices: Default::default(),
            credentials_file: Some(self.dir.join("credentials").display().to_string()),
            profile: Some("lab".into()),
        })
    }

    async fn controller(&self) -> Controller {
        Controller::new(
            self.store.clone(),
            Arc::new(Backends::new()),
            Options {
                poll: Duration::from_millis(20),
                recheck: Duration::from_millis(50),
                holder: "t".into(),
                ..Options::default()
            },
        )
        .await
        .unwrap()
    }

    fn status(&self, name: &str) -> Json {
        self.c.json(&["get", "VirtualMachine", name])["status"].clone()
    }

    /// Live (not terminated) instances tagged Name=`name`: (id, state, type).
    async fn instances(&self, name: &str) -> Vec<(String, String, String)> {
        let r = self
            .ec2()
            .query(
                "DescribeInstances",
                &[("Filter.1.Name", "tag:Name"), ("Filter.1.Value.1", name)],
            )
            .await
            .unwrap();
        clusto_ec2::instances(&r)
            .map(|i| {
                let t = |p: &[&str]| i.text_at(p).unwrap().to_string();
                (
                    t(&["instanceId"]),
                    t(&["instanceState", "name"]),
                    t(&["instanceType"]),
                )
            })
            .filter(|i| i.1 != "terminated")
            .collect()
    }
}

const VMS: &str = r#"---
apiVersion: clusto.dev/v1alpha1
kind: VirtualMachine
metadata: {name: app1}
spec: {manager: aws, image: ami-1e749f67, instanceType: t3.micro}
---
apiVersion: clusto.dev/v1alpha1
kind: VirtualMachine
metadata: {name: app2}
spec: {manager: aws, image: ami-1e749f67, instanceType: t3.micro, powerState: Stopped}
---
apiVersion: clusto.dev/v1alpha1
kind: VirtualMachine
metadata: {name: big}
spec: {manager: aws, image: ami-1e749f67, instanceType: m5.large}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_lifecycle_budget_guard_and_drift() {
    let lab = Lab::new(VMS).await;
    let mut ctl = lab.controller().await;
    converge(&mut ctl, LIMIT).await;

    // Created, tagged, as asked.
    let app1 = lab.instances("app1").await;
    assert_eq!(app1.len(), 1, "{app1:?}");
    assert_eq!(app1[0].1, "running");
    assert_eq!(app1[0].2, "t3.micro");
    let st = lab.status("app1");
    assert_eq!(st["backendId"], app1[0].0.as_str());
    assert_eq!(st["phase"], "Running");
    assert_eq!(ready(&st).0, "True");
    assert!(
        st["observedAddresses"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    );
    let placed = st["conditions"].to_string();
    assert!(placed.contains("ec2 region us-east-1"), "{placed}");
    let answer = lab
        .ec2()
        .query("DescribeInstances", &[("InstanceId.1", &app1[0].0)])
        .await
        .unwrap();
    let inst = clusto_ec2::instances(&answer).next().unwrap();
    let uid = clusto_ec2::observe(inst, "us-east-1").unwrap().uid.unwrap();
    let inv = lab.store.load(None).await.unwrap();
    let id = inv.id_of("app1").unwrap();
    assert_eq!(
        uid,
        clusto_core::vm::vm_uid(&lab.store.uid().await.unwrap(), id)
    );

    // Stopped as asked after RunInstances.
    let app2 = lab.instances("app2").await;
    assert_eq!(app2.len(), 1);
    assert_eq!(app2[0].1, "stopped");
    assert_eq!(lab.status("app2")["phase"], "Stopped");

    // Over budget: 2 × 0.0104 running, m5.large 0.096 > 0.025.
    assert!(lab.instances("big").await.is_empty());
    let (ok, reason, msg) = ready(&lab.status("big"));
    assert_eq!((ok.as_str(), reason.as_str()), ("False", "BudgetExceeded"));
    assert!(msg.contains("budgetPerHour"), "{msg}");

    // A no-op resync: one DescribeInstances for the region, no write.
    let head = lab.store.head().await.unwrap();
    ctl.resync_now();
    let r = ctl.tick().await.unwrap();
    assert_eq!((r.reconciled, r.calls, r.wrote), (3, 1, false), "{r:?}");
    assert_eq!(lab.store.head().await.unwrap(), head);

    // Stop and start through the CLI.
    lab.c.ok(&["vm", "stop", "app1"]);
    converge(&mut ctl, LIMIT).await;
    assert_eq!(lab.instances("app1").await[0].1, "stopped");
    lab.c.ok(&["vm", "start", "app1"]);
    converge(&mut ctl, LIMIT).await;
    assert_eq!(lab.instances("app1").await[0].1, "running");

    // Resize: refused while running, done while stopped.
    lab.c.ok(&["vm", "set", "app1", "instanceType", "t3.small"]);
    converge(&mut ctl, LIMIT).await;
    let (_, reason, msg) = ready(&lab.status("app1"));
    assert_eq!(reason, "BackendRefused");
    assert!(msg.contains("stopped first"), "{msg}");
    lab.c.ok(&["vm", "set", "app2", "instanceType", "t3.small"]);
    converge(&mut ctl, LIMIT).await;
    assert_eq!(lab.instances("app2").await[0].2, "t3.small");
    assert_eq!(ready(&lab.status("app2")).0, "True");

    // Delete is refused while allowTermination is false: the object stays.
    lab.c.ok(&["vm", "delete", "app2"]);
    converge(&mut ctl, LIMIT).await;
    let st = lab.status("app2");
    assert_eq!(st["phase"], "Terminating");
    assert_eq!(ready(&st).1, "TerminationRefused");
    assert_eq!(lab.instances("app2").await.len(), 1);
    lab.c.ok(&["vm", "set", "app2", "allowTermination", "true"]);
    converge(&mut ctl, LIMIT).await;
    assert!(lab.instances("app2").await.is_empty());
    lab.c.fail(&["get", "VirtualMachine", "app2"]);

    // The budget counts the type a VM asks for: app1 back to t3.micro and
    // app2 gone leave room for another t3.micro, not an m5.large.
    lab.c.ok(&["vm", "set", "app1", "instanceType", "t3.micro"]);
    converge(&mut ctl, LIMIT).await;
    assert_eq!(ready(&lab.status("app1")).0, "True");
    lab.c.ok(&[
        "vm",
        "create",
        "--manager",
        "aws",
        "--name",
        "app3",
        "--image",
        "ami-1e749f67",
        "--instance-type",
        "t3.micro",
    ]);
    converge(&mut ctl, LIMIT).await;
    assert_eq!(lab.instances("app3").await.len(), 1);
    assert!(lab.instances("big").await.is_empty());

    // Terminated out of band: reported as Lost, not silently replaced.
    let id3 = lab.instances("app3").await[0].0.clone();
    lab.ec2()
        .query("TerminateInstances", &[("InstanceId.1", &id3)])
        .await
        .unwrap();
    ctl.resync_now();
    converge(&mut ctl, LIMIT).await;
    let st = lab.status("app3");
    assert_eq!(st["phase"], "Lost");
    assert_eq!(ready(&st).1, "Lost");
    assert!(lab.instances("app3").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_crash_after_run_instances_adopts_by_tag() {
    let lab = Lab::new(
        r#"---
apiVersion: clusto.dev/v1alpha1
kind: VirtualMachine
metadata: {name: crash1}
spec: {manager: aws, image: ami-1e749f67, instanceType: t3.micro}
"#,
    )
    .await;
    // RunInstances went through, then the controller died before
    // recording anything.
    let inv = lab.store.load(None).await.unwrap();
    let id = inv.id_of("crash1").unwrap();
    let d = inv.vm_desired(id).unwrap();
    let store_uid = lab.store.uid().await.unwrap();
    let uid = clusto_core::vm::vm_uid(&store_uid, id);
    let (scope, _) = clusto_vm::scope_of(&inv, &d).unwrap();
    let first = clusto_vm::Backend::create(
        &lab.ec2(),
        &scope,
        clusto_vm::CreateRequest {
            vm: &d,
            uid: &uid,
            store_uid: &store_uid,
        },
    )
    .await
    .unwrap();
    // The restarted controller finds it by its tag and records it.
    let mut ctl = lab.controller().await;
    converge(&mut ctl, LIMIT).await;
    let live = lab.instances("crash1").await;
    assert_eq!(live.len(), 1, "no duplicate: {live:?}");
    assert_eq!(lab.status("crash1")["backendId"], first.backend_id.as_str());
    // Restarting again changes nothing.
    drop(ctl);
    let head = lab.store.head().await.unwrap();
    let mut ctl = lab.controller().await;
    converge(&mut ctl, LIMIT).await;
    assert_eq!(lab.store.head().await.unwrap(), head);
    assert_eq!(lab.instances("crash1").await.len(), 1);
}

/// `clusto controller` killed (SIGKILL) in the middle of creating and
/// then of deleting 40 VMs, and started again: every VM ends up with
/// exactly one instance, and after deletion none is left and no object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_controller_restarts_without_duplicates_or_leaks() {
    let vms: String = (0..40)
        .map(|i| {
            format!(
                "---\napiVersion: clusto.dev/v1alpha1\nkind: VirtualMachine\nmetadata: {{name: k{i:02}}}\nspec: {{manager: aws, image: ami-1e749f67, instanceType: t3.micro, allowTermination: true}}\n"
            )
        })
        .collect();
    // No budget: it would stop this at two.
    let lab = Lab::with_budget(&vms, None).await;
    let live = || async {
        let r = lab
            .ec2()
            .query(
                "DescribeInstances",
                &[
                    ("Filter.1.Name", "tag-key"),
                    ("Filter.1.Value.1", "clusto:uid"),
                ],
            )
            .await
            .unwrap();
        let mut by_uid: std::collections::BTreeMap<String, usize> = Default::default();
        for i in clusto_ec2::instances(&r) {
            let o = clusto_ec2::observe(i, "us-east-1").unwrap();
            if o.state == clusto_core::vm::ObservedState::Terminated {
                continue;
            }
            *by_uid.entry(o.uid.unwrap()).or_default() += 1;
        }
        by_uid
    };
    let kill_when = |n: usize, creating: bool| {
        let mut child = lab
            .c
            .cmd()
            .args([
                "controller",
                "--lease-ttl",
                "1",
                "--poll-ms",
                "20",
                "--workers",
                "2",
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        async move {
            let t = Instant::now();
            loop {
                let have = live().await.len();
                if (creating && have >= n) || (!creating && have <= n) {
                    break;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "controller made no progress"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
    };
    kill_when(8, true).await;
    let mid = live().await;
    assert!(
        mid.len() >= 8 && mid.len() < 40,
        "killed mid-way: {}",
        mid.len()
    );
    std::thread::sleep(Duration::from_millis(1100));
    lab.c.ok(&["controller", "--once", "--lease-ttl", "1"]);
    let after = live().await;
    assert_eq!(after.len(), 40, "every VM has an instance");
    assert!(after.values().all(|n| *n == 1), "no duplicates: {after:?}");
    let inv = lab.store.load(None).await.unwrap();
    for e in inv.entities_of_kind(clusto_core::Kind::VirtualMachine) {
        assert_eq!(inv.vm_status(e.id).phase, "Running", "{}", e.name);
    }

    // Delete them all; kill the controller half-way through; restart.
    let names: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
    let mut args = vec!["delete"];
    args.extend(names.iter().map(String::as_str));
    lab.c.ok(&args);
    kill_when(30, false).await;
    std::thread::sleep(Duration::from_millis(1100));
    lab.c.ok(&["controller", "--once", "--lease-ttl", "1"]);
    assert!(live().await.is_empty(), "leaked: {:?}", live().await);
    let inv = lab.store.load(None).await.unwrap();
    assert!(
        inv.entities_of_kind(clusto_core::Kind::VirtualMachine)
            .is_empty()
    );
}
