//! Failed-pod backoff (client-go's `flowcontrol.Backoff`, without jitter): per key, a delay that
//! starts at `initial`, doubles on every retry up to `max`, and resets after `2 × max` idle.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Clone, Debug)]
struct Entry {
    delay: Duration,
    last: Timestamp,
}

/// Backoff state, keyed by `<ds uid>/<observedGeneration>/<node>`.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    let d: SignedDuration = now.duration_since(since);
    d.try_into().unwrap_or(Duration::ZERO)
}

impl Backoff {
    /// Upstream's DaemonSet values are 1 s and 15 min.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    fn live(&self, key: &str, now: Timestamp) -> Option<&Entry> {
        self.entries
            .get(key)
            .filter(|e| elapsed(e.last, now) <= 2 * self.max)
    }

    /// Whether less than the current delay has passed since the last attempt.
    pub fn in_backoff(&self, key: &str, now: Timestamp) -> bool {
        self.live(key, now)
            .is_some_and(|e| elapsed(e.last, now) < e.delay)
    }

    /// The current delay of `key` (zero when it has none).
    pub fn delay(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(Duration::ZERO, |e| e.delay)
    }

    /// Records an attempt: the first sets the initial delay, later ones double it.
    pub fn next(&mut self, key: &str, now: Timestamp) {
        let delay = match self.live(key, now) {
            Some(e) => (e.delay * 2).min(self.max),
            None => self.initial,
        };
        self.entries
            .insert(key.to_owned(), Entry { delay, last: now });
    }

    /// Drops entries idle for more than `2 × max`.
    pub fn gc(&mut self, now: Timestamp) {
        let limit = 2 * self.max;
        self.entries.retain(|_, e| elapsed(e.last, now) <= limit);
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(15 * 60))
    }
}
