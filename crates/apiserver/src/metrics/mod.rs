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
}

impl Chunks {
    fn flush(&mut self) -> std::fmt::Result {
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            String::with_capacity(CHUNK),
        ));
        self.tx.blocking_send(chunk).map_err(|_| std::fmt::Error)
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
    tokio::task::spawn_blocking(move || {
        let mut chunks = Chunks {
            tx,
            buf: String::with_capacity(CHUNK),
        };
        let state = cluster_state::collect(&cache);
        let written = everynode_metrics::encode_to(&mut chunks, vec![Box::new(state)]);
        if written.is_ok() {
            let _ = chunks.flush();
        } else {
            tracing::debug!("a scrape ended early (the client left, or encoding failed)");
        }
    });
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
