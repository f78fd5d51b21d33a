//! One DaemonSet: overview, pods, placement, revisions (diff, roll back), events, labels and
//! annotations, edit, edit YAML, delete; and pod logs.

use crate::client::ApiClient;
use crate::client::{JSON, MERGE_PATCH, STRATEGIC_MERGE_PATCH, YAML};
use crate::daemonsets::{Fleet, images, pod_columns, status_badge, template_spec};
use crate::error::{ConsoleError, ConsoleResult};
use crate::layout::{
    Nav, age_of, error_box, int_or_string, map_pairs, notice, page, query_value, yaml,
};
use crate::live;
use crate::session::Session;
use axum::Form;
use axum::extract::{Path, Query};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use k8s_openapi::jiff::Timestamp;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

const TABS: [(&str, &str); 9] = [
    ("overview", "Overview"),
    ("pods", "Pods"),
    ("placement", "Placement"),
    ("revisions", "Revisions"),
    ("events", "Events"),
    ("metadata", "Labels & annotations"),
    ("edit", "Edit"),
    ("yaml", "YAML"),
    ("delete", "Delete"),
];

fn ds_path(ns: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{ns}/daemonsets/{name}")
}

fn redirect(ns: &str, name: &str, tab: &str, notice: &str) -> Response {
    Redirect::to(&format!(
        "/ui/daemonsets/{ns}/{name}?tab={tab}&notice={}",
        query_value(notice)
    ))
    .into_response()
}

#[derive(Deserialize, Default)]
pub struct DetailQuery {
    #[serde(default)]
    tab: String,
    #[serde(default)]
    notice: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// The DaemonSet's revisions, oldest first.
async fn revisions(client: &ApiClient, ds: &DaemonSet) -> ConsoleResult<Vec<ControllerRevision>> {
    let ns = ds.metadata.namespace.as_deref().unwrap_or_default();
    let uid = ds.metadata.uid.as_deref();
    let mut list: Vec<ControllerRevision> = client
        .list_as::<ControllerRevision>(&format!(
            "/apis/apps/v1/namespaces/{ns}/controllerrevisions"
        ))
        .await?
        .into_iter()
        .filter(|r| {
            r.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| Some(o.uid.as_str()) == uid)
        })
        .collect();
    list.sort_by_key(|r| r.revision);
    Ok(list)
}

/// Status, counters and pods: the part of the page that changes on its own.
async fn status_panel(client: &ApiClient, ns: &str, name: &str) -> ConsoleResult<Markup> {
    let ds: DaemonSet = client.get_as(&ds_path(ns, name)).await?;
    let fleet = Fleet::load(client, ns).await?;
    let now = client.now();
    let (st, pods) = fleet.status_of(&ds, now);
    let counts = ds.status.clone().unwrap_or_default();
    let service =
        crate::service::panel(client, &serde_json::to_value(&ds).unwrap_or_default()).await?;
    Ok(html! {
        div.card #status-panel data-status=(st.word.as_str()) {
            (status_badge(&st))
            div.counters {
                span { "Desired " b { (counts.desired_number_scheduled) } }
                span { "Current " b { (counts.current_number_scheduled) } }
                span { "Ready " b.ready { (counts.number_ready) } }
                span { "Up-to-date " b.updated { (counts.updated_number_scheduled.unwrap_or(0)) } }
                span { "Available " b { (counts.number_available.unwrap_or(0)) } }
                span { "Misscheduled " b { (counts.number_misscheduled) } }
                span { "Images " code.images { (images(template_spec(&ds))) } }
            }
            (crate::rollout::conditions(&ds, now))
        }
        (service)
        h2 { "Pods " a.button #all-logs href={"/ui/daemonsets/" (ns) "/" (name) "/logs"} { "Logs (all pods)" } }
        table #pods {
            thead { tr { th { "Name" } th { "Status" } th { "Ready" } th { "Node" } th { "IP" } th { "Restarts" } th { "Images" } th { "Age" } th { "Logs" } } }
            tbody {
                @for row in &pods {
                    @let (ready, _, restarts) = pod_columns(&row.pod, now);
                    @let ip = row.pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).unwrap_or_default();
                    tr data-pod=(row.name) data-status=(row.word) {
                        td { (row.name) } td { (row.word) } td { (ready) }
                        td { @if !row.node.is_empty() { a href={"/ui/nodes/" (row.node)} { (row.node) } } }
                        td { (ip) } td { (restarts) }
                        td { code { (images(row.pod.spec.as_ref())) } }
                        td { (age_of(&row.pod.metadata, now)) }
                        td { a href={"/ui/pods/" (ns) "/" (row.name) "/logs"} { "logs" } }
                    }
                }
            }
        }
    })
}

