//! The checked-in schemas and CRDs must be what the types generate.

/// Files under `dir` (relative to the repository) whose text differs.
fn stale(dir: &str, files: Vec<(String, String)>) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(dir);
    files
        .into_iter()
        .filter(|(name, text)| std::fs::read_to_string(dir.join(name)).unwrap_or_default() != *text)
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn schemas_are_current() {
    let stale = stale("schemas", clusto_manifest::schema::files());
    assert!(
        stale.is_empty(),
        "schemas/ is stale ({}); run: clusto schema --out schemas",
        stale.join(", ")
    );
}

#[test]
fn crds_are_current() {
    let stale = stale("charts/clusto/crds", clusto_manifest::crd::files());
    assert!(
        stale.is_empty(),
        "charts/clusto/crds/ is stale ({}); run: clusto schema --crds charts/clusto/crds",
        stale.join(", ")
    );
}
