//! The DaemonSet list, per namespace or for all, live.

use crate::ConsoleState;
use crate::client::ApiClient;
use crate::error::{ConsoleError, ConsoleResult};
use crate::layout::{Nav, age_of, map_pairs, notice, page, query_value};
use crate::live;
use crate::placement::{exclusion_summary, placement};
use crate::session::Session;
use crate::status::{Status, status};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodSpec};
use k8s_openapi::jiff::Timestamp;
use maud::{Markup, html};
use serde::Deserialize;
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
    pub pods: Vec<Pod>,
}

/// A DaemonSet's pod as a row: its name, node, STATUS word, and the pod.
pub struct PodRow {
    pub name: String,
    pub node: String,
    pub word: String,
    pub pod: Pod,
}

/// The READY, STATUS and RESTARTS columns of a pod, by the server's own printer (which reads
/// the wire form).
pub fn pod_columns(pod: &Pod, now: Timestamp) -> (String, String, String) {
    let wire = serde_json::to_value(pod).unwrap_or_default();
    everynode_api::table::pod_status(&wire, now)
}

impl Fleet {
    pub async fn load(client: &ApiClient, ns: &str) -> ConsoleResult<Self> {
        // A user of one namespace may not list nodes (upstream's namespace roles do not grant
        // it): the pages then go by the pods alone rather than fail.
        let nodes = match client.list_as("/api/v1/nodes").await {
            Err(e) if e.status() == axum::http::StatusCode::FORBIDDEN => Vec::new(),
            other => other?,
        };
        let pods = client.list_as(&collection("/api/v1", ns, "pods")).await?;
        Ok(Fleet { nodes, pods })
    }

