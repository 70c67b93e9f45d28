//! Load for `bench/kube.sh`: creates a datacenter, racks and N Server
//! custom resources through the apiserver (32 requests in flight), then
//! watches them until every one is `Ready`.
//!
//! `kube-load KUBECONFIG NAMESPACE SERVERS` prints one JSON line:
//! `{"created_s", "ready_s", "lists"}` (`lists`: the list requests the
//! load itself made (its watch's), for the per-resource request count).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clusto_core::Kind;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;

fn api(client: &kube::Client, ns: &str, kind: Kind) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("clusto.dev", "v1alpha1", kind.as_str()),
        &kind.plural(),
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

async fn create(
    api: &Api<DynamicObject>,
    kind: Kind,
    name: String,
    spec: serde_json::Value,
) -> Result<()> {
    let o: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "clusto.dev/v1alpha1", "kind": kind.as_str(),
        "metadata": {"name": name}, "spec": spec,
    }))?;
    api.create(&PostParams::default(), &o)
        .await
        .with_context(|| format!("create {kind} {name}"))?;
    Ok(())
}

fn ready(o: &DynamicObject) -> bool {
    o.data["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Waits until `n` resources have been seen Ready; when that was.
async fn all_ready(api: Api<DynamicObject>, n: usize) -> Result<Instant> {
    use kube::runtime::watcher;
    let mut seen = std::collections::HashSet::new();
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
    let deadline = Instant::now() + Duration::from_secs(900);
    while let Some(ev) = tokio::time::timeout_at(deadline.into(), events.next()).await? {
        if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) = ev?
            && ready(&o)
        {
            seen.insert(o.metadata.name.unwrap_or_default());
            if seen.len() >= n {
                return Ok(Instant::now());
            }
        }
    }
    bail!("the watch ended with {} of {n} Ready", seen.len())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, kubeconfig, ns, n] = args.as_slice() else {
        bail!("usage: kube-load KUBECONFIG NAMESPACE SERVERS");
    };
    let n: usize = n.parse()?;
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?,
    )?;
    let per_rack = 40;
    let server_api = api(&client, ns, Kind::Server);
    let watch = tokio::spawn(all_ready(server_api.clone(), n));
    let racks = n.div_ceil(per_rack);
    let start = Instant::now();
    create(
        &api(&client, ns, Kind::Datacenter),
        Kind::Datacenter,
        "dc1".into(),
        json!({}),
    )
    .await?;
    let rack_api = api(&client, ns, Kind::Rack);
    futures::stream::iter(0..racks)
        .map(|r| {
            create(
                &rack_api,
                Kind::Rack,
                format!("r{r:04}"),
                json!({"datacenter": "dc1"}),
            )
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()?;
    futures::stream::iter(0..n)
        .map(|i| {
            let spec = json!({"rack": format!("r{:04}", i / per_rack), "ru": i % per_rack + 1,
                              "attrs": {"owner": "bench"}});
            create(&server_api, Kind::Server, format!("s{i:06}"), spec)
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()?;
    let created = start.elapsed();
    // Readiness from a watch (started before the creates): listing 10,000
    // objects every second would cost the apiserver more than the
    // controller does.
    let ready_at = watch.await??;
    println!(
        "{}",
        json!({"created_s": created.as_secs_f64(), "ready_s": (ready_at - start).as_secs_f64(), "lists": 1})
    );
    Ok(())
}
