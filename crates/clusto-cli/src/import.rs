//! `clusto import clusto URL`: the original's database → manifests → one
//! apply, through the same engine as `clusto apply`.

use std::process::ExitCode;

use anyhow::Result;
use clusto_api::engine::{self, ApplyFailure, ApplyRequest};
use clusto_manifest::{ApplyOptions, ManifestError, Object, Source, parse_sources};
use clusto_store::{RevisionMeta, Store};
use serde_json::json;

use crate::output::{Format, emit};

/// `postgres://user:secret@host/db` → `postgres://user@host/db`, for
/// messages and the revision log.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let auth = &url[s + 3..at];
            match auth.split_once(':') {
                Some((user, _)) => format!("{}{user}{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The mapped documents as YAML sources, one per file.
fn sources(files: &[(String, Vec<serde_json::Value>)]) -> Result<Vec<Source>> {
    files
        .iter()
        .map(|(name, docs)| {
            Ok(Source {
                file: name.clone(),
                text: clusto_manifest::export::to_yaml(docs)?,
            })
        })
        .collect()
}

/// A mapped state as manifest objects; Err holds the manifest errors.
fn to_objects(mapped: &clusto_import::Mapped) -> Result<Result<Vec<Object>, Vec<ManifestError>>> {
    let (parsed, errors) = parse_sources(&sources(&mapped.files)?);
    Ok(if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    })
}

/// What one apply of an original state did.
struct Step {
    revision: Option<i64>,
    add: usize,
    change: usize,
}

/// Applies one state of the original (its live rows, or those of one
/// version) as the import apply set. Err holds the manifest errors.
async fn apply_objects(
    store: &Store,
    objects: Vec<Object>,
    opts: &ApplyOptions,
    meta: &RevisionMeta,
) -> Result<Result<Step, Vec<ManifestError>>> {
    let r = engine::apply_manifests(
        store,
        ApplyRequest {
            meta,
            objects,
            opts,
            expect_head: None,
            reviewed: None,
        },
    )
    .await;
    match r {
        Ok(w) => Ok(Ok(Step {
            revision: w.revision,
            add: w.value.summary.add,
            change: w.value.summary.change,
        })),
        Err(ApplyFailure::Manifest(e)) => Ok(Err(e)),
        Err(e) => Err(e.into()),
    }
}

/// The revision a version of the original becomes: its user, time and
/// description.
fn version_meta(v: &clusto_import::original::Version, base: &RevisionMeta) -> RevisionMeta {
    RevisionMeta {
        user: v
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or(base.user.clone()),
        message: v
            .description
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| format!("clusto version {}", v.version)),
        at_ms: v.at_ms(),
        ..base.clone()
    }
}

fn report_errors(errors: &[ManifestError], during: &str) -> ExitCode {
    for e in errors {
        eprintln!("error: {e}");
    }
    eprintln!(
        "{} error(s){during}; nothing was imported (see the manifests with --out DIR)",
        errors.len()
    );
    ExitCode::FAILURE
}

pub struct ImportArgs<'a> {
    pub url: &'a str,
    pub out: Option<&'a str>,
    pub apply_set: &'a str,
    pub with_history: bool,
    pub message: Option<String>,
}

pub async fn from_clusto(store: &Store, fmt: Format, a: ImportArgs<'_>) -> Result<ExitCode> {
    let original = clusto_import::read(a.url).await?;
    let live = original.at(None);
    let mapped = clusto_import::map(&live);
    let objects: usize = mapped.files.iter().map(|(_, d)| d.len()).sum();
    for u in &mapped.unmapped {
        eprintln!("not imported: {u}");
    }
    if let Some(dir) = a.out {
        let sources = sources(&mapped.files)?;
        std::fs::create_dir_all(dir)?;
        for s in &sources {
            std::fs::write(format!("{dir}/{}", s.file), &s.text)?;
        }
        eprintln!(
            "wrote {objects} objects in {} files to {dir}; {} item(s) not imported",
            sources.len(),
            mapped.unmapped.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // The import apply set owns what it brought; pruning lets a later
    // import (or a later version) remove what the original deleted.
    let opts = ApplyOptions {
        apply_set: a.apply_set.to_string(),
        prune: true,
        force_conflicts: false,
    };
    let base = RevisionMeta {
        manager: opts.owner(),
        ..RevisionMeta::new(
            a.message
                .clone()
                .unwrap_or_else(|| format!("import clusto {}", redact(a.url))),
        )
    };
    let live_objects = match to_objects(&mapped)? {
        Ok(o) => o,
        Err(e) => return Ok(report_errors(&e, "")),
    };
    let mut revisions = 0;
    if a.with_history {
        // The replay writes revision by revision, so the end state is
        // planned first (a whole-store plan, as `clusto plan`): if it would
        // be refused, nothing is written.
        let (_, mut inv) = store.load_head().await?;
        if let Err(e) = engine::plan(&mut inv, &live_objects, &opts) {
            return Ok(report_errors(&e, ""));
        }
        let versions = original.changing_versions();
        for (i, v) in versions.iter().enumerate() {
            let meta = match original.versions.iter().find(|x| x.version == *v) {
                Some(info) => version_meta(info, &base),
                None => RevisionMeta {
                    message: format!("clusto version {v}"),
                    ..base.clone()
                },
            };
            // The original versions every flush, so a version can be half
            // of one of its operations (a name manager before its digits);
            // such a state waits and lands with the version completing it.
            if let Ok(objs) = to_objects(&clusto_import::map(&original.at(Some(*v))))?
                && let Ok(step) = apply_objects(store, objs, &opts, &meta).await?
            {
                revisions += usize::from(step.revision.is_some());
            }
            if (i + 1) % 100 == 0 {
                eprintln!("replayed {}/{} versions", i + 1, versions.len());
            }
        }
    }
    let step = match apply_objects(store, live_objects, &opts, &base).await? {
        Ok(step) => step,
        Err(e) => return Ok(report_errors(&e, "")),
    };
    revisions += usize::from(step.revision.is_some());
    let unmapped: Vec<serde_json::Value> = mapped
        .unmapped
        .iter()
        .map(|u| json!({"entity": u.entity, "attribute": u.attribute, "why": u.why}))
        .collect();
    let head = store.head().await?;
    match fmt {
        Format::Json | Format::Yaml => emit(
            fmt,
            &json!({"revisions": revisions, "head": head, "objects": objects,
                    "unmapped": unmapped}),
            &[],
            vec![],
        )?,
        _ if a.with_history => println!(
            "Imported {objects} objects from {} with their history: {revisions} revision(s), head {head}; {} item(s) not imported.",
            redact(a.url),
            unmapped.len()
        ),
        _ => println!(
            "Imported {objects} objects from {} ({} created, {} changed; revision {}); {} item(s) not imported.",
            redact(a.url),
            step.add,
            step.change,
            step.revision
                .map(|r| r.to_string())
                .unwrap_or_else(|| "none: nothing changed".into()),
            unmapped.len()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            super::redact("postgres://clusto:s3cret@db:5432/clusto"),
            "postgres://clusto@db:5432/clusto"
        );
        assert_eq!(super::redact("sqlite:///var/x.db"), "sqlite:///var/x.db");
    }
}
