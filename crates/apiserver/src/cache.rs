//! The watch cache: every object in memory as ready-to-send JSON, kept current by one watch on
//! the store, serving lists and watches. Watchers are indexed by resource and, for pods, by
//! `spec.nodeName`, so an event reaches only the watchers that can want it.

use bytes::Bytes;
use everynode_api::registry::{self, Kind, Resource};
use everynode_api::selector::{FieldSelector, Selector};
use everynode_store::{Event, EventKind, KeyValue, Revision, Store};
use futures::StreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const PODS_PREFIX: &str = "/core/pods/";

/// One object as the cache holds it.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    /// The whole object, `metadata.resourceVersion` included.
    pub json: Bytes,
    pub revision: Revision,
    pub labels: BTreeMap<String, String>,
    pub fields: BTreeMap<&'static str, String>,
    /// `spec.nodeName` of pods, the watch index.
    pub node: Option<String>,
}

/// A watch event type as sent to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change the cache applied.
#[derive(Debug)]
struct CacheEvent {
    kind: EventType,
    revision: Revision,
    obj: Arc<CachedObject>,
    prev: Option<Arc<CachedObject>>,
}

/// What a list or watch selects.
#[derive(Clone, Debug)]
pub struct Filter {
    /// Storage prefix: the resource, or one namespace of it.
    pub prefix: String,
    pub labels: Selector,
    pub fields: FieldSelector,
}

impl Filter {
    fn matches(&self, o: &CachedObject) -> bool {
        o.key.starts_with(&self.prefix)
            && self.labels.matches(&o.labels)
            && self.fields.matches(&o.fields)
    }

    fn node(&self) -> Option<&str> {
        if self.prefix.starts_with(PODS_PREFIX) {
            self.fields.equality_value("spec.nodeName")
        } else {
            None
        }
    }
}

/// An item delivered to a watcher.
pub type WatchItem = (EventType, Arc<CachedObject>);

struct Watcher {
    filter: Filter,
    resource_prefix: String,
    node: Option<String>,
    tx: mpsc::Sender<WatchItem>,
}

struct State {
    revision: Revision,
    objects: BTreeMap<String, Arc<CachedObject>>,
    pods_by_node: HashMap<String, BTreeSet<String>>,
    log: VecDeque<Arc<CacheEvent>>,
    /// Events at or below this revision are no longer in the log.
    oldest: Revision,
    watchers: HashMap<u64, Watcher>,
    by_resource: HashMap<String, HashSet<u64>>,
    by_node: HashMap<String, HashSet<u64>>,
    next_id: u64,
    ready: bool,
}

/// Watch cache errors. `Gone` is final for that resourceVersion (relist); `Timeout` is retryable.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("too old resource version: {requested} ({oldest})")]
    Gone {
        requested: Revision,
        oldest: Revision,
    },
    #[error("Too large resource version: {requested}, current: {current}")]
    Timeout {
        requested: Revision,
        current: Revision,
    },
}

/// The watch cache.
pub struct WatchCache {
    state: RwLock<State>,
    revision_tx: watch::Sender<Revision>,
    capacity: usize,
    watcher_buffer: usize,
    /// Storage prefix → resource, to decode and index stored objects.
    resources: HashMap<String, &'static Resource>,
    /// Storage prefix → the other resources served from that storage, each cached as its own
    /// view under its own prefix.
    views: HashMap<String, Vec<&'static Resource>>,
}

/// One page of a list.
pub struct ListResult {
    pub items: Vec<Arc<CachedObject>>,
    pub revision: Revision,
    /// The key to continue after, when more items match.
    pub continue_after: Option<String>,
}

fn resource_prefix(key: &str) -> &str {
    // "/group/plural/..." → "/group/plural/"
    let mut slashes = key.match_indices('/').map(|(i, _)| i);
    match slashes.nth(2) {
        Some(end) => &key[..=end],
        None => key,
    }
}

