//! The plan: what an apply would create, change (field by field, old → new)
//! and destroy, computed by diffing the resource views before and after.

use std::collections::{BTreeMap, BTreeSet};

use clusto_core::{ChangeSet, EntityId, Inventory, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::apply::{APPLIED, MANAGED_BY};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Json>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectChange {
    pub action: Action,
    pub kind: String,
    pub name: String,
    pub fields: Vec<FieldChange>,
    /// The object's manifest is unchanged since it was applied, so these
    /// changes undo edits made outside the apply set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drift: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub changes: Vec<ObjectChange>,
    pub summary: Summary,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn summary_line(&self) -> String {
        if self.is_empty() {
            return "No changes. The inventory matches the manifests.".into();
        }
        format!(
            "Plan: {} to add, {} to change, {} to destroy.",
            self.summary.add, self.summary.change, self.summary.destroy
        )
    }

    /// Terraform-style text; `paint(code, text)` adds colour on a TTY.
    pub fn render(&self, paint: &dyn Fn(&str, &str) -> String) -> String {
        let mut s = String::new();
        for c in &self.changes {
            let (sym, code) = match c.action {
                Action::Create => ("+", "32"),
                Action::Update => ("~", "33"),
                Action::Delete => ("-", "31"),
            };
            let drift = if c.drift {
                " (drift: changed outside this apply set)"
            } else {
                ""
            };
            s.push_str(&format!(
                "{} {} {}{drift}\n",
                paint(code, sym),
                c.kind,
                c.name
            ));
            for f in &c.fields {
                let show =
                    |v: &Option<Json>| v.as_ref().map(compact).unwrap_or_else(|| "(none)".into());
                match c.action {
                    Action::Create => s.push_str(&format!("    {} = {}\n", f.path, show(&f.new))),
                    Action::Delete => {}
                    Action::Update => match (&f.old, &f.new) {
                        (None, Some(_)) => s.push_str(&format!(
                            "    {} {} = {}\n",
                            paint("32", "+"),
                            f.path,
                            show(&f.new)
                        )),
                        (Some(_), None) => s.push_str(&format!(
                            "    {} {} = {}\n",
                            paint("31", "-"),
                            f.path,
                            show(&f.old)
                        )),
                        _ => s.push_str(&format!(
                            "    {} {}: {} → {}\n",
                            paint("33", "~"),
                            f.path,
                            show(&f.old),
                            show(&f.new)
                        )),
                    },
                }
            }
        }
        s.push('\n');
        s.push_str(&self.summary_line());
        s.push('\n');
        s
    }
}

fn compact(v: &Json) -> String {
    match v {
        Json::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Flattens a resource into `path → value` for field-level diffs. Lists
/// keyed by identity (attributes, ports, addresses) become maps so a
/// change to one row shows as that row.
pub(crate) fn flatten(res: &Json) -> BTreeMap<String, Json> {
    let mut out = BTreeMap::new();
    if let Some(m) = res["metadata"].as_object() {
        for (k, v) in m {
            if k != "name" && k != "uid" {
                out.insert(format!("metadata.{k}"), v.clone());
            }
        }
    }
    if let Some(spec) = res["spec"].as_object() {
        for (k, v) in spec {
            match k.as_str() {
                "attrs" => {
                    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
                    for a in v.as_array().into_iter().flatten() {
                        let mut p = a["key"].as_str().unwrap_or_default().to_string();
                        if let Some(sk) = a["subkey"].as_str() {
                            p = format!("{p}.{sk}");
                        }
                        if let Some(n) = a["number"].as_i64() {
                            p = format!("{p}#{n}");
                        }
                        let i = seen.entry(p.clone()).or_default();
                        *i += 1;
                        let p = if *i > 1 { format!("{p}[{i}]") } else { p };
                        out.insert(format!("spec.attrs.{p}"), a["value"].clone());
                    }
                }
                "ports" => {
                    for p in v.as_array().into_iter().flatten() {
                        let port = p["port"].as_str().unwrap_or_default();
                        for (f, fv) in p.as_object().into_iter().flatten() {
                            if f != "port" {
                                out.insert(format!("spec.ports.{port}.{f}"), fv.clone());
                            }
                        }
                    }
                }
                _ => {
                    out.insert(format!("spec.{k}"), v.clone());
                }
            }
        }
    }
    for k in ["host", "placement"] {
        if let Some(v) = res["status"].get(k) {
            out.insert(format!("status.{k}"), v.clone());
        }
    }
    for a in res["status"]["addresses"].as_array().into_iter().flatten() {
        let mut d = a.clone();
        let addr = d["address"].as_str().unwrap_or_default().to_string();
        if let Some(o) = d.as_object_mut() {
            o.remove("address");
        }
        out.insert(format!("addresses.{addr}"), d);
    }
    out
}

/// What a plan needs of one entity on one side of a change.
#[derive(Clone, Debug)]
pub struct Snap {
    pub kind: String,
    pub name: String,
    pub driver: String,
    pub flat: BTreeMap<String, Json>,
    /// Before-side only: the entity is no longer as its apply set left it.
    pub drift: bool,
}

/// Snapshots of `ids` (those that exist) in `inv`.
pub fn snapshot(
    inv: &Inventory,
    ids: &BTreeSet<EntityId>,
    with_drift: bool,
) -> BTreeMap<EntityId, Snap> {
    ids.iter()
        .filter_map(|id| {
            let e = inv.entity(*id)?;
            // A VM marked for deletion is gone as far as manifests go; the
            // controller removes it once its backend has let go.
            if inv.vm_deleting(*id) {
                return None;
            }
            let flat = flatten(&inv.resource(*id, false));
            let drift = with_drift
                && matches!(inv.meta(*id, MANAGED_BY), Some(Value::String(_)))
                && matches!(inv.meta(*id, APPLIED), Some(Value::String(x)) if *x != crate::apply::hash_flat(&flat));
            Some((
                *id,
                Snap {
                    kind: e.kind.to_string(),
                    name: e.name.clone(),
                    driver: e.driver.clone(),
                    flat,
                    drift,
                },
            ))
        })
        .collect()
}

/// The plan for going from `before` to `after`, given what changed.
pub fn diff(before: &Inventory, after: &Inventory, changes: &ChangeSet) -> Plan {
    let touched = changes.entities();
    diff_snapshots(
        snapshot(before, &touched, true),
        snapshot(after, &touched, false),
    )
}

/// The plan between two sets of snapshots of the same entities. Consumes
/// them: a created object's fields move into the plan instead of being
/// copied (a first apply of a million servers held both copies at once).
pub fn diff_snapshots(
    mut before: BTreeMap<EntityId, Snap>,
    mut after: BTreeMap<EntityId, Snap>,
) -> Plan {
    let ids: BTreeSet<EntityId> = before.keys().chain(after.keys()).copied().collect();
    let mut plan = Plan::default();
    for id in ids {
        let change = match (before.remove(&id), after.remove(&id)) {
            (None, None) => continue,
            (None, Some(a)) => {
                plan.summary.add += 1;
                ObjectChange {
                    action: Action::Create,
                    kind: a.kind,
                    name: a.name,
                    fields: a
                        .flat
                        .into_iter()
                        .filter(|(p, _)| !p.starts_with("metadata.applied"))
                        .map(|(path, v)| FieldChange {
                            path,
                            old: None,
                            new: Some(v),
                        })
                        .collect(),
                    drift: false,
                }
            }
            (Some(b), None) => {
                plan.summary.destroy += 1;
                ObjectChange {
                    action: Action::Delete,
                    kind: b.kind.clone(),
                    name: b.name.clone(),
                    fields: vec![],
                    drift: false,
                }
            }
            (Some(b), Some(a)) => {
                let mut fields = Vec::new();
                if b.name != a.name {
                    fields.push(FieldChange {
                        path: "metadata.name".into(),
                        old: Some(Json::String(b.name.clone())),
                        new: Some(Json::String(a.name.clone())),
                    });
                }
                if b.driver != a.driver {
                    fields.push(FieldChange {
                        path: "spec.driver".into(),
                        old: Some(Json::String(b.driver.clone())),
                        new: Some(Json::String(a.driver.clone())),
                    });
                }
                let keys: BTreeSet<&String> = b.flat.keys().chain(a.flat.keys()).collect();
                for k in keys {
                    if k == "spec.driver" || k.starts_with("metadata.applied") {
                        continue;
                    }
                    if b.flat.get(k) != a.flat.get(k) {
                        fields.push(FieldChange {
                            path: k.clone(),
                            old: b.flat.get(k).cloned(),
                            new: a.flat.get(k).cloned(),
                        });
                    }
                }
                if fields.is_empty() {
                    continue;
                }
                plan.summary.change += 1;
                ObjectChange {
                    action: Action::Update,
                    kind: a.kind.clone(),
                    name: a.name.clone(),
                    fields,
                    drift: b.drift,
                }
            }
        };
        plan.changes.push(change);
    }
    plan.changes.sort_by(|a, b| {
        let rank = |c: &ObjectChange| match c.action {
            Action::Delete => 0,
            Action::Create => 1,
            Action::Update => 2,
        };
        (rank(a), &a.kind, &a.name).cmp(&(rank(b), &b.kind, &b.name))
    });
    plan
}

/// A device whose declared power the controller could not make so, as its
/// last status says. Not a change to apply: `clusto controller` acts on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutOfSync {
    pub kind: String,
    pub name: String,
    pub declared: String,
    /// The power last observed (`None`: never read, or unreadable).
    pub observed: Option<String>,
    pub reason: String,
    pub message: String,
}

/// The devices among `ids` whose recorded status says their power is not
/// as declared (read from the inventory: a plan in CI needs no BMC).
pub fn out_of_sync(inv: &Inventory, ids: impl IntoIterator<Item = EntityId>) -> Vec<OutOfSync> {
    let mut out = Vec::new();
    for id in ids {
        let (Some(e), Some(want)) = (inv.entity(id), inv.power_desired(id)) else {
            continue;
        };
        let st = inv.power_status(id);
        let Some(ready) = st.condition("Ready") else {
            continue;
        };
        if ready.status && st.power_state == Some(want) {
            continue;
        }
        out.push(OutOfSync {
            kind: e.kind.to_string(),
            name: e.name.clone(),
            declared: want.as_str().into(),
            observed: st.power_state.map(|p| p.as_str().to_string()),
            reason: ready.reason.clone(),
            message: ready.message.clone(),
        });
    }
    out.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    out
}

/// Text for [`out_of_sync`]'s findings; empty when there are none.
pub fn render_out_of_sync(items: &[OutOfSync], paint: &dyn Fn(&str, &str) -> String) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut s =
        String::from("\nNot as declared (the controller acts on these; nothing to apply):\n");
    for o in items {
        s.push_str(&format!(
            "  {} {} {}: powerState {}, observed {} ({}: {})\n",
            paint("35", "!"),
            o.kind,
            o.name,
            o.declared,
            o.observed.as_deref().unwrap_or("unknown"),
            o.reason,
            o.message
        ));
    }
    s
}

/// A reviewed plan, as `clusto plan --out` writes it and `clusto apply
/// PLAN` reads it: the sources it was computed from, the options and the
/// revision it was computed at, so apply can refuse a plan the store has
/// moved past.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanFile {
    pub api_version: String,
    pub kind: String,
    pub base_revision: i64,
    pub apply_set: String,
    pub prune: bool,
    pub force_conflicts: bool,
    pub sources: Vec<crate::Source>,
    pub plan: Plan,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error("not a plan file: {0}")]
    Json(#[source] serde_json::Error),
    #[error("not a plan file (kind {0:?}, expected \"Plan\")")]
    Kind(String),
    #[error("a plan file of {0:?}, this clusto reads {API}", API = crate::types::API_VERSION)]
    ApiVersion(String),
}

