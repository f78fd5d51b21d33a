//! `GET .../daemonsets/{name}/log` (beyond.md §7.3): the logs of all the DaemonSet's pods as one
//! stream, every line prefixed `[<node>/<pod>/<container>] `. Each container's log is read from
//! its node's agent as `pods/log` reads it; with `follow`, pods that appear are joined and pods
//! that go are left, without ending the stream.
//!
//! Memory is bounded per stream whatever the node count: lines travel through one channel of
//! `QUEUED_LINES`, and a line longer than `MAX_LINE` is cut. A slow reader fills the channel,
//! which stops the readers of the agents' streams, which stops the agents (TCP backpressure):
//! it slows its own stream and nothing else.

use super::log::{open, pick_container};
use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use crate::request::options::LogOptions;
use crate::request::{Query, ResourcePath};
use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use everynode_api::registry::{self, Kind};
use everynode_api::selector::{FieldSelector, Selector};
use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Lines waiting for the reader, across all pods of one stream.
const QUEUED_LINES: usize = 256;
/// The longest line passed on whole; the rest of a longer line is dropped.
const MAX_LINE: usize = 16 * 1024;

/// The DaemonSet's pods that are bound to a node (and, when `nodes` is not empty, to one of
/// those), with the containers to follow in each.
fn streams(
    api: &Registry,
    namespace: &str,
    uid: &str,
    selector: &Selector,
    nodes: &[String],
    container: Option<&str>,
) -> Vec<(Value, String)> {
    let res = registry::by_kind(Kind::Pod);
    // The cache narrows by the DaemonSet's selector before anything is decoded.
    let filter = Registry::filter(
        res,
        Some(namespace),
        selector.clone(),
        FieldSelector::default(),
    );
    let mut out = Vec::new();
    for item in api.cache.list(&filter, None, 0).items {
        let Ok(pod) = serde_json::from_slice::<Value>(&item.json) else {
            continue;
        };
        let owned = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|o| o["uid"] == uid && o["controller"] == true);
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
        if !owned || node.is_empty() || (!nodes.is_empty() && !nodes.iter().any(|n| n == node)) {
            continue;
        }
        let containers: Vec<String> = match container {
            Some(c) => match pick_container(&pod, Some(c)) {
                Ok(c) => vec![c],
                Err(_) => continue,
            },
            None => pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect(),
        };
        for c in containers {
            out.push((pod.clone(), c));
        }
    }
    out
}

fn key(pod: &Value, container: &str) -> String {
    format!(
        "{}/{container}",
        pod["metadata"]["uid"].as_str().unwrap_or_default()
    )
}

/// Follows one container's log into `tx`, line by line, prefixed.
async fn pump(
    api: Arc<Registry>,
    pod: Value,
    container: String,
    options: LogOptions,
    tx: mpsc::Sender<Bytes>,
) {
    let prefix = format!(
        "[{}/{}/{container}] ",
        pod["spec"]["nodeName"].as_str().unwrap_or(""),
        pod["metadata"]["name"].as_str().unwrap_or("")
    );
    let response = match open(&api, &pod, &container, &options).await {
        Ok(r) => r,
        Err(e) => {
            let _ = tx
                .send(Bytes::from(format!("{prefix}error: {}\n", e.message)))
                .await;
            return;
        }
    };
    let mut body = response.bytes_stream();
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            break;
        };
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            if !cut {
                let room = MAX_LINE.saturating_sub(line.len());
                line.extend_from_slice(&piece[..piece.len().min(room)]);
                cut = piece.len() > room;
            }
            if piece.ends_with(b"\n") {
                let mut out = Vec::with_capacity(prefix.len() + line.len() + 1);
                out.extend_from_slice(prefix.as_bytes());
                out.extend_from_slice(&line);
                if !out.ends_with(b"\n") {
                    out.push(b'\n');
                }
                line.clear();
                cut = false;
                if tx.send(Bytes::from(out)).await.is_err() {
                    return; // The reader went away.
                }
            }
        }
    }
    if !line.is_empty() {
        let mut out = prefix.into_bytes();
        out.extend_from_slice(&line);
        out.push(b'\n');
        let _ = tx.send(Bytes::from(out)).await;
    }
}

pub async fn handle(
    api: &Arc<Registry>,
    path: &ResourcePath,
    name: &str,
    query: &Query,
) -> ApiResult<Response> {
    let namespace = path.namespace().unwrap_or("default").to_owned();
    let options: LogOptions = query.decode()?;
    options.validate()?;
    if options.previous {
        return Err(ApiError::bad_request(
            "previous is not supported for a DaemonSet's merged log; read one pod's with pods/log",
        ));
    }
    let nodes: Vec<String> = query.all("node").map(str::to_owned).collect();
    api.fresh_cache().await?;
    let ds = api.get(path.res, Some(&namespace), name, false).await?;
    let uid = ds["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let selector = serde_json::from_value(ds["spec"]["selector"].clone())
        .ok()
        .and_then(|s| everynode_api::selector::from_label_selector(Some(&s)).ok())
        .unwrap_or(Selector::Nothing);
    let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUED_LINES);
    let mut started = BTreeSet::new();
    let container = options.container.as_deref();
    for (pod, container) in streams(api, &namespace, &uid, &selector, &nodes, container) {
        started.insert(key(&pod, &container));
        tokio::spawn(pump(
            Arc::clone(api),
            pod,
            container,
            options.clone(),
            tx.clone(),
        ));
    }
    if options.follow {
        // Joins pods as they appear, until the reader goes away.
        let api = Arc::clone(api);
        let container = options.container.clone();
        let joined = LogOptions {
            // A pod that appears mid-stream is read from its start.
            tail_lines: None,
            since_seconds: None,
            since_time: None,
            ..options.clone()
        };
        tokio::spawn(async move {
            let mut changes =
                crate::namespaces::Changes::new(Arc::clone(&api), vec![(Kind::Pod, None)]);
            while !tx.is_closed() {
                changes.next(Duration::from_secs(2)).await;
                let found = streams(
                    &api,
                    &namespace,
                    &uid,
                    &selector,
                    &nodes,
                    container.as_deref(),
                );
                for (pod, c) in found {
                    if started.insert(key(&pod, &c)) {
                        tokio::spawn(pump(Arc::clone(&api), pod, c, joined.clone(), tx.clone()));
                    }
                }
                // While pods churn, look at most once a second: a stream costs little however
                // busy the cluster is.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    } else {
        // The stream ends when every pump has.
        drop(tx);
    }
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|l| l.map(Ok::<_, std::convert::Infallible>))
    });
    Ok((
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response())
}
