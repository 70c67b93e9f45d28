//! JSON Schemas for every manifest kind, generated from the Rust types so
//! they cannot drift from what the parser accepts.

use clusto_core::Kind;
use schemars::JsonSchema;
use serde_json::{Value as Json, json};

use crate::types::*;

/// A kind's schemas: the whole manifest document's (for `schemas/`) and
/// its spec's alone (for the CRDs).
pub struct KindSchemas {
    pub document: Json,
    pub spec: Json,
}

fn for_spec<S: JsonSchema + Default>(kind: Kind) -> KindSchemas {
    let mut document =
        serde_json::to_value(schemars::schema_for!(Document<S>)).unwrap_or(Json::Null);
    document["title"] = json!(kind.as_str());
    if let Some(props) = document["properties"].as_object_mut() {
        props.insert("apiVersion".into(), json!({"const": API_VERSION}));
        props.insert("kind".into(), json!({"const": kind.as_str()}));
    }
    let spec = serde_json::to_value(schemars::schema_for!(S)).unwrap_or(Json::Null);
    KindSchemas { document, spec }
}

/// The schemas of one kind: the one place a kind is tied to its spec type.
pub fn of(kind: Kind) -> KindSchemas {
    match kind {
        Kind::Datacenter | Kind::Cage | Kind::Zone => for_spec::<LocationSpec>(kind),
        Kind::Rack => for_spec::<RackSpec>(kind),
        Kind::Server
        | Kind::VirtualServer
        | Kind::NetworkSwitch
        | Kind::PowerStrip
        | Kind::ConsoleServer
        | Kind::Appliance => for_spec::<DeviceSpec>(kind),
        Kind::Pool => for_spec::<PoolSpec>(kind),
        Kind::IpManager => for_spec::<IpManagerSpec>(kind),
        Kind::NameManager => for_spec::<NameManagerSpec>(kind),
        Kind::Driver => for_spec::<DriverSpec>(kind),
        Kind::RackLayout => for_spec::<RackLayoutSpec>(kind),
        Kind::VmManager => for_spec::<VmManagerSpec>(kind),
        Kind::VirtualMachine => for_spec::<VirtualMachineSpec>(kind),
        Kind::Entity => for_spec::<EntitySpec>(kind),
    }
}

/// `server`, `ipmanager`, … (the file each kind's schema lives in).
pub fn file_stem(kind: Kind) -> String {
    kind.as_str().to_ascii_lowercase()
}

/// Every kind's schema, by kind.
pub fn all() -> Vec<(Kind, Json)> {
    Kind::ALL.into_iter().map(|k| (k, of(k).document)).collect()
}

/// One schema for any document, dispatching on `kind`: what a multi-kind
/// manifest file points its `$schema` comment at.
pub fn any() -> Json {
    let refs: Vec<Json> = Kind::ALL
        .into_iter()
        .map(|k| json!({"$ref": format!("{}.json", file_stem(k))}))
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "clusto manifest (any kind)",
        "oneOf": refs,
    })
}

/// Every file under `schemas/`: name and text.
pub fn files() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = all()
        .into_iter()
        .map(|(k, s)| (format!("{}.json", file_stem(k)), text(&s)))
        .collect();
    v.push(("clusto.json".into(), text(&any())));
    v
}

/// Pretty JSON text of a schema, as checked in under `schemas/`.
pub fn text(schema: &Json) -> String {
    let mut s = serde_json::to_string_pretty(schema).unwrap_or_default();
    s.push('\n');
    s
}
