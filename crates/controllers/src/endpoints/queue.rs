//! A keyed work queue, as client-go's `workqueue`: a key waits in the queue once however often
//! it is added, no two workers hold the same key, a key added while it is being worked on is
//! worked on again afterwards, and a key that failed comes back after a delay that doubles with
//! each failure in a row (upstream's item-exponential limiter: 5 ms, doubling, at most 1000 s).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

const FIRST_RETRY: Duration = Duration::from_millis(5);
const LONGEST_RETRY: Duration = Duration::from_secs(1000);

struct State<K> {
    waiting: VecDeque<K>,
    queued: HashSet<K>,
    working: HashSet<K>,
    /// Added while being worked on: queued again when the work is done.
    again: HashSet<K>,
    failures: HashMap<K, u32>,
}

pub struct Queue<K> {
    state: Mutex<State<K>>,
    ready: Notify,
}

impl<K: Clone + Eq + Hash + Send + 'static> Queue<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(Queue {
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                queued: HashSet::new(),
                working: HashSet::new(),
                again: HashSet::new(),
                failures: HashMap::new(),
            }),
            ready: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // The state is plain data, consistent between statements; keep it after a panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, key: K) {
        let mut state = self.lock();
        if state.working.contains(&key) {
            state.again.insert(key);
            return;
        }
        if state.queued.insert(key.clone()) {
            state.waiting.push_back(key);
            drop(state);
            self.ready.notify_one();
        }
    }

    /// The next key to work on; the caller hands it back with [`Queue::done`].
    pub async fn next(&self) -> K {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(key) = state.waiting.pop_front() {
                    state.queued.remove(&key);
                    state.working.insert(key.clone());
                    return key;
                }
            }
            notified.await;
        }
    }

    /// The work on `key` is over; `failed` schedules it again after its backoff, success
    /// forgets its failures.
    pub fn done(self: &Arc<Self>, key: K, failed: bool) {
        let again = {
            let mut state = self.lock();
            state.working.remove(&key);
            if failed {
                let n = state.failures.entry(key.clone()).or_insert(0);
                *n = n.saturating_add(1);
            } else {
                state.failures.remove(&key);
            }
            state.again.remove(&key)
        };
        if again {
            self.add(key.clone());
        }
        if failed {
            let delay = self.backoff(&key);
            let queue = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                queue.add(key);
            });
        }
    }

    fn backoff(&self, key: &K) -> Duration {
        let failures = self.lock().failures.get(key).copied().unwrap_or(1);
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
        FIRST_RETRY.saturating_mul(factor).min(LONGEST_RETRY)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_waits_once_and_is_never_held_twice() {
        let q = Queue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let first = q.next().await;
        assert_eq!(first, "a");
        q.add("a");
        assert_eq!(q.len(), 1, "held keys wait until they are done");
        assert_eq!(q.next().await, "b");
        q.done("a", false);
        assert_eq!(q.next().await, "a", "added while held: worked on again");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_come_back_later_each_time() {
        let q = Queue::new();
        assert_eq!(q.backoff(&"k"), FIRST_RETRY);
        q.add("k");
        let mut k = q.next().await;
        for expected in [5u64, 10, 20, 40] {
            let start = tokio::time::Instant::now();
            q.done(k, true);
            k = q.next().await;
            assert_eq!(start.elapsed(), Duration::from_millis(expected));
        }
        q.done("k", false);
        assert_eq!(q.backoff(&"k"), FIRST_RETRY, "forgotten after a success");
    }
}
