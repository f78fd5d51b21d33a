//! Nodes (labels, taints, conditions, pods; cordon, uncordon, add a label or a taint) and
//! namespaces (list, create, delete).

use crate::client::{JSON, MERGE_PATCH, STRATEGIC_MERGE_PATCH};
use crate::error::ConsoleError;
use crate::layout::{Nav, age_of, error_box, map_pairs, notice, page, query_value};
use crate::session::Session;
use axum::Form;
use axum::extract::{Path, Query};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Taint};
use maud::html;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, Default)]
pub struct NoticeQuery {
    #[serde(default)]
    notice: String,
}

pub async fn list(Session(client): Session, Query(q): Query<NoticeQuery>) -> Response {
    let (nodes, pods): (Vec<Node>, Vec<Pod>) = match (
        client.list_as("/api/v1/nodes").await,
        client.list_as("/api/v1/pods").await,
    ) {
        (Ok(n), Ok(p)) => (n, p),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let now = client.now();
    page(
        "Nodes",
        Nav::Nodes,
        html! {
            h1 { "Nodes" }
            (notice(Some(&q.notice)))
            (crate::usage::charts("/ui/nodes/usage", "the nodes"))
            table #nodes {
                thead { tr { th { "Name" } th { "Status" } th { "Labels" } th { "Taints" } th { "Conditions" } th { "Pods" } th { "Age" } th { "Actions" } } }
                tbody {
                    @for n in &nodes {
                        @let name = n.metadata.name.as_deref().unwrap_or_default();
                        @let on_node: Vec<&str> = pods.iter()
                            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name))
                            .filter_map(|p| p.metadata.name.as_deref())
                            .collect();
                        @let spec = n.spec.clone().unwrap_or_default();
                        @let unschedulable = spec.unschedulable.unwrap_or(false);
                        tr data-node=(name) {
                            td { a href={"/ui/nodes/" (name)} { (name) } }
                            td.node-status { (node_status_word(n)) }
                            td { code { (map_pairs(n.metadata.labels.as_ref())) } }
                            td.taints {
                                @for t in spec.taints.iter().flatten() {
                                    code { (crate::placement::taint_text(t)) } br;
                                }
                            }
                            td { @for c in n.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten() {
                                span title=(c.message.as_deref().unwrap_or_default()) { (c.type_) "=" (c.status) } br;
                            } }
                            td { (on_node.len()) details { summary { "list" } ul { @for p in &on_node { li { (p) } } } } }
                            td { (age_of(&n.metadata, now)) }
                            td.actions {
                                form method="post" action={"/ui/nodes/" (name) "/" (if unschedulable { "uncordon" } else { "cordon" })} {
                                    button type="submit" { @if unschedulable { "Uncordon" } @else { "Cordon" } }
                                }
                                form method="post" action={"/ui/nodes/" (name) "/label"} {
                                    input name="value" placeholder="key=value" size="14" required;
                                    button type="submit" { "Add label" }
                                }
                                form method="post" action={"/ui/nodes/" (name) "/taint"} {
                                    input name="value" placeholder="key=value:NoSchedule" size="20" required;
                                    button type="submit" { "Add taint" }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

#[derive(Deserialize, Default)]
pub struct ValueForm {
    #[serde(default)]
    value: String,
}

/// The STATUS column of a node, by the server's own printer (which reads the wire form).
fn node_status_word(node: &Node) -> String {
    everynode_api::table::node_status(&serde_json::to_value(node).unwrap_or_default())
}

/// `key=value:Effect` (or `key:Effect`) into a taint.
fn parse_taint(text: &str) -> Result<Taint, String> {
    let (kv, effect) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?}: a taint is key=value:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "{effect:?}: the effect is NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    Ok(Taint {
        key: key.to_owned(),
        value: (!value.is_empty()).then(|| value.to_owned()),
        effect: effect.to_owned(),
        time_added: None,
    })
}

/// One node: addresses, system info, capacity and allocatable, conditions, taints, labels,
/// and the pods bound to it.
pub async fn show(Session(client): Session, Path(name): Path<String>) -> Response {
    let node: Node = match client.get_as(&format!("/api/v1/nodes/{name}")).await {
        Ok(n) => n,
        Err(e) => {
            return (
                e.status(),
                page(
                    &name,
                    Nav::Nodes,
                    html! { h1 { (name) } (error_box(&e)) p { a href="/ui/nodes" { "Back" } } },
                ),
            )
                .into_response();
        }
    };
    let selector = query_value(&format!("spec.nodeName={name}"));
    let pods: Vec<Pod> = client
        .list_as(&format!("/api/v1/pods?fieldSelector={selector}"))
        .await
        .unwrap_or_default();
    let now = client.now();
    let status = node.status.clone().unwrap_or_default();
    let spec = node.spec.clone().unwrap_or_default();
    let info = status.node_info.clone().unwrap_or_default();
    let capacity = status.capacity.clone().unwrap_or_default();
    let allocatable = status.allocatable.clone().unwrap_or_default();
    page(
        &name,
        Nav::Nodes,
        html! {
            h1 { "Node " (name) " " span.status { (node_status_word(&node)) } }
            div.grid {
                div.card #node-info {
                    h2 { "System" }
                    @for a in status.addresses.iter().flatten() { div { (a.type_) ": " code { (a.address) } } }
                    @if let Some(cidr) = &spec.pod_cidr { div { "Pod CIDR: " code { (cidr) } } }
                    div { "Runtime: " (info.container_runtime_version) }
                    div { "Kubelet: " (info.kubelet_version) }
                    div { "OS: " (info.os_image) ", kernel " (info.kernel_version) " (" (info.architecture) ")" }
                    div { "Schedulable: " (if spec.unschedulable.unwrap_or(false) { "no (cordoned)" } else { "yes" }) }
                    div { "Age: " (age_of(&node.metadata, now)) }
                }
                div.card #node-resources {
                    h2 { "Resources" }
                    table {
                        thead { tr { th { "Resource" } th { "Capacity" } th { "Allocatable" } } }
                        tbody {
                            @for (k, v) in &capacity {
                                tr { td { (k) } td { (v.0) } td { (allocatable.get(k).map(|q| q.0.as_str()).unwrap_or("")) } }
                            }
                        }
                    }
                }
            }
            (crate::usage::charts(&format!("/ui/nodes/{name}/usage"), "the node"))
            h2 { "Conditions" }
            div.scroll { table #node-conditions {
                thead { tr { th { "Type" } th { "Status" } th { "Reason" } th { "Message" } th { "Last heartbeat" } } }
                tbody {
                    @for c in status.conditions.iter().flatten() {
                        tr { td { (c.type_) } td { (c.status) } td { (c.reason.as_deref().unwrap_or_default()) }
                             td { (c.message.as_deref().unwrap_or_default()) }
                             td { (c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default()) } }
                    }
                }
            } }
            h2 { "Taints" }
            @if spec.taints.as_ref().is_none_or(|t| t.is_empty()) { p.muted { "None." } }
            @for t in spec.taints.iter().flatten() { code { (crate::placement::taint_text(t)) } br; }
            h2 { "Labels" }
            div.scroll { table #node-labels { tbody {
                @for (k, v) in node.metadata.labels.iter().flatten() { tr { td { code { (k) } } td { code { (v) } } } }
            } } }
            h2 { "Pods (" (pods.len()) ")" }
            div.scroll { table #node-pods {
                thead { tr { th { "Namespace" } th { "Name" } th { "Phase" } th { "IP" } th { "Age" } } }
                tbody {
                    @for p in &pods {
                        tr { td { (p.metadata.namespace.as_deref().unwrap_or_default()) } td { (p.metadata.name.as_deref().unwrap_or_default()) }
                             td { (p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()) }
                             td { (p.status.as_ref().and_then(|s| s.pod_ip.as_deref()).unwrap_or_default()) }
                             td { (age_of(&p.metadata, now)) } }
                    }
                }
            } }
            p { a href="/ui/nodes" { "All nodes" } }
        },
    )
    .into_response()
}

