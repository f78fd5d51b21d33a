//! Runs the three endpoint controllers over the shared informers: each hears of the changes
//! that concern a Service, queues the Service's key, and its workers carry out what the pure
//! plans (`subsets`, `slices`, `mirroring`) decide.

use super::mirroring;
use super::pod_endpoint::{EndpointView, is_external_name, selector, selects};
use super::queue::Queue;
use super::slices::{self, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, SlicePlan};
use super::subsets::{self, EndpointsWrite};
use crate::events::Recorder;
use crate::stores::{Change, Informers};
use everynode_clock::SharedClock;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Upstream's `--concurrent-endpoint-syncs`, `--concurrent-service-endpoint-syncs` and
/// `--mirroring-concurrent-service-endpoint-syncs` defaults.
const WORKERS: usize = 5;

/// A Service's (and its Endpoints') namespace and name.
type Key = (String, String);

fn key_of<K: Resource>(o: &K) -> Key {
    (
        o.meta().namespace.clone().unwrap_or_default(),
        o.meta().name.clone().unwrap_or_default(),
    )
}

fn lookup<K>(store: &Store<K>, key: &Key) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(&key.1).within(&key.0))
}

/// Why a sync is tried again. Every variant is retryable: the queue brings the key back with
/// backoff.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// This controller's own writes are not in its cache yet; acting now could duplicate them.
    #[error("EndpointSlice informer cache is out of date")]
    StaleCache,
    #[error("skipping pods on nodes not found yet: {0}")]
    UnknownNodes(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Services among `services` whose selector picks the pod in either version.
fn services_of(services: &Store<Service>, change: &Change<Pod>) -> Vec<Key> {
    let (old, new) = (change.old.as_deref(), change.new.as_deref());
    if let (Some(old), Some(new)) = (old, new)
        && EndpointView::of(old) == EndpointView::of(new)
    {
        return Vec::new();
    }
    let Some(namespace) = new.or(old).and_then(|p| p.metadata.namespace.as_deref()) else {
        return Vec::new();
    };
    services
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
        .filter(|s| {
            selector(s).is_some_and(|sel| {
                [old, new]
                    .into_iter()
                    .flatten()
                    .any(|p| selects(sel, p.metadata.labels.as_ref()))
            })
        })
        .map(|s| key_of(s.as_ref()))
        .collect()
}

/// Runs `workers` tasks taking keys from `queue` through `sync` until the process ends.
async fn work<F, Fut>(queue: Arc<Queue<Key>>, workers: usize, name: &'static str, sync: F)
where
    F: Fn(Key) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), SyncError>> + Send,
{
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (queue, sync) = (Arc::clone(&queue), sync.clone());
            tokio::spawn(async move {
                loop {
                    let key = queue.next().await;
                    let result = sync(key.clone()).await;
                    if let Err(e) = &result {
                        tracing::debug!(controller = name, namespace = %key.0, name = %key.1, error = %e, "sync failed; retrying");
                    }
                    queue.done(key, result.is_err());
                }
            })
        })
        .collect();
    for task in tasks {
        // A worker ends only by panicking; the others go on.
        let Err(e) = task.await;
        tracing::error!(controller = name, error = %e, "endpoint worker ended");
    }
}

/// Adds every key `keys` yields to `queue`.
fn feed<S>(queue: &Arc<Queue<Key>>, keys: S)
where
    S: futures::Stream<Item = Vec<Key>> + Send + 'static,
{
    let queue = Arc::clone(queue);
    tokio::spawn(async move {
        futures::pin_mut!(keys);
        while let Some(keys) = keys.next().await {
            for key in keys {
                queue.add(key);
            }
        }
    });
}

fn service_keys(c: Change<Service>) -> Vec<Key> {
    c.new
        .or(c.old)
        .map(|s| key_of(s.as_ref()))
        .into_iter()
        .collect()
}

