//! POST to a collection: create an object.

use crate::body;
use crate::error::ApiResult;
use crate::registry::Registry;
use crate::request::ResourcePath;
use crate::request::options::CreateOptions;
use crate::response;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::Arc;

pub async fn handle(
    registry: &Arc<Registry>,
    path: &ResourcePath,
    options: &CreateOptions,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let written = body::written_object(path, headers, body, options)?;
    let obj = registry
        .create(
            path.res,
            path.namespace(),
            written.object,
            options.dry_run,
            Some(&written.manager),
        )
        .await?;
    Ok(response::with_warnings(
        response::json(StatusCode::CREATED, &obj),
        &written.warnings,
    ))
}
