//! One `kube::Client` over several API servers (`agent --server URL1,URL2,...`): requests go to
//! the server that answered last; when it cannot be reached they go to the next, and that one
//! is used from then on. Watches that break are resumed by their callers (kube-runtime's
//! watchers) from the last resourceVersion, which on a shared store (etcd) every server
//! understands, so no pod restarts because a server went away.
//!
//! A read (GET, a list or a watch) is retried on the next server after any transport error. A
//! write is retried only when the connection was refused, so the server never saw it: a write
//! that may have reached a server that then failed is left to the caller, as client-go leaves
//! it.
//!
//! A server that hangs (stopped, or cut off without a reset) answers nothing rather than
//! refusing: a request other than a watch that has no answer in `REQUEST_TIMEOUT` counts as a
//! transport error, and a watch that sends nothing, not even a bookmark (every 30 s from
//! everynode), for `WATCH_IDLE` ends with an error, so its caller resumes it elsewhere.

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response};
use kube::client::Body;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The longest a request other than a watch waits for its answer's head.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// The longest a watch may send nothing.
const WATCH_IDLE: std::time::Duration = std::time::Duration::from_secs(75);

/// A response body; a watch's fails when no frame comes for `idle`.
pub struct IdleTimeout {
    inner: Body,
    idle: std::time::Duration,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for IdleTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(timer) = this.timer.as_mut() {
                    timer
                        .as_mut()
                        .reset(tokio::time::Instant::now() + this.idle);
                }
                Poll::Ready(frame.map(|f| f.map_err(BoxError::from)))
            }
            Poll::Pending => match this.timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Some(Err(
                    "the API server sent nothing on a watch for 75 s".into(),
                ))),
                _ => Poll::Pending,
            },
        }
    }
}

#[derive(Clone)]
pub struct Failover {
    servers: Arc<Vec<(String, kube::Client)>>,
    current: Arc<AtomicUsize>,
}

/// A client for each of `urls`, with `base`'s credentials and CA.
pub fn client(base: &kube::Config, urls: &[String]) -> Result<kube::Client, crate::Error> {
    let mut servers = Vec::with_capacity(urls.len());
    for url in urls {
        let mut config = base.clone();
        config.cluster_url = url
            .parse()
            .map_err(|e| crate::Error::Usage(format!("invalid server URL {url:?}: {e}")))?;
        let client = kube::Client::try_from(config)
            .map_err(|e| crate::Error::Startup(format!("a client for {url}: {e}")))?;
        servers.push((url.clone(), client));
    }
    let namespace = base.default_namespace.clone();
    let failover = Failover {
        servers: Arc::new(servers),
        current: Arc::new(AtomicUsize::new(0)),
    };
    Ok(kube::Client::new(failover, namespace))
}

/// Whether the error says the connection was never made (so the request was never sent).
fn refused(error: &kube::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            )
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Whether the server could not be reached or failed mid-answer (no HTTP status came back).
fn transport(error: &kube::Error) -> bool {
    matches!(error, kube::Error::HyperError(_) | kube::Error::Service(_))
}

fn rebuild(head: &http::request::Parts, body: Body) -> Request<Body> {
    let mut request = Request::new(body);
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = head.uri.clone();
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers.clone();
    request
}

/// No answer within `REQUEST_TIMEOUT`.
#[derive(Debug, thiserror::Error)]
#[error("the API server did not answer in 20 s")]
struct Hung;

/// Whether the request is a watch (answered as a stream for minutes).
fn is_watch(head: &http::request::Parts) -> bool {
    head.uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"))
}

/// Sends `request` on `client`: a watch's body fails when idle too long; other requests time
/// out waiting for their answer.
async fn send(
    client: &kube::Client,
    request: Request<Body>,
    watch: bool,
) -> Result<Response<IdleTimeout>, kube::Error> {
    // A watch's head comes at once too; only its body lasts.
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, client.send(request)).await {
        Ok(answer) => answer?,
        Err(_) => {
            return Err(kube::Error::Service(Box::new(Hung)));
        }
    };
    let (head, inner) = response.into_parts();
    let body = IdleTimeout {
        inner,
        idle: WATCH_IDLE,
        timer: watch.then(|| Box::pin(tokio::time::sleep(WATCH_IDLE))),
    };
    Ok(Response::from_parts(head, body))
}

impl tower::Service<Request<Body>> for Failover {
    type Response = Response<IdleTimeout>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<IdleTimeout>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (head, body) = request.into_parts();
            let read = head.method == Method::GET || head.method == Method::HEAD;
            let watch = is_watch(&head);
            let count = this.servers.len();
            let first = this.current.load(Ordering::Relaxed) % count.max(1);
            let mut last_error: Option<kube::Error> = None;
            for attempt in 0..count {
                let index = (first + attempt) % count;
                let (url, client) = &this.servers[index];
                // A body that cannot be replayed gets one attempt.
                let Some(copy) = body.try_clone() else {
                    return send(client, rebuild(&head, body), watch)
                        .await
                        .map_err(BoxError::from);
                };
                match send(client, rebuild(&head, copy), watch).await {
                    Ok(response) => {
                        if index != first {
                            this.current.store(index, Ordering::Relaxed);
                            tracing::warn!(server = %url, "failed over to another API server");
                        }
                        return Ok(response);
                    }
                    Err(e) if (read && transport(&e)) || refused(&e) => {
                        tracing::debug!(server = %url, error = %e, "API server unreachable");
                        last_error = Some(e);
                    }
                    Err(e) => {
                        // A server that hangs on a write is not retried (it may have seen
                        // it), but the next request goes elsewhere.
                        if matches!(&e, kube::Error::Service(inner) if inner.is::<Hung>()) {
                            this.current.store((index + 1) % count, Ordering::Relaxed);
                        }
                        return Err(e.into());
                    }
                }
            }
            Err(last_error
                .map(BoxError::from)
                .unwrap_or_else(|| "no API server to send to".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Body {
        Body::from(Bytes::new())
    }

    #[tokio::test]
    async fn a_refused_server_is_skipped_and_the_next_one_kept() {
        use tower::{Service, ServiceExt};
        // The first address refuses; the second answers as an API server would.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closed_url = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open_url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new().route(
            "/version",
            axum::routing::get(|| async { axum::Json(serde_json::json!({"gitVersion": "v1"})) }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base = kube::Config::new(closed_url.parse().expect("url"));
        let mut failover = Failover {
            servers: Arc::new(vec![
                (
                    closed_url.clone(),
                    kube::Client::try_from(base.clone()).expect("client"),
                ),
                (
                    open_url.clone(),
                    kube::Client::try_from(kube::Config::new(open_url.parse().expect("url")))
                        .expect("client"),
                ),
            ]),
            current: Arc::new(AtomicUsize::new(0)),
        };
        for _ in 0..2 {
            let request = Request::get("/version").body(empty()).expect("request");
            let response = failover
                .ready()
                .await
                .expect("ready")
                .call(request)
                .await
                .expect("answered by the second server");
            assert_eq!(response.status(), 200);
        }
        assert_eq!(failover.current.load(Ordering::Relaxed), 1, "kept");
    }
}
