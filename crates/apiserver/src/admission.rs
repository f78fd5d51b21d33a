//! Pod admission on create, as upstream's default admission plugins:
//! - `Priority`: `priorityClassName` (or the global default class) resolves into `priority` and
//!   `preemptionPolicy`; an unknown class or a conflicting `priority` is refused (403);
//! - `DefaultTolerationSeconds`: pods without a toleration for the not-ready / unreachable
//!   NoExecute taints get one for 300 s (daemon pods already tolerate them forever).
//!
//! Beyond upstream (beyond.md §4, kubernetes#140984): a pod controlled by a DaemonSet that names
//! no `priorityClassName` gets `everynode-daemon`, ahead of any global default, so a daemon pod
//! is not left Pending behind ordinary pods on a full node.

use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use everynode_api::registry::{self, Kind, Resource};
use everynode_api::selector::{FieldSelector, Selector};
use serde_json::{Value, json};

const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The class daemon pods get by default, which the server keeps in place at start.
pub const DAEMON_PRIORITY_CLASS: &str = "everynode-daemon";
pub const DAEMON_PRIORITY_VALUE: i64 = 100_000_000;
pub const DAEMON_PRIORITY_DESCRIPTION: &str = "Given by everynode to pods of a DaemonSet that \
    name no priorityClassName, so that a daemon pod can preempt ordinary pods on its own node \
    rather than stay Pending (--daemon-priority-class \"\" turns this off).";

/// Whether the pod's controller is a DaemonSet.
fn controlled_by_daemonset(pod: &Value) -> bool {
    pod["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|o| {
            o["controller"].as_bool() == Some(true)
                && o["kind"].as_str() == Some("DaemonSet")
                && o["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("apps/"))
        })
}

/// The value and preemption policy of a PriorityClass object.
fn class_fields(pc: &Value) -> (i64, String) {
    (
        pc["value"].as_i64().unwrap_or(0),
        pc["preemptionPolicy"]
            .as_str()
            .unwrap_or("PreemptLowerPriority")
            .to_owned(),
    )
}

async fn global_default(api: &Registry, pcs: &'static Resource) -> Option<(String, i64, String)> {
    let filter = Registry::filter(pcs, None, Selector::everything(), FieldSelector::default());
    api.cache
        .list(&filter, None, 0)
        .items
        .iter()
        .filter_map(|o| serde_json::from_slice::<Value>(&o.json).ok())
        .filter(|pc| pc["globalDefault"].as_bool() == Some(true))
        // Upstream picks the lowest-valued default if several claim it.
        .min_by_key(|pc| pc["value"].as_i64().unwrap_or(0))
        .map(|pc| {
            let (value, policy) = class_fields(&pc);
            (
                pc["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                value,
                policy,
            )
        })
}

/// Resolves priority (the `Priority` plugin).
async fn priority(api: &Registry, pods: &'static Resource, pod: &mut Value) -> ApiResult<()> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let pcs = registry::by_kind(Kind::PriorityClass);
    let daemon_class = api
        .options
        .daemon_priority_class
        .clone()
        .filter(|c| !c.is_empty() && controlled_by_daemonset(pod));
    let class = pod["spec"]["priorityClassName"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .or(daemon_class);
    let resolved = match class {
        Some(class) => match api.get(pcs, None, &class, true).await {
            Ok(pc) => {
                let (value, policy) = class_fields(&pc);
                Some((class, value, policy))
            }
            Err(e) if e.code == axum::http::StatusCode::NOT_FOUND => {
                return Err(ApiError::forbidden(
                    pods,
                    &name,
                    &format!("no PriorityClass with name {class} was found"),
                ));
            }
            Err(e) => return Err(e),
        },
        None => global_default(api, pcs).await,
    };
    let (class, value, policy) =
        resolved.unwrap_or((String::new(), 0, "PreemptLowerPriority".to_owned()));
    if let Some(given) = pod["spec"]["priority"].as_i64()
        && given != value
    {
        return Err(ApiError::forbidden(
            pods,
            &name,
            &format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            ),
        ));
    }
    if let Some(spec) = pod["spec"].as_object_mut() {
        if !class.is_empty() {
            spec.insert("priorityClassName".into(), json!(class));
        }
        spec.insert("priority".into(), json!(value));
        spec.entry("preemptionPolicy").or_insert(json!(policy));
    }
    Ok(())
}

/// Adds the 300 s not-ready / unreachable tolerations (the `DefaultTolerationSeconds` plugin).
fn default_toleration_seconds(pod: &mut Value) {
    let Some(spec) = pod["spec"].as_object_mut() else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert(json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = list.iter().any(|t| {
            let effect = t["effect"].as_str().unwrap_or("");
            let op_exists = t["operator"].as_str() == Some("Exists");
            let key_matches = t["key"].as_str() == Some(key)
                || (t["key"].as_str().unwrap_or("").is_empty() && op_exists);
            key_matches && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}));
        }
    }
}

/// Admits a pod being created.
pub async fn pod_create(api: &Registry, pods: &'static Resource, pod: &mut Value) -> ApiResult<()> {
    priority(api, pods, pod).await?;
    default_toleration_seconds(pod);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_pod_a_daemonset_controls_is_a_daemon_pod() {
        let owned = |kind: &str, api: &str, controller: bool| {
            json!({"metadata": {"ownerReferences": [{"apiVersion": api, "kind": kind, "name": "x",
                "uid": "u", "controller": controller}]}})
        };
        assert!(controlled_by_daemonset(&owned(
            "DaemonSet",
            "apps/v1",
            true
        )));
        assert!(!controlled_by_daemonset(&owned(
            "DaemonSet",
            "apps/v1",
            false
        )));
        assert!(!controlled_by_daemonset(&owned(
            "ReplicaSet",
            "apps/v1",
            true
        )));
        assert!(!controlled_by_daemonset(&owned(
            "DaemonSet",
            "example.com/v1",
            true
        )));
        assert!(!controlled_by_daemonset(&json!({"metadata": {}})));
    }

    #[test]
    fn default_tolerations_are_added_only_when_missing() {
        let mut pod = json!({"spec": {"containers": []}});
        default_toleration_seconds(&mut pod);
        let t = pod["spec"]["tolerations"].as_array().expect("list");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["tolerationSeconds"], 300);
        let mut daemon = json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]}});
        default_toleration_seconds(&mut daemon);
        assert_eq!(
            daemon["spec"]["tolerations"].as_array().map(Vec::len),
            Some(2)
        );
        let mut everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut everything);
        assert_eq!(
            everything["spec"]["tolerations"].as_array().map(Vec::len),
            Some(1)
        );
    }
}
