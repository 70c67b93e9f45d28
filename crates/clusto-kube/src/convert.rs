//! Custom resource ⇄ manifest and inventory status ⇄ custom resource
//! status: pure, so the rules are read and tested without a cluster.

use clusto_core::Kind;
use clusto_manifest::Source;
use clusto_manifest::crd::{Condition, ObjectStatus};
use kube::api::DynamicObject;
use serde_json::{Value as Json, json};

/// Held on every custom resource whose object is in the store, so deleting
/// the resource first removes the object.
pub const FINALIZER: &str = "clusto.dev/store";

/// One custom resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn of(kind: Kind, o: &DynamicObject) -> Key {
        Key {
            kind,
            namespace: o.metadata.namespace.clone().unwrap_or_default(),
            name: o.metadata.name.clone().unwrap_or_default(),
        }
    }

    /// What manifest errors name as the file: `ns/servers/s1`.
    pub fn file(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.kind.plural(), self.name)
    }
}

/// The apply set that owns what a namespace's resources declare.
pub fn apply_set(namespace: &str) -> String {
    format!("k8s:{namespace}")
}

/// The manifest a custom resource stands for: its kind, name, labels and
/// spec, exactly as a manifest file would hold them (so the parser gives
/// the same errors as `clusto apply`).
pub fn manifest(key: &Key, o: &DynamicObject) -> Source {
    let mut metadata = json!({ "name": key.name });
    if let Some(l) = o.metadata.labels.as_ref().filter(|l| !l.is_empty()) {
        metadata["labels"] = json!(l);
    }
    let doc = json!({
        "apiVersion": clusto_manifest::types::API_VERSION,
        "kind": key.kind.as_str(),
        "metadata": metadata,
        "spec": o.data.get("spec").cloned().unwrap_or_else(|| json!({})),
    });
    Source {
        file: key.file(),
        text: serde_json::to_string_pretty(&doc).unwrap_or_default(),
    }
}

pub fn deleting(o: &DynamicObject) -> bool {
    o.metadata.deletion_timestamp.is_some()
}

pub fn has_finalizer(o: &DynamicObject) -> bool {
    o.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// Whether a new version of a resource needs applying: a new spec
/// (generation), labels, deletion, or our finalizer missing. Status and
/// other metadata changes (our own writes among them) do not.
pub fn needs_sync(old: Option<&DynamicObject>, new: &DynamicObject) -> bool {
    let Some(old) = old else { return true };
    old.metadata.generation != new.metadata.generation
        || old.metadata.labels != new.metadata.labels
        || deleting(old) != deleting(new)
        || !has_finalizer(new)
}

/// Whether `new` is an older version than `old` (a watch event arriving
/// after the response to our own later write). Resource versions are etcd
/// revisions here; one that is not a number is never called older.
pub fn older(new: &DynamicObject, old: &DynamicObject) -> bool {
    let rv = |o: &DynamicObject| o.metadata.resource_version.as_deref()?.parse::<u64>().ok();
    matches!((rv(new), rv(old)), (Some(n), Some(o)) if n < o)
}

/// What syncing one resource came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// In the store as declared; `inventory` is the object's status there
    /// (as `clusto get -o json` prints it).
    Synced { uid: Option<i64>, inventory: Json },
    /// The store refused it, with what `clusto apply` would print.
    Refused(String),
    /// Being deleted and the object is gone (or was never this apply set's):
    /// the finalizer can go.
    Released,
    /// Being deleted: a VM the controller is still removing from its backend.
    Terminating,
}

fn condition(type_: &str, ok: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: None,
        observed_generation: None,
    }
}

/// `Ready` of a synced object: a VM is ready when its own `Ready`
/// condition says so (the VM controller writes it); anything else is ready
/// once it is in the store.
fn ready(kind: Kind, inventory: &Json) -> Condition {
    if kind != Kind::VirtualMachine {
        return condition("Ready", true, "InStore", "");
    }
    let own = inventory["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready");
    match own {
        Some(c) => condition(
            "Ready",
            c["status"] == "True",
            c["reason"].as_str().unwrap_or("Unknown"),
            c["message"].as_str().unwrap_or_default(),
        ),
        None => condition(
            "Ready",
            false,
            inventory["phase"].as_str().unwrap_or("Pending"),
            "waiting for the VM controller",
        ),
    }
}

