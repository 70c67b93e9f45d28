//! JSON Schemas for every manifest kind, generated from the Rust types so
//! they cannot drift from what the parser accepts.

use clusto_core::Kind;
use schemars::JsonSchema;
use serde_json::{Value as Json, json};

use crate::types::*;

fn for_spec<S: JsonSchema + Default>(kind: Kind) -> Json {
    let mut schema = serde_json::to_value(schemars::schema_for!(Document<S>)).unwrap_or(Json::Null);
    schema["title"] = json!(kind.as_str());
    if let Some(props) = schema["properties"].as_object_mut() {
        props.insert("apiVersion".into(), json!({"const": API_VERSION}));
        props.insert("kind".into(), json!({"const": kind.as_str()}));
    }
    schema
}

/// `server`, `ipmanager`, … (the file each kind's schema lives in).
pub fn file_stem(kind: Kind) -> String {
    kind.as_str().to_ascii_lowercase()
}

/// Every kind's schema, by kind.
pub fn all() -> Vec<(Kind, Json)> {
    Kind::ALL
        .into_iter()
        .map(|k| {
            let s = match k {
                Kind::Datacenter | Kind::Cage | Kind::Zone => for_spec::<LocationSpec>(k),
                Kind::Rack => for_spec::<RackSpec>(k),
                Kind::Server
                | Kind::VirtualServer
                | Kind::NetworkSwitch
                | Kind::PowerStrip
                | Kind::ConsoleServer
                | Kind::Appliance => for_spec::<DeviceSpec>(k),
                Kind::Pool => for_spec::<PoolSpec>(k),
                Kind::IpManager => for_spec::<IpManagerSpec>(k),
                Kind::NameManager => for_spec::<NameManagerSpec>(k),
                Kind::Driver => for_spec::<DriverSpec>(k),
                Kind::RackLayout => for_spec::<RackLayoutSpec>(k),
                Kind::VmManager => for_spec::<VmManagerSpec>(k),
                Kind::VirtualMachine => for_spec::<VirtualMachineSpec>(k),
                Kind::Entity => for_spec::<EntitySpec>(k),
            };
            (k, s)
        })
        .collect()
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
