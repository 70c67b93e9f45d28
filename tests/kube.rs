//! `clusto controller --kube` against a real kube-apiserver and etcd
//! (started by tests/kube/up.sh from binaries tests/kube/build.sh built)
//! and the local PostgreSQL.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clusto_core::Kind;
use common::Clusto;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use serde_json::{Value, json};

/// The control plane, stopped (by the PIDs up.sh recorded) when dropped.
struct ControlPlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl ControlPlane {
    fn start() -> ControlPlane {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/kube");
        let dir = std::env::temp_dir().join(format!("clusto-kube-test-{}", std::process::id()));
        let out = Command::new(root.join("up.sh"))
            .arg(&dir)
            .output()
            .expect("run tests/kube/up.sh");
        assert!(
            out.status.success(),
            "tests/kube/up.sh failed (build the control plane with tests/kube/build.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        ControlPlane { dir, kubeconfig }
    }

    async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        kube::Client::try_from(cfg).expect("client")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/kube");
        let _ = Command::new(root.join("down.sh")).arg(&self.dir).status();
    }
}

/// A controller process, killed when dropped.
struct Controller(Child);

impl Controller {
    fn start(c: &Clusto, kubeconfig: &std::path::Path, lease_seconds: u64) -> Controller {
        let child = c
            .cmd()
            .args(["controller", "--kube", "--kubeconfig"])
            .arg(kubeconfig)
            .args([
                "--lease-seconds",
                &lease_seconds.to_string(),
                "--poll-ms",
                "200",
            ])
            .env("CLUSTO_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clusto controller --kube");
        Controller(child)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn install_crds(client: &kube::Client) {
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    );
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    for kind in Kind::ALL {
        let crd: DynamicObject = serde_json::from_value(clusto_manifest::crd::crd(kind)).unwrap();
        crds.create(&PostParams::default(), &crd)
            .await
            .unwrap_or_else(|e| panic!("the apiserver refused the {kind} CRD: {e}"));
    }
    for kind in Kind::ALL {
        let name = format!("{}.clusto.dev", kind.plural());
        wait_for(
            &format!("CRD {name} established"),
            Duration::from_secs(30),
            || async {
                let c = crds.get(&name).await.ok()?;
                let conds = c.data["status"]["conditions"].as_array()?.clone();
                conds
                    .iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
                    .then_some(())
            },
        )
        .await;
    }
}

fn api(client: &kube::Client, kind: Kind, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &clusto_kube::api_resource(kind))
}

async fn create(client: &kube::Client, ns: &str, kind: Kind, name: &str, spec: Value) {
    let o: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "clusto.dev/v1alpha1", "kind": kind.as_str(),
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .unwrap();
    api(client, kind, ns)
        .create(&PostParams::default(), &o)
        .await
        .unwrap_or_else(|e| panic!("create {kind} {name}: {e}"));
}

async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn condition(o: &DynamicObject, type_: &str) -> Option<(String, String)> {
    let c = o.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?
        .clone();
    Some((
        c["status"].as_str()?.to_string(),
        c["message"].as_str().unwrap_or_default().to_string(),
    ))
}

async fn status_of(
    client: &kube::Client,
    ns: &str,
    kind: Kind,
    name: &str,
) -> Option<DynamicObject> {
    api(client, kind, ns).get(name).await.ok()
}

