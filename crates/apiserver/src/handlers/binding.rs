//! POST `pods/{name}/binding`: bind a pod to a node (the scheduler's write).

use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use crate::request::ResourcePath;
use crate::request::options::CreateOptions;
use crate::response;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn handle(
    registry: &Arc<Registry>,
    path: &ResourcePath,
    name: &str,
    options: &CreateOptions,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let binding = body::object(headers, body)?;
    let target = binding
        .get("target")
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if target.is_empty() {
        return Err(ApiError::bad_request("binding target name is required"));
    }
    registry
        .bind(
            path.namespace().unwrap_or("default"),
            name,
            target,
            options.dry_run,
        )
        .await?;
    Ok(response::json(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}
