//! `everynode server`: the API server with the controllers running in-process as its clients.

use crate::{Error, kubeconfig_path};
use everynode_apiserver::agent_client::AgentClient;
use everynode_apiserver::credentials;
use everynode_apiserver::registry::Options;
use everynode_apiserver::server::{self, CacheSizes};
use everynode_clock::SharedClock;
use everynode_controllers::stores::Informers;
use everynode_controllers::{leader, nodelifecycle};
use everynode_store::{EmbeddedStore, EtcdStore, EtcdTls, MemoryStore, Store};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum StoreKind {
    /// Durable embedded database in --data-dir (default).
    Embedded,
    /// In memory only: everything is lost when the process ends. For tests.
    Memory,
}

/// Which controllers the server runs in-process, as API clients of itself.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct ControllerFlags {
    /// Do not run the DaemonSet controller.
    #[arg(long)]
    pub no_daemonset_controller: bool,
    /// Do not run the scheduler.
    #[arg(long)]
    pub no_scheduler: bool,
    /// Do not run the garbage collector.
    #[arg(long)]
    pub no_garbage_collector: bool,
    /// Do not run the node lifecycle controller (Unknown conditions, taints, eviction).
    #[arg(long)]
    pub no_node_lifecycle_controller: bool,
    /// Do not run pod garbage collection (pods of vanished nodes, terminated pods).
    #[arg(long)]
    pub no_pod_gc: bool,
    /// Do not run the endpoints, EndpointSlice and EndpointSlice mirroring controllers.
    #[arg(long)]
    pub no_endpoints_controllers: bool,
    /// Do not publish the cluster CA as the `kube-root-ca.crt` ConfigMap in every namespace.
    #[arg(long)]
    pub no_root_ca_publisher: bool,
    /// Terminated pods kept before the oldest are deleted; 0 keeps them all.
    #[arg(long, default_value_t = 12_500)]
    pub terminated_pod_gc_threshold: usize,
    /// Most pod creates (and deletes) one DaemonSet sync issues (upstream's burstReplicas).
    #[arg(long, default_value_t = 250)]
    pub daemonset_burst: usize,
    /// Seconds without a Lease renewal before a node's conditions become Unknown.
    #[arg(long, default_value_t = 50)]
    pub node_monitor_grace_period: u64,
    /// The same for a node that has never reported Ready.
    #[arg(long, default_value_t = 60)]
    pub node_startup_grace_period: u64,
    /// Seconds between node health checks.
    #[arg(long, default_value_t = 5)]
    pub node_monitor_period: u64,
    /// Create no daemon pod on a node whose agent is shutting down (condition `ShuttingDown`),
    /// even for pods that tolerate every taint. `false` is upstream's behaviour.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub shutdown_aware_daemonsets: bool,
}

impl ControllerFlags {
    /// Whether any controller is to run (otherwise the server does not stand for election).
    pub fn any_enabled(&self) -> bool {
        !(self.no_daemonset_controller
            && self.no_scheduler
            && self.no_garbage_collector
            && self.no_pod_gc
            && self.no_node_lifecycle_controller
            && self.no_endpoints_controllers)
    }
}

