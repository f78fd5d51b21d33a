//! The `cri` runtime: pods as CRI sandboxes and their containers on a container runtime's
//! gRPC socket (containerd's CRI plugin), through the CRI v1 clients `k8s-cri` generates from
//! upstream's `api.proto`. A pod gets its sandbox (network namespace and IP from CNI, DNS,
//! hostname) before its first container; each container start is a new CRI container with the
//! next attempt number. Labels on both name the pod uid and our container key, so an agent that
//! restarts finds and adopts what it started before.

use super::{
    Container, ExecResult, Exit, Launch, Propagation, RegistryAuth, Runtime, RuntimeError,
    SandboxSpec,
};
use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Our container key (`<pod uid>/<container name>`) on each CRI container.
const KEY_LABEL: &str = "everynode.io/container-key";
/// kubelet's labels, which tools such as crictl show.
const UID_LABEL: &str = "io.kubernetes.pod.uid";
const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// kubelet's default masked and read-only paths for `procMount: Default`
/// (`securitycontext.ConvertToRuntimeMaskedPaths`).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// How often a running container's state is asked for (CRI has no wait call).
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How long a graceful stop may take before the runtime kills; the pod worker sends its own
/// SIGKILL at the end of the grace period, so this is only a ceiling.
const STOP_CEILING_SECONDS: i64 = 3600;

/// Why talking to the container runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The socket did not answer: retryable (the runtime may still be starting).
    #[error("cannot reach the container runtime at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
}

/// A gRPC status as Go's grpc prints it, which is how kubelet's messages show them.
fn rpc(status: tonic::Status) -> String {
    format!(
        "rpc error: code = {:?} desc = {}",
        status.code(),
        status.message()
    )
}

pub struct CriRuntime {
    channel: Channel,
    /// `containerd`, from `Version`: the scheme of container ids.
    runtime_name: String,
    version: String,
    /// Parent cgroup of every pod, e.g. `/everynode/node-1`.
    cgroup_parent: String,
    /// Pod uid → its ready sandbox, as this agent run made or found it.
    sandboxes: Mutex<HashMap<String, Sandbox>>,
    /// Container logs are rotated past this size, keeping this many files (kubelet's
    /// `containerLogMaxSize` and `containerLogMaxFiles`); 0 bytes: never.
    log_max_bytes: u64,
    log_max_files: usize,
}

#[derive(Clone)]
struct Sandbox {
    id: String,
    config: cri::PodSandboxConfig,
    /// The `/etc/hosts` its containers mount, if any.
    hosts: Option<PathBuf>,
}

