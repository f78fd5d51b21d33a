//! "Logs (all pods)": one view over every pod of a DaemonSet, read from the API server's merged
//! stream (`daemonsets/{name}/log`, each line prefixed `[node/pod/container]`), narrowed to one
//! node and to lines containing a text, followed live or read once.
//!
//! The merged stream is everynode's own subresource; against another cluster's API server the
//! page says so and points to each pod's logs.

use crate::daemonsets::Fleet;
use crate::error::ConsoleError;
use crate::layout::{Nav, error_box, page, query_value};
use crate::session::Session;
use axum::extract::{Path, Query};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use maud::{Markup, html};
use serde::Deserialize;
use std::convert::Infallible;

/// Lines per container read before following (or in all, without following).
const TAIL_LINES: u32 = 200;

#[derive(Deserialize, Default)]
pub struct MergedLogQuery {
    /// One node's pods only; empty for all.
    #[serde(default)]
    node: String,
    /// Only lines containing this text (case-insensitive); empty for all.
    #[serde(default)]
    search: String,
    #[serde(default)]
    follow: String,
}

impl MergedLogQuery {
    fn api_path(&self, ns: &str, name: &str, follow: bool) -> String {
        let mut path =
            format!("/apis/apps/v1/namespaces/{ns}/daemonsets/{name}/log?tailLines={TAIL_LINES}");
        if !self.node.is_empty() {
            path.push_str(&format!("&node={}", query_value(&self.node)));
        }
        if follow {
            path.push_str("&follow=true");
        }
        path
    }

    /// Whether `line` passes the text search.
    fn keeps(&self, line: &str) -> bool {
        self.search.is_empty() || line.to_lowercase().contains(&self.search.to_lowercase())
    }
}

