//! How containers are run. The pod worker and `pod::lifecycle` decide what runs and when; a
//! `Runtime` only starts, signals, waits for and execs in one container at a time, so `process`
//! (host processes), `hollow` (nothing at all, for scale tests) and a container runtime share
//! every lifecycle rule above them. Nothing above this trait knows how a runtime runs things.

pub mod cri;
pub mod exec;
pub mod hollow;
pub mod image;
pub mod port_forward;
pub mod process;
pub mod process_exec;
pub mod remote_exec;
pub mod shim;

use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpStream;

/// A bind mount into the container's view of the filesystem.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
    /// `volumeMounts[].mountPropagation`; only a container runtime applies it.
    #[serde(default)]
    pub propagation: Propagation,
}

/// How mounts propagate between the host and the container (`mountPropagation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Propagation {
    #[default]
    None,
    HostToContainer,
    Bidirectional,
}

impl Propagation {
    pub fn of(text: Option<&str>) -> Propagation {
        match text {
            Some("HostToContainer") => Propagation::HostToContainer,
            Some("Bidirectional") => Propagation::Bidirectional,
            _ => Propagation::None,
        }
    }
}

/// `imagePullPolicy`, defaulted by the API server (Always for `:latest` or no tag).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn of(text: Option<&str>) -> PullPolicy {
        match text {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            _ => PullPolicy::IfNotPresent,
        }
    }
}

/// Credentials for one registry, from the pod's `imagePullSecrets`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The registry host as the secret names it (`docker.io`, `registry.example:5000`).
    pub server: String,
    pub username: String,
    pub password: String,
    /// base64 of `user:password`, when the secret gives it that way.
    pub auth: String,
}

/// The Linux security settings of one container, merged from the pod's and the container's
/// `securityContext` (the container's win).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Security {
    pub privileged: bool,
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub read_only_root_filesystem: bool,
    /// `allowPrivilegeEscalation: false` (or unset while not privileged and no CAP_SYS_ADMIN).
    pub no_new_privileges: bool,
    /// seccomp `Unconfined` (else `RuntimeDefault`).
    pub seccomp_unconfined: bool,
    /// `procMount: Unmasked`.
    pub unmasked_proc: bool,
    /// `runAsNonRoot: true`: the runtime refuses to start it as root.
    pub run_as_non_root: bool,
    pub supplemental_groups: Vec<i64>,
}

/// Everything a runtime needs to set up a pod's sandbox (its network, PID and IPC namespaces,
/// hostname, DNS and hosts file) before the pod's containers start.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    pub pod: std::sync::Arc<k8s_openapi::api::core::v1::Pod>,
    /// Where the pod's container logs go; container log paths are below it.
    pub log_directory: PathBuf,
    /// The agent's private directory for this pod (for files the runtime writes, e.g. hosts).
    pub pod_dir: PathBuf,
    /// The pod's resolv.conf, composed by `dns::resolv_for`.
    pub dns: crate::dns::Resolv,
    /// The node's own `/etc/hosts`, which host-network pods see (with their `hostAliases`).
    pub node_hosts: String,
    pub cluster_domain: String,
}

impl SandboxSpec {
    pub fn uid(&self) -> String {
        self.pod.metadata.uid.clone().unwrap_or_default()
    }

    fn spec(&self) -> k8s_openapi::api::core::v1::PodSpec {
        self.pod.spec.clone().unwrap_or_default()
    }

    pub fn host_network(&self) -> bool {
        self.spec().host_network == Some(true)
    }

    pub fn host_pid(&self) -> bool {
        self.spec().host_pid == Some(true)
    }

    pub fn host_ipc(&self) -> bool {
        self.spec().host_ipc == Some(true)
    }

    /// Every container `hostPort` of the pod.
    pub fn host_ports(&self) -> Vec<HostPort> {
        self.spec()
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|h| h > 0))
            .map(|p| HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                container_port: p.container_port,
                host_port: p.host_port.unwrap_or_default(),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
            .collect()
    }
}

/// A `hostPort` to map into the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub container_port: i32,
    pub host_port: i32,
    pub host_ip: String,
}

