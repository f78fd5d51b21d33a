//! Shared informers: one watch-backed cache per kind for all the controllers in a process, as
//! client-go's SharedInformerFactory. Each controller used to reflect pods and nodes itself; at
//! 10,000 nodes that was five decoded copies of every pod and node, and five watches for the API
//! server to encode and send every event to.

use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// One object's change as a controller's trigger sees it: the version before (none when it was
/// added) and after (none when it was deleted), as upstream informers hand both to handlers.
#[derive(Debug)]
pub struct Change<K> {
    pub old: Option<Arc<K>>,
    pub new: Option<Arc<K>>,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        Change {
            old: self.old.clone(),
            new: self.new.clone(),
        }
    }
}

/// How a subscriber hears of changes.
enum Subscriber<K> {
    /// Every change, in order.
    Changes(mpsc::UnboundedSender<Change<K>>),
    /// A wake-up after any change, for level-triggered loops that re-read the whole cache.
    Wake(Arc<Notify>),
}

impl<K> Subscriber<K> {
    /// Hands `changes` on; false once the subscriber has gone.
    fn deliver(&self, changes: &[Change<K>]) -> bool {
        match self {
            Subscriber::Changes(tx) => changes.iter().all(|c| tx.unbounded_send(c.clone()).is_ok()),
            Subscriber::Wake(notify) => {
                if !changes.is_empty() {
                    notify.notify_one();
                }
                // A Notify cannot tell whether anyone still waits on it; it lives as long as
                // the informer.
                true
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One kind's cache, fed by one watch, with any number of subscribers.
pub struct Informer<K: kube::Resource + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    subscribers: Arc<Mutex<Vec<Subscriber<K>>>>,
    /// True once the first list is in the cache. `Store::wait_until_ready` cannot serve several
    /// controllers waiting at once: its oneshot channel keeps only the last waiter's waker, and
    /// the others would wait forever.
    ready: tokio::sync::watch::Receiver<bool>,
}

impl<K> Clone for Informer<K>
where
    K: kube::Resource + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn clone(&self) -> Self {
        Informer {
            store: self.store.clone(),
            subscribers: Arc::clone(&self.subscribers),
            ready: self.ready.clone(),
        }
    }
}

impl<K> Informer<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    /// Starts watching `api`; the returned handle stops the watch.
    pub fn start(api: Api<K>) -> (Informer<K>, AbortHandle) {
        let (informer, mut feed) = Informer::unstarted();
        let task = tokio::spawn(async move {
            let events = watched(api).default_backoff();
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                // The watcher retries with backoff; the error itself was logged by it.
                if let Ok(event) = event {
                    feed.apply(&event);
                }
            }
        });
        (informer, task.abort_handle())
    }

    /// An informer and the feed that fills it from watch events.
    fn unstarted() -> (Informer<K>, Feed<K>) {
        let (reader, writer) = reflector::store();
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let informer = Informer {
            store: reader.clone(),
            subscribers: Arc::new(Mutex::new(Vec::new())),
            ready,
        };
        let feed = Feed {
            before: reader,
            writer,
            relisted: Vec::new(),
            subscribers: Arc::clone(&informer.subscribers),
            ready: ready_tx,
        };
        (informer, feed)
    }

    /// The cache. It is updated before subscribers hear of a change.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Waits until the first list is in the cache; any number of tasks may wait at once.
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.clone();
        // An error means the feed ended (its watch was stopped): nothing more will come.
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Every change from now on, starting with an addition for each object already cached (as
    /// client-go replays its store to a handler added to a running informer).
    pub fn changes(&self) -> impl futures::Stream<Item = Change<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded();
        self.changes_into(tx);
        rx
    }

    fn changes_into(&self, tx: mpsc::UnboundedSender<Change<K>>) {
        let mut subscribers = lock(&self.subscribers);
        for o in self.store.state() {
            // The receiver is still here; a send cannot fail.
            let _ = tx.unbounded_send(Change {
                old: None,
                new: Some(o),
            });
        }
        subscribers.push(Subscriber::Changes(tx));
    }

    /// The cache, once it holds the first list.
    pub async fn ready_store(&self) -> Store<K> {
        self.wait_until_ready().await;
        self.store()
    }

    /// For level-triggered loops: `ready_store`, with `wake` woken after every change from now on.
    pub async fn ready_cache(&self, wake: &Arc<Notify>) -> Store<K> {
        self.wake_on_change(Arc::clone(wake));
        self.ready_store().await
    }

    /// Wakes `notify` after every change, and once now if anything is cached already.
    fn wake_on_change(&self, notify: Arc<Notify>) {
        let mut subscribers = lock(&self.subscribers);
        if !self.store.is_empty() {
            notify.notify_one();
        }
        subscribers.push(Subscriber::Wake(notify));
    }
}

/// The writing side of an informer.
struct Feed<K: kube::Resource + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    before: Store<K>,
    writer: reflector::store::Writer<K>,
    relisted: Vec<Arc<K>>,
    subscribers: Arc<Mutex<Vec<Subscriber<K>>>>,
    ready: tokio::sync::watch::Sender<bool>,
}

