//! Which connection upgrade a streaming request asks for: a WebSocket, SPDY/3.1, or none.

use crate::spdy::transport::wants_spdy;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request};
use axum::http::HeaderMap;

pub enum Upgrade {
    WebSocket(WebSocketUpgrade),
    Spdy(hyper::upgrade::OnUpgrade),
    None,
}

/// The request's headers and the upgrade it asks for (the body of an upgrade is not read).
pub async fn classify(request: Request) -> (HeaderMap, Upgrade) {
    let (mut parts, _body) = request.into_parts();
    let headers = parts.headers.clone();
    if wants_spdy(&headers) {
        return match parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
            Some(on_upgrade) => (headers, Upgrade::Spdy(on_upgrade)),
            None => (headers, Upgrade::None),
        };
    }
    match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => (headers, Upgrade::WebSocket(ws)),
        Err(_) => (headers, Upgrade::None),
    }
}
