//! "Why is node X missing its pod": for every node, the DaemonSet's pod there or the reason it has
//! none, in the words a user can act on. Pure: objects in, rows out.

use everynode_api::daemonset::{add_or_update_tolerations, default_tolerations, is_daemonset_ref};
use everynode_api::scheduling::{bound_node, term_matches, untolerated};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, Taint};

/// One node as the DaemonSet sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlacement {
    pub node: String,
    /// The DaemonSet's pods on the node (normally one).
    pub pods: Vec<String>,
    /// Why the node has no pod of this DaemonSet; `None` when it should run one.
    pub excluded: Option<String>,
}

/// Why `node` is not eligible for `ds`'s pod, or `None` when it is.
pub fn exclusion(ds: &DaemonSet, node: &Node) -> Option<String> {
    let spec = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let empty = PodSpec::default();
    let spec = spec.unwrap_or(&empty);
    if let Some(wanted) = spec.node_name.as_deref().filter(|n| !n.is_empty())
        && wanted != node_name
    {
        return Some(format!("the pod template names node {wanted}"));
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(selector) = &spec.node_selector {
        let missing: Vec<String> = selector
            .iter()
            .filter(|(k, v)| labels.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !missing.is_empty() {
            return Some(format!("node selector {} not matched", missing.join(",")));
        }
    }
    if let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        && !required
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node))
    {
        return Some("required node affinity not matched".to_owned());
    }
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    add_or_update_tolerations(
        &mut tolerations,
        default_tolerations(spec.host_network.unwrap_or(false)),
    );
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    untolerated(taints, &tolerations, &["NoSchedule", "NoExecute"])
        .map(|t| format!("untolerated taint {}", taint_text(t)))
}

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

/// Every node, in name order, with the DaemonSet's pods on it or the reason it has none.
pub fn placement(ds: &DaemonSet, nodes: &[Node], pods: &[Pod]) -> Vec<NodePlacement> {
    let mut rows: Vec<NodePlacement> = nodes
        .iter()
        .map(|node| {
            let name = node.metadata.name.clone().unwrap_or_default();
            let on_node: Vec<String> = pods
                .iter()
                .filter(|p| owned_by(p, ds) && bound_node(p) == Some(name.as_str()))
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            NodePlacement {
                excluded: exclusion(ds, node),
                node: name,
                pods: on_node,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.node.cmp(&b.node));
    rows
}

/// Excluded nodes grouped by reason, most common first: "2 nodes: untolerated taint ...".
pub fn exclusion_summary(rows: &[NodePlacement]) -> Vec<String> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for reason in rows.iter().filter_map(|r| r.excluded.as_ref()) {
        match counts.iter_mut().find(|(r, _)| r == reason) {
            Some((_, n)) => *n += 1,
            None => counts.push((reason.clone(), 1)),
        }
    }
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
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}),
        )
        .expect("node")
    }

    fn pod(name: &str, node: &str, uid: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": uid, "controller": true}]},
            "spec": {"nodeName": node, "containers": []}}))
        .expect("pod")
    }

    #[test]
    fn each_node_gets_its_pod_or_the_reason_it_has_none() {
        let set = ds(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        let nodes = [
            node("b", json!({"disk": "ssd"}), json!([])),
            node("a", json!({"disk": "hdd"}), json!([])),
            node(
                "c",
                json!({"disk": "ssd"}),
                json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            ),
        ];
        let pods = [pod("agent-x", "b", "u1"), pod("other", "c", "u2")];
        let rows = placement(&set, &nodes, &pods);
        assert_eq!(
            rows,
            vec![
                NodePlacement {
                    node: "a".into(),
                    pods: vec![],
                    excluded: Some("node selector disk=ssd not matched".into())
                },
                NodePlacement {
                    node: "b".into(),
                    pods: vec!["agent-x".into()],
                    excluded: None
                },
                NodePlacement {
                    node: "c".into(),
                    pods: vec![],
                    excluded: Some("untolerated taint dedicated=gpu:NoSchedule".into())
                },
            ]
        );
    }

    #[test]
    fn default_tolerations_apply_and_prefer_no_schedule_is_no_exclusion() {
        let set = ds(json!({"containers": []}));
        let n = node(
            "a",
            json!({}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                   {"key": "soft", "effect": "PreferNoSchedule"}]),
        );
        assert_eq!(exclusion(&set, &n), None);
        let tolerated = ds(
            json!({"containers": [], "tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
        );
        let gpu = node(
            "g",
            json!({}),
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]),
        );
        assert_eq!(exclusion(&tolerated, &gpu), None);
    }

    #[test]
    fn affinity_and_node_name_are_named() {
        let pinned = ds(json!({"containers": [], "nodeName": "z"}));
        assert_eq!(
            exclusion(&pinned, &node("a", json!({}), json!([]))).as_deref(),
            Some("the pod template names node z")
        );
        let affine = ds(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]}]}}}}));
        assert_eq!(
            exclusion(&affine, &node("a", json!({"zone": "y"}), json!([]))).as_deref(),
            Some("required node affinity not matched")
        );
    }

    #[test]
    fn summary_counts_nodes_per_reason() {
        let row = |n: &str, r: Option<&str>| NodePlacement {
            node: n.into(),
            pods: vec![],
            excluded: r.map(str::to_owned),
        };
        let rows = [
            row("a", Some("untolerated taint dedicated=gpu:NoSchedule")),
            row("b", None),
            row("c", Some("untolerated taint dedicated=gpu:NoSchedule")),
            row("d", Some("node selector disk=ssd not matched")),
        ];
        assert_eq!(
            exclusion_summary(&rows),
            vec![
                "2 nodes: untolerated taint dedicated=gpu:NoSchedule",
                "1 node: node selector disk=ssd not matched"
            ]
        );
    }
}
