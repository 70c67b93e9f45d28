//! `clusto export`: manifests for any part of the inventory, including
//! objects made by hand, such that applying them back is a no-op.

use clusto_core::{EntityId, Inventory};
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

/// One manifest document per entity, in the given order.
pub fn export(inv: &Inventory, ids: &[EntityId]) -> Vec<Json> {
    ids.iter().filter_map(|id| document(inv, *id)).collect()
}

fn document(inv: &Inventory, id: EntityId) -> Option<Json> {
    let res = inv.resource(id, false);
    let e = inv.entity(id)?;
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(e.name));
    for k in ["labels", "annotations"] {
        if let Some(v) = res["metadata"].get(k) {
            metadata.insert(k.into(), v.clone());
        }
    }
    let mut spec = res["spec"].as_object().cloned().unwrap_or_default();
    if let Some(addrs) = res["status"]["addresses"].as_array()
        && !addrs.is_empty()
    {
        spec.insert("addresses".into(), Json::Array(addrs.clone()));
    }
    let mut doc = Map::new();
    doc.insert("apiVersion".into(), json!(crate::types::API_VERSION));
    doc.insert("kind".into(), json!(e.kind.as_str()));
    doc.insert("metadata".into(), Json::Object(metadata));
    if !spec.is_empty() {
        doc.insert("spec".into(), Json::Object(spec));
    }
    Some(Json::Object(doc))
}