/// Everything needed to start one container, resolved by the pod worker.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Launch {
    /// `<pod uid>/<container name>`: stable across restarts, unique on the node.
    pub key: String,
    /// The pod's uid: which sandbox the container joins.
    #[serde(default)]
    pub pod_uid: String,
    /// The container's name in the pod.
    #[serde(default)]
    pub name: String,
    /// `<name>_<namespace>(<uid>)`, as kubelet names the pod in messages.
    #[serde(default)]
    pub pod_ref: String,
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// Never written to disk: registry credentials from Secrets.
    #[serde(skip)]
    pub registry_auth: Vec<RegistryAuth>,
    #[serde(default)]
    pub security: Security,
    /// The image to run, as the pod names it. The process runtime records it; a container
    /// runtime pulls and runs it.
    pub image: String,
    /// `command`, after `$(VAR)` expansion; empty means the image's entrypoint.
    pub command: Vec<String>,
    /// `args`, after `$(VAR)` expansion; empty means the image's cmd when `command` is empty too.
    pub args: Vec<String>,
    /// Never written to `launch.json`: values may come from Secrets. The process runtime hands
    /// them to the shim through a pipe, and reads an adopted container's from the kernel.
    #[serde(skip)]
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub mounts: Vec<Mount>,
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub memory_limit_bytes: Option<i64>,
    /// CPU limit in millicores, for CFS quota.
    pub cpu_limit_millis: Option<i64>,
    /// CPU request in millicores, for CPU shares.
    #[serde(default)]
    pub cpu_request_millis: Option<i64>,
    /// The container keeps a stdin open for `kubectl attach -i` (`stdin`), closed after the
    /// first attached client leaves when `stdin_once`; `tty` asks for a terminal (the CRI
    /// runtime only: the process runtime runs every container without one).
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
    #[serde(default)]
    pub tty: bool,
    /// Where stdout and stderr go (CRI log format, one file per start).
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: usize,
}

impl Launch {
    /// `command` followed by `args`: what a runtime that cannot read images runs.
    pub fn argv(&self) -> Vec<String> {
        self.command.iter().chain(&self.args).cloned().collect()
    }
}

/// How a container ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    /// The signal that killed it, if one did (then `code` is 128 + signal).
    pub signal: Option<i32>,
    /// The kernel's OOM killer ended it (reported as `OOMKilled`).
    pub oom_killed: bool,
}

impl Exit {
    /// An exit with `code` and no signal.
    pub fn code(code: i32) -> Exit {
        Exit {
            code,
            signal: None,
            oom_killed: false,
        }
    }

    /// A death by `signal` (code 128 + signal).
    pub fn signalled(signal: i32) -> Exit {
        Exit {
            code: 128 + signal,
            signal: Some(signal),
            oom_killed: false,
        }
    }
}

/// Why a runtime could not do what it was asked; the text is shown to users in pod status.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container cannot start as specified (e.g. no command): retrying will not help until the
    /// pod changes, but the worker retries with backoff as kubelet does.
    #[error("{0}")]
    Config(String),
    /// Starting failed on this host (exec, fork, file system): retryable.
    #[error("{0}")]
    Start(String),
    /// The image could not be pulled: retryable, with kubelet's image back-off.
    #[error("{0}")]
    ImagePull(String),
    /// `imagePullPolicy: Never` and the image is not on the node: retryable (it may be imported).
    #[error("{0}")]
    ImageNeverPull(String),
    /// The image reference does not parse: not retryable until the pod changes.
    #[error("{0}")]
    InvalidImageName(String),
    /// The pod's sandbox could not be created (network, namespaces): retryable.
    #[error("{0}")]
    Sandbox(String),
}

impl RuntimeError {
    /// The container `waiting.reason` kubelet shows for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            RuntimeError::Config(_) => "CreateContainerConfigError",
            RuntimeError::Start(_) => "RunContainerError",
            RuntimeError::ImagePull(_) => "ErrImagePull",
            RuntimeError::ImageNeverPull(_) => "ErrImageNeverPull",
            RuntimeError::InvalidImageName(_) => "InvalidImageName",
            RuntimeError::Sandbox(_) => "FailedCreatePodSandBox",
        }
    }
}

/// Output of a command run inside a container (exec probes and hooks).
#[derive(Debug)]
pub struct ExecResult {
    pub code: i32,
    pub output: String,
}

