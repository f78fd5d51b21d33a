//! CPU and memory over the last 15 minutes: the DaemonSet page's chart of its pods, the nodes
//! page's chart of every node and a node's own. The series come from the API server's
//! `usage.everynode.io` (read as the signed-in user); `assets/charts.js` (uPlot, bundled at
//! build time) draws them and fetches them again every 15 seconds.

use crate::error::ConsoleError;
use crate::session::Session;
use axum::Json;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use maud::{Markup, html};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Series drawn at most; the busiest (by their latest CPU) are kept.
const MAX_SERIES: usize = 20;

/// The charts' place on a page: `source` answers with the series.
pub fn charts(source: &str, what: &str) -> Markup {
    html! {
        div.card.usage data-usage-chart data-source=(source) data-state="loading" {
            h2 { "CPU and memory, last 15 minutes" }
            p.muted.usage-note { "Gathering " (what) "'s use: the first points appear after two readings (about 30 s)." }
            div.usage-plots {}
            table.usage-now { thead { tr { th { "Name" } th { "CPU now" } th { "Memory now" } } } tbody {} }
        }
    }
}

/// One series: its name and `[unix seconds, CPU cores, memory bytes]` points.
fn series(item: &Value) -> Option<Value> {
    let name = item["metadata"]["name"].as_str()?;
    let points: Vec<Value> = item["points"]
        .as_array()?
        .iter()
        .filter_map(|p| {
            let at: jiff::Timestamp = p["timestamp"].as_str()?.parse().ok()?;
            let cores = p["cpuNanocores"].as_u64()? as f64 / 1e9;
            Some(json!([at.as_second(), cores, p["memoryBytes"].as_u64()?]))
        })
        .collect();
    Some(json!({"name": name, "points": points}))
}

fn latest_cpu(series: &Value) -> f64 {
    series["points"]
        .as_array()
        .and_then(|p| p.last())
        .and_then(|p| p[1].as_f64())
        .unwrap_or(0.0)
}

/// The chart's data: the busiest `MAX_SERIES` of `items`, and how many there were.
fn chart_data(items: &[Value]) -> Value {
    let mut all: Vec<Value> = items.iter().filter_map(series).collect();
    let total = all.len();
    all.sort_by(|a, b| latest_cpu(b).total_cmp(&latest_cpu(a)));
    all.truncate(MAX_SERIES);
    all.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json!({"series": all, "total": total})
}

fn answer(result: Result<Value, ConsoleError>) -> Response {
    match result {
        Ok(data) => Json(data).into_response(),
        Err(e) => (e.status(), Json(json!({"error": e.to_string()}))).into_response(),
    }
}

/// `GET /ui/daemonsets/{ns}/{name}/usage`: the DaemonSet's pods (those it controls).
pub async fn daemonset(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    answer(
        async {
            let ds: DaemonSet = client
                .get_as(&format!("/apis/apps/v1/namespaces/{ns}/daemonsets/{name}"))
                .await?;
            let uid = ds.metadata.uid.unwrap_or_default();
            let pods: Vec<Pod> = client
                .list_as(&format!("/api/v1/namespaces/{ns}/pods"))
                .await?;
            let owned: BTreeSet<String> = pods
                .into_iter()
                .filter(|p| {
                    p.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.controller == Some(true) && o.uid == uid)
                })
                .filter_map(|p| p.metadata.name)
                .collect();
            let usage = client
                .list(&format!("/apis/usage.everynode.io/v1/namespaces/{ns}/pods"))
                .await?;
            let items: Vec<Value> = usage
                .into_iter()
                .filter(|u| {
                    u["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| owned.contains(n))
                })
                .collect();
            Ok(chart_data(&items))
        }
        .await,
    )
}

/// `GET /ui/nodes/usage`: every node.
pub async fn nodes(Session(client): Session) -> Response {
    answer(
        client
            .list("/apis/usage.everynode.io/v1/nodes")
            .await
            .map(|items| chart_data(&items)),
    )
}

/// `GET /ui/nodes/{name}/usage`: one node.
pub async fn node(Session(client): Session, Path(name): Path<String>) -> Response {
    let selector = crate::layout::query_value(&format!("metadata.name={name}"));
    answer(
        client
            .list(&format!(
                "/apis/usage.everynode.io/v1/nodes?fieldSelector={selector}"
            ))
            .await
            .map(|items| chart_data(&items)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, nanocores: u64) -> Value {
        json!({"metadata": {"name": name}, "points": [
            {"timestamp": "2026-11-30T00:00:00Z", "cpuNanocores": 1, "memoryBytes": 10},
            {"timestamp": "2026-11-30T00:00:15Z", "cpuNanocores": nanocores, "memoryBytes": 20}]})
    }

    #[test]
    fn the_busiest_series_are_kept_in_name_order() {
        let items: Vec<Value> = (0..25u64)
            .map(|i| item(&format!("pod-{i:02}"), i * 1_000_000))
            .collect();
        let data = chart_data(&items);
        assert_eq!(data["total"], 25);
        let names: Vec<&str> = data["series"]
            .as_array()
            .expect("series")
            .iter()
            .filter_map(|s| s["name"].as_str())
            .collect();
        assert_eq!(names.len(), MAX_SERIES);
        assert_eq!(names[0], "pod-05", "the five idlest are left out");
        assert_eq!(
            data["series"][0]["points"][1],
            json!([1_795_996_815i64, 0.005, 20])
        );
    }
}