impl PlanFile {
    pub fn new(
        base_revision: i64,
        opts: &crate::ApplyOptions,
        sources: Vec<crate::Source>,
        plan: Plan,
    ) -> Self {
        PlanFile {
            api_version: crate::types::API_VERSION.into(),
            kind: "Plan".into(),
            base_revision,
            apply_set: opts.apply_set.clone(),
            prune: opts.prune,
            force_conflicts: opts.force_conflicts,
            sources,
            plan,
        }
    }

    /// Reads what [`PlanFile::new`] wrote (as JSON).
    pub fn read(text: &str) -> Result<Self, PlanFileError> {
        let f: PlanFile = serde_json::from_str(text).map_err(PlanFileError::Json)?;
        if f.kind != "Plan" {
            return Err(PlanFileError::Kind(f.kind));
        }
        if f.api_version != crate::types::API_VERSION {
            return Err(PlanFileError::ApiVersion(f.api_version));
        }
        Ok(f)
    }

    pub fn options(&self) -> crate::ApplyOptions {
        crate::ApplyOptions {
            apply_set: self.apply_set.clone(),
            prune: self.prune,
            force_conflicts: self.force_conflicts,
        }
    }
}

#[cfg(test)]
mod plan_file_tests {
    use super::*;

    #[test]
    fn a_plan_file_round_trips_and_bad_ones_say_why() {
        let opts = crate::ApplyOptions {
            apply_set: "team-a".into(),
            prune: true,
            force_conflicts: false,
        };
        let src = crate::Source {
            file: "rack.yaml".into(),
            text: "kind: Rack\n".into(),
        };
        let f = PlanFile::new(7, &opts, vec![src], Plan::default());
        let text = serde_json::to_string(&f).unwrap();
        let back = PlanFile::read(&text).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.options().apply_set, "team-a");
        assert!(back.options().prune);

        let e = PlanFile::read("{").unwrap_err().to_string();
        assert!(e.starts_with("not a plan file: EOF"), "{e}");
        let e = PlanFile::read(&text.replace("\"Plan\"", "\"Rack\"")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not a plan file (kind \"Rack\", expected \"Plan\")"
        );
        let e = PlanFile::read(&text.replace(crate::types::API_VERSION, "clusto.dev/v9"));
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("a plan file of \"clusto.dev/v9\""),
            "apiVersion checked"
        );
    }
}