/// A running (or finished) container.
#[async_trait]
pub trait Container: Send + Sync {
    /// Runtime-qualified id, as in `containerStatuses[].containerID` (e.g. `process://...`).
    fn id(&self) -> String;
    /// Waits until the container exits. Cancel-safe: it may be called again after a timeout.
    async fn wait(&self) -> Exit;
    /// Sends SIGTERM (or SIGKILL when `kill`) to the container's processes.
    fn signal(&self, kill: bool);
    /// Runs a command in the container's context, killed after `timeout`.
    async fn exec(&self, argv: &[String], timeout: Duration) -> Result<ExecResult, RuntimeError>;
}

#[async_trait]
pub trait Runtime: Send + Sync {
    /// `nodeInfo.containerRuntimeVersion`, e.g. `process://0.1.0`.
    fn version(&self) -> String;
    /// Whether workloads really run (processes or containers), so probes, hooks, pod IPs and
    /// termination messages apply; `false` for the hollow runtime.
    fn runs_workloads(&self) -> bool;
    /// Starts a container.
    async fn start(&self, launch: Launch) -> Result<Box<dyn Container>, RuntimeError>;
    /// A container of a previous agent run with this key that is still running, to adopt
    /// instead of starting a second copy.
    async fn adopt(&self, key: &str) -> Option<Box<dyn Container>>;
    /// Stops (SIGKILL) every container this runtime knows whose key is not in `keep`: leftovers of
    /// pods deleted while the agent was down (and their sandboxes).
    async fn remove_others(&self, keep: &[String]);

    /// Creates the pod's sandbox, or finds the one a previous agent run made. Returns the pod's
    /// IP, or `None` when the pod shares the node's network (the node IP is the pod IP).
    async fn ensure_sandbox(&self, spec: &SandboxSpec) -> Result<Option<String>, RuntimeError> {
        let _ = spec;
        Ok(None)
    }

    /// Stops and removes the pod's sandbox once its containers are gone.
    async fn remove_sandbox(&self, uid: &str) {
        let _ = uid;
    }

    /// Whether `image` is on the node; `None` when this runtime has no images (it runs
    /// commands as they are), and then nothing is pulled.
    async fn image_present(&self, image: &str) -> Result<Option<bool>, RuntimeError> {
        let _ = image;
        Ok(None)
    }

    /// Pulls `image` with the pod's registry credentials; yields its size in bytes.
    async fn pull_image(&self, image: &str, auth: &[RegistryAuth]) -> Result<u64, RuntimeError> {
        let _ = (image, auth);
        Ok(0)
    }

    /// Starts a command in the running container with this key (`kubectl exec`).
    async fn exec_session(
        &self,
        key: &str,
        spec: exec::ExecSpec,
    ) -> Result<exec::ExecSession, exec::ExecError> {
        let _ = (key, spec);
        Err(exec::ExecError::Unsupported(format!(
            "exec into containers is not available on this node's runtime ({})",
            self.version()
        )))
    }

    /// Where the runtime's own streaming server runs `spec` in the container with this key (a
    /// URL speaking Kubernetes' stream protocol, as CRI's `Exec` answers); `None` when the
    /// runtime has no streaming server and `exec_session` runs commands itself.
    async fn exec_url(
        &self,
        key: &str,
        spec: &exec::ExecSpec,
    ) -> Option<Result<String, exec::ExecError>> {
        let _ = (key, spec);
        None
    }

    /// Where the runtime's own streaming server attaches to the running container with this
    /// key (CRI's `Attach`); `None` when the runtime has no streaming server and the agent
    /// attaches to the container's log and stdin itself.
    async fn attach_url(
        &self,
        key: &str,
        spec: &exec::ExecSpec,
    ) -> Option<Result<String, exec::ExecError>> {
        let _ = (key, spec);
        None
    }

    /// A TCP connection to `port` in the network of the pod with this uid (`kubectl
    /// port-forward`), dialled on localhost as kubelet's runtimes do. Pods of this default share
    /// the node's network, so the node's localhost is theirs.
    async fn port_forward(&self, pod_uid: &str, port: u16) -> Result<TcpStream, String> {
        let _ = pod_uid;
        if !self.runs_workloads() {
            return Err(format!(
                "port forwarding is not available on this node's runtime ({})",
                self.version()
            ));
        }
        port_forward::connect_localhost(port).await
    }

    /// The CPU and memory the running container with this key uses; `None` when it is not
    /// running or the runtime cannot measure it.
    async fn usage(&self, key: &str) -> Option<crate::usage::Usage> {
        let _ = key;
        None
    }
}