impl WatchCache {
    /// An empty cache keeping `capacity` events of history; each watcher may fall
    /// `watcher_buffer` events behind before it is closed.
    pub fn new(capacity: usize, watcher_buffer: usize) -> Arc<Self> {
        let resources = registry::RESOURCES
            .iter()
            .filter(|r| r.stored_as().id == r.id)
            .map(|r| (r.key_prefix(), r))
            .collect();
        let mut views: HashMap<String, Vec<&'static Resource>> = HashMap::new();
        for r in registry::RESOURCES
            .iter()
            .filter(|r| r.stored_as().id != r.id)
        {
            views.entry(r.stored_as().key_prefix()).or_default().push(r);
        }
        Arc::new(WatchCache {
            state: RwLock::new(State {
                revision: 0,
                objects: BTreeMap::new(),
                pods_by_node: HashMap::new(),
                log: VecDeque::new(),
                oldest: 0,
                watchers: HashMap::new(),
                by_resource: HashMap::new(),
                by_node: HashMap::new(),
                next_id: 0,
                ready: false,
            }),
            revision_tx: watch::channel(0).0,
            capacity: capacity.max(1),
            watcher_buffer: watcher_buffer.max(1),
            resources,
            views,
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decodes a stored value into the cached objects at `revision`: the object itself and, for
    /// a core Event, its `events.k8s.io` view (one object, two views, as upstream serves them).
    /// `None` for a key that is no resource's (the server's own records, such as Services'
    /// address claims), which the cache does not hold.
    fn cached(&self, kv: &KeyValue, revision: Revision) -> Option<Vec<Arc<CachedObject>>> {
        let res = self.resources.get(resource_prefix(&kv.key))?;
        let Ok(mut value) = serde_json::from_slice::<Value>(&kv.value) else {
            return Some(Vec::new());
        };
        value["metadata"]["resourceVersion"] = Value::String(revision.to_string());
        let mut out = Vec::with_capacity(1);
        for view in self.views.get(&res.key_prefix()).into_iter().flatten() {
            let key = format!("{}{}", view.key_prefix(), &kv.key[res.key_prefix().len()..]);
            if let Some(obj) =
                Self::indexed(view, key, &view.view_of_stored(value.clone()), revision)
            {
                out.push(obj);
            }
        }
        out.extend(Self::indexed(res, kv.key.clone(), &value, revision));
        Some(out)
    }

    /// One object of `res` with what lists and watches select it by.
    fn indexed(
        res: &Resource,
        key: String,
        value: &Value,
        revision: Revision,
    ) -> Option<Arc<CachedObject>> {
        let labels = value
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .unwrap_or_default();
        let fields = res.field_set(value);
        let node = if res.id == Kind::Pod {
            fields
                .get("spec.nodeName")
                .filter(|n| !n.is_empty())
                .cloned()
        } else {
            None
        };
        let json = Bytes::from(serde_json::to_vec(value).ok()?);
        Some(Arc::new(CachedObject {
            key,
            json,
            revision,
            labels,
            fields,
            node,
        }))
    }

    /// Keeps the cache in step with the store, relisting whenever the watch falls off history.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>) {
        loop {
            let page = match store.list("/", None, 0).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache relist failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            self.reset(&page.items, page.revision);
            let mut events = match store.watch("/", page.revision) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache could not follow the store; relisting");
                    continue;
                }
            };
            while let Some(next) = events.next().await {
                match next {
                    Ok(event) => self.apply(&event),
                    Err(e) => {
                        tracing::warn!(error = %e, "watch cache fell behind the store; relisting");
                        break;
                    }
                }
            }
        }
    }

    fn reset(&self, items: &[KeyValue], revision: Revision) {
        let mut state = self.write();
        state.objects.clear();
        state.pods_by_node.clear();
        for kv in items {
            for obj in self.cached(kv, kv.mod_revision).into_iter().flatten() {
                if let Some(node) = &obj.node {
                    state
                        .pods_by_node
                        .entry(node.clone())
                        .or_default()
                        .insert(obj.key.clone());
                }
                state.objects.insert(obj.key.clone(), obj);
            }
        }
        // Watchers from before a relist may have missed events: close them so they resume.
        state.watchers.clear();
        state.by_resource.clear();
        state.by_node.clear();
        state.log.clear();
        state.oldest = revision;
        state.revision = revision;
        state.ready = true;
        drop(state);
        self.revision_tx.send_replace(revision);
    }

