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
                            td { (name) }
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
                label { "New namespace" input name="value" required maxlength="63" pattern="[a-z0-9]([-a-z0-9]*[a-z0-9])?" data-dns-label; }
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
