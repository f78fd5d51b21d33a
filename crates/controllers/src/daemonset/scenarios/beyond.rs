//! beyond.md §8 scenarios for the rollout controls, one test each, named after the scenario,
//! in the same in-memory world as the upstream scenarios.

use super::*;
use everynode_api::rollout_controls::{CANARY_NODE_SELECTOR, PARTITION, PAUSED, UNREADY_NODES};
use std::collections::BTreeSet;

impl World {
    fn annotate(&mut self, key: &str, value: Option<&str>) {
        let annotations = self
            .ds
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        match value {
            Some(v) => annotations.insert(key.into(), v.into()),
            None => annotations.remove(key),
        };
    }

    /// Passes (each followed by every pod becoming Ready) until two in a row change nothing.
    fn settle(&mut self) {
        let mut quiet = 0;
        for _ in 0..100 {
            let changed = self.pass() != (0, 0);
            self.ready_all();
            quiet = if changed { 0 } else { quiet + 1 };
            if quiet == 2 {
                return;
            }
        }
        panic!("the rollout did not settle in 100 passes");
    }

    /// The nodes whose pod runs the current template, in name order.
    fn updated_nodes(&self) -> Vec<String> {
        let hash = self.hash_of_current();
        let mut out: Vec<String> = self
            .pods
            .iter()
            .filter(|p| p.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)) == Some(&hash))
            .filter_map(rules::target_node)
            .collect();
        out.sort();
        out
    }
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("node-{i}")).collect()
}

/// Ten nodes running the old template, a new image, maxUnavailable 3 (or maxSurge 3).
fn steered(surge: bool) -> World {
    let ru = if surge {
        json!({"maxUnavailable": 0, "maxSurge": 3})
    } else {
        json!({"maxUnavailable": 3, "maxSurge": 0})
    };
    updated_world(10, json!({"type": "RollingUpdate", "rollingUpdate": ru}))
}

#[test]
fn b05_paused_replaces_nothing_but_still_places_pods() {
    for surge in [false, true] {
        let mut w = steered(surge);
        w.annotate(PAUSED, Some("true"));
        w.settle();
        assert!(
            w.updated_nodes().is_empty(),
            "surge {surge}: paused yet updated"
        );
        assert_eq!(w.pods.len(), 10);
        // A node added while paused gets a pod of the update revision; a node removed loses its pod.
        w.nodes.push(node("node-z", json!({})));
        w.nodes
            .retain(|n| n.metadata.name.as_deref() != Some("node-0"));
        w.settle();
        assert_eq!(w.updated_nodes(), ["node-z"], "surge {surge}");
        assert!(
            w.pods
                .iter()
                .all(|p| rules::target_node(p).as_deref() != Some("node-0")),
            "surge {surge}: node-0's pod stayed"
        );
        // Resuming ("false" or removing the annotation) completes the rollout.
        w.annotate(PAUSED, Some("false"));
        w.settle();
        assert_eq!(w.updated_nodes().len(), 10, "surge {surge}");
        assert_eq!(w.pods.len(), 10);
    }
}

#[test]
fn b06_partition_keeps_the_last_nodes_in_name_order() {
    for surge in [false, true] {
        let mut w = steered(surge);
        w.annotate(PARTITION, Some("3"));
        w.settle();
        assert_eq!(w.updated_nodes(), names(0..7), "surge {surge}");
        assert_eq!(w.pods.len(), 10);
        w.annotate(PARTITION, Some("0"));
        w.settle();
        assert_eq!(w.updated_nodes(), names(0..10), "surge {surge}");
    }
}

#[test]
fn b07_percentage_partition_rounds_up() {
    let mut w = steered(false);
    w.annotate(PARTITION, Some("25%"));
    w.settle();
    assert_eq!(w.updated_nodes(), names(0..7));
    // More than there are nodes keeps them all.
    let mut w = steered(false);
    w.annotate(PARTITION, Some("11"));
    w.settle();
    assert!(w.updated_nodes().is_empty());
}

#[test]
fn b08_canary_selector_updates_only_matching_nodes() {
    for surge in [false, true] {
        let mut w = steered(surge);
        for n in &mut w.nodes {
            let zone = if ["node-1", "node-4"].contains(&n.metadata.name.as_deref().unwrap_or("")) {
                "a"
            } else {
                "b"
            };
            n.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("zone".into(), zone.into());
        }
        w.annotate(CANARY_NODE_SELECTOR, Some("zone=a"));
        w.settle();
        assert_eq!(w.updated_nodes(), ["node-1", "node-4"], "surge {surge}");
        // Relabelling a node into zone a brings it into the rollout.
        if let Some(n) = w
            .nodes
            .iter_mut()
            .find(|n| n.metadata.name.as_deref() == Some("node-7"))
        {
            n.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("zone".into(), "a".into());
        }
        w.settle();
        assert_eq!(
            w.updated_nodes(),
            ["node-1", "node-4", "node-7"],
            "surge {surge}"
        );
        // Removing the annotation promotes the rollout to every node.
        w.annotate(CANARY_NODE_SELECTOR, None);
        w.settle();
        assert_eq!(w.updated_nodes(), names(0..10), "surge {surge}");
    }
}

