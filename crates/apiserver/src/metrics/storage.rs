//! The store's commit latency (`everynode_storage_commit_duration_seconds`, by operation) and
//! size (`apiserver_storage_size_bytes`), measured by wrapping whichever backend the server
//! runs on, so each backend is measured the same way.

use bytes::Bytes;
use everynode_metrics::{register, short_histogram};
use everynode_store::{KeyValue, ListPage, Result, Revision, Store, WatchStream};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::{Arc, LazyLock};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone)]
struct ShortBuckets;

impl MetricConstructor<Histogram> for ShortBuckets {
    fn new_metric(&self) -> Histogram {
        short_histogram()
    }
}

struct StorageMetrics {
    commits: Family<OperationLabels, Histogram, ShortBuckets>,
    size: Gauge,
}

static METRICS: LazyLock<StorageMetrics> = LazyLock::new(|| StorageMetrics {
    commits: register(
        "everynode_storage_commit_duration_seconds",
        "Time from a write reaching the store to its durable commit, by operation (create, update, delete).",
        Family::new_with_constructor(ShortBuckets),
    ),
    size: register(
        "apiserver_storage_size_bytes",
        "Size of the storage database file physically allocated in bytes.",
        Gauge::default(),
    ),
});

/// Registers the families, so a scrape shows them before the first write.
pub fn init() {
    for operation in ["create", "update", "delete"] {
        let _ = METRICS
            .commits
            .get_or_create(&OperationLabels { operation });
    }
}

/// Reads the store's size into its gauge (at each scrape).
pub fn observe_size(store: &dyn Store) {
    if let Some(bytes) = store.size_bytes() {
        METRICS.size.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

/// A store that times its writes.
pub struct Measured(pub Arc<dyn Store>);

async fn timed<T>(operation: &'static str, write: impl Future<Output = Result<T>>) -> Result<T> {
    let started = tokio::time::Instant::now();
    let result = write.await;
    METRICS
        .commits
        .get_or_create(&OperationLabels { operation })
        .observe(started.elapsed().as_secs_f64());
    result
}

#[async_trait::async_trait]
impl Store for Measured {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.0.get(key).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        self.0.list(prefix, start_after, limit).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        timed("create", self.0.create(key, value)).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        timed("update", self.0.update(key, value, expected)).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        timed("delete", self.0.delete(key, expected)).await
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.0.watch(prefix, after)
    }

    fn current_revision(&self) -> Revision {
        self.0.current_revision()
    }

    async fn latest_revision(&self) -> everynode_store::Result<Revision> {
        self.0.latest_revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.0.compact(revision).await
    }

    fn size_bytes(&self) -> Option<u64> {
        self.0.size_bytes()
    }
}
