//! DELETE of one object, or of every object a collection's selectors match.

use crate::error::ApiResult;
use crate::registry::{DeleteOptions, Deleted, Registry};
use crate::request::options::ListOptions;
use crate::request::{Query, ResourcePath};
use crate::response;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use everynode_api::registry::Kind;
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn handle(
    registry: &Arc<Registry>,
    path: &ResourcePath,
    name: &str,
    query: &Query,
    body: &Bytes,
) -> ApiResult<Response> {
    let res = path.res;
    let options = DeleteOptions::from_request(query, body)?;
    Ok(
        match registry
            .delete(res, path.namespace(), name, &options)
            .await?
        {
            Deleted::Now(obj) if res.id == Kind::Pod => response::ok(&obj),
            Deleted::Now(obj) => response::ok(&json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": res.group, "kind": res.plural, "uid": obj["metadata"]["uid"]}
            })),
            Deleted::Pending(obj) => response::ok(&obj),
        },
    )
}

pub async fn collection(
    registry: &Arc<Registry>,
    path: &ResourcePath,
    query: &Query,
    body: &Bytes,
) -> ApiResult<Response> {
    let res = path.res;
    let options = DeleteOptions::from_request(query, body)?;
    let selection: ListOptions = query.decode()?;
    let filter = super::list::filter(path, &selection)?;
    registry.fresh_cache().await?;
    let page = registry.cache.list(&filter, None, 0);
    let mut items = Vec::new();
    for obj in page.items {
        let v: Value = serde_json::from_slice(&obj.json).unwrap_or(Value::Null);
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let ns = v["metadata"]["namespace"].as_str().map(str::to_owned);
        match registry.delete(res, ns.as_deref(), &name, &options).await {
            Ok(Deleted::Now(o) | Deleted::Pending(o)) => items.push(o),
            // Gone meanwhile: someone else deleted it, which is what was asked.
            Err(e) if e.code == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    let rev = registry.store.current_revision();
    Ok(response::ok(
        &json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": {"resourceVersion": rev.to_string()}, "items": items}),
    ))
}
