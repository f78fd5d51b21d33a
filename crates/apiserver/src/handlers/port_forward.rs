//! `pods/{name}/portforward`: kubectl's port-forward, as SPDY/3.1 streams, either tunnelled in
//! a WebSocket (`SPDY/3.1+portforward.k8s.io`, kubectl ≥ 1.31) or on an upgraded connection
//! (`portforward.k8s.io`, older kubectl and the fallback). Each forwarded connection is a pair
//! of streams sharing a `requestID`, `error` and `data`, naming the pod's `port`; the server
//! answers each pair as kubelet does and carries the data over a WebSocket of its own to the
//! agent, which dials the port inside the pod's network (`/portForward` on the agent).

use super::node_agent::NodeAgent;
use super::upgrade::Upgrade;
use crate::agent_client::AgentSocket;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::spdy::transport::{self, TUNNEL_PREFIX};
use crate::spdy::{IncomingStream, StreamWriter};
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use everynode_api::registry;
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The stream protocol, upstream's only one.
const PROTOCOL: &str = "portforward.k8s.io";
const TUNNELLED: &str = "SPDY/3.1+portforward.k8s.io";
/// The agent's protocol for one forwarded connection.
const AGENT_PROTOCOL: &str = "v1.portforward.everynode.io";
/// Forwarded connections waiting for their second stream, at most, per client connection.
const MAX_PENDING_PAIRS: usize = 256;

/// The pod the streams reach.
struct Target {
    agent: NodeAgent,
    namespace: String,
    name: String,
    uid: String,
}

/// `GET|POST /api/v1/namespaces/{namespace}/pods/{name}/portforward`.
pub async fn port_forward(
    State(api): State<Arc<Registry>>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    let pod = match registry::find("", "v1", "pods") {
        Some(pods) => api.get(pods, Some(&namespace), &name, false).await,
        None => Err(ApiError::no_route()),
    };
    let pod = match pod {
        Ok(pod) => pod,
        Err(e) => return e.into_response(),
    };
    let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return ApiError::bad_request(format!("pod {name} does not have a host assigned"))
            .into_response();
    };
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed") {
        return ApiError::bad_request(format!(
            "cannot port-forward to a completed pod; current phase is {phase}"
        ))
        .into_response();
    }
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (headers, upgrade) = super::upgrade::classify(request).await;
    let agent = match NodeAgent::of_node(api, node, "port-forward").await {
        Ok(agent) => agent,
        Err(e) => return e.into_response(),
    };
    let target = Arc::new(Target {
        agent,
        namespace,
        name,
        uid,
    });
    match upgrade {
        Upgrade::WebSocket(ws) => {
            let offered = headers
                .get_all("sec-websocket-protocol")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|p| p.trim() == TUNNELLED);
            if !offered {
                return ApiError::bad_request(format!(
                    "port-forward over WebSocket tunnels SPDY/3.1: ask for the sub-protocol {TUNNEL_PREFIX}{PROTOCOL}"
                ))
                .into_response();
            }
            ws.protocols([TUNNELLED])
                .on_upgrade(move |socket| forward(transport::over_websocket(socket), target))
        }
        Upgrade::Spdy(on_upgrade) => {
            let protocol = match transport::negotiate(&headers, &[PROTOCOL]) {
                Ok(protocol) => protocol,
                Err(message) => return ApiError::forbidden_message(message).into_response(),
            };
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    forward(transport::over_upgraded(upgraded), target).await;
                }
            });
            transport::switching_protocols(protocol)
        }
        Upgrade::None => ApiError::bad_request(
            "port-forward needs a connection upgrade: SPDY/3.1, or a WebSocket tunnelling it",
        )
        .into_response(),
    }
}

#[derive(Default)]
struct Pair {
    error: Option<IncomingStream>,
    data: Option<IncomingStream>,
}

/// Upstream's checks of a stream's headers (kubelet's `httpStreamReceived`).
fn check_stream(stream: &IncomingStream) -> Result<(u16, &str), String> {
    let port_text = stream
        .header("port")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| "\"port\" header is required".to_owned())?;
    let port = match port_text.parse::<u16>() {
        Ok(0) => return Err(format!("port {port_text:?} must be > 0")),
        Ok(port) => port,
        Err(e) => return Err(format!("unable to parse {port_text:?} as a port: {e}")),
    };
    match stream.header("streamType").unwrap_or_default() {
        "" => Err("\"streamType\" header is required".to_owned()),
        kind @ ("error" | "data") => Ok((port, kind)),
        other => Err(format!("invalid stream type {other:?}")),
    }
}

/// The request a stream belongs to: its `requestID`, or for clients too old to send one, the
/// stream id upstream derives (data streams follow their error stream).
fn request_id(stream: &IncomingStream, kind: &str) -> String {
    match stream.header("requestID").filter(|r| !r.is_empty()) {
        Some(id) => id.to_owned(),
        None if kind == "data" => stream.id.saturating_sub(2).to_string(),
        None => stream.id.to_string(),
    }
}

