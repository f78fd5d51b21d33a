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
    // Heavy lists wait for their turn among users' heavy reads (crate::fairness).
    let seats = match heavy_read_seats(registry, page.items.len()).await {
        Ok(seats) => seats,
        Err(refused) => {
            tracing::debug!(error = %refused, "heavy list refused");
            return Ok(crate::inflight::too_many_saying(
                "Too many requests, please try again later.",
            ));
        }
    };
    if let Some(include) = response::table_request(headers, options.include_object) {
        let objects: Vec<Value> = page
            .items
            .iter()
            .filter_map(|o| serde_json::from_slice(&o.json).ok())
            .collect();
        let mut response = response::ok(&table(
            res,
            &objects,
            metadata,
            registry.clock.now(),
            include,
        ));
        if let Some(seats) = seats {
            let body = std::mem::take(response.body_mut());
            *response.body_mut() = sliced(body, seats).await;
        }
        return Ok(response);
    }
    // Items are spliced in as the cache holds them, already serialized.
    let head =
        json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": metadata});
    let mut head = serde_json::to_vec(&head).unwrap_or_default();
    head.pop();
    head.extend_from_slice(b",\"items\":[");
    let size: usize = page.items.iter().map(|i| i.json.len() + 1).sum::<usize>() + head.len();
    let body = if size <= SLICE_BYTES {
        let mut out = head;
        for (i, item) in page.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&item.json);
        }
        out.extend_from_slice(b"]}");
        axum::body::Body::from(out)
    } else {
        axum::body::Body::from_stream(ItemSlices {
            head: Some(head),
            items: page.items,
            next: 0,
            done: false,
            yield_next: false,
            _seats: seats,
        })
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// How much of a big response is written in one turn of its connection's task: small enough
/// that a short request waiting for a CPU is not held up by one list's megabytes being
/// encrypted at once.
const SLICE_BYTES: usize = 64 * 1024;

/// Seats for a list of `objects` objects by the request's user, or none when the list is
/// light or the user exempt (`system:masters`, as upstream's exempt priority level).
async fn heavy_read_seats(
    registry: &Registry,
    objects: usize,
) -> Result<Option<crate::fairness::Seats>, crate::fairness::Refused> {
    let width = crate::fairness::width(objects);
    if width <= 1 {
        return Ok(None);
    }
    let Ok(user) = crate::authn::REQUEST_USER.try_with(Clone::clone) else {
        return Ok(None);
    };
    if user
        .groups
        .iter()
        .any(|g| g == crate::authn::SYSTEM_MASTERS)
    {
        return Ok(None);
    }
    registry
        .fair_seats
        .acquire(&user.name, width)
        .await
        .map(Some)
}

/// The list's JSON in slices of about `SLICE_BYTES`, made as they are written, with a yield to
/// the scheduler between slices; the seats go back when the last slice is out (or the client
/// goes away).
struct ItemSlices {
    head: Option<Vec<u8>>,
    items: Vec<Arc<crate::cache::CachedObject>>,
    next: usize,
    done: bool,
    yield_next: bool,
    _seats: Option<crate::fairness::Seats>,
}

impl futures::Stream for ItemSlices {
    type Item = Result<bytes::Bytes, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.done {
            return Poll::Ready(None);
        }
        if self.yield_next {
            self.yield_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut out = self.head.take().unwrap_or_default();
        while out.len() < SLICE_BYTES && self.next < self.items.len() {
            if self.next > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&self.items[self.next].json);
            self.next += 1;
        }
        if self.next >= self.items.len() {
            out.extend_from_slice(b"]}");
            self.done = true;
        }
        self.yield_next = true;
        Poll::Ready(Some(Ok(bytes::Bytes::from(out))))
    }
}

/// A body already made, written in slices as `ItemSlices` writes its items, holding the seats
/// until it is out.
async fn sliced(body: axum::body::Body, seats: crate::fairness::Seats) -> axum::body::Body {
    let Ok(data) = axum::body::to_bytes(body, usize::MAX).await else {
        return axum::body::Body::empty();
    };
    axum::body::Body::from_stream(Sliced {
        data,
        yield_next: false,
        _seats: seats,
    })
}

struct Sliced {
    data: bytes::Bytes,
    yield_next: bool,
    _seats: crate::fairness::Seats,
}

impl futures::Stream for Sliced {
    type Item = Result<bytes::Bytes, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        if self.yield_next {
            self.yield_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = self.data.len().min(SLICE_BYTES);
        let slice = self.data.split_to(n);
        self.yield_next = true;
        Poll::Ready(Some(Ok(slice)))
    }
}
