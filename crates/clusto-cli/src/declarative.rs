//! plan / apply / export / schema / rack add-server: the declarative path.

use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clusto_api::engine::{self, ApplyFailure, ApplyRequest};
use clusto_core::Kind;
use clusto_manifest::plan::{OutOfSync, Plan, PlanFile, out_of_sync, render_out_of_sync};
use clusto_manifest::{
    ApplyOptions, ManifestError, Object, Source, layout, parse_sources, read_sources, schema,
};
use clusto_store::{RevisionMeta, Store, StoreError};
use serde_json::json;

use crate::output::{Format, emit, paint, print_json, print_yaml};

#[derive(clap::Args, Debug, Clone)]
pub struct ManifestArgs {
    /// Manifest files or directories (recursively *.yaml|*.yml); `-` reads stdin.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    /// The apply set that owns these objects (default: derived from the paths).
    #[arg(long)]
    pub apply_set: Option<String>,
    /// Delete objects of this apply set that the manifests no longer declare.
    #[arg(long)]
    pub prune: bool,
    /// Take over the fields another apply set owns that these manifests would change
    /// (declaring the values it recorded is never a conflict).
    #[arg(long)]
    pub force_conflicts: bool,
}

/// `manifests/` → `manifests`, `rack.yaml` → `rack`, several → joined with `+`.
fn default_apply_set(files: &[String]) -> String {
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            if f == "-" {
                return "stdin".to_string();
            }
            let t = f.trim_end_matches('/');
            let t = t.rsplit('/').next().unwrap_or(t);
            let t = t
                .strip_suffix(".yaml")
                .or_else(|| t.strip_suffix(".yml"))
                .unwrap_or(t);
            t.to_string()
        })
        .collect();
    names.join("+")
}

pub(crate) fn options(a: &ManifestArgs) -> ApplyOptions {
    ApplyOptions {
        apply_set: a
            .apply_set
            .clone()
            .unwrap_or_else(|| default_apply_set(&a.files)),
        prune: a.prune,
        force_conflicts: a.force_conflicts,
    }
}

pub(crate) fn report<E: std::fmt::Display>(errors: &[E]) -> ExitCode {
    for e in errors {
        eprintln!("error: {e}");
    }
    eprintln!("{} error(s); nothing was changed.", errors.len());
    ExitCode::FAILURE
}

