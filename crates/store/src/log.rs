//! A bounded, in-memory history of events with live followers: the watch side of the local backends.

use crate::{Error, Event, Result, Revision, WatchStream};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;

struct Inner {
    events: VecDeque<Arc<Event>>,
    /// Events at or below this revision are gone.
    compacted: Revision,
    capacity: usize,
}

/// Recent events, newest last, and a signal that fires on every append.
pub struct EventLog {
    inner: Mutex<Inner>,
    head: watch::Sender<Revision>,
}

impl EventLog {
    /// A log whose history starts after `revision`, keeping at most `capacity` events.
    pub fn new(revision: Revision, capacity: usize) -> Self {
        let (head, _) = watch::channel(revision);
        EventLog {
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                compacted: revision,
                capacity: capacity.max(1),
            }),
            head,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the deque half-written; keep serving.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends events (in revision order) and wakes followers.
    pub fn append(&self, events: impl IntoIterator<Item = Event>) {
        let mut newest = None;
        {
            let mut inner = self.lock();
            for e in events {
                newest = Some(e.revision());
                inner.events.push_back(Arc::new(e));
            }
            while inner.events.len() > inner.capacity {
                if let Some(old) = inner.events.pop_front() {
                    inner.compacted = old.revision();
                }
            }
        }
        if let Some(rev) = newest {
            self.head.send_replace(rev);
        }
    }

    /// Forgets events at or below `revision`.
    pub fn compact(&self, revision: Revision) {
        let mut inner = self.lock();
        while inner
            .events
            .front()
            .is_some_and(|e| e.revision() <= revision)
        {
            inner.events.pop_front();
        }
        inner.compacted = inner.compacted.max(revision);
    }

    /// The oldest revision a watch may start after.
    pub fn compacted(&self) -> Revision {
        self.lock().compacted
    }

    /// Events under `prefix` with revision > `after`, or `Compacted`.
    pub fn since(&self, prefix: &str, after: Revision) -> Result<Vec<Arc<Event>>> {
        let inner = self.lock();
        if after < inner.compacted {
            return Err(Error::Compacted {
                requested: after,
                oldest: inner.compacted,
            });
        }
        let start = inner.events.partition_point(|e| e.revision() <= after);
        Ok(inner
            .events
            .range(start..)
            .filter(|e| e.kv.key.starts_with(prefix))
            .cloned()
            .collect())
    }

    /// A stream of events under `prefix` after `after`: history first, then live.
    pub fn follow(self: &Arc<Self>, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Fail fast on compacted history so the caller gets a plain error, not a stream of one.
        self.since(prefix, after)?;
        let state = (
            Arc::clone(self),
            self.head.subscribe(),
            prefix.to_owned(),
            after,
            VecDeque::<Arc<Event>>::new(),
            false,
        );
        let stream = futures::stream::unfold(
            state,
            |(log, mut rx, prefix, mut cursor, mut buf, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(e) = buf.pop_front() {
                        return Some((Ok(e), (log, rx, prefix, cursor, buf, false)));
                    }
                    // Mark the current head seen before reading, so an append after the read wakes us.
                    let head = *rx.borrow_and_update();
                    match log.since(&prefix, cursor) {
                        Err(e) => return Some((Err(e), (log, rx, prefix, cursor, buf, true))),
                        Ok(events) if !events.is_empty() => {
                            cursor = events.last().map_or(cursor, |e| e.revision());
                            buf.extend(events);
                        }
                        Ok(_) => {
                            cursor = cursor.max(head);
                            if rx.changed().await.is_err() {
                                return None;
                            }
                        }
                    }
                }
            },
        );
        Ok(Box::pin(stream))
    }
}