    fn apply(&self, event: &Event) {
        let revision = event.revision();
        if event.kind == EventKind::Progress {
            let mut state = self.write();
            if revision <= state.revision {
                return;
            }
            state.revision = revision;
            drop(state);
            self.revision_tx.send_replace(revision);
            return;
        }
        let objects = self.cached(&event.kv, revision);
        let Some(objects) = objects else {
            // Not a resource: only its revision passes.
            let mut state = self.write();
            state.revision = state.revision.max(revision);
            drop(state);
            self.revision_tx.send_replace(revision);
            return;
        };
        let kind = match event.kind {
            EventKind::Created => EventType::Added,
            EventKind::Updated => EventType::Modified,
            EventKind::Deleted | EventKind::Progress => EventType::Deleted,
        };
        let mut state = self.write();
        if objects.is_empty() {
            // The revision still passes: a consistent read waiting for it must not stall.
            tracing::warn!(key = %event.kv.key, "store holds an undecodable object; skipped");
        }
        for obj in objects {
            self.apply_object(&mut state, kind, obj, revision);
        }
        state.revision = state.revision.max(revision);
        drop(state);
        self.revision_tx.send_replace(revision);
    }

    /// Applies one change to one cached object and tells its watchers.
    fn apply_object(
        &self,
        state: &mut State,
        kind: EventType,
        obj: Arc<CachedObject>,
        revision: Revision,
    ) {
        let prev = state.objects.get(&obj.key).cloned();
        if let Some(node) = prev.as_ref().and_then(|p| p.node.clone())
            && let Some(keys) = state.pods_by_node.get_mut(&node)
        {
            keys.remove(&obj.key);
            if keys.is_empty() {
                state.pods_by_node.remove(&node);
            }
        }
        if kind == EventType::Deleted {
            state.objects.remove(&obj.key);
        } else {
            if let Some(node) = &obj.node {
                state
                    .pods_by_node
                    .entry(node.clone())
                    .or_default()
                    .insert(obj.key.clone());
            }
            state.objects.insert(obj.key.clone(), Arc::clone(&obj));
        }
        let ev = Arc::new(CacheEvent {
            kind,
            revision,
            obj,
            prev,
        });
        Self::dispatch(state, &ev);
        state.log.push_back(ev);
        while state.log.len() > self.capacity {
            if let Some(old) = state.log.pop_front() {
                state.oldest = old.revision;
            }
        }
    }

    /// What a watcher with `filter` should see of `ev`, following upstream: an object entering
    /// the selection is ADDED, one leaving it is DELETED.
    fn translate(filter: &Filter, ev: &CacheEvent) -> Option<EventType> {
        let now = filter.matches(&ev.obj);
        let before = ev.prev.as_ref().is_some_and(|p| filter.matches(p));
        match (ev.kind, before, now) {
            (EventType::Deleted, _, true) => Some(EventType::Deleted),
            (EventType::Deleted, _, false) => None,
            (_, true, true) => Some(EventType::Modified),
            (_, false, true) => Some(EventType::Added),
            (_, true, false) => Some(EventType::Deleted),
            (_, false, false) => None,
        }
    }

