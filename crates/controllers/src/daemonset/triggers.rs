//! Which DaemonSets a change of a node, pod or ControllerRevision must sync, as upstream's
//! informer handlers decide (spec §2.15; scenarios S-060..S-064, S-120, S-121). Pure functions
//! of the old and new versions and the DaemonSets; the controller feeds them every change.

use everynode_api::daemonset as rules;
use everynode_api::selector::from_label_selector;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::reflector::ObjectRef;
use std::sync::Arc;

type Refs = Vec<ObjectRef<DaemonSet>>;

fn reference(ds: &DaemonSet) -> ObjectRef<DaemonSet> {
    ObjectRef::from_obj(ds)
}

pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// The DaemonSet a controller reference points to, if it exists with that uid.
fn resolve<'a>(
    ns: &str,
    owner: &OwnerReference,
    daemonsets: &'a [Arc<DaemonSet>],
) -> Option<&'a DaemonSet> {
    if !rules::is_daemonset_ref(owner) {
        return None;
    }
    daemonsets
        .iter()
        .find(|d| {
            d.metadata.namespace.as_deref() == Some(ns)
                && d.metadata.name.as_deref() == Some(owner.name.as_str())
                && d.metadata.uid.as_deref() == Some(owner.uid.as_str())
        })
        .map(|d| &**d)
}

/// DaemonSets in the object's namespace whose selector matches its labels (who might adopt it).
fn matching(meta: &ObjectMeta, daemonsets: &[Arc<DaemonSet>]) -> Refs {
    let labels = meta.labels.clone().unwrap_or_default();
    daemonsets
        .iter()
        .filter(|d| d.metadata.namespace == meta.namespace)
        .filter(|d| {
            from_label_selector(d.spec.as_ref().map(|s| &s.selector))
                .is_ok_and(|s| !s.is_everything() && s.matches(&labels))
        })
        .map(|d| reference(d))
        .collect()
}

/// Upstream's handling of owned objects (pods and revisions) on update: the old owner when the
/// controller reference changed, the current owner, or, for an orphan whose labels or owner
/// changed, every DaemonSet that might adopt it.
fn owned_update(old: &ObjectMeta, new: &ObjectMeta, daemonsets: &[Arc<DaemonSet>]) -> Refs {
    if old.resource_version.is_some() && old.resource_version == new.resource_version {
        return Vec::new(); // a resync, not a change
    }
    let ns = new.namespace.as_deref().unwrap_or_default();
    let (old_ref, new_ref) = (controller_of(old), controller_of(new));
    let ref_changed = old_ref != new_ref;
    let mut out = Vec::new();
    if ref_changed && let Some(ds) = old_ref.and_then(|o| resolve(ns, o, daemonsets)) {
        out.push(reference(ds));
    }
    match new_ref {
        Some(owner) => out.extend(resolve(ns, owner, daemonsets).map(reference)),
        None if ref_changed || old.labels != new.labels => out.extend(matching(new, daemonsets)),
        None => {}
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|r| seen.insert(r.clone()));
    out
}

/// A pod was added (`old` none), updated, or deleted (`new` none).
pub fn for_pod(old: Option<&Pod>, new: Option<&Pod>, daemonsets: &[Arc<DaemonSet>]) -> Refs {
    match (old, new) {
        (Some(old), Some(new)) => owned_update(&old.metadata, &new.metadata, daemonsets),
        (None, Some(pod)) | (Some(pod), None) => {
            let meta = &pod.metadata;
            let ns = meta.namespace.as_deref().unwrap_or_default();
            match controller_of(meta) {
                Some(owner) => resolve(ns, owner, daemonsets)
                    .map(reference)
                    .into_iter()
                    .collect(),
                // An orphan appearing may be adopted; one disappearing concerns nobody.
                None if new.is_some() => matching(meta, daemonsets),
                None => Vec::new(),
            }
        }
        (None, None) => Vec::new(),
    }
}

