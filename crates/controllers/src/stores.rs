//! Watch-backed caches of API objects (kube-runtime reflectors), shared by the controllers.

use futures::StreamExt;
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;

/// Starts a reflector for `api` and returns its store, waking `changed` after every event so a
/// loop can react to changes; the task runs until the process ends.
pub fn spawn_store_notifying<K>(api: Api<K>, changed: Arc<tokio::sync::Notify>) -> Store<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watched(api)).default_backoff();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while stream.next().await.is_some() {
            changed.notify_one();
        }
    });
    reader
}

/// The watch the caches are fed from, without `managedFields`: no controller reads them, and at
/// thousands of nodes and pods they would be most of the cache's memory and of every clone.
fn watched<K>(
    api: Api<K>,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    watcher(api, watcher::Config::default()).modify(|o| o.meta_mut().managed_fields = None)
}

/// One object's change as a controller's trigger sees it: the version before (none when it was
/// added) and after (none when it was deleted), as upstream informers hand both to handlers.
#[derive(Debug)]
pub struct Change<K> {
    pub old: Option<Arc<K>>,
    pub new: Option<Arc<K>>,
}

/// A reflector that yields each change with the version it replaced. The store is updated
/// before the change is yielded. A relist (watch restart) yields only real differences,
/// including deletions missed while the watch was down.
pub fn reflect_changes<K>(
    api: Api<K>,
) -> (
    Store<K>,
    impl futures::Stream<Item = Change<K>> + Send + 'static,
)
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, mut writer) = reflector::store();
    let before = reader.clone();
    let mut relisted: Vec<Arc<K>> = Vec::new();
    let key = |o: &K| ObjectRef::from_obj(o);
    let stream = watched(api)
        .default_backoff()
        .map(move |event| {
            let Ok(event) = event else {
                // The watcher retries with backoff; the error itself was logged by it.
                return Vec::new();
            };
            let changes = match &event {
                watcher::Event::Apply(o) => vec![Change {
                    old: before.get(&key(o)),
                    new: Some(Arc::new(o.clone())),
                }],
                watcher::Event::Delete(o) => vec![Change {
                    old: before.get(&key(o)).or_else(|| Some(Arc::new(o.clone()))),
                    new: None,
                }],
                watcher::Event::Init => {
                    relisted.clear();
                    Vec::new()
                }
                watcher::Event::InitApply(o) => {
                    relisted.push(Arc::new(o.clone()));
                    Vec::new()
                }
                watcher::Event::InitDone => {
                    let listed: HashSet<ObjectRef<K>> = relisted.iter().map(|o| key(o)).collect();
                    let mut changes: Vec<Change<K>> = before
                        .state()
                        .into_iter()
                        .filter(|o| !listed.contains(&key(o)))
                        .map(|o| Change {
                            old: Some(o),
                            new: None,
                        })
                        .collect();
                    for o in relisted.drain(..) {
                        let old = before.get(&key(&o));
                        if old.as_ref().is_some_and(|old| {
                            old.meta().resource_version == o.meta().resource_version
                        }) {
                            continue;
                        }
                        changes.push(Change { old, new: Some(o) });
                    }
                    changes
                }
            };
            writer.apply_watcher_event(&event);
            changes
        })
        .flat_map(futures::stream::iter);
    (reader, stream)
}
