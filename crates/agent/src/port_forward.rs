//! `GET /portForward/{namespace}/{pod}?port=N`: one forwarded connection, for the API server,
//! which speaks kubectl's SPDY streams and opens one of these per connection kubectl forwards.
//! The pod's port is dialled before the upgrade, so a refusal comes back as an HTTP error whose
//! text the API server passes to kubectl. Binary messages carry the bytes; an empty one from the
//! server ends what it sends (the TCP write side is shut), and the agent closes the WebSocket
//! when the pod's side of the connection ends.

use crate::endpoint::Workloads;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The WebSocket sub-protocol between the API server and the agent.
pub const PROTOCOL: &str = "v1.portforward.everynode.io";

/// The port a request names, as kubelet validates it.
fn port_of(query: Option<&str>) -> Result<u16, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
    let text = pairs
        .iter()
        .find(|(k, _)| k == "port")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| "\"port\" is required".to_owned())?;
    match text.parse::<u16>() {
        Ok(0) => Err(format!("port {text:?} must be > 0")),
        Ok(port) => Ok(port),
        Err(e) => Err(format!("unable to parse {text:?} as a port: {e}")),
    }
}

pub async fn port_forward(
    State(workloads): State<Workloads>,
    Path((namespace, pod)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    let port = match port_of(query.as_deref()) {
        Ok(port) => port,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let Some((_, uid, _)) = crate::logs::pod_log_dir(&workloads.state_dirs, &namespace, &pod)
    else {
        return (
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} is not on this node"),
        )
            .into_response();
    };
    match workloads.runtime.port_forward(&uid, port).await {
        Ok(tcp) => upgrade
            .protocols([PROTOCOL])
            .on_upgrade(move |socket| pump(socket, tcp)),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

async fn pump(socket: WebSocket, tcp: TcpStream) {
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let (mut sink, mut incoming) = socket.split();
    let to_pod_side = async {
        while let Some(Ok(message)) = incoming.next().await {
            let bytes = match message {
                Message::Binary(bytes) => bytes,
                Message::Close(_) => break,
                _ => continue,
            };
            if bytes.is_empty() {
                let _ = to_pod.shutdown().await;
            } else if to_pod.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    let from_pod_side = async {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n @ 1..) = from_pod.read(&mut buf).await {
            if sink
                .send(Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n])))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = sink
            .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                code: axum::extract::ws::close_code::NORMAL,
                reason: "".into(),
            })))
            .await;
    };
    tokio::select! {
        () = from_pod_side => {}
        () = to_pod_side => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_checked_as_kubelet_checks_them() {
        assert_eq!(port_of(Some("port=8080")), Ok(8080));
        assert_eq!(port_of(None), Err("\"port\" is required".into()));
        assert_eq!(
            port_of(Some("port=0")),
            Err("port \"0\" must be > 0".into())
        );
        assert!(
            port_of(Some("port=70000"))
                .expect_err("an error")
                .starts_with("unable to parse \"70000\"")
        );
    }
}