pub(crate) fn parse(sources: &[Source]) -> Result<Vec<Object>, Vec<ManifestError>> {
    let (objects, errors) = parse_sources(sources);
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

pub(crate) fn print_plan(plan: &Plan, oos: &[OutOfSync], base: i64, fmt: Format) -> Result<()> {
    let data = || {
        let mut d = json!({"baseRevision": base, "changes": plan.changes, "summary": plan.summary});
        if !oos.is_empty() {
            d["outOfSync"] = json!(oos);
        }
        d
    };
    match fmt {
        Format::Json => print_json(&data()),
        Format::Yaml => print_yaml(&data()),
        _ => {
            print!("{}", plan.render(&paint));
            print!("{}", render_out_of_sync(oos, &paint));
            Ok(())
        }
    }
}

pub async fn plan(
    store: &Store,
    fmt: Format,
    args: &ManifestArgs,
    out: Option<&str>,
    detailed: bool,
) -> Result<ExitCode> {
    if args.files.is_empty() {
        bail!("give the manifests with -f FILE|DIR|-");
    }
    // Parse the manifests while the inventory loads: the two are independent.
    let files = args.files.clone();
    let parsing = tokio::task::spawn_blocking(move || -> Result<_> {
        let t = std::time::Instant::now();
        let sources = read_sources(&files)?;
        let parsed = parse(&sources);
        tracing::info!(elapsed = ?t.elapsed(), "manifests parsed");
        Ok((sources, parsed))
    });
    let opts = options(args);
    let t = std::time::Instant::now();
    let loaded = store.load_head().await;
    tracing::info!(elapsed = ?t.elapsed(), "inventory loaded");
    let (sources, parsed) = parsing.await??;
    let objects = match parsed {
        Ok(o) => o,
        Err(e) => return Ok(report(&e)),
    };
    let (head, mut inv) = loaded?;
    let t = std::time::Instant::now();
    let declared = objects.iter().filter_map(|o| inv.id_of(o.name()).ok());
    let oos = out_of_sync(&inv, declared);
    let plan = engine::plan(&mut inv, &objects, &opts);
    // The process ends with this command: freeing a large inventory and
    // its manifests piece by piece took a tenth of a no-op plan, and the
    // kernel takes the memory back at exit anyway.
    std::mem::forget(inv);
    std::mem::forget(objects);
    let plan = match plan {
        Ok(p) => p,
        Err(e) => return Ok(report(&e)),
    };
    tracing::info!(elapsed = ?t.elapsed(), "plan computed");
    print_plan(&plan, &oos, head, fmt)?;
    if let Some(path) = out {
        let file = PlanFile::new(head, &opts, sources, plan.clone());
        std::fs::write(path, serde_json::to_string_pretty(&file)?)
            .with_context(|| format!("writing {path}"))?;
        eprintln!("Saved the plan to {path}; apply it with: clusto apply {path}");
    }
    Ok(if detailed && !plan.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn apply_cmd(
    store: &Store,
    fmt: Format,
    args: Option<&ManifestArgs>,
    plan_file: Option<&str>,
    dry_run: bool,
    message: Option<String>,
) -> Result<ExitCode> {
    let (sources, opts, expect, reviewed, label) = match (plan_file, args) {
        (Some(p), _) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {p}"))?;
            let f = PlanFile::read(&text).map_err(|e| anyhow!("{p}: {e}"))?;
            let opts = f.options();
            (
                f.sources,
                opts,
                Some(f.base_revision),
                Some(f.plan),
                p.to_string(),
            )
        }
        (None, Some(a)) if !a.files.is_empty() => (
            read_sources(&a.files)?,
            options(a),
            None,
            None,
            a.files.join(" "),
        ),
        (None, Some(_)) | (None, None) => {
            bail!("give the manifests with -f FILE|DIR|-, or a plan file")
        }
    };
    let objects = match parse(&sources) {
        Ok(o) => o,
        Err(e) => return Ok(report(&e)),
    };
    // Each object keeps its own document's text (for error snippets).
    drop(sources);
    if dry_run {
        let (head, mut inv) = store.load_head().await?;
        return match engine::plan(&mut inv, &objects, &opts) {
            Ok(p) => {
                print_plan(&p, &[], head, fmt)?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Ok(report(&e)),
        };
    }
    let meta = RevisionMeta {
        manager: opts.owner(),
        ..RevisionMeta::new(message.unwrap_or_else(|| format!("apply {label}")))
    };
    let r = engine::apply_manifests(
        store,
        ApplyRequest {
            meta: &meta,
            objects,
            opts: &opts,
            expect_head: expect,
            reviewed: reviewed.as_ref(),
        },
    )
    .await;
    let w = match r {
        Ok(w) => w,
        Err(ApplyFailure::Manifest(e)) => return Ok(report(&e)),
        Err(e) => return Err(e.into()),
    };
    tracing::info!(
        statements = w.statements,
        rows = w.changes.added.len() + w.changes.removed.len(),
        "apply written"
    );
    print_applied(fmt, &w.value, w.revision)?;
    Ok(ExitCode::SUCCESS)
}

fn write_files(dir: &str, files: &[(String, String)], what: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    for (name, text) in files {
        let path = format!("{dir}/{name}");
        std::fs::write(&path, text).with_context(|| format!("writing {path}"))?;
    }
    eprintln!("wrote {} {what} to {dir}", files.len());
    Ok(())
}

pub fn schema_cmd(out: Option<&str>, crds: Option<&str>) -> Result<()> {
    let all = schema::all();
    if let Some(dir) = crds {
        write_files(dir, &clusto_manifest::crd::files(), "CRDs")?;
    }
    match out {
        Some(dir) => write_files(dir, &schema::files(), "schemas")?,
        None if crds.is_some() => {}
        None => {
            let m: serde_json::Map<String, serde_json::Value> = all
                .into_iter()
                .map(|(k, s)| (k.as_str().to_string(), s))
                .collect();
            print_json(&serde_json::Value::Object(m))?;
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
enum PlaceFailure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Place(#[from] layout::PlaceError),
}

pub async fn rack_add_server(
    store: &Store,
    meta: &RevisionMeta,
    rack: &str,
    switch: Option<&str>,
    switch_port: u32,
    name: Option<&str>,
    name_manager: Option<&str>,
) -> Result<()> {
    // The rack with everything in it (the layout's switch, power and
    // console devices and their cables), the layouts; then the slot says
    // which name and address managers the write needs.
    let mut scope = clusto_store::Scope::write([rack])
        .with_descendants_of(rack)
        .with_kind(Kind::RackLayout);
    let (_, view) = store.load_scope(&scope, None).await?;
    let slot =
        layout::slot_for(&view, rack, switch, switch_port).map_err(|e| anyhow!("{rack}: {e}"))?;
    scope = match name {
        Some(n) => scope.name(n),
        None => scope.with_next_name(name_manager.unwrap_or(slot.name_manager())),
    };
    for m in slot.address_managers() {
        scope = scope.with_next_address(m);
    }
    let w = store
        .write_scope(meta, &scope, |inv| -> Result<String, PlaceFailure> {
            let id = layout::place_server(inv, rack, switch, switch_port, name, name_manager)?;
            Ok(inv.name_of(id).to_string())
        })
        .await
        .map_err(|e| anyhow!("{rack}: {e}"))?;
    println!("{}", w.value);
    Ok(())
}

/// What an apply did: the changes and the revision (or, in JSON/YAML, the
/// plan with the revision), as the CLI and `--server` print it.
pub(crate) fn print_applied(fmt: Format, plan: &Plan, revision: Option<i64>) -> Result<()> {
    match fmt {
        Format::Json | Format::Yaml => emit(
            fmt,
            &json!({"revision": revision, "changes": plan.changes, "summary": plan.summary}),
            &[],
            vec![],
        )?,
        _ => {
            if plan.is_empty() && revision.is_none() {
                println!("No changes.");
            } else {
                let text = plan.render(&paint);
                // The summary line of a plan says "Plan:"; after apply say what was done.
                let body = text.rsplit_once("\n\n").map(|x| x.0).unwrap_or("");
                if !body.is_empty() {
                    println!("{body}\n");
                }
                println!(
                    "Apply complete! Resources: {} added, {} changed, {} destroyed (revision {}).",
                    plan.summary.add,
                    plan.summary.change,
                    plan.summary.destroy,
                    revision
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "none".into())
                );
            }
        }
    }
    Ok(())
}
