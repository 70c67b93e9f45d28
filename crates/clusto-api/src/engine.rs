//! Plan and apply, shared by `clusto plan|apply` and the API's `/plan` and
//! `/apply`: one engine, so a plan reads the same from either.

use clusto_core::Inventory;
use clusto_manifest::plan::Plan;
use clusto_manifest::{ApplyOptions, ManifestError, Object, apply};
use clusto_store::{RevisionMeta, Store, StoreError, Written};

#[derive(Debug, thiserror::Error)]
pub enum ApplyFailure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{} error(s) in the manifests; nothing was changed", .0.len())]
    Manifest(Vec<ManifestError>),
    #[error("the plan computed now differs from the reviewed plan; plan again")]
    PlanDiffers,
}

/// The plan of `objects` against `inv`: applied to `inv` itself, the
/// touched entities snapshotted, then undone for the before-side, so `inv`
/// is left as it was (no full copy).
pub fn plan(
    inv: &mut Inventory,
    objects: &[Object],
    opts: &ApplyOptions,
) -> Result<Plan, Vec<ManifestError>> {
    let t = std::time::Instant::now();
    let errors = apply(inv, objects, opts);
    tracing::debug!(elapsed = ?t.elapsed(), "manifests applied");
    let changes = inv.take_changes();
    if !errors.is_empty() {
        inv.revert(&changes);
        return Err(errors);
    }
    let touched = changes.entities();
    let after = clusto_manifest::plan::snapshot(inv, &touched, false);
    inv.revert(&changes);
    let before = clusto_manifest::plan::snapshot(inv, &touched, true);
    Ok(clusto_manifest::plan::diff_snapshots(before, after))
}

/// The plan of the changes pending in `inv`, which stay pending: the
/// touched entities as they are, and as they were — the changes undone
/// for a moment and redone, unless every touched entity is new (a first
/// apply). No copy of the inventory, which at a million servers is
/// gigabytes.
fn pending_plan(inv: &mut Inventory) -> Plan {
    let touched = inv.changes().entities();
    let after = clusto_manifest::plan::snapshot(inv, &touched, false);
    let before = if inv.changes().creates_all(&touched) {
        Default::default()
    } else {
        let changes = inv.take_changes();
        inv.revert(&changes);
        let before = clusto_manifest::plan::snapshot(inv, &touched, true);
        inv.redo(changes);
        before
    };
    clusto_manifest::plan::diff_snapshots(before, after)
}

/// What an apply is given besides the manifests.
pub struct ApplyRequest<'a> {
    pub meta: &'a RevisionMeta,
    /// Owned: they are dropped once applied, before the plan is diffed and
    /// the rows written (a million parsed manifests are gigabytes).
    pub objects: Vec<Object>,
    pub opts: &'a ApplyOptions,
    /// Refuse unless the head is still this revision (a reviewed plan's base).
    pub expect_head: Option<i64>,
    /// Refuse unless the plan computed now equals this reviewed one.
    pub reviewed: Option<&'a Plan>,
}

/// Records the manifests as one revision (or none when nothing changes);
/// all or nothing.
pub async fn apply_manifests(
    store: &Store,
    req: ApplyRequest<'_>,
) -> Result<Written<Plan>, ApplyFailure> {
    store
        .write_at(
            req.meta,
            req.expect_head,
            |inv| -> Result<Plan, ApplyFailure> {
                let errors = apply(inv, &req.objects, req.opts);
                drop(req.objects);
                // Parsed on worker threads: at 100,000 servers the apply
                // peaked at 1.26 GB with that memory kept, 1.02 GB without.
                clusto_store::release_freed_memory();
                if !errors.is_empty() {
                    return Err(ApplyFailure::Manifest(errors));
                }
                let plan = pending_plan(inv);
                if let Some(r) = req.reviewed
                    && *r != plan
                {
                    return Err(ApplyFailure::PlanDiffers);
                }
                Ok(plan)
            },
        )
        .await
}
