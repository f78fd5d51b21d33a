//! Serving the OpenAPI documents: `/openapi/v3` lists one URL per group-version with a content
//! hash, so clients (kubectl) can cache each document for as long as it is unchanged;
//! `/openapi/v2` is the whole Swagger 2.0 document, as JSON or as gnostic protobuf.

use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use everynode_apimachinery::openapi;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::OnceLock;

struct Document {
    path: String,
    hash: String,
    body: Vec<u8>,
}

/// FNV-1a 64: a stable fingerprint of a document, not a security measure.
fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016X}")
}

fn documents() -> &'static [Document] {
    static DOCS: OnceLock<Vec<Document>> = OnceLock::new();
    DOCS.get_or_init(|| {
        openapi::group_versions()
            .into_iter()
            .filter_map(|(path, group, version)| {
                let body =
                    serde_json::to_vec(&openapi::group_version_document(group, version)?).ok()?;
                Some(Document {
                    hash: fingerprint(&body),
                    path,
                    body,
                })
            })
            .collect()
    })
}

/// `GET /openapi/v3`.
pub async fn index() -> Response {
    let paths: Map<String, Value> = documents()
        .iter()
        .map(|d| {
            (
                d.path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{}?hash={}", d.path, d.hash)}),
            )
        })
        .collect();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"paths": paths}).to_string(),
    )
        .into_response()
}

/// `GET /openapi/v3/{group-version path}`.
pub async fn document(
    Path(path): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match documents().iter().find(|d| d.path == path) {
        Some(d) => {
            let cache = if q.get("hash") == Some(&d.hash) {
                "public, immutable"
            } else {
                "no-cache, private"
            };
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, cache),
                    (header::ETAG, &format!("\"{}\"", d.hash)),
                ],
                d.body.clone(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, crate::error::ApiError::no_route()).into_response(),
    }
}

/// `GET /openapi/v2`: protobuf when the client asks for it (kubectl before 1.27), else JSON.
pub async fn v2(headers: axum::http::HeaderMap) -> Response {
    static DOCS: OnceLock<(Vec<u8>, Vec<u8>, String)> = OnceLock::new();
    let (json_body, proto_body, hash) = DOCS.get_or_init(|| {
        let doc = everynode_apimachinery::openapi_v2::document();
        let json_body = serde_json::to_vec(&doc).unwrap_or_default();
        let hash = fingerprint(&json_body);
        (
            json_body,
            everynode_apimachinery::openapi_v2::encode_protobuf(&doc),
            hash,
        )
    });
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let protobuf = everynode_apimachinery::openapi_v2::PROTOBUF_MEDIA_TYPE;
    // The protobuf media type is not a valid Content-Type (Go's parser refuses its `@`), so,
    // as upstream, the bytes go out as an octet stream.
    let (content_type, body) = if accept.contains(protobuf) {
        ("application/octet-stream", proto_body.clone())
    } else {
        ("application/json", json_body.clone())
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::ETAG, &format!("\"{hash}\"")),
        ],
        body,
    )
        .into_response()
}
