//! The node authorizer and NodeRestriction, after upstream's: an agent authenticated as
//! `system:node:<name>` (group `system:nodes`) may read what every node needs (nodes, pods,
//! services, endpoints, EndpointSlices), write events, and otherwise touch only what belongs to its node: its
//! own Node and Lease, the pods bound to it (status, delete; create only mirror pods), and the
//! Secrets, ConfigMaps and ServiceAccounts those pods use. Anything else gets no opinion here,
//! so RBAC still decides (and grants an agent nothing by default).

use super::Decision;
use super::attributes::Attributes;
use crate::authn::UserInfo;
use crate::cache::{Filter, WatchCache};
use crate::error::{ApiError, ApiResult};
use everynode_api::registry::{self, Kind, Resource};
use everynode_api::selector::{Selector, parse_field_selector};
use serde_json::Value;

pub const NODES_GROUP: &str = "system:nodes";
const NODE_USER_PREFIX: &str = "system:node:";
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The node a user is the agent of.
pub fn node_of(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    (!name.is_empty() && user.groups.iter().any(|g| g == NODES_GROUP)).then_some(name)
}

const READ: &[&str] = &["get", "list", "watch"];

fn no_relationship(node: &str) -> Decision {
    Decision::Deny(format!(
        "no relationship found between node '{node}' and this object"
    ))
}

/// `None`: no opinion (RBAC decides).
pub fn authorize(cache: &WatchCache, node: &str, a: &Attributes) -> Option<Decision> {
    if !a.resource_request {
        return None;
    }
    let verb = a.verb.as_str();
    let allow = || Some(Decision::Allow(String::new()));
    let own = |name: &str| {
        if name == node {
            Decision::Allow(String::new())
        } else {
            Decision::Deny(format!("node '{node}' cannot modify node '{name}'"))
        }
    };
    match (
        a.api_group.as_str(),
        a.resource.as_str(),
        a.subresource.as_str(),
    ) {
        ("", "nodes", "" | "status") if READ.contains(&verb) => allow(),
        // Creating is checked against the body's name by `admit`.
        ("", "nodes", "") if verb == "create" => allow(),
        ("", "nodes", "" | "status") if matches!(verb, "update" | "patch" | "delete") => {
            Some(own(&a.name))
        }
        ("", "pods", "") if READ.contains(&verb) => allow(),
        ("", "pods", "") if verb == "create" => allow(),
        ("", "pods", "" | "status") if matches!(verb, "delete" | "update" | "patch") => {
            if a.subresource.is_empty() && verb != "delete" {
                return Some(no_relationship(node));
            }
            Some(match pod_node(cache, &a.namespace, &a.name) {
                Some(n) if n == node => Decision::Allow(String::new()),
                _ => no_relationship(node),
            })
        }
        ("", "pods", "eviction") if verb == "create" => allow(),
        ("", "services" | "endpoints", "") if READ.contains(&verb) => allow(),
        // The agent is also its node's Service proxy (upstream gives kube-proxy this through
        // `system:node-proxier`).
        ("discovery.k8s.io", "endpointslices", "") if READ.contains(&verb) => allow(),
        ("" | "events.k8s.io", "events", "") if matches!(verb, "create" | "update" | "patch") => {
            allow()
        }
        ("coordination.k8s.io", "leases", "") if a.namespace == LEASE_NAMESPACE => {
            if matches!(verb, "create" | "list" | "watch") && a.name.is_empty() {
                // Creates are checked by `admit`; lists only of its own name.
                return Some(if verb == "create" {
                    Decision::Allow(String::new())
                } else {
                    no_relationship(node)
                });
            }
            Some(if a.name == node {
                Decision::Allow(String::new())
            } else {
                no_relationship(node)
            })
        }
        ("", "secrets" | "configmaps" | "serviceaccounts", "") if READ.contains(&verb) => {
            if a.name.is_empty() {
                return Some(no_relationship(node));
            }
            Some(
                if used_by_a_pod_of(cache, node, &a.namespace, &a.resource, &a.name) {
                    Decision::Allow(String::new())
                } else {
                    no_relationship(node)
                },
            )
        }
        // Which pod the token is bound to is checked by the TokenRequest handler.
        ("", "serviceaccounts", "token") if verb == "create" => Some(
            if used_by_a_pod_of(cache, node, &a.namespace, "serviceaccounts", &a.name) {
                Decision::Allow(String::new())
            } else {
                no_relationship(node)
            },
        ),
        ("authentication.k8s.io", "tokenreviews", "")
        | ("authorization.k8s.io", "subjectaccessreviews", "")
            if verb == "create" =>
        {
            allow()
        }
        _ => None,
    }
}

fn pod_node(cache: &WatchCache, namespace: &str, name: &str) -> Option<String> {
    let pod = cache.object(Kind::Pod, Some(namespace), name)?;
    pod["spec"]["nodeName"].as_str().map(str::to_owned)
}