#[test]
fn canary_and_partition_together_count_the_partition_over_all_eligible_nodes() {
    let mut w = steered(false);
    for n in &mut w.nodes {
        n.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("ring".into(), "0".into());
    }
    w.annotate(CANARY_NODE_SELECTOR, Some("ring=0"));
    w.annotate(PARTITION, Some("8"));
    w.settle();
    assert_eq!(w.updated_nodes(), names(0..2));
}

/// Ten nodes at the old template with maxUnavailable 1, where node-8 and node-9 are NotReady and
/// their pods unavailable (a pod there never becomes Ready).
fn two_unready() -> World {
    let mut w = steered(false);
    w.set_strategy(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
    );
    for n in &mut w.nodes {
        if matches!(n.metadata.name.as_deref(), Some("node-8" | "node-9")) {
            n.status = Some(
                serde_json::from_value(
                    json!({"conditions": [{"type": "Ready", "status": "False"}]}),
                )
                .expect("status"),
            );
        }
    }
    w.hold_unready();
    w
}

impl World {
    /// Every pod becomes Ready but those on NotReady nodes, which become not Ready.
    fn hold_unready(&mut self) {
        let now = self.now;
        let unready: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| rules::node_unready(n))
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        for p in &mut self.pods {
            let held = rules::target_node(p).is_some_and(|n| unready.contains(&n));
            if held || !rules::is_ready(p) {
                World::set_ready(p, !held, now);
            }
        }
    }

    /// Passes until two in a row change nothing, pods on NotReady nodes never Ready; returns
    /// the most pods one pass deleted.
    fn settle_holding_unready(&mut self) -> usize {
        let (mut quiet, mut most) = (0, 0);
        for _ in 0..100 {
            let (creates, deletes) = self.pass();
            most = most.max(deletes);
            self.hold_unready();
            quiet = if (creates, deletes) == (0, 0) {
                quiet + 1
            } else {
                0
            };
            if quiet == 2 {
                return most;
            }
        }
        panic!("the rollout did not settle in 100 passes");
    }
}

#[test]
fn b10_unready_nodes_excluded_from_the_budget() {
    // Upstream: the two unavailable pods use up maxUnavailable 1, so no Ready node updates.
    let mut w = two_unready();
    w.settle_holding_unready();
    let ready_nodes_updated: Vec<String> = w
        .updated_nodes()
        .into_iter()
        .filter(|n| n != "node-8" && n != "node-9")
        .collect();
    assert!(ready_nodes_updated.is_empty(), "{ready_nodes_updated:?}");
    let counted = w.condition("Available");
    assert_eq!(
        counted.message.as_deref(),
        Some("2 unavailable: 2 NotReady (node-8, node-9)")
    );
    // Excluded: the 8 Ready nodes update one at a time; the NotReady ones keep their pods.
    let mut w = two_unready();
    w.annotate(UNREADY_NODES, Some("exclude-from-budget"));
    let before: Vec<String> = ["node-8", "node-9"]
        .iter()
        .filter_map(|n| {
            w.pods
                .iter()
                .find(|p| rules::target_node(p).as_deref() == Some(*n))
        })
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(w.settle_holding_unready(), 1, "one at a time");
    assert_eq!(w.updated_nodes(), names(0..8));
    for name in before {
        assert!(w.has_pod(&name), "{name} on a NotReady node was replaced");
    }
    // `Available` names them apart from the pods that count.
    let apart = w.condition("Available");
    assert_eq!(
        (
            apart.status.as_str(),
            apart.reason.as_deref(),
            apart.message.as_deref()
        ),
        (
            "False",
            Some("NodeUnready"),
            Some(
                "2 pods unavailable on unready nodes (node-8, node-9), not counted against maxUnavailable"
            )
        )
    );
    // Once Ready again, those nodes update too.
    for n in &mut w.nodes {
        n.status = Some(
            serde_json::from_value(json!({"conditions": [{"type": "Ready", "status": "True"}]}))
                .expect("status"),
        );
    }
    w.settle();
    assert_eq!(w.updated_nodes(), names(0..10));
    assert_eq!(w.condition("Available").status, "True");
}

impl World {
    fn condition(&self, kind: &str) -> k8s_openapi::api::apps::v1::DaemonSetCondition {
        self.ds
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == kind))
            .cloned()
            .unwrap_or_else(|| panic!("a {kind} condition"))
    }

    fn progressing(&self) -> k8s_openapi::api::apps::v1::DaemonSetCondition {
        self.condition("Progressing")
    }
}

