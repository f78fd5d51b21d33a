//! Watch-backed caches of API objects (kube-runtime reflectors), shared by the controllers.

use futures::StreamExt;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Starts a reflector for `api` and returns its store, waking `changed` after every event so a
/// loop can react to changes; the task runs until the process ends.
pub fn spawn_store_notifying<K>(
    api: Api<K>,
    changed: std::sync::Arc<tokio::sync::Notify>,
) -> Store<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while stream.next().await.is_some() {
            changed.notify_one();
        }
    });
    reader
}

/// A reflector whose store is updated before each object is yielded, so whoever consumes the
/// stream (a controller's trigger) never reads an older store than the event it reacts to.
/// Deleted objects are yielded too: a deletion must trigger a sync as much as a change.
pub fn reflect<K>(
    api: Api<K>,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    (reader, stream)
}
