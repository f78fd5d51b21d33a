//! `GET /metrics`: the process's metrics in the Prometheus text format, authorized like
//! upstream's (`get` on the non-resource URL `/metrics`; the `system:monitoring` role grants it).
//!
//! - `requests`: upstream's request counters, latencies and in-flight gauges;
//! - `storage`: the store's commit latency and size;
//! - `cluster_state`: DaemonSets, pods and nodes under kube-state-metrics' names, computed at
//!   scrape time;
//! - whatever else the process registered with `everynode_metrics` (the controllers' metrics,
//!   when they run in this process).

pub mod cluster_state;
pub mod requests;
pub mod storage;

use crate::registry::Registry;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use everynode_metrics::register;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::{Arc, LazyLock};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LongRunningLabels {
    verb: &'static str,
    component: &'static str,
}

static LONG_RUNNING: LazyLock<Family<LongRunningLabels, Gauge>> = LazyLock::new(|| {
    register(
        "apiserver_longrunning_requests",
        "Gauge of all active long-running apiserver requests broken out by verb.",
        Family::default(),
    )
});

/// Registers the server's families, so the first scrape shows them all.
pub fn init() {
    requests::init();
    storage::init();
    LazyLock::force(&LONG_RUNNING);
}

/// How much of a scrape is written to the connection at a time.
const CHUNK: usize = 64 * 1024;

/// Hands the text to the response body in chunks as it is encoded, so a scrape of tens of MB
/// holds a few chunks, not the whole text. A client that goes away stops the encoding.
struct Chunks {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: String,
    /// The server's runtime, for the send's timer.
    runtime: tokio::runtime::Handle,
}

/// How long a scrape waits for its client to take the next chunk before giving up, so a
/// client that stops reading cannot hold the scrape thread (and the scrapes queued behind it).
const CLIENT_STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Chunks {
    fn flush(&mut self) -> std::fmt::Result {
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            String::with_capacity(CHUNK),
        ));
        let tx = &self.tx;
        // Made inside `block_on`: the timer needs the runtime's context.
        let sent = self
            .runtime
            .block_on(async { tokio::time::timeout(CLIENT_STALL_LIMIT, tx.send(chunk)).await });
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(std::fmt::Error),
        }
    }
}

impl std::fmt::Write for Chunks {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.buf.push_str(s);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }
}

/// A scrape's encoding, run on the scrape thread.
type ScrapeJob = Box<dyn FnOnce() + Send>;

/// One long-lived thread encodes every scrape, one at a time: concurrent scrapers queue rather
/// than each holding the decoded cluster at once, and the allocator reuses that thread's memory
/// from one scrape to the next instead of spreading it over the blocking pool's threads.
static SCRAPE_THREAD: LazyLock<Option<std::sync::mpsc::Sender<ScrapeJob>>> = LazyLock::new(|| {
    let (tx, rx) = std::sync::mpsc::channel::<ScrapeJob>();
    std::thread::Builder::new()
        .name("metrics-scrape".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                // A scrape that panics ends that scrape's response, not the thread.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                    tracing::error!("a metrics scrape panicked");
                }
            }
        })
        .ok()
        .map(|_| tx)
});

/// The handler.
pub async fn serve(State(api): State<Arc<Registry>>) -> Response {
    LONG_RUNNING
        .get_or_create(&LongRunningLabels {
            verb: "WATCH",
            component: "apiserver",
        })
        .set(api.cache.watcher_count() as i64);
    storage::observe_size(api.store.as_ref());
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    // Decoding every pod and node and writing the text is CPU work: off the async threads.
    let cache = Arc::clone(&api.cache);
    let runtime = tokio::runtime::Handle::current();
    let job: ScrapeJob = Box::new(move || {
        let mut chunks = Chunks {
            tx,
            buf: String::with_capacity(CHUNK),
            runtime,
        };
        let state = cluster_state::collect(&cache);
        let written = everynode_metrics::encode_to(&mut chunks, vec![Box::new(state)]);
        if written.is_ok() {
            let _ = chunks.flush();
        } else {
            tracing::debug!("a scrape ended early (the client left, or encoding failed)");
        }
    });
    match SCRAPE_THREAD.as_ref() {
        Some(thread) => {
            if let Err(std::sync::mpsc::SendError(job)) = thread.send(job) {
                tokio::task::spawn_blocking(job);
            }
        }
        None => {
            tokio::task::spawn_blocking(job);
        }
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(everynode_metrics::CONTENT_TYPE),
    );
    response
}
