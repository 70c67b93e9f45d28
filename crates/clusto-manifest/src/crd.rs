//! CustomResourceDefinitions for every manifest kind, generated from the same
//! spec types as `schemas/`, so a custom resource holds exactly what a
//! manifest's `spec` holds.
//!
//! Built here (pure JSON) rather than with kube's derive: one spec type
//! serves several kinds (`DeviceSpec` is six of them), and the manifest's
//! two-shaped fields (`attrs` as list or map, `ru` as 12 or "12-13", any
//! JSON `value`) need Kubernetes' own escapes (`x-kubernetes-int-or-string`,
//! `x-kubernetes-preserve-unknown-fields`) to be a structural schema the
//! apiserver accepts.

use clusto_core::Kind;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::types::AddressItem;

pub const GROUP: &str = "clusto.dev";
pub const VERSION: &str = "v1alpha1";

/// One condition, as Kubernetes' `metav1.Condition` spells it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What the controller writes to a custom resource's status subresource:
/// whether the spec is in the store (`Synced`) and the object is usable
/// (`Ready`), and the inventory's own status of the object, as
/// `clusto get -o json` prints it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Addresses the object holds (allocated ones included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<AddressItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// A virtual machine's phase (`Pending`, `Provisioning`, `Running`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The host a virtual machine was placed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The backend's id of a virtual machine (libvirt UUID, EC2 instance id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_id: Option<String>,
    /// The rest of the inventory's status (contents, members, counts, …).
    #[serde(flatten)]
    pub other: Map<String, Json>,
}

/// `kubectl get srv` and friends. Chosen to stay clear of common CRDs
/// (KubeVirt owns `vm`), hence `cvm`/`cpool`.
pub fn short_names(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Datacenter => &["dc"],
        Kind::Cage => &["cg"],
        Kind::Zone => &["zn"],
        Kind::Rack => &["rk"],
        Kind::Server => &["srv"],
        Kind::VirtualServer => &["vsrv"],
        Kind::NetworkSwitch => &["sw"],
        Kind::PowerStrip => &["pdu"],
        Kind::ConsoleServer => &["cons"],
        Kind::Appliance => &["appl"],
        Kind::Pool => &["cpool"],
        Kind::IpManager => &["ipm"],
        Kind::NameManager => &["nm"],
        Kind::Entity => &["ent"],
        Kind::Driver => &["drv"],
        Kind::RackLayout => &["rl"],
        Kind::VmManager => &["vmm"],
        Kind::VirtualMachine => &["cvm"],
    }
}

fn column(name: &str, ty: &str, path: &str) -> Json {
    json!({"name": name, "type": ty, "jsonPath": path})
}

/// `kubectl get` columns: where a thing is for devices, the phase and host
/// for VMs, the network for address ranges; readiness and age for all.
fn printer_columns(kind: Kind) -> Vec<Json> {
    let mut cols = match kind {
        Kind::VirtualMachine => vec![
            column("Phase", "string", ".status.phase"),
            column("Host", "string", ".status.host"),
            column("Manager", "string", ".spec.manager"),
        ],
        Kind::IpManager => vec![
            column("CIDR", "string", ".spec.cidr"),
            column("Gateway", "string", ".spec.gateway"),
        ],
        Kind::Pool => vec![column("Type", "string", ".spec.type")],
        Kind::Rack => vec![column("Datacenter", "string", ".spec.datacenter")],
        k if k.is_device() => vec![
            column("Rack", "string", ".spec.rack"),
            column("RU", "string", ".spec.ru"),
            column("Address", "string", ".status.addresses[0].address"),
        ],
        _ => Vec::new(),
    };
    cols.push(column(
        "Ready",
        "string",
        ".status.conditions[?(@.type==\"Ready\")].status",
    ));
    cols.push(column("Age", "date", ".metadata.creationTimestamp"));
    cols
}

/// The CRD of one kind (namespaced, with the status subresource).
pub fn crd(kind: Kind) -> Json {
    let plural = kind.plural();
    let spec = structural_root(&crate::schema::of(kind).spec);
    let status = structural_root(
        &serde_json::to_value(schemars::schema_for!(ObjectStatus)).unwrap_or(Json::Null),
    );
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.as_str(),
                "listKind": format!("{}List", kind.as_str()),
                "plural": plural,
                "singular": kind.as_str().to_ascii_lowercase(),
                "shortNames": short_names(kind),
                "categories": ["clusto"],
            },
            "versions": [{
                "name": VERSION,
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": printer_columns(kind),
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": format!("A clusto {}: its spec is a manifest's spec.", kind.as_str()),
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec,
                        "status": status,
                    },
                }},
            }],
        },
    })
}