fn overview(ds: &DaemonSet) -> Markup {
    let spec = ds.spec.clone().unwrap_or_default();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let kind = strategy.type_.clone().unwrap_or_default();
    let rolling = strategy.rolling_update.clone().unwrap_or_default();
    let pod_spec = spec.template.spec.clone().unwrap_or_default();
    html! {
        div.grid {
            div.card {
                h2 { "Strategy" }
                p { b { (kind) } }
                @if kind == "RollingUpdate" {
                    p { "maxUnavailable " code { (int_or_string(rolling.max_unavailable.as_ref())) }
                        ", maxSurge " code { (int_or_string(rolling.max_surge.as_ref())) } }
                }
                p { "minReadySeconds " (spec.min_ready_seconds.unwrap_or(0))
                    ", revisionHistoryLimit " (spec.revision_history_limit.unwrap_or(0)) }
            }
            div.card {
                h2 { "Selector" }
                p { code { (map_pairs(spec.selector.match_labels.as_ref())) } }
                h2 { "Node selector" }
                p { code { (map_pairs(pod_spec.node_selector.as_ref())) } }
            }
            div.card {
                h2 { "Tolerations" }
                ul {
                    @for t in pod_spec.tolerations.iter().flatten() {
                        li { code {
                            (t.key.as_deref().unwrap_or_default()) " "
                            (t.operator.as_deref().unwrap_or("Equal")) " "
                            (t.value.as_deref().unwrap_or_default()) " "
                            (t.effect.as_deref().unwrap_or_default())
                        } }
                    }
                }
            }
        }
    }
}

fn placement_tab(ns: &str, name: &str, ds: &DaemonSet, fleet: &Fleet, now: Timestamp) -> Markup {
    html! {
        (crate::grid::tools())
        div #placement-live data-live={"/ui/daemonsets/" (ns) "/" (name) "/placement/live"} {
            (crate::grid::fragment(ds, fleet, now))
        }
        div.card #placement-detail hidden {}
    }
}

/// The pod template a revision records (its `data` is a strategic merge patch of the spec).
fn template_yaml(revision: &ControllerRevision) -> String {
    let mut template = revision
        .data
        .as_ref()
        .and_then(|d| d.0.pointer("/spec/template"))
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(o) = template.as_object_mut() {
        o.remove("$patch");
    }
    yaml(&template)
}

fn diff(from: &str, to: &str) -> Markup {
    let lines = similar::TextDiff::from_lines(from, to);
    html! {
        div.diff {
            @for change in lines.iter_all_changes() {
                @match change.tag() {
                    similar::ChangeTag::Delete => div.del { "- " (change.value().trim_end()) },
                    similar::ChangeTag::Insert => div.add { "+ " (change.value().trim_end()) },
                    similar::ChangeTag::Equal => div { "  " (change.value().trim_end()) },
                }
            }
        }
    }
}

const HASH_LABEL: &str = "controller-revision-hash";

