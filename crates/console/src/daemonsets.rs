//! The DaemonSet list, per namespace or for all, live.

use crate::ConsoleState;
use crate::client::ApiClient;
use crate::error::{ConsoleError, ConsoleResult};
use crate::layout::{Nav, age, int_at, notice, page, pairs, query_value, str_at};
use crate::live;
use crate::placement::placement;
use crate::session::Session;
use crate::status::{Status, status};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub notice: String,
}

/// The path of a namespaced collection, or of all namespaces when `ns` is empty.
pub fn collection(prefix: &str, ns: &str, plural: &str) -> String {
    if ns.is_empty() {
        format!("{prefix}/{plural}")
    } else {
        format!("{prefix}/namespaces/{ns}/{plural}")
    }
}

/// What a DaemonSet's status needs besides itself.
pub struct Fleet {
    pub nodes: Vec<Node>,
    pub pods: Vec<Value>,
}

impl Fleet {
    pub async fn load(client: &ApiClient, ns: &str) -> ConsoleResult<Self> {
        let nodes = client
            .list("/api/v1/nodes")
            .await?
            .into_iter()
            .filter_map(|n| serde_json::from_value(n).ok())
            .collect();
        let pods = client.list(&collection("/api/v1", ns, "pods")).await?;
        Ok(Fleet { nodes, pods })
    }

    /// The DaemonSet's status word, and its pods as (name, node, STATUS word, pod).
    pub fn status_of(
        &self,
        ds: &Value,
        now: Timestamp,
    ) -> (Status, Vec<(String, String, String, Value)>) {
        let typed: DaemonSet = serde_json::from_value(ds.clone()).unwrap_or_default();
        let typed_pods: Vec<(Pod, &Value)> = self
            .pods
            .iter()
            .filter_map(|p| Some((serde_json::from_value::<Pod>(p.clone()).ok()?, p)))
            .filter(|(p, _)| crate::placement::owned_by(p, &typed))
            .collect();
        let rows = placement(
            &typed,
            &self.nodes,
            &typed_pods
                .iter()
                .map(|(p, _)| p.clone())
                .collect::<Vec<_>>(),
        );
        let pods: Vec<(String, String, String, Value)> = typed_pods
            .iter()
            .map(|(_, raw)| {
                let (_, word, _) = everynode_api::table::pod_status(raw, now);
                (
                    str_at(raw, "/metadata/name").to_owned(),
                    str_at(raw, "/spec/nodeName").to_owned(),
                    word,
                    (*raw).clone(),
                )
            })
            .collect();
        let words: Vec<(String, String, String)> = pods
            .iter()
            .map(|(a, b, c, _)| (a.clone(), b.clone(), c.clone()))
            .collect();
        (status(&typed, &rows, &words), pods)
    }
}

pub fn status_badge(s: &Status) -> Markup {
    html! {
        span class={"status " (s.word.as_str())} title=(s.reasons.join("\n")) { (s.word.as_str()) }
        @if !s.reasons.is_empty() {
            details.reasons {
                summary { "why" }
                ul { @for r in &s.reasons { li { (r) } } }
            }
        }
    }
}