/// Every CRD file for `charts/clusto/crds/`: name and YAML text.
pub fn files() -> Vec<(String, String)> {
    Kind::ALL
        .into_iter()
        .map(|k| {
            let text = serde_saphyr::to_string(&crd(k)).unwrap_or_default();
            (
                format!("{GROUP}_{}.yaml", k.plural()),
                format!("# Generated by `clusto schema --crds`; do not edit.\n{text}"),
            )
        })
        .collect()
}

fn structural_root(schema: &Json) -> Json {
    let defs = schema.get("$defs").cloned().unwrap_or(Json::Null);
    structural(schema, &defs)
}

/// Rewrites a schemars (JSON Schema 2020-12) schema into a Kubernetes
/// structural schema: references inlined, one type per node (`null` becomes
/// `nullable`), two-shaped values as int-or-string or preserved, no
/// `additionalProperties: false` (the apiserver prunes unknown fields
/// instead; the manifest parser still refuses them with a position).
fn structural(s: &Json, defs: &Json) -> Json {
    let Some(obj) = s.as_object() else {
        // `true`: any JSON value.
        return json!({"x-kubernetes-preserve-unknown-fields": true});
    };
    if let Some(r) = obj.get("$ref").and_then(Json::as_str) {
        let name = r.rsplit('/').next().unwrap_or_default();
        let mut out = structural(&defs[name], defs);
        copy_description(obj, &mut out);
        return out;
    }
    if let Some(variants) = obj
        .get("anyOf")
        .or_else(|| obj.get("oneOf"))
        .and_then(Json::as_array)
    {
        let mut out = alternatives(variants, defs);
        copy_description(obj, &mut out);
        return out;
    }
    let mut out = Map::new();
    let mut nullable = false;
    match obj.get("type") {
        Some(Json::Array(types)) => {
            let real: Vec<&Json> = types.iter().filter(|t| *t != "null").collect();
            nullable = real.len() < types.len();
            if let [one] = real.as_slice() {
                out.insert("type".into(), (*one).clone());
            }
        }
        Some(t) => {
            out.insert("type".into(), t.clone());
        }
        None if obj.is_empty() => {
            return json!({"x-kubernetes-preserve-unknown-fields": true});
        }
        None => {}
    }
    for (k, v) in obj {
        match k.as_str() {
            "description" | "enum" | "required" | "minimum" | "maximum" | "minItems"
            | "maxItems" | "pattern" => {
                out.insert(k.clone(), v.clone());
            }
            "format" if matches!(v.as_str(), Some("int32" | "int64" | "double" | "float")) => {
                out.insert(k.clone(), v.clone());
            }
            "const" => {
                out.insert("enum".into(), json!([v]));
            }
            "properties" => {
                let props: Map<String, Json> = v
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, p)| (name.clone(), structural(p, defs)))
                    .collect();
                out.insert(k.clone(), Json::Object(props));
            }
            "items" => {
                out.insert(k.clone(), structural(v, defs));
            }
            // A fixed-length tuple (`[a, b]` cables): one item schema.
            "prefixItems" => {
                if let Some(first) = v.as_array().and_then(|a| a.first()) {
                    out.insert("items".into(), structural(first, defs));
                }
            }
            "additionalProperties" => match v {
                Json::Bool(true) => {
                    out.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
                }
                Json::Object(_) if !out.contains_key("properties") => {
                    out.insert(k.clone(), structural(v, defs));
                }
                _ => {}
            },
            _ => {}
        }
    }
    // A typed map beside declared properties (a flattened map) keeps its
    // keys through pruning.
    if obj.contains_key("properties")
        && obj.get("additionalProperties").is_some_and(Json::is_object)
    {
        out.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
    }
    if nullable {
        out.insert("nullable".into(), json!(true));
    }
    Json::Object(out)
}