/// Upstream's endpoints controller: one Endpoints object per Service with a selector.
pub async fn run_endpoints(informers: Informers, clock: SharedClock) {
    let client = informers.client();
    let (services, pods, endpoints) = (
        informers.services(),
        informers.pods(),
        informers.endpoints(),
    );
    let queue = Queue::new();
    let service_store = services.store();
    feed(&queue, services.changes().map(service_keys));
    feed(
        &queue,
        pods.changes().map(move |c| services_of(&service_store, &c)),
    );
    // A deleted Endpoints object is made again; its other changes are the controller's own.
    feed(
        &queue,
        endpoints.changes().map(|c| match (c.old, c.new) {
            (Some(old), None) => vec![key_of(old.as_ref())],
            _ => Vec::new(),
        }),
    );
    let (services, pods, endpoints) = (
        services.ready_store().await,
        pods.ready_store().await,
        endpoints.ready_store().await,
    );
    // Endpoints left from Services deleted while no controller ran go at start, as upstream's
    // `checkLeftoverEndpoints`.
    for e in endpoints.state() {
        if lookup(&services, &key_of(e.as_ref())).is_none() {
            queue.add(key_of(e.as_ref()));
        }
    }
    let events = Recorder::new(client.clone(), "endpoint-controller", clock);
    work(queue, WORKERS, "endpoint-controller", move |key: Key| {
        let (client, services, pods, endpoints, events) = (
            client.clone(),
            services.clone(),
            pods.clone(),
            endpoints.clone(),
            events.clone(),
        );
        async move { sync_endpoints(&client, &services, &pods, &endpoints, &events, key).await }
    })
    .await;
}

async fn sync_endpoints(
    client: &Client,
    services: &Store<Service>,
    pods: &Store<Pod>,
    endpoints: &Store<Endpoints>,
    events: &Recorder,
    key: Key,
) -> Result<(), SyncError> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), &key.0);
    let Some(service) = lookup(services, &key) else {
        // The Service is gone, and so go its endpoints.
        return match api.delete(&key.1, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        };
    };
    // An ExternalName is a DNS alias, and a Service without a selector has its Endpoints
    // written by someone else.
    if is_external_name(&service) || selector(&service).is_none() {
        return Ok(());
    }
    let current = lookup(endpoints, &key);
    let (result, verb) = match subsets::plan(&service, &pods.state(), current.as_deref()) {
        EndpointsWrite::Unchanged => return Ok(()),
        EndpointsWrite::Create(e) => (api.create(&PostParams::default(), &e).await, "create"),
        EndpointsWrite::Update(e) => (
            api.replace(&key.1, &PostParams::default(), &e).await,
            "update",
        ),
    };
    match result {
        Ok(_) => Ok(()),
        // A namespace being deleted takes no new objects; its Service is about to go too.
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("being terminated") => {
            Ok(())
        }
        Err(e) => {
            let (reason, what) = match verb {
                "create" => ("FailedToCreateEndpoint", "create"),
                _ => ("FailedToUpdateEndpoint", "update"),
            };
            events
                .record(
                    service.object_ref(&()),
                    true,
                    reason,
                    &format!("Failed to {what} endpoint {}/{}: {e}", key.0, key.1),
                )
                .await;
            Err(e.into())
        }
    }
}

/// What this controller last wrote to each slice, by Service: the generation it made, or its
/// deletion. Until the cache shows those, it is stale for that Service (upstream's
/// `EndpointSliceTracker`), and the changes it hears of that match them are its own echo.
#[derive(Default)]
struct Written {
    by_service: Mutex<HashMap<Key, HashMap<String, Expect>>>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    Generation(i64),
    Deleted,
}

fn uid_and_generation(slice: &EndpointSlice) -> (String, i64) {
    (
        slice.metadata.uid.clone().unwrap_or_default(),
        slice.metadata.generation.unwrap_or(0),
    )
}

impl Written {
    fn wrote(&self, key: &Key, slice: &EndpointSlice) {
        let (uid, generation) = uid_and_generation(slice);
        lock(&self.by_service)
            .entry(key.clone())
            .or_default()
            .insert(uid, Expect::Generation(generation));
    }

