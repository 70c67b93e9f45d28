//! `clusto export`: manifests for any part of the inventory, including
//! objects made by hand, such that applying them back is a no-op.

use serde_json::{Map, Value as Json, json};

/// Documents as one YAML stream (`---` before each), as `clusto export`
/// prints them and `clusto import --out` writes them.
pub fn to_yaml(docs: &[Json]) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(d)?);
    }
    Ok(out)
}

/// The manifest that declares an object (what `clusto get -o json` and the
/// API answer): its name, labels, annotations and spec, with the addresses
/// it holds, and no status. Applying it back changes nothing.
pub fn document(object: &Json) -> Json {
    let mut metadata = Map::new();
    metadata.insert("name".into(), object["metadata"]["name"].clone());
    for k in ["labels", "annotations"] {
        if let Some(v) = object["metadata"].get(k) {
            metadata.insert(k.into(), v.clone());
        }
    }
    let mut spec = object["spec"].as_object().cloned().unwrap_or_default();
    if let Some(addrs) = object["status"]["addresses"].as_array()
        && !addrs.is_empty()
    {
        spec.insert("addresses".into(), Json::Array(addrs.clone()));
    }
    let mut doc = Map::new();
    doc.insert("apiVersion".into(), json!(crate::types::API_VERSION));
    doc.insert("kind".into(), object["kind"].clone());
    doc.insert("metadata".into(), Json::Object(metadata));
    if !spec.is_empty() {
        doc.insert("spec".into(), Json::Object(spec));
    }
    Json::Object(doc)
}
