//! GET of a collection: a list, served from the watch cache, paged by `limit` and `continue`.

use crate::error::{ApiError, ApiResult};
use crate::object::parse_rv;
use crate::registry::Registry;
use crate::request::ResourcePath;
use crate::request::options::{ListOptions, ResourceVersionMatch};
use crate::response;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use everynode_api::table::table;
use serde_json::{Value, json};
use std::sync::Arc;

/// The objects a list, watch or collection delete addresses: the path's resource and
/// namespace, narrowed by the label and field selectors.
pub fn filter(path: &ResourcePath, options: &ListOptions) -> ApiResult<crate::cache::Filter> {
    Ok(Registry::filter(
        path.res,
        path.namespace(),
        options.labels()?,
        options.fields(path.res)?,
    ))
}

/// A continue token: where the next page starts. Opaque to clients, as upstream's.
pub fn encode_continue(rev: u64, after: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": after});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.to_string())
}

/// The key a continue token starts after; a token that is not one is a 400, as upstream's.
pub fn decode_continue(token: &str) -> ApiResult<String> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    v.get("start")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(bad)
}

pub async fn handle(
    registry: &Arc<Registry>,
    path: &ResourcePath,
    options: &ListOptions,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let res = path.res;
    let filter = filter(path, options)?;
    let limit = options.limit.unwrap_or(0).max(0) as usize;
    let continue_after = options
        .continue_token
        .as_deref()
        .map(decode_continue)
        .transpose()?;
    let cache_wait = registry.options.cache_wait;
    match (
        options.resource_version.as_deref(),
        options.resource_version_match,
    ) {
        (Some("0"), _) if continue_after.is_none() => {}
        (None, _) => {
            registry.fresh_cache().await?;
        }
        (Some(rv), matching) => {
            let rev = parse_rv(rv).map_err(ApiError::bad_request)?;
            registry
                .cache
                .wait_for(rev, cache_wait)
                .await
                .map_err(|e| ApiError::timeout(e.to_string()))?;
            if matching == ResourceVersionMatch::Exact && registry.cache.revision() != rev {
                return Err(ApiError::gone(format!(
                    "too old resource version: {rev} ({})",
                    registry.cache.revision()
                )));
            }
        }
    }
    let page = registry
        .cache
        .list(&filter, continue_after.as_deref(), limit);
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(after) = &page.continue_after {
        metadata["continue"] = json!(encode_continue(page.revision, after));
    }
    if let Some(include) = response::table_request(headers, options.include_object) {
        let objects: Vec<Value> = page
            .items
            .iter()
            .filter_map(|o| serde_json::from_slice(&o.json).ok())
            .collect();
        return Ok(response::ok(&table(
            res,
            &objects,
            metadata,
            registry.clock.now(),
            include,
        )));
    }
    // Items are spliced in as the cache holds them, already serialized.
    let head =
        json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": metadata});
    let mut out = serde_json::to_vec(&head).unwrap_or_default();
    out.pop();
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&item.json);
    }
    out.extend_from_slice(b"]}");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response())
}
