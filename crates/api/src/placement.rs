//! "Why is there no pod on node X?" (beyond.md §6, §7.1): for every node, whether a
//! DaemonSet's pod should run there, the pod that does, and the reason code and message when
//! the node has no available pod of the current revision. Pure: objects and `now` in, rows out.
//! Built on the same rules the controller's pass uses (`DaemonPlacement`, `unavailable_reason`,
//! `is_available`, `is_updated`), so the answer agrees with what the controller does.

use crate::daemonset::{
    self as rules, DaemonPlacement, HASH_LABEL, is_available, is_ready, is_updated,
};
use crate::rollout_controls::{self, RolloutControls};
use crate::scheduling;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use std::borrow::Borrow;
use std::collections::BTreeMap;

/// Every reason code of beyond.md §6 the placement view gives.
pub const REASON_CODES: &[&str] = &[
    "NodeSelectorMismatch",
    "NodeAffinityMismatch",
    "UntoleratedTaint",
    "ShuttingDown",
    "Unschedulable",
    "Pending",
    "ContainerCreating",
    "ImagePullBackOff",
    "CrashLoopBackOff",
    "NotReady",
    "NodeUnready",
    "Paused",
    "Partitioned",
    "OutsideCanary",
    "Misscheduled",
];

/// One node as the DaemonSet sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub node: String,
    pub should_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    pub ready: bool,
    pub available: bool,
    /// Whether the pod runs the DaemonSet's current template.
    pub updated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Counts over all nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub nodes: usize,
    pub should_run: usize,
    pub scheduled: usize,
    pub ready: usize,
    pub available: usize,
    pub updated: usize,
    pub by_reason: BTreeMap<String, usize>,
}

/// Why `placement` keeps no pod on `node`, as (code, message), or `None` when it should run one.
pub fn exclusion(
    ds: &DaemonSet,
    placement: &DaemonPlacement<'_>,
    node: &Node,
    shutdown_aware: bool,
) -> Option<(&'static str, String)> {
    if placement.on(node).should_run {
        if shutdown_aware && rules::node_shutting_down(node) {
            return Some((
                "ShuttingDown",
                "the node's agent is shutting down".to_owned(),
            ));
        }
        return None;
    }
    let spec = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    if let Some(wanted) = spec
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty() && *n != node_name)
    {
        return Some((
            "NodeSelectorMismatch",
            format!("the template's spec.nodeName is {wanted}"),
        ));
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some((key, value)) = spec
        .and_then(|s| s.node_selector.as_ref())
        .and_then(|sel| sel.iter().find(|(k, v)| labels.get(*k) != Some(*v)))
    {
        let has = labels
            .get(key)
            .map_or_else(|| "no such label".to_owned(), |v| format!("{key}={v}"));
        return Some((
            "NodeSelectorMismatch",
            format!("nodeSelector {key}={value} does not match ({has})"),
        ));
    }
    if let Some(spec) = spec
        && !scheduling::node_matches(spec, node)
    {
        return Some((
            "NodeAffinityMismatch",
            "the required node affinity does not match".to_owned(),
        ));
    }
    let taint = placement.untolerated(node)?;
    Some(("UntoleratedTaint", taint))
}

/// Whether the rollout controls keep `pod` (not updated) at its old revision on purpose, and
/// which control does.
/// Which rollout control keeps a node's old pod at its revision on purpose (beyond.md §3), as
/// a reason code; `rank` is the node's place among the `nodes` that should run a pod, in name
/// order. The placement view and the preview both decide it here.
pub fn kept_by_controls(
    controls: &RolloutControls,
    node: &Node,
    rank: usize,
    nodes: usize,
) -> Option<&'static str> {
    if controls.paused {
        return Some("Paused");
    }
    if let Some(canary) = &controls.canary
        && !canary.matches(node.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
    {
        return Some("OutsideCanary");
    }
    if let Some(partition) = &controls.partition {
        // The first `nodes - kept` nodes in name order update; the rest keep the old revision.
        let kept = partition.kept(nodes);
        if rank >= nodes.saturating_sub(kept) {
            return Some("Partitioned");
        }
    }
    None
}

