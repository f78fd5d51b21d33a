//! What the server keeps of the agents' `/metrics/resource`: for each node and each pod's
//! containers, the last two readings of cumulative CPU time and the last working set, so CPU
//! is a rate over the window between two scrapes, as metrics-server computes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{PoisonError, RwLock};

/// One reading: cumulative CPU seconds and the working set, at `at` (wall time, seconds) as
/// seen by the scraper's monotonic clock (`seen`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    pub at: jiff::Timestamp,
    pub seen: std::time::Duration,
}

/// The last two readings of one thing measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pair {
    pub previous: Option<Reading>,
    pub latest: Option<Reading>,
}

/// A rate and a level over a window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// CPU in nanocores.
    pub nanocores: u64,
    pub memory_bytes: u64,
    /// When the window ended.
    pub timestamp: jiff::Timestamp,
    pub window: std::time::Duration,
}

impl Pair {
    fn push(&mut self, reading: Reading) {
        self.previous = self.latest.replace(reading);
    }

    /// The rate over the last window; `None` until there are two readings, or when the counter
    /// went back (the container restarted).
    pub fn point(&self) -> Option<Point> {
        let (previous, latest) = (self.previous?, self.latest?);
        let window = latest.seen.checked_sub(previous.seen)?;
        if window.is_zero() || latest.cpu_seconds < previous.cpu_seconds {
            return None;
        }
        let cores = (latest.cpu_seconds - previous.cpu_seconds) / window.as_secs_f64();
        Some(Point {
            nanocores: (cores * 1e9).round() as u64,
            memory_bytes: latest.memory_bytes,
            timestamp: latest.at,
            window,
        })
    }
}

/// Readings of one pod: its containers by name.
pub type PodReadings = BTreeMap<String, Pair>;

/// Everything measured, replaced node by node as scrapes come in.
#[derive(Debug, Default)]
pub struct UsageStore {
    nodes: RwLock<HashMap<String, Pair>>,
    /// (namespace, pod) → containers.
    pods: RwLock<HashMap<(String, String), PodReadings>>,
}

impl UsageStore {
    /// Records a node's reading.
    pub fn node(&self, name: &str, reading: Reading) {
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_owned())
            .or_default()
            .push(reading);
    }

    /// Records one container's reading.
    pub fn container(&self, namespace: &str, pod: &str, container: &str, reading: Reading) {
        self.pods
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((namespace.to_owned(), pod.to_owned()))
            .or_default()
            .entry(container.to_owned())
            .or_default()
            .push(reading);
    }

    /// Forgets pods whose last reading is older than `seen_before` (deleted, or no longer
    /// reported), so a pod name reused later starts afresh.
    pub fn forget_older_than(&self, seen_before: std::time::Duration) {
        let mut pods = self.pods.write().unwrap_or_else(PoisonError::into_inner);
        for containers in pods.values_mut() {
            containers.retain(|_, p| p.latest.is_some_and(|r| r.seen >= seen_before));
        }
        pods.retain(|_, containers| !containers.is_empty());
        self.nodes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, p| p.latest.is_some_and(|r| r.seen >= seen_before));
    }

    /// A node's point.
    pub fn node_point(&self, name: &str) -> Option<Point> {
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)?
            .point()
    }

    /// A pod's containers' points; `None` unless every container reported has one.
    pub fn pod_points(&self, namespace: &str, pod: &str) -> Option<Vec<(String, Point)>> {
        let pods = self.pods.read().unwrap_or_else(PoisonError::into_inner);
        let containers = pods.get(&(namespace.to_owned(), pod.to_owned()))?;
        containers
            .iter()
            .map(|(name, pair)| Some((name.clone(), pair.point()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn reading(cpu: f64, memory: u64, seen_s: u64) -> Reading {
        Reading {
            cpu_seconds: cpu,
            memory_bytes: memory,
            at: jiff::Timestamp::from_second(1_700_000_000 + seen_s as i64).expect("time"),
            seen: Duration::from_secs(seen_s),
        }
    }

    #[test]
    fn cpu_is_the_rate_between_two_readings() {
        let store = UsageStore::default();
        store.container("n", "p", "c", reading(10.0, 100, 0));
        assert_eq!(store.pod_points("n", "p"), None, "one reading is no rate");
        store.container("n", "p", "c", reading(15.0, 200, 10));
        let points = store.pod_points("n", "p").expect("points");
        assert_eq!(points[0].1.nanocores, 500_000_000);
        assert_eq!(points[0].1.memory_bytes, 200);
        assert_eq!(points[0].1.window, Duration::from_secs(10));
    }

    #[test]
    fn a_restarted_container_has_no_rate_until_its_next_reading() {
        let mut pair = Pair::default();
        pair.push(reading(10.0, 1, 0));
        pair.push(reading(2.0, 1, 10));
        assert_eq!(pair.point(), None);
        pair.push(reading(4.0, 1, 20));
        assert_eq!(pair.point().map(|p| p.nanocores), Some(200_000_000));
    }

    #[test]
    fn stale_pods_are_forgotten() {
        let store = UsageStore::default();
        store.container("n", "old", "c", reading(1.0, 1, 0));
        store.container("n", "new", "c", reading(1.0, 1, 30));
        store.forget_older_than(Duration::from_secs(10));
        let pods = store.pods.read().expect("lock");
        assert!(pods.contains_key(&("n".into(), "new".into())));
        assert!(!pods.contains_key(&("n".into(), "old".into())));
    }
}