impl Default for ControllerFlags {
    fn default() -> Self {
        ControllerFlags {
            no_daemonset_controller: false,
            no_scheduler: false,
            no_garbage_collector: false,
            no_node_lifecycle_controller: false,
            no_pod_gc: false,
            no_endpoints_controllers: false,
            no_root_ca_publisher: false,
            terminated_pod_gc_threshold: 12_500,
            daemonset_burst: 250,
            node_monitor_grace_period: 50,
            node_startup_grace_period: 60,
            node_monitor_period: 5,
            shutdown_aware_daemonsets: true,
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// Where data, credentials and the kubeconfig live.
    #[arg(long, default_value = "everynode-data")]
    pub data_dir: PathBuf,
    /// Address to listen on. Anything but loopback requires TLS (the default).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Serve plain HTTP instead of HTTPS. Allowed only on a loopback address.
    #[arg(long)]
    pub insecure_plain_http: bool,
    /// Storage backend.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,
    /// Store the cluster in etcd instead, at these endpoints (comma-separated,
    /// `http://127.0.0.1:2379` or `https://...`), with upstream's key layout (`/registry/...`).
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// The CA file that signed etcd's serving certificates (https:// endpoints).
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,
    /// The client certificate presented to etcd.
    #[arg(long, requires = "etcd_keyfile")]
    pub etcd_certfile: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long, requires = "etcd_certfile")]
    pub etcd_keyfile: Option<PathBuf>,
    /// With --etcd-servers: the cluster secret that opens the credentials the first server
    /// stored in etcd (its `<data-dir>/cluster-secret`), so this server joins that cluster with
    /// a fresh data directory. The first server writes one when none is given.
    #[arg(long, requires = "etcd_servers")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the serving certificate (used when it is first generated).
    #[arg(long = "tls-san")]
    pub tls_sans: Vec<String>,
    /// Static bearer tokens, in upstream's CSV format: `token,user,uid,"group1,group2"` per line.
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// The audit log: one JSON line per request (`audit.k8s.io/v1` Events at the Metadata
    /// level). Default: `<data-dir>/audit.log`.
    #[arg(long)]
    pub audit_log_path: Option<PathBuf>,
    /// Megabytes an audit log file reaches before it is rotated.
    #[arg(long, default_value_t = 100)]
    pub audit_log_maxsize: u64,
    /// Rotated audit log files kept.
    #[arg(long, default_value_t = 10)]
    pub audit_log_maxbackup: usize,
    /// Write no audit log.
    #[arg(long, conflicts_with = "audit_log_path")]
    pub no_audit_log: bool,
    /// Watch events kept in memory for watches that resume from a resourceVersion.
    #[arg(long, default_value_t = 50_000)]
    pub watch_history: usize,
    /// Seconds between watch bookmarks for clients that allow them.
    #[arg(long, default_value_t = 30)]
    pub bookmark_interval_seconds: u64,
    /// Reads served at once (watches and followed logs excepted); more are answered 429 with
    /// Retry-After. 0 means no limit.
    #[arg(long, default_value_t = everynode_apiserver::inflight::DEFAULT_MAX_REQUESTS_INFLIGHT)]
    pub max_requests_inflight: usize,
    /// Writes served at once; more are answered 429 with Retry-After. 0 means no limit.
    #[arg(long, default_value_t = everynode_apiserver::inflight::DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT)]
    pub max_mutating_requests_inflight: usize,
    /// Watches one user may hold open at once (system:masters excepted); more are answered 429.
    /// 0 means no limit.
    #[arg(long, default_value_t = everynode_apiserver::inflight::DEFAULT_MAX_WATCHES_PER_USER)]
    pub max_watches_per_user: usize,
    /// The PriorityClass given to daemon pods that name none (made at start if missing, value
    /// 100000000), so they preempt ordinary pods on their node. "" turns this off: upstream's
    /// priority 0 or the global default.
    #[arg(long, default_value = everynode_apiserver::admission::DAEMON_PRIORITY_CLASS)]
    pub daemon_priority_class: String,
    /// The longest a certificate signed for an approved CertificateSigningRequest lasts
    /// (a node's credential from `agent --join`), as a Go duration: `8760h`, `90m`, `3600s`.
    #[arg(long, default_value = "8760h", value_parser = parse_go_duration)]
    pub cluster_signing_duration: Duration,
    /// How often every node agent's CPU and memory use is read for `kubectl top`
    /// (`metrics.k8s.io`), as a Go duration (metrics-server's `--metric-resolution`).
    #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
    pub metric_resolution: Duration,
    /// The IPv4 CIDR Services get their cluster IPs from (kubeadm's default). Every server of
    /// a cluster must be given the same.
    #[arg(long, default_value = "10.96.0.0/12", value_parser = everynode_api::service_ranges::ClusterIpRange::parse)]
    pub service_cluster_ip_range: everynode_api::service_ranges::ClusterIpRange,
    /// The ports NodePort Services get their node ports from, `FIRST-LAST`.
    #[arg(long, default_value = "30000-32767", value_parser = everynode_api::service_ranges::parse_node_port_range)]
    pub service_node_port_range: std::ops::RangeInclusive<u16>,
    #[command(flatten)]
    pub controllers: ControllerFlags,
    #[command(flatten)]
    pub leader: LeaderFlags,
}