    fn dispatch(state: &mut State, ev: &CacheEvent) {
        let mut candidates: Vec<u64> = state
            .by_resource
            .get(resource_prefix(&ev.obj.key))
            .into_iter()
            .flatten()
            .copied()
            .collect();
        for node in [
            ev.obj.node.as_ref(),
            ev.prev.as_ref().and_then(|p| p.node.as_ref()),
        ]
        .into_iter()
        .flatten()
        {
            candidates.extend(state.by_node.get(node).into_iter().flatten().copied());
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut closed = Vec::new();
        for id in candidates {
            let Some(w) = state.watchers.get(&id) else {
                continue;
            };
            let Some(t) = Self::translate(&w.filter, ev) else {
                continue;
            };
            if w.tx.try_send((t, Arc::clone(&ev.obj))).is_err() {
                // Full or gone: close it; the client resumes from the last revision it saw.
                closed.push(id);
            }
        }
        for id in closed {
            Self::unregister(state, id);
        }
    }

    fn unregister(state: &mut State, id: u64) {
        if let Some(w) = state.watchers.remove(&id) {
            let index = match &w.node {
                Some(node) => state.by_node.get_mut(node),
                None => state.by_resource.get_mut(&w.resource_prefix),
            };
            if let Some(set) = index {
                set.remove(&id);
            }
        }
    }

    /// The revision the cache has applied.
    pub fn revision(&self) -> Revision {
        self.read().revision
    }

    /// Waits until the cache has applied `revision`, at most `limit`.
    pub async fn wait_for(&self, revision: Revision, limit: Duration) -> Result<(), CacheError> {
        let mut rx = self.revision_tx.subscribe();
        let reached = tokio::time::timeout(limit, async {
            loop {
                if *rx.borrow_and_update() >= revision && self.read().ready {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        match reached {
            Ok(()) => Ok(()),
            Err(_) => Err(CacheError::Timeout {
                requested: revision,
                current: self.revision(),
            }),
        }
    }

    /// One object of `kind`, decoded: for the server's own checks (authentication, admission,
    /// authorization) that read what the cache holds without a request of their own.
    pub fn object(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key = registry::by_kind(kind).key(namespace, name);
        serde_json::from_slice(&self.get(&key)?.json).ok()
    }

    /// One object.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.read().objects.get(key).cloned()
    }

    /// Objects matching `filter` in key order, after `continue_after`, at most `limit` (0: all).
    pub fn list(&self, filter: &Filter, continue_after: Option<&str>, limit: usize) -> ListResult {
        let state = self.read();
        let mut items = Vec::new();
        let mut next = None;
        let start = continue_after
            .filter(|k| *k >= filter.prefix.as_str())
            .unwrap_or(filter.prefix.as_str())
            .to_owned();
        let mut take = |obj: &Arc<CachedObject>| -> bool {
            if continue_after == Some(obj.key.as_str()) || !filter.matches(obj) {
                return true;
            }
            if limit > 0 && items.len() == limit {
                next = items.last().map(|o: &Arc<CachedObject>| o.key.clone());
                return false;
            }
            items.push(Arc::clone(obj));
            true
        };
        if let Some(node) = filter.node() {
            for key in state
                .pods_by_node
                .get(node)
                .into_iter()
                .flatten()
                .filter(|k| k.as_str() >= start.as_str())
            {
                if let Some(obj) = state.objects.get(key)
                    && !take(obj)
                {
                    break;
                }
            }
        } else {
            for (key, obj) in state.objects.range(start..) {
                if !key.starts_with(&filter.prefix) || !take(obj) {
                    break;
                }
            }
        }
        ListResult {
            items,
            revision: state.revision,
            continue_after: next,
        }
    }

    /// Starts a watch. With `after`, events after that revision are replayed from history (or
    /// `Gone`); without it, the current objects come first as ADDED events.
    pub fn watch(
        self: &Arc<Self>,
        filter: Filter,
        after: Option<Revision>,
    ) -> Result<WatchHandle, CacheError> {
        let mut state = self.write();
        let initial: Vec<WatchItem> = match after {
            Some(rev) if rev < state.oldest => {
                return Err(CacheError::Gone {
                    requested: rev,
                    oldest: state.oldest,
                });
            }
            Some(rev) => {
                let start = state.log.partition_point(|e| e.revision <= rev);
                state
                    .log
                    .range(start..)
                    .filter_map(|ev| Self::translate(&filter, ev).map(|t| (t, Arc::clone(&ev.obj))))
                    .collect()
            }
            None => state
                .objects
                .range(filter.prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&filter.prefix))
                .filter(|(_, o)| filter.matches(o))
                .map(|(_, o)| (EventType::Added, Arc::clone(o)))
                .collect(),
        };
        let (tx, rx) = mpsc::channel(self.watcher_buffer);
        let id = state.next_id;
        state.next_id += 1;
        let node = filter.node().map(str::to_owned);
        let resource_prefix = resource_prefix(&filter.prefix).to_owned();
        match &node {
            Some(n) => state.by_node.entry(n.clone()).or_default().insert(id),
            None => state
                .by_resource
                .entry(resource_prefix.clone())
                .or_default()
                .insert(id),
        };
        state.watchers.insert(
            id,
            Watcher {
                filter,
                resource_prefix,
                node,
                tx,
            },
        );
        Ok(WatchHandle {
            initial: initial.into(),
            rx,
            id,
            cache: Arc::clone(self),
        })
    }

    /// How many objects are stored under `prefix` (for metrics).
    pub fn count(&self, prefix: &str) -> usize {
        self.read()
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .count()
    }

    /// Every object under `prefix`, in key order (for metrics).
    pub fn all(&self, prefix: &str) -> Vec<Arc<CachedObject>> {
        self.read()
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, obj)| Arc::clone(obj))
            .collect()
    }

    /// How many watchers are registered (for metrics and tests).
    pub fn watcher_count(&self) -> usize {
        self.read().watchers.len()
    }
}

/// The cache closed a watch that fell too far behind; the watcher must start over.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the watch fell behind and was closed")]
pub struct WatchClosed;

/// A registered watch. Dropping it unregisters the watcher.
pub struct WatchHandle {
    initial: VecDeque<WatchItem>,
    rx: mpsc::Receiver<WatchItem>,
    id: u64,
    cache: Arc<WatchCache>,
}

impl WatchHandle {
    /// The next event; `None` when the cache closed this watch.
    pub async fn next(&mut self) -> Option<WatchItem> {
        match self.initial.pop_front() {
            Some(item) => Some(item),
            None => self.rx.recv().await,
        }
    }

