//! `pods/{name}/exec` and `pods/{name}/attach`: checks the request as upstream does, then relays
//! a WebSocket between the client and the node agent's `/exec` or `/attach` (over the mutually
//! authenticated agent channel), message for message, in the stream protocol both ends speak
//! (`v5.channel.k8s.io`, which kubectl 1.30 and later ask for, or `v4.channel.k8s.io`).
//!
//! SPDY/3.1, which kubectl before 1.30 speaks for these, is served too (`v4.channel.k8s.io`):
//! its streams are mapped onto the same WebSocket to the agent (`exec_spdy`). Errors in the
//! request itself (no such pod or container, no command) are answered the same way for both.

use super::log::pick_container;
use super::node_agent::NodeAgent;
use super::upgrade::Upgrade;
use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use crate::spdy;
use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use everynode_api::registry;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message as AgentMessage;

/// The pod subresources served here (by routes of their own, being upgrades), for discovery
/// and the request metrics.
pub const SUBRESOURCES: &[(&str, &str)] = &[
    ("exec", "PodExecOptions"),
    ("attach", "PodAttachOptions"),
    ("portforward", "PodPortForwardOptions"),
];

use everynode_apimachinery::channel::{V4, V5};

/// Which of `exec` and `attach`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Exec,
    Attach,
}

impl Stream {
    fn path(self) -> &'static str {
        match self {
            Stream::Exec => "exec",
            Stream::Attach => "attach",
        }
    }
}

/// The protocol both the client and the agent speak: the client's first of ours.
fn negotiate(headers: &HeaderMap) -> Option<&'static str> {
    let offered: Vec<&str> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    offered
        .iter()
        .find_map(|p| [V5, V4].into_iter().find(|ours| ours == p))
}

fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Upstream's checks: the pod, its container, its node, a command, a running container.
fn check(pod: &Value, stream: Stream, pairs: &[(String, String)]) -> ApiResult<(String, String)> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let container = pick_container(pod, query_value(pairs, "container"))?;
    if stream == Stream::Exec && !pairs.iter().any(|(k, _)| k == "command") {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(ApiError::bad_request(format!(
            "cannot {} into a container in a completed pod; current phase is {phase}",
            stream.path()
        )));
    }
    let running = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .chain(pod["status"]["initContainerStatuses"].as_array())
        .flatten()
        .any(|s| s["name"] == container.as_str() && s["state"]["running"].is_object());
    if !running {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: container not found ({container:?})"
        )));
    }
    Ok((container, node.to_owned()))
}

/// Converts one message from the client for the agent; `None` for what is not relayed (pings
/// and pongs are each side's own).
fn to_agent(message: Message) -> Option<AgentMessage> {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    match message {
        Message::Binary(data) => Some(AgentMessage::Binary(data)),
        Message::Text(text) => Some(AgentMessage::text(text.as_str())),
        Message::Close(frame) => Some(AgentMessage::Close(frame.map(|f| CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        }))),
        Message::Ping(_) | Message::Pong(_) => None,
    }
}

/// The close keeps its code: clients read a normal closure (1000) as the end of the streams
/// and a close without one as an error.
fn to_client(message: AgentMessage) -> Option<Message> {
    match message {
        AgentMessage::Binary(data) => Some(Message::Binary(data)),
        AgentMessage::Text(text) => Some(Message::Text(text.as_str().into())),
        AgentMessage::Close(frame) => Some(Message::Close(frame.map(|f| {
            axum::extract::ws::CloseFrame {
                code: f.code.into(),
                reason: f.reason.as_str().into(),
            }
        }))),
        _ => None,
    }
}

/// Relays until either side closes.
async fn relay(client: WebSocket, agent: crate::agent_client::AgentSocket) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut agent_tx, mut agent_rx) = agent.split();
    let upstream = async {
        while let Some(Ok(message)) = client_rx.next().await {
            let Some(message) = to_agent(message) else {
                continue;
            };
            let closing = matches!(message, AgentMessage::Close(_));
            if agent_tx.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = agent_tx.close().await;
    };
    let downstream = async {
        while let Some(Ok(message)) = agent_rx.next().await {
            let Some(message) = to_client(message) else {
                continue;
            };
            let closing = matches!(message, Message::Close(_));
            if client_tx.send(message).await.is_err() || closing {
                break;
            }
        }
        // The agent's close may not reach here as a message (its closing handshake can end the
        // stream first): the session is over either way, and a close without a code is an
        // error to clients, so end it as a normal closure.
        let _ = client_tx
            .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                code: axum::extract::ws::close_code::NORMAL,
                reason: "".into(),
            })))
            .await;
    };
    // The session ends with the agent's close (after its status); a client that leaves first
    // closes the agent's side, which ends the command there.
    tokio::select! {
        () = downstream => {}
        () = upstream => {}
    }
}

