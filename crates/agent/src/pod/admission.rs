//! Kubelet admission: a pod bound to this node is re-checked against the node as it is now
//! (labels may have changed since scheduling, other pods may have arrived). A rejected pod is
//! Failed with kubelet's reason and message; the DaemonSet controller then deletes and recreates
//! it with backoff.

use everynode_api::quantity::Quantity;
use everynode_api::scheduling;
use k8s_openapi::api::core::v1::{Node, Pod};

/// (reason, message) of a rejection, as in `status.reason` / `status.message`.
pub type Rejection = (String, String);

/// Whether `pod` may run on `node` beside the already admitted `others`.
pub fn admit(pod: &Pod, node: &Node, others: &[&Pod]) -> Result<(), Rejection> {
    let spec = pod.spec.clone().unwrap_or_default();
    if !scheduling::node_matches(&spec, node) {
        return Err((
            "NodeAffinity".into(),
            "Pod was rejected: Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector".into(),
        ));
    }
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    let capacity = |name: &str| {
        allocatable
            .get(name)
            .and_then(|q| Quantity::parse(&q.0).ok())
            .unwrap_or(Quantity::ZERO)
    };
    let max_pods = capacity("pods").units_ceil();
    if max_pods > 0 && others.len() as i128 + 1 > max_pods {
        return Err((
            "OutOfpods".into(),
            format!(
                "Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: {}, capacity: {max_pods}",
                others.len()
            ),
        ));
    }
    if let Some(short) = scheduling::shortages(pod, node, others).into_iter().next() {
        // Kubelet prints cpu in millicores and everything else in units.
        let show = |q: Quantity| {
            if short.resource == "cpu" {
                q.milli_ceil()
            } else {
                q.units_ceil()
            }
        };
        return Err((
            format!("OutOf{}", short.resource),
            format!(
                "Pod was rejected: Node didn't have enough resource: {}, requested: {}, used: {}, capacity: {}",
                short.resource,
                show(short.wanted),
                show(short.used),
                show(short.allocatable)
            ),
        ));
    }
    if scheduling::host_port_conflict(pod, others) {
        return Err((
            "NodePorts".into(),
            "Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"disk": "ssd"}},
            "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "110"}}
        }))
        .expect("node")
    }

    fn pod(cpu: &str, selector: serde_json::Value, host_port: Option<i32>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"nodeSelector": selector, "containers": [{"name": "c",
                "resources": {"requests": {"cpu": cpu}},
                "ports": host_port.map(|p| vec![json!({"containerPort": 80, "hostPort": p})]).unwrap_or_default()
            }]}
        }))
        .expect("pod")
    }

    #[test]
    fn rejects_like_kubelet() {
        let n = node();
        assert_eq!(
            admit(&pod("1", json!({"disk": "ssd"}), None), &n, &[]),
            Ok(())
        );
        let (reason, message) =
            admit(&pod("1", json!({"disk": "hdd"}), None), &n, &[]).expect_err("affinity");
        assert_eq!(reason, "NodeAffinity");
        assert!(message.contains("Predicate NodeAffinity failed"));
        let big = pod("1500m", json!({}), None);
        let (reason, message) = admit(&big, &n, &[&big]).expect_err("cpu");
        assert_eq!(reason, "OutOfcpu");
        assert_eq!(
            message,
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 1500, used: 1500, capacity: 2000"
        );
        let web = pod("0", json!({}), Some(8080));
        let (reason, _) = admit(&web, &n, &[&web]).expect_err("port");
        assert_eq!(reason, "NodePorts");
    }
}
