//! The store side of a sync: one namespace's changed resources applied (and
//! deleted ones removed) as one revision, with the same code as
//! `clusto apply`. A resource the store refuses is set aside and the rest
//! applied without it, so one bad resource never blocks the others.

use std::collections::{BTreeMap, BTreeSet};

use clusto_core::EntityId;

use clusto_manifest::apply::managed_by;
use clusto_manifest::{ApplyOptions, Loc, ManifestError, Source, apply};
use clusto_store::{RevisionMeta, Scope, Store, StoreError};

use crate::convert::{Key, Outcome, apply_set};

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{} error(s)", .0.len())]
    Manifest(Vec<ManifestError>),
}

/// One namespace's work: resources to apply (as manifests) and resources
/// being deleted (their finalizer still held).
#[derive(Debug, Default)]
pub struct Batch {
    pub namespace: String,
    pub live: Vec<(Key, Source)>,
    pub deleting: Vec<Key>,
}

/// What a batch came to: each resource's outcome, and the revision it
/// wrote (None when nothing changed).
pub struct Applied {
    pub outcomes: BTreeMap<Key, Outcome>,
    pub revision: Option<i64>,
    /// Every entity the revision changed: the batch's own objects and
    /// others whose status follows from them (a rack a server went into).
    pub touched: BTreeSet<EntityId>,
}

/// Applies `batch` as one revision (none when nothing changes) and says
/// what became of each resource.
pub async fn apply_batch(store: &Store, batch: Batch) -> Result<Applied, StoreError> {
    let opts = ApplyOptions {
        apply_set: apply_set(&batch.namespace),
        prune: false,
        force_conflicts: false,
    };
    let owner = opts.owner();
    let meta = RevisionMeta {
        message: format!(
            "kubernetes: {} resource(s) of namespace {}",
            batch.live.len() + batch.deleting.len(),
            batch.namespace
        ),
        manager: opts.apply_set.clone(),
        ..RevisionMeta::new("")
    };
    let mut out = BTreeMap::new();
    let mut live = batch.live;
    let mut deleting = batch.deleting;
    let mut revision = None;
    let mut touched = BTreeSet::new();
    loop {
        let sources: Vec<Source> = live.iter().map(|(_, s)| s.clone()).collect();
        let (objects, parse_errors) = clusto_manifest::parse::parse_sources_cached(&sources, None);
        if !parse_errors.is_empty() {
            set_aside(&parse_errors, &mut live, &mut deleting, &mut out);
            continue;
        }
        let written = store
            .write(&meta, |inv| -> Result<(), Failure> {
                let mut errors = Vec::new();
                for key in &deleting {
                    let Ok(e) = inv.get(&key.name) else { continue };
                    let id = e.id;
                    let ours = managed_by(inv, id) == Some(owner.as_str());
                    if ours && let Err(err) = inv.delete(id) {
                        errors.push(ManifestError {
                            loc: Loc {
                                file: key.file(),
                                line: 1,
                                column: 1,
                            },
                            object: Some(format!("{} {}", key.kind, key.name)),
                            rule: format!("cannot delete: {err}"),
                        });
                    }
                }
                errors.extend(apply(inv, &objects, &opts));
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(Failure::Manifest(errors))
                }
            })
            .await;
        match written {
            Ok(w) => {
                revision = w.revision;
                touched = w.changes.entities();
                break;
            }
            Err(Failure::Store(e)) => return Err(e),
            Err(Failure::Manifest(errors)) => {
                set_aside(&errors, &mut live, &mut deleting, &mut out)
            }
        }
        if live.is_empty() && deleting.is_empty() {
            break;
        }
    }
    read_outcomes(store, &owner, &live, &deleting, &mut out).await?;
    Ok(Applied {
        outcomes: out,
        revision,
        touched,
    })
}

/// Refuses the resources `errors` are about and drops them from the batch.
/// An error that names no resource of the batch refuses all of them: it
/// cannot be pinned on one, and retrying would fail the same way.
fn set_aside(
    errors: &[ManifestError],
    live: &mut Vec<(Key, Source)>,
    deleting: &mut Vec<Key>,
    out: &mut BTreeMap<Key, Outcome>,
) {
    let all: Vec<Key> = live
        .iter()
        .map(|(k, _)| k.clone())
        .chain(deleting.iter().cloned())
        .collect();
    let mut blamed: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    for e in errors {
        let message = match &e.object {
            Some(o) => format!("{o}: {}", e.rule),
            None => e.rule.clone(),
        };
        let by_file = all.iter().find(|k| k.file() == e.loc.file);
        let by_name = || {
            all.iter()
                .find(|k| e.object.as_deref() == Some(format!("{} {}", k.kind, k.name).as_str()))
        };
        match by_file.or_else(by_name) {
            Some(k) => blamed.entry(k.clone()).or_default().push(message),
            None => {
                for k in &all {
                    blamed.entry(k.clone()).or_default().push(message.clone());
                }
            }
        }
    }
    for (k, messages) in blamed {
        live.retain(|(l, _)| *l != k);
        deleting.retain(|d| *d != k);
        out.insert(k, Outcome::Refused(messages.join("; ")));
    }
}

/// What the store holds now for the applied and deleted resources.
async fn read_outcomes(
    store: &Store,
    owner: &str,
    live: &[(Key, Source)],
    deleting: &[Key],
    out: &mut BTreeMap<Key, Outcome>,
) -> Result<(), StoreError> {
    let names = live
        .iter()
        .map(|(k, _)| k.name.as_str())
        .chain(deleting.iter().map(|k| k.name.as_str()));
    let (_, inv) = store.load_scope(&Scope::read(names), None).await?;
    for (key, _) in live {
        out.insert(key.clone(), synced(&inv, &key.name));
    }
    for key in deleting {
        let outcome = match inv.get(&key.name) {
            Ok(e) if inv.vm_deleting(e.id) && managed_by(&inv, e.id) == Some(owner) => {
                Outcome::Terminating
            }
            _ => Outcome::Released,
        };
        out.insert(key.clone(), outcome);
    }
    Ok(())
}

/// The inventory status of objects a later revision touched (what the VM
/// controller or a CLI user changed), for resources already synced.
pub async fn refresh(store: &Store, keys: &[Key]) -> Result<BTreeMap<Key, Outcome>, StoreError> {
    let (_, inv) = store
        .load_scope(&Scope::read(keys.iter().map(|k| k.name.as_str())), None)
        .await?;
    Ok(keys
        .iter()
        .filter(|k| inv.get(&k.name).is_ok())
        .map(|k| (k.clone(), synced(&inv, &k.name)))
        .collect())
}

fn synced(inv: &clusto_core::Inventory, name: &str) -> Outcome {
    match inv.get(name) {
        Ok(e) => Outcome::Synced {
            uid: Some(e.id.0),
            inventory: inv.resource(e.id, false)["status"].clone(),
        },
        Err(_) => Outcome::Synced {
            uid: None,
            inventory: serde_json::json!({}),
        },
    }
}
