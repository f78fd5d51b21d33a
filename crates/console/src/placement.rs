//! "Why is node X missing its pod", as the console shows it: the API crate's placement view
//! (the same pure function behind `daemonsets/{name}/placement` and the controller's rules),
//! computed here from the objects the signed-in user can read, so it works against any cluster;
//! then grouped into the grid's states and the one-line summaries of the DaemonSet list.

use everynode_api::daemonset::{is_daemonset_ref, template_hash};
use everynode_api::placement::{NodeRow, Summary};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::jiff::Timestamp;

/// `key=value:Effect`, as kubectl writes a taint.
pub fn taint_text(t: &Taint) -> String {
    match t.value.as_deref().filter(|v| !v.is_empty()) {
        Some(v) => format!("{}={v}:{}", t.key, t.effect),
        None => format!("{}:{}", t.key, t.effect),
    }
}

/// Whether `pod` belongs to `ds` (its controller reference names the DaemonSet's uid).
pub fn owned_by(pod: &Pod, ds: &DaemonSet) -> bool {
    let uid = ds.metadata.uid.as_deref();
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| is_daemonset_ref(r) && Some(r.uid.as_str()) == uid && r.controller == Some(true))
}

/// The hash of `ds`'s current template, as its controller labels the pods of that revision.
pub fn current_hash(ds: &DaemonSet) -> String {
    let template = ds.spec.clone().unwrap_or_default().template;
    template_hash(
        &template,
        ds.status.as_ref().and_then(|s| s.collision_count),
    )
}

/// Every node, in name order, with the DaemonSet's pod there and, when it has no available pod
/// of the current revision, the reason code and message. `pods` may hold other pods too.
pub fn placement(
    ds: &DaemonSet,
    nodes: &[Node],
    pods: &[Pod],
    now: Timestamp,
) -> (Summary, Vec<NodeRow>) {
    let owned: Vec<Pod> = pods.iter().filter(|p| owned_by(p, ds)).cloned().collect();
    everynode_api::placement::placement(ds, nodes, &owned, &current_hash(ds), now, true)
}

/// The colour class of a node in the grid: what a user needs to tell apart at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Runs an available pod of the current revision.
    Running,
    /// Runs an available pod of an older revision (kept by a control or not yet reached).
    Old,
    /// A pod is on its way: no pod yet, scheduled, creating, not ready.
    Starting,
    /// A pod is failing or cannot be placed.
    Failing,
    /// The node is not Ready.
    NodeUnready,
    /// The node should run no pod (selector, affinity, taint, shutting down).
    Excluded,
    /// A pod runs where none should.
    Misscheduled,
}

impl State {
    pub fn of(row: &NodeRow) -> State {
        match row.reason.as_deref() {
            None if row.updated => State::Running,
            None | Some("Paused" | "Partitioned" | "OutsideCanary") => State::Old,
            Some("Misscheduled") => State::Misscheduled,
            Some("NodeUnready") => State::NodeUnready,
            Some("CrashLoopBackOff" | "ImagePullBackOff" | "Unschedulable") => State::Failing,
            Some(
                "NodeSelectorMismatch"
                | "NodeAffinityMismatch"
                | "UntoleratedTaint"
                | "ShuttingDown",
            ) => State::Excluded,
            Some(_) => State::Starting,
        }
    }

    /// The CSS class, also the word in the legend.
    pub fn class(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Old => "old",
            State::Starting => "starting",
            State::Failing => "failing",
            State::NodeUnready => "unready",
            State::Excluded => "excluded",
            State::Misscheduled => "misscheduled",
        }
    }

    pub const ALL: [State; 7] = [
        State::Running,
        State::Old,
        State::Starting,
        State::Failing,
        State::NodeUnready,
        State::Excluded,
        State::Misscheduled,
    ];
}