/// `unix:///run/x.sock` or a plain path → the socket path.
fn socket_path(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

/// The runtime's refusal to start an exec or attach session.
fn start_error(e: tonic::Status) -> super::exec::ExecError {
    super::exec::ExecError::Start(e.message().to_owned())
}

impl CriRuntime {
    /// The CRI id of the running container with this key, for exec and attach.
    async fn running_container_id(&self, key: &str) -> Result<String, super::exec::ExecError> {
        let container = key.rsplit('/').next().unwrap_or(key).to_owned();
        self.containers_with(HashMap::from([(KEY_LABEL.to_owned(), key.to_owned())]))
            .await
            .into_iter()
            .find(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            .map(|c| c.id)
            .ok_or(super::exec::ExecError::NotRunning(container))
    }

    /// Connects to `endpoint` (waiting up to `wait` for the socket to answer, since a runtime
    /// started beside the agent may still be booting) and asks its version.
    pub async fn connect(
        endpoint: &str,
        cgroup_parent: String,
        wait: Duration,
    ) -> Result<CriRuntime, CriError> {
        let path = socket_path(endpoint);
        let unreachable = |message: String| CriError::Unreachable {
            endpoint: endpoint.to_owned(),
            message,
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let attempt = async {
                let path = path.clone();
                let channel = Endpoint::try_from("http://[::]")
                    .map_err(|e| e.to_string())?
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(stream))
                        }
                    }))
                    .await
                    .map_err(|e| format!("{e}: {}", source_chain(&e)))?;
                let version = RuntimeServiceClient::new(channel.clone())
                    .version(cri::VersionRequest {
                        version: "v1".into(),
                    })
                    .await
                    .map_err(rpc)?
                    .into_inner();
                Ok::<_, String>((channel, version))
            };
            match attempt.await {
                Ok((channel, version)) => {
                    return Ok(CriRuntime {
                        channel,
                        runtime_name: version.runtime_name.clone(),
                        version: format!("{}://{}", version.runtime_name, version.runtime_version),
                        cgroup_parent,
                        sandboxes: Mutex::new(HashMap::new()),
                        log_max_bytes: 0,
                        log_max_files: 5,
                    });
                }
                Err(message) if tokio::time::Instant::now() >= deadline => {
                    return Err(unreachable(message));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Rotates container logs past `max_bytes`, keeping `max_files`, as kubelet's container
    /// log manager does (containerd writes the files; it does not rotate them).
    pub fn with_log_rotation(mut self, max_bytes: u64, max_files: usize) -> CriRuntime {
        self.log_max_bytes = max_bytes;
        self.log_max_files = max_files.max(1);
        self
    }

    fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
    }

    fn sandbox_of(&self, uid: &str) -> Option<Sandbox> {
        self.sandboxes.lock().ok()?.get(uid).cloned()
    }

    /// Every sandbox the runtime has for `uid`.
    async fn sandboxes_of(&self, uid: &str) -> Vec<cri::PodSandbox> {
        let filter = cri::PodSandboxFilter {
            label_selector: HashMap::from([(UID_LABEL.to_owned(), uid.to_owned())]),
            ..Default::default()
        };
        self.runtime()
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(filter),
            })
            .await
            .map(|r| r.into_inner().items)
            .unwrap_or_default()
    }

    async fn containers_with(&self, labels: HashMap<String, String>) -> Vec<cri::Container> {
        let filter = cri::ContainerFilter {
            label_selector: labels,
            ..Default::default()
        };
        self.runtime()
            .list_containers(cri::ListContainersRequest {
                filter: Some(filter),
            })
            .await
            .map(|r| r.into_inner().containers)
            .unwrap_or_default()
    }

    async fn stop_and_remove_sandbox(&self, id: &str) {
        let mut client = self.runtime();
        let _ = client
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.to_owned(),
            })
            .await;
        if let Err(e) = client
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.to_owned(),
            })
            .await
        {
            tracing::warn!(sandbox = id, error = %rpc(e), "could not remove a pod sandbox");
        }
    }

    async fn stop_and_remove_container(&self, id: &str) {
        let mut client = self.runtime();
        let _ = client
            .stop_container(cri::StopContainerRequest {
                container_id: id.to_owned(),
                timeout: 0,
            })
            .await;
        let _ = client
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.to_owned(),
            })
            .await;
    }

    fn container(&self, id: String) -> CriContainer {
        CriContainer {
            id,
            scheme: self.runtime_name.clone(),
            channel: self.channel.clone(),
        }
    }

    /// Starts the log rotation of a running container (ends when the container does).
    fn rotate_logs_of(&self, id: &str) {
        if self.log_max_bytes == 0 {
            return;
        }
        tokio::spawn(rotate_logs(
            self.channel.clone(),
            id.to_owned(),
            self.log_max_bytes,
            self.log_max_files,
        ));
    }

    /// The image's user, for `runAsNonRoot`: a uid, or a name (which may be root).
    async fn image_user(&self, image: &str) -> Option<(Option<i64>, String)> {
        let status = self
            .images()
            .image_status(cri::ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            })
            .await
            .ok()?
            .into_inner();
        let image = status.image?;
        Some((image.uid.map(|u| u.value), image.username))
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        out.push(s.to_string());
        source = s.source();
    }
    out.join(": ")
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    }
}