/// A ControllerRevision was added, updated or deleted. An owned revision appearing needs no
/// sync (its owner made it); a deleted one does (the current revision is recreated, S-120).
pub fn for_revision(
    old: Option<&ObjectMeta>,
    new: Option<&ObjectMeta>,
    daemonsets: &[Arc<DaemonSet>],
) -> Refs {
    match (old, new) {
        (Some(old), Some(new)) => owned_update(old, new, daemonsets),
        (None, Some(meta)) => match controller_of(meta) {
            Some(_) => Vec::new(),
            None => matching(meta, daemonsets),
        },
        (Some(meta), None) => {
            let ns = meta.namespace.as_deref().unwrap_or_default();
            controller_of(meta)
                .and_then(|owner| resolve(ns, owner, daemonsets))
                .map(reference)
                .into_iter()
                .collect()
        }
        (None, None) => Vec::new(),
    }
}

/// A node was added, updated or deleted: the DaemonSets for which it starts or stops being
/// eligible (`shouldRun` or `shouldContinueRunning` changes), and, when it turns ready or
/// unready or starts or stops shutting down (beyond.md §3.4, §5), those it is eligible for.
/// Heartbeats, allocatable and other status changes that move no decision sync nothing.
pub fn for_node(old: Option<&Node>, new: Option<&Node>, daemonsets: &[Arc<DaemonSet>]) -> Refs {
    let state =
        |node: Option<&Node>| node.map(|n| (rules::node_unready(n), rules::node_shutting_down(n)));
    let state_changed = old.is_some() && new.is_some() && state(old) != state(new);
    let eligibility = |node: Option<&Node>, ds: &DaemonSet| {
        node.map_or(
            rules::Eligibility {
                should_run: false,
                should_continue_running: false,
            },
            |n| rules::node_should_run(n, ds),
        )
    };
    daemonsets
        .iter()
        .filter(|ds| {
            let (before, after) = (eligibility(old, ds), eligibility(new, ds));
            before != after || (state_changed && (before.should_run || after.should_run))
        })
        .map(|ds| reference(ds))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn ds(name: &str, labels: Value, node_selector: Value) -> Arc<DaemonSet> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid")},
            "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                "spec": {"nodeSelector": node_selector, "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}}}]}}}}))
            .expect("ds"))
    }

    fn node(labels: Value, taints: Value, rv: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "node1", "labels": labels, "resourceVersion": rv},
            "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": "4"}, "conditions": [{"type": "Ready", "status": "True"}]}}))
        .expect("node")
    }

    fn names(refs: &Refs) -> Vec<&str> {
        let mut v: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        v.sort();
        v
    }

    fn l1() -> Value {
        json!({"name": "simple-daemon", "type": "production"})
    }

    fn pod(labels: Value, owner: Option<&str>, rv: &str) -> Pod {
        let owners = owner.map_or(json!([]), |o| {
            json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": o, "uid": format!("{o}-uid"), "controller": true}])
        });
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default", "labels": labels,
            "ownerReferences": owners, "resourceVersion": rv}, "spec": {"containers": []}}),
        )
        .expect("pod")
    }

    /// foo1 and foo2 select L1, foo3 selects L2 (upstream's event-routing fixture).
    fn three() -> Vec<Arc<DaemonSet>> {
        vec![
            ds("foo1", l1(), json!({})),
            ds("foo2", l1(), json!({})),
            ds(
                "foo3",
                json!({"name": "simple-daemon", "type": "test"}),
                json!({}),
            ),
        ]
    }

    #[test]
    fn s060_node_update_filtering() {
        let blue = [ds("foo", l1(), json!({"color": "blue"}))];
        let plain = node(json!({}), json!([]), "1");
        // An identical update (a resync) syncs nothing.
        assert!(for_node(Some(&plain), Some(&node(json!({}), json!([]), "1")), &blue).is_empty());
        // Labelled blue: the DaemonSet now wants a pod there.
        let labelled = node(json!({"color": "blue"}), json!([]), "2");
        assert_eq!(
            names(&for_node(Some(&plain), Some(&labelled), &blue)),
            ["foo"]
        );
        // A NoSchedule taint removed, for a DaemonSet without a selector.
        let any = [ds("foo", l1(), json!({}))];
        let tainted = node(
            json!({}),
            json!([{"key": "k", "value": "v", "effect": "NoSchedule"}]),
            "3",
        );
        assert_eq!(
            names(&for_node(Some(&tainted), Some(&plain), &any)),
            ["foo"]
        );
        // Only allocatable changed: nothing, even though the template requests cpu.
        let mut smaller = plain.clone();
        smaller.metadata.resource_version = Some("4".into());
        smaller.status.as_mut().expect("status").allocatable = Some(
            [(
                "cpu".to_owned(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
            )]
            .into(),
        );
        assert!(for_node(Some(&plain), Some(&smaller), &any).is_empty());
    }

    #[test]
    fn s061_node_add() {
        let blue = [ds("foo", l1(), json!({"color": "blue"}))];
        assert!(for_node(None, Some(&node(json!({}), json!([]), "1")), &blue).is_empty());
        let added = node(json!({"color": "blue"}), json!([]), "1");
        assert_eq!(names(&for_node(None, Some(&added), &blue)), ["foo"]);
        // And its deletion concerns the DaemonSet that ran there.
        assert_eq!(names(&for_node(Some(&added), None, &blue)), ["foo"]);
    }

    #[test]
    fn s062_deleting_non_daemon_pods_does_not_resync() {
        let dss = three();
        assert!(for_pod(Some(&pod(l1(), None, "1")), None, &dss).is_empty());
        let mut other = pod(l1(), None, "1");
        other.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "rs".into(),
            uid: "rs-uid".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        assert!(for_pod(Some(&other), None, &dss).is_empty());
    }

    #[test]
    fn s064_event_routing() {
        let dss = three();
        // Owned pod: add, update, delete enqueue only its owner.
        let owned = pod(l1(), Some("foo1"), "1");
        assert_eq!(names(&for_pod(None, Some(&owned), &dss)), ["foo1"]);
        assert_eq!(
            names(&for_pod(
                Some(&owned),
                Some(&pod(l1(), Some("foo1"), "2")),
                &dss
            )),
            ["foo1"]
        );
        assert_eq!(names(&for_pod(Some(&owned), None, &dss)), ["foo1"]);
        // Orphan add: every DaemonSet whose selector matches.
        let orphan = pod(l1(), None, "1");
        assert_eq!(names(&for_pod(None, Some(&orphan), &dss)), ["foo1", "foo2"]);
        // Orphan update with unchanged labels: nothing; with changed labels: the matching ones.
        assert!(for_pod(Some(&orphan), Some(&pod(l1(), None, "2")), &dss).is_empty());
        let before = pod(json!({"name": "other"}), None, "1");
        assert_eq!(
            names(&for_pod(Some(&before), Some(&pod(l1(), None, "2")), &dss)),
            ["foo1", "foo2"]
        );
        // Controller reference changed foo2 → foo1: both.
        let moved = pod(l1(), Some("foo1"), "2");
        assert_eq!(
            names(&for_pod(
                Some(&pod(l1(), Some("foo2"), "1")),
                Some(&moved),
                &dss
            )),
            ["foo1", "foo2"]
        );
        // Controller reference removed: the old owner and the matching ones.
        let released = pod(l1(), None, "2");
        assert_eq!(
            names(&for_pod(
                Some(&pod(l1(), Some("foo2"), "1")),
                Some(&released),
                &dss
            )),
            ["foo1", "foo2"]
        );
        // Orphan delete: nothing.
        assert!(for_pod(Some(&orphan), None, &dss).is_empty());
    }

    fn revision(owner: Option<&str>) -> ObjectMeta {
        pod(l1(), owner, "1").metadata
    }

    #[test]
    fn s120_deleted_current_revision_resyncs_its_owner() {
        assert_eq!(
            names(&for_revision(Some(&revision(Some("foo1"))), None, &three())),
            ["foo1"]
        );
    }

    #[test]
    fn s121_creating_an_owned_revision_does_not_trigger_a_sync() {
        let dss = three();
        assert!(for_revision(None, Some(&revision(Some("foo1"))), &dss).is_empty());
        // An orphan revision may be adopted: the matching DaemonSets look.
        assert_eq!(
            names(&for_revision(None, Some(&revision(None)), &dss)),
            ["foo1", "foo2"]
        );
    }
}
