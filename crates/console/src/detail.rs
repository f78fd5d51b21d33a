//! One DaemonSet: overview, pods, placement, revisions (diff, roll back), events, labels and
//! annotations, edit, edit YAML, delete; and pod logs.

use crate::client::ApiClient;
use crate::client::{JSON, STRATEGIC_MERGE_PATCH, YAML};
use crate::daemonsets::{Fleet, images, status_badge};
use crate::error::{ConsoleError, ConsoleResult};
use crate::layout::{Nav, age, error_box, int_at, notice, page, pairs, query_value, str_at, yaml};
use crate::live;
use crate::placement::placement;
use crate::session::Session;
use axum::Form;
use axum::extract::{Path, Query};
use axum::http::{Method, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
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
async fn revisions(client: &ApiClient, ds: &Value) -> ConsoleResult<Vec<Value>> {
    let ns = str_at(ds, "/metadata/namespace");
    let uid = str_at(ds, "/metadata/uid");
    let mut list: Vec<Value> = client
        .list(&format!(
            "/apis/apps/v1/namespaces/{ns}/controllerrevisions"
        ))
        .await?
        .into_iter()
        .filter(|r| {
            r.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|o| o["uid"] == uid))
        })
        .collect();
    list.sort_by_key(|r| int_at(r, "/revision"));
    Ok(list)
}

/// Status, counters and pods: the part of the page that changes on its own.
async fn status_panel(client: &ApiClient, ns: &str, name: &str) -> ConsoleResult<Markup> {
    let ds = client.get(&ds_path(ns, name)).await?;
    let fleet = Fleet::load(client, ns).await?;
    let now = client.now();
    let (st, pods) = fleet.status_of(&ds, now);
    Ok(html! {
        div.card #status-panel data-status=(st.word.as_str()) {
            (status_badge(&st))
            div.counters {
                span { "Desired " b { (int_at(&ds, "/status/desiredNumberScheduled")) } }
                span { "Current " b { (int_at(&ds, "/status/currentNumberScheduled")) } }
                span { "Ready " b.ready { (int_at(&ds, "/status/numberReady")) } }
                span { "Up-to-date " b.updated { (int_at(&ds, "/status/updatedNumberScheduled")) } }
                span { "Available " b { (int_at(&ds, "/status/numberAvailable")) } }
                span { "Misscheduled " b { (int_at(&ds, "/status/numberMisscheduled")) } }
                span { "Images " code.images { (images(&ds["spec"]["template"]["spec"])) } }
            }
        }
        h2 { "Pods" }
        table #pods {
            thead { tr { th { "Name" } th { "Status" } th { "Ready" } th { "Node" } th { "IP" } th { "Restarts" } th { "Images" } th { "Age" } th { "Logs" } } }
            tbody {
                @for (pod_name, node, word, pod) in &pods {
                    @let (ready, _, restarts) = everynode_api::table::pod_status(pod, now);
                    tr data-pod=(pod_name) data-status=(word) {
                        td { (pod_name) } td { (word) } td { (ready) } td { (node) }
                        td { (str_at(pod, "/status/podIP")) } td { (restarts) }
                        td { code { (images(&pod["spec"])) } }
                        td { (age(pod, now)) }
                        td { a href={"/ui/pods/" (ns) "/" (pod_name) "/logs"} { "logs" } }
                    }
                }
            }
        }
    })
}