/// kubelet's namespace options: the node's namespaces where the pod asks for them, else the
/// pod's network and IPC and the container's own PID namespace (the pod's when it shares one).
fn namespace_options(pod: &k8s_openapi::api::core::v1::Pod) -> cri::NamespaceOption {
    let spec = pod.spec.clone().unwrap_or_default();
    let mode = |node: bool, otherwise: cri::NamespaceMode| {
        if node {
            cri::NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    let pid_otherwise = if spec.share_process_namespace == Some(true) {
        cri::NamespaceMode::Pod
    } else {
        cri::NamespaceMode::Container
    };
    cri::NamespaceOption {
        network: mode(spec.host_network == Some(true), cri::NamespaceMode::Pod),
        pid: mode(spec.host_pid == Some(true), pid_otherwise),
        ipc: mode(spec.host_ipc == Some(true), cri::NamespaceMode::Pod),
        ..Default::default()
    }
}

/// The sandbox config kubelet would send for `spec` (attempt `attempt`).
pub fn sandbox_config(
    spec: &SandboxSpec,
    attempt: u32,
    cgroup_parent: &str,
) -> cri::PodSandboxConfig {
    let pod = &spec.pod;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let uid = spec.uid();
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert(UID_LABEL.into(), uid.clone());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_NAMESPACE_LABEL.into(), namespace.clone());
    let privileged = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .any(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.privileged)
                .unwrap_or(false)
        });
    let port_mappings = spec
        .host_ports()
        .into_iter()
        .map(|p| cri::PortMapping {
            protocol: match p.protocol.as_str() {
                "UDP" => cri::Protocol::Udp as i32,
                "SCTP" => cri::Protocol::Sctp as i32,
                _ => cri::Protocol::Tcp as i32,
            },
            container_port: p.container_port,
            host_port: p.host_port,
            host_ip: p.host_ip,
        })
        .collect();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name,
            uid,
            namespace,
            attempt,
        }),
        // A host-network pod keeps the node's host name.
        hostname: if spec.host_network() {
            String::new()
        } else {
            crate::dns::hostname_of(pod)
        },
        log_directory: spec.log_directory.display().to_string(),
        dns_config: Some(cri::DnsConfig {
            servers: spec.dns.servers.clone(),
            searches: spec.dns.searches.clone(),
            options: spec.dns.options.clone(),
        }),
        port_mappings,
        labels,
        annotations: pod
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.to_owned(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container config kubelet would send for `launch` (attempt `attempt`), its log path
/// relative to the sandbox's log directory.
pub fn container_config(
    launch: &Launch,
    sandbox: &cri::PodSandboxConfig,
    attempt: u32,
    hosts: Option<&Path>,
) -> Result<cri::ContainerConfig, RuntimeError> {
    let log_path = launch
        .log_path
        .strip_prefix(&sandbox.log_directory)
        .map_err(|_| {
            RuntimeError::Start(format!(
                "log path {} is outside the pod's log directory {}",
                launch.log_path.display(),
                sandbox.log_directory
            ))
        })?
        .display()
        .to_string();
    let meta = sandbox.metadata.clone().unwrap_or_default();
    let labels = HashMap::from([
        (KEY_LABEL.to_owned(), launch.key.clone()),
        (UID_LABEL.to_owned(), meta.uid.clone()),
        (POD_NAME_LABEL.to_owned(), meta.name.clone()),
        (POD_NAMESPACE_LABEL.to_owned(), meta.namespace.clone()),
        (CONTAINER_NAME_LABEL.to_owned(), launch.name.clone()),
    ]);
    let mut mounts: Vec<cri::Mount> = launch
        .mounts
        .iter()
        .map(|m| cri::Mount {
            container_path: m.target.display().to_string(),
            host_path: m.source.display().to_string(),
            readonly: m.read_only,
            propagation: match m.propagation {
                Propagation::None => cri::MountPropagation::PropagationPrivate as i32,
                Propagation::HostToContainer => {
                    cri::MountPropagation::PropagationHostToContainer as i32
                }
                Propagation::Bidirectional => {
                    cri::MountPropagation::PropagationBidirectional as i32
                }
            },
            ..Default::default()
        })
        .collect();
    let mounts_etc_hosts = mounts.iter().any(|m| m.container_path == "/etc/hosts");
    if let Some(hosts) = hosts.filter(|_| !mounts_etc_hosts) {
        mounts.push(cri::Mount {
            container_path: "/etc/hosts".into(),
            host_path: hosts.display().to_string(),
            ..Default::default()
        });
    }
    let security = &launch.security;
    let mut resources = cri::LinuxContainerResources {
        // kubelet's minimum shares (2) for a container without a CPU request.
        cpu_shares: launch
            .cpu_request_millis
            .map_or(2, |m| (m * 1024 / 1000).max(2)),
        memory_limit_in_bytes: launch.memory_limit_bytes.unwrap_or(0),
        ..Default::default()
    };
    if let Some(millis) = launch.cpu_limit_millis {
        resources.cpu_period = 100_000;
        resources.cpu_quota = (millis * 100).max(1000);
    }
    let (masked, readonly) = if security.privileged || security.unmasked_proc {
        (Vec::new(), Vec::new())
    } else {
        (
            MASKED_PATHS.iter().map(|p| (*p).to_owned()).collect(),
            READONLY_PATHS.iter().map(|p| (*p).to_owned()).collect(),
        )
    };
    let seccomp = cri::SecurityProfile {
        profile_type: if security.seccomp_unconfined || security.privileged {
            cri::security_profile::ProfileType::Unconfined as i32
        } else {
            cri::security_profile::ProfileType::RuntimeDefault as i32
        },
        ..Default::default()
    };
    let namespace_options = sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    Ok(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: launch.name.clone(),
            attempt,
        }),
        image: Some(image_spec(&launch.image)),
        command: launch.command.clone(),
        args: launch.args.clone(),
        working_dir: launch
            .working_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        envs: launch
            .env
            .iter()
            .map(|(key, value)| cri::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts,
        labels,
        log_path,
        stdin: launch.stdin,
        stdin_once: launch.stdin_once,
        tty: launch.tty,
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(cri::LinuxContainerSecurityContext {
                capabilities: Some(cri::Capability {
                    add_capabilities: security.capabilities_add.clone(),
                    drop_capabilities: security.capabilities_drop.clone(),
                    ..Default::default()
                }),
                privileged: security.privileged,
                namespace_options,
                run_as_user: launch.run_as_user.map(|u| cri::Int64Value {
                    value: i64::from(u),
                }),
                run_as_group: launch.run_as_group.map(|g| cri::Int64Value {
                    value: i64::from(g),
                }),
                readonly_rootfs: security.read_only_root_filesystem,
                supplemental_groups: security.supplemental_groups.clone(),
                no_new_privs: security.no_new_privileges,
                masked_paths: masked,
                readonly_paths: readonly,
                seccomp: Some(seccomp),
                ..Default::default()
            }),
        }),
        ..Default::default()
    })
}