    /// The revision up to which every matching event has been delivered to this handle's queue.
    pub fn dispatched_revision(&self) -> Revision {
        self.cache.revision()
    }

    /// How many initial (replayed or current-state) events remain.
    pub fn initial_len(&self) -> usize {
        self.initial.len()
    }

    /// An event already queued, without waiting; `Err` once the cache has closed this watch
    /// (it fell too far behind) and nothing is left.
    pub fn try_next_or_closed(&mut self) -> Result<Option<WatchItem>, WatchClosed> {
        if let Some(item) = self.initial.pop_front() {
            return Ok(Some(item));
        }
        match self.rx.try_recv() {
            Ok(item) => Ok(Some(item)),
            Err(mpsc::error::TryRecvError::Empty) => Ok(None),
            Err(mpsc::error::TryRecvError::Disconnected) => Err(WatchClosed),
        }
    }

    /// An event already queued, without waiting.
    pub fn try_next(&mut self) -> Option<WatchItem> {
        self.initial.pop_front().or_else(|| self.rx.try_recv().ok())
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        let mut state = self.cache.write();
        WatchCache::unregister(&mut state, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use everynode_api::selector::{parse_field_selector, parse_label_selector};
    use everynode_store::MemoryStore;
    use serde_json::json;

    fn pod(name: &str, node: &str, app: &str) -> Bytes {
        Bytes::from(
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default", "labels": {"app": app}}, "spec": {"nodeName": node}}))
            .expect("json"),
        )
    }

    fn filter(fields: &str, labels: &str) -> Filter {
        Filter {
            prefix: "/core/pods/".into(),
            labels: parse_label_selector(labels).expect("labels"),
            fields: parse_field_selector(fields).expect("fields"),
        }
    }

    /// Creates pods `{prefix}{i}` on node "n" for each i of `range`.
    async fn create_pods(store: &Arc<dyn Store>, prefix: &str, range: std::ops::Range<usize>) {
        for i in range {
            let name = format!("{prefix}{i}");
            store
                .create(&format!("/core/pods/default/{name}"), pod(&name, "n", "x"))
                .await
                .expect("create");
        }
    }

    async fn started() -> (Arc<WatchCache>, Arc<dyn Store>) {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(1000));
        let cache = WatchCache::new(1000, 16);
        tokio::spawn(Arc::clone(&cache).run(Arc::clone(&store)));
        cache
            .wait_for(0, Duration::from_secs(5))
            .await
            .expect("ready");
        (cache, store)
    }

    #[tokio::test]
    async fn node_indexed_watch_sees_only_its_node() {
        let (cache, store) = started().await;
        let mut n1 = cache
            .watch(filter("spec.nodeName=n1", ""), Some(0))
            .expect("watch");
        let mut all = cache.watch(filter("", ""), Some(0)).expect("watch");
        store
            .create("/core/pods/default/a", pod("a", "n2", "x"))
            .await
            .expect("create");
        store
            .create("/core/pods/default/b", pod("b", "n1", "x"))
            .await
            .expect("create");
        let (t, o) = n1.next().await.expect("event");
        assert_eq!(
            (t, o.key.as_str()),
            (EventType::Added, "/core/pods/default/b")
        );
        assert_eq!(all.next().await.expect("a").1.key, "/core/pods/default/a");
        assert_eq!(all.next().await.expect("b").1.key, "/core/pods/default/b");
        cache
            .wait_for(2, Duration::from_secs(5))
            .await
            .expect("applied");
        assert!(
            n1.try_next().is_none(),
            "n2's pod never reached n1's watcher"
        );
        let listed = cache.list(&filter("spec.nodeName=n1", ""), None, 0);
        assert_eq!(listed.items.len(), 1);
    }

    #[tokio::test]
    async fn leaving_the_selection_is_a_delete() {
        let (cache, store) = started().await;
        let kv = store
            .create("/core/pods/default/a", pod("a", "n1", "web"))
            .await
            .expect("create");
        cache
            .wait_for(kv.mod_revision, Duration::from_secs(5))
            .await
            .expect("applied");
        let mut web = cache.watch(filter("", "app=web"), None).expect("watch");
        assert_eq!(web.next().await.expect("initial").0, EventType::Added);
        store
            .update(
                "/core/pods/default/a",
                pod("a", "n1", "db"),
                kv.mod_revision,
            )
            .await
            .expect("relabel");
        let (t, o) = web.next().await.expect("event");
        assert_eq!(t, EventType::Deleted);
        assert!(String::from_utf8_lossy(&o.json).contains("\"resourceVersion\":\"2\""));
    }

    #[tokio::test]
    async fn pagination_and_slow_watchers() {
        let (cache, store) = started().await;
        create_pods(&store, "p", 0..5).await;
        cache
            .wait_for(5, Duration::from_secs(5))
            .await
            .expect("applied");
        let first = cache.list(&filter("", ""), None, 2);
        assert_eq!(first.items.len(), 2);
        let next = first.continue_after.expect("more");
        let rest = cache.list(&filter("", ""), Some(&next), 0);
        assert_eq!(rest.items.len(), 3);
        assert!(rest.continue_after.is_none());
        // Slow watcher: buffer 16, more events than that → closed.
        let mut slow = cache.watch(filter("", ""), None).expect("watch");
        create_pods(&store, "q", 0..20).await;
        cache
            .wait_for(25, Duration::from_secs(5))
            .await
            .expect("applied");
        let mut got = 0;
        while slow.next().await.is_some() {
            got += 1;
        }
        assert!(got < 25, "a watcher that falls behind is closed, got {got}");
        assert_eq!(cache.watcher_count(), 0);
    }

    #[tokio::test]
    async fn watch_from_a_revision_older_than_the_history_is_gone() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(1000));
        let cache = WatchCache::new(3, 16);
        tokio::spawn(Arc::clone(&cache).run(Arc::clone(&store)));
        cache
            .wait_for(0, Duration::from_secs(5))
            .await
            .expect("following the store");
        create_pods(&store, "p", 0..6).await;
        cache
            .wait_for(6, Duration::from_secs(5))
            .await
            .expect("applied");
        assert!(matches!(
            cache.watch(filter("", ""), Some(1)),
            Err(CacheError::Gone {
                requested: 1,
                oldest: 3
            })
        ));
        let mut kept = cache
            .watch(filter("", ""), Some(3))
            .expect("within the history");
        assert_eq!(kept.next().await.expect("event").1.revision, 4);
    }
}
