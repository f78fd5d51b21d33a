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

use crate::error::ApiError;
use crate::registry::Registry;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
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

/// The handler.
pub async fn serve(State(api): State<Arc<Registry>>) -> Response {
    LONG_RUNNING
        .get_or_create(&LongRunningLabels {
            verb: "WATCH",
            component: "apiserver",
        })
        .set(api.cache.watcher_count() as i64);
    storage::observe_size(api.store.as_ref());
    // Decoding every pod and node is CPU work: off the async threads.
    let cache = Arc::clone(&api.cache);
    let text = tokio::task::spawn_blocking(move || {
        everynode_metrics::encode(vec![Box::new(cluster_state::collect(&cache))])
    })
    .await;
    match text {
        Ok(Ok(text)) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(everynode_metrics::CONTENT_TYPE),
            );
            response
        }
        Ok(Err(e)) => ApiError::internal(format!("encoding metrics: {e}")).into_response(),
        Err(e) => ApiError::internal(format!("gathering metrics: {e}")).into_response(),
    }
}