/// kubelet's `verifyRunAsNonRoot`: a container that must not run as root, checked against its
/// user and the image's.
pub fn verify_run_as_non_root(
    launch: &Launch,
    image_user: Option<(Option<i64>, String)>,
) -> Result<(), RuntimeError> {
    if !launch.security.run_as_non_root {
        return Ok(());
    }
    let who = format!("(pod: {:?}, container: {})", launch.pod_ref, launch.name);
    if let Some(uid) = launch.run_as_user {
        if uid == 0 {
            return Err(RuntimeError::Config(format!(
                "container's runAsUser breaks non-root policy {who}"
            )));
        }
        return Ok(());
    }
    match image_user {
        Some((Some(0), _)) | None => Err(RuntimeError::Config(format!(
            "container has runAsNonRoot and image will run as root {who}"
        ))),
        Some((Some(_), _)) => Ok(()),
        Some((None, name)) if name.is_empty() || name == "root" => Err(RuntimeError::Config(
            format!("container has runAsNonRoot and image will run as root {who}"),
        )),
        Some((None, name)) => Err(RuntimeError::Config(format!(
            "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root {who}"
        ))),
    }
}

/// The credentials among `auth` for the registry `image` is pulled from.
fn auth_for(image: &str, auth: &[RegistryAuth]) -> Option<cri::AuthConfig> {
    let registry = super::image::registry_of(image);
    let matches = |server: &str| {
        let server = server
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("");
        server == registry
            || (registry == "docker.io"
                && matches!(server, "index.docker.io" | "registry-1.docker.io"))
    };
    auth.iter()
        .find(|a| matches(&a.server))
        .map(|a| cri::AuthConfig {
            username: a.username.clone(),
            password: a.password.clone(),
            auth: a.auth.clone(),
            server_address: a.server.clone(),
            ..Default::default()
        })
}

#[async_trait]
impl Runtime for CriRuntime {
    fn version(&self) -> String {
        self.version.clone()
    }

    fn runs_workloads(&self) -> bool {
        true
    }

