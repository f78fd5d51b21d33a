//! The EndpointSlices of a Service selecting the bench's DaemonSet: how long after the last pod
//! turned Ready its slices list exactly the DaemonSet's pods, all ready, and how many slice
//! writes that took (each write is one watch event).
//!
//! After a surge rollout the last change the slices must show is often not a pod turning Ready
//! but an old pod's termination and removal, which the DaemonSet controller starts only once
//! its replacement is available. So the convergence is also timed from the last change of a
//! pod that the slices show (readiness, termination, removal), as a watch of the pods saw it:
//! that is the slice controllers' own lag, apart from the rollout's tail.

use super::stage_error;
use crate::Error;
use everynode_clock::Clock;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

const SERVICE: &str = "hollow-agent";

/// A watch on the Service's slices, counting every change it sees, and a watch on the pods,
/// noting when the last change the slices show happened.
pub struct SliceWatch {
    store: Store<EndpointSlice>,
    writes: Arc<AtomicU64>,
    last_pod_change: Arc<Mutex<Option<jiff::Timestamp>>>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for SliceWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One convergence: how long after the last pod's Ready transition and after the last pod
/// change of any kind the slices show, and the writes since the previous one.
pub struct Convergence {
    pub after_last_ready: Duration,
    pub after_last_pod_change: Duration,
    pub writes: u64,
    pub slices: usize,
}

/// What of a pod its endpoint shows: (ready, terminating).
fn endpoint_state(pod: &Pod) -> (bool, bool) {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    (ready, pod.metadata.deletion_timestamp.is_some())
}

/// Watches the DaemonSet's pods and stamps `last_change` with the time each change of a pod's
/// endpoint state (or its removal) is seen.
async fn watch_pod_changes(client: Client, last_change: Arc<Mutex<Option<jiff::Timestamp>>>) {
    let api: Api<Pod> = Api::namespaced(client, "default");
    let config = watcher::Config::default().labels(&format!("name={SERVICE}"));
    let mut known: HashMap<String, (bool, bool)> = HashMap::new();
    let events = watcher(api, config).default_backoff();
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        let changed = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                let state = endpoint_state(&pod);
                known.insert(pod.metadata.uid.unwrap_or_default(), state) != Some(state)
            }
            Ok(watcher::Event::Delete(pod)) => {
                known.remove(pod.metadata.uid.as_deref().unwrap_or_default());
                true
            }
            _ => false,
        };
        if changed {
            let now = everynode_clock::SystemClock.now();
            *last_change.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
        }
    }
}

impl SliceWatch {
    /// Creates the Service (port 80 to the pods' 8080) and starts watching its slices.
    pub async fn start(client: &Client) -> Result<SliceWatch, Error> {
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": SERVICE},
            "spec": {"selector": {"name": SERVICE}, "ports": [{"port": 80, "targetPort": 8080}]}
        }))
        .map_err(|e| stage_error("service", e))?;
        services
            .create(&PostParams::default(), &service)
            .await
            .map_err(|e| stage_error("service", e))?;
        let api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
        let config =
            watcher::Config::default().labels(&format!("kubernetes.io/service-name={SERVICE}"));
        let (store, writer) = reflector::store();
        let writes = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&writes);
        let last_pod_change = Arc::new(Mutex::new(None));
        let pod_task = tokio::spawn(watch_pod_changes(
            client.clone(),
            Arc::clone(&last_pod_change),
        ));
        let slice_task = tokio::spawn(async move {
            let events = reflector::reflector(writer, watcher(api, config).default_backoff());
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                if let Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) = event {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(SliceWatch {
            store,
            writes,
            last_pod_change,
            tasks: [slice_task, pod_task],
        })
    }

    /// Waits until the slices list `n` endpoints, every one ready and not terminating, for
    /// exactly the DaemonSet's current pods.
    pub async fn converged(
        &self,
        client: &Client,
        stage: &'static str,
        n: usize,
        timeout: Duration,
    ) -> Result<Convergence, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let slices = self.store.state();
            let endpoints: Vec<_> = slices.iter().flat_map(|s| s.endpoints.iter()).collect();
            let all_ready = endpoints.iter().all(|e| {
                e.conditions
                    .as_ref()
                    .is_some_and(|c| c.ready == Some(true) && c.terminating != Some(true))
            });
            if endpoints.len() == n && all_ready {
                let converged_at = everynode_clock::SystemClock.now();
                let (pods, last_ready) = current_pods(client, stage).await?;
                let listed: HashSet<String> = endpoints
                    .iter()
                    .filter_map(|e| e.target_ref.as_ref()?.uid.clone())
                    .collect();
                if listed == pods {
                    let after = |t: jiff::Timestamp| converged_at.duration_since(t).unsigned_abs();
                    let last_change = *self
                        .last_pod_change
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    return Ok(Convergence {
                        after_last_ready: after(last_ready),
                        after_last_pod_change: after(last_change.unwrap_or(last_ready)),
                        writes: self.writes.swap(0, Ordering::Relaxed),
                        slices: slices.len(),
                    });
                }
            }
            if Instant::now() > deadline {
                return Err(stage_error(
                    stage,
                    format!(
                        "the Service's slices list {} endpoints, not {n} ready ones",
                        endpoints.len()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The uids of the DaemonSet's Ready pods, and when the last of them turned Ready.
async fn current_pods(
    client: &Client,
    stage: &'static str,
) -> Result<(HashSet<String>, jiff::Timestamp), Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = pods
        .list(&ListParams::default().labels(&format!("name={SERVICE}")))
        .await
        .map_err(|e| stage_error(stage, e))?;
    let mut uids = HashSet::new();
    let mut last = jiff::Timestamp::UNIX_EPOCH;
    for pod in list.items {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"));
        if let Some(ready) = ready {
            if let Some(t) = ready.last_transition_time.as_ref() {
                last = last.max(t.0);
            }
            uids.extend(pod.metadata.uid);
        }
    }
    Ok((uids, last))
}
