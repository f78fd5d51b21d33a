//! GET of a collection with `watch`: a stream of events from the watch cache.

use crate::error::{ApiError, ApiResult};
use crate::object::parse_rv;
use crate::registry::Registry;
use crate::request::ResourcePath;
use crate::request::options::ListOptions;
use crate::response;
use crate::watch::{self, WatchParams};
use axum::http::HeaderMap;
use axum::response::Response;
use everynode_api::table::table;
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn handle(
    registry: &Arc<Registry>,
    path: &ResourcePath,
    options: &ListOptions,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let res = path.res;
    let filter = super::list::filter(path, options)?;
    let after = match options.resource_version.as_deref() {
        None | Some("0") => None,
        Some(rv) => Some(parse_rv(rv).map_err(ApiError::bad_request)?),
    };
    let as_table = response::table_request(headers, options.include_object);
    let params = WatchParams {
        filter,
        after,
        bookmarks: options.allow_watch_bookmarks,
        initial_events_end: options.send_initial_events,
        timeout: options.watch_timeout(),
        render: as_table.map(|include| {
            let clock = Arc::clone(&registry.clock);
            let render: watch::Render = Arc::new(move |json: &[u8]| {
                let obj: Value = serde_json::from_slice(json).unwrap_or(Value::Null);
                let rv = obj["metadata"]["resourceVersion"].clone();
                serde_json::to_vec(&table(
                    res,
                    &[obj],
                    json!({"resourceVersion": rv}),
                    clock.now(),
                    include,
                ))
                .unwrap_or_default()
                .into()
            });
            render
        }),
    };
    watch::serve(registry, res, params).await
}