    async fn ensure_sandbox(&self, spec: &SandboxSpec) -> Result<Option<String>, RuntimeError> {
        let uid = spec.uid();
        let existing = self.sandboxes_of(&uid).await;
        let ready = existing
            .iter()
            .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
            .max_by_key(|s| s.metadata.as_ref().map_or(0, |m| m.attempt));
        let (id, config) = match ready {
            Some(found) => {
                let attempt = found.metadata.as_ref().map_or(0, |m| m.attempt);
                (
                    found.id.clone(),
                    sandbox_config(spec, attempt, &self.cgroup_parent),
                )
            }
            None => {
                // A sandbox that died takes its containers with it: start over, as kubelet does.
                for old in &existing {
                    self.stop_and_remove_sandbox(&old.id).await;
                }
                let attempt = existing
                    .iter()
                    .filter_map(|s| s.metadata.as_ref().map(|m| m.attempt + 1))
                    .max()
                    .unwrap_or(0);
                let config = sandbox_config(spec, attempt, &self.cgroup_parent);
                std::fs::create_dir_all(&spec.log_directory).map_err(|e| {
                    RuntimeError::Sandbox(format!(
                        "cannot create the pod's log directory {}: {e}",
                        spec.log_directory.display()
                    ))
                })?;
                let id = self
                    .runtime()
                    .run_pod_sandbox(cri::RunPodSandboxRequest {
                        config: Some(config.clone()),
                        runtime_handler: String::new(),
                    })
                    .await
                    .map_err(|e| {
                        RuntimeError::Sandbox(format!("Failed to create pod sandbox: {}", rpc(e)))
                    })?
                    .into_inner()
                    .pod_sandbox_id;
                (id, config)
            }
        };
        let status = self
            .runtime()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await
            .map_err(|e| RuntimeError::Sandbox(rpc(e)))?
            .into_inner();
        let ip = status
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty() && !spec.host_network());
        // kubelet's hosts file: its own for a pod network, the node's plus aliases otherwise.
        let hosts_text = match &ip {
            Some(ip) => crate::dns::hosts_file(&spec.pod, ip, &spec.cluster_domain),
            None => crate::dns::host_network_hosts_file(&spec.pod, &spec.node_hosts),
        };
        let path = spec.pod_dir.join("etc-hosts");
        std::fs::create_dir_all(&spec.pod_dir)
            .and_then(|()| std::fs::write(&path, hosts_text))
            .map_err(|e| {
                RuntimeError::Sandbox(format!("cannot write the pod's hosts file: {e}"))
            })?;
        // Readable by whatever user the containers run as.
        let _ =
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let hosts = Some(path);
        if let Ok(mut map) = self.sandboxes.lock() {
            map.insert(uid, Sandbox { id, config, hosts });
        }
        Ok(ip)
    }

    async fn remove_sandbox(&self, uid: &str) {
        if let Ok(mut map) = self.sandboxes.lock() {
            map.remove(uid);
        }
        for sandbox in self.sandboxes_of(uid).await {
            self.stop_and_remove_sandbox(&sandbox.id).await;
        }
    }

    async fn image_present(&self, image: &str) -> Result<Option<bool>, RuntimeError> {
        let status = self
            .images()
            .image_status(cri::ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            })
            .await
            .map_err(|e| RuntimeError::ImagePull(rpc(e)))?
            .into_inner();
        Ok(Some(status.image.is_some()))
    }

    async fn pull_image(&self, image: &str, auth: &[RegistryAuth]) -> Result<u64, RuntimeError> {
        self.images()
            .pull_image(cri::PullImageRequest {
                image: Some(image_spec(image)),
                auth: auth_for(image, auth),
                sandbox_config: None,
            })
            .await
            .map_err(|e| RuntimeError::ImagePull(rpc(e)))?;
        let size = self
            .images()
            .image_status(cri::ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().image)
            .map_or(0, |i| i.size);
        Ok(size)
    }

    async fn start(&self, launch: Launch) -> Result<Box<dyn Container>, RuntimeError> {
        let sandbox = self
            .sandbox_of(&launch.pod_uid)
            .ok_or_else(|| RuntimeError::Start(format!("pod {} has no sandbox", launch.pod_uid)))?;
        if launch.security.run_as_non_root {
            let user = self.image_user(&launch.image).await;
            verify_run_as_non_root(&launch, user)?;
        }
        // Each start is a new container with the next attempt number; the ones before it
        // (exited, or left running by an agent that could not adopt them) go first, so there
        // is never a second copy. Their log files stay: they are ours, not the runtime's.
        let previous = self
            .containers_with(HashMap::from([(KEY_LABEL.to_owned(), launch.key.clone())]))
            .await;
        let attempt = previous
            .iter()
            .filter_map(|c| c.metadata.as_ref().map(|m| m.attempt + 1))
            .max()
            .unwrap_or(0);
        for old in &previous {
            self.stop_and_remove_container(&old.id).await;
        }
        if let Some(dir) = launch.log_path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let config = container_config(&launch, &sandbox.config, attempt, sandbox.hosts.as_deref())?;
        let mut client = self.runtime();
        let id = client
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.id.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox.config.clone()),
            })
            .await
            .map_err(|e| RuntimeError::Start(rpc(e)))?
            .into_inner()
            .container_id;
        if let Err(e) = client
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            let _ = client
                .remove_container(cri::RemoveContainerRequest {
                    container_id: id.clone(),
                })
                .await;
            return Err(RuntimeError::Start(rpc(e)));
        }
        self.rotate_logs_of(&id);
        Ok(Box::new(self.container(id)))
    }

    async fn exec_url(
        &self,
        key: &str,
        spec: &super::exec::ExecSpec,
    ) -> Option<Result<String, super::exec::ExecError>> {
        let container_id = match self.running_container_id(key).await {
            Ok(id) => id,
            Err(e) => return Some(Err(e)),
        };
        let answer = self
            .runtime()
            .exec(cri::ExecRequest {
                container_id,
                cmd: spec.argv.clone(),
                tty: spec.tty,
                stdin: spec.stdin,
                stdout: true,
                stderr: !spec.tty,
            })
            .await;
        Some(answer.map(|r| r.into_inner().url).map_err(start_error))
    }

    async fn attach_url(
        &self,
        key: &str,
        spec: &super::exec::ExecSpec,
    ) -> Option<Result<String, super::exec::ExecError>> {
        let container_id = match self.running_container_id(key).await {
            Ok(id) => id,
            Err(e) => return Some(Err(e)),
        };
        let answer = self
            .runtime()
            .attach(cri::AttachRequest {
                container_id,
                tty: spec.tty,
                stdin: spec.stdin,
                stdout: true,
                stderr: !spec.tty,
            })
            .await;
        Some(answer.map(|r| r.into_inner().url).map_err(start_error))
    }

    async fn port_forward(&self, pod_uid: &str, port: u16) -> Result<TcpStream, String> {
        let sandbox = self
            .sandboxes_of(pod_uid)
            .await
            .into_iter()
            .find(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
            .ok_or_else(|| "the pod has no running sandbox".to_owned())?;
        let status = self
            .runtime()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.id.clone(),
                verbose: true,
            })
            .await
            .map_err(rpc)?
            .into_inner();
        // containerd's verbose status names the sandbox's process; its namespace is the pod's.
        let pid = status
            .info
            .get("info")
            .and_then(|info| serde_json::from_str::<serde_json::Value>(info).ok())
            .and_then(|info| info["pid"].as_u64())
            .filter(|pid| *pid > 0)
            .ok_or_else(|| {
                format!(
                    "the runtime did not say which process holds sandbox {}",
                    sandbox.id
                )
            })?;
        super::port_forward::connect_in_namespace(format!("/proc/{pid}/ns/net").into(), port).await
    }

    async fn usage(&self, key: &str) -> Option<crate::usage::Usage> {
        let running = self
            .containers_with(HashMap::from([(KEY_LABEL.to_owned(), key.to_owned())]))
            .await
            .into_iter()
            .find(|c| c.state == cri::ContainerState::ContainerRunning as i32)?;
        let stats = self
            .runtime()
            .container_stats(cri::ContainerStatsRequest {
                container_id: running.id,
            })
            .await
            .ok()?
            .into_inner()
            .stats?;
        Some(crate::usage::Usage {
            cpu_seconds: stats
                .cpu
                .and_then(|c| c.usage_core_nano_seconds)
                .map_or(0.0, |v| v.value as f64 / 1e9),
            memory_working_set_bytes: stats
                .memory
                .and_then(|m| m.working_set_bytes)
                .map_or(0, |v| v.value),
        })
    }

    async fn adopt(&self, key: &str) -> Option<Box<dyn Container>> {
        let running = self
            .containers_with(HashMap::from([(KEY_LABEL.to_owned(), key.to_owned())]))
            .await
            .into_iter()
            .find(|c| c.state == cri::ContainerState::ContainerRunning as i32)?;
        self.rotate_logs_of(&running.id);
        Some(Box::new(self.container(running.id)))
    }

    async fn remove_others(&self, keep: &[String]) {
        let uids: Vec<&str> = keep
            .iter()
            .filter_map(|k| k.split_once('/').map(|(uid, _)| uid))
            .collect();
        for c in self.containers_with(HashMap::new()).await {
            match c.labels.get(KEY_LABEL) {
                Some(key) if keep.contains(key) => {}
                Some(key) => {
                    tracing::info!(
                        key,
                        "removing a container of a pod this node no longer runs"
                    );
                    self.stop_and_remove_container(&c.id).await;
                }
                None => {}
            }
        }
        let sandboxes = self
            .runtime()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .map(|r| r.into_inner().items)
            .unwrap_or_default();
        for s in sandboxes {
            let Some(uid) = s.labels.get(UID_LABEL) else {
                continue;
            };
            if !uids.contains(&uid.as_str()) {
                tracing::info!(
                    uid,
                    "removing the sandbox of a pod this node no longer runs"
                );
                self.stop_and_remove_sandbox(&s.id).await;
                if let Ok(mut map) = self.sandboxes.lock() {
                    map.remove(uid);
                }
            }
        }
    }
}