/// The status a resource should have after `outcome`: `observedGeneration`,
/// `Synced` and `Ready`, and the inventory's own status. A condition whose
/// status did not change keeps its transition time from `old`.
pub fn status(
    kind: Kind,
    generation: Option<i64>,
    outcome: &Outcome,
    old: Option<&ObjectStatus>,
    now: &str,
) -> ObjectStatus {
    let (mut s, conditions) = match outcome {
        Outcome::Synced { inventory, .. } => {
            let mut inv = inventory.clone();
            if let Some(m) = inv.as_object_mut() {
                // The VM's own conditions are summarised by `Ready`.
                m.remove("conditions");
            }
            let s: ObjectStatus = serde_json::from_value(inv).unwrap_or_default();
            let synced = condition("Synced", true, "Applied", "");
            (s, vec![synced, ready(kind, inventory)])
        }
        Outcome::Refused(msg) => {
            // Keep what the inventory last said: the object may still be
            // there as it was before this spec.
            let s = old.cloned().unwrap_or_default();
            let synced = condition("Synced", false, "Refused", msg);
            let ready = condition("Ready", false, "NotSynced", "the spec is not in the store");
            (s, vec![synced, ready])
        }
        Outcome::Released | Outcome::Terminating => {
            let s = old.cloned().unwrap_or_default();
            let synced = condition("Synced", true, "Deleting", "");
            let ready = condition("Ready", false, "Deleting", "being removed from the store");
            (s, vec![synced, ready])
        }
    };
    s.observed_generation = generation;
    s.conditions = conditions
        .into_iter()
        .map(|mut c| {
            let before = old.and_then(|o| o.conditions.iter().find(|p| p.type_ == c.type_));
            c.observed_generation = generation;
            c.last_transition_time = match before {
                Some(p) if p.status == c.status => p.last_transition_time.clone(),
                _ => Some(now.to_string()),
            };
            c
        })
        .collect();
    s
}

/// A JSON merge patch turning status `old` into `new`: `new` whole, and
/// `null` for every top-level field `old` has and `new` does not (a VM's
/// host once it is gone).
pub fn status_patch(old: Option<&Json>, new: &ObjectStatus) -> Json {
    let mut patch = serde_json::to_value(new).unwrap_or_else(|_| json!({}));
    if let (Some(old), Some(p)) = (old.and_then(Json::as_object), patch.as_object_mut()) {
        for k in old.keys() {
            p.entry(k.clone()).or_insert(Json::Null);
        }
    }
    patch
}

