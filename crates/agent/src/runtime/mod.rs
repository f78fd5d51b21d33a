//! How containers are run. The pod worker and `pod::lifecycle` decide what runs and when; a
//! `Runtime` only starts, signals, waits for and execs in one container at a time, so `process`
//! (host processes), `hollow` (nothing at all, for scale tests) and a container runtime share
//! every lifecycle rule above them. Nothing above this trait knows how a runtime runs things.

pub mod hollow;
pub mod process;
pub mod shim;

use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Duration;

/// A bind mount into the container's view of the filesystem.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Everything needed to start one container, resolved by the pod worker.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Launch {
    /// `<pod uid>/<container name>`: stable across restarts, unique on the node.
    pub key: String,
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
}

impl RuntimeError {
    /// The container `waiting.reason` kubelet shows for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            RuntimeError::Config(_) => "CreateContainerConfigError",
            RuntimeError::Start(_) => "RunContainerError",
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
    /// pods deleted while the agent was down.
    async fn remove_others(&self, keep: &[String]);
}