/// The handler of both subresources: a WebSocket (`GET`) relayed message for message, or SPDY
/// (`POST`, kubectl before 1.30) whose streams `exec_spdy` maps onto the agent's WebSocket.
pub async fn serve(
    stream: Stream,
    api: Arc<Registry>,
    namespace: String,
    name: String,
    query: Option<String>,
    request: Request,
) -> Response {
    let pods = registry::find("", "v1", "pods");
    let pod = match pods {
        Some(pods) => api.get(pods, Some(&namespace), &name, false).await,
        None => Err(ApiError::no_route()),
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let checked = pod.and_then(|pod| check(&pod, stream, &pairs).map(|c| (pod, c)));
    let (_, (container, node_name)) = match checked {
        Ok(ok) => ok,
        Err(e) => return e.into_response(),
    };
    let (headers, upgrade) = super::upgrade::classify(request).await;
    // The client's protocol, and the one spoken with the agent: SPDY clients get v5 from the
    // agent, whose close of stdin their stdin stream's FIN becomes.
    let (client_protocol, agent_protocol) = match &upgrade {
        Upgrade::WebSocket(_) => match negotiate(&headers) {
            Some(protocol) => (protocol, protocol),
            None => {
                return ApiError::bad_request(format!(
                    "{} over WebSocket speaks {V5} or {V4}; the request offered neither",
                    stream.path()
                ))
                .into_response();
            }
        },
        Upgrade::Spdy(_) => match spdy::transport::negotiate(&headers, &[V4]) {
            Ok(protocol) => (protocol, V5),
            Err(message) => return ApiError::forbidden_message(message).into_response(),
        },
        Upgrade::None => {
            return ApiError::bad_request(format!(
                "{} needs a connection upgrade: WebSocket ({V5} or {V4}) or SPDY/3.1 ({V4})",
                stream.path()
            ))
            .into_response();
        }
    };
    let agent = match NodeAgent::of_node(api, &node_name, stream.path()).await {
        Ok(agent) => agent,
        Err(e) => return e.into_response(),
    };
    let path = format!(
        "/{}/{namespace}/{name}/{container}?{}",
        stream.path(),
        query.as_deref().unwrap_or("")
    );
    let socket = match agent.websocket(&path, agent_protocol).await {
        Ok(socket) => socket,
        Err(refusal) => return agent.refusal(refusal).into_response(),
    };
    match upgrade {
        Upgrade::WebSocket(ws) => ws
            .protocols([client_protocol])
            .on_upgrade(move |client| relay(client, socket)),
        Upgrade::Spdy(on_upgrade) => {
            let expected = super::exec_spdy::Expected::from_query(&pairs);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let streams = spdy::transport::over_upgraded(upgraded);
                    super::exec_spdy::relay(streams, socket, expected).await;
                }
            });
            spdy::transport::switching_protocols(client_protocol)
        }
        Upgrade::None => ApiError::no_route().into_response(),
    }
}

/// `GET|POST /api/v1/namespaces/{namespace}/pods/{name}/exec`.
pub async fn exec(
    State(api): State<Arc<Registry>>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    serve(Stream::Exec, api, namespace, name, query, request).await
}

/// `GET|POST /api/v1/namespaces/{namespace}/pods/{name}/attach`.
pub async fn attach(
    State(api): State<Arc<Registry>>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    serve(Stream::Attach, api, namespace, name, query, request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_clients_first_protocol_we_speak_is_chosen() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "sec-websocket-protocol",
            "v5.channel.k8s.io".parse().expect("value"),
        );
        assert_eq!(negotiate(&headers), Some(V5));
        headers.insert(
            "sec-websocket-protocol",
            "base64.channel.k8s.io, v4.channel.k8s.io"
                .parse()
                .expect("value"),
        );
        assert_eq!(negotiate(&headers), Some(V4));
        assert_eq!(negotiate(&HeaderMap::new()), None);
    }

    #[test]
    fn requests_are_checked_as_upstream_checks_them() {
        let pod = |phase: &str, running: bool| {
            json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n", "containers": [{"name": "c"}]},
                "status": {"phase": phase, "containerStatuses": [{"name": "c", "state": if running { json!({"running": {}}) } else { json!({"waiting": {}}) }}]}})
        };
        let command = vec![("command".to_owned(), "ls".to_owned())];
        assert_eq!(
            check(&pod("Running", true), Stream::Exec, &command).map_err(|e| e.message),
            Ok(("c".into(), "n".into()))
        );
        assert_eq!(
            check(&pod("Running", true), Stream::Exec, &[]).map_err(|e| e.message),
            Err("you must specify at least one command for the container".into())
        );
        assert_eq!(
            check(&pod("Succeeded", false), Stream::Exec, &command).map_err(|e| e.message),
            Err(
                "cannot exec into a container in a completed pod; current phase is Succeeded"
                    .into()
            )
        );
        assert_eq!(
            check(&pod("Running", false), Stream::Attach, &[]).map_err(|e| e.message),
            Err("unable to upgrade connection: container not found (\"c\")".into())
        );
        let missing = vec![
            ("container".to_owned(), "z".to_owned()),
            ("command".to_owned(), "ls".to_owned()),
        ];
        assert_eq!(
            check(&pod("Running", true), Stream::Exec, &missing).map_err(|e| e.message),
            Err("container z is not valid for pod p".into())
        );
    }
}
