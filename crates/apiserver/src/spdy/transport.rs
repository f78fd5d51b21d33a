//! The two carriers of a SPDY connection: an HTTP/1.1 connection upgraded to `SPDY/3.1`, and a
//! WebSocket whose binary messages carry it (`SPDY/3.1+<protocol>`, kubectl ≥ 1.31's
//! port-forward).

use super::session::{self, IncomingStream};
use axum::extract::ws::{Message, WebSocket};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode};
use bytes::Bytes;
use futures::{SinkExt, StreamExt, TryStreamExt};
use hyper_util::rt::TokioIo;
use std::io;
use tokio::sync::mpsc;
use tokio_util::codec::{BytesCodec, FramedRead, FramedWrite};

/// The `Upgrade` token of a SPDY request.
pub const SPDY_31: &str = "SPDY/3.1";
/// What prefixes a sub-protocol tunnelled in a WebSocket.
pub const TUNNEL_PREFIX: &str = "SPDY/3.1+";
const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// Whether the request asks to upgrade to SPDY/3.1.
pub fn wants_spdy(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(SPDY_31))
}

/// The stream protocols the client offers in `X-Stream-Protocol-Version`, in its order.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Upstream's handshake: the client's first protocol the server accepts, or upstream's 403
/// message naming both lists.
pub fn negotiate(headers: &HeaderMap, accepted: &[&'static str]) -> Result<&'static str, String> {
    let offered = offered_protocols(headers);
    offered
        .iter()
        .find_map(|p| accepted.iter().find(|a| **a == p.as_str()).copied())
        .ok_or_else(|| {
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports [{}], server accepts [{}]",
                offered.join(" "),
                accepted.join(" ")
            )
        })
}

/// The `101 Switching Protocols` answer to a SPDY upgrade with `protocol`.
pub fn switching_protocols(protocol: &'static str) -> axum::response::Response {
    let mut response = Response::new(axum::body::Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    headers.insert(
        axum::http::header::UPGRADE,
        HeaderValue::from_static(SPDY_31),
    );
    headers.insert(PROTOCOL_HEADER, HeaderValue::from_static(protocol));
    response
}

/// Serves SPDY on an upgraded HTTP/1.1 connection.
pub fn over_upgraded(upgraded: hyper::upgrade::Upgraded) -> mpsc::Receiver<IncomingStream> {
    let (read, write) = tokio::io::split(TokioIo::new(upgraded));
    let input = FramedRead::new(read, BytesCodec::new()).map_ok(bytes::BytesMut::freeze);
    let output = FramedWrite::new(write, BytesCodec::new());
    session::serve(input, output)
}

/// Serves SPDY tunnelled in a WebSocket: each binary message carries bytes of the connection.
pub fn over_websocket(socket: WebSocket) -> mpsc::Receiver<IncomingStream> {
    let (sink, stream) = socket.split();
    let input = stream
        .take_while(|m| std::future::ready(matches!(m, Ok(m) if !matches!(m, Message::Close(_)))))
        .filter_map(|m| {
            std::future::ready(match m {
                Ok(Message::Binary(bytes)) => Some(Ok(bytes)),
                _ => None,
            })
        });
    let output = sink
        .sink_map_err(io::Error::other)
        .with(|bytes: Bytes| std::future::ready(Ok::<_, io::Error>(Message::Binary(bytes))));
    session::serve(input, Box::pin(output))
}