/// The group a row falls in on the grid: its reason code, or `Running` when it has none.
pub fn group(row: &NodeRow) -> &str {
    row.reason.as_deref().unwrap_or("Running")
}

/// The words a summary line uses for a node with no pod by design: the same for every node of
/// one cause, so nodes group (a node selector's message also names the node's own label).
fn exclusion_phrase(row: &NodeRow) -> Option<String> {
    if row.should_run {
        return None;
    }
    let message = row.message.as_deref().unwrap_or_default();
    Some(match row.reason.as_deref() {
        Some("UntoleratedTaint") => format!("untolerated taint {message}"),
        Some("NodeSelectorMismatch") => match message.split_once(" does not match") {
            Some((selector, _)) => format!("{selector} not matched"),
            None => message.to_owned(),
        },
        Some("NodeAffinityMismatch") => "required node affinity not matched".to_owned(),
        Some("Misscheduled") => "a pod runs where none should".to_owned(),
        _ => message.to_owned(),
    })
}

/// Nodes that should run no pod, grouped by cause, most common first:
/// "2 nodes: untolerated taint dedicated=gpu:NoSchedule".
pub fn exclusion_summary(rows: &[NodeRow]) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for phrase in rows.iter().filter_map(exclusion_phrase) {
        *counts.entry(phrase).or_default() += 1;
    }
    let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
        .into_iter()
        .map(|(reason, n)| format!("{n} node{}: {reason}", if n == 1 { "" } else { "s" }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(spec: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "default", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a"}}, "spec": spec}}
        }))
        .expect("daemonset")
    }

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}))
        .expect("node")
    }

    fn pod(name: &str, node: &str, uid: &str, hash: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name,
            "labels": {"controller-revision-hash": hash},
            "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": uid, "controller": true}]},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}))
        .expect("pod")
    }

    #[test]
    fn each_node_gets_its_pod_or_the_reason_it_has_none_and_a_state() {
        let set = ds(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        let hash = current_hash(&set);
        let nodes = [
            node("b", json!({"disk": "ssd"}), json!([])),
            node("a", json!({"disk": "hdd"}), json!([])),
            node(
                "c",
                json!({"disk": "ssd"}),
                json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            ),
            node("d", json!({"disk": "ssd"}), json!([])),
            node("e", json!({"disk": "ssd"}), json!([])),
        ];
        let pods = [
            pod("agent-x", "b", "u1", &hash),
            pod("other", "c", "u2", &hash),
            pod("agent-old", "e", "u1", "old"),
        ];
        let (summary, rows) = placement(&set, &nodes, &pods, Timestamp::UNIX_EPOCH);
        let states: Vec<(&str, State, Option<&str>)> = rows
            .iter()
            .map(|r| (r.node.as_str(), State::of(r), r.pod.as_deref()))
            .collect();
        assert_eq!(
            states,
            vec![
                ("a", State::Excluded, None),
                ("b", State::Running, Some("agent-x")),
                ("c", State::Excluded, None),
                ("d", State::Starting, None),
                ("e", State::Old, Some("agent-old")),
            ]
        );
        assert_eq!(summary.should_run, 3);
        assert_eq!(group(&rows[1]), "Running");
        assert_eq!(group(&rows[3]), "Pending");
        assert_eq!(
            exclusion_summary(&rows),
            vec![
                "1 node: nodeSelector disk=ssd not matched",
                "1 node: untolerated taint dedicated=gpu:NoSchedule",
            ]
        );
    }

    #[test]
    fn summary_counts_nodes_per_cause_however_their_labels_differ() {
        let set = ds(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        let nodes = [
            node("a", json!({"disk": "hdd"}), json!([])),
            node("b", json!({}), json!([])),
        ];
        let (_, rows) = placement(&set, &nodes, &[], Timestamp::UNIX_EPOCH);
        assert_eq!(
            exclusion_summary(&rows),
            vec!["2 nodes: nodeSelector disk=ssd not matched"]
        );
    }
}
