//! `metrics.k8s.io/v1beta1`: NodeMetrics and PodMetrics, the API `kubectl top` reads, served
//! from what `scrape` gathers from the agents (`usage`), as metrics-server serves it. Lists take
//! `labelSelector` (on the node's or pod's labels) and, for pods, a `metadata.name` field
//! selector; a node or pod without two readings yet is left out of a list and 404 on a get, as
//! metrics-server answers.

pub mod history;
pub mod scrape;
pub mod usage;

use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use crate::response::ok;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use everynode_api::registry::{self as resources, Kind};
use everynode_api::selector::{Selector, parse_field_selector, parse_label_selector};
use serde_json::{Value, json};
use std::sync::Arc;
use usage::Point;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

/// Discovery's resources of the group: (plural, kind, namespaced).
pub const RESOURCES: &[(&str, &str, bool)] = &[
    ("nodes", "NodeMetrics", false),
    ("pods", "PodMetrics", true),
];

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    label_selector: Option<String>,
    field_selector: Option<String>,
}

/// CPU as metrics-server writes it: nanocores.
fn cpu_quantity(nanocores: u64) -> String {
    format!("{nanocores}n")
}

/// Memory as metrics-server writes it: binary units where exact.
fn memory_quantity(bytes: u64) -> String {
    if bytes > 0 && bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

/// A Go duration string (`15.002s`), as `metav1.Duration` is written.
fn window(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

fn usage(point: &Point) -> Value {
    json!({"cpu": cpu_quantity(point.nanocores), "memory": memory_quantity(point.memory_bytes)})
}

fn meta_of(obj: &Value, timestamp: jiff::Timestamp) -> Value {
    let m = &obj["metadata"];
    let mut meta = json!({"name": m["name"], "creationTimestamp": timestamp.to_string()});
    if !m["namespace"].is_null() {
        meta["namespace"] = m["namespace"].clone();
    }
    if let Some(labels) = m["labels"].as_object().filter(|l| !l.is_empty()) {
        meta["labels"] = Value::Object(labels.clone());
    }
    meta
}

fn node_metrics(api: &Registry, node: &Value) -> Option<Value> {
    let point = api.usage.node_point(node["metadata"]["name"].as_str()?)?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": meta_of(node, point.timestamp),
        "timestamp": point.timestamp.to_string(),
        "window": window(point.window),
        "usage": usage(&point),
    }))
}

fn pod_metrics(api: &Registry, pod: &Value) -> Option<Value> {
    let m = &pod["metadata"];
    let points = api
        .usage
        .pod_points(m["namespace"].as_str()?, m["name"].as_str()?)?;
    let (_, first) = points.first()?;
    let containers: Vec<Value> = points
        .iter()
        .map(|(name, p)| json!({"name": name, "usage": usage(p)}))
        .collect();
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": meta_of(pod, first.timestamp),
        "timestamp": first.timestamp.to_string(),
        "window": window(first.window),
        "containers": containers,
    }))
}

fn labels_of(obj: &Value) -> std::collections::BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn selector(query: &ListQuery) -> ApiResult<Selector> {
    match query.label_selector.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(Selector::everything()),
        Some(s) => parse_label_selector(s).map_err(|e| ApiError::bad_request(e.to_string())),
    }
}

/// The objects of `kind` (in `namespace`), decoded, that match the query's selectors.
fn stored(
    api: &Registry,
    kind: Kind,
    namespace: Option<&str>,
    query: &ListQuery,
) -> ApiResult<Vec<Value>> {
    let labels = selector(query)?;
    let name = match query.field_selector.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let fields =
                parse_field_selector(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
            fields.equality_value("metadata.name").map(str::to_owned)
        }
    };
    let prefix = resources::by_kind(kind).list_prefix(namespace);
    Ok(api
        .cache
        .all(&prefix)
        .iter()
        .filter_map(|o| serde_json::from_slice::<Value>(&o.json).ok())
        .filter(|o| labels.matches(&labels_of(o)))
        .filter(|o| name.as_deref().is_none_or(|n| o["metadata"]["name"] == n))
        .collect())
}

fn list(kind: &str, items: Vec<Value>) -> Response {
    ok(&json!({
        "kind": kind,
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": items,
    }))
}

fn answer(result: ApiResult<Response>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// What a handler makes of one stored node or pod; `None` when there is nothing to show.
type Render = fn(&Registry, &Value) -> Option<Value>;

/// A list of what `render` makes of the stored objects of `kind` the query selects.
fn rendered_list(
    api: &Registry,
    kind: Kind,
    namespace: Option<&str>,
    query: &ListQuery,
    render: Render,
    wrap: impl FnOnce(Vec<Value>) -> Response,
) -> Response {
    answer(
        stored(api, kind, namespace, query)
            .map(|objects| wrap(objects.iter().filter_map(|o| render(api, o)).collect())),
    )
}

/// What `render` makes of one stored object, or `missing`'s 404.
fn rendered_one(
    api: &Registry,
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
    render: Render,
    missing: impl FnOnce() -> ApiError,
) -> Response {
    match api
        .cache
        .object(kind, namespace, name)
        .and_then(|o| render(api, &o))
    {
        Some(rendered) => ok(&rendered),
        None => missing().into_response(),
    }
}

/// `GET .../nodes`.
pub async fn list_nodes(
    State(api): State<Arc<Registry>>,
    Query(query): Query<ListQuery>,
) -> Response {
    rendered_list(&api, Kind::Node, None, &query, node_metrics, |items| {
        list("NodeMetricsList", items)
    })
}

/// `GET .../nodes/{name}`.
pub async fn get_node(State(api): State<Arc<Registry>>, Path(name): Path<String>) -> Response {
    rendered_one(&api, Kind::Node, None, &name, node_metrics, || {
        ApiError::not_found_in(GROUP, "nodemetrics", &name)
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
        pod_metrics,
        |items| list("PodMetricsList", items),
    )
}

/// `GET .../namespaces/{namespace}/pods/{name}`.
pub async fn get_pod(
    State(api): State<Arc<Registry>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    // metrics-server names the pod with its namespace.
    rendered_one(
        &api,
        Kind::Pod,
        Some(&namespace),
        &name,
        pod_metrics,
        || ApiError::not_found_in(GROUP, "podmetrics", &format!("{namespace}/{name}")),
    )
}

/// The routes, with `usage.everynode.io`'s.
pub fn routes() -> axum::Router<Arc<Registry>> {
    use axum::routing::get;
    let base = "/apis/metrics.k8s.io/v1beta1";
    history::routes()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_windows_as_metrics_server_writes_them() {
        assert_eq!(cpu_quantity(1_500_000), "1500000n");
        assert_eq!(memory_quantity(4096), "4Ki");
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(window(std::time::Duration::from_millis(15_002)), "15.002s");
        assert_eq!(window(std::time::Duration::from_secs(10)), "10s");
    }
}
