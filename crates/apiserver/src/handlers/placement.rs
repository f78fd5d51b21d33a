//! `GET .../daemonsets/{name}/placement` (beyond.md §7.1): every node with whether the
//! DaemonSet's pod should run there, its pod, and why it has no available pod of the current
//! revision. Served from the watch cache through `everynode_api::placement`, the rules the
//! controller's pass uses. `reason=` (repeatable) and `node=` filter, `limit` and `continue` page.

use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use crate::request::{Query, ResourcePath};
use axum::response::Response;
use base64::Engine;
use everynode_api::placement::{self, NodeRow, REASON_CODES};
use everynode_api::registry::{self, Kind};
use everynode_api::selector::{FieldSelector, Selector};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use std::sync::Arc;

pub const API_VERSION: &str = "everynode.dev/v1alpha1";

/// The cached objects of `kind` (in `namespace`) whose labels match `selector`: the cache
/// narrows by labels before anything is decoded, so a DaemonSet's pods cost what they are, not
/// what the namespace holds.
fn cached(
    registry: &Registry,
    kind: Kind,
    namespace: Option<&str>,
    selector: Selector,
) -> Vec<Arc<crate::cache::CachedObject>> {
    let res = registry::by_kind(kind);
    let filter = Registry::filter(res, namespace, selector, FieldSelector::default());
    registry.cache.list(&filter, None, 0).items
}

/// Every Node, decoded (once per revision); what does not decode is skipped.
pub(super) fn nodes(registry: &Registry) -> Vec<Arc<Node>> {
    let items = cached(registry, Kind::Node, None, Selector::everything());
    registry.decoded_nodes.of(&items)
}

/// The pods `ds` controls (its selector narrows, its controller reference decides).
pub(super) fn owned_pods(registry: &Registry, ds: &DaemonSet) -> Vec<Arc<Pod>> {
    let uid = ds.metadata.uid.as_deref().unwrap_or_default();
    let namespace = ds.metadata.namespace.as_deref();
    let selector =
        everynode_api::selector::from_label_selector(ds.spec.as_ref().map(|s| &s.selector))
            .unwrap_or(Selector::Nothing);
    let items = cached(registry, Kind::Pod, namespace, selector);
    registry
        .decoded_pods
        .of(&items)
        .into_iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .collect()
}

/// The page of `rows` after `continue_after` (a node name), at most `limit` long, and the node
/// to continue after when more remain.
fn page(
    rows: Vec<NodeRow>,
    continue_after: Option<&str>,
    limit: usize,
) -> (Vec<NodeRow>, Option<String>) {
    let mut rest: Vec<NodeRow> = rows
        .into_iter()
        .filter(|r| continue_after.is_none_or(|after| r.node.as_str() > after))
        .collect();
    if limit == 0 || rest.len() <= limit {
        return (rest, None);
    }
    rest.truncate(limit);
    let next = rest.last().map(|r| r.node.clone());
    (rest, next)
}

pub async fn handle(
    registry: &Arc<Registry>,
    path: &ResourcePath,
    name: &str,
    query: &Query,
) -> ApiResult<Response> {
    let res = path.res;
    let namespace = path.namespace().unwrap_or("default");
    let reasons: Vec<&str> = query.all("reason").collect();
    if let Some(bad) = reasons.iter().find(|r| !REASON_CODES.contains(r)) {
        return Err(ApiError::bad_request(format!(
            "unknown reason {bad:?}: want one of {}",
            REASON_CODES.join(", ")
        )));
    }
    let nodes_asked: Vec<&str> = query.all("node").collect();
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("limit {l:?} is not a count")))?,
        None => 0,
    };
    let continue_after = query
        .get("continue")
        .map(|token| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("continue key is not valid: {token:?}"))
                })
        })
        .transpose()?;
    registry.fresh_cache().await?;
    let ds_value = registry.get(res, Some(namespace), name, false).await?;
    let resource_version = ds_value["metadata"]["resourceVersion"].clone();
    let ds: DaemonSet = serde_json::from_value(ds_value)
        .map_err(|e| ApiError::internal(format!("stored DaemonSet does not decode: {e}")))?;
    let nodes = nodes(registry);
    let pods = owned_pods(registry, &ds);
    let spec = ds.spec.clone().unwrap_or_default();
    let collision = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = everynode_api::daemonset::template_hash(&spec.template, collision);
    let (summary, rows) =
        placement::placement(&ds, &nodes, &pods, &hash, registry.clock.now(), true);
    let rows: Vec<NodeRow> = rows
        .into_iter()
        .filter(|r| reasons.is_empty() || r.reason.as_deref().is_some_and(|c| reasons.contains(&c)))
        .filter(|r| nodes_asked.is_empty() || nodes_asked.contains(&r.node.as_str()))
        .collect();
    let (rows, next) = page(rows, continue_after.as_deref(), limit);
    let mut metadata =
        json!({"name": name, "namespace": namespace, "resourceVersion": resource_version});
    if let Some(next) = next {
        metadata["continue"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(next));
    }
    let body: Value = json!({
        "apiVersion": API_VERSION,
        "kind": "DaemonSetPlacement",
        "metadata": metadata,
        "summary": summary,
        "nodes": rows,
    });
    Ok(crate::response::ok(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(names: &[&str]) -> Vec<NodeRow> {
        names
            .iter()
            .map(|n| NodeRow {
                node: (*n).to_owned(),
                ..NodeRow::default()
            })
            .collect()
    }

    #[test]
    fn pages_continue_after_the_last_node_named() {
        let (first, next) = page(rows(&["a", "b", "c"]), None, 2);
        assert_eq!(first.len(), 2);
        assert_eq!(next.as_deref(), Some("b"));
        let (second, next) = page(rows(&["a", "b", "c"]), Some("b"), 2);
        assert_eq!(
            second.iter().map(|r| r.node.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        assert_eq!(next, None);
    }
}