impl ServerArgs {
    pub fn defaults(data_dir: PathBuf, listen: SocketAddr) -> ServerArgs {
        ServerArgs {
            data_dir,
            listen,
            insecure_plain_http: false,
            store: StoreKind::Embedded,
            etcd_servers: Vec::new(),
            etcd_cafile: None,
            etcd_certfile: None,
            etcd_keyfile: None,
            cluster_secret_file: None,
            tls_sans: Vec::new(),
            token_auth_file: None,
            audit_log_path: None,
            audit_log_maxsize: 100,
            audit_log_maxbackup: 10,
            no_audit_log: false,
            watch_history: 50_000,
            bookmark_interval_seconds: 30,
            max_requests_inflight: everynode_apiserver::inflight::DEFAULT_MAX_REQUESTS_INFLIGHT,
            max_mutating_requests_inflight:
                everynode_apiserver::inflight::DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT,
            max_watches_per_user: everynode_apiserver::inflight::DEFAULT_MAX_WATCHES_PER_USER,
            daemon_priority_class: everynode_apiserver::admission::DAEMON_PRIORITY_CLASS.to_owned(),
            cluster_signing_duration: Duration::from_secs(365 * 24 * 3600),
            metric_resolution: Duration::from_secs(15),
            service_cluster_ip_range: Default::default(),
            service_node_port_range: 30000..=32767,
            controllers: ControllerFlags::default(),
            leader: LeaderFlags::default(),
        }
    }
}

/// Events the store keeps for its one follower, the API server's watch cache, to catch up
/// after a stall; clients' watches resume from the cache's own history (`--watch-history`).
/// Each event holds the object before and after it, so the 100,000 once kept here could hold
/// several hundred MB of pods at 10,000 nodes.
const STORE_HISTORY: usize = 10_000;

/// A server that is listening, with its controllers started.
pub struct Started {
    pub url: String,
    pub kubeconfig: PathBuf,
    listen: SocketAddr,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    controllers: Option<ControllersThread>,
}

/// The controllers' thread and the switch that stops it.
pub struct ControllersThread {
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl ControllersThread {
    /// Stops the controllers and waits for their thread: before the API server goes, so none
    /// of them reports the server gone while the process is merely stopping.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

impl Started {
    /// The in-process controllers, to stop them before the server (`everynode up`'s Ctrl-C).
    pub fn take_controllers(&mut self) -> Option<ControllersThread> {
        self.controllers.take()
    }

    /// Serves until the listener fails.
    pub async fn serve(self) -> Result<(), Error> {
        match self.serving.await {
            Ok(result) => result.map_err(|source| Error::Listen {
                addr: self.listen,
                source,
            }),
            Err(e) => Err(Error::Startup(e.to_string())),
        }
    }
}

/// The identities the in-process controllers act as, each bound by the default policy to
/// its own least-privilege role as upstream's are: the shared informers and the leader
/// election as `system:kube-controller-manager`, the scheduler as `system:kube-scheduler`,
/// every other controller as its ServiceAccount in `kube-system`
/// (`--use-service-account-credentials`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ControllerIdentity {
    Manager,
    Scheduler,
    DaemonSet,
    GarbageCollector,
    PodGarbageCollector,
    NodeLifecycle,
    Endpoint,
    EndpointSlice,
    EndpointSliceMirroring,
}

impl ControllerIdentity {
    pub const ALL: [ControllerIdentity; 9] = [
        ControllerIdentity::Manager,
        ControllerIdentity::Scheduler,
        ControllerIdentity::DaemonSet,
        ControllerIdentity::GarbageCollector,
        ControllerIdentity::PodGarbageCollector,
        ControllerIdentity::NodeLifecycle,
        ControllerIdentity::Endpoint,
        ControllerIdentity::EndpointSlice,
        ControllerIdentity::EndpointSliceMirroring,
    ];

