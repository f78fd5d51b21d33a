//! Upstream's in-flight request limits (`--max-requests-inflight`, 400, and
//! `--max-mutating-requests-inflight`, 200): a request over its limit is answered at once with
//! 429 and `Retry-After: 1`, so a burst from one client sheds load instead of queueing behind
//! everyone else's requests. Long-running requests (watches, followed logs) hold no slot, as
//! upstream exempts them.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Upstream's defaults.
pub const DEFAULT_MAX_REQUESTS_INFLIGHT: usize = 400;
pub const DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT: usize = 200;
/// Watches one user may hold open at once (members of `system:masters` excepted): enough for
/// a fleet of agents or a console, not for one client to hold every watch the server can serve.
pub const DEFAULT_MAX_WATCHES_PER_USER: usize = 1000;

/// The slots for reads and for writes.
#[derive(Debug)]
pub struct InflightLimits {
    reads: Semaphore,
    writes: Semaphore,
}

impl InflightLimits {
    /// Limits of `max_reads` and `max_writes` requests; 0 means no limit, as upstream.
    pub fn new(max_reads: usize, max_writes: usize) -> Arc<Self> {
        let slots = |max: usize| {
            Semaphore::new(if max == 0 {
                Semaphore::MAX_PERMITS
            } else {
                max.min(Semaphore::MAX_PERMITS)
            })
        };
        Arc::new(InflightLimits {
            reads: slots(max_reads),
            writes: slots(max_writes),
        })
    }
}

/// Whether a request runs for as long as the client wants (a watch, a followed log): upstream
/// does not count those against the limits.
fn long_running(request: &Request) -> bool {
    let query = request.uri().query().unwrap_or("");
    let set = |name: &str| {
        query.split('&').any(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            k == name && v != "0" && !v.eq_ignore_ascii_case("false")
        })
    };
    set("watch") || (request.uri().path().ends_with("/log") && set("follow"))
}

/// 429 with upstream's Status and `Retry-After`.
fn too_many() -> Response {
    too_many_saying("Too many requests, please try again later.")
}

/// 429 with `message` and `Retry-After: 1`.
pub fn too_many_saying(message: &str) -> Response {
    let mut error = ApiError::too_many_requests(message);
    error.details = Some(json!({"retryAfterSeconds": 1}));
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The middleware: takes a slot for the request's kind, or answers 429.
pub async fn limit(
    State(limits): State<Arc<InflightLimits>>,
    request: Request,
    next: Next,
) -> Response {
    if long_running(&request) {
        return next.run(request).await;
    }
    let mutating = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let slots = if mutating {
        &limits.writes
    } else {
        &limits.reads
    };
    match slots.try_acquire() {
        Ok(_slot) => next.run(request).await,
        Err(_) => too_many(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use tokio::sync::Notify;
    use tower::ServiceExt;

    /// A router whose handlers wait on `release`, behind limits of one read and one write.
    fn app(release: Arc<Notify>) -> Router {
        let wait = move || {
            let release = Arc::clone(&release);
            async move {
                release.notified().await;
                "done"
            }
        };
        Router::new()
            .route("/r", get(wait.clone()).post(wait))
            .route("/w", post(|| async { "written" }))
            .layer(axum::middleware::from_fn_with_state(
                InflightLimits::new(1, 1),
                limit,
            ))
    }

    fn request(method: Method, uri: &str) -> Request {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("a request")
    }

    // Paused time: a request that waited for a slot instead of being refused would trip the
    // timeout at once, where real time would hang.
    #[tokio::test(start_paused = true)]
    async fn a_request_over_the_limit_is_refused_at_once_and_watches_are_exempt() {
        let release = Arc::new(Notify::new());
        let router = app(Arc::clone(&release));
        // One read holds the only read slot.
        let held = tokio::spawn(router.clone().oneshot(request(Method::GET, "/r")));
        tokio::task::yield_now().await;
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            router.clone().oneshot(request(Method::GET, "/r")),
        )
        .await
        .expect("answered at once, not queued behind the held slot")
        .expect("infallible");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        // Writes have slots of their own.
        let write = router
            .clone()
            .oneshot(request(Method::POST, "/w"))
            .await
            .expect("infallible");
        assert_eq!(write.status(), StatusCode::OK);
        // A watch holds no slot, so it is not refused.
        let watching = tokio::spawn(router.clone().oneshot(request(Method::GET, "/r?watch=1")));
        tokio::task::yield_now().await;
        release.notify_waiters();
        let held = held.await.expect("joined").expect("infallible");
        assert_eq!(held.status(), StatusCode::OK);
        release.notify_waiters();
        let watching = watching.await.expect("joined").expect("infallible");
        assert_eq!(watching.status(), StatusCode::OK);
        // The slot is free again.
        let again = tokio::spawn(router.clone().oneshot(request(Method::GET, "/r")));
        tokio::task::yield_now().await;
        release.notify_waiters();
        assert_eq!(
            again.await.expect("joined").expect("infallible").status(),
            StatusCode::OK
        );
    }
}