    fn deleted(&self, key: &Key, slice: &EndpointSlice) {
        let (uid, _) = uid_and_generation(slice);
        lock(&self.by_service)
            .entry(key.clone())
            .or_default()
            .insert(uid, Expect::Deleted);
    }

    /// Whether `cached` (the Service's slices in the cache) lacks a write of ours; what the
    /// cache has caught up with is forgotten.
    fn stale(&self, key: &Key, cached: &[Arc<EndpointSlice>]) -> bool {
        let mut all = lock(&self.by_service);
        let Some(expected) = all.get_mut(key) else {
            return false;
        };
        let seen: HashMap<String, i64> = cached.iter().map(|s| uid_and_generation(s)).collect();
        expected.retain(|uid, expect| match (expect, seen.get(uid)) {
            (Expect::Deleted, None) => false,
            (Expect::Generation(g), Some(s)) => s < g,
            _ => true,
        });
        let stale = !expected.is_empty();
        if !stale {
            all.remove(key);
        }
        stale
    }

    /// Whether a change the informer reports is only the echo of a write of ours.
    fn is_echo(&self, change: &Change<EndpointSlice>) -> bool {
        let all = lock(&self.by_service);
        let expect = |slice: &EndpointSlice| {
            let (uid, generation) = uid_and_generation(slice);
            let key = slice_service(slice)?;
            all.get(&key)?.get(&uid).copied().map(|e| (e, generation))
        };
        match (&change.old, &change.new) {
            (_, Some(new)) => matches!(expect(new), Some((Expect::Generation(g), s)) if g == s),
            (Some(old), None) => matches!(expect(old), Some((Expect::Deleted, _))),
            (None, None) => true,
        }
    }

    fn forget(&self, key: &Key) {
        lock(&self.by_service).remove(key);
    }
}

/// The Service a slice is labelled for.
fn slice_service(slice: &EndpointSlice) -> Option<Key> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((slice.metadata.namespace.clone()?, name.clone()))
}

fn managed_by(slice: &EndpointSlice, manager: &str) -> bool {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str)
        == Some(manager)
}

/// The slices of the Service `key` that `manager` manages, not being deleted.
fn slices_of(store: &Store<EndpointSlice>, key: &Key, manager: &str) -> Vec<Arc<EndpointSlice>> {
    store
        .state()
        .into_iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .filter(|s| managed_by(s, manager) && slice_service(s).as_ref() == Some(key))
        .collect()
}