pub async fn act(
    Session(client): Session,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<ValueForm>,
) -> Response {
    let path = format!("/api/v1/nodes/{name}");
    let value = form.value.trim();
    let result = match action.as_str() {
        "cordon" | "uncordon" => {
            client
                .write(
                    Method::PATCH,
                    &path,
                    STRATEGIC_MERGE_PATCH,
                    &json!({"spec": {"unschedulable": action == "cordon"}}),
                )
                .await
        }
        "label" => match value.split_once('=') {
            Some((k, v)) => {
                client
                    .write(
                        Method::PATCH,
                        &path,
                        MERGE_PATCH,
                        &json!({"metadata": {"labels": {k.trim(): v.trim()}}}),
                    )
                    .await
            }
            None => Err(ConsoleError::BadInput(format!(
                "node {name}: {value:?} is not a label; write key=value, e.g. disk=ssd"
            ))),
        },
        "taint" => match parse_taint(value) {
            Ok(taint) => match client.get_as::<Node>(&path).await {
                Ok(node) => {
                    let mut taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
                    taints.retain(|t| !(t.key == taint.key && t.effect == taint.effect));
                    taints.push(taint);
                    let rv = node.metadata.resource_version.unwrap_or_default();
                    client.write(Method::PATCH, &path, MERGE_PATCH, &json!({"metadata": {"resourceVersion": rv}, "spec": {"taints": taints}})).await
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(ConsoleError::BadInput(format!("node {name}: {e}"))),
        },
        other => Err(ConsoleError::BadInput(format!("no node action {other:?}"))),
    };
    match result {
        Ok(_) => Redirect::to(&format!(
            "/ui/nodes?notice={}",
            query_value(&format!("{name}: {action} done."))
        ))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn namespaces(Session(client): Session, Query(q): Query<NoticeQuery>) -> Response {
    let list: Vec<Namespace> = match client.list_as("/api/v1/namespaces").await {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let now = client.now();
    page(
        "Namespaces",
        Nav::Namespaces,
        html! {
            h1 { "Namespaces" }
            (notice(Some(&q.notice)))
            form.card method="post" action="/ui/namespaces" {
                label { "New namespace" input name="value" required maxlength="63" pattern="[a-z0-9]([a-z0-9\\-]*[a-z0-9])?" data-dns-label; }
                button.primary type="submit" { "Create" }
            }
            table #namespaces {
                thead { tr { th { "Name" } th { "Status" } th { "Age" } th { "" } } }
                tbody {
                    @for n in &list {
                        @let name = n.metadata.name.as_deref().unwrap_or_default();
                        tr data-namespace=(name) {
                            td { a href={"/ui/daemonsets?namespace=" (name)} { (name) } }
                            td { (n.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()) }
                            td { (age_of(&n.metadata, now)) }
                            td { form method="post" action={"/ui/namespaces/" (name) "/delete"} {
                                button.danger type="submit" data-confirm={"Delete namespace " (name) " and everything in it?"} { "Delete" }
                            } }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

pub async fn create_namespace(Session(client): Session, Form(form): Form<ValueForm>) -> Response {
    let name = form.value.trim().to_owned();
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    match client.write(Method::POST, "/api/v1/namespaces", JSON, &body).await {
        Ok(_) => Redirect::to(&format!("/ui/namespaces?notice={}", query_value(&format!("Created namespace {name}.")))).into_response(),
        Err(e) => (e.status(), page("Namespaces", Nav::Namespaces, html! { h1 { "Namespaces" } (error_box(&e)) p { a href="/ui/namespaces" { "Back" } } })).into_response(),
    }
}

pub async fn delete_namespace(Session(client): Session, Path(name): Path<String>) -> Response {
    match client
        .send(
            Method::DELETE,
            &format!("/api/v1/namespaces/{name}"),
            None,
            Vec::new(),
        )
        .await
    {
        Ok(_) => Redirect::to(&format!(
            "/ui/namespaces?notice={}",
            query_value(&format!("Deleting namespace {name}."))
        ))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_are_read_as_kubectl_writes_them() {
        assert_eq!(
            parse_taint("dedicated=gpu:NoSchedule").map(|t| serde_json::to_value(t).ok()),
            Ok(Some(
                json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})
            ))
        );
        assert_eq!(
            parse_taint("maintenance:NoExecute").map(|t| serde_json::to_value(t).ok()),
            Ok(Some(json!({"key": "maintenance", "effect": "NoExecute"})))
        );
        assert!(parse_taint("a=b").is_err());
        assert!(parse_taint("a=b:Sometimes").is_err());
    }
}
