//! Watch responses: one JSON event per line, streamed as the cache delivers them.

use crate::cache::{CacheError, Filter, WatchHandle};
use crate::error::{ApiError, ApiResult};
use crate::registry::Registry;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use everynode_api::registry::Resource;
use everynode_store::Revision;
use rand::Rng;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What the client asked of the watch.
pub struct WatchParams {
    pub filter: Filter,
    /// Replay after this revision; `None` starts with the current objects as ADDED.
    pub after: Option<Revision>,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: end the initial ADDED events with an annotated bookmark.
    pub initial_events_end: bool,
    pub timeout: Option<Duration>,
    /// Re-renders each object (as a Table, for `kubectl get -w`).
    pub render: Option<Render>,
}

/// Turns an object's JSON into what the watch sends instead.
pub type Render = Arc<dyn Fn(&[u8]) -> Bytes + Send + Sync>;

fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(object.len() + 32);
    b.put_slice(b"{\"type\":\"");
    b.put_slice(kind.as_bytes());
    b.put_slice(b"\",\"object\":");
    b.put_slice(object);
    b.put_slice(b"}\n");
    b.freeze()
}

fn bookmark_line(res: &Resource, revision: Revision, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": meta});
    event_line("BOOKMARK", &serde_json::to_vec(&obj).unwrap_or_default())
}

fn error_line(e: &ApiError) -> Bytes {
    event_line(
        "ERROR",
        &serde_json::to_vec(&e.to_status()).unwrap_or_default(),
    )
}

/// Open watches per user, so that one client cannot take the server's watch capacity from
/// everyone else.
#[derive(Debug, Default)]
pub struct WatchCounts(std::sync::Mutex<std::collections::HashMap<String, usize>>);

/// One open watch of a user; dropping it (the stream ending) gives the slot back.
pub struct WatchSlot {
    counts: Arc<WatchCounts>,
    user: String,
}

impl WatchCounts {
    /// A slot for `user`, unless it already holds `limit` (0: no limit).
    pub fn acquire(self: &Arc<Self>, user: &str, limit: usize) -> Option<WatchSlot> {
        let mut counts = match self.0.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let held = counts.entry(user.to_owned()).or_insert(0);
        if limit > 0 && *held >= limit {
            return None;
        }
        *held += 1;
        Some(WatchSlot {
            counts: Arc::clone(self),
            user: user.to_owned(),
        })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut counts = match self.counts.0.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(held) = counts.get_mut(&self.user) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

struct Stream {
    /// The user's watch slot, held as long as the stream.
    _slot: Option<WatchSlot>,
    handle: Option<WatchHandle>,
    res: &'static Resource,
    deadline: Instant,
    bookmark_every: Option<Duration>,
    next_bookmark: Instant,
    pending_initial_end: Option<usize>,
    last_sent: Revision,
    render: Option<Render>,
    /// Lines decided but not yet sent (a drained queue and its bookmark).
    pending: std::collections::VecDeque<Bytes>,
}

fn rendered_line(render: Option<&Render>, kind: &str, json: &[u8]) -> Bytes {
    match render {
        Some(render) => event_line(kind, &render(json)),
        None => event_line(kind, json),
    }
}

impl Stream {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(p) = self.pending.pop_front() {
            return Some(p);
        }
        let handle = self.handle.as_mut()?;
        if self.pending_initial_end == Some(0) {
            self.pending_initial_end = None;
            let rev = handle.dispatched_revision().max(self.last_sent);
            return Some(bookmark_line(self.res, rev, true));
        }
        let bookmark_at = self.bookmark_every.map(|_| self.next_bookmark);
        tokio::select! {
            item = handle.next() => {
                let (kind, obj) = item?;
                self.last_sent = self.last_sent.max(obj.revision);
                if let Some(n) = self.pending_initial_end.as_mut() { *n = n.saturating_sub(1); }
                Some(rendered_line(self.render.as_ref(), kind.as_str(), &obj.json))
            }
            () = tokio::time::sleep_until(self.deadline) => {
                self.handle = None;
                None
            }
            () = sleep_until_opt(bookmark_at) => {
                self.next_bookmark = Instant::now() + self.bookmark_every.unwrap_or(Duration::MAX / 4);
                // Every event up to `dispatched` is already queued for us: send the whole queue,
                // then the bookmark, so resuming from it can lose nothing.
                let dispatched = handle.dispatched_revision();
                while let Some((kind, obj)) = handle.try_next() {
                    self.last_sent = self.last_sent.max(obj.revision);
                    let line = rendered_line(self.render.as_ref(), kind.as_str(), &obj.json);
                    self.pending.push_back(line);
                }
                self.pending.push_back(bookmark_line(self.res, dispatched.max(self.last_sent), false));
                self.pending.pop_front()
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn streaming(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Starts a watch and returns the streaming response.
pub async fn serve(
    api: &Arc<Registry>,
    res: &'static Resource,
    params: WatchParams,
) -> ApiResult<Response> {
    match params.after {
        None => {
            api.fresh_cache().await?;
        }
        // A version the cache has not applied yet (the client's own write, say): wait for it,
        // as upstream does, so replaying from it neither misses nor repeats an event.
        Some(rev) if rev > api.cache.revision() => api
            .cache
            .wait_for(rev, api.options.cache_wait)
            .await
            .map_err(|e| ApiError::timeout(format!("Too large resource version: {e}")))?,
        Some(_) => {}
    }
    let user = crate::authn::REQUEST_USER.try_with(Clone::clone).ok();
    let slot = match user {
        Some(u) if !u.groups.iter().any(|g| g == crate::authn::SYSTEM_MASTERS) => {
            let limit = api.options.max_watches_per_user;
            match api.watch_counts.acquire(&u.name, limit) {
                Some(slot) => Some(slot),
                None => {
                    return Ok(crate::inflight::too_many_saying(&format!(
                        "Too many watches: user {:?} has {limit} open, the most one user may hold; close some or try again later.",
                        u.name
                    )));
                }
            }
        }
        _ => None,
    };
    let handle = match api.cache.watch(params.filter, params.after) {
        Ok(h) => h,
        Err(e @ CacheError::Gone { .. }) => {
            // Upstream establishes the watch and then reports the expiry as an ERROR event.
            let line = error_line(&ApiError::gone(e.to_string()));
            return Ok(streaming(Body::from(line)));
        }
        Err(e) => return Err(ApiError::timeout(e.to_string())),
    };
    // Upstream picks a random duration between the minimum request timeout and twice it.
    let timeout = params
        .timeout
        .unwrap_or_else(|| Duration::from_secs(rand::rng().random_range(1800..3600)));
    let initial = if params.initial_events_end && params.after.is_none() {
        Some(handle.initial_len())
    } else {
        None
    };
    let bookmark_every = params.bookmarks.then_some(api.options.bookmark_interval);
    let state = Stream {
        _slot: slot,
        handle: Some(handle),
        res,
        deadline: Instant::now() + timeout,
        bookmark_every,
        next_bookmark: Instant::now() + bookmark_every.unwrap_or(Duration::from_secs(3600)),
        pending_initial_end: initial,
        last_sent: 0,
        pending: std::collections::VecDeque::new(),
        render: params.render,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), s))
    });
    Ok(streaming(Body::from_stream(stream)))
}