#[tokio::test]
async fn custom_resources_sync_into_the_store_and_back() {
    let cp = ControlPlane::start();
    let client = cp.client().await;
    install_crds(&client).await;
    let c = Clusto::fresh("postgres").await;
    let ctl = Controller::start(&c, &cp.kubeconfig, 15);

    create(&client, "default", Kind::Datacenter, "dc1", json!({})).await;
    create(
        &client,
        "default",
        Kind::Rack,
        "r1",
        json!({"datacenter": "dc1"}),
    )
    .await;
    create(
        &client,
        "default",
        Kind::IpManager,
        "net",
        json!({"cidr": "10.1.0.0/24", "gateway": "10.1.0.1"}),
    )
    .await;
    create(
        &client,
        "default",
        Kind::Pool,
        "web",
        json!({"type": "exclusive"}),
    )
    .await;
    create(
        &client,
        "default",
        Kind::Server,
        "s1",
        json!({"rack": "r1", "ru": 3, "pools": ["web"],
               "addresses": [{"manager": "net", "osPort": "eth0"}],
               "attrs": {"owner": "alice"}}),
    )
    .await;
    // Refused by the store's rules (no such rack): the others still sync.
    create(
        &client,
        "default",
        Kind::Server,
        "bad",
        json!({"rack": "nope", "ru": 1}),
    )
    .await;

    let s1 = wait_for(
        "s1 Ready with an address",
        Duration::from_secs(60),
        || async {
            let o = status_of(&client, "default", Kind::Server, "s1").await?;
            (condition(&o, "Ready")?.0 == "True"
                && o.data["status"]["addresses"][0]["address"].is_string())
            .then_some(o)
        },
    )
    .await;
    assert_eq!(s1.data["status"]["addresses"][0]["address"], "10.1.0.2");
    assert_eq!(condition(&s1, "Synced").unwrap().0, "True");
    assert_eq!(s1.data["status"]["observedGeneration"], 1);
    assert!(
        s1.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "clusto.dev/store"),
        "finalizer held: {:?}",
        s1.metadata.finalizers
    );
    let got = c.json(&["get", "server", "s1"]);
    assert_eq!(got["spec"]["rack"], "r1");
    assert_eq!(got["spec"]["pools"], json!(["web"]));
    assert_eq!(got["metadata"]["managedBy"], "applyset:k8s:default");
    for (kind, name) in [
        (Kind::Datacenter, "dc1"),
        (Kind::Rack, "r1"),
        (Kind::IpManager, "net"),
        (Kind::Pool, "web"),
    ] {
        let o = status_of(&client, "default", kind, name).await.unwrap();
        assert_eq!(
            condition(&o, "Ready").map(|c| c.0).as_deref(),
            Some("True"),
            "{kind} {name}"
        );
    }

    let bad = wait_for("bad refused", Duration::from_secs(30), || async {
        let o = status_of(&client, "default", Kind::Server, "bad").await?;
        let (st, msg) = condition(&o, "Synced")?;
        (st == "False").then_some(msg)
    })
    .await;
    assert!(bad.starts_with("Server bad: "), "{bad}");
    assert!(bad.contains("nope"), "{bad}");
    assert_eq!(
        c.run(&["get", "server", "bad"]).code,
        1,
        "nothing recorded for bad"
    );
    let events: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
            "events",
        ),
    );
    let ev = wait_for(
        "a Warning event for bad",
        Duration::from_secs(10),
        || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|e| e.data["regarding"]["name"] == "bad" && e.data["type"] == "Warning")
        },
    )
    .await;
    assert!(
        ev.data["note"]
            .as_str()
            .unwrap_or_default()
            .contains("nope"),
        "{:?}",
        ev.data
    );

    // A spec change is applied and observed.
    let servers = api(&client, Kind::Server, "default");
    let patch = json!({"spec": {"attrs": {"owner": "bob"}}});
    servers
        .patch("s1", &Default::default(), &kube::api::Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(
        "s1 generation 2 observed",
        Duration::from_secs(30),
        || async {
            let o = status_of(&client, "default", Kind::Server, "s1").await?;
            (o.data["status"]["observedGeneration"] == 2).then_some(())
        },
    )
    .await;
    let merged = c.ok(&["attr", "get", "s1", "owner"]);
    assert!(merged.contains("bob"), "{merged}");

    // A no-op resync (a restarted controller lists everything again)
    // writes nothing to the store or the apiserver.
    let head = c.json(&["history", "--limit", "1"]);
    let rv = status_of(&client, "default", Kind::Server, "s1")
        .await
        .unwrap()
        .metadata
        .resource_version;
    drop(ctl);
    let ctl = Controller::start(&c, &cp.kubeconfig, 15);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        c.json(&["history", "--limit", "1"]),
        head,
        "no new revision"
    );
    let rv2 = status_of(&client, "default", Kind::Server, "s1")
        .await
        .unwrap()
        .metadata
        .resource_version;
    assert_eq!(rv, rv2, "no write to the apiserver");

    // Deleting the resource prunes the object, then clears the finalizer.
    servers
        .delete("s1", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "s1 gone from the cluster",
        Duration::from_secs(30),
        || async { servers.get_opt("s1").await.ok()?.is_none().then_some(()) },
    )
    .await;
    assert_eq!(
        c.run(&["get", "server", "s1"]).code,
        1,
        "s1 pruned from the store"
    );
    drop(ctl);
}