fn overview(ds: &Value) -> Markup {
    let spec = &ds["spec"];
    let strategy = str_at(ds, "/spec/updateStrategy/type");
    html! {
        div.grid {
            div.card {
                h2 { "Strategy" }
                p { b { (strategy) } }
                @if strategy == "RollingUpdate" {
                    p { "maxUnavailable " code { (spec.pointer("/updateStrategy/rollingUpdate/maxUnavailable").map(Value::to_string).unwrap_or_default()) }
                        ", maxSurge " code { (spec.pointer("/updateStrategy/rollingUpdate/maxSurge").map(Value::to_string).unwrap_or_default()) } }
                }
                p { "minReadySeconds " (int_at(ds, "/spec/minReadySeconds"))
                    ", revisionHistoryLimit " (int_at(ds, "/spec/revisionHistoryLimit")) }
            }
            div.card {
                h2 { "Selector" }
                p { code { (pairs(spec.pointer("/selector/matchLabels"))) } }
                h2 { "Node selector" }
                p { code { (pairs(spec.pointer("/template/spec/nodeSelector"))) } }
            }
            div.card {
                h2 { "Tolerations" }
                ul {
                    @for t in spec.pointer("/template/spec/tolerations").and_then(Value::as_array).into_iter().flatten() {
                        li { code { (str_at(t, "/key")) " " (t.get("operator").and_then(Value::as_str).unwrap_or("Equal")) " " (str_at(t, "/value")) " " (str_at(t, "/effect")) } }
                    }
                }
            }
        }
    }
}

fn placement_tab(ds: &Value, fleet: &Fleet) -> Markup {
    let typed: DaemonSet = serde_json::from_value(ds.clone()).unwrap_or_default();
    let pods: Vec<Pod> = fleet
        .pods
        .iter()
        .filter_map(|p| serde_json::from_value(p.clone()).ok())
        .collect();
    let rows = placement(&typed, &fleet.nodes, &pods);
    html! {
        table #placement {
            thead { tr { th { "Node" } th { "Pod" } th { "Why" } } }
            tbody {
                @for r in &rows {
                    tr data-node=(r.node) {
                        td { (r.node) }
                        td { (r.pods.join(", ")) }
                        td {
                            @match (&r.excluded, r.pods.is_empty()) {
                                (Some(reason), _) => span.excluded { "not eligible: " (reason) },
                                (None, true) => span { "eligible; the controller has not created its pod yet" },
                                (None, false) => span { "runs here" },
                            }
                        }
                    }
                }
            }
        }
    }
}