/// The images of a pod spec's containers, comma separated.
pub fn images(pod_spec: &Value) -> String {
    pod_spec
        .pointer("/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("image").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn row(ds: &Value, fleet: &Fleet, now: Timestamp) -> Markup {
    let ns = str_at(ds, "/metadata/namespace");
    let name = str_at(ds, "/metadata/name");
    let (st, _) = fleet.status_of(ds, now);
    let base = format!("/ui/daemonsets/{ns}/{name}");
    html! {
        tr data-name=(name) data-status=(st.word.as_str()) {
            td { a href=(base) { (name) } }
            td { (ns) }
            td { (status_badge(&st)) }
            td.num { (int_at(ds, "/status/desiredNumberScheduled")) }
            td.num { (int_at(ds, "/status/currentNumberScheduled")) }
            td.num { (int_at(ds, "/status/numberReady")) }
            td.num { (int_at(ds, "/status/updatedNumberScheduled")) }
            td.num { (int_at(ds, "/status/numberAvailable")) }
            td { code { (images(&ds["spec"]["template"]["spec"])) } }
            td { (pairs(ds.pointer("/spec/template/spec/nodeSelector"))) }
            td { (age(ds, now)) }
            td.actions {
                a.button href={(base) "?tab=edit"} { "Edit" }
                a.button href={(base) "?tab=yaml"} { "Edit YAML" }
                form method="post" action={(base) "/redeploy"} {
                    button type="submit" data-confirm={"Restart every pod of " (name) "?"} { "Redeploy" }
                }
                a.button href={(base) "?tab=revisions"} { "Roll back" }
                a.button href={(base) "?tab=delete"} { "Delete" }
            }
        }
    }
}

/// The table body: one row per DaemonSet.
pub async fn rows(client: &ApiClient, ns: &str) -> ConsoleResult<Markup> {
    let list = client
        .list(&collection("/apis/apps/v1", ns, "daemonsets"))
        .await?;
    let fleet = Fleet::load(client, ns).await?;
    let now = client.now();
    Ok(html! {
        @if list.is_empty() {
            tr { td colspan="12" .muted { "No DaemonSets here yet. " a href="/ui/create" { "Create one" } "." } }
        }
        @for ds in &list { (row(ds, &fleet, now)) }
    })
}

pub async fn list(
    State(_): State<ConsoleState>,
    Session(client): Session,
    Query(q): Query<ListQuery>,
) -> Response {
    let body = match rows(&client, &q.namespace).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let namespaces = client.list("/api/v1/namespaces").await.unwrap_or_default();
    page(
        "DaemonSets",
        Nav::DaemonSets,
        html! {
            h1 { "DaemonSets" }
            (notice(Some(&q.notice)))
            form.filter method="get" action="/ui/daemonsets" {
                label { "Namespace"
                    select name="namespace" onchange="this.form.submit()" {
                        option value="" selected[q.namespace.is_empty()] { "All namespaces" }
                        @for n in &namespaces {
                            @let n = str_at(n, "/metadata/name");
                            option value=(n) selected[n == q.namespace] { (n) }
                        }
                    }
                }
                a.button.primary href="/ui/create" { "Create DaemonSet" }
                " "
                a.button href="/ui/import" { "Create from YAML" }
            }
            table #daemonsets {
                thead { tr {
                    th { "Name" } th { "Namespace" } th { "Status" } th { "Desired" } th { "Current" }
                    th { "Ready" } th { "Up-to-date" } th { "Available" } th { "Images" }
                    th { "Node selector" } th { "Age" } th { "Actions" }
                } }
                tbody data-live={"/ui/daemonsets/live?namespace=" (query_value(&q.namespace))} { (body) }
            }
        },
    )
    .into_response()
}

pub async fn live(Session(client): Session, Query(q): Query<ListQuery>) -> Response {
    let ns = q.namespace.clone();
    let watches = vec![
        format!(
            "{}?watch=true",
            collection("/apis/apps/v1", &ns, "daemonsets")
        ),
        format!("{}?watch=true", collection("/api/v1", &ns, "pods")),
        "/api/v1/nodes?watch=true".to_owned(),
    ];
    let render: live::Render = Arc::new(move |client| {
        let ns = ns.clone();
        Box::pin(async move {
            match rows(&client, &ns).await {
                Ok(m) => m.into_string(),
                Err(e) => error_row(&e).into_string(),
            }
        })
    });
    live::fragment(client, watches, render)
        .await
        .into_response()
}

fn error_row(e: &ConsoleError) -> Markup {
    html! { tr { td colspan="12" { (crate::layout::error_box(e)) } } }
}
