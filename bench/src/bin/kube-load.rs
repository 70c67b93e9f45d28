//! Load for `bench/kube.sh`: creates a datacenter, racks and N Server
//! custom resources through the apiserver (32 requests in flight), then
//! lists them every second until every one is `Ready`.
//!
//! `kube-load KUBECONFIG NAMESPACE SERVERS` prints one JSON line:
//! `{"created_s", "ready_s", "lists"}` (`lists`: the list requests the
//! polling itself made, for the per-resource request count).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clusto_core::Kind;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
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
    let server_api = api(&client, ns, Kind::Server);
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
    let mut lists = 0;
    loop {
        let mut n_ready = 0;
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(2000);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = server_api.list(&lp).await?;
            lists += 1;
            n_ready += page.items.iter().filter(|o| ready(o)).count();
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        if n_ready >= n {
            break;
        }
        if start.elapsed() > Duration::from_secs(900) {
            bail!("only {n_ready} of {n} Ready after 900 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "{}",
        json!({"created_s": created.as_secs_f64(), "ready_s": start.elapsed().as_secs_f64(), "lists": lists})
    );
    Ok(())
}
