//! `GET /everynode/snapshot`: every stored object at one revision, for `everynode backup`.
//! A non-resource URL, so only those granted `get` on it (cluster-admin) may read it: it holds
//! every Secret. One JSON document per line: a header naming the format and the revision, then
//! each object's key, revisions and stored JSON (without `resourceVersion`, as stored).

use crate::error::ApiError;
use crate::registry::Registry;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The format's name, checked by `everynode restore`.
pub const FORMAT: &str = "everynode-snapshot/v1";

pub async fn serve(State(api): State<Arc<Registry>>) -> Response {
    let page = match api.store.list("/", None, 0).await {
        Ok(page) => page,
        Err(e) => return ApiError::storage(e).into_response(),
    };
    let mut out = Vec::with_capacity(page.items.iter().map(|kv| kv.value.len() + 128).sum());
    let header = serde_json::json!({"format": FORMAT, "revision": page.revision, "objects": page.items.len()});
    out.extend_from_slice(header.to_string().as_bytes());
    out.push(b'\n');
    for kv in &page.items {
        let head = serde_json::json!({
            "key": kv.key,
            "createRevision": kv.create_revision,
            "modRevision": kv.mod_revision,
        })
        .to_string();
        // The stored value is a JSON object already: spliced in, not re-encoded.
        out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
        out.extend_from_slice(b",\"value\":");
        out.extend_from_slice(&kv.value);
        out.extend_from_slice(b"}\n");
    }
    let mut response = Body::from(out).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jsonl"),
    );
    response
}
