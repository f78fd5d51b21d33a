//! The process's Prometheus registry.
//!
//! Each component keeps its metrics in a `LazyLock` static registered here on first use, and
//! calls its `init()` at start so its families appear in a scrape before anything happened.
//! `/metrics` (the API server's, the agent's) encodes this registry in the Prometheus text format
//! (0.0.4), as upstream's components serve it, plus whatever per-scrape collectors the caller
//! adds (the kube-state-metrics view of the cluster is computed at scrape time).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use std::sync::{LazyLock, Mutex, PoisonError};

pub use prometheus_client;

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

/// Registers `metric` under `name` (a counter's `_total` is added by the encoder) and returns it.
/// The registry ends each help text with a period, so one given is dropped.
pub fn register<M: Metric + Clone>(name: &str, help: &str, metric: M) -> M {
    REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .register(name, help.trim_end_matches('.'), metric.clone());
    metric
}

/// Upstream's request-latency buckets (`apiserver_request_duration_seconds`).
pub const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// Buckets for short operations: a store commit, a controller's pass, a scheduling attempt
/// (1 ms to about 16 s, doubling).
pub const SHORT_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

/// A histogram with upstream's request buckets (a `fn`, as `Family` wants a constructor).
pub fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS.iter().copied())
}

/// A histogram with the short buckets.
pub fn short_histogram() -> Histogram {
    Histogram::new(SHORT_BUCKETS.iter().copied())
}

/// Writes the registry's metrics, then those of `collectors`, in the Prometheus text format,
/// to `out` as they are encoded (a scrape of tens of MB need not be held whole).
pub fn encode_to<W: std::fmt::Write>(
    out: &mut W,
    collectors: Vec<Box<dyn Collector>>,
) -> Result<(), std::fmt::Error> {
    {
        let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        prometheus_text::encode(out, &registry)?;
    }
    if !collectors.is_empty() {
        let mut scrape = Registry::default();
        for collector in collectors {
            scrape.register_collector(collector);
        }
        prometheus_text::encode(out, &scrape)?;
    }
    Ok(())
}

/// The registry's metrics, then those of `collectors`, in the Prometheus text format.
pub fn encode(collectors: Vec<Box<dyn Collector>>) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    encode_to(&mut text, collectors)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn a_registered_counter_is_encoded_with_its_total_suffix() {
        let counter = register(
            "everynode_test_things",
            "Things counted.",
            Counter::<u64>::default(),
        );
        counter.inc();
        let text = encode(Vec::new()).expect("encode");
        assert!(
            text.contains("# TYPE everynode_test_things_total counter"),
            "{text}"
        );
        assert!(text.contains("everynode_test_things_total 1"), "{text}");
    }
}
