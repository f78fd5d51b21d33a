//! Storage for everynode. The API server is the only user: objects are opaque bytes under keys
//! like `/apps/daemonsets/default/fluentd`, with one cluster-wide, increasing revision (as etcd's).
//!
//! Backends: [`MemoryStore`] for tests, [`EmbeddedStore`], the durable default (redb in the data
//! directory; an acknowledged write has been fsynced; concurrent writers share one fsync), and
//! [`EtcdStore`], a real etcd cluster that several API servers can share.

mod embedded;
pub mod etcd;
mod log;
mod memory;

pub use embedded::EmbeddedStore;
pub use etcd::{EtcdStore, EtcdTls};
pub use log::EventLog;
pub use memory::MemoryStore;

use bytes::Bytes;
use futures::stream::BoxStream;
use std::sync::Arc;

/// A store revision. Every successful write gets the next one.
pub type Revision = u64;

/// A stored value and the revisions that created and last modified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

/// What a watch event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
    /// No change: the store has sent every change up to `kv.mod_revision` (etcd's progress
    /// notification; `kv` has no key or value). Followers advance their revision.
    Progress,
}

/// A change to one key. For `Deleted`, `kv` is the last value with `mod_revision` set to the
/// revision of the deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which the change happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Storage errors. `Io` and `Closed` are worth retrying with backoff; the others describe the
/// request and will fail the same way again.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A create found the key present.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// The key is absent.
    #[error("key {0} not found")]
    NotFound(String),
    /// A compare-and-swap found another revision. `current` is what is stored now.
    #[error("key {key} is at revision {}, not {expected}", current.mod_revision)]
    Conflict {
        key: String,
        expected: Revision,
        current: Box<KeyValue>,
    },
    /// A watch asked for history that is no longer kept.
    #[error("revision {requested} is compacted; the oldest available is {oldest}")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    /// The disk or database failed. Retryable.
    #[error("storage failure: {0}")]
    Io(String),
    /// The store is shutting down. Retryable against a new store.
    #[error("store is closed")]
    Closed,
}

impl Error {
    /// Whether retrying the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Io(_) | Error::Closed)
    }
}

/// Result of a store call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One page of a list.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub items: Vec<KeyValue>,
    /// The store revision when the page was read.
    pub revision: Revision,
    /// True when more keys follow the last one returned.
    pub more: bool,
}

/// A stream of watch events. An `Err(Compacted)` ends it.
pub type WatchStream = BoxStream<'static, Result<Arc<Event>>>;

/// What the API server needs from storage.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value at `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Keys under `prefix`, in key order, after `start_after` if given, at most `limit` (0: all).
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize)
    -> Result<ListPage>;
    /// Stores a new key. Fails with `AlreadyExists`.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;
    /// Replaces a key if it is still at `expected` (its mod revision). Fails with `Conflict`/`NotFound`.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue>;
    /// Removes a key, if `expected` is given only when it is still at that revision.
    /// Returns the removed value with the deletion revision as `mod_revision`.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;
    /// Changes under `prefix` after revision `after`, in revision order, then live.
    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;
    /// The newest revision this process knows of.
    fn current_revision(&self) -> Revision;
    /// The newest revision of the store, read from it now. With several API servers on one
    /// store the others' writes count: a consistent read waits for the cache to reach this.
    async fn latest_revision(&self) -> Result<Revision> {
        Ok(self.current_revision())
    }
    /// Forgets watch history up to and including `revision`.
    async fn compact(&self, revision: Revision) -> Result<()>;
    /// The bytes the store takes on disk, where it knows (for metrics).
    fn size_bytes(&self) -> Option<u64> {
        None
    }
}
