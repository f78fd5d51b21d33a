//! An in-memory store for tests: same semantics as the durable one, nothing written to disk.

use crate::{
    Error, Event, EventKind, EventLog, KeyValue, ListPage, Result, Revision, Store, WatchStream,
};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Default)]
struct State {
    revision: Revision,
    data: BTreeMap<String, KeyValue>,
}

/// The in-memory backend.
pub struct MemoryStore {
    state: Mutex<State>,
    log: Arc<EventLog>,
}

impl MemoryStore {
    /// An empty store keeping `history` events for watches.
    pub fn new(history: usize) -> Self {
        MemoryStore {
            state: Mutex::new(State::default()),
            log: Arc::new(EventLog::new(0, history)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one write under the lock and appends its event while still holding it, so events
    /// reach the log in revision order.
    fn write(&self, f: impl FnOnce(&mut State) -> Result<Event>) -> Result<KeyValue> {
        let mut state = self.lock();
        let event = f(&mut state)?;
        let kv = event.kv.clone();
        self.log.append([event]);
        Ok(kv)
    }
}

pub(crate) fn page_of<'a>(
    iter: impl Iterator<Item = (&'a String, KeyValue)>,
    prefix: &str,
    limit: usize,
    revision: Revision,
) -> ListPage {
    let mut items = Vec::new();
    let mut more = false;
    for (k, kv) in iter {
        if !k.starts_with(prefix) {
            break;
        }
        if limit > 0 && items.len() == limit {
            more = true;
            break;
        }
        items.push(kv);
    }
    ListPage {
        items,
        revision,
        more,
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.lock().data.get(key).cloned())
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let state = self.lock();
        let lower = match start_after {
            Some(k) if k >= prefix => Bound::Excluded(k.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let iter = state
            .data
            .range((lower, Bound::Unbounded))
            .map(|(k, v)| (k, v.clone()));
        Ok(page_of(iter, prefix, limit, state.revision))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.write(|s| {
            if s.data.contains_key(key) {
                return Err(Error::AlreadyExists(key.to_owned()));
            }
            s.revision += 1;
            let kv = KeyValue {
                key: key.to_owned(),
                value,
                create_revision: s.revision,
                mod_revision: s.revision,
            };
            s.data.insert(key.to_owned(), kv.clone());
            Ok(Event {
                kind: EventKind::Created,
                kv,
                prev: None,
            })
        })
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        self.write(|s| {
            let prev = s
                .data
                .get(key)
                .cloned()
                .ok_or_else(|| Error::NotFound(key.to_owned()))?;
            if prev.mod_revision != expected {
                return Err(Error::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: Box::new(prev),
                });
            }
            s.revision += 1;
            let kv = KeyValue {
                key: key.to_owned(),
                value,
                create_revision: prev.create_revision,
                mod_revision: s.revision,
            };
            s.data.insert(key.to_owned(), kv.clone());
            Ok(Event {
                kind: EventKind::Updated,
                kv,
                prev: Some(prev),
            })
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write(|s| {
            let prev = s
                .data
                .get(key)
                .cloned()
                .ok_or_else(|| Error::NotFound(key.to_owned()))?;
            if let Some(expected) = expected
                && prev.mod_revision != expected
            {
                return Err(Error::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: Box::new(prev),
                });
            }
            s.revision += 1;
            s.data.remove(key);
            let kv = KeyValue {
                mod_revision: s.revision,
                ..prev.clone()
            };
            Ok(Event {
                kind: EventKind::Deleted,
                kv,
                prev: Some(prev),
            })
        })
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.log.follow(prefix, after)
    }

    fn current_revision(&self) -> Revision {
        self.lock().revision
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.log.compact(revision);
        Ok(())
    }
}