/// What a reason code of `kept_by_controls` means, for people.
pub fn kept_message(code: &str) -> &'static str {
    match code {
        "Paused" => "the rollout is paused (everynode.dev/paused)",
        "OutsideCanary" => "the node is outside the canary (everynode.dev/canary-node-selector)",
        _ => "kept at the old revision by everynode.dev/partition",
    }
}

/// The placement of `ds` over `nodes`, given all pods the DaemonSet owns (`pods`), sorted by node
/// name (the rolling update's order). `hash` is the current revision's template hash.
pub fn placement(
    ds: &DaemonSet,
    nodes: &[impl Borrow<Node>],
    pods: &[impl Borrow<Pod>],
    hash: &str,
    now: Timestamp,
    shutdown_aware: bool,
) -> (Summary, Vec<NodeRow>) {
    let daemon = DaemonPlacement::new(ds);
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let template_generation = rules::template_generation(ds);
    let (controls, _) =
        rollout_controls::parse(ds.metadata.annotations.as_ref().unwrap_or(&BTreeMap::new()));
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods.iter().map(Borrow::borrow) {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(node) = rules::target_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    let mut sorted: Vec<&Node> = nodes.iter().map(Borrow::borrow).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let eligible = sorted
        .iter()
        .filter(|n| exclusion(ds, &daemon, n, shutdown_aware).is_none())
        .count();
    let mut summary = Summary {
        nodes: sorted.len(),
        ..Summary::default()
    };
    let mut rows = Vec::with_capacity(sorted.len());
    let mut rank = 0;
    for node in sorted {
        let name = node.metadata.name.clone().unwrap_or_default();
        let excluded = exclusion(ds, &daemon, node, shutdown_aware);
        let mut row = NodeRow {
            node: name.clone(),
            should_run: excluded.is_none(),
            ..NodeRow::default()
        };
        // The newest pod the node holds, as the controller keeps.
        let pod = by_node.get(&name).and_then(|list| {
            list.iter()
                .max_by(|a, b| rules::oldest_first(a, b))
                .copied()
        });
        if let Some(pod) = pod {
            row.pod = pod.metadata.name.clone();
            row.revision = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HASH_LABEL).cloned());
            row.phase = pod.status.as_ref().and_then(|s| s.phase.clone());
            row.ready = is_ready(pod);
            row.available = is_available(pod, min_ready, now);
            row.updated = is_updated(pod, hash, template_generation);
        }
        let reason: Option<(String, Option<String>)> = match (&excluded, pod) {
            (Some((code, message)), None) => Some(((*code).to_owned(), Some(message.clone()))),
            (Some((code, message)), Some(_)) => Some((
                "Misscheduled".to_owned(),
                Some(format!("a pod runs here, but {code}: {message}")),
            )),
            (None, None) => Some(("Pending".to_owned(), Some("no pod yet".to_owned()))),
            (None, Some(_)) if rules::node_unready(node) && !row.available => Some((
                "NodeUnready".to_owned(),
                Some("the node is not Ready".to_owned()),
            )),
            (None, Some(pod)) if !row.available => {
                let (code, detail) = rules::unavailable_reason(pod);
                // A pod the scheduler could not place says so in its own words.
                let code = if code == "Pending" && detail.is_some() {
                    "Unschedulable".to_owned()
                } else {
                    code.into_owned()
                };
                Some((code, detail))
            }
            (None, Some(_)) if !row.updated => kept_by_controls(&controls, node, rank, eligible)
                .map(|code| (code.to_owned(), Some(kept_message(code).to_owned()))),
            (None, Some(_)) => None,
        };
        if row.should_run {
            rank += 1;
        }
        if let Some((code, message)) = reason {
            *summary.by_reason.entry(code.clone()).or_default() += 1;
            row.reason = Some(code);
            row.message = message;
        }
        summary.should_run += usize::from(row.should_run);
        summary.scheduled += usize::from(row.pod.is_some() && row.should_run);
        summary.ready += usize::from(row.ready && row.should_run);
        summary.available += usize::from(row.available && row.should_run);
        summary.updated += usize::from(row.updated && row.should_run);
        rows.push(row);
    }
    (summary, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value, ready: bool) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .expect("node")
    }

    fn pod(name: &str, node: &str, status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"controller-revision-hash": "h1"},
                         "creationTimestamp": "2026-11-30T10:00:00Z"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
            "status": status,
        }))
        .expect("pod")
    }

    fn running() -> serde_json::Value {
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                "lastTransitionTime": "2026-11-30T10:00:00Z"}]})
    }

    #[test]
    fn b13_placement_of_five_nodes_names_each_reason() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a"}},
                                  "spec": {"nodeSelector": {"role": "worker"},
                                           "containers": [{"name": "c", "image": "i"}]}}}}))
        .expect("ds");
        let worker = json!({"role": "worker"});
        let nodes = vec![
            node("n1", worker.clone(), json!([]), true),
            node(
                "n2",
                worker.clone(),
                json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
                true,
            ),
            node("n3", json!({"role": "edge"}), json!([]), true),
            node("n4", worker.clone(), json!([]), true),
            node("n5", worker, json!([]), false),
        ];
        let pods = vec![
            pod("agent-1", "n1", running()),
            pod(
                "agent-4",
                "n4",
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
                "status": "False", "reason": "Unschedulable", "message": "0/5 nodes are available: 1 Insufficient cpu."}]}),
            ),
            pod("agent-5", "n5", json!({"phase": "Running"})),
        ];
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().expect("now");
        let (summary, rows) = placement(&ds, &nodes, &pods, "h1", now, true);
        let reasons: Vec<(&str, Option<&str>, Option<&str>)> = rows
            .iter()
            .map(|r| (r.node.as_str(), r.reason.as_deref(), r.message.as_deref()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("n1", None, None),
                (
                    "n2",
                    Some("UntoleratedTaint"),
                    Some("dedicated=db:NoSchedule")
                ),
                (
                    "n3",
                    Some("NodeSelectorMismatch"),
                    Some("nodeSelector role=worker does not match (role=edge)")
                ),
                (
                    "n4",
                    Some("Unschedulable"),
                    Some("0/5 nodes are available: 1 Insufficient cpu.")
                ),
                ("n5", Some("NodeUnready"), Some("the node is not Ready")),
            ]
        );
        assert_eq!(
            (
                summary.nodes,
                summary.should_run,
                summary.scheduled,
                summary.available
            ),
            (5, 3, 3, 1)
        );
        assert_eq!(summary.by_reason.len(), 4);
        assert!(rows[0].updated && rows[0].ready && rows[0].revision.as_deref() == Some("h1"));
        assert!(!rows[1].should_run && rows[3].should_run);
    }

    #[test]
    fn old_pods_kept_on_purpose_and_pods_where_none_should_run_are_named() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "default",
                         "annotations": {"everynode.dev/paused": "true"}},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a"}},
                                  "spec": {"nodeSelector": {"role": "worker"},
                                           "containers": [{"name": "c", "image": "i"}]}}}}))
        .expect("ds");
        let nodes = vec![
            node("n1", json!({"role": "worker"}), json!([]), true),
            node("n2", json!({}), json!([]), true),
        ];
        let pods = vec![
            pod("agent-1", "n1", running()),
            pod("agent-2", "n2", running()),
        ];
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().expect("now");
        let (summary, rows) = placement(&ds, &nodes, &pods, "h2", now, true);
        assert_eq!(rows[0].reason.as_deref(), Some("Paused"));
        assert!(!rows[0].updated && rows[0].available);
        assert_eq!(rows[1].reason.as_deref(), Some("Misscheduled"));
        assert_eq!(summary.by_reason.get("Misscheduled"), Some(&1));
    }
}
