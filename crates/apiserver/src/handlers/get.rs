//! GET of one object (or its status, which is the same object).

use crate::error::ApiResult;
use crate::registry::Registry;
use crate::request::ResourcePath;
use crate::request::options::GetOptions;
use crate::response;
use axum::http::HeaderMap;
use axum::response::Response;
use everynode_api::table::table;
use serde_json::json;
use std::sync::Arc;

pub async fn handle(
    registry: &Arc<Registry>,
    path: &ResourcePath,
    name: &str,
    options: &GetOptions,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let obj = registry
        .get(path.res, path.namespace(), name, options.any_version())
        .await?;
    Ok(
        match response::table_request(headers, options.include_object) {
            Some(include) => {
                let rv = obj["metadata"]["resourceVersion"].clone();
                response::ok(&table(
                    path.res,
                    std::slice::from_ref(&obj),
                    json!({"resourceVersion": rv}),
                    registry.clock.now(),
                    include,
                ))
            }
            None => response::ok(&obj),
        },
    )
}