    /// The DaemonSet's status word, and its pods.
    pub fn status_of(&self, ds: &DaemonSet, now: Timestamp) -> (Status, Vec<PodRow>) {
        let owned: Vec<Pod> = self
            .pods
            .iter()
            .filter(|p| crate::placement::owned_by(p, ds))
            .cloned()
            .collect();
        let (_, rows) = placement(ds, &self.nodes, &owned, now);
        let pods: Vec<PodRow> = owned
            .into_iter()
            .map(|pod| PodRow {
                name: pod.metadata.name.clone().unwrap_or_default(),
                node: pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
                word: pod_columns(&pod, now).1,
                pod,
            })
            .collect();
        let words: Vec<(String, String, String)> = pods
            .iter()
            .map(|r| (r.name.clone(), r.node.clone(), r.word.clone()))
            .collect();
        (status(ds, exclusion_summary(&rows), &words), pods)
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
pub fn images(pod_spec: Option<&PodSpec>) -> String {
    pod_spec
        .map(|spec| {
            spec.containers
                .iter()
                .filter_map(|c| c.image.as_deref())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The pod spec of a DaemonSet's template.
pub fn template_spec(ds: &DaemonSet) -> Option<&PodSpec> {
    ds.spec.as_ref().and_then(|s| s.template.spec.as_ref())
}

fn row(
    ds: &DaemonSet,
    fleet: &Fleet,
    now: Timestamp,
    may: crate::permissions::DaemonSetActions,
) -> Markup {
    let ns = ds.metadata.namespace.as_deref().unwrap_or_default();
    let name = ds.metadata.name.as_deref().unwrap_or_default();
    let (st, _) = fleet.status_of(ds, now);
    let counts = ds.status.clone().unwrap_or_default();
    let base = format!("/ui/daemonsets/{ns}/{name}");
    html! {
        tr data-name=(name) data-status=(st.word.as_str()) {
            td { a href=(base) { (name) } }
            td { (ns) }
            td { (status_badge(&st)) }
            td.num { (counts.desired_number_scheduled) }
            td.num { (counts.current_number_scheduled) }
            td.num { (counts.number_ready) }
            td.num { (counts.updated_number_scheduled.unwrap_or(0)) }
            td.num { (counts.number_available.unwrap_or(0)) }
            td { code { (images(template_spec(ds))) } }
            td { (map_pairs(template_spec(ds).and_then(|s| s.node_selector.as_ref()))) }
            td { (age_of(&ds.metadata, now)) }
            td.actions {
                @if may.edit {
                    a.button href={(base) "/wizard"} { "Edit" }
                    a.button href={(base) "?tab=yaml"} { "Edit YAML" }
                    form method="post" action={(base) "/redeploy"} {
                        button type="submit" data-confirm={"Restart every pod of " (name) "?"} { "Redeploy" }
                    }
                    a.button href={(base) "?tab=revisions"} { "Roll back" }
                }
                @if may.delete {
                    a.button href={(base) "?tab=delete"} { "Delete" }
                }
                @if !may.edit && !may.delete {
                    span.muted title="Your role here allows reading only" { "view only" }
                }
            }
        }
    }
}

/// The table body: one row per DaemonSet.
pub async fn rows(client: &ApiClient, ns: &str) -> ConsoleResult<Markup> {
    let list: Vec<DaemonSet> = client
        .list_as(&collection("/apis/apps/v1", ns, "daemonsets"))
        .await?;
    let fleet = Fleet::load(client, ns).await?;
    let now = client.now();
    let mut permissions = crate::permissions::ByNamespace::default();
    let mut rendered = Vec::new();
    for ds in &list {
        let may = permissions
            .get(client, ds.metadata.namespace.as_deref().unwrap_or_default())
            .await;
        rendered.push(row(ds, &fleet, now, may));
    }
    Ok(html! {
        @if list.is_empty() {
            tr { td colspan="12" .muted { "No DaemonSets here yet." } }
        }
        @for r in rendered { (r) }
    })
}

pub async fn list(
    State(_): State<ConsoleState>,
    Session(client): Session,
    home: crate::session::HomeNamespace,
    Query(mut q): Query<ListQuery>,
) -> Response {
    // A user who may not list DaemonSets everywhere starts in the namespace they signed in to.
    let mut result = rows(&client, &q.namespace).await;
    if q.namespace.is_empty()
        && let (Err(e), Some(home)) = (&result, &home.0)
        && e.status() == axum::http::StatusCode::FORBIDDEN
    {
        q.namespace = home.clone();
        result = rows(&client, &q.namespace).await;
    }
    let body = match result {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let namespaces = visible_namespaces(&client, home.0.as_deref(), &q.namespace).await;
    let may = crate::permissions::Permissions::load(
        &client,
        if q.namespace.is_empty() {
            "default"
        } else {
            &q.namespace
        },
    )
    .await
    .daemonsets();
    page(
        "DaemonSets",
        Nav::DaemonSets,
        html! {
            h1 { "DaemonSets" }
            (notice(Some(&q.notice)))
            form.filter method="get" action="/ui/daemonsets" {
                label { "Namespace"
                    select name="namespace" onchange="this.form.submit()" {
                        @if namespaces.all {
                            option value="" selected[q.namespace.is_empty()] { "All namespaces" }
                        }
                        @for n in &namespaces.names {
                            option value=(n) selected[*n == q.namespace] { (n) }
                        }
                    }
                }
                @if may.create {
                    a.button.primary href="/ui/create" { "Create DaemonSet" }
                    " "
                    a.button href="/ui/import" { "Create from YAML" }
                }
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

/// The namespaces the selector offers: those the user may list DaemonSets in (all of them
/// when it may list namespaces; else the one it signed in to), and whether "All namespaces"
/// would work.
struct VisibleNamespaces {
    all: bool,
    names: Vec<String>,
}

/// More namespaces than this are offered without asking about each.
const NAMESPACES_CHECKED: usize = 100;

async fn visible_namespaces(
    client: &ApiClient,
    home: Option<&str>,
    current: &str,
) -> VisibleNamespaces {
    let all = client.get("/apis/apps/v1/daemonsets?limit=1").await.is_ok();
    let mut names: Vec<String> = match client.list_as::<Namespace>("/api/v1/namespaces").await {
        Ok(list) => list.into_iter().filter_map(|n| n.metadata.name).collect(),
        Err(_) => Vec::new(),
    };
    if !all && names.len() <= NAMESPACES_CHECKED {
        let mut allowed = Vec::new();
        for n in names {
            if crate::permissions::Permissions::load(client, &n).await.can(
                "list",
                "apps",
                "daemonsets",
            ) {
                allowed.push(n);
            }
        }
        names = allowed;
    }
    for extra in [home, Some(current)].into_iter().flatten() {
        if !extra.is_empty() && !names.iter().any(|n| n == extra) {
            names.push(extra.to_owned());
        }
    }
    VisibleNamespaces { all, names }
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
