//! Running agents: one real node (`everynode agent`), or a fleet of hollow nodes in one process.
//! Either way pods and nodes arrive through shared watches, dispatched by node name, so a fleet
//! of ten thousand hollow nodes costs two watches, not twenty thousand.

use crate::events::Recorder;
use crate::node::{self, NodeConfig};
use crate::pod::{NodeShared, PodManager};
use crate::runtime::Runtime;
use everynode_clock::{Clock, SharedClock};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// One node's agent settings.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node: NodeConfig,
    pub state_dir: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: usize,
    /// Record Normal pod events (hollow fleets turn this off to spare the API).
    pub normal_events: bool,
    /// Directory of static pod manifests, scanned every 20 s.
    pub pod_manifest_path: Option<PathBuf>,
    /// On a graceful stop, mark the node shutting down and give each pod at most this long to
    /// terminate (beyond.md §5); `None` stops pods at once without a word (hollow fleets).
    pub shutdown_grace_period: Option<Duration>,
    /// The cluster DNS server pods with `dnsPolicy: ClusterFirst` are given; without one they
    /// get the node's resolvers, with kubelet's warning.
    pub cluster_dns: Option<String>,
}

/// What the pod watch tells one node.
#[derive(Debug)]
pub enum PodEvent {
    Apply(Arc<Pod>),
    Delete(String),
    /// A (re)list finished: these uids are all the node's pods.
    Resync(Vec<String>),
}

/// Routes watch events to the agents by node name.
#[derive(Default)]
pub struct Dispatch {
    pods: Mutex<HashMap<String, mpsc::UnboundedSender<PodEvent>>>,
    nodes: Mutex<HashMap<String, watch::Sender<Arc<Node>>>>,
}

impl Dispatch {
    fn pod_sender(&self, node: &str) -> Option<mpsc::UnboundedSender<PodEvent>> {
        self.pods.lock().ok()?.get(node).cloned()
    }

