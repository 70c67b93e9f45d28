//! `clusto import clusto URL`: the original's database → manifests → one
//! apply, through the same engine as `clusto apply`.

use std::process::ExitCode;

use anyhow::Result;
use clusto_api::engine::{self, ApplyFailure, ApplyRequest};
use clusto_manifest::{ApplyOptions, Source, parse_sources};
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
    let mut out = Vec::new();
    for (name, docs) in files {
        let mut text = String::new();
        for d in docs {
            text.push_str("---\n");
            text.push_str(&serde_saphyr::to_string(d)?);
        }
        out.push(Source {
            file: name.clone(),
            text,
        });
    }
    Ok(out)
}

pub async fn from_clusto(
    store: &Store,
    fmt: Format,
    url: &str,
    out: Option<&str>,
    apply_set: &str,
    message: Option<String>,
) -> Result<ExitCode> {
    let original = clusto_import::read(url).await?;
    let mapped = clusto_import::map(&original);
    let sources = sources(&mapped.files)?;
    let objects: usize = mapped.files.iter().map(|(_, d)| d.len()).sum();
    for u in &mapped.unmapped {
        eprintln!("not imported: {u}");
    }
    if let Some(dir) = out {
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
    let (parsed, errors) = parse_sources(&sources);
    let opts = ApplyOptions {
        apply_set: apply_set.to_string(),
        prune: false,
        force_conflicts: false,
    };
    let meta = RevisionMeta {
        manager: opts.owner(),
        ..RevisionMeta::new(message.unwrap_or_else(|| format!("import clusto {}", redact(url))))
    };
    let result = if errors.is_empty() {
        engine::apply_manifests(
            store,
            ApplyRequest {
                meta: &meta,
                objects: &parsed,
                opts: &opts,
                expect_head: None,
                reviewed: None,
            },
        )
        .await
    } else {
        Err(ApplyFailure::Manifest(errors))
    };
    let w = match result {
        Ok(w) => w,
        Err(ApplyFailure::Manifest(errors)) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!(
                "{} error(s); nothing was imported (see the manifests with --out DIR)",
                errors.len()
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let unmapped: Vec<serde_json::Value> = mapped
        .unmapped
        .iter()
        .map(|u| json!({"entity": u.entity, "attribute": u.attribute, "why": u.why}))
        .collect();
    match fmt {
        Format::Json | Format::Yaml => emit(
            fmt,
            &json!({"revision": w.revision, "objects": objects, "summary": w.value.summary,
                    "unmapped": unmapped}),
            &[],
            vec![],
        )?,
        _ => println!(
            "Imported {objects} objects from {} ({} created, {} changed; revision {}); {} item(s) not imported.",
            redact(url),
            w.value.summary.add,
            w.value.summary.change,
            w.revision
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
