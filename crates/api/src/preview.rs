//! What applying a DaemonSet would do (beyond.md §7.2, B-14): per node Create, Delete, Replace
//! or Keep with the reason, and the rolling update's batches in order, assuming each new pod is
//! available at once. Pure, on the rules of the placement view and the controller.

use crate::daemonset::{self as rules, DaemonPlacement, is_updated};
use crate::placement::{exclusion, kept_by_controls, kept_message};
use crate::rollout_controls;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use std::borrow::Borrow;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Action {
    Create,
    Delete,
    Replace,
    Keep,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NodeAction {
    pub node: String,
    pub action: Action,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub create: usize,
    pub delete: usize,
    pub replace: usize,
    pub keep: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub summary: Summary,
    pub new_revision: bool,
    pub nodes: Vec<NodeAction>,
    pub batches: Vec<Vec<String>>,
}

/// The preview of applying `new` (defaulted and valid) over the pods of the DaemonSet as it is
/// (`pods`, none for a new one). `new_hash` is the new template's hash; `current_hash` the
/// stored one's, if it exists.
pub fn preview(
    new: &DaemonSet,
    current_hash: Option<&str>,
    new_hash: &str,
    nodes: &[impl Borrow<Node>],
    pods: &[impl Borrow<Pod>],
) -> Preview {
    let placement = DaemonPlacement::new(new);
    let template_generation = rules::template_generation(new);
    let (controls, _) = rollout_controls::parse(
        new.metadata
            .annotations
            .as_ref()
            .unwrap_or(&BTreeMap::new()),
    );
    let on_delete = new
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete");
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods
        .iter()
        .map(Borrow::borrow)
        .filter(|p: &&Pod| p.metadata.deletion_timestamp.is_none())
    {
        if let Some(node) = rules::target_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    let mut sorted: Vec<&Node> = nodes.iter().map(Borrow::borrow).collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let excluded: Vec<Option<(&'static str, String)>> = sorted
        .iter()
        .map(|n| exclusion(new, &placement, n, true))
        .collect();
    let eligible = excluded.iter().filter(|e| e.is_none()).count();
    let mut out = Preview {
        summary: Summary::default(),
        new_revision: current_hash != Some(new_hash),
        nodes: Vec::with_capacity(sorted.len()),
        batches: Vec::new(),
    };
    let mut replaced = Vec::new();
    let mut rank = 0;
    for (node, excluded) in sorted.into_iter().zip(excluded) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let pod = by_node.get(&name).and_then(|l| l.first().copied());
        let should_run = excluded.is_none();
        let (action, reason) = match (excluded, pod) {
            (Some((code, message)), Some(_)) => (Action::Delete, format!("{code}: {message}")),
            (Some((code, message)), None) => (Action::Keep, format!("no pod: {code}: {message}")),
            (None, None) => (
                Action::Create,
                "the pod should run here and none does".to_owned(),
            ),
            (None, Some(pod)) if is_updated(pod, new_hash, template_generation) => {
                (Action::Keep, "already runs the new template".to_owned())
            }
            (None, Some(_)) if on_delete => (
                Action::Keep,
                "OnDelete: the pod is replaced only when it is deleted".to_owned(),
            ),
            (None, Some(_)) => match kept_by_controls(&controls, node, rank, eligible) {
                Some(code) => (Action::Keep, format!("{code}: {}", kept_message(code))),
                None => {
                    replaced.push(name.clone());
                    (Action::Replace, "runs an older template".to_owned())
                }
            },
        };
        // The partition counts the nodes that should run a pod, in name order.
        if should_run {
            rank += 1;
        }
        match action {
            Action::Create => out.summary.create += 1,
            Action::Delete => out.summary.delete += 1,
            Action::Replace => out.summary.replace += 1,
            Action::Keep => out.summary.keep += 1,
        }
        out.nodes.push(NodeAction {
            node: name,
            action,
            reason,
        });
    }
    let batch = batch_size(new, eligible);
    out.batches = replaced.chunks(batch).map(<[String]>::to_vec).collect();
    out
}

/// How many nodes one step of the rolling update replaces: maxSurge when it surges, else
/// maxUnavailable, and one when both are zero (upstream's fallback).
pub fn batch_size(ds: &DaemonSet, desired: usize) -> usize {
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let desired = i32::try_from(desired).unwrap_or(i32::MAX);
    let surge = rules::scale(rolling.and_then(|r| r.max_surge.as_ref()), desired).unwrap_or(0);
    let unavailable = rolling.map_or(Ok(1), |r| rules::scale(r.max_unavailable.as_ref(), desired));
    let unavailable = unavailable.unwrap_or(1);
    let step = if surge > 0 { surge } else { unavailable };
    usize::try_from(step.max(1)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, zone: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"zone": zone}}}))
            .expect("node")
    }

    fn pod(node: &str, hash: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("agent-{node}"), "labels": {"controller-revision-hash": hash}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
        }))
        .expect("pod")
    }

    fn ds(node_selector: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}},
                     "template": {"metadata": {"labels": {"app": "a"}},
                                  "spec": {"nodeSelector": node_selector,
                                           "containers": [{"name": "c", "image": "i:2"}]}}}}))
        .expect("ds")
    }

    fn nodes() -> Vec<Node> {
        ["n3", "n1", "n5", "n2", "n4"]
            .iter()
            .map(|n| node(n, if *n <= "n2" { "a" } else { "b" }))
            .collect()
    }

    #[test]
    fn b14_an_image_change_replaces_every_node_in_batches_in_name_order() {
        let pods: Vec<Pod> = ["n1", "n2", "n3", "n4", "n5"]
            .iter()
            .map(|n| pod(n, "old"))
            .collect();
        let p = preview(&ds(json!({})), Some("old"), "new", &nodes(), &pods);
        assert!(p.new_revision);
        assert_eq!(
            p.summary,
            Summary {
                create: 0,
                delete: 0,
                replace: 5,
                keep: 0
            }
        );
        assert_eq!(p.batches, [vec!["n1", "n2"], vec!["n3", "n4"], vec!["n5"]]);
        assert!(p.nodes.iter().all(|n| n.action == Action::Replace));
    }

    #[test]
    fn b14_a_node_selector_change_creates_and_deletes_per_node() {
        // Pods run on n3..n5 (zone b); the new selector wants zone a.
        let pods: Vec<Pod> = ["n3", "n4", "n5"].iter().map(|n| pod(n, "old")).collect();
        let p = preview(
            &ds(json!({"zone": "a"})),
            Some("old"),
            "new",
            &nodes(),
            &pods,
        );
        let actions: Vec<(&str, &Action)> = p
            .nodes
            .iter()
            .map(|n| (n.node.as_str(), &n.action))
            .collect();
        assert_eq!(
            actions,
            [
                ("n1", &Action::Create),
                ("n2", &Action::Create),
                ("n3", &Action::Delete),
                ("n4", &Action::Delete),
                ("n5", &Action::Delete),
            ]
        );
        assert!(
            p.nodes[2]
                .reason
                .starts_with("NodeSelectorMismatch: nodeSelector zone=a")
        );
        assert!(p.batches.is_empty());
    }

    #[test]
    fn unchanged_templates_keep_and_controls_hold_nodes_back() {
        let pods: Vec<Pod> = ["n1", "n2", "n3", "n4", "n5"]
            .iter()
            .map(|n| pod(n, "same"))
            .collect();
        let p = preview(&ds(json!({})), Some("same"), "same", &nodes(), &pods);
        assert!(!p.new_revision && p.summary.keep == 5 && p.batches.is_empty());
        let mut partitioned = ds(json!({}));
        partitioned.metadata.annotations =
            Some([("everynode.dev/partition".to_owned(), "2".to_owned())].into());
        let old: Vec<Pod> = ["n1", "n2", "n3", "n4", "n5"]
            .iter()
            .map(|n| pod(n, "old"))
            .collect();
        let p = preview(&partitioned, Some("old"), "new", &nodes(), &old);
        assert_eq!(p.batches, [vec!["n1", "n2"], vec!["n3"]]);
        assert!(p.nodes[4].reason.starts_with("Partitioned"));
    }
}