fn revisions_tab(
    ns: &str,
    name: &str,
    list: &[ControllerRevision],
    q: &DetailQuery,
    now: Timestamp,
    may_roll_back: bool,
) -> Markup {
    let hash = |r: &ControllerRevision| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HASH_LABEL))
            .cloned()
            .unwrap_or_default()
    };
    let current_hash = list.last().map(hash);
    let find = |n: &str| list.iter().find(|r| r.revision.to_string() == n);
    html! {
        table #revisions {
            thead { tr { th { "Revision" } th { "Hash" } th { "Change cause" } th { "Created" } th { "" } } }
            tbody {
                @for r in list.iter().rev() {
                    @let revision = r.revision;
                    @let hash = hash(r);
                    @let cause = r.metadata.annotations.as_ref().and_then(|a| a.get("kubernetes.io/change-cause")).cloned().unwrap_or_default();
                    @let created = r.metadata.creation_timestamp.as_ref().map(|t| everynode_clock::format_time(t.0)).unwrap_or_default();
                    tr data-revision=(revision) {
                        td { (revision) @if Some(&hash) == current_hash.as_ref() { " (current)" } }
                        td { code { (hash) } }
                        td { (cause) }
                        td { (created) " (" (age_of(&r.metadata, now)) ")" }
                        td {
                            @if may_roll_back && Some(&hash) != current_hash.as_ref() {
                                form method="post" action={"/ui/daemonsets/" (ns) "/" (name) "/rollback"} {
                                    input type="hidden" name="revision" value=(revision);
                                    button type="submit" data-confirm={"Roll back " (name) " to revision " (revision) "?"} { "Roll back to " (revision) }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Compare revisions" }
        form method="get" {
            input type="hidden" name="tab" value="revisions";
            label { "From" select name="from" { @for r in list { @let n = r.revision.to_string(); option value=(n) selected[n == q.from] { (n) } } } }
            label { "To" select name="to" { @for r in list.iter().rev() { @let n = r.revision.to_string(); option value=(n) selected[n == q.to] { (n) } } } }
            button type="submit" { "Show diff" }
        }
        @if let (Some(a), Some(b)) = (find(&q.from), find(&q.to)) {
            (diff(&template_yaml(a), &template_yaml(b)))
        }
    }
}

async fn events_tab(
    client: &ApiClient,
    ns: &str,
    name: &str,
    now: Timestamp,
) -> ConsoleResult<Markup> {
    // The DaemonSet's own events and its pods' (scheduling, pulls, probes, kills): what a
    // user reads to learn why a rollout is stuck.
    let ds: DaemonSet = client.get_as(&ds_path(ns, name)).await?;
    let fleet = Fleet::load(client, ns).await?;
    let (_, pods) = fleet.status_of(&ds, now);
    let pod_names: std::collections::BTreeSet<&str> =
        pods.iter().map(|p| p.name.as_str()).collect();
    let mut events: Vec<CoreEvent> = client
        .list_as::<CoreEvent>(&format!("/api/v1/namespaces/{ns}/events"))
        .await?
        .into_iter()
        .filter(|e| {
            let o = &e.involved_object;
            match o.kind.as_deref() {
                Some("DaemonSet") => o.name.as_deref() == Some(name),
                Some("Pod") => o.name.as_deref().is_some_and(|n| pod_names.contains(n)),
                _ => false,
            }
        })
        .collect();
    events.sort_by(|a, b| b.last_timestamp.cmp(&a.last_timestamp));
    Ok(html! {
        table #events {
            thead { tr { th { "Type" } th { "Reason" } th { "Object" } th { "Age" } th { "From" } th { "Message" } } }
            tbody {
                @for e in &events {
                    tr { td { (e.type_.as_deref().unwrap_or_default()) } td { (e.reason.as_deref().unwrap_or_default()) }
                         td { (e.involved_object.kind.as_deref().unwrap_or_default()) "/" (e.involved_object.name.as_deref().unwrap_or_default()) }
                         td { (age_of(&e.metadata, now)) }
                         td { (e.source.as_ref().and_then(|s| s.component.as_deref()).unwrap_or_default()) }
                         td { (e.message.as_deref().unwrap_or_default()) } }
                }
            }
        }
    })
}

fn metadata_tab(ds: &DaemonSet) -> Markup {
    let table = |title: &str, map: Option<&BTreeMap<String, String>>| {
        html! {
            h2 { (title) }
            table {
                tbody {
                    @for (k, v) in map.into_iter().flatten() {
                        tr { td { code { (k) } } td { code { (v) } } }
                    }
                }
            }
        }
    };
    let template = ds.spec.as_ref().and_then(|s| s.template.metadata.as_ref());
    html! {
        (table("Labels", ds.metadata.labels.as_ref()))
        (table("Annotations", ds.metadata.annotations.as_ref()))
        (table("Pod template labels", template.and_then(|m| m.labels.as_ref())))
        (table("Pod template annotations", template.and_then(|m| m.annotations.as_ref())))
    }
}

fn edit_tab(ns: &str, name: &str, ds: &DaemonSet, pending: Option<&Pending>) -> Markup {
    let spec = ds.spec.clone().unwrap_or_default();
    let containers = spec.template.spec.clone().unwrap_or_default().containers;
    let max_unavailable = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.as_ref());
    // A pending edit shows what the user sent, not the stored values.
    let sent = |field: &str, stored: String| -> String {
        pending
            .and_then(|p| p.fields.get(field).cloned())
            .unwrap_or(stored)
    };
    html! {
        p { a.button.primary #full-edit href={"/ui/daemonsets/" (ns) "/" (name) "/wizard"} { "Edit in the full form" }
            " " span.muted { "every section of the create wizard; or change the images and rollout settings here:" } }
        form.card method="post" action={"/ui/daemonsets/" (ns) "/" (name) "/edit"} {
            @for c in &containers {
                @let field = format!("image.{}", c.name);
                label { "Image of container " (c.name)
                    input name=(field) value=(sent(&field, c.image.clone().unwrap_or_default())) size="50";
                }
            }
            br;
            label { "maxUnavailable"
                input name="maxUnavailable" value=(sent("maxUnavailable", int_or_string(max_unavailable)));
            }
            label { "minReadySeconds" input name="minReadySeconds" value=(sent("minReadySeconds", spec.min_ready_seconds.unwrap_or(0).to_string())); }
            label { "Change cause (kubernetes.io/change-cause)" input name="changeCause" size="40" value=(sent("changeCause", String::new())); }
            br;
            (pending_box(pending))
            @if pending.is_some() {
                button.primary type="submit" { "Confirm save" }
            } @else {
                button.primary type="submit" { "Preview and save" }
            }
        }
    }
}

fn yaml_tab(
    ns: &str,
    name: &str,
    text: &str,
    problem: Option<&ConsoleError>,
    pending: Option<&Pending>,
) -> Markup {
    let error_line = problem.and_then(|e| crate::editor::error_line(&e.to_string()));
    html! {
        form method="post" action={"/ui/daemonsets/" (ns) "/" (name) "/yaml"} {
            p {
                a.button href={"/ui/daemonsets/" (ns) "/" (name) "/yaml"} download={(name) ".yaml"} { "Download" }
                " "
                label.check { "Upload a file" input type="file" accept=".yaml,.yml,.json" data-load-into="yaml-editor"; }
            }
            textarea.code #yaml-editor name="yaml" spellcheck="false" data-editor="yaml" data-error-line=[error_line] { (text) }
            (pending_box(pending))
            @if pending.is_some() {
                p { button.primary type="submit" { "Confirm update" } }
            } @else {
                p { button.primary type="submit" { "Preview and update" } }
            }
        }
    }
}

fn delete_tab(ns: &str, name: &str) -> Markup {
    html! {
        form.card method="post" action={"/ui/daemonsets/" (ns) "/" (name) "/delete"} {
            p { "Delete DaemonSet " b { (name) } " in " (ns) "." }
            label { "Its pods"
                select name="propagationPolicy" {
                    option value="Background" { "delete them too, in the background (default)" }
                    option value="Foreground" { "delete them first, then the DaemonSet (foreground)" }
                    option value="Orphan" { "keep them running, orphaned" }
                }
            }
            button.danger type="submit" data-confirm={"Delete " (name) "?"} { "Delete" }
        }
    }
}

/// The object as a user edits it: without managedFields.
fn editable(mut ds: Value) -> Value {
    if let Some(m) = ds.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    ds
}

/// A write shown with its preview, waiting for the user's confirmation: the preview, the
/// digest of the submission, and the form's fields as the user sent them.
struct Pending {
    preview: Markup,
    digest: String,
    fields: BTreeMap<String, String>,
}

/// The preview box and the digest of a pending write, inside the form that confirms it.
fn pending_box(pending: Option<&Pending>) -> Markup {
    html! {
        @if let Some(p) = pending {
            div data-preview-box { (p.preview) }
            input type="hidden" name=(crate::preview::FIELD) value=(p.digest);
        }
    }
}

async fn render(
    client: &ApiClient,
    ns: &str,
    name: &str,
    q: &DetailQuery,
    yaml_text: Option<String>,
    problem: Option<&ConsoleError>,
    pending: Option<&Pending>,
) -> ConsoleResult<Response> {
    let ds: DaemonSet = client.get_as(&ds_path(ns, name)).await?;
    let tab = if q.tab.is_empty() {
        "overview"
    } else {
        q.tab.as_str()
    };
    let now = client.now();
    let may = crate::permissions::Permissions::load(client, ns)
        .await
        .daemonsets();
    let allowed = |id: &str| match id {
        "edit" | "yaml" => may.edit,
        "delete" => may.delete,
        _ => true,
    };
    if !allowed(tab) {
        let html = page(
            name,
            Nav::DaemonSets,
            html! {
                h1 { "DaemonSet " (name) }
                div.error role="alert" {
                    strong { "Not allowed" }
                    p { "Your role in namespace " b { (ns) } " does not allow changing DaemonSets. Ask a cluster administrator for the "
                        code { "edit" } " role there." }
                }
                p { a href={"/ui/daemonsets/" (ns) "/" (name)} { "Back to " (name) } }
            },
        );
        return Ok((axum::http::StatusCode::FORBIDDEN, html).into_response());
    }
    let body = match tab {
        "overview" | "pods" => {
            let panel = status_panel(client, ns, name).await?;
            html! {
                div #live data-live={"/ui/daemonsets/" (ns) "/" (name) "/live"} { (panel) }
                @if tab == "overview" {
                    @if may.edit { (crate::rollout::controls(ns, name, &ds, problem)) }
                    (crate::usage::charts(&format!("/ui/daemonsets/{ns}/{name}/usage"), "the pods"))
                    (overview(&ds))
                }
            }
        }
        "placement" => placement_tab(ns, name, &ds, &Fleet::load(client, ns).await?, now),
        "revisions" => revisions_tab(ns, name, &revisions(client, &ds).await?, q, now, may.edit),
        "events" => events_tab(client, ns, name, now).await?,
        "metadata" => metadata_tab(&ds),
        "edit" => edit_tab(ns, name, &ds, pending),
        "yaml" => {
            let text = match yaml_text {
                Some(text) => text,
                // The object as the server sends it, for editing as text.
                None => yaml(&editable(client.get(&ds_path(ns, name)).await?)),
            };
            yaml_tab(ns, name, &text, problem, pending)
        }
        "delete" => delete_tab(ns, name),
        other => return Err(ConsoleError::BadInput(format!("no tab {other:?}"))),
    };
    let html = page(
        name,
        Nav::DaemonSets,
        html! {
            p.muted { a href={"/ui/daemonsets?namespace=" (ns)} { "DaemonSets" } " / " (ns) }
            h1 data-namespace=(ns) { "DaemonSet " (name) }
            (notice(Some(&q.notice)))
            @if let Some(e) = problem { (error_box(e)) }
            nav.tabs {
                @for (id, label) in TABS.iter().copied().filter(|(id, _)| allowed(id)) {
                    a href={"/ui/daemonsets/" (ns) "/" (name) "?tab=" (id)} class=[(id == tab).then_some("active")] data-tab=(id) { (label) }
                }
            }
            (body)
        },
    );
    let code = problem.map_or(axum::http::StatusCode::OK, ConsoleError::status);
    Ok((code, html).into_response())
}

/// The tab a form came from again, with the server's refusal on it.
async fn refused(
    client: &ApiClient,
    ns: &str,
    name: &str,
    tab: &str,
    problem: &ConsoleError,
) -> Response {
    let q = DetailQuery {
        tab: tab.into(),
        ..Default::default()
    };
    render(client, ns, name, &q, None, Some(problem), None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn show(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<DetailQuery>,
) -> Response {
    render(&client, &ns, &name, &q, None, None, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn live(Session(client): Session, Path((ns, name)): Path<(String, String)>) -> Response {
    let watches = vec![
        format!(
            "/apis/apps/v1/namespaces/{ns}/daemonsets?watch=true&fieldSelector=metadata.name%3D{name}"
        ),
        format!("/api/v1/namespaces/{ns}/pods?watch=true"),
    ];
    let render: live::Render = Arc::new(move |client| {
        let (ns, name) = (ns.clone(), name.clone());
        Box::pin(async move {
            match status_panel(&client, &ns, &name).await {
                Ok(m) => m.into_string(),
                Err(e) => error_box(&e).into_string(),
            }
        })
    });
    live::fragment(client, watches, render)
        .await
        .into_response()
}

/// The placement grid, live: re-rendered on changes to the DaemonSet, the namespace's pods and
/// the nodes, at most about once a second.
pub async fn placement_live(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let watches = vec![
        format!(
            "/apis/apps/v1/namespaces/{ns}/daemonsets?watch=true&fieldSelector=metadata.name%3D{name}"
        ),
        format!("/api/v1/namespaces/{ns}/pods?watch=true"),
        "/api/v1/nodes?watch=true".to_owned(),
    ];
    let render: live::Render = Arc::new(move |client| {
        let (ns, name) = (ns.clone(), name.clone());
        Box::pin(async move {
            let fragment = async {
                let ds: DaemonSet = client.get_as(&ds_path(&ns, &name)).await?;
                let fleet = Fleet::load(&client, &ns).await?;
                Ok::<_, ConsoleError>(crate::grid::fragment(&ds, &fleet, client.now()))
            };
            match fragment.await {
                Ok(m) => m.into_string(),
                Err(e) => error_box(&e).into_string(),
            }
        })
    });
    live::fragment_gathering(client, watches, render, std::time::Duration::from_secs(1))
        .await
        .into_response()
}

pub async fn download(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match client.get(&ds_path(&ns, &name)).await {
        Ok(ds) => (
            [
                (header::CONTENT_TYPE, "application/yaml".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}.yaml\""),
                ),
            ],
            yaml(&editable(ds)),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn update_yaml(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    Form(fields): Form<BTreeMap<String, String>>,
) -> Response {
    let q = DetailQuery {
        tab: "yaml".into(),
        ..Default::default()
    };
    let text = fields.get("yaml").cloned().unwrap_or_default();
    let digest = crate::preview::digest(text.as_bytes());
    let confirmed = crate::preview::confirmed(&fields, &digest);
    let write = |dry_run: bool| {
        let dry = if dry_run { "&dryRun=All" } else { "" };
        let path = format!("{}?fieldValidation=Strict{dry}", ds_path(&ns, &name));
        let (client, body) = (&client, text.clone().into_bytes());
        async move { client.send(Method::PUT, &path, Some(YAML), body).await }
    };
    let result = if confirmed {
        write(false).await.map(|_| None)
    } else {
        match write(true).await {
            Ok(new) => preview_of(&client, &ns, &name, &new, digest, fields.clone())
                .await
                .map(Some),
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(None) => redirect(&ns, &name, "overview", "Updated."),
        Ok(Some(pending)) => render(&client, &ns, &name, &q, Some(text), None, Some(&pending))
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Err(ConsoleError::Unauthorized) => ConsoleError::Unauthorized.into_response(),
        Err(e) => {
            // The user's text stays in the editor; a conflict says how to continue.
            let e = if e.status() == axum::http::StatusCode::CONFLICT {
                ConsoleError::Api {
                    code: e.status(),
                    message: format!(
                        "{e}. Your text is kept below: download it, reload the page for the current version, and apply your change again."
                    ),
                    causes: e.causes().to_vec(),
                }
            } else {
                e
            };
            render(&client, &ns, &name, &q, Some(text), Some(&e), None)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
    }
}

/// The preview of replacing the stored DaemonSet with `new` (a dry run's answer).
async fn preview_of(
    client: &ApiClient,
    ns: &str,
    name: &str,
    new: &Value,
    digest: String,
    fields: BTreeMap<String, String>,
) -> ConsoleResult<Pending> {
    let current: DaemonSet = client.get_as(&ds_path(ns, name)).await?;
    let (preview, nodes_known) = crate::preview::compute(client, new, Some(&current)).await?;
    Ok(Pending {
        preview: crate::preview::render(&preview, nodes_known),
        digest,
        fields,
    })
}

pub async fn edit(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    Form(fields): Form<BTreeMap<String, String>>,
) -> Response {
    let containers: Vec<Value> = fields
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("image.")?, v.trim())))
        .filter(|(_, v)| !v.is_empty())
        .map(|(c, image)| json!({"name": c, "image": image}))
        .collect();
    let mut patch = json!({"spec": {"template": {"spec": {"containers": containers}}}});
    if let Some(v) = fields
        .get("maxUnavailable")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        let value = v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n));
        patch["spec"]["updateStrategy"] = json!({"rollingUpdate": {"maxUnavailable": value}});
    }
    if let Some(n) = fields
        .get("minReadySeconds")
        .and_then(|v| v.trim().parse::<i64>().ok())
    {
        patch["spec"]["minReadySeconds"] = json!(n);
    }
    if let Some(cause) = fields
        .get("changeCause")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        patch["metadata"] = json!({"annotations": {"kubernetes.io/change-cause": cause}});
    }
    let digest = crate::preview::digest(patch.to_string().as_bytes());
    let confirmed = crate::preview::confirmed(&fields, &digest);
    let dry = if confirmed { "" } else { "&dryRun=All" };
    let written = client
        .write(
            Method::PATCH,
            &format!("{}?fieldValidation=Strict{dry}", ds_path(&ns, &name)),
            STRATEGIC_MERGE_PATCH,
            &patch,
        )
        .await;
    match written {
        Ok(_) if confirmed => redirect(
            &ns,
            &name,
            "overview",
            "Saved; the rollout follows the update strategy.",
        ),
        Ok(new) => {
            let q = DetailQuery {
                tab: "edit".into(),
                ..Default::default()
            };
            match preview_of(&client, &ns, &name, &new, digest, fields).await {
                Ok(pending) => render(&client, &ns, &name, &q, None, None, Some(&pending)).await,
                Err(e) => Err(e),
            }
            .unwrap_or_else(IntoResponse::into_response)
        }
        Err(e) => refused(&client, &ns, &name, "edit", &e).await,
    }
}

/// The rollout controls' form: the `everynode.dev/` annotations it asks for, as a merge patch
/// (the server validates them; a refusal is shown on its input).
pub async fn rollout(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    Form(fields): Form<BTreeMap<String, String>>,
) -> Response {
    let patch = crate::rollout::patch(&fields);
    match client
        .write(Method::PATCH, &ds_path(&ns, &name), MERGE_PATCH, &patch)
        .await
    {
        Ok(_) => {
            let done = match fields.get("action").map(String::as_str) {
                Some("pause") => "Paused: a template change replaces no pod until resumed.",
                Some("resume") => "Resumed: the rollout goes on.",
                Some("promote") => "Promoted: every node updates.",
                _ => "Saved the rollout controls.",
            };
            redirect(&ns, &name, "overview", done)
        }
        Err(e) => refused(&client, &ns, &name, "overview", &e).await,
    }
}

pub async fn redeploy(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    // What `kubectl rollout restart` writes.
    let now = client.now().to_string();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}});
    match client
        .write(
            Method::PATCH,
            &ds_path(&ns, &name),
            STRATEGIC_MERGE_PATCH,
            &patch,
        )
        .await
    {
        Ok(_) => redirect(
            &ns,
            &name,
            "overview",
            "Redeploying: every pod is replaced by the update strategy.",
        ),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct RollbackForm {
    revision: i64,
}

pub async fn rollback(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    Form(form): Form<RollbackForm>,
) -> Response {
    let result: ConsoleResult<()> = async {
        let ds: DaemonSet = client.get_as(&ds_path(&ns, &name)).await?;
        let list = revisions(&client, &ds).await?;
        let revision = list
            .iter()
            .find(|r| r.revision == form.revision)
            .ok_or_else(|| {
                ConsoleError::BadInput(format!("{name} has no revision {}", form.revision))
            })?;
        // What `kubectl rollout undo --to-revision` sends: the revision's data, a strategic merge
        // patch that replaces the template.
        client
            .write(
                Method::PATCH,
                &ds_path(&ns, &name),
                STRATEGIC_MERGE_PATCH,
                &revision.data.as_ref().map_or(Value::Null, |d| d.0.clone()),
            )
            .await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => redirect(
            &ns,
            &name,
            "overview",
            &format!("Rolled back to revision {}.", form.revision),
        ),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(rename = "propagationPolicy")]
    propagation_policy: String,
}

pub async fn delete(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    Form(form): Form<DeleteForm>,
) -> Response {
    let policy = match form.propagation_policy.as_str() {
        p @ ("Background" | "Foreground" | "Orphan") => p,
        other => {
            return ConsoleError::BadInput(format!("unknown propagation policy {other:?}"))
                .into_response();
        }
    };
    let body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy});
    match client
        .write(Method::DELETE, &ds_path(&ns, &name), JSON, &body)
        .await
    {
        Ok(_) => Redirect::to(&format!(
            "/ui/daemonsets?namespace={ns}&notice={}",
            query_value(&format!("Deleted DaemonSet {name} ({policy})."))
        ))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize, Default)]
