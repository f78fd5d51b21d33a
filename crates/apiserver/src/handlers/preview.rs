//! `POST .../daemonsets/{name}/preview` (beyond.md §7.2): what applying the DaemonSet in the body
//! would do, node by node, and the rolling update's batches. The body goes through the same
//! decoding, defaulting, validation and admission as a create or an update (a dry run of
//! whichever applies), so it gets the same 422s; nothing is written.

use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::registry::{Registry, UpdateMode, Write};
use crate::request::ResourcePath;
use crate::request::options::CreateOptions;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use k8s_openapi::api::apps::v1::DaemonSet;
use serde_json::{Value, json};
use std::sync::Arc;

fn typed(v: Value) -> ApiResult<DaemonSet> {
    serde_json::from_value(v)
        .map_err(|e| ApiError::internal(format!("DaemonSet does not decode: {e}")))
}

fn hash(ds: &DaemonSet) -> String {
    let template = ds.spec.clone().unwrap_or_default().template;
    let collision = ds.status.as_ref().and_then(|s| s.collision_count);
    everynode_api::daemonset::template_hash(&template, collision)
}

pub async fn handle(
    registry: &Arc<Registry>,
    path: &ResourcePath,
    name: &str,
    options: &CreateOptions,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let res = path.res;
    let namespace = path.namespace().unwrap_or("default");
    let written = body::written_object(path, headers, body, options)?;
    let mut object = written.object;
    match object["metadata"]["name"].as_str() {
        None | Some("") => object["metadata"]["name"] = json!(name),
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        Some(_) => {}
    }
    registry.fresh_cache().await?;
    let existing = match registry.get(res, Some(namespace), name, false).await {
        Ok(v) => Some(typed(v)?),
        Err(e) if e.code == axum::http::StatusCode::NOT_FOUND => None,
        Err(e) => return Err(e),
    };
    let manager = Some(written.manager.as_str());
    let new = match &existing {
        Some(current) => {
            // `kubectl apply` keeps annotations others set (a pause, a partition); so does
            // the preview of one: stored annotations the body does not mention stay.
            for (k, v) in current.metadata.annotations.iter().flatten() {
                if object["metadata"]["annotations"].get(k).is_none() {
                    if !object["metadata"]["annotations"].is_object() {
                        object["metadata"]["annotations"] = json!({});
                    }
                    object["metadata"]["annotations"][k] = json!(v);
                }
            }
            let write = Write {
                res,
                namespace: Some(namespace),
                name,
                mode: UpdateMode::Main,
                dry_run: true,
                manager,
            };
            registry.replace(&write, object).await?.0
        }
        None => {
            registry
                .create(res, Some(namespace), object, true, manager)
                .await?
        }
    };
    let new = typed(new)?;
    let pods = existing
        .as_ref()
        .map(|ds| super::placement::owned_pods(registry, ds))
        .unwrap_or_default();
    let nodes = super::placement::nodes(registry);
    let current_hash = existing.as_ref().map(hash);
    let preview =
        everynode_api::preview::preview(&new, current_hash.as_deref(), &hash(&new), &nodes, &pods);
    let mut body = serde_json::to_value(&preview)
        .map_err(|e| ApiError::internal(format!("preview does not encode: {e}")))?;
    body["apiVersion"] = json!(super::placement::API_VERSION);
    body["kind"] = json!("DaemonSetPreview");
    body["metadata"] = json!({"name": name, "namespace": namespace});
    Ok(crate::response::ok(&body))
}