    fn all_pod_senders(&self) -> Vec<(String, mpsc::UnboundedSender<PodEvent>)> {
        self.pods
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

/// Watches pods (all, or one node's with a field selector) and routes them.
async fn watch_pods(client: Client, dispatch: Arc<Dispatch>, only: Option<String>) {
    let mut config = watcher::Config::default();
    if let Some(name) = &only {
        config = config.fields(&format!("spec.nodeName={name}"));
    }
    // The agent never reads managedFields; dropping them keeps each pod worker's copy small.
    let stream = watcher(Api::<Pod>::all(client), config)
        .modify(|p| p.metadata.managed_fields = None)
        .default_backoff();
    futures::pin_mut!(stream);
    // Node of each known pod: a pod's node never changes once bound.
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut listing: HashMap<String, Vec<String>> = HashMap::new();
    while let Some(event) = stream.next().await {
        let Ok(event) = event else { continue };
        match event {
            watcher::Event::Init => listing.clear(),
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                let (Some(node), Some(uid)) = (
                    everynode_api::scheduling::bound_node(&pod).map(str::to_owned),
                    pod.metadata.uid.clone(),
                ) else {
                    continue;
                };
                if let Some(tx) = dispatch.pod_sender(&node) {
                    seen.insert(uid.clone(), node.clone());
                    listing.entry(node).or_default().push(uid);
                    let _ = tx.send(PodEvent::Apply(Arc::new(pod)));
                }
            }
            watcher::Event::Delete(pod) => {
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                if let Some(node) = seen.remove(&uid)
                    && let Some(tx) = dispatch.pod_sender(&node)
                {
                    let _ = tx.send(PodEvent::Delete(uid));
                }
            }
            watcher::Event::InitDone => {
                for (node, tx) in dispatch.all_pod_senders() {
                    let uids = listing.remove(&node).unwrap_or_default();
                    let _ = tx.send(PodEvent::Resync(uids));
                }
                listing.clear();
            }
        }
    }
}

/// Watches nodes (all, or one by name) and publishes each to its agent.
async fn watch_nodes(client: Client, dispatch: Arc<Dispatch>, only: Option<String>) {
    let mut config = watcher::Config::default();
    if let Some(name) = &only {
        config = config.fields(&format!("metadata.name={name}"));
    }
    let stream = watcher(Api::<Node>::all(client), config)
        .modify(|n| n.metadata.managed_fields = None)
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    while let Some(node) = stream.next().await {
        let Ok(node) = node else { continue };
        let Some(name) = node.metadata.name.clone() else {
            continue;
        };
        if let Ok(nodes) = dispatch.nodes.lock()
            && let Some(tx) = nodes.get(&name)
        {
            tx.send_replace(Arc::new(node));
        }
    }
}

/// Registers one node (retrying until the API answers) and returns its channels.
async fn register(
    client: &Client,
    cfg: &AgentConfig,
    dispatch: &Dispatch,
    clock: &dyn Clock,
) -> (
    watch::Receiver<Arc<Node>>,
    mpsc::UnboundedReceiver<PodEvent>,
) {
    let mut delay = Duration::from_millis(200);
    let node = loop {
        match node::register(client, &cfg.node, clock).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(error = %e, "node registration failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    };
    let (node_tx, node_rx) = watch::channel(Arc::new(node));
    let (pod_tx, pod_rx) = mpsc::unbounded_channel();
    if let Ok(mut m) = dispatch.nodes.lock() {
        m.insert(cfg.node.name.clone(), node_tx);
    }
    if let Ok(mut m) = dispatch.pods.lock() {
        m.insert(cfg.node.name.clone(), pod_tx);
    }
    (node_rx, pod_rx)
}

/// Container keys (`<pod uid>/<container>`) of the pods in `pods`.
fn container_keys(pods: &HashMap<String, Arc<Pod>>) -> Vec<String> {
    pods.iter()
        .flat_map(|(uid, p)| {
            let spec = p.spec.clone().unwrap_or_default();
            spec.init_containers
                .unwrap_or_default()
                .into_iter()
                .chain(spec.containers)
                .map(move |c| format!("{uid}/{}", c.name))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Runs one node's pods until `shutdown` fires, then stops them.
async fn run_node(
    client: Client,
    cfg: AgentConfig,
    runtime: Arc<dyn Runtime>,
    clock: SharedClock,
    node_rx: watch::Receiver<Arc<Node>>,
    mut pods: mpsc::UnboundedReceiver<PodEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let node_cfg = Arc::new(cfg.node.clone());
    let heartbeat = tokio::spawn(node::heartbeat(
        client.clone(),
        node_cfg,
        clock.clone(),
        node_rx.clone(),
    ));
    let static_pods = cfg.pod_manifest_path.clone().map(|dir| {
        let uid = node_rx.borrow().metadata.uid.clone();
        tokio::spawn(crate::static_pods::run(
            client.clone(),
            cfg.node.name.clone(),
            uid,
            dir,
            Duration::from_secs(20),
        ))
    });
    let shared = Arc::new(NodeShared {
        client: client.clone(),
        runtime: Arc::clone(&runtime),
        events: Recorder::new(
            client,
            cfg.node.name.clone(),
            cfg.normal_events,
            clock.clone(),
        ),
        node_name: cfg.node.name.clone(),
        host_ip: cfg.node.ip.clone(),
        node: node_rx,
        admitted: Mutex::new(HashMap::new()),
        state_dir: cfg.state_dir.clone(),
        log_max_bytes: cfg.log_max_bytes,
        log_max_files: cfg.log_max_files,
        clock,
        shutdown_grace: std::sync::OnceLock::new(),
        cluster_dns: cfg.cluster_dns.clone(),
    });
    let mut manager = PodManager::new(Arc::clone(&shared));
    let mut known: HashMap<String, Arc<Pod>> = HashMap::new();
    let mut cleaned = false;
    loop {
        tokio::select! {
            event = pods.recv() => {
                let Some(event) = event else { break };
                match event {
                    PodEvent::Apply(pod) => {
                        if let Some(uid) = pod.metadata.uid.clone() {
                            known.insert(uid, Arc::clone(&pod));
                        }
                        manager.apply(pod);
                    }
                    PodEvent::Delete(uid) => {
                        known.remove(&uid);
                        manager.gone(&uid);
                    }
                    PodEvent::Resync(uids) => {
                        known.retain(|uid, _| uids.contains(uid));
                        manager.retain(&uids);
                        if !cleaned {
                            // Containers of pods deleted while the agent was down.
                            runtime.remove_others(&container_keys(&known)).await;
                            cleaned = true;
                        }
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    heartbeat.abort();
    if let Some(task) = static_pods {
        task.abort();
    }
    if let Some(grace) = cfg.shutdown_grace_period {
        let nodes: Api<Node> = Api::all(shared.client.clone());
        if let Err(e) = crate::shutdown::mark(&nodes, &cfg.node.name, shared.clock.now()).await {
            tracing::warn!(error = %e, "could not mark the node shutting down");
        }
        let _ = shared.shutdown_grace.set(grace);
    }
    manager.stop_all().await;
    if !cleaned {
        // Stopped before the first resync: containers of pods this agent has not been told
        // about yet (deleted while it was down, or not yet listed) would outlive it. Every pod
        // stops at shutdown anyway, so those go too.
        runtime.remove_others(&container_keys(&known)).await;
    }
}

/// Runs agents for `configs` (one real node, or a hollow fleet) until `shutdown` turns true.
/// `single` selects per-node watches (field selectors) instead of fleet-wide ones.
pub async fn run(
    client: Client,
    configs: Vec<AgentConfig>,
    runtime: Arc<dyn Runtime>,
    clock: SharedClock,
    shutdown: watch::Receiver<bool>,
) {
    let dispatch = Arc::new(Dispatch::default());
    let only = if configs.len() == 1 {
        configs.first().map(|c| c.node.name.clone())
    } else {
        None
    };
    // Register in parallel batches so a large fleet comes up quickly without a request storm.
    let mut registered = Vec::with_capacity(configs.len());
    for chunk in configs.chunks(200) {
        let results = futures::future::join_all(
            chunk
                .iter()
                .map(|cfg| register(&client, cfg, &dispatch, clock.as_ref())),
        )
        .await;
        registered.extend(chunk.iter().cloned().zip(results));
    }
    let pods_watch = tokio::spawn(watch_pods(
        client.clone(),
        Arc::clone(&dispatch),
        only.clone(),
    ));
    let nodes_watch = tokio::spawn(watch_nodes(client.clone(), Arc::clone(&dispatch), only));
    let mut tasks = tokio::task::JoinSet::new();
    for (cfg, (node_rx, pod_rx)) in registered {
        tasks.spawn(run_node(
            client.clone(),
            cfg,
            Arc::clone(&runtime),
            clock.clone(),
            node_rx,
            pod_rx,
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
    pods_watch.abort();
    nodes_watch.abort();
}
