//! PUT `namespaces/{name}/finalize`: set a namespace's `spec.finalizers`.

use crate::body;
use crate::error::ApiResult;
use crate::registry::{Registry, Write};
use crate::request::options::UpdateOptions;
use crate::response;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use everynode_api::registry::{Kind, by_kind};
use serde_json::json;
use std::sync::Arc;

pub async fn handle(
    registry: &Arc<Registry>,
    name: &str,
    options: &UpdateOptions,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let body = body::object(headers, body)?;
    let wanted = body
        .get("spec")
        .and_then(|s| s.get("finalizers"))
        .cloned()
        .unwrap_or(json!([]));
    let write = Write {
        dry_run: options.dry_run,
        ..Write::system(by_kind(Kind::Namespace), None, name)
    };
    let obj = registry
        .update_with(&write, &move |current| {
            let mut new = current.clone();
            new["spec"]["finalizers"] = wanted.clone();
            Ok(new)
        })
        .await?;
    Ok(response::ok(&obj))
}
