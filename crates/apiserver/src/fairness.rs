//! Fairness between users for heavy reads, after upstream's API Priority and Fairness: a list
//! costs seats in proportion to the objects it returns (100 objects a seat, at most 10, as
//! upstream's width estimator), a fixed pool of seats bounds how much such work runs at once,
//! and waiting requests are admitted round-robin by user, so one user's stream of big lists
//! waits behind its own requests and not in front of everyone else's. Members of
//! `system:masters` are exempt, as upstream's `exempt` priority level. A request that cannot be
//! queued (its user already has `MAX_QUEUED_PER_USER` waiting) or waits longer than
//! `MAX_WAIT` is answered 429, as APF rejects.
//!
//! Written by hand: the queueing discipline is the server's policy, and no crate implements
//! APF's; it is deliberately smaller (one priority level, queues by user, no shuffle sharding).
//!
//! The other half of fairness is in how a heavy response is written (`handlers/list.rs`): in
//! slices, yielding between them, so a small request's task is never stuck behind megabytes of
//! one list being encrypted in a single turn.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Objects a seat stands for, and the most seats one request takes (upstream's defaults).
pub const OBJECTS_PER_SEAT: usize = 100;
pub const MAX_SEATS: usize = 10;
/// Requests of one user waiting at once; more are refused (upstream's queue length limit).
pub const MAX_QUEUED_PER_USER: usize = 50;
/// How long a request waits for seats before it is refused.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// The seats a list of `objects` objects takes.
pub fn width(objects: usize) -> usize {
    objects.div_ceil(OBJECTS_PER_SEAT).clamp(1, MAX_SEATS)
}

/// Why a request was not admitted. Retryable: the client should back off and try again.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("too many requests of this user are waiting")]
    QueueFull,
    #[error("the request waited too long for its turn")]
    TimedOut,
}

struct Waiter {
    width: usize,
    admit: oneshot::Sender<()>,
}

#[derive(Default)]
struct State {
    free: usize,
    /// Waiting requests by user; a user with none is absent.
    queues: BTreeMap<String, VecDeque<Waiter>>,
    /// The user served last, for round-robin.
    last: Option<String>,
}

/// The seats heavy reads share.
pub struct FairSeats {
    total: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for FairSeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FairSeats")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

/// Seats held by one request; they go back when it is dropped (once its response is written).
pub struct Seats {
    width: usize,
    pool: Arc<FairSeats>,
}

impl Drop for Seats {
    fn drop(&mut self) {
        self.pool.release(self.width);
    }
}

impl FairSeats {
    /// A pool of `total` seats (at least `MAX_SEATS`, so any request fits).
    pub fn new(total: usize) -> Arc<Self> {
        let total = total.max(MAX_SEATS);
        Arc::new(FairSeats {
            total,
            state: Mutex::new(State {
                free: total,
                ..State::default()
            }),
        })
    }

