//! `/openapi/v3`: every path the server answers, its parameters, and the
//! shapes of what it returns. Built from the same kinds and routes the
//! router serves, so a new kind appears here without an edit.

use clusto_core::Kind;
use serde_json::{Value as Json, json};

use crate::API_VERSION;
use crate::read::Collection;

fn param(name: &str, within: &str, ty: &str, doc: &str) -> Json {
    // Counts and revisions are never negative; as in Kubernetes, a query
    // parameter given empty (`?limit=`) is the parameter left out.
    let schema = match (ty, within) {
        ("integer", "query") => json!({"anyOf": [{"type": ty, "minimum": 0}, {"const": ""}]}),
        ("boolean", "query") => json!({"anyOf": [{"type": ty}, {"const": ""}]}),
        ("integer", _) => json!({"type": ty, "minimum": 0}),
        _ => json!({"type": ty}),
    };
    json!({"name": name, "in": within, "required": within == "path", "schema": schema, "description": doc})
}

fn json_response(doc: &str, schema: &str) -> Json {
    json!({"description": doc, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

/// The error answers every API path can give.
fn errors() -> Json {
    let status = |doc: &str| json_response(doc, "Status");
    json!({
        "400": status("bad parameter (revision, query, continue token)"),
        "401": status("no or unknown bearer token"),
        "404": status("no such object or path"),
    })
}

fn with_errors(mut ok: Json, extra: &[(&str, &str)]) -> Json {
    let mut r = errors();
    r["200"] = ok.take();
    for (code, doc) in extra {
        r[*code] = json_response(doc, "Status");
    }
    r
}

fn collection_paths(paths: &mut serde_json::Map<String, Json>, coll: Collection) {
    let base = format!("/apis/{API_VERSION}/{}", coll.plural());
    let name = param("name", "path", "string", "the object's name");
    let mut rv = param(
        "resourceVersion",
        "query",
        "string",
        "a store revision (default: the head)",
    );
    rv["schema"]["pattern"] = json!("^[0-9]*$");
    let k = coll.item_kind();
    let summary = match coll {
        Collection::Of(kind) => format!("List {} (or watch them with watch=true)", kind.plural()),
        Collection::Entities => {
            "List (or watch) objects of every kind; items keep their own kind".into()
        }
    };
    paths.insert(
        base.clone(),
        json!({"get": {
            "operationId": format!("list{k}"),
            "summary": summary,
            "parameters": [
                param("query", "query", "string", "an expression in clusto's query language"),
                param("limit", "query", "integer", "at most this many items; metadata.continue fetches the next page"),
                param("continue", "query", "string", "the token a previous page returned"),
                rv.clone(),
                param("watch", "query", "boolean", "stream ADDED/MODIFIED/DELETED/BOOKMARK events from resourceVersion on"),
                param("timeoutSeconds", "query", "integer", "end a watch after this long (0: right after the replay)"),
                param("allowWatchBookmarks", "query", "boolean", "accepted; bookmarks are always sent"),
            ],
            "responses": with_errors(json!({"description": "the list, or with watch=true newline-delimited WatchEvent objects",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/List"}},
                    crate::watch::STREAM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/WatchEvent"}}}}),
                &[("410", "the watch's resourceVersion is older than the watch window: list again")]),
        }}),
    );
    paths.insert(
        format!("{base}/{{name}}"),
        json!({"get": {
            "operationId": format!("read{k}"),
            "summary": format!("One {k}, as `clusto get {} NAME -o json` prints it", k.to_ascii_lowercase()),
            "parameters": [name.clone(), rv.clone()],
            "responses": with_errors(json_response("the object", "Object"), &[]),
        }}),
    );
    if coll == Collection::Of(Kind::Rack) {
        paths.insert(
            format!("{base}/{{name}}/elevation"),
            json!({"get": {
                "operationId": "readRackElevation",
                "summary": "Which device sits at which units, as `clusto rack show RACK -o json` prints it",
                "parameters": [name.clone(), rv.clone()],
                "responses": with_errors(json_response("the elevation", "Elevation"), &[]),
            }}),
        );
    }
    for (view, needs) in crate::views::VIEWS {
        if needs.is_none_or(|k| coll == Collection::Of(k)) {
            paths.insert(
                format!("{base}/{{name}}/{view}"),
                view_path(k, view, &name, &rv),
            );
        }
    }
    paths.insert(
        format!("{base}/{{name}}/attributes"),
        json!({"get": {
            "operationId": format!("read{k}Attributes"),
            "summary": "Attributes, each with its source",
            "parameters": [name.clone(), rv, param("merged", "query", "boolean", "add the containers' attributes, nearest first")],
            "responses": with_errors(json_response("the attributes", "AttributeList"), &[]),
        }}),
    );
    paths.insert(
        format!("{base}/{{name}}/history"),
        json!({"get": {
            "operationId": format!("read{k}History"),
            "summary": "Revisions that touched the object, newest first",
            "parameters": [name, param("limit", "query", "integer", "at most this many (default 50; 0 = all)"),
                param("since", "query", "integer", "only revisions after this one")],
            "responses": with_errors(json_response("the revisions", "HistoryList"), &[]),
        }}),
    );
}

/// A point read's path (`crate::views`): what it answers and the CLI
/// command that prints the same.
fn view_path(k: &str, view: &str, name: &Json, rv: &Json) -> Json {
    let (schema, command) = match view {
        "description" => ("Description", "describe NAME"),
        "locate" => ("Places", "locate NAME"),
        "contents" => ("NamedList", "contents NAME"),
        "parents" => ("NamedList", "parents NAME"),
        "ports" => ("Ports", "port list NAME"),
        "members" => ("NamedList", "pool members POOL…"),
        "addresses" => ("AddressBook", "ip list MANAGER"),
        _ => ("PlacementView", "vm explain NAME"),
    };
    let mut params = vec![name.clone(), rv.clone()];
    match view {
        "contents" | "parents" => params.push(param(
            "recursive",
            "query",
            "boolean",
            "every level, not just the next",
        )),
        "members" => params.push(param(
            "and",
            "query",
            "string",
            "further pools, comma-separated: what is in every one",
        )),
        _ => {}
    }
    let mut op = String::from(view);
    op[..1].make_ascii_uppercase();
    json!({"get": {
        "operationId": format!("read{k}{op}"),
        "summary": format!("What `clusto {command}` shows"),
        "parameters": params,
        "responses": with_errors(json_response(view, schema), &[]),
    }})
}

/// The point reads' schemas, from the types they are made of.
fn view_schemas() -> serde_json::Map<String, Json> {
    use clusto_core::views::*;
    let mut g = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator();
    let mut named = serde_json::Map::new();
    for (name, schema) in [
        ("Places", g.subschema_for::<Vec<Place>>()),
        ("NamedList", g.subschema_for::<Vec<Named>>()),
        ("Ports", g.subschema_for::<Vec<PortView>>()),
        ("Description", g.subschema_for::<Description>()),
        ("AddressBook", g.subschema_for::<AddressBook>()),
        ("PlacementView", g.subschema_for::<PlacementView>()),
    ] {
        named.insert(name.into(), schema.to_value());
    }
    let mut all = g.take_definitions(true);
    // A type's own name and the path's name are the same schema.
    for (name, schema) in named {
        all.entry(name).or_insert(schema);
    }
    all
}

fn write_params() -> Json {
    json!([
        param(
            "applySet",
            "query",
            "string",
            "the apply set that owns these objects (default api)"
        ),
        param(
            "prune",
            "query",
            "boolean",
            "delete the set's objects the manifests no longer declare (admin)"
        ),
        param(
            "forceConflicts",
            "query",
            "boolean",
            "take over objects another apply set owns (admin)"
        ),
        param("dryRun", "query", "string", "All: plan only"),
    ])
}

fn write_path(op: &str, summary: &str) -> Json {
    let mut r = with_errors(
        json_response("the plan (apply: with the revision written)", "PlanResult"),
        &[
            ("403", "the token's role may not do this"),
            ("409", "another write conflicts"),
            ("422", "the manifests break a rule; nothing was changed"),
        ],
    );
    r.as_object_mut().map(|m| m.remove("404"));
    // `Accept: text/plain` asks for the plan as `clusto plan` prints it.
    r["200"]["content"]["text/plain"] = json!({"schema": {"type": "string"}});
    json!({"post": {
        "operationId": op,
        "summary": summary,
        "parameters": write_params(),
        "requestBody": {"required": true, "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/Manifest"}}}},
        "responses": r,
    }})
}

fn schemas() -> Json {
    json!({
        "Status": {"type": "object", "required": ["kind", "apiVersion", "status", "message", "reason", "code"],
            "properties": {"kind": {"type": "string"}, "apiVersion": {"type": "string"}, "metadata": {"type": "object"},
                "status": {"type": "string"}, "message": {"type": "string"}, "reason": {"type": "string"},
                "code": {"type": "integer"}, "details": {"type": "object"}}},
        "Manifest": {"type": "object", "required": ["apiVersion", "kind", "metadata"],
            "properties": {"apiVersion": {"const": API_VERSION},
                "kind": {"enum": Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()},
                "metadata": {"type": "object", "required": ["name"], "properties": {"name": {
                    "description": "a YAML scalar, read as text (a rack layout may be named 201001)",
                    "anyOf": [{"type": "string", "minLength": 1}, {"type": ["integer", "number", "boolean"]}]}}},
                "spec": {"type": "object"}}},
        "Object": {"type": "object", "required": ["apiVersion", "kind", "metadata"],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "metadata": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                "spec": {"type": "object"}, "status": {"type": "object"}}},
        "List": {"type": "object", "required": ["apiVersion", "kind", "metadata", "items"],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "metadata": {"type": "object", "properties": {"resourceVersion": {"type": "string"}, "continue": {"type": "string"}}},
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Object"}}}},
        "WatchEvent": {"type": "object", "required": ["type", "object"],
            "properties": {"type": {"type": "string", "enum": ["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]},
                "object": {"type": "object"}}},
        "AttributeList": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array",
            "items": {"type": "object", "required": ["key", "value", "source"],
                "properties": {"key": {"type": "string"}, "subkey": {"type": "string"}, "number": {"type": "integer"},
                    "value": {}, "type": {"type": "string"}, "source": {"type": "string"}}}}}},
        "Revision": {"type": "object", "required": ["revision", "time", "user", "manager", "message"],
            "properties": {"revision": {"type": "integer"}, "time": {"type": "string"}, "user": {"type": "string"},
                "manager": {"type": "string"}, "message": {"type": "string"},
                "changes": {"type": "array", "items": {"type": "object", "properties": {"op": {"type": "string"}, "text": {"type": "string"}}}}}},
        "HistoryList": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Revision"}}}},
        "RevisionList": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Revision"}}}},
        "Elevation": {"type": "object", "required": ["rack", "minU", "maxU", "mounted", "unplaced"],
            "properties": {"rack": {"type": "string"}, "minU": {"type": "integer"}, "maxU": {"type": "integer"},
                "mounted": {"type": "array", "items": {"type": "object", "required": ["name", "kind", "ru", "face", "fullDepth"],
                    "properties": {"name": {"type": "string"}, "kind": {"type": "string"}, "driver": {"type": "string"},
                        "ru": {"type": "object", "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}}},
                        "face": {"enum": ["front", "rear"]}, "fullDepth": {"type": "boolean"}}}},
                "unplaced": {"type": "array", "items": {"type": "string"}}}},
        "Violations": {"type": "object", "required": ["violations"], "properties": {"violations": {"type": "array",
            "items": {"type": "object", "required": ["rule", "objects", "detail"], "properties": {"rule": {"type": "string"},
                "objects": {"type": "array", "items": {"type": "string"}}, "detail": {"type": "string"}}}}}},
        "PlanResult": {"type": "object", "required": ["changes", "summary"],
            "properties": {"baseRevision": {"type": "integer"}, "revision": {"type": ["integer", "null"]},
                "changes": {"type": "array", "items": {"type": "object"}},
                "summary": {"type": "object", "properties": {"add": {"type": "integer"}, "change": {"type": "integer"}, "destroy": {"type": "integer"}}}}},
    })
}

/// The whole document.
pub fn document() -> Json {
    let mut paths = serde_json::Map::new();
    for k in Kind::ALL {
        collection_paths(&mut paths, Collection::Of(k));
    }
    collection_paths(&mut paths, Collection::Entities);
    paths.insert(format!("/apis/{API_VERSION}/revisions"), json!({"get": {
        "operationId": "listRevisions", "summary": "The revision log, newest first",
        "parameters": [param("limit", "query", "integer", "at most this many (default 50; 0 = all)"),
            param("since", "query", "integer", "only revisions after this one")],
        "responses": with_errors(json_response("the revisions", "RevisionList"), &[]),
    }}));
    paths.insert(format!("/apis/{API_VERSION}/fsck"), json!({"get": {
        "operationId": "fsck", "summary": "Every broken invariant, as `clusto fsck -o json` prints it (admin)",
        "parameters": [param("resourceVersion", "query", "string", "a store revision (default: the head)")],
        "responses": with_errors(json_response("the violations (none: an empty list)", "Violations"),
            &[("403", "the token's role may not do this")]),
    }}));
    paths.insert(
        format!("/apis/{API_VERSION}/plan"),
        write_path("plan", "The plan of the manifests in the body"),
    );
    paths.insert(
        format!("/apis/{API_VERSION}/apply"),
        write_path("apply", "Record the manifests in the body as one revision"),
    );
    let text = |doc: &str| json!({"description": doc, "content": {"text/plain": {"schema": {"type": "string"}}}});
    let metrics = json!({"description": "the metrics, OpenMetrics text",
        "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}});
    for (p, answer) in [
        ("/healthz", text("the process answers")),
        ("/metrics", metrics),
    ] {
        paths.insert(p.into(), json!({"get": {"operationId": p.trim_start_matches('/'), "security": [], "responses": {"200": answer}}}));
    }
    paths.insert(
        "/readyz".into(),
        json!({"get": {"operationId": "readyz", "security": [],
        "responses": {"200": text("ready"), "503": text("not ready yet")}}}),
    );
    let mut all_schemas = view_schemas();
    all_schemas.extend(schemas().as_object().cloned().unwrap_or_default());
    json!({
        "openapi": "3.1.0",
        "info": {"title": "clusto", "version": env!("CARGO_PKG_VERSION"),
            "description": "The clusto inventory, shaped like the Kubernetes API. Objects are what `clusto get -o json` prints."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": all_schemas,
        },
    })
}