/// `anyOf`/`oneOf`: `T | null` is a nullable `T`; an integer-or-string is
/// Kubernetes' int-or-string; any other mix of shapes is kept as given
/// (the manifest parser checks it).
fn alternatives(variants: &[Json], defs: &Json) -> Json {
    let real: Vec<&Json> = variants
        .iter()
        .filter(|v| v.get("type") != Some(&json!("null")))
        .collect();
    if let [one] = real.as_slice() {
        let mut out = structural(one, defs);
        if real.len() < variants.len()
            && let Some(m) = out.as_object_mut()
        {
            m.insert("nullable".into(), json!(true));
        }
        return out;
    }
    let types: std::collections::BTreeSet<String> = real
        .iter()
        .map(|v| {
            let v = structural(v, defs);
            v.get("type")
                .and_then(Json::as_str)
                .unwrap_or("any")
                .to_string()
        })
        .collect();
    let nullable = real.len() < variants.len();
    let mut out = if types.iter().all(|t| t == "integer" || t == "string") {
        json!({"x-kubernetes-int-or-string": true})
    } else {
        json!({"x-kubernetes-preserve-unknown-fields": true})
    };
    if nullable {
        out["nullable"] = json!(true);
    }
    out
}

fn copy_description(from: &Map<String, Json>, to: &mut Json) {
    if let (Some(d), Some(m)) = (from.get("description"), to.as_object_mut()) {
        m.insert("description".into(), d.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks a schema and returns the first node breaking a structural rule
    /// the apiserver enforces (the real apiserver test is in tests/kube).
    fn non_structural(s: &Json, path: &str) -> Option<String> {
        let m = s.as_object()?;
        for banned in [
            "$ref",
            "anyOf",
            "oneOf",
            "allOf",
            "const",
            "prefixItems",
            "$defs",
        ] {
            if m.contains_key(banned) {
                return Some(format!("{path}: {banned}"));
            }
        }
        let escapes = m.contains_key("x-kubernetes-preserve-unknown-fields")
            || m.contains_key("x-kubernetes-int-or-string");
        if !escapes && !m.get("type").is_some_and(Json::is_string) {
            return Some(format!("{path}: no single type"));
        }
        if m.get("additionalProperties") == Some(&json!(false)) {
            return Some(format!("{path}: additionalProperties false"));
        }
        let props = m.get("properties").and_then(Json::as_object);
        for (k, v) in props.into_iter().flatten() {
            if let Some(e) = non_structural(v, &format!("{path}.{k}")) {
                return Some(e);
            }
        }
        for k in ["items", "additionalProperties"] {
            if let Some(v) = m.get(k).filter(|v| v.is_object())
                && let Some(e) = non_structural(v, &format!("{path}[{k}]"))
            {
                return Some(e);
            }
        }
        None
    }

    #[test]
    fn every_crd_is_structural() {
        for k in Kind::ALL {
            let c = crd(k);
            let root = &c["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            assert_eq!(non_structural(root, k.as_str()), None);
        }
    }

    #[test]
    fn two_shaped_fields_use_the_kubernetes_escapes() {
        let c = crd(Kind::Server);
        let spec = &c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["properties"]["ru"]["x-kubernetes-int-or-string"], true);
        assert_eq!(spec["properties"]["ru"]["nullable"], true);
        assert_eq!(
            spec["properties"]["attrs"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert_eq!(spec["properties"]["rack"]["type"], "string");
        assert_eq!(spec["properties"]["ports"]["items"]["type"], "object");
        let layout = crd(Kind::RackLayout);
        let conn = &layout["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["connections"];
        assert_eq!(conn["items"]["items"]["type"], "string");
        assert_eq!(conn["items"]["minItems"], 2);
    }

    #[test]
    fn names_are_unique_and_match_the_api_paths() {
        let mut short = std::collections::BTreeSet::new();
        for k in Kind::ALL {
            let c = crd(k);
            assert_eq!(c["spec"]["names"]["plural"], k.plural());
            assert_eq!(c["metadata"]["name"], format!("{}.clusto.dev", k.plural()));
            for s in short_names(k) {
                assert!(short.insert(*s), "short name {s} twice");
            }
        }
    }

    #[test]
    fn status_round_trips_what_the_inventory_reports() {
        let inv = json!({
            "addresses": [{"address": "10.0.0.5", "manager": "net", "osPort": "eth0"}],
            "datacenter": "dc1", "phase": "Running", "host": "h1", "backendId": "i-1",
            "contents": ["a"]
        });
        let s: ObjectStatus = serde_json::from_value(inv.clone()).unwrap();
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.addresses[0].address.as_deref(), Some("10.0.0.5"));
        assert_eq!(serde_json::to_value(&s).unwrap(), inv);
    }
}