    /// Seats for the number of CPUs: heavy reads are CPU work (encoding, encrypting, writing),
    /// and they may keep all CPUs but one busy, so that short requests always find one. At
    /// two CPUs that is one widest list at a time (bench/RESULTS.md: with two, a victim's
    /// p99 was x8 under abuse).
    pub fn for_this_machine() -> Arc<Self> {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self::new(MAX_SEATS * cpus.saturating_sub(1).max(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counts half-updated: every update
        // is a single assignment, so the state is usable after poisoning.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for `width` seats for `user`, in turn with other users.
    pub async fn acquire(self: &Arc<Self>, user: &str, width: usize) -> Result<Seats, Refused> {
        let width = width.clamp(1, self.total);
        let waiting = {
            let mut state = self.lock();
            if state.queues.is_empty() && state.free >= width {
                state.free -= width;
                None
            } else {
                let queue = state.queues.entry(user.to_owned()).or_default();
                if queue.len() >= MAX_QUEUED_PER_USER {
                    return Err(Refused::QueueFull);
                }
                let (admit, admitted) = oneshot::channel();
                queue.push_back(Waiter { width, admit });
                Some(admitted)
            }
        };
        let seats = || Seats {
            width,
            pool: Arc::clone(self),
        };
        let Some(mut admitted) = waiting else {
            return Ok(seats());
        };
        match tokio::time::timeout(MAX_WAIT, &mut admitted).await {
            Ok(Ok(())) => Ok(seats()),
            Ok(Err(_)) => Err(Refused::TimedOut),
            Err(_) => {
                // Closing first settles a race with the dispatcher: either it admitted us
                // already (and took the seats, which are then ours to give back) or it will
                // skip us.
                admitted.close();
                match admitted.try_recv() {
                    Ok(()) => Ok(seats()),
                    Err(_) => Err(Refused::TimedOut),
                }
            }
        }
    }

    fn release(&self, width: usize) {
        let mut state = self.lock();
        state.free = (state.free + width).min(self.total);
        self.dispatch(&mut state);
    }

    /// Admits waiting requests round-robin by user while the next one fits.
    fn dispatch(&self, state: &mut State) {
        loop {
            let next_user = match &state.last {
                Some(last) => state
                    .queues
                    .range::<String, _>((
                        std::ops::Bound::Excluded(last.clone()),
                        std::ops::Bound::Unbounded,
                    ))
                    .next()
                    .or_else(|| state.queues.iter().next())
                    .map(|(u, _)| u.clone()),
                None => state.queues.keys().next().cloned(),
            };
            let Some(user) = next_user else {
                return;
            };
            let Some(queue) = state.queues.get_mut(&user) else {
                return;
            };
            let Some(head) = queue.front() else {
                state.queues.remove(&user);
                continue;
            };
            if head.admit.is_closed() {
                // Gave up waiting.
                queue.pop_front();
                if queue.is_empty() {
                    state.queues.remove(&user);
                }
                continue;
            }
            if head.width > state.free {
                // Strict order: a wide request is not starved by narrow ones behind it.
                return;
            }
            let Some(waiter) = queue.pop_front() else {
                return;
            };
            if queue.is_empty() {
                state.queues.remove(&user);
            }
            state.last = Some(user);
            // A waiter that gave up between the check and now takes nothing.
            if waiter.admit.send(()).is_ok() {
                state.free -= waiter.width;
            }
        }
    }

    /// Seats not in use, for tests and metrics.
    pub fn free(&self) -> usize {
        self.lock().free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_costs_a_seat_a_hundred_objects_up_to_ten() {
        assert_eq!(width(0), 1);
        assert_eq!(width(100), 1);
        assert_eq!(width(101), 2);
        assert_eq!(width(5000), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_users_take_turns_and_seats_come_back() {
        let pool = FairSeats::new(10);
        let first = pool.acquire("abuser", 10).await.expect("free");
        assert_eq!(pool.free(), 0);
        // The abuser queues three more, then the victim one: the victim is admitted second,
        // not fourth.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, user) in ["abuser", "abuser", "abuser", "victim"]
            .into_iter()
            .enumerate()
        {
            let (pool, order) = (Arc::clone(&pool), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let seats = pool.acquire(user, 10).await.expect("admitted");
                order.lock().expect("order").push(format!("{user}{i}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(seats);
            }));
            tokio::task::yield_now().await;
        }
        drop(first);
        for t in tasks {
            t.await.expect("task");
        }
        let order = order.lock().expect("order").clone();
        assert_eq!(order, ["abuser0", "victim3", "abuser1", "abuser2"]);
        assert_eq!(pool.free(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_or_a_long_wait_is_refused_and_costs_nothing() {
        let pool = FairSeats::new(10);
        let held = pool.acquire("u", 10).await.expect("free");
        let mut waiting = Vec::new();
        for _ in 0..MAX_QUEUED_PER_USER {
            let pool = Arc::clone(&pool);
            waiting.push(tokio::spawn(
                async move { pool.acquire("u", 1).await.map(drop) },
            ));
        }
        tokio::task::yield_now().await;
        assert_eq!(pool.acquire("u", 1).await.err(), Some(Refused::QueueFull));
        for w in waiting {
            assert_eq!(w.await.expect("task"), Err(Refused::TimedOut));
        }
        drop(held);
        assert_eq!(pool.free(), 10);
        assert!(pool.acquire("other", 10).await.is_ok());
    }
}