fn template_yaml(revision: &Value) -> String {
    let mut template = revision
        .pointer("/data/spec/template")
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

fn revisions_tab(ns: &str, name: &str, list: &[Value], q: &DetailQuery, now: Timestamp) -> Markup {
    let current_hash = list
        .last()
        .map(|r| str_at(r, "/metadata/labels/controller-revision-hash"));
    let find = |n: &str| {
        list.iter()
            .find(|r| int_at(r, "/revision").to_string() == n)
    };
    html! {
        table #revisions {
            thead { tr { th { "Revision" } th { "Hash" } th { "Change cause" } th { "Created" } th { "" } } }
            tbody {
                @for r in list.iter().rev() {
                    @let revision = int_at(r, "/revision");
                    @let hash = str_at(r, "/metadata/labels/controller-revision-hash");
                    tr data-revision=(revision) {
                        td { (revision) @if Some(hash) == current_hash { " (current)" } }
                        td { code { (hash) } }
                        td { (str_at(r, "/metadata/annotations/kubernetes.io~1change-cause")) }
                        td { (str_at(r, "/metadata/creationTimestamp")) " (" (age(r, now)) ")" }
                        td {
                            @if Some(hash) != current_hash {
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
            label { "From" select name="from" { @for r in list { @let n = int_at(r, "/revision").to_string(); option value=(n) selected[n == q.from] { (n) } } } }
            label { "To" select name="to" { @for r in list.iter().rev() { @let n = int_at(r, "/revision").to_string(); option value=(n) selected[n == q.to] { (n) } } } }
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
    let selector = query_value(&format!(
        "involvedObject.kind=DaemonSet,involvedObject.name={name},involvedObject.namespace={ns}"
    ));
    let mut events = client
        .list(&format!(
            "/api/v1/namespaces/{ns}/events?fieldSelector={selector}"
        ))
        .await?;
    events.sort_by(|a, b| str_at(b, "/lastTimestamp").cmp(str_at(a, "/lastTimestamp")));
    Ok(html! {
        table #events {
            thead { tr { th { "Type" } th { "Reason" } th { "Age" } th { "From" } th { "Message" } } }
            tbody {
                @for e in &events {
                    tr { td { (str_at(e, "/type")) } td { (str_at(e, "/reason")) }
                         td { (age(e, now)) } td { (str_at(e, "/source/component")) } td { (str_at(e, "/message")) } }
                }
            }
        }
    })
}

fn metadata_tab(ds: &Value) -> Markup {
    let table = |title: &str, map: Option<&Value>| {
        html! {
            h2 { (title) }
            table {
                tbody {
                    @for (k, v) in map.and_then(Value::as_object).into_iter().flatten() {
                        tr { td { code { (k) } } td { code { (v.as_str().unwrap_or_default()) } } }
                    }
                }
            }
        }
    };
    html! {
        (table("Labels", ds.pointer("/metadata/labels")))
        (table("Annotations", ds.pointer("/metadata/annotations")))
        (table("Pod template labels", ds.pointer("/spec/template/metadata/labels")))
        (table("Pod template annotations", ds.pointer("/spec/template/metadata/annotations")))
    }
}

fn edit_tab(ns: &str, name: &str, ds: &Value) -> Markup {
    let containers = ds
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    html! {
        form.card method="post" action={"/ui/daemonsets/" (ns) "/" (name) "/edit"} {
            @for c in &containers {
                @let cname = str_at(c, "/name");
                label { "Image of container " (cname)
                    input name={"image." (cname)} value=(str_at(c, "/image")) size="50";
                }
            }
            br;
            label { "maxUnavailable"
                input name="maxUnavailable" value=(ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable").map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).unwrap_or_default());
            }
            label { "minReadySeconds" input name="minReadySeconds" value=(int_at(ds, "/spec/minReadySeconds")); }
            label { "Change cause (kubernetes.io/change-cause)" input name="changeCause" size="40"; }
            br;
            button.primary type="submit" { "Save" }
        }
    }
}

fn yaml_tab(ns: &str, name: &str, text: &str) -> Markup {
    html! {
        form method="post" action={"/ui/daemonsets/" (ns) "/" (name) "/yaml"} {
            p {
                a.button href={"/ui/daemonsets/" (ns) "/" (name) "/yaml"} download={(name) ".yaml"} { "Download" }
                " "
                label.check { "Upload a file" input type="file" accept=".yaml,.yml,.json" data-load-into="yaml-editor"; }
            }
            textarea.code #yaml-editor name="yaml" spellcheck="false" { (text) }
            p { button.primary type="submit" { "Update" } }
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

async fn render(
    client: &ApiClient,
    ns: &str,
    name: &str,
    q: &DetailQuery,
    yaml_text: Option<String>,
    problem: Option<&ConsoleError>,
) -> ConsoleResult<Response> {
    let ds = client.get(&ds_path(ns, name)).await?;
    let tab = if q.tab.is_empty() {
        "overview"
    } else {
        q.tab.as_str()
    };
    let now = client.now();
    let body = match tab {
        "overview" | "pods" => {
            let panel = status_panel(client, ns, name).await?;
            html! {
                div #live data-live={"/ui/daemonsets/" (ns) "/" (name) "/live"} { (panel) }
                @if tab == "overview" { (overview(&ds)) }
            }
        }
        "placement" => placement_tab(&ds, &Fleet::load(client, ns).await?),
        "revisions" => revisions_tab(ns, name, &revisions(client, &ds).await?, q, now),
        "events" => events_tab(client, ns, name, now).await?,
        "metadata" => metadata_tab(&ds),
        "edit" => edit_tab(ns, name, &ds),
        "yaml" => yaml_tab(
            ns,
            name,
            &yaml_text.unwrap_or_else(|| yaml(&editable(ds.clone()))),
        ),
        "delete" => delete_tab(ns, name),
        other => return Err(ConsoleError::BadInput(format!("no tab {other:?}"))),
    };
    let html = page(
        name,
        Nav::DaemonSets,
        html! {
            p.muted { a href={"/ui/daemonsets?namespace=" (ns)} { "DaemonSets" } " / " (ns) }
            h1 { "DaemonSet " (name) }
            (notice(Some(&q.notice)))
            @if let Some(e) = problem { (error_box(e)) }
            nav.tabs {
                @for (id, label) in TABS {
                    a href={"/ui/daemonsets/" (ns) "/" (name) "?tab=" (id)} class=[(id == tab).then_some("active")] data-tab=(id) { (label) }
                }
            }
            (body)
        },
    );
    let code = problem.map_or(axum::http::StatusCode::OK, ConsoleError::status);
    Ok((code, html).into_response())
}

pub async fn show(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<DetailQuery>,
) -> Response {
    render(&client, &ns, &name, &q, None, None)
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

#[derive(Deserialize)]
pub struct YamlForm {
    yaml: String,
}

pub async fn update_yaml(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    Form(form): Form<YamlForm>,
) -> Response {
    let q = DetailQuery {
        tab: "yaml".into(),
        ..Default::default()
    };
    let result = client
        .send(
            Method::PUT,
            &format!("{}?fieldValidation=Strict", ds_path(&ns, &name)),
            Some(YAML),
            form.yaml.clone().into_bytes(),
        )
        .await;
    match result {
        Ok(_) => redirect(&ns, &name, "overview", "Updated."),
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
            render(&client, &ns, &name, &q, Some(form.yaml), Some(&e))
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
    }
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
    match client
        .write(
            Method::PATCH,
            &format!("{}?fieldValidation=Strict", ds_path(&ns, &name)),
            STRATEGIC_MERGE_PATCH,
            &patch,
        )
        .await
    {
        Ok(_) => redirect(
            &ns,
            &name,
            "overview",
            "Saved; the rollout follows the update strategy.",
        ),
        Err(e) => {
            let q = DetailQuery {
                tab: "edit".into(),
                ..Default::default()
            };
            render(&client, &ns, &name, &q, None, Some(&e))
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
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
        let ds = client.get(&ds_path(&ns, &name)).await?;
        let list = revisions(&client, &ds).await?;
        let revision = list
            .iter()
            .find(|r| int_at(r, "/revision") == form.revision)
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
                &revision["data"],
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
    let pod = match client
        .get(&format!("/api/v1/namespaces/{ns}/pods/{name}"))
        .await
    {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let containers: Vec<String> = ["/spec/initContainers", "/spec/containers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .map(|c| str_at(c, "/name").to_owned())
        .collect();
    let follow = q.follow == "on";
    let text = if follow {
        Ok(String::new())
    } else {
        client.text(&log_path(&ns, &name, &q, false)).await
    };
    let owner = pod
        .pointer("/metadata/ownerReferences/0/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
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
            @match &text {
                Ok(t) if follow => pre #logs data-follow=(stream) { (t) },
                Ok(t) => pre #logs { (t) },
                Err(e) => (error_box(e)),
            }
        },
    )
    .into_response()
}

pub async fn logs_stream(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let chunks = match client.byte_stream(&log_path(&ns, &name, &q, true)).await {
        Ok(s) => s,
        Err(e) => {
            let events = futures::stream::iter([Ok::<_, std::convert::Infallible>(
                Event::default().data(e.to_string()),
            )]);
            return Sse::new(events).into_response();
        }
    };
    let lines = futures::stream::unfold(
        (Box::pin(chunks), String::new()),
        |(mut chunks, mut pending)| async move {
            loop {
                if let Some(end) = pending.find('\n') {
                    let line: String = pending.drain(..=end).collect();
                    return Some((
                        Ok::<_, std::convert::Infallible>(
                            Event::default().data(line.trim_end_matches('\n')),
                        ),
                        (chunks, pending),
                    ));
                }
                let chunk = chunks.next().await?;
                pending.push_str(&String::from_utf8_lossy(&chunk));
            }
        },
    );
    let end = futures::stream::iter([Ok(Event::default().event("end").data("end of log"))]);
    Sse::new(lines.chain(end))
        .keep_alive(KeepAlive::default())
        .into_response()
}