    /// The user it authenticates as, and its groups.
    pub fn user(self) -> everynode_apiserver::authn::UserInfo {
        let account = |name: &str| {
            everynode_apiserver::authn::UserInfo::new(
                &format!("system:serviceaccount:kube-system:{name}"),
                "",
                &[
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                ],
            )
        };
        match self {
            ControllerIdentity::Manager => {
                everynode_apiserver::authn::UserInfo::new("system:kube-controller-manager", "", &[])
            }
            ControllerIdentity::Scheduler => {
                everynode_apiserver::authn::UserInfo::new("system:kube-scheduler", "", &[])
            }
            ControllerIdentity::DaemonSet => account("daemon-set-controller"),
            ControllerIdentity::GarbageCollector => account("generic-garbage-collector"),
            ControllerIdentity::PodGarbageCollector => account("pod-garbage-collector"),
            ControllerIdentity::NodeLifecycle => account("node-controller"),
            ControllerIdentity::Endpoint => account("endpoint-controller"),
            ControllerIdentity::EndpointSlice => account("endpointslice-controller"),
            ControllerIdentity::EndpointSliceMirroring => {
                account("endpointslicemirroring-controller")
            }
        }
    }
}

/// One client per controller identity. A standalone `everynode controllers` uses the one
/// client its kubeconfig gives for all (upstream without `--use-service-account-credentials`).
#[derive(Clone)]
pub struct ControllerClients {
    clients: std::collections::BTreeMap<ControllerIdentity, kube::Client>,
    fallback: kube::Client,
}

impl ControllerClients {
    pub fn single(client: kube::Client) -> Self {
        ControllerClients {
            clients: std::collections::BTreeMap::new(),
            fallback: client,
        }
    }

    /// A client per identity, each with its bearer token, to the server `base` names.
    fn with_tokens(
        base: &kube::Config,
        tokens: &std::collections::BTreeMap<ControllerIdentity, String>,
    ) -> Result<Self, Error> {
        let client_with = |token: &str| -> Result<kube::Client, Error> {
            let mut config = base.clone();
            config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))
                .map_err(|e| Error::Startup(format!("controller credentials: {e}")))?;
            kube::Client::try_from(config).map_err(|e| Error::Startup(e.to_string()))
        };
        let mut clients = std::collections::BTreeMap::new();
        for (identity, token) in tokens {
            clients.insert(*identity, client_with(token)?);
        }
        let fallback = clients
            .get(&ControllerIdentity::Manager)
            .cloned()
            .ok_or_else(|| Error::Startup("no controller-manager credential".into()))?;
        Ok(ControllerClients { clients, fallback })
    }

    /// The same clients, refusing writes while `fence` says this process may not lead.
    fn fenced(&self, fence: &leader::Fence) -> Self {
        ControllerClients {
            clients: self
                .clients
                .iter()
                .map(|(id, c)| (*id, leader::fenced(c.clone(), fence.clone())))
                .collect(),
            fallback: leader::fenced(self.fallback.clone(), fence.clone()),
        }
    }

    pub fn get(&self, identity: ControllerIdentity) -> kube::Client {
        self.clients
            .get(&identity)
            .unwrap_or(&self.fallback)
            .clone()
    }
}

/// Fresh bearer tokens for the in-process controllers, kept in memory only: they end with
/// the process, and nothing on disk can be stolen to act as a controller.
fn controller_tokens() -> std::collections::BTreeMap<ControllerIdentity, String> {
    use rand::Rng;
    ControllerIdentity::ALL
        .into_iter()
        .map(|identity| {
            let bytes: [u8; 32] = rand::rng().random();
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            (identity, token)
        })
        .collect()
}

/// Spawns the enabled controllers; their handles stop them when leadership is lost.
fn spawn_controllers(
    clients: &ControllerClients,
    clock: &SharedClock,
    flags: ControllerFlags,
) -> Vec<tokio::task::JoinHandle<()>> {
    use ControllerIdentity as Id;
    let mut running = Vec::new();
    // One cache per kind for every controller; its watches stop when the last controller does.
    let informers = Informers::new(clients.get(Id::Manager));
    let as_ = |id: Id| informers.writing_as(clients.get(id));
    if !flags.no_daemonset_controller {
        running.push(tokio::spawn(
            everynode_controllers::daemonset::controller::run(
                as_(Id::DaemonSet),
                clock.clone(),
                flags.daemonset_burst,
                flags.shutdown_aware_daemonsets,
            ),
        ));
    }
    if !flags.no_scheduler {
        running.push(tokio::spawn(everynode_controllers::scheduler::run(
            as_(Id::Scheduler),
            clock.clone(),
        )));
    }
    if !flags.no_garbage_collector {
        running.push(tokio::spawn(everynode_controllers::gc::run(as_(
            Id::GarbageCollector,
        ))));
    }
    if !flags.no_pod_gc {
        running.push(tokio::spawn(everynode_controllers::podgc::run(
            as_(Id::PodGarbageCollector),
            flags.terminated_pod_gc_threshold,
        )));
    }
    if !flags.no_node_lifecycle_controller {
        running.push(tokio::spawn(nodelifecycle::run(
            as_(Id::NodeLifecycle),
            clock.clone(),
            nodelifecycle::Settings {
                monitor_period: Duration::from_secs(flags.node_monitor_period.max(1)),
                grace_period: Duration::from_secs(flags.node_monitor_grace_period),
                startup_grace_period: Duration::from_secs(flags.node_startup_grace_period),
            },
        )));
    }
    if !flags.no_endpoints_controllers {
        use everynode_controllers::endpoints::controller as endpoints;
        running.push(tokio::spawn(endpoints::run_endpoints(
            as_(Id::Endpoint),
            clock.clone(),
        )));
        running.push(tokio::spawn(endpoints::run_slices(
            as_(Id::EndpointSlice),
            clock.clone(),
        )));
        running.push(tokio::spawn(endpoints::run_mirroring(
            as_(Id::EndpointSliceMirroring),
            clock.clone(),
        )));
    }
    running
}