/// Pairs the client's streams and forwards each complete pair, until the client leaves.
async fn forward(mut incoming: mpsc::Receiver<IncomingStream>, target: Arc<Target>) {
    let mut pending: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = incoming.recv().await {
        let kind = match check_stream(&stream) {
            Ok((_, kind)) => kind.to_owned(),
            Err(why) => {
                tracing::debug!(error = %why, "port-forward stream refused");
                stream.writer.reset().await;
                continue;
            }
        };
        let id = request_id(&stream, &kind);
        if !pending.contains_key(&id) && pending.len() >= MAX_PENDING_PAIRS {
            stream.writer.reset().await;
            continue;
        }
        let pair = pending.entry(id.clone()).or_default();
        let slot = if kind == "error" {
            &mut pair.error
        } else {
            &mut pair.data
        };
        if slot.is_some() {
            let message =
                format!("error processing stream for request {id}: {kind} stream already assigned");
            if let Some(error) = &pair.error {
                let _ = error.writer.write(Bytes::from(message)).await;
            }
            stream.writer.reset().await;
            continue;
        }
        *slot = Some(stream);
        if pair.error.is_some()
            && pair.data.is_some()
            && let Some(Pair {
                error: Some(error),
                data: Some(data),
            }) = pending.remove(&id)
        {
            tokio::spawn(forward_one(error, data, target.clone()));
        }
    }
}

/// One forwarded connection: the agent dials the pod's port, then bytes flow both ways until
/// the pod's side ends; a failure is written on the error stream, as kubelet writes it.
async fn forward_one(error: IncomingStream, data: IncomingStream, target: Arc<Target>) {
    let port = check_stream(&data)
        .map(|(port, _)| port)
        .unwrap_or_default();
    let path = format!(
        "/portForward/{}/{}?port={port}",
        target.namespace, target.name
    );
    match target.agent.websocket(&path, AGENT_PROTOCOL).await {
        Ok(socket) => relay(data.data, &data.writer, socket).await,
        Err(refusal) => {
            let message = format!(
                "error forwarding port {port} to pod {}/{}, uid {}: {refusal}",
                target.namespace, target.name, target.uid
            );
            let _ = error.writer.write(Bytes::from(message)).await;
        }
    }
    data.writer.finish().await;
    error.writer.finish().await;
}

async fn relay(
    mut from_client: mpsc::Receiver<Bytes>,
    to_client: &StreamWriter,
    agent: AgentSocket,
) {
    let (mut to_agent, mut from_agent) = agent.split();
    let upstream = async {
        while let Some(bytes) = from_client.recv().await {
            if to_agent.send(Message::Binary(bytes)).await.is_err() {
                return;
            }
        }
        // The client's FIN: an empty message shuts the pod connection's write side.
        let _ = to_agent.send(Message::Binary(Bytes::new())).await;
        std::future::pending::<()>().await;
    };
    let downstream = async {
        while let Some(Ok(message)) = from_agent.next().await {
            let bytes = match message {
                Message::Binary(bytes) => bytes,
                Message::Close(_) => return,
                _ => continue,
            };
            if to_client.write(bytes).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = downstream => {}
        () = upstream => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(id: u32, headers: &[(&str, &str)]) -> IncomingStream {
        let (out, _) = mpsc::channel(1);
        let (_, data) = mpsc::channel(1);
        IncomingStream {
            id,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_lowercase(), (*v).to_owned()))
                .collect(),
            data,
            writer: StreamWriter::for_tests(id, out),
        }
    }

    #[test]
    fn streams_are_checked_as_kubelet_checks_them() {
        let ok = stream(
            1,
            &[("streamType", "data"), ("port", "80"), ("requestID", "0")],
        );
        assert_eq!(check_stream(&ok), Ok((80, "data")));
        let no_port = stream(1, &[("streamType", "data")]);
        assert_eq!(
            check_stream(&no_port),
            Err("\"port\" header is required".into())
        );
        let zero = stream(1, &[("streamType", "data"), ("port", "0")]);
        assert_eq!(check_stream(&zero), Err("port \"0\" must be > 0".into()));
        let odd = stream(1, &[("streamType", "video"), ("port", "80")]);
        assert_eq!(
            check_stream(&odd),
            Err("invalid stream type \"video\"".into())
        );
    }

    #[test]
    fn old_clients_get_request_ids_from_stream_ids() {
        let error = stream(5, &[("streamType", "error"), ("port", "80")]);
        let data = stream(7, &[("streamType", "data"), ("port", "80")]);
        assert_eq!(request_id(&error, "error"), "5");
        assert_eq!(request_id(&data, "data"), "5");
        let named = stream(
            9,
            &[("streamType", "data"), ("port", "80"), ("requestID", "3")],
        );
        assert_eq!(request_id(&named, "data"), "3");
    }
}
