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

/// A path in the repository.
fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The control plane, stopped (by the PIDs up.sh recorded) when dropped.
struct ControlPlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl ControlPlane {
    fn start() -> ControlPlane {
        let root = repo("tests/kube");
        // One per test, also when `cargo test` runs them as threads of one process.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("clusto-kube-test-{}-{n}", std::process::id()));
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
        let root = repo("tests/kube");
        let _ = Command::new(root.join("down.sh")).arg(&self.dir).status();
    }
}

/// A controller process, killed when dropped.
struct Controller(Child);

impl Controller {
    fn start(c: &Clusto, kubeconfig: &std::path::Path, lease_seconds: u64) -> Controller {
        Controller::start_as(c, kubeconfig, lease_seconds, "default", "test")
    }

    /// Where `start`'s controllers serve /metrics.
    fn metrics_port() -> u16 {
        20000 + (std::process::id() % 20000) as u16
    }

    fn start_as(
        c: &Clusto,
        kubeconfig: &std::path::Path,
        lease_seconds: u64,
        lease_namespace: &str,
        pod: &str,
    ) -> Controller {
        let child = c
            .cmd()
            .args(["controller", "--kube", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--lease-seconds", &lease_seconds.to_string()])
            .args(["--poll-ms", "200", "--lease-namespace", lease_namespace])
            .args(match pod {
                "test" => vec![
                    "--metrics".to_string(),
                    format!("127.0.0.1:{}", Controller::metrics_port()),
                ],
                _ => vec![],
            })
            .env("POD_NAME", pod)
            .env("CLUSTO_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file(pod))
            .spawn()
            .expect("start clusto controller --kube");
        Controller(child)
    }
}

/// Where a controller's log goes (read it when a test fails).
fn log_file(pod: &str) -> std::fs::File {
    let path = std::env::temp_dir().join(format!("clusto-kube-{pod}-{}.log", std::process::id()));
    eprintln!("controller {pod} logs to {}", path.display());
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
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
    crds_established(&crds).await;
}

async fn crds_established(crds: &Api<DynamicObject>) {
    for kind in Kind::ALL {
        let name = format!("{}.clusto.dev", kind.plural());
        wait_for(
            &format!("CRD {name} established"),
            Duration::from_secs(30),
            || async {
                let c = crds.get(&name).await.ok()?;
                c.data["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
                    .then_some(())
            },
        )
        .await;
    }
}

async fn lease_holder(leases: &Api<k8s_openapi::api::coordination::v1::Lease>) -> String {
    let lease = leases.get("clusto-controller").await.expect("the Lease");
    lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default()
}

fn api(client: &kube::Client, kind: Kind, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &clusto_kube::api_resource(kind))
}

/// Creates a resource; what the apiserver stored (after admission).
async fn create(
    client: &kube::Client,
    ns: &str,
    kind: Kind,
    name: &str,
    spec: Value,
) -> DynamicObject {
    let o: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "clusto.dev/v1alpha1", "kind": kind.as_str(),
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .unwrap();
    api(client, kind, ns)
        .create(&PostParams::default(), &o)
        .await
        .unwrap_or_else(|e| panic!("create {kind} {name}: {e}"))
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

/// Deletes a resource in `default` and waits until the apiserver no longer
/// has it: the controller pruned its object and cleared the finalizer.
async fn delete_until_gone(client: &kube::Client, kind: Kind, name: &str, limit: Duration) {
    let resources = api(client, kind, "default");
    resources
        .delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete {kind} {name}: {e}"));
    let what = format!("{kind} {name} gone from the cluster");
    wait_for(&what, limit, || async {
        resources.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
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

    for (kind, name, spec) in [
        (Kind::Datacenter, "dc1", json!({})),
        (Kind::Rack, "r1", json!({"datacenter": "dc1"})),
        (
            Kind::IpManager,
            "net",
            json!({"cidr": "10.1.0.0/24", "gateway": "10.1.0.1"}),
        ),
        (Kind::Pool, "web", json!({"type": "exclusive"})),
        (
            Kind::Server,
            "s1",
            json!({"rack": "r1", "ru": 3, "pools": ["web"],
                   "addresses": [{"manager": "net", "osPort": "eth0"}],
                   "attrs": {"owner": "alice"}}),
        ),
    ] {
        create(&client, "default", kind, name, spec).await;
    }
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

    // What happened, in the controller's metrics.
    let out = Command::new("curl")
        .args([
            "-sf",
            &format!("http://127.0.0.1:{}/metrics", Controller::metrics_port()),
        ])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&out.stdout);
    for want in [
        "clusto_kube_outcomes_total{outcome=\"refused\"}",
        "clusto_kube_outcomes_total{outcome=\"synced\"}",
        "clusto_kube_writes_total{write=\"finalizer\"}",
        "clusto_kube_writes_total{write=\"event\"} 1",
        "clusto_kube_leader 1",
        "clusto_kube_resources 6",
    ] {
        assert!(metrics.contains(want), "{want} in\n{metrics}");
    }

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

    // A server synced later changes its rack's status too (the rack's
    // resource was not in that batch).
    create(
        &client,
        "default",
        Kind::Server,
        "s2",
        json!({"rack": "r1", "ru": 5}),
    )
    .await;
    wait_for("r1's status lists s2", Duration::from_secs(30), || async {
        let o = status_of(&client, "default", Kind::Rack, "r1").await?;
        let contents = o.data["status"]["contents"].as_array()?;
        contents.iter().any(|n| n == "s2").then_some(())
    })
    .await;

    // A no-op resync (a restarted controller lists everything again)
    // writes nothing to the store or the apiserver.
    let head = c.json(&["history", "--limit", "1"]);
    let versions = || async {
        let mut v = Vec::new();
        for (kind, name) in [
            (Kind::Server, "s1"),
            (Kind::Server, "s2"),
            (Kind::Rack, "r1"),
        ] {
            let o = status_of(&client, "default", kind, name).await.unwrap();
            v.push(o.metadata.resource_version);
        }
        v
    };
    let rv = versions().await;
    drop(ctl);
    let ctl = Controller::start(&c, &cp.kubeconfig, 15);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        c.json(&["history", "--limit", "1"]),
        head,
        "no new revision"
    );
    assert_eq!(rv, versions().await, "no write to the apiserver");

    // Any part of an inventory exported as custom resources syncs as is:
    // the example datacenter (VMs aside) from another store, in another
    // namespace.
    let other = Clusto::fresh("sqlite").await;
    other.ok(&["apply", "-f", repo("manifests").to_str().unwrap()]);
    let exported = other.ok(&["export", "--format", "crd", "--namespace", "site2"]);
    let ns_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": "site2"}})).unwrap();
    ns_api.create(&PostParams::default(), &ns).await.unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&exported).expect("export parses");
    let mut names = Vec::new();
    let no_vms = |d: &&Value| d["kind"] != "VirtualMachine" && d["kind"] != "VMManager";
    for d in docs.iter().filter(no_vms) {
        assert_eq!(d["metadata"]["namespace"], "site2", "{d}");
        let kind = Kind::ALL
            .into_iter()
            .find(|k| d["kind"] == k.as_str())
            .unwrap();
        let name = d["metadata"]["name"].as_str().unwrap().to_string();
        create(
            &client,
            "site2",
            kind,
            &name,
            d.get("spec").cloned().unwrap_or(json!({})),
        )
        .await;
        names.push((kind, name));
    }
    assert_eq!(names.len(), 18, "{names:?}");
    for (kind, name) in &names {
        wait_for(
            &format!("{kind} {name} Ready"),
            Duration::from_secs(60),
            || async {
                let o = status_of(&client, "site2", *kind, name).await?;
                (condition(&o, "Ready")?.0 == "True").then_some(())
            },
        )
        .await;
    }
    let xen = c.json(&["get", "server", "xenhost1"]);
    assert_eq!(xen["metadata"]["managedBy"], "applyset:k8s:site2");
    assert_eq!(xen["status"]["addresses"][0]["address"], "192.168.20.10");

    // A VM: placed and provisioned by the VM controller in the same
    // process (libvirt's test driver), its phase and host in the status;
    // deleting the resource waits for the backend, then clears it.
    for (kind, name, spec) in [
        (
            Kind::Server,
            "hv1",
            json!({"attrs": {"system": {"memory": 4096, "disk": 100, "cpucount": 4}}}),
        ),
        (
            Kind::VmManager,
            "lab",
            json!({"backend": "libvirt", "libvirt": {"uri": "test:///default", "pool": "default-pool"},
                   "hosts": ["hv1"]}),
        ),
        (
            Kind::VirtualMachine,
            "web1",
            json!({"manager": "lab", "cpus": 1, "memoryMiB": 512, "diskGiB": 5}),
        ),
    ] {
        create(&client, "default", kind, name, spec).await;
    }
    let vm = wait_for("web1 Ready", Duration::from_secs(60), || async {
        let o = status_of(&client, "default", Kind::VirtualMachine, "web1").await?;
        (condition(&o, "Ready")?.0 == "True").then_some(o)
    })
    .await;
    assert_eq!(vm.data["status"]["phase"], "Running");
    assert_eq!(vm.data["status"]["host"], "hv1");
    assert!(
        vm.data["status"]["backendId"].is_string(),
        "{:?}",
        vm.data["status"]
    );
    delete_until_gone(
        &client,
        Kind::VirtualMachine,
        "web1",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        c.run(&["get", "virtualmachine", "web1"]).code,
        1,
        "web1 removed from the store"
    );

    // Deleting the resource prunes the object, then clears the finalizer.
    delete_until_gone(&client, Kind::Server, "s1", Duration::from_secs(30)).await;
    assert_eq!(
        c.run(&["get", "server", "s1"]).code,
        1,
        "s1 pruned from the store"
    );
    drop(ctl);
}

fn helm(args: &[&str], kubeconfig: Option<&std::path::Path>) -> String {
    let bin = std::env::var("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/clusto-kube/bin/helm");
    let chart = repo("charts/clusto");
    let home = std::env::temp_dir().join(format!("clusto-helm-{}", std::process::id()));
    let mut cmd = Command::new(bin);
    cmd.args(args.iter().map(|a| {
        if *a == "CHART" {
            chart.to_str().unwrap()
        } else {
            a
        }
    }))
    .env("HELM_CACHE_HOME", home.join("cache"))
    .env("HELM_CONFIG_HOME", home.join("config"))
    .env("HELM_DATA_HOME", home.join("data"));
    if let Some(k) = kubeconfig {
        cmd.arg("--kubeconfig").arg(k);
    }
    let out = cmd
        .output()
        .expect("run helm (built by tests/kube/build.sh)");
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kinds(rendered: &str) -> Vec<String> {
    let mut k: Vec<String> = rendered
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(str::to_string)
        .collect();
    k.sort();
    k
}

/// A kubeconfig for a ServiceAccount, its token from the TokenRequest API.
async fn service_account_kubeconfig(
    cp: &ControlPlane,
    client: &kube::Client,
    ns: &str,
    sa: &str,
) -> PathBuf {
    let req = serde_json::to_vec(&json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}
    }))
    .unwrap();
    let http = http_request(
        "POST",
        &format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"),
        req,
    );
    let resp: Value = client.request(http).await.expect("TokenRequest");
    let token = resp["status"]["token"]
        .as_str()
        .expect("a token")
        .to_string();
    let admin = std::fs::read_to_string(&cp.kubeconfig).unwrap();
    let mut out = String::new();
    for line in admin.lines() {
        if line.trim_start().starts_with("token:") {
            out.push_str(&format!("    token: {token}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = cp.dir.join(format!("{sa}.kubeconfig"));
    std::fs::write(&path, out).unwrap();
    path
}

fn http_request(method: &str, path: &str, body: Vec<u8>) -> http::Request<Vec<u8>> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

/// What a SubjectAccessReview says the user may do.
async fn allowed(client: &kube::Client, user: &str, attrs: Value) -> bool {
    let req = serde_json::to_vec(&json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:serviceaccounts", "system:authenticated"],
                 "resourceAttributes": attrs}
    }))
    .unwrap();
    let http = http_request(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        req,
    );
    let resp: Value = client.request(http).await.expect("SubjectAccessReview");
    resp["status"]["allowed"] == true
}

#[tokio::test]
async fn the_helm_chart_installs_and_its_service_account_is_enough() {
    // Lint and render, defaults and every optional part on.
    helm(&["lint", "--strict", "CHART"], None);
    let defaults = helm(
        &["template", "clusto", "CHART", "--kube-version", "1.37.2"],
        None,
    );
    assert_eq!(
        kinds(&defaults),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    assert!(defaults.contains("replicas: 2"), "{defaults}");
    // Before 1.36 there is no MutatingAdmissionPolicy: the controller adds
    // its finalizer itself.
    let older = helm(
        &["template", "clusto", "CHART", "--kube-version", "1.35.0"],
        None,
    );
    assert!(!older.contains("MutatingAdmissionPolicy"), "{older}");
    let scoped = helm(
        &[
            "template",
            "clusto",
            "CHART",
            "--kube-version",
            "1.37.2",
            "--set",
            "controller.watchNamespace=racks",
        ],
        None,
    );
    assert!(
        scoped.contains("kubernetes.io/metadata.name: racks"),
        "the finalizer policy only where the controller watches: {scoped}"
    );
    assert!(defaults.contains("readOnlyRootFilesystem: true"));
    let all = helm(
        &[
            "template",
            "clusto",
            "CHART",
            "--kube-version",
            "1.37.2",
            "--set",
            "dhcpd.enabled=true",
            "--set",
            "snmptrapd.enabled=true",
            "--set",
            "snmptrapd.v3UsersSecret=snmp-users",
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "controller.bmcCredentialsSecret=bmc",
        ],
        None,
    );
    for k in ["DaemonSet", "ServiceMonitor", "NetworkPolicy"] {
        assert!(kinds(&all).iter().any(|x| x == k), "{k} rendered");
    }
    assert!(all.contains("hostNetwork: true") && all.contains("NET_BIND_SERVICE"));
    // Both daemons bind as root and drop to 65532 (--user) at once.
    assert_eq!(all.matches("- --user=65532:65532").count(), 2, "{all}");
    assert!(all.contains("- --listen=0.0.0.0:162"), "snmptrapd rendered");
    assert!(all.contains("- --v3-users=/etc/clusto/snmp/v3-users"));
    assert!(all.contains("secretName: snmp-users"));
    assert!(all.contains("secretName: bmc") && all.contains("mountPath: /etc/clusto/bmc"));
    assert!(!all.contains("NET_ADMIN"));

    // Installed on the real apiserver (no nodes: hooks would never run).
    let cp = ControlPlane::start();
    let client = cp.client().await;
    helm(
        &[
            "install",
            "clusto",
            "CHART",
            "--namespace",
            "clusto",
            "--create-namespace",
            "--no-hooks",
            "--set",
            "image.tag=test",
        ],
        Some(&cp.kubeconfig),
    );
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    );
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    crds_established(&crds).await;
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "clusto");
    let d = deploys
        .get("clusto-controller")
        .await
        .expect("the controller Deployment");
    assert_eq!(d.spec.replicas, Some(2));

    // The chart's RBAC is exactly enough: the controller runs as its
    // ServiceAccount, and the ServiceAccount can do nothing else.
    let user = "system:serviceaccount:clusto:clusto";
    for (attrs, want) in [
        (
            json!({"group": "clusto.dev", "resource": "servers", "verb": "watch"}),
            true,
        ),
        (
            json!({"group": "clusto.dev", "resource": "servers", "subresource": "status", "verb": "patch"}),
            true,
        ),
        (
            json!({"group": "coordination.k8s.io", "resource": "leases", "verb": "update", "namespace": "clusto"}),
            true,
        ),
        (
            json!({"group": "", "resource": "secrets", "verb": "get", "namespace": "clusto"}),
            false,
        ),
        (
            json!({"group": "", "resource": "pods", "verb": "list"}),
            false,
        ),
        (
            json!({"group": "apps", "resource": "deployments", "verb": "create", "namespace": "clusto"}),
            false,
        ),
        (
            json!({"group": "clusto.dev", "resource": "servers", "verb": "delete"}),
            false,
        ),
        (
            json!({"group": "coordination.k8s.io", "resource": "leases", "verb": "update", "namespace": "default"}),
            false,
        ),
    ] {
        assert_eq!(allowed(&client, user, attrs.clone()).await, want, "{attrs}");
    }
    let sa = service_account_kubeconfig(&cp, &client, "clusto", "clusto").await;
    let c = Clusto::fresh("postgres").await;
    let a = Controller::start_as(&c, &sa, 3, "clusto", "replica-a");
    let b = Controller::start_as(&c, &sa, 3, "clusto", "replica-b");
    // The chart's admission policy puts the finalizer on in the create
    // itself: the controller writes the new resource once (its status).
    // The apiserver takes a new policy up asynchronously (an informer): a
    // dry-run create shows when it is in effect.
    wait_for(
        "the finalizer policy in effect",
        Duration::from_secs(30),
        || async {
            let probe: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "clusto.dev/v1alpha1", "kind": "Datacenter",
                "metadata": {"name": "probe", "namespace": "default"}, "spec": {},
            }))
            .unwrap();
            let dry = PostParams {
                dry_run: true,
                ..PostParams::default()
            };
            let o = api(&client, Kind::Datacenter, "default")
                .create(&dry, &probe)
                .await
                .ok()?;
            o.metadata.finalizers.is_some().then_some(())
        },
    )
    .await;
    let dc1 = create(&client, "default", Kind::Datacenter, "dc1", json!({})).await;
    assert_eq!(
        dc1.metadata.finalizers,
        Some(vec!["clusto.dev/store".to_string()]),
        "finalizer from admission"
    );
    wait_for("dc1 Ready", Duration::from_secs(60), || async {
        let o = status_of(&client, "default", Kind::Datacenter, "dc1").await?;
        (condition(&o, "Ready")?.0 == "True").then_some(())
    })
    .await;

    // Leader failover: kill the holder; the other takes over within the
    // lease (3 s) and syncs what comes next.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "clusto");
    let holder = lease_holder(&leases).await;
    let (mut dead, alive) = if holder == "replica-a" {
        (a, b)
    } else {
        (b, a)
    };
    let _ = dead.0.kill();
    let _ = dead.0.wait();
    let killed = Instant::now();
    create(
        &client,
        "default",
        Kind::Rack,
        "r1",
        json!({"datacenter": "dc1"}),
    )
    .await;
    wait_for(
        "r1 Ready after failover",
        Duration::from_secs(30),
        || async {
            let o = status_of(&client, "default", Kind::Rack, "r1").await?;
            (condition(&o, "Ready")?.0 == "True").then_some(())
        },
    )
    .await;
    let took = killed.elapsed();
    let now_holder = lease_holder(&leases).await;
    assert_ne!(now_holder, holder, "the other replica holds the lease");
    assert!(took < Duration::from_secs(10), "failover took {took:?}");
    assert_eq!(c.json(&["get", "rack", "r1"])["spec"]["datacenter"], "dc1");

    // A finalizer the creator's request carried is still the controller's
    // to clear: deleting prunes the object and the resource goes.
    delete_until_gone(&client, Kind::Rack, "r1", Duration::from_secs(30)).await;
    assert_eq!(c.run(&["get", "rack", "r1"]).code, 1, "r1 pruned");
    drop(alive);
}