/// Leader-election timing (client-go's flags and defaults).
#[derive(clap::Args, Clone, Debug)]
pub struct LeaderFlags {
    /// Seconds a leader lease lasts without renewal before another candidate may take it.
    #[arg(long, default_value_t = 15)]
    pub leader_elect_lease_duration: u64,
    /// Seconds a leader keeps trying to renew before it stops its controllers.
    #[arg(long, default_value_t = 10)]
    pub leader_elect_renew_deadline: u64,
    /// Seconds between attempts to acquire or renew.
    #[arg(long, default_value_t = 2)]
    pub leader_elect_retry_period: u64,
}

impl Default for LeaderFlags {
    fn default() -> Self {
        LeaderFlags {
            leader_elect_lease_duration: 15,
            leader_elect_renew_deadline: 10,
            leader_elect_retry_period: 2,
        }
    }
}

/// Runs the enabled controllers whenever `identity` holds the leader lease, until the process ends.
pub async fn elected_controllers(
    clients: ControllerClients,
    flags: ControllerFlags,
    leader: &LeaderFlags,
    identity: String,
) {
    let settings = leader::Settings {
        identity,
        lease_duration: Duration::from_secs(leader.leader_elect_lease_duration.max(1)),
        renew_deadline: Duration::from_secs(leader.leader_elect_renew_deadline.max(1)),
        retry_period: Duration::from_secs(leader.leader_elect_retry_period.max(1)),
    };
    let elector_client = clients.get(ControllerIdentity::Manager);
    // Controllers run on the system's clock; tests of their timing inject a paused one.
    let clock = everynode_clock::system();
    // The controllers write only while the lease is surely held; the elector's own renewals
    // are not fenced.
    let fence = leader::Fence::default();
    let fenced = clients.fenced(&fence);
    leader::run_elected(elector_client, settings, clock.clone(), fence, move || {
        spawn_controllers(&fenced, &clock, flags)
    })
    .await;
}

/// Runs the in-process controllers, with leader election, on a runtime of their own: its
/// worker threads and the API server's are shared out by the OS, preemptively. On one runtime a
/// controller pass over 10,000 nodes holds a worker until it yields, and API requests queue
/// behind it (at 5,000 hollow nodes the mutating p99 during the DaemonSet's create went from
/// 452 to 311 ms; bench/RESULTS.md).
async fn start_controllers_runtime(
    kubeconfig: PathBuf,
    tokens: std::collections::BTreeMap<ControllerIdentity, String>,
    flags: ControllerFlags,
    leader: LeaderFlags,
    identity: String,
) -> Result<ControllersThread, Error> {
    let (started, started_rx) = tokio::sync::oneshot::channel::<Result<(), Error>>();
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("controllers".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .thread_name("controllers")
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = started.send(Err(Error::Startup(format!(
                        "cannot start the controllers' runtime: {e}"
                    ))));
                    return;
                }
            };
            runtime.block_on(async move {
                // The clients are made here, so their connections run on this runtime.
                let clients = match config_from_kubeconfig(&kubeconfig).await {
                    Ok(base) => ControllerClients::with_tokens(&base, &tokens),
                    Err(e) => Err(e),
                };
                match clients {
                    Ok(clients) => {
                        let _ = started.send(Ok(()));
                        tokio::select! {
                            () = elected_controllers(clients, flags, &leader, identity) => {}
                            _ = stop_rx.changed() => {}
                        }
                    }
                    Err(e) => {
                        let _ = started.send(Err(e));
                    }
                }
            });
            // Its tasks (watches, leases) end here, while the API server still serves.
            runtime.shutdown_timeout(Duration::from_secs(5));
        })
        .map_err(|e| Error::Startup(format!("cannot start the controllers' thread: {e}")))?;
    started_rx
        .await
        .unwrap_or_else(|_| Err(Error::Startup("the controllers' thread ended".into())))?;
    Ok(ControllersThread { stop, thread })
}

