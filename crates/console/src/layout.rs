//! The page shell every console page shares, and small rendering helpers.

use crate::error::ConsoleError;
use k8s_openapi::jiff::Timestamp;
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

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

/// Age as kubectl prints it.
pub fn age(obj: &Value, now: Timestamp) -> String {
    obj.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| everynode_api::table::human_duration(now.duration_since(t).as_secs()))
        .unwrap_or_else(|| "<unknown>".into())
}

pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub fn int_at(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// `k=v` pairs of a map, comma separated.
pub fn pairs(obj: Option<&Value>) -> String {
    obj.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
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
