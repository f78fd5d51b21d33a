//! What exists from the start (system namespaces, built-in PriorityClasses) and namespace
//! deletion: a terminating namespace is emptied, then its `kubernetes` finalizer is removed and
//! it goes. Upstream runs this in the controller manager; it is here because it has to empty
//! every resource the server serves, and it uses the same operations as any client request.

use crate::error::ApiResult;
use crate::registry::{DeleteOptions, Registry, Write};
use everynode_api::registry::{self, Kind};
use everynode_api::selector::{FieldSelector, Selector};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Namespaces that always exist.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the system namespaces and built-in PriorityClasses when absent.
pub async fn bootstrap(api: &Registry) -> ApiResult<()> {
    let ns = registry::by_kind(Kind::Namespace);
    for name in SYSTEM_NAMESPACES {
        if api.get(ns, None, name, false).await.is_err() {
            api.create(ns, None, json!({"metadata": {"name": name}}), false, None)
                .await?;
        }
    }
    let pc = registry::by_kind(Kind::PriorityClass);
    for (name, value, description) in [
        (
            "system-node-critical",
            2_000_001_000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        (
            "system-cluster-critical",
            2_000_000_000,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ] {
        if api.get(pc, None, name, false).await.is_err() {
            api.create(pc, None, json!({"metadata": {"name": name}, "value": value, "description": description, "globalDefault": false}), false, None).await?;
        }
    }
    Ok(())
}

/// Empties one terminating namespace; returns true when it is finished.
async fn finalize(api: &Registry, name: &str) -> ApiResult<bool> {
    let mut remaining = 0usize;
    for res in registry::RESOURCES.iter().filter(|r| r.namespaced) {
        let filter = Registry::filter(
            res,
            Some(name),
            Selector::everything(),
            FieldSelector::default(),
        );
        for obj in api.cache.list(&filter, None, 0).items {
            remaining += 1;
            let v: Value = serde_json::from_slice(&obj.json).unwrap_or(Value::Null);
            if v["metadata"].get("deletionTimestamp").is_some() {
                continue;
            }
            let obj_name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let opts = DeleteOptions {
                propagation_policy: Some("Background".into()),
                ..Default::default()
            };
            if let Err(e) = api.delete(res, Some(name), &obj_name, &opts).await
                && e.code != axum::http::StatusCode::NOT_FOUND
            {
                tracing::warn!(namespace = name, object = obj_name, error = %e, "namespace cleanup could not delete an object");
            }
        }
    }
    if remaining > 0 {
        return Ok(false);
    }
    let ns = registry::by_kind(Kind::Namespace);
    api.update_with(&Write::system(ns, None, name), &|current| {
        let mut new = current.clone();
        let kept: Vec<Value> = new["spec"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| *f != "kubernetes")
            .cloned()
            .collect();
        new["spec"]["finalizers"] = json!(kept);
        Ok(new)
    })
    .await?;
    Ok(true)
}

/// Follows namespaces forever, finishing the deletion of terminating ones.
pub async fn run(api: Arc<Registry>) {
    let ns = registry::by_kind(Kind::Namespace);
    let mut last = 0;
    loop {
        let rev = api.cache.revision();
        if rev != last {
            last = rev;
            let filter =
                Registry::filter(ns, None, Selector::everything(), FieldSelector::default());
            for obj in api.cache.list(&filter, None, 0).items {
                let v: Value = serde_json::from_slice(&obj.json).unwrap_or(Value::Null);
                if v["metadata"].get("deletionTimestamp").is_none() {
                    continue;
                }
                let name = v["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                match finalize(&api, &name).await {
                    Ok(true) => tracing::info!(namespace = name, "namespace emptied and finalized"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(namespace = name, error = %e, "namespace finalization failed; will retry")
                    }
                }
            }
        }
        // Level-triggered: look again when anything changes, and at least every second.
        let _ = api.cache.wait_for(last + 1, Duration::from_secs(1)).await;
    }
}
