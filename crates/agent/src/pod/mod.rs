//! Pods on this node: one worker per pod (`worker.rs`) walking the lifecycle as typed states,
//! one supervisor per container (`container.rs`), and the status they report (`status.rs`).

pub mod admission;
pub mod backoff;
pub mod container;
pub mod lifecycle;
pub mod status;
pub mod worker;

use crate::events::Recorder;
use crate::runtime::Runtime;
use everynode_clock::SharedClock;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use status::{ContainerView, PodView};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The pod's namespace (`default` when unset, as the API server defaults it).
pub fn namespace_of(pod: &Pod) -> String {
    pod.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

/// What every pod worker on one node shares.
pub struct NodeShared {
    pub client: Client,
    pub runtime: Arc<dyn Runtime>,
    pub events: Recorder,
    pub node_name: String,
    pub host_ip: String,
    /// The node as last read (labels and allocatable for admission).
    pub node: watch::Receiver<Arc<Node>>,
    /// Pods admitted and not yet finished, by uid (admission counts their resources).
    pub admitted: Mutex<HashMap<String, Arc<Pod>>>,
    pub state_dir: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: usize,
    /// The agent's clock: container start and finish times, pod status times.
    pub clock: SharedClock,
    /// Set when the agent stops gracefully: the most any pod gets to terminate (beyond.md §5).
    pub shutdown_grace: std::sync::OnceLock<Duration>,
    /// The cluster DNS server for `ClusterFirst` pods, if the node has one.
    pub cluster_dns: Option<String>,
}

impl NodeShared {
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.state_dir.join("pods").join(uid)
    }

    /// Container logs of a pod, as kubelet's `/var/log/pods/<ns>_<name>_<uid>`.
    pub fn log_dir(&self, pod: &Pod) -> PathBuf {
        self.state_dir.join("logs").join(format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or(""),
            pod.metadata.uid.as_deref().unwrap_or("")
        ))
    }
}

/// One pod's worker state, shared with its container supervisors and status writer.
pub struct PodCtx {
    pub node: Arc<NodeShared>,
    /// The latest pod from the API; `None` once it is gone.
    pub pod: watch::Receiver<Option<Arc<Pod>>>,
    pub uid: String,
    pub view: Mutex<PodView>,
    /// Woken whenever `view` changes, so the status writer reports it.
    pub changed: Notify,
    /// Whether the ServiceAccount token refresher runs for this pod (it is started once).
    pub tokens_refreshing: std::sync::atomic::AtomicBool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Init,
    Regular,
}

impl PodCtx {
    /// The pod as last seen (the worker keeps the last one after the pod is gone).
    pub fn current(&self) -> Option<Arc<Pod>> {
        self.pod.borrow().clone()
    }

    pub fn update_view(&self, f: impl FnOnce(&mut PodView)) {
        if let Ok(mut v) = self.view.lock() {
            f(&mut v);
        }
        self.changed.notify_one();
    }

    pub fn update_container(&self, kind: Kind, index: usize, f: impl FnOnce(&mut ContainerView)) {
        self.update_view(|v| {
            let list = match kind {
                Kind::Init => &mut v.init_containers,
                Kind::Regular => &mut v.containers,
            };
            if let Some(c) = list.get_mut(index) {
                f(c);
            }
        });
    }

    pub fn container(&self, kind: Kind, index: usize) -> Option<ContainerView> {
        let v = self.view.lock().ok()?;
        match kind {
            Kind::Init => v.init_containers.get(index).cloned(),
            Kind::Regular => v.containers.get(index).cloned(),
        }
    }

    /// Records an event about one of the pod's containers.
    pub async fn container_event(
        &self,
        pod: &Pod,
        container: &str,
        warning: bool,
        reason: &str,
        message: &str,
    ) {
        self.node
            .events
            .pod(pod, Some(container), warning, reason, message)
            .await;
    }

    pub fn pod_ip(&self) -> String {
        self.view
            .lock()
            .map(|v| v.pod_ip.clone())
            .unwrap_or_default()
    }
}

struct WorkerHandle {
    pod: watch::Sender<Option<Arc<Pod>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts, updates and stops pod workers as pods bound to this node come and go.
pub struct PodManager {
    shared: Arc<NodeShared>,
    workers: HashMap<String, WorkerHandle>,
}

impl PodManager {
    pub fn new(shared: Arc<NodeShared>) -> PodManager {
        PodManager {
            shared,
            workers: HashMap::new(),
        }
    }

    /// A pod was added or changed.
    pub fn apply(&mut self, pod: Arc<Pod>) {
        self.workers.retain(|_, w| !w.task.is_finished());
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(w) = self.workers.get(&uid) {
            let _ = w.pod.send(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod));
        let ctx = Arc::new(PodCtx {
            node: Arc::clone(&self.shared),
            pod: rx,
            uid: uid.clone(),
            view: Mutex::new(PodView::default()),
            changed: Notify::new(),
            tokens_refreshing: std::sync::atomic::AtomicBool::new(false),
        });
        let task = tokio::spawn(worker::run(ctx));
        self.workers.insert(uid, WorkerHandle { pod: tx, task });
    }

    /// A pod is gone from the API (deleted, or bound elsewhere).
    pub fn gone(&mut self, uid: &str) {
        if let Some(w) = self.workers.get(uid) {
            let _ = w.pod.send(None);
        }
    }

    /// After a re-list: every pod not in `present` is gone.
    pub fn retain(&mut self, present: &[String]) {
        let missing: Vec<String> = self
            .workers
            .keys()
            .filter(|uid| !present.contains(uid))
            .cloned()
            .collect();
        for uid in missing {
            self.gone(&uid);
        }
    }

    /// Stops every pod (agent shutdown) and waits for their workers.
    pub async fn stop_all(mut self) {
        let workers: Vec<WorkerHandle> = self.workers.drain().map(|(_, w)| w).collect();
        for w in &workers {
            let _ = w.pod.send(None);
        }
        for w in workers {
            let _ = w.task.await;
        }
    }
}