/// How often a running container's log size is checked (kubelet's log manager: 10 s).
const ROTATION_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Checks a container's log every `ROTATION_CHECK_EVERY` while it runs; past `max_bytes`, moves
/// it aside (`rotate_files`) and asks the runtime to reopen it (`ReopenContainerLog`).
async fn rotate_logs(channel: Channel, id: String, max_bytes: u64, max_files: usize) {
    let mut client = RuntimeServiceClient::new(channel);
    loop {
        tokio::time::sleep(ROTATION_CHECK_EVERY).await;
        let Ok(reply) = client
            .container_status(cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
        else {
            return;
        };
        let Some(status) = reply.into_inner().status else {
            return;
        };
        if status.state != cri::ContainerState::ContainerRunning as i32 {
            return;
        }
        let path = PathBuf::from(&status.log_path);
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        if size <= max_bytes {
            continue;
        }
        super::shim::rotate_files(&path, max_files);
        if let Err(e) = client
            .reopen_container_log(cri::ReopenContainerLogRequest {
                container_id: id.clone(),
            })
            .await
        {
            tracing::warn!(container = %id, error = %rpc(e), "could not reopen a rotated log");
        }
    }
}

/// A CRI container; its state is asked of the runtime.
struct CriContainer {
    id: String,
    scheme: String,
    channel: Channel,
}

impl CriContainer {
    fn client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }
}

#[async_trait]
impl Container for CriContainer {
    fn id(&self) -> String {
        format!("{}://{}", self.scheme, self.id)
    }

