//! What the server keeps of the agents' `/metrics/resource`: for each node and each pod's
//! containers, the last two readings of cumulative CPU time and the last working set, so CPU
//! is a rate over the window between two scrapes, as metrics-server computes it. Each round's
//! rates are also kept for `HISTORY` (the console's charts, `usage.everynode.io`).

use std::collections::{BTreeMap, HashMap, VecDeque};
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

/// How far back the history goes.
pub const HISTORY: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Points kept per node or pod at most, whatever the resolution (60 at the default 15 s).
const MAX_POINTS: usize = 180;

/// One point of a node's or pod's history: CPU as a rate, memory as a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryPoint {
    pub at: jiff::Timestamp,
    pub nanocores: u64,
    pub memory_bytes: u64,
}

type History = VecDeque<HistoryPoint>;

/// Everything measured, replaced node by node as scrapes come in.
#[derive(Debug, Default)]
pub struct UsageStore {
    nodes: RwLock<HashMap<String, Pair>>,
    /// (namespace, pod) → containers.
    pods: RwLock<HashMap<(String, String), PodReadings>>,
    node_history: RwLock<HashMap<String, History>>,
    pod_history: RwLock<HashMap<(String, String), History>>,
}

/// Appends `point` unless it is the one already last (no new reading since), and drops what
/// is older than `HISTORY` before it.
fn append(history: &mut History, point: HistoryPoint) {
    if history.back().is_some_and(|last| last.at >= point.at) {
        return;
    }
    history.push_back(point);
    let oldest = point.at - jiff::SignedDuration::try_from(HISTORY).unwrap_or_default();
    while history.front().is_some_and(|p| p.at < oldest) || history.len() > MAX_POINTS {
        history.pop_front();
    }
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

    /// Adds the latest rates to the histories after a round of scrapes, and forgets the
    /// history of whatever `forget_older_than` forgot.
    pub fn record_history(&self) {
        {
            let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
            let mut history = self
                .node_history
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            history.retain(|name, _| nodes.contains_key(name));
            for (name, pair) in nodes.iter() {
                if let Some(p) = pair.point() {
                    let point = HistoryPoint {
                        at: p.timestamp,
                        nanocores: p.nanocores,
                        memory_bytes: p.memory_bytes,
                    };
                    append(history.entry(name.clone()).or_default(), point);
                }
            }
        }
        let pods = self.pods.read().unwrap_or_else(PoisonError::into_inner);
        let mut history = self
            .pod_history
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        history.retain(|key, _| pods.contains_key(key));
        for (key, containers) in pods.iter() {
            let points: Option<Vec<Point>> = containers.values().map(Pair::point).collect();
            let Some(points) = points.filter(|p| !p.is_empty()) else {
                continue;
            };
            let point = HistoryPoint {
                at: points
                    .iter()
                    .map(|p| p.timestamp)
                    .max()
                    .unwrap_or(points[0].timestamp),
                nanocores: points.iter().map(|p| p.nanocores).sum(),
                memory_bytes: points.iter().map(|p| p.memory_bytes).sum(),
            };
            append(history.entry(key.clone()).or_default(), point);
        }
    }

    /// A node's history, oldest first.
    pub fn node_history(&self, name: &str) -> Vec<HistoryPoint> {
        self.node_history
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    /// A pod's history (its containers summed), oldest first.
    pub fn pod_history(&self, namespace: &str, pod: &str) -> Vec<HistoryPoint> {
        self.pod_history
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.to_owned(), pod.to_owned()))
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
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

    #[test]
    fn history_keeps_one_point_a_round_for_fifteen_minutes() {
        let store = UsageStore::default();
        for round in 0..=70u64 {
            let seen = round * 15;
            store.container("n", "p", "a", reading(round as f64 * 1.5, 100, seen));
            store.container("n", "p", "b", reading(round as f64 * 0.5, 50, seen));
            store.node("node-1", reading(round as f64 * 3.0, 1000, seen));
            store.record_history();
            // A round with no new reading adds nothing.
            store.record_history();
        }
        let pod = store.pod_history("n", "p");
        assert_eq!(pod.len(), 61, "15 minutes at 15 s, both ends included");
        assert_eq!(pod[0].at, reading(0.0, 0, 10 * 15).at);
        assert!(
            pod.iter()
                .all(|p| p.nanocores == 133_333_333 && p.memory_bytes == 150)
        );
        let node = store.node_history("node-1");
        assert_eq!(node.len(), 61);
        assert_eq!(node[60].nanocores, 200_000_000);
    }

    #[test]
    fn a_forgotten_pod_loses_its_history() {
        let store = UsageStore::default();
        store.container("n", "p", "c", reading(1.0, 1, 0));
        store.container("n", "p", "c", reading(2.0, 1, 10));
        store.record_history();
        assert_eq!(store.pod_history("n", "p").len(), 1);
        store.forget_older_than(Duration::from_secs(100));
        store.record_history();
        assert!(store.pod_history("n", "p").is_empty());
    }
}
