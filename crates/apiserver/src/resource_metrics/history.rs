//! `usage.everynode.io/v1`: NodeUsage and PodUsage, the last 15 minutes of each node's and
//! pod's CPU and memory, one point per round of scrapes (`usage::UsageStore::record_history`).
//! everynode's own API, for the console's charts and scripts: laid out as `metrics.k8s.io`
//! (the same lists, selectors and access, `get`/`list` on the group's `nodes` and `pods`), but
//! with a series instead of one reading. Points carry plain numbers: `cpuNanocores` and
//! `memoryBytes`.

use super::usage::HistoryPoint;
use super::{ListQuery, meta_of, rendered_list, rendered_one};
use crate::error::ApiError;
use crate::registry::Registry;
use crate::response::ok;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use everynode_api::registry::Kind;
use serde_json::{Value, json};
use std::sync::Arc;

pub const GROUP: &str = "usage.everynode.io";
pub const VERSION: &str = "v1";
const API_VERSION: &str = "usage.everynode.io/v1";

/// Discovery's resources of the group: (plural, kind, namespaced).
pub const RESOURCES: &[(&str, &str, bool)] =
    &[("nodes", "NodeUsage", false), ("pods", "PodUsage", true)];

fn points(history: &[HistoryPoint]) -> Value {
    history
        .iter()
        .map(|p| {
            json!({
                "timestamp": p.at.to_string(),
                "cpuNanocores": p.nanocores,
                "memoryBytes": p.memory_bytes,
            })
        })
        .collect()
}

fn usage_object(kind: &str, obj: &Value, history: &[HistoryPoint]) -> Option<Value> {
    let last = history.last()?;
    let mut meta = meta_of(obj, last.at);
    meta.as_object_mut()?.remove("creationTimestamp");
    let mut out = json!({
        "kind": kind,
        "apiVersion": API_VERSION,
        "metadata": meta,
        "window": format!("{}s", super::usage::HISTORY.as_secs()),
        "points": points(history),
    });
    if let Some(node) = obj["spec"]["nodeName"].as_str() {
        out["nodeName"] = json!(node);
    }
    Some(out)
}

fn node_usage(api: &Registry, node: &Value) -> Option<Value> {
    let history = api.usage.node_history(node["metadata"]["name"].as_str()?);
    usage_object("NodeUsage", node, &history)
}

fn pod_usage(api: &Registry, pod: &Value) -> Option<Value> {
    let m = &pod["metadata"];
    let history = api
        .usage
        .pod_history(m["namespace"].as_str()?, m["name"].as_str()?);
    usage_object("PodUsage", pod, &history)
}

fn list(kind: &str, items: Vec<Value>) -> Response {
    ok(&json!({"kind": kind, "apiVersion": API_VERSION, "metadata": {}, "items": items}))
}

/// `GET .../nodes`.
pub async fn list_nodes(
    State(api): State<Arc<Registry>>,
    Query(query): Query<ListQuery>,
) -> Response {
    rendered_list(&api, Kind::Node, None, &query, node_usage, |items| {
        list("NodeUsageList", items)
    })
}

/// `GET .../nodes/{name}`.
pub async fn get_node(State(api): State<Arc<Registry>>, Path(name): Path<String>) -> Response {
    rendered_one(&api, Kind::Node, None, &name, node_usage, || {
        ApiError::not_found_in(GROUP, "nodeusage", &name)
    })
}

/// `GET .../pods` and `GET .../namespaces/{namespace}/pods`.
pub async fn list_pods(
    State(api): State<Arc<Registry>>,
    namespace: Option<Path<String>>,
    Query(query): Query<ListQuery>,
) -> Response {
    let namespace = namespace.map(|Path(ns)| ns);
    rendered_list(
        &api,
        Kind::Pod,
        namespace.as_deref(),
        &query,
        pod_usage,
        |items| list("PodUsageList", items),
    )
}

/// `GET .../namespaces/{namespace}/pods/{name}`.
pub async fn get_pod(
    State(api): State<Arc<Registry>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    rendered_one(&api, Kind::Pod, Some(&namespace), &name, pod_usage, || {
        ApiError::not_found_in(GROUP, "podusage", &format!("{namespace}/{name}"))
    })
}

/// The routes.
pub fn routes() -> axum::Router<Arc<Registry>> {
    use axum::routing::get;
    let base = format!("/apis/{GROUP}/{VERSION}");
    axum::Router::new()
        .route(&format!("{base}/nodes"), get(list_nodes))
        .route(&format!("{base}/nodes/{{name}}"), get(get_node))
        .route(&format!("{base}/pods"), get(list_pods))
        .route(
            &format!("{base}/namespaces/{{namespace}}/pods"),
            get(list_pods),
        )
        .route(
            &format!("{base}/namespaces/{{namespace}}/pods/{{name}}"),
            get(get_pod),
        )
}