#[test]
fn b01_no_annotations_reach_rollout_complete() {
    let mut w = steered(false);
    w.settle();
    let c = w.progressing();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("True", Some("RolloutComplete"))
    );
    assert_eq!(c.message.as_deref(), Some("revision 2 on all 10 nodes"));
    // Nothing is written to the DaemonSet's own metadata without a control asking for it.
    let annotations = w.ds.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations.keys().all(|k| !k.starts_with("everynode.dev/")));
}

#[test]
fn b02_a_stalled_rollout_passes_its_deadline_naming_the_nodes() {
    let mut w = steered(false);
    w.annotate(
        everynode_api::rollout_controls::PROGRESS_DEADLINE_SECONDS,
        Some("30"),
    );
    // Three old pods go, three new ones never become Ready.
    assert_eq!(w.pass(), (0, 3));
    assert_eq!(w.pass(), (3, 0));
    assert_eq!(w.progressing().status, "True");
    assert!(
        w.plan()
            .requeue_after
            .is_some_and(|d| d <= Duration::from_secs(31))
    );
    w.now = t(29);
    w.pass();
    assert_eq!(w.progressing().status, "True");
    w.now = t(31);
    w.pass();
    let c = w.progressing();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
    let message = c.message.unwrap_or_default();
    assert!(
        message.starts_with("revision 2 made no progress for 30s: 3 pods not available — node-0 "),
        "{message}"
    );
    assert!(
        w.plan()
            .events
            .iter()
            .any(|e| e.reason == "ProgressDeadlineExceeded" && e.warning)
    );
}

#[test]
fn b06_a_partitioned_rollout_completes_saying_what_it_kept() {
    let mut w = steered(false);
    w.annotate(PARTITION, Some("3"));
    w.settle();
    assert_eq!(
        w.progressing().message.as_deref(),
        Some("revision 2 on the 7 nodes in scope; 3 kept at an older revision")
    );
}

fn rolled_back(w: &World) -> Option<k8s_openapi::api::apps::v1::DaemonSetCondition> {
    w.ds.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "RolledBack"))
        .cloned()
}

fn pod_names(w: &World) -> BTreeSet<String> {
    w.pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

#[test]
fn b03_auto_rollback_restores_the_last_complete_revision_once() {
    use everynode_api::rollout_controls::{AUTO_ROLLBACK, PROGRESS_DEADLINE_SECONDS};
    let mut w = World::new(
        ds_with(json!({"updateStrategy": {"type": "OnDelete"}})),
        nodes(10),
    );
    w.annotate(PROGRESS_DEADLINE_SECONDS, Some("30"));
    w.annotate(AUTO_ROLLBACK, Some("true"));
    w.pass();
    w.ready_all();
    w.pass();
    let original = w.revisions[0].clone();
    let original_name = original.metadata.name.clone().expect("name");
    // The first rollout completed: its revision is recorded for a rollback to come.
    let recorded = w.ds.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        recorded.get(super::super::rollback::LAST_COMPLETE_REVISION),
        Some(&original_name)
    );
    w.set_image("foo2/bar2");
    w.set_strategy(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 3, "maxSurge": 0}}),
    );
    let before = pod_names(&w);
    // Three old pods go, three new ones never become Ready.
    assert_eq!(w.pass(), (0, 3));
    assert_eq!(w.pass(), (3, 0));
    let survivors: BTreeSet<String> = pod_names(&w).intersection(&before).cloned().collect();
    assert_eq!(survivors.len(), 7);
    w.now = t(31);
    w.pass();
    let plan = w.plan();
    assert!(plan.rollback.is_some(), "the deadline passed: roll back");
    assert_eq!((plan.creates.len(), plan.deletes.len()), (0, 0));
    let c = rolled_back(&w).expect("RolledBack");
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref(), c.message.as_deref()),
        (
            "True",
            Some("ProgressDeadlineExceeded"),
            Some("rolled back from revision 2 to revision 1")
        )
    );
    // The restored revision is renumbered newest; its pods were never restarted.
    w.pass();
    let original_hash = original
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL))
        .cloned();
    assert_eq!(Some(&w.plan().hash), original_hash.as_ref());
    let restored = w
        .revisions
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(original_name.as_str()))
        .expect("the restored revision");
    assert_eq!(restored.revision, 3);
    assert!(survivors.is_subset(&pod_names(&w)));
    // The restored revision stalls in its turn: it stays stalled and says why, once.
    for _ in 0..4 {
        w.pass();
    }
    w.now = t(200);
    w.pass();
    assert_eq!(
        w.progressing().reason.as_deref(),
        Some("ProgressDeadlineExceeded")
    );
    assert!(w.plan().rollback.is_none());
    assert!(
        w.plan()
            .events
            .iter()
            .any(|e| e.reason == "RollbackSkipped" && e.message.contains("not rolling back again"))
    );
    w.now = t(300);
    w.pass();
    assert!(w.plan().rollback.is_none() && w.plan().events.is_empty());
    w.settle();
    assert_eq!(w.progressing().reason.as_deref(), Some("RolloutComplete"));
    assert!(survivors.is_subset(&pod_names(&w)));
    assert!(
        rolled_back(&w).is_some(),
        "it stays while the restored template does"
    );
    // Anyone else's template change clears it.
    w.set_image("foo3/bar3");
    w.pass();
    assert_eq!(rolled_back(&w), None);
    let annotations = w.ds.metadata.annotations.clone().unwrap_or_default();
    assert!(!annotations.contains_key(super::super::rollback::ROLLED_BACK));
}