pub struct LogQuery {
    #[serde(default)]
    container: String,
    #[serde(default)]
    previous: String,
    #[serde(default)]
    follow: String,
}

fn log_path(ns: &str, name: &str, q: &LogQuery, follow: bool) -> String {
    let mut path = format!("/api/v1/namespaces/{ns}/pods/{name}/log?tailLines=500");
    if !q.container.is_empty() {
        path.push_str(&format!("&container={}", query_value(&q.container)));
    }
    if q.previous == "on" {
        path.push_str("&previous=true");
    }
    if follow {
        path.push_str("&follow=true");
    }
    path
}

pub async fn logs(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let pod: Pod = match client
        .get_as(&format!("/api/v1/namespaces/{ns}/pods/{name}"))
        .await
    {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let containers: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| c.name.clone())
        .collect();
    let follow = q.follow == "on";
    let text = if follow {
        Ok(String::new())
    } else {
        client.text(&log_path(&ns, &name, &q, false)).await
    };
    let owner = pod
        .metadata
        .owner_references
        .as_ref()
        .and_then(|refs| refs.first())
        .map(|o| o.name.clone())
        .unwrap_or_default();
    let stream = format!(
        "/ui/pods/{ns}/{name}/logs/stream?container={}&previous={}",
        query_value(&q.container),
        query_value(&q.previous)
    );
    page(
        &format!("Logs of {name}"),
        Nav::DaemonSets,
        html! {
            p.muted { a href={"/ui/daemonsets/" (ns) "/" (owner) "?tab=pods"} { "DaemonSet " (owner) } " / pod " (name) }
            h1 { "Logs of " (name) }
            form #log-options method="get" {
                label { "Container" select name="container" {
                    @for c in &containers { option value=(c) selected[*c == q.container] { (c) } }
                } }
                label.check { input type="checkbox" name="previous" checked[q.previous == "on"]; "previous instance" }
                label.check { input type="checkbox" name="follow" checked[follow]; "follow" }
                button type="submit" { "Show" }
            }
            (crate::merged_log::log_box(&text, follow, &stream))
        },
    )
    .into_response()
}

pub async fn logs_stream(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let chunks = client.byte_stream(&log_path(&ns, &name, &q, true)).await;
    crate::merged_log::followed(chunks, |_| true)
}