/// The status the resource holds now, if it is one of ours.
pub fn current_status(o: &DynamicObject) -> Option<ObjectStatus> {
    serde_json::from_value(o.data.get("status")?.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cr(spec: Json) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "clusto.dev/v1alpha1", "kind": "Server",
            "metadata": {"name": "s1", "namespace": "dc", "generation": 3,
                         "labels": {"team": "infra"}},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn a_resource_is_the_manifest_it_names() {
        let o = cr(json!({"rack": "r1", "ru": 3}));
        let key = Key::of(Kind::Server, &o);
        assert_eq!(key.file(), "dc/servers/s1");
        let src = manifest(&key, &o);
        let (objs, errs) = clusto_manifest::parse::parse_sources_cached(&[src], None);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(objs[0].name(), "s1");
        assert_eq!(objs[0].metadata.labels["team"], "infra");
    }

    #[test]
    fn only_spec_labels_deletion_or_a_missing_finalizer_need_a_sync() {
        let mut a = cr(json!({"rack": "r1"}));
        assert!(needs_sync(None, &a));
        assert!(needs_sync(Some(&a), &a), "no finalizer yet");
        a.metadata.finalizers = Some(vec![FINALIZER.into()]);
        a.metadata.resource_version = Some("10".into());
        let mut b = a.clone();
        b.data["status"] = json!({"observedGeneration": 3});
        b.metadata.resource_version = Some("11".into());
        assert!(!needs_sync(Some(&a), &b), "a status write alone");
        assert!(older(&a, &b) && !older(&b, &a));
        b.metadata.generation = Some(4);
        assert!(needs_sync(Some(&a), &b));
        let mut c = a.clone();
        c.metadata.deletion_timestamp = b.metadata.creation_timestamp.clone().or(Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        ));
        assert!(needs_sync(Some(&a), &c));
    }

    #[test]
    fn a_bad_spec_fails_as_a_manifest_would() {
        let o = cr(json!({"rack": "r1", "rackUnit": 3}));
        let key = Key::of(Kind::Server, &o);
        let (_, errs) = clusto_manifest::parse::parse_sources_cached(&[manifest(&key, &o)], None);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].to_string().starts_with("dc/servers/s1:"),
            "{}",
            errs[0]
        );
        assert!(errs[0].rule.contains("rackUnit"), "{}", errs[0]);
    }

    #[test]
    fn synced_status_carries_the_inventory_and_keeps_transition_times() {
        let inv = json!({"addresses": [{"address": "10.0.0.5", "manager": "net"}],
                         "datacenter": "dc1"});
        let out = Outcome::Synced {
            uid: Some(1),
            inventory: inv,
        };
        let s1 = status(Kind::Server, Some(3), &out, None, "T1");
        assert_eq!(s1.observed_generation, Some(3));
        assert_eq!(s1.addresses[0].address.as_deref(), Some("10.0.0.5"));
        let names: Vec<_> = s1
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(names, [("Synced", "True"), ("Ready", "True")]);
        assert_eq!(s1.conditions[0].last_transition_time.as_deref(), Some("T1"));
        // Same outcome later: nothing changes, so a resync writes nothing.
        let s2 = status(Kind::Server, Some(3), &out, Some(&s1), "T2");
        assert_eq!(s1, s2);
        // Refused: Synced flips (new time), the inventory part stays.
        let s3 = status(
            Kind::Server,
            Some(4),
            &Outcome::Refused("Server s1: no".into()),
            Some(&s2),
            "T3",
        );
        assert_eq!(s3.conditions[0].status, "False");
        assert_eq!(s3.conditions[0].message, "Server s1: no");
        assert_eq!(s3.conditions[0].last_transition_time.as_deref(), Some("T3"));
        assert_eq!(s3.datacenter.as_deref(), Some("dc1"));
        assert_eq!(s3.observed_generation, Some(4));
    }

    #[test]
    fn a_status_patch_removes_what_is_gone() {
        let old = json!({"phase": "Running", "host": "h1", "observedGeneration": 1});
        let new = ObjectStatus {
            phase: Some("Deleting".into()),
            observed_generation: Some(2),
            ..ObjectStatus::default()
        };
        assert_eq!(
            status_patch(Some(&old), &new),
            json!({"phase": "Deleting", "host": null, "observedGeneration": 2})
        );
        assert_eq!(
            status_patch(None, &new),
            json!({"phase": "Deleting", "observedGeneration": 2})
        );
    }

    #[test]
    fn a_vm_is_ready_when_its_controller_says_so() {
        let pending = Outcome::Synced {
            uid: None,
            inventory: json!({"phase": "Provisioning"}),
        };
        let s = status(Kind::VirtualMachine, Some(1), &pending, None, "T");
        assert_eq!(s.conditions[1].status, "False");
        assert_eq!(s.conditions[1].reason, "Provisioning");
        assert_eq!(s.phase.as_deref(), Some("Provisioning"));
        let running = Outcome::Synced {
            uid: None,
            inventory: json!({"phase": "Running", "host": "h1", "backendId": "u-1",
                "conditions": [{"type": "Ready", "status": "True", "reason": "Running", "message": ""}]}),
        };
        let s = status(Kind::VirtualMachine, Some(1), &running, None, "T");
        assert_eq!(s.conditions[1].status, "True");
        assert_eq!(s.host.as_deref(), Some("h1"));
        assert_eq!(s.backend_id.as_deref(), Some("u-1"));
    }
}