impl<K> Feed<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    /// Applies one watch event to the cache, then hands its changes to every subscriber.
    fn apply(&mut self, event: &watcher::Event<K>) {
        // Under the subscribers' lock, so one that subscribes meanwhile sees either the cache
        // before this event and then its changes, or the cache after it.
        let mut subscribers = lock(&self.subscribers);
        let changes = changes_of(event, &self.before, &mut self.relisted);
        self.writer.apply_watcher_event(event);
        if matches!(event, watcher::Event::InitDone) {
            self.ready.send_replace(true);
        }
        subscribers.retain(|s| s.deliver(&changes));
    }
}

/// The changes one watch event makes to the cache `before` it is applied. A relist (watch
/// restart) yields only real differences, including deletions missed while the watch was down.
fn changes_of<K>(
    event: &watcher::Event<K>,
    before: &Store<K>,
    relisted: &mut Vec<Arc<K>>,
) -> Vec<Change<K>>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let key = |o: &K| ObjectRef::from_obj(o);
    match event {
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
                if old
                    .as_ref()
                    .is_some_and(|old| old.meta().resource_version == o.meta().resource_version)
                {
                    continue;
                }
                changes.push(Change { old, new: Some(o) });
            }
            changes
        }
    }
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

/// The informers of one process's controllers. Each kind's watch starts when a controller
/// first asks for it, and every watch stops when the last clone is dropped (the controllers'
/// tasks end, as when this process loses the leader lease).
#[derive(Clone)]
pub struct Informers {
    inner: Arc<Shared>,
    /// The client a controller writes with: its own identity, while the watches are shared.
    writer: Client,
}

struct Shared {
    client: Client,
    pods: OnceLock<Informer<Pod>>,
    nodes: OnceLock<Informer<Node>>,
    namespaces: OnceLock<Informer<Namespace>>,
    daemonsets: OnceLock<Informer<DaemonSet>>,
    revisions: OnceLock<Informer<ControllerRevision>>,
    node_leases: OnceLock<Informer<Lease>>,
    services: OnceLock<Informer<Service>>,
    endpoints: OnceLock<Informer<Endpoints>>,
    endpoint_slices: OnceLock<Informer<EndpointSlice>>,
    watches: Mutex<Vec<AbortHandle>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for watch in lock(&self.watches).drain(..) {
            watch.abort();
        }
    }
}

impl Informers {
    pub fn new(client: Client) -> Informers {
        Informers {
            writer: client.clone(),
            inner: Arc::new(Shared {
                client,
                pods: OnceLock::new(),
                nodes: OnceLock::new(),
                namespaces: OnceLock::new(),
                daemonsets: OnceLock::new(),
                revisions: OnceLock::new(),
                node_leases: OnceLock::new(),
                services: OnceLock::new(),
                endpoints: OnceLock::new(),
                endpoint_slices: OnceLock::new(),
                watches: Mutex::new(Vec::new()),
            }),
        }
    }

    fn get<K>(
        &self,
        slot: &OnceLock<Informer<K>>,
        api: impl FnOnce(Client) -> Api<K>,
    ) -> Informer<K>
    where
        K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
    {
        slot.get_or_init(|| {
            let (informer, watch) = Informer::start(api(self.inner.client.clone()));
            lock(&self.inner.watches).push(watch);
            informer
        })
        .clone()
    }

    pub fn pods(&self) -> Informer<Pod> {
        self.get(&self.inner.pods, Api::all)
    }

    pub fn nodes(&self) -> Informer<Node> {
        self.get(&self.inner.nodes, Api::all)
    }

    pub fn namespaces(&self) -> Informer<Namespace> {
        self.get(&self.inner.namespaces, Api::all)
    }

    pub fn daemonsets(&self) -> Informer<DaemonSet> {
        self.get(&self.inner.daemonsets, Api::all)
    }

    pub fn revisions(&self) -> Informer<ControllerRevision> {
        self.get(&self.inner.revisions, Api::all)
    }

    /// The nodes' heartbeat Leases in `kube-node-lease`.
    pub fn node_leases(&self) -> Informer<Lease> {
        self.get(&self.inner.node_leases, |c| {
            Api::namespaced(c, "kube-node-lease")
        })
    }

    pub fn services(&self) -> Informer<Service> {
        self.get(&self.inner.services, Api::all)
    }

    pub fn endpoints(&self) -> Informer<Endpoints> {
        self.get(&self.inner.endpoints, Api::all)
    }

    pub fn endpoint_slices(&self) -> Informer<EndpointSlice> {
        self.get(&self.inner.endpoint_slices, Api::all)
    }

    /// The same informers for a controller that writes as `writer` (upstream's controller
    /// manager gives each controller its own ServiceAccount over shared informers).
    pub fn writing_as(&self, writer: Client) -> Informers {
        Informers {
            inner: Arc::clone(&self.inner),
            writer,
        }
    }