/// The text of a non-followed read, narrowed by the search.
fn narrowed(text: &str, q: &MergedLogQuery) -> String {
    text.lines()
        .filter(|l| q.keeps(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A 404 (a server without the merged stream, or the DaemonSet gone) says what to do instead.
fn explain(e: ConsoleError) -> ConsoleError {
    match e {
        ConsoleError::Api {
            code,
            message,
            causes,
        } if code == axum::http::StatusCode::NOT_FOUND => ConsoleError::Api {
            code,
            message: format!(
                "{message}. The merged log (daemonsets/NAME/log) is served by everynode's API server; on other clusters open each pod's logs from the Pods tab."
            ),
            causes,
        },
        other => other,
    }
}

pub async fn page_of(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<MergedLogQuery>,
) -> Response {
    let ds: DaemonSet = match client
        .get_as(&format!("/apis/apps/v1/namespaces/{ns}/daemonsets/{name}"))
        .await
    {
        Ok(ds) => ds,
        Err(e) => return e.into_response(),
    };
    // The nodes that run a pod of the DaemonSet, for the node filter.
    let mut nodes: Vec<String> = match Fleet::load(&client, &ns).await {
        Ok(fleet) => fleet
            .status_of(&ds, client.now())
            .1
            .into_iter()
            .map(|row| row.node)
            .filter(|n| !n.is_empty())
            .collect(),
        Err(e) => return e.into_response(),
    };
    nodes.sort();
    nodes.dedup();
    let follow = q.follow == "on";
    let text = if follow {
        Ok(String::new())
    } else {
        client
            .text(&q.api_path(&ns, &name, false))
            .await
            .map(|t| narrowed(&t, &q))
            .map_err(explain)
    };
    let stream = format!(
        "/ui/daemonsets/{ns}/{name}/logs/stream?node={}&search={}",
        query_value(&q.node),
        query_value(&q.search)
    );
    page(
        &format!("Logs of all pods of {name}"),
        Nav::DaemonSets,
        html! {
            p.muted { a href={"/ui/daemonsets/" (ns) "/" (name) "?tab=pods"} { "DaemonSet " (name) } " / logs of all pods" }
            h1 { "Logs of all pods of " (name) }
            form #log-options method="get" {
                label { "Node" select name="node" {
                    option value="" selected[q.node.is_empty()] { "All nodes (" (nodes.len()) ")" }
                    @for n in &nodes { option value=(n) selected[*n == q.node] { (n) } }
                } }
                label { "Search" input type="search" name="search" value=(q.search) placeholder="text in the line"; }
                label.check { input type="checkbox" name="follow" checked[follow]; "follow" }
                button type="submit" { "Show" }
            }
            p.muted { "Each line starts with [node/pod/container]. The last " (TAIL_LINES) " lines of each container, then new lines as they come when following; pods that start while following join the stream." }
            (log_box(&text, follow, &stream))
        },
    )
    .into_response()
}

pub async fn stream(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<MergedLogQuery>,
) -> Response {
    let chunks = client
        .byte_stream(&q.api_path(&ns, &name, true))
        .await
        .map_err(explain);
    followed(chunks, move |line| q.keeps(line))
}

/// A followed log as the browser reads it: one server-sent event per line that `keep` accepts,
/// then an `end` event; or one event with the error when the log could not be opened. The pod
/// log and the merged log both stream this way.
pub fn followed<S>(
    chunks: Result<S, ConsoleError>,
    keep: impl Fn(&str) -> bool + Send + 'static,
) -> Response
where
    S: Stream<Item = bytes::Bytes> + Send + 'static,
{
    let chunks = match chunks {
        Ok(s) => s,
        Err(e) => {
            let events =
                futures::stream::iter([Ok::<_, Infallible>(Event::default().data(e.to_string()))]);
            return Sse::new(events).into_response();
        }
    };
    let lines = line_events(chunks, keep);
    let end = futures::stream::iter([Ok(Event::default().event("end").data("end of log"))]);
    Sse::new(lines.chain(end))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The log on a page: followed through `stream` (the browser appends each event), or the text
/// read once, or the reason it could not be read.
pub fn log_box(text: &Result<String, ConsoleError>, follow: bool, stream: &str) -> Markup {
    html! {
        @match text {
            Ok(t) if follow => pre #logs data-follow=(stream) { (t) },
            Ok(t) => pre #logs { (t) },
            Err(e) => (error_box(e)),
        }
    }
}

/// A byte stream of text as one server-sent event per line that `keep` accepts.
pub fn line_events<S>(
    chunks: S,
    keep: impl Fn(&str) -> bool + Send + 'static,
) -> impl Stream<Item = Result<Event, Infallible>> + Send
where
    S: Stream<Item = bytes::Bytes> + Send + 'static,
{
    futures::stream::unfold(
        (Box::pin(chunks), Vec::<u8>::new(), keep),
        |(mut chunks, mut pending, keep)| async move {
            loop {
                if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let line = String::from_utf8_lossy(&line);
                    let line = line.trim_end_matches('\n');
                    if !keep(line) {
                        continue;
                    }
                    let event = Event::default().data(line);
                    return Some((Ok(event), (chunks, pending, keep)));
                }
                let chunk = chunks.next().await?;
                pending.extend_from_slice(&chunk);
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_keeps_matching_lines_whatever_their_case() {
        let q = MergedLogQuery {
            search: "ERROR".into(),
            ..Default::default()
        };
        let text = "[n1/p1/c] ok\n[n2/p2/c] an error here\n[n3/p3/c] Error too\n";
        assert_eq!(
            narrowed(text, &q),
            "[n2/p2/c] an error here\n[n3/p3/c] Error too\n"
        );
        let all = MergedLogQuery::default();
        assert_eq!(narrowed(text, &all), text);
        let one = MergedLogQuery {
            node: "n 1".into(),
            ..Default::default()
        };
        assert_eq!(
            one.api_path("ns", "ds", true),
            "/apis/apps/v1/namespaces/ns/daemonsets/ds/log?tailLines=200&node=n+1&follow=true"
        );
    }

    #[tokio::test]
    async fn lines_split_across_chunks_arrive_whole_and_filtered() {
        let chunks = futures::stream::iter(
            ["[a/p/c] one\n[b/p/c] tw", "o\n[a/p/c] thr", "ee\n"].map(bytes::Bytes::from),
        );
        let events: Vec<_> = line_events(chunks, |l| l.starts_with("[a/"))
            .collect()
            .await;
        assert_eq!(events.len(), 2);
    }
}
