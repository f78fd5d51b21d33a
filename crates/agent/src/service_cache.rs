//! The Services and EndpointSlices a node's agent watches, for its Service proxy and its
//! cluster DNS: one watch of each for both.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// The label that names the Service a slice serves.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The namespace and name of the Service `slice` serves, by its label.
pub fn service_of(slice: &EndpointSlice) -> Option<(&str, &str)> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((
        slice.metadata.namespace.as_deref().unwrap_or_default(),
        name,
    ))
}

#[derive(Clone)]
pub struct ServiceCache {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    /// Woken after every change.
    pub changed: Arc<Notify>,
    /// Held, not read: the watches stop when the last clone goes.
    _watches: Arc<Watches>,
}

/// Stops both watches when the last clone of the cache goes.
struct Watches(Vec<AbortHandle>);

impl Drop for Watches {
    fn drop(&mut self) {
        for watch in &self.0 {
            watch.abort();
        }
    }
}

fn reflect<K>(api: Api<K>, changed: &Arc<Notify>) -> (Store<K>, AbortHandle)
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let changed = Arc::clone(changed);
    let task = tokio::spawn(async move {
        let events = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        );
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            // The watcher retries with backoff; it logged the error.
            if event.is_ok() {
                changed.notify_one();
            }
        }
    });
    (store, task.abort_handle())
}

impl ServiceCache {
    pub fn start(client: Client) -> ServiceCache {
        let changed = Arc::new(Notify::new());
        let (services, a) = reflect(Api::<Service>::all(client.clone()), &changed);
        let (slices, b) = reflect(Api::<EndpointSlice>::all(client), &changed);
        ServiceCache {
            services,
            slices,
            changed,
            _watches: Arc::new(Watches(vec![a, b])),
        }
    }
}