/// Whether a pod bound to `node` in `namespace` refers to the Secret, ConfigMap or
/// ServiceAccount `name` (volumes, projected sources, env, envFrom, image pull secrets).
fn used_by_a_pod_of(
    cache: &WatchCache,
    node: &str,
    namespace: &str,
    resource: &str,
    name: &str,
) -> bool {
    let Ok(fields) = parse_field_selector(&format!("spec.nodeName={node}")) else {
        return false;
    };
    let filter = Filter {
        prefix: registry::by_kind(Kind::Pod).list_prefix(Some(namespace)),
        labels: Selector::everything(),
        fields,
    };
    cache.list(&filter, None, 0).items.iter().any(|cached| {
        serde_json::from_slice::<Value>(&cached.json)
            .is_ok_and(|pod| references(&pod["spec"], resource, name))
    })
}

/// The names a pod spec refers to, by resource.
pub fn references(spec: &Value, resource: &str, name: &str) -> bool {
    let is = |v: &Value| v.as_str() == Some(name);
    let arr = |v: &Value| v.as_array().cloned().unwrap_or_default();
    match resource {
        "serviceaccounts" => {
            let sa = spec["serviceAccountName"].as_str().unwrap_or("default");
            return sa == name;
        }
        "secrets"
            if arr(&spec["imagePullSecrets"])
                .iter()
                .any(|s| is(&s["name"])) =>
        {
            return true;
        }
        _ => {}
    }
    let (volume_key, volume_name, ref_key, env_key) = match resource {
        "secrets" => ("secret", "secretName", "secretRef", "secretKeyRef"),
        "configmaps" => ("configMap", "name", "configMapRef", "configMapKeyRef"),
        _ => return false,
    };
    for volume in arr(&spec["volumes"]) {
        if is(&volume[volume_key][volume_name]) {
            return true;
        }
        for source in arr(&volume["projected"]["sources"]) {
            if is(&source[volume_key]["name"]) {
                return true;
            }
        }
    }
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| arr(&spec[*k]))
        .any(|c| {
            arr(&c["env"])
                .iter()
                .any(|e| is(&e["valueFrom"][env_key]["name"]))
                || arr(&c["envFrom"]).iter().any(|e| is(&e[ref_key]["name"]))
        })
}

/// NodeRestriction: what an agent may create, checked on the object it sends.
pub fn admit(user: &UserInfo, res: &Resource, obj: &Value) -> ApiResult<()> {
    let Some(node) = node_of(user) else {
        return Ok(());
    };
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let refuse = |why: String| Err(super::forbidden_status(res.group, res.plural, name, &why));
    match res.id {
        Kind::Node if name != node => refuse(format!(
            "node {node:?} is not allowed to modify node {name:?}"
        )),
        Kind::Lease if name != node => {
            refuse("can only access node lease with the same name as the requesting node".into())
        }
        Kind::Pod => {
            if obj["metadata"]["annotations"]
                .get(MIRROR_ANNOTATION)
                .is_none()
            {
                return refuse(format!(
                    "pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
                ));
            }
            if obj["spec"]["nodeName"].as_str() != Some(node) {
                return refuse(format!(
                    "node {node:?} can only create pods with spec.nodeName set to itself"
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The error NodeRestriction gives when the registry calls it outside a request: none.
pub fn admit_current(res: &Resource, obj: &Value) -> Result<(), ApiError> {
    match crate::authn::REQUEST_USER.try_with(Clone::clone) {
        Ok(user) => admit(&user, res, obj),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_users_and_what_their_pods_refer_to() {
        let n1 = UserInfo::new("system:node:n1", "", &[NODES_GROUP]);
        assert_eq!(node_of(&n1), Some("n1"));
        assert_eq!(node_of(&UserInfo::new("system:node:n1", "", &[])), None);
        let spec = json!({
            "serviceAccountName": "robot",
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "v", "secret": {"secretName": "tls"}},
                        {"name": "p", "projected": {"sources": [{"configMap": {"name": "proj"}}]}}],
            "containers": [{"name": "c", "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}}],
                            "envFrom": [{"configMapRef": {"name": "settings"}}]}]});
        for (resource, name) in [
            ("secrets", "pull"),
            ("secrets", "tls"),
            ("secrets", "env-secret"),
            ("configmaps", "proj"),
            ("configmaps", "settings"),
            ("serviceaccounts", "robot"),
        ] {
            assert!(references(&spec, resource, name), "{resource}/{name}");
        }
        assert!(!references(&spec, "secrets", "settings"));
        assert!(!references(&spec, "configmaps", "tls"));
    }

    #[test]
    fn node_restriction_on_creates() {
        let n1 = UserInfo::new("system:node:n1", "", &[NODES_GROUP]);
        let node = registry::by_kind(Kind::Node);
        assert!(admit(&n1, node, &json!({"metadata": {"name": "n1"}})).is_ok());
        let other = admit(&n1, node, &json!({"metadata": {"name": "n2"}})).expect_err("refused");
        assert_eq!(
            other.message,
            "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\""
        );
        let pod = registry::by_kind(Kind::Pod);
        let plain = admit(
            &n1,
            pod,
            &json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}}),
        );
        assert!(
            plain
                .expect_err("refused")
                .message
                .contains("can only create mirror pods")
        );
        let mirror = json!({"metadata": {"name": "p", "annotations": {MIRROR_ANNOTATION: "x"}}, "spec": {"nodeName": "n1"}});
        assert!(admit(&n1, pod, &mirror).is_ok());
    }
}
