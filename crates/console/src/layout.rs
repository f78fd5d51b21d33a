//! The page shell every console page shares, and small rendering helpers.

use crate::error::ConsoleError;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;
use std::collections::BTreeMap;

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    DaemonSets,
    Create,
    Import,
    Nodes,
    Namespaces,
    None,
}

/// A whole page: head, navigation, then `body`.
pub fn page(title: &str, nav: Nav, body: Markup) -> axum::response::Html<String> {
    let entries = [
        (Nav::DaemonSets, "/ui/daemonsets", "DaemonSets"),
        (Nav::Create, "/ui/create", "Create"),
        (Nav::Import, "/ui/import", "Import YAML"),
        (Nav::Nodes, "/ui/nodes", "Nodes"),
        (Nav::Namespaces, "/ui/namespaces", "Namespaces"),
    ];
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · everynode" }
                link rel="stylesheet" href="/ui/assets/console.css";
                script src="/ui/assets/console.js" defer {}
            }
            body {
                @if nav != Nav::None {
                    header.top {
                        a.brand href="/ui/daemonsets" { "everynode" }
                        nav {
                            @for (entry, href, label) in entries {
                                a href=(href) class=[(entry == nav).then_some("active")] { (label) }
                            }
                        }
                        form.signout method="post" action="/ui/logout" {
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    axum::response::Html(markup.into_string())
}

/// The page for an error that reached the browser.
pub fn error_page(err: &ConsoleError) -> axum::response::Html<String> {
    page(
        "Error",
        Nav::DaemonSets,
        html! {
            h1 { "Something went wrong" }
            (error_box(err))
            p { a href="/ui/daemonsets" { "Back to DaemonSets" } }
        },
    )
}

/// An error with its field causes, as the API server named them.
pub fn error_box(err: &ConsoleError) -> Markup {
    html! {
        div.error role="alert" {
            strong { (err.status().as_u16()) " " (err.status().canonical_reason().unwrap_or("")) }
            @if err.status() == axum::http::StatusCode::FORBIDDEN {
                p { "You are not allowed to do this. Ask a cluster administrator for a role that grants it." }
            }
            p.message { (err.to_string()) }
            @if !err.causes().is_empty() {
                ul {
                    @for c in err.causes() {
                        li { code { (c.field) } ": " (c.message) }
                    }
                }
            }
        }
    }
}

/// A notice at the top of a page (`?notice=` after a redirect).
pub fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = text.filter(|t| !t.is_empty()) {
            div.notice role="status" { (text) }
        }
    }
}

/// Age of an object from its metadata, as kubectl prints it.
pub fn age_of(meta: &ObjectMeta, now: Timestamp) -> String {
    meta.creation_timestamp
        .as_ref()
        .map(|t| everynode_api::table::human_duration(now.duration_since(t.0).as_secs()))
        .unwrap_or_else(|| "<unknown>".into())
}

/// `k=v` pairs of a label-like map, comma separated.
pub fn map_pairs(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

/// An int-or-string as kubectl prints it (`1`, `25%`).
pub fn int_or_string(v: Option<&IntOrString>) -> String {
    match v {
        Some(IntOrString::Int(i)) => i.to_string(),
        Some(IntOrString::String(s)) => s.clone(),
        None => String::new(),
    }
}

pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Pretty YAML of a value (empty on the impossible failure).
pub fn yaml(value: &Value) -> String {
    serde_yaml_ng::to_string(value).unwrap_or_default()
}

/// Percent-encodes a query value.
pub fn query_value(text: &str) -> String {
    serde_urlencoded::to_string([("v", text)])
        .map(|s| s.trim_start_matches("v=").to_owned())
        .unwrap_or_default()
}
