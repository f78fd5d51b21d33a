//! Placement predicates shared by the DaemonSet controller and the scheduler: taints and
//! tolerations, node selectors and required node affinity (with `matchFields`).

use crate::quantity::Quantity;
use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint, Toleration,
};
use std::collections::BTreeMap;

/// Whether `t` tolerates `taint` (`Toleration.ToleratesTaint` upstream).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// The first taint with one of `effects` that no toleration tolerates.
pub fn untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        effects.contains(&taint.effect.as_str()) && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
    node.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(want)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// Whether a node selector term matches: AND over its expressions and fields; an empty term
/// matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node_labels(node);
    let name = node.metadata.name.as_ref();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, name))
}

/// `nodeSelector` and required node affinity (OR over terms).
/// The terms of a pod's required node affinity, if it has any.
pub fn required_node_terms(
    spec: &PodSpec,
) -> Option<&[k8s_openapi::api::core::v1::NodeSelectorTerm]> {
    Some(
        &spec
            .affinity
            .as_ref()?
            .node_affinity
            .as_ref()?
            .required_during_scheduling_ignored_during_execution
            .as_ref()?
            .node_selector_terms,
    )
}

pub fn node_matches(spec: &PodSpec, node: &Node) -> bool {
    let labels = node_labels(node);
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node)),
        None => true,
    }
}

/// The node a pod is bound to (`spec.nodeName`, when not empty).
pub fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Whether the pod has finished (phase Succeeded or Failed): it no longer holds node resources.
pub fn is_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// What a pod asks of a node: the sum of its containers' requests, or the largest init
/// container's when that is more (init containers run one at a time).
pub fn pod_requests(pod: &Pod) -> BTreeMap<String, Quantity> {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut total: BTreeMap<String, Quantity> = BTreeMap::new();
    let add = |into: &mut BTreeMap<String, Quantity>, c: &k8s_openapi::api::core::v1::Container| {
        for (k, v) in c
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default()
        {
            if let Ok(q) = Quantity::parse(&v.0) {
                let cur = into.get(&k).copied().unwrap_or(Quantity::ZERO);
                into.insert(k, cur + q);
            }
        }
    };
    for c in &spec.containers {
        add(&mut total, c);
    }
    // Init containers run one at a time: the pod needs the largest of them if that is more.
    for c in spec.init_containers.iter().flatten() {
        let mut one = BTreeMap::new();
        add(&mut one, c);
        for (k, v) in one {
            let cur = total.get(&k).copied().unwrap_or(Quantity::ZERO);
            if v > cur {
                total.insert(k, v);
            }
        }
    }
    total
}

/// The (hostPort, protocol) pairs a pod claims on its node.
pub fn host_ports(pod: &Pod) -> Vec<(i32, String)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            p.host_port
                .filter(|h| *h > 0)
                .map(|h| (h, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
        })
        .collect()
}

/// A resource a pod asks for beyond what its node has left.
#[derive(Debug, Clone, PartialEq)]
pub struct Shortage {
    pub resource: String,
    pub wanted: Quantity,
    pub used: Quantity,
    pub allocatable: Quantity,
}

/// The resources `pod` requests that do not fit `node` beside `others` (their requests summed).
pub fn shortages(pod: &Pod, node: &Node, others: &[&Pod]) -> Vec<Shortage> {
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (resource, wanted) in pod_requests(pod) {
        if wanted == Quantity::ZERO {
            continue;
        }
        let have = allocatable
            .get(&resource)
            .and_then(|q| Quantity::parse(&q.0).ok())
            .unwrap_or(Quantity::ZERO);
        let used = others.iter().fold(Quantity::ZERO, |acc, p| {
            acc + pod_requests(p)
                .get(&resource)
                .copied()
                .unwrap_or(Quantity::ZERO)
        });
        if used + wanted > have {
            out.push(Shortage {
                resource,
                wanted,
                used,
                allocatable: have,
            });
        }
    }
    out
}

/// Whether `pod` wants a host port one of `others` already holds.
pub fn host_port_conflict(pod: &Pod, others: &[&Pod]) -> bool {
    let taken: Vec<(i32, String)> = others.iter().flat_map(|p| host_ports(p)).collect();
    host_ports(pod).iter().any(|p| taken.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    #[test]
    fn toleration_matching() {
        let taint = Taint {
            key: "dedicated".into(),
            value: Some("user1".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tol =
            |v: serde_json::Value| -> Toleration { serde_json::from_value(v).expect("toleration") };
        assert!(tolerates(
            &tol(json!({"key": "dedicated", "value": "user1", "effect": "NoSchedule"})),
            &taint
        ));
        assert!(tolerates(
            &tol(json!({"key": "dedicated", "operator": "Exists"})),
            &taint
        ));
        assert!(tolerates(&tol(json!({"operator": "Exists"})), &taint));
        assert!(!tolerates(
            &tol(json!({"key": "dedicated", "value": "user2"})),
            &taint
        ));
        assert!(!tolerates(
            &tol(json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"})),
            &taint
        ));
    }

    #[test]
    fn affinity_terms_and_fields() {
        let n =
            node(json!({"metadata": {"name": "node-1", "labels": {"color": "blue", "rank": "5"}}}));
        let spec: PodSpec = serde_json::from_value(json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "color", "operator": "In", "values": ["red"]}]},
            {"matchExpressions": [{"key": "rank", "operator": "Gt", "values": ["3"]}], "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}
        ]}}}})).expect("spec");
        assert!(node_matches(&spec, &n));
        let empty_term: PodSpec = serde_json::from_value(json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}})).expect("spec");
        assert!(
            !node_matches(&empty_term, &n),
            "an empty term matches nothing"
        );
        let selector: PodSpec =
            serde_json::from_value(json!({"containers": [], "nodeSelector": {"color": "green"}}))
                .expect("spec");
        assert!(!node_matches(&selector, &n));
    }
}
