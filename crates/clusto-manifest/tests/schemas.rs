//! The checked-in schemas must be what the types generate.

#[test]
fn schemas_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let mut stale = Vec::new();
    for (name, text) in clusto_manifest::schema::files() {
        let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        if on_disk != text {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ is stale ({}); run: clusto schema --out schemas",
        stale.join(", ")
    );
}

#[test]
fn crds_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/clusto/crds");
    let mut stale = Vec::new();
    for (name, text) in clusto_manifest::crd::files() {
        let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        if on_disk != text {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "charts/clusto/crds/ is stale ({}); run: clusto schema --crds charts/clusto/crds",
        stale.join(", ")
    );
}