/// This server's candidate identity: stable for a data directory, so a restarted server renews
/// its own lease at once instead of waiting for it to expire.
fn server_identity(data_dir: &Path) -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "everynode".into());
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let hash = everynode_api::fnv::fnv1a_64([dir.to_string_lossy().as_bytes()]);
    format!("{host}_{hash:016x}")
}

/// A Go duration of one unit, as upstream's flags take them: `8760h`, `90m`, `3600s`.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 8760h, 90m or 3600s"))?;
    let seconds = match unit {
        "h" => n.checked_mul(3600),
        "m" => n.checked_mul(60),
        "s" => Some(n),
        _ => None,
    }
    .ok_or_else(|| format!("{text:?} is not a duration such as 8760h, 90m or 3600s"))?;
    Ok(Duration::from_secs(seconds))
}

/// The client configuration a kubeconfig file gives (its current context).
pub async fn config_from_kubeconfig(path: &Path) -> Result<kube::Config, Error> {
    let kc = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| Error::Startup(format!("reading {}: {e}", path.display())))?;
    kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Startup(format!("{}: {e}", path.display())))
}

pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let config = config_from_kubeconfig(path).await?;
    kube::Client::try_from(config).map_err(|e| Error::Startup(e.to_string()))
}

pub async fn start(args: ServerArgs) -> Result<Started, Error> {
    let ServerArgs {
        data_dir,
        listen,
        insecure_plain_http,
        store,
        etcd_servers,
        etcd_cafile,
        etcd_certfile,
        etcd_keyfile,
        cluster_secret_file,
        tls_sans,
        token_auth_file,
        audit_log_path,
        audit_log_maxsize,
        audit_log_maxbackup,
        no_audit_log,
        watch_history,
        bookmark_interval_seconds,
        max_requests_inflight,
        max_mutating_requests_inflight,
        max_watches_per_user,
        daemon_priority_class,
        cluster_signing_duration,
        metric_resolution,
        service_cluster_ip_range,
        service_node_port_range,
        controllers,
        leader,
    } = args;
    if insecure_plain_http && !listen.ip().is_loopback() {
        return Err(Error::Usage(format!(
            "--insecure-plain-http is allowed only on a loopback address, not {listen}; drop it to serve HTTPS with the generated CA"
        )));
    }
    crate::private_dir(&data_dir)?;
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !listen.ip().is_unspecified() {
        hosts.push(listen.ip().to_string());
    }
    hosts.extend(tls_sans);
    // On etcd the cluster's credentials are shared by every server: settled before they are read.
    let mut etcd = if etcd_servers.is_empty() {
        None
    } else {
        let store = {
            let read = |path: &Option<PathBuf>, flag: &str| -> Result<Option<Vec<u8>>, Error> {
                path.as_ref()
                    .map(|p| {
                        std::fs::read(p)
                            .map_err(|e| Error::Usage(format!("{flag} {}: {e}", p.display())))
                    })
                    .transpose()
            };
            let tls = EtcdTls {
                ca_pem: read(&etcd_cafile, "--etcd-cafile")?,
                cert_pem: read(&etcd_certfile, "--etcd-certfile")?,
                key_pem: read(&etcd_keyfile, "--etcd-keyfile")?,
            };
            let tls = (tls.ca_pem.is_some() || tls.cert_pem.is_some()).then_some(tls);
            EtcdStore::connect(&etcd_servers, tls).await.map_err(|e| {
                Error::Startup(format!(
                    "cannot reach etcd at {}: {e}",
                    etcd_servers.join(",")
                ))
            })?
        };
        crate::shared_credentials::share(&store, &data_dir, cluster_secret_file.as_deref(), &hosts)
            .await?;
        Some(store)
    };
    let creds = credentials::ensure(&data_dir, &hosts)?;
    let mut authn = server::AuthnConfig::admin(&creds.token);
    authn.service_account_issuer = Some(Arc::new(
        everynode_apiserver::service_account_token::TokenIssuer::load_or_create(&data_dir)?,
    ));
    if let Some(path) = &token_auth_file {
        authn.static_tokens = everynode_apiserver::authn::read_token_file(path)
            .map_err(|e| Error::Usage(format!("--token-auth-file: {e}")))?;
    }
    let controller_tokens = controller_tokens();
    for (identity, token) in &controller_tokens {
        authn.static_tokens.insert(token.clone(), identity.user());
    }
    let store: Arc<dyn Store> = match store {
        _ if etcd.is_some() => Arc::new(etcd.take().ok_or_else(|| Error::Startup("etcd".into()))?),
        StoreKind::Embedded => Arc::new(EmbeddedStore::open(
            &data_dir.join("everynode.redb"),
            STORE_HISTORY,
        )?),
        StoreKind::Memory => Arc::new(MemoryStore::new(STORE_HISTORY)),
    };
    let options = Options {
        bookmark_interval: Duration::from_secs(bookmark_interval_seconds.max(1)),
        agent_client: Some(
            AgentClient::from_pem(&creds.agent_client_cert_pem, &creds.agent_client_key_pem)
                .map_err(|e| Error::Startup(e.to_string()))?,
        ),
        max_requests_inflight,
        max_mutating_requests_inflight,
        max_watches_per_user,
        metric_resolution: metric_resolution.max(Duration::from_secs(1)),
        service_ranges: everynode_apiserver::service_alloc::ServiceRanges {
            cluster_ips: service_cluster_ip_range,
            node_ports: service_node_port_range,
        },
        daemon_priority_class: Some(daemon_priority_class).filter(|c| !c.is_empty()),
        root_ca_pem: (!controllers.no_root_ca_publisher).then(|| creds.ca_pem.clone()),
        csr_signer: Some((
            Arc::new(credentials::CsrSigner::load(&data_dir)?),
            cluster_signing_duration,
        )),
        audit: (!no_audit_log).then(|| everynode_apiserver::audit::AuditConfig {
            path: audit_log_path.unwrap_or_else(|| data_dir.join("audit.log")),
            max_size_bytes: audit_log_maxsize.max(1) * 1024 * 1024,
            max_backups: audit_log_maxbackup,
        }),
        ..Options::default()
    };
    let sizes = CacheSizes {
        history: watch_history,
        ..CacheSizes::default()
    };
    // The server's one clock, shared with the console it serves.
    let clock = everynode_clock::system();
    let (api, router) = server::start(store, clock.clone(), options, sizes, authn)
        .await
        .map_err(|e| Error::Startup(e.to_string()))?;
    // The web console under /ui: an API client of this same router.
    let router = everynode_console::mount(router, clock);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Listen {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| Error::Listen {
        addr: listen,
        source,
    })?;
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        local.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let (scheme, tls, ca) = if insecure_plain_http {
        ("http", None, None)
    } else {
        (
            "https",
            Some(credentials::tls_config(&creds)?),
            Some(creds.ca_pem.as_str()),
        )
    };
    let url = format!("{scheme}://{host}:{}", local.port());
    if let Some(ca) = ca {
        everynode_apiserver::root_ca::publish_cluster_info(&api, &url, ca).await;
    }
    let kubeconfig = kubeconfig_path(&data_dir);
    credentials::write_file(
        &kubeconfig,
        credentials::kubeconfig(&url, ca, &creds.token).as_bytes(),
        0o600,
    )?;
    tracing::info!(%url, kubeconfig = %kubeconfig.display(), "everynode API server ready");
    let serving = tokio::spawn(server::serve(listener, router, tls));
    let controllers = if controllers.any_enabled() {
        Some(
            start_controllers_runtime(
                kubeconfig.clone(),
                controller_tokens,
                controllers,
                leader,
                server_identity(&data_dir),
            )
            .await?,
        )
    } else {
        None
    };
    // One line on stdout for scripts and tests that start the server and wait for it.
    println!(
        "everynode apiserver listening on {url} kubeconfig {}",
        kubeconfig.display()
    );
    Ok(Started {
        url,
        kubeconfig,
        listen,
        serving,
        controllers,
    })
}