    /// The client a controller writes (and reads outside the informers) with.
    pub fn client(&self) -> Client {
        self.writer.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use kube::ResourceExt;
    use serde_json::json;

    fn pod(name: &str, version: &str) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "default", "resourceVersion": version}}),
        )
        .expect("pod")
    }

    /// What a subscriber has heard so far, as (name, old version, new version).
    fn heard(
        rx: &mut mpsc::UnboundedReceiver<Change<Pod>>,
    ) -> Vec<(String, Option<String>, Option<String>)> {
        let version =
            |p: &Option<Arc<Pod>>| p.as_ref().and_then(|p| p.metadata.resource_version.clone());
        let mut out = Vec::new();
        while let Ok(c) = rx.try_recv() {
            let name = c
                .new
                .as_ref()
                .or(c.old.as_ref())
                .map(|p| p.name_any())
                .unwrap_or_default();
            out.push((name, version(&c.old), version(&c.new)));
        }
        out
    }

    fn subscribe(informer: &Informer<Pod>) -> mpsc::UnboundedReceiver<Change<Pod>> {
        let (tx, rx) = mpsc::unbounded();
        informer.changes_into(tx);
        rx
    }

    fn change(
        name: &str,
        old: Option<&str>,
        new: Option<&str>,
    ) -> (String, Option<String>, Option<String>) {
        (name.into(), old.map(String::from), new.map(String::from))
    }

    #[test]
    fn every_subscriber_hears_every_change_with_the_version_it_replaced() {
        let (informer, mut feed) = Informer::<Pod>::unstarted();
        let (mut first, mut second) = (subscribe(&informer), subscribe(&informer));
        feed.apply(&watcher::Event::Init);
        feed.apply(&watcher::Event::InitApply(pod("a", "1")));
        feed.apply(&watcher::Event::InitDone);
        feed.apply(&watcher::Event::Apply(pod("a", "2")));
        feed.apply(&watcher::Event::Delete(pod("a", "3")));
        let expected = vec![
            change("a", None, Some("1")),
            change("a", Some("1"), Some("2")),
            change("a", Some("2"), None),
        ];
        assert_eq!(heard(&mut first), expected);
        assert_eq!(heard(&mut second), expected);
        assert!(informer.store().is_empty());
    }

    #[test]
    fn a_late_subscriber_first_hears_the_cache_as_additions() {
        let (informer, mut feed) = Informer::<Pod>::unstarted();
        feed.apply(&watcher::Event::Init);
        feed.apply(&watcher::Event::InitApply(pod("a", "1")));
        feed.apply(&watcher::Event::InitDone);
        let mut late = subscribe(&informer);
        feed.apply(&watcher::Event::Apply(pod("b", "2")));
        assert_eq!(
            heard(&mut late),
            vec![change("a", None, Some("1")), change("b", None, Some("2"))]
        );
    }

    #[test]
    fn a_relist_yields_only_real_differences() {
        let (informer, mut feed) = Informer::<Pod>::unstarted();
        feed.apply(&watcher::Event::Init);
        for (name, version) in [("kept", "1"), ("changed", "1"), ("gone", "1")] {
            feed.apply(&watcher::Event::InitApply(pod(name, version)));
        }
        feed.apply(&watcher::Event::InitDone);
        let mut rx = subscribe(&informer);
        let _ = heard(&mut rx);
        // The watch restarts: "gone" was deleted and "changed" updated while it was down.
        feed.apply(&watcher::Event::Init);
        feed.apply(&watcher::Event::InitApply(pod("kept", "1")));
        feed.apply(&watcher::Event::InitApply(pod("changed", "5")));
        feed.apply(&watcher::Event::InitApply(pod("new", "6")));
        feed.apply(&watcher::Event::InitDone);
        let mut got = heard(&mut rx);
        got.sort();
        assert_eq!(
            got,
            vec![
                change("changed", Some("1"), Some("5")),
                change("gone", Some("1"), None),
                change("new", None, Some("6")),
            ]
        );
        assert_eq!(informer.store().len(), 3);
    }

    #[tokio::test]
    async fn every_waiter_is_released_when_the_first_list_is_in() {
        // Several controllers wait on one informer at once; kube's Store::wait_until_ready
        // woke only the last of them.
        let (informer, mut feed) = Informer::<Pod>::unstarted();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let informer = informer.clone();
                tokio::spawn(async move { informer.wait_until_ready().await })
            })
            .collect();
        tokio::task::yield_now().await;
        feed.apply(&watcher::Event::Init);
        assert!(waiters.iter().all(|w| !w.is_finished()));
        feed.apply(&watcher::Event::InitDone);
        for waiter in waiters {
            waiter.await.expect("waiter");
        }
    }

    #[test]
    fn a_wake_subscriber_is_woken_by_changes_only() {
        let (informer, mut feed) = Informer::<Pod>::unstarted();
        let notify = Arc::new(Notify::new());
        informer.wake_on_change(Arc::clone(&notify));
        feed.apply(&watcher::Event::Init);
        let woken = || notify.notified().now_or_never().is_some();
        assert!(!woken(), "an empty relist start changes nothing");
        feed.apply(&watcher::Event::Apply(pod("a", "1")));
        assert!(woken());
    }
}