    async fn wait(&self) -> Exit {
        loop {
            let status = self
                .client()
                .container_status(cri::ContainerStatusRequest {
                    container_id: self.id.clone(),
                    verbose: false,
                })
                .await;
            match status {
                Ok(r) => {
                    if let Some(s) = r.into_inner().status
                        && s.state == cri::ContainerState::ContainerExited as i32
                    {
                        return Exit {
                            code: s.exit_code,
                            signal: None,
                            oom_killed: s.reason == "OOMKilled",
                        };
                    }
                }
                // Gone from the runtime: kubelet's `ContainerStatusUnknown`, exit 137.
                Err(e) if e.code() == tonic::Code::NotFound => return Exit::code(137),
                Err(e) => {
                    tracing::debug!(container = %self.id, error = %rpc(e), "container status");
                }
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    fn signal(&self, kill: bool) {
        let mut client = self.client();
        let id = self.id.clone();
        tokio::spawn(async move {
            let timeout = if kill { 0 } else { STOP_CEILING_SECONDS };
            if let Err(e) = client
                .stop_container(cri::StopContainerRequest {
                    container_id: id.clone(),
                    timeout,
                })
                .await
            {
                tracing::debug!(container = %id, error = %rpc(e), "stop container");
            }
        });
    }

    async fn exec(&self, argv: &[String], timeout: Duration) -> Result<ExecResult, RuntimeError> {
        let request = cri::ExecSyncRequest {
            container_id: self.id.clone(),
            cmd: argv.to_vec(),
            timeout: timeout.as_secs().max(1) as i64,
        };
        let reply = tokio::time::timeout(
            timeout + Duration::from_secs(5),
            self.client().exec_sync(request),
        )
        .await
        .map_err(|_| {
            RuntimeError::Start(format!(
                "command timed out after {}s",
                timeout.as_secs().max(1)
            ))
        })?
        .map_err(|e| RuntimeError::Start(rpc(e)))?
        .into_inner();
        let mut output = String::from_utf8_lossy(&reply.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&reply.stderr));
        Ok(ExecResult {
            code: reply.exit_code,
            output,
        })
    }
}

/// The labels we put on a sandbox, for tests and `crictl`-style inspection.
pub fn sandbox_labels(config: &cri::PodSandboxConfig) -> BTreeMap<String, String> {
    config.labels.clone().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Mount, Security};
    use serde_json::json;
    use std::sync::Arc;

    fn spec(pod: serde_json::Value) -> SandboxSpec {
        SandboxSpec {
            pod: Arc::new(serde_json::from_value(pod).expect("a pod")),
            log_directory: "/d/logs/ns_p_u1".into(),
            pod_dir: "/d/pods/u1".into(),
            dns: crate::dns::Resolv {
                servers: vec!["10.0.0.2".into()],
                ..Default::default()
            },
            node_hosts: String::new(),
            cluster_domain: "cluster.local".into(),
        }
    }

    fn pod(spec: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "a"}}, "spec": spec})
    }

    #[test]
    fn sandbox_config_carries_namespaces_ports_and_labels() {
        let s = spec(pod(json!({
            "hostNetwork": true,
            "hostPID": true,
            "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}],
                            "securityContext": {"privileged": true}}],
        })));
        let c = sandbox_config(&s, 2, "/everynode/node-1");
        let meta = c.metadata.clone().expect("metadata");
        assert_eq!(
            (meta.name.as_str(), meta.uid.as_str(), meta.attempt),
            ("p", "u1", 2)
        );
        assert_eq!(
            c.hostname, "",
            "a host-network pod keeps the node's host name"
        );
        let linux = c.linux.clone().expect("linux");
        assert_eq!(linux.cgroup_parent, "/everynode/node-1");
        let sc = linux.security_context.expect("security context");
        assert!(sc.privileged);
        let ns = sc.namespace_options.expect("namespaces");
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
        assert_eq!(ns.pid, cri::NamespaceMode::Node as i32);
        assert_eq!(ns.ipc, cri::NamespaceMode::Pod as i32);
        assert_eq!(c.port_mappings.len(), 1);
        assert_eq!(c.port_mappings[0].host_port, 8080);
        let labels = sandbox_labels(&c);
        assert_eq!(labels.get("app").map(String::as_str), Some("a"));
        assert_eq!(labels.get(UID_LABEL).map(String::as_str), Some("u1"));
        assert_eq!(c.dns_config.expect("dns").servers, ["10.0.0.2"]);
    }

    #[test]
    fn a_pod_network_pod_gets_its_own_hostname_and_namespaces() {
        let s = spec(pod(json!({"containers": [{"name": "c"}]})));
        let c = sandbox_config(&s, 0, "/x");
        assert_eq!(c.hostname, "p");
        let ns = c
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.namespace_options)
            .expect("ns");
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
        assert_eq!(ns.pid, cri::NamespaceMode::Container as i32);
    }

    fn launch() -> Launch {
        Launch {
            key: "u1/c".into(),
            pod_uid: "u1".into(),
            name: "c".into(),
            image: "docker.io/local/busybox:1".into(),
            log_path: "/d/logs/ns_p_u1/c/3.log".into(),
            mounts: vec![Mount {
                source: "/host/csi".into(),
                target: "/csi".into(),
                read_only: false,
                propagation: Propagation::Bidirectional,
            }],
            memory_limit_bytes: Some(32 << 20),
            cpu_limit_millis: Some(500),
            cpu_request_millis: Some(250),
            env: vec![("A".into(), "1".into())],
            ..Default::default()
        }
    }

    #[test]
    fn container_config_maps_resources_mounts_and_log_path() {
        let s = spec(pod(json!({"containers": [{"name": "c"}]})));
        let sandbox = sandbox_config(&s, 0, "/x");
        let c = container_config(
            &launch(),
            &sandbox,
            3,
            Some(Path::new("/d/pods/u1/etc-hosts")),
        )
        .expect("a config");
        assert_eq!(c.log_path, "c/3.log");
        assert_eq!(c.metadata.expect("metadata").attempt, 3);
        let linux = c.linux.expect("linux");
        let r = linux.resources.expect("resources");
        assert_eq!(r.memory_limit_in_bytes, 32 << 20);
        assert_eq!(
            (r.cpu_period, r.cpu_quota, r.cpu_shares),
            (100_000, 50_000, 256)
        );
        assert_eq!(
            c.mounts[0].propagation,
            cri::MountPropagation::PropagationBidirectional as i32
        );
        assert_eq!(c.mounts[1].container_path, "/etc/hosts");
        assert_eq!(c.envs[0].key, "A");
        assert_eq!(c.labels.get(KEY_LABEL).map(String::as_str), Some("u1/c"));
        let sc = linux.security_context.expect("security");
        assert_eq!(sc.masked_paths.len(), MASKED_PATHS.len());
        assert_eq!(
            sc.seccomp.expect("seccomp").profile_type,
            cri::security_profile::ProfileType::RuntimeDefault as i32
        );
    }

    #[test]
    fn a_log_path_outside_the_pods_directory_is_refused() {
        let s = spec(pod(json!({"containers": [{"name": "c"}]})));
        let sandbox = sandbox_config(&s, 0, "/x");
        let mut l = launch();
        l.log_path = "/elsewhere/0.log".into();
        assert!(container_config(&l, &sandbox, 0, None).is_err());
    }

    #[test]
    fn privileged_containers_are_unmasked_and_unconfined() {
        let s = spec(pod(json!({"containers": [{"name": "c"}]})));
        let sandbox = sandbox_config(&s, 0, "/x");
        let mut l = launch();
        l.security = Security {
            privileged: true,
            ..Default::default()
        };
        let sc = container_config(&l, &sandbox, 0, None)
            .expect("config")
            .linux
            .and_then(|l| l.security_context)
            .expect("security");
        assert!(sc.privileged && sc.masked_paths.is_empty());
        assert_eq!(
            sc.seccomp.expect("seccomp").profile_type,
            cri::security_profile::ProfileType::Unconfined as i32
        );
    }

    #[test]
    fn run_as_non_root_is_verified_as_kubelet_does() {
        let mut l = launch();
        l.pod_ref = "p_ns(u1)".into();
        l.security.run_as_non_root = true;
        let root =
            verify_run_as_non_root(&l, Some((Some(0), String::new()))).expect_err("root image");
        assert_eq!(
            root.to_string(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)"
        );
        assert!(verify_run_as_non_root(&l, Some((Some(1000), String::new()))).is_ok());
        l.run_as_user = Some(0);
        assert!(
            verify_run_as_non_root(&l, None)
                .expect_err("uid 0")
                .to_string()
                .starts_with("container's runAsUser breaks non-root policy")
        );
        l.run_as_user = Some(65534);
        assert!(verify_run_as_non_root(&l, None).is_ok());
    }

    #[test]
    fn pull_credentials_match_the_images_registry() {
        let auth = vec![
            RegistryAuth {
                server: "https://index.docker.io/v1/".into(),
                username: "hub".into(),
                ..Default::default()
            },
            RegistryAuth {
                server: "registry.example:5000".into(),
                username: "corp".into(),
                ..Default::default()
            },
        ];
        assert_eq!(
            auth_for("busybox", &auth).map(|a| a.username),
            Some("hub".into())
        );
        assert_eq!(
            auth_for("registry.example:5000/a/b:1", &auth).map(|a| a.username),
            Some("corp".into())
        );
        assert_eq!(auth_for("quay.io/x", &auth), None);
    }
}