/// Marks a node as its agent does when it stops (beyond.md §5), or clears the mark.
fn shutting_down(w: &mut World, name: &str, on: bool) {
    let n = w
        .nodes
        .iter_mut()
        .find(|n| n.metadata.name.as_deref() == Some(name))
        .expect("node");
    let (conditions, taints) = if on {
        (
            json!([{"type": "Ready", "status": "True"}, {"type": "ShuttingDown", "status": "True", "reason": "GracefulShutdown"}]),
            json!([{"key": "everynode.dev/shutting-down", "effect": "NoSchedule"}]),
        )
    } else {
        (json!([{"type": "Ready", "status": "True"}]), json!([]))
    };
    n.status = Some(serde_json::from_value(json!({"conditions": conditions})).expect("status"));
    n.spec = Some(serde_json::from_value(json!({"taints": taints})).expect("spec"));
}

#[test]
fn b12_no_pod_is_created_on_a_node_shutting_down_even_tolerating_everything() {
    let tolerate_all = json!({"template": {"spec": {"tolerations": [{"operator": "Exists"}]}}});
    let mut w = World::new(ds_with(tolerate_all.clone()), nodes(3));
    assert_eq!(w.pass(), (3, 0));
    w.ready_all();
    shutting_down(&mut w, "node-1", true);
    // The pod there stays while the agent stops it; the node leaves the desired count.
    assert_eq!(w.pass(), (0, 0));
    assert_eq!(
        w.ds.status.as_ref().map(|s| s.desired_number_scheduled),
        Some(2)
    );
    // Its pod is gone (the agent stopped it and it was deleted): nothing is created there.
    let on_node_1: Vec<String> = w
        .pods
        .iter()
        .filter(|p| rules::target_node(p).as_deref() == Some("node-1"))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    w.pods
        .retain(|p| !on_node_1.contains(p.metadata.name.as_ref().expect("name")));
    for _ in 0..3 {
        assert_eq!(w.pass(), (0, 0), "no pod for a node shutting down");
    }
    // Upstream's behaviour, `--shutdown-aware-daemonsets=false`: the pod tolerates the taint
    // and is created again on the node being left.
    let mut upstream = World::new(ds_with(tolerate_all), nodes(3));
    upstream.shutdown_aware = false;
    shutting_down(&mut upstream, "node-1", true);
    assert_eq!(upstream.pass(), (3, 0));
    // The agent is back: the mark is gone and the pod returns.
    shutting_down(&mut w, "node-1", false);
    assert_eq!(w.pass(), (1, 0));
}

fn b12_rolling(aware: bool) -> (usize, usize) {
    let mut w = steered(false);
    w.shutdown_aware = aware;
    // A log collector's toleration: every taint, the shutting-down one included.
    w.edit_template(|spec| {
        spec.tolerations = Some(vec![k8s_openapi::api::core::v1::Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        }])
    });
    w.set_strategy(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
    );
    // node-9 already runs the new template, and its pod is being terminated there as the
    // agent shuts down (not Ready): upstream counts it against maxUnavailable 1.
    shutting_down(&mut w, "node-9", true);
    let template =
        w.ds.spec
            .as_ref()
            .map(|s| s.template.clone())
            .expect("spec");
    let collisions = w.ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = rules::template_hash(&template, collisions);
    for p in &mut w.pods {
        if rules::target_node(p).as_deref() == Some("node-9") {
            p.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(HASH_LABEL.into(), hash.clone());
            World::set_ready(p, false, w.now);
        }
    }
    w.pass()
}

#[test]
fn b12_a_node_shutting_down_does_not_hold_up_a_rolling_update() {
    assert_eq!(b12_rolling(false), (0, 0), "upstream: the budget is spent");
    assert_eq!(b12_rolling(true), (0, 1), "the rollout goes on elsewhere");
}