/// Slice changes that are not this controller's echo, as the keys of their Services.
fn slice_keys(
    written: &Arc<Written>,
    manager: &'static str,
) -> impl FnMut(Change<EndpointSlice>) -> Vec<Key> + use<> {
    let written = Arc::clone(written);
    move |c| {
        let slice = c.new.as_deref().or(c.old.as_deref());
        match slice {
            Some(s) if managed_by(s, manager) && !written.is_echo(&c) => {
                slice_service(s).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }
}

/// Carries out a slice plan: creates, then updates, then deletes, recording each write.
async fn execute(
    client: &Client,
    written: &Written,
    key: &Key,
    plan: SlicePlan,
) -> Result<(), kube::Error> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &key.0);
    for slice in plan.create {
        let made = api.create(&PostParams::default(), &slice).await?;
        written.wrote(key, &made);
    }
    for slice in plan.update {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let made = api.replace(&name, &PostParams::default(), &slice).await?;
        written.wrote(key, &made);
    }
    for slice in plan.delete {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: slice
                .metadata
                .uid
                .clone()
                .map(|uid| kube::api::Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => written.deleted(key, &slice),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Upstream's EndpointSlice controller: slices of at most 100 endpoints for every Service with
/// a selector.
pub async fn run_slices(informers: Informers, clock: SharedClock) {
    let client = informers.client();
    let (services, pods, nodes, slices) = (
        informers.services(),
        informers.pods(),
        informers.nodes(),
        informers.endpoint_slices(),
    );
    let queue = Queue::new();
    let written = Arc::new(Written::default());
    let service_store = services.store();
    feed(&queue, services.changes().map(service_keys));
    feed(
        &queue,
        pods.changes().map(move |c| services_of(&service_store, &c)),
    );
    feed(
        &queue,
        slices
            .changes()
            .map(slice_keys(&written, slices::CONTROLLER_NAME)),
    );
    let (services, pods, nodes, slices) = (
        services.ready_store().await,
        pods.ready_store().await,
        nodes.ready_store().await,
        slices.ready_store().await,
    );
    let events = Recorder::new(client.clone(), "endpointslice-controller", clock);
    work(
        queue,
        WORKERS,
        "endpointslice-controller",
        move |key: Key| {
            let (client, services, pods, nodes, slices, events, written) = (
                client.clone(),
                services.clone(),
                pods.clone(),
                nodes.clone(),
                slices.clone(),
                events.clone(),
                Arc::clone(&written),
            );
            async move {
                let Some(service) = lookup(&services, &key) else {
                    // Its slices are owned by it and go with it.
                    written.forget(&key);
                    return Ok(());
                };
                if is_external_name(&service) || selector(&service).is_none() {
                    return Ok(());
                }
                let existing = slices_of(&slices, &key, slices::CONTROLLER_NAME);
                if written.stale(&key, &existing) {
                    return Err(SyncError::StaleCache);
                }
                let zone = |name: &str| -> Option<Option<String>> {
                    let node: Arc<Node> = nodes.get(&ObjectRef::new(name))?;
                    Some(node.labels().get(slices::ZONE_LABEL).cloned())
                };
                let all = pods.state();
                let mut plan = slices::plan(
                    &service,
                    &all,
                    &zone,
                    &existing,
                    slices::MAX_ENDPOINTS_PER_SLICE,
                );
                slices::stamp(&mut plan, &service, &all);
                let unknown = std::mem::take(&mut plan.unknown_nodes);
                if let Err(e) = execute(&client, &written, &key, plan).await {
                    events
                        .record(
                            service.object_ref(&()),
                            true,
                            "FailedToUpdateEndpointSlices",
                            &format!(
                                "Error updating Endpoint Slices for Service {}/{}: {e}",
                                key.0, key.1
                            ),
                        )
                        .await;
                    return Err(e.into());
                }
                if !unknown.is_empty() {
                    let names: Vec<String> = unknown.into_iter().collect();
                    return Err(SyncError::UnknownNodes(names.join(", ")));
                }
                Ok(())
            }
        },
    )
    .await;
}

/// Upstream's EndpointSlice mirroring controller: slices for Endpoints written by hand for a
/// Service without a selector.
pub async fn run_mirroring(informers: Informers, clock: SharedClock) {
    let client = informers.client();
    let (services, endpoints, slices) = (
        informers.services(),
        informers.endpoints(),
        informers.endpoint_slices(),
    );
    let queue = Queue::new();
    let written = Arc::new(Written::default());
    feed(&queue, services.changes().map(service_keys));
    feed(
        &queue,
        endpoints.changes().map(|c| {
            c.new
                .or(c.old)
                .map(|e| key_of(e.as_ref()))
                .into_iter()
                .collect()
        }),
    );
    feed(
        &queue,
        slices
            .changes()
            .map(slice_keys(&written, mirroring::CONTROLLER_NAME)),
    );
    let (services, endpoints, slices) = (
        services.ready_store().await,
        endpoints.ready_store().await,
        slices.ready_store().await,
    );
    let events = Recorder::new(client.clone(), "endpointslice-mirroring-controller", clock);
    work(queue, WORKERS, "endpointslicemirroring-controller", move |key: Key| {
        let (client, services, endpoints, slices, events, written) = (
            client.clone(),
            services.clone(),
            endpoints.clone(),
            slices.clone(),
            events.clone(),
            Arc::clone(&written),
        );
        async move {
            let existing = slices_of(&slices, &key, mirroring::CONTROLLER_NAME);
            if written.stale(&key, &existing) {
                return Err(SyncError::StaleCache);
            }
            let service = lookup(&services, &key);
            let source = lookup(&endpoints, &key);
            let (plan, skipped) = match (
                mirroring::should_mirror(service.as_deref(), source.as_deref()),
                source,
            ) {
                (true, Some(source)) => {
                    let (plan, skipped) = mirroring::plan(&source, &existing);
                    (plan, Some((source, skipped)))
                }
                _ => (
                    SlicePlan {
                        delete: existing.iter().map(|s| s.as_ref().clone()).collect(),
                        ..Default::default()
                    },
                    None,
                ),
            };
            if let Some((source, skipped)) = skipped {
                if skipped.invalid > 0 {
                    let message = format!(
                        "Skipped {} invalid IP addresses when mirroring to EndpointSlices",
                        skipped.invalid
                    );
                    events
                        .record(source.object_ref(&()), true, "InvalidIPAddress", &message)
                        .await;
                }
                if skipped.total > skipped.invalid {
                    let message = format!(
                        "A max of {} addresses can be mirrored to EndpointSlices per Endpoints subset. {} addresses were skipped",
                        mirroring::MAX_PER_SUBSET,
                        skipped.total
                    );
                    events
                        .record(source.object_ref(&()), true, "TooManyAddressesToMirror", &message)
                        .await;
                }
            }
            execute(&client, &written, &key, plan).await?;
            Ok(())
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(uid: &str, generation: i64) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": uid, "namespace": "default", "uid": uid, "generation": generation,
                    "labels": {SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: slices::CONTROLLER_NAME}},
                "addressType": "IPv4", "endpoints": []
            }))
            .expect("slice"),
        )
    }

    #[test]
    fn the_cache_is_stale_until_it_shows_every_write_of_ours() {
        let written = Written::default();
        let key: Key = ("default".into(), "web".into());
        written.wrote(&key, &slice("a", 2));
        assert!(written.stale(&key, &[]), "created, not yet seen");
        assert!(written.stale(&key, &[slice("a", 1)]), "an older generation");
        assert!(!written.stale(&key, &[slice("a", 2)]));
        written.deleted(&key, &slice("a", 2));
        assert!(written.stale(&key, &[slice("a", 2)]), "deleted, still seen");
        assert!(!written.stale(&key, &[]));
    }

    #[test]
    fn the_echo_of_a_write_does_not_queue_the_service_again() {
        let written = Written::default();
        let key: Key = ("default".into(), "web".into());
        written.wrote(&key, &slice("a", 2));
        let echo = Change {
            old: None,
            new: Some(slice("a", 2)),
        };
        assert!(written.is_echo(&echo));
        let someone_else = Change {
            old: Some(slice("a", 2)),
            new: Some(slice("a", 3)),
        };
        assert!(!written.is_echo(&someone_else));
        let deleted = Change {
            old: Some(slice("a", 2)),
            new: None,
        };
        assert!(!written.is_echo(&deleted), "we did not delete it");
    }

    #[test]
    fn only_changes_that_show_in_endpoints_wake_the_services_selecting_the_pod() {
        let (store, mut writer) = kube::runtime::reflector::store::<Service>();
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}}}))
        .expect("svc");
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(svc));
        let pod = |labels: serde_json::Value, ip: &str| -> Arc<Pod> {
            Arc::new(
                serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "default", "labels": labels},
                "status": {"podIP": ip}}))
                .expect("pod"),
            )
        };
        let web = pod(json!({"app": "web"}), "10.0.0.1");
        let moved = pod(json!({"app": "web"}), "10.0.0.2");
        let relabelled = pod(json!({"app": "db"}), "10.0.0.1");
        let change = |old: &Arc<Pod>, new: &Arc<Pod>| Change {
            old: Some(old.clone()),
            new: Some(new.clone()),
        };
        assert!(services_of(&store, &change(&web, &web)).is_empty());
        assert_eq!(services_of(&store, &change(&web, &moved)).len(), 1);
        assert_eq!(
            services_of(&store, &change(&web, &relabelled)).len(),
            1,
            "it left the Service"
        );
        assert!(services_of(&store, &change(&relabelled, &relabelled)).is_empty());
    }
}
