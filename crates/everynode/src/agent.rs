//! `everynode agent`: one node (process or CRI runtime), or a fleet of hollow nodes for scale
//! work.

use crate::Error;
use everynode_agent::agent::{self, AgentConfig};
use everynode_agent::endpoint_tls::ServingIdentity;
use everynode_agent::logs::LogServer;
use everynode_agent::node::{NodeConfig, host_info};
use everynode_agent::runtime::Runtime;
use everynode_agent::runtime::cri::CriRuntime;
use everynode_agent::runtime::hollow::HollowRuntime;
use everynode_agent::runtime::process::ProcessRuntime;
use k8s_openapi::api::core::v1::Taint;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Containers are supervised host processes (command and args run as they are).
    Process,
    /// Nothing runs; pods become Running and Ready after --hollow-start-delay-ms.
    Hollow,
    /// Containers run from images on a CRI runtime (containerd), each pod in its own sandbox
    /// with its own network namespace and IP (--container-runtime-endpoint).
    Cri,
}

#[derive(clap::Args, Clone, Debug)]
pub struct AgentArgs {
    /// API server URL (with --token). Alternatively --kubeconfig, or --join. Several,
    /// comma-separated (servers sharing one etcd): the agent fails over to the next when one
    /// cannot be reached. With --kubeconfig, these replace its server (its credentials and CA
    /// are kept).
    #[arg(long, conflicts_with = "join", value_delimiter = ',')]
    pub server: Vec<String>,
    /// Bearer token for the API server; with --join, the bootstrap token.
    #[arg(long, env = "EVERYNODE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Join the cluster at this URL with a bootstrap token (`everynode token create`): the
    /// agent gets a client certificate of its own (`system:node:<name>`), kept as
    /// `<state-dir>/kubeconfig` and used from then on.
    #[arg(long, requires_all = ["token", "ca_cert_hash"], conflicts_with = "kubeconfig")]
    pub join: Option<String>,
    /// With --join: `sha256:<hex>` of the cluster CA's public key, as `everynode token create`
    /// prints. The token is sent only to a server whose CA matches.
    #[arg(long, requires = "join")]
    pub ca_cert_hash: Option<String>,
    /// CA certificate (PEM) of the API server, with --server. The agent's endpoint also accepts
    /// only client certificates this CA signed (the API server's).
    #[arg(long)]
    pub certificate_authority: Option<PathBuf>,
    /// kubeconfig to reach the API server (the one `everynode server` writes).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Die (SIGKILL) when the process that started this agent dies, as `everynode up` asks of
    /// its agents: no agent outlives it, and the containers, which do, are adopted by the next.
    #[arg(long)]
    pub exit_with_parent: bool,
    /// Node name (default: this host's name). With --hollow-nodes, the prefix of the names.
    #[arg(long)]
    pub name: Option<String>,
    /// The node's InternalIP; also the process runtime's pod IP (pods share the host network).
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: String,
    /// Address of the agent's HTTPS endpoint (logs). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:10250")]
    pub listen: SocketAddr,
    /// Where the agent keeps pod volumes, container state and logs.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = RuntimeKind::Process)]
    pub runtime: RuntimeKind,
    /// The CRI socket of the container runtime (with --runtime cri), e.g.
    /// unix:///run/containerd/containerd.sock.
    #[arg(long, required_if_eq("runtime", "cri"))]
    pub container_runtime_endpoint: Option<String>,
    /// Parent cgroup of this node's pods (with --runtime cri; default /everynode/<node>).
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// This node's pod network, recorded as the Node's spec.podCIDR (with --runtime cri, whose
    /// CNI configuration allocates from it).
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// The bridge this node's pods are attached to (with --runtime cri and --pod-cidr): the
    /// Service proxy takes the pods' traffic for cluster IPs from it, through an nftables table
    /// of the node's own, and listens on the bridge's gateway (the first address of the pod
    /// CIDR). Without it, only node ports are proxied.
    #[arg(long, requires = "pod_cidr")]
    pub pod_bridge: Option<String>,
    /// Do not run the Service proxy (node ports on --node-ip, cluster IPs for pods).
    #[arg(long)]
    pub no_proxy: bool,
    /// Do not serve the cluster DNS to this node's pods (served on the pod bridge's gateway,
    /// port 53, with --pod-bridge); `ClusterFirst` pods then get the node's resolvers.
    #[arg(long)]
    pub no_cluster_dns: bool,
    /// Where the cluster DNS sends names outside the cluster: resolvers as `IP` or `IP:port`,
    /// comma-separated (default: the nameservers of this host's /etc/resolv.conf).
    #[arg(long, value_delimiter = ',')]
    pub dns_upstream: Vec<String>,
    /// Run this many hollow nodes in this process (requires --runtime hollow).
    #[arg(long, default_value_t = 1)]
    pub hollow_nodes: usize,
    /// How long a hollow container takes to start.
    #[arg(long, default_value_t = 500)]
    pub hollow_start_delay_ms: u64,
    /// With --runtime hollow: every running container writes one synthetic log line a second,
    /// to measure log streams (`daemonsets/{name}/log`) at scale.
    #[arg(long)]
    pub hollow_log_lines: bool,
    /// Extra node labels, `key=value,key2=value2`.
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Taints set when the node registers, `key=value:Effect,key:Effect`.
    #[arg(long, value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    /// Extended resources the node offers, `name=quantity` (e.g. `nvidia.com/gpu=2`).
    #[arg(long = "extended-resource")]
    pub extended_resources: Vec<String>,
    /// CPU capacity (default: this host's cores; 4 for hollow nodes).
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory capacity (default: this host's memory; 8Gi for hollow nodes).
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Lease duration; the lease is renewed every quarter of it.
    #[arg(long, default_value_t = 40)]
    pub node_lease_duration_seconds: i32,
    /// Seconds between node status checks (patched when changed).
    #[arg(long, default_value_t = 10)]
    pub node_status_update_frequency: u64,
    /// Rotate a container log when it reaches this many bytes.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub container_log_max_size: u64,
    /// Directory of static pod manifests (YAML or JSON), run on this node and published as
    /// mirror pods `<name>-<node>`.
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
    /// Log files kept per container start, the live one included.
    #[arg(long, default_value_t = 5)]
    pub container_log_max_files: usize,
    /// On SIGTERM or Ctrl-C, the node is marked shutting down (condition `ShuttingDown`, taint
    /// `everynode.dev/shutting-down:NoSchedule`) and each pod gets at most this many seconds to
    /// terminate. A hollow fleet of more than one node stops its pods without marking.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace_period: u64,
}

fn parse_taint(text: &str) -> Result<Taint, Error> {
    let bad = || {
        Error::Usage(format!(
            "invalid taint {text:?}: want key=value:Effect or key:Effect"
        ))
    };
    let (kv, effect) = text.rsplit_once(':').ok_or_else(bad)?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(bad());
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
        None => (kv.to_owned(), None),
    };
    Ok(Taint {
        key,
        value,
        effect: effect.to_owned(),
        time_added: None,
    })
}

fn parse_pairs(items: &[String], what: &str) -> Result<BTreeMap<String, String>, Error> {
    items
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| Error::Usage(format!("invalid {what} {s:?}: want name=value")))
        })
        .collect()
}

/// The client for the API server, and the cluster CA (PEM) when one is known: the kubeconfig's
/// `certificate-authority-data` or file, or `--certificate-authority`.
async fn client(args: &AgentArgs) -> Result<(kube::Client, Option<Vec<u8>>), Error> {
    if let Some(path) = &args.kubeconfig {
        let kc = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| Error::Startup(format!("reading {}: {e}", path.display())))?;
        // A token or a client certificate (`everynode up` gives each agent a certificate of
        // its own node identity).
        let has_credential = kc
            .auth_infos
            .first()
            .and_then(|a| a.auth_info.as_ref())
            .is_some_and(|a| {
                a.token.is_some()
                    || a.token_file.is_some()
                    || a.client_certificate_data.is_some()
                    || a.client_certificate.is_some()
            });
        if !has_credential {
            return Err(Error::Usage(format!(
                "{} has no credential (a token or a client certificate)",
                path.display()
            )));
        }
        let cluster = kc.clusters.first().and_then(|c| c.cluster.as_ref());
        let ca = match cluster {
            Some(c) if c.certificate_authority_data.is_some() => {
                use base64::Engine;
                let data = c.certificate_authority_data.as_deref().unwrap_or_default();
                Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(data.trim())
                        .map_err(|e| {
                            Error::Startup(format!(
                                "{}: certificate-authority-data is not base64: {e}",
                                path.display()
                            ))
                        })?,
                )
            }
            Some(c) if c.certificate_authority.is_some() => {
                let file = PathBuf::from(c.certificate_authority.clone().unwrap_or_default());
                Some(std::fs::read(&file).map_err(|source| Error::Read { path: file, source })?)
            }
            _ => None,
        };
        let client = match args.server.as_slice() {
            [] => crate::server::client_from_kubeconfig(path).await?,
            servers => {
                let base = crate::server::config_from_kubeconfig(path).await?;
                crate::failover::client(&base, servers)?
            }
        };
        return Ok((client, ca));
    }
    let (Some(server), Some(token)) = (args.server.first(), &args.token) else {
        return Err(Error::Usage(
            "an agent needs --kubeconfig, or --server and --token".into(),
        ));
    };
    let url: http::Uri = server
        .parse()
        .map_err(|e| Error::Usage(format!("invalid --server {server:?}: {e}")))?;
    let mut config = kube::Config::new(url);
    config.auth_info.token = Some(token.clone().into());
    let mut ca = None;
    if let Some(path) = &args.certificate_authority {
        let pem = std::fs::read(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let certs: Vec<Vec<u8>> = rustls_pemfile::certs(&mut pem.as_slice())
            .filter_map(Result::ok)
            .map(|c| c.to_vec())
            .collect();
        config.root_cert = Some(certs);
        ca = Some(pem);
    }
    let client = if args.server.len() > 1 {
        crate::failover::client(&config, &args.server)?
    } else {
        kube::Client::try_from(config).map_err(|e| Error::Startup(e.to_string()))?
    };
    Ok((client, ca))
}

/// This host's name, lower-cased: the node name when none is given.
fn default_node_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "node".into())
        .to_lowercase()
}

/// Asks the kernel for SIGKILL when the parent dies; if it already has (this process was
/// reparented before asking), exits now.
fn exit_with_parent() -> Result<(), Error> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| Error::Startup(format!("--exit-with-parent: {e}")))?;
    if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
        return Err(Error::Startup(
            "--exit-with-parent: the parent is already gone".into(),
        ));
    }
    Ok(())
}

pub async fn run(args: AgentArgs) -> Result<(), Error> {
    if args.exit_with_parent {
        exit_with_parent()?;
    }
    let hollow = args.runtime == RuntimeKind::Hollow;
    if args.hollow_nodes != 1 && !hollow {
        return Err(Error::Usage(
            "--hollow-nodes requires --runtime hollow".into(),
        ));
    }
    let mut args = args;
    if let (Some(url), Some(token), Some(hash)) = (&args.join, &args.token, &args.ca_cert_hash) {
        if args.hollow_nodes != 1 {
            return Err(Error::Usage(
                "--join makes one node; drop --hollow-nodes".into(),
            ));
        }
        let name = args.name.clone().unwrap_or_else(default_node_name);
        let state_dir = args
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("everynode-agent").join(&name));
        crate::private_dir(&state_dir)?;
        let kubeconfig = crate::join::kubeconfig(&crate::join::Join {
            url,
            token,
            ca_cert_hash: hash,
            node_name: &name,
            state_dir: &state_dir,
        })
        .await?;
        args.name = Some(name);
        args.state_dir = Some(state_dir);
        args.kubeconfig = Some(kubeconfig);
        args.token = None;
    }
    let (client, cluster_ca) = client(&args).await?;
    let cert_names = vec![
        args.node_ip.clone(),
        args.name.clone().unwrap_or_else(|| "localhost".into()),
        "localhost".into(),
    ];
    let identity =
        ServingIdentity::generate(&cert_names).map_err(|e| Error::Startup(e.to_string()))?;
    let base_name = args.name.clone().unwrap_or_else(default_node_name);
    let state_root = args
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("everynode-agent").join(&base_name));
    crate::private_dir(&state_root)?;
    let runtime: Arc<dyn Runtime> = match args.runtime {
        RuntimeKind::Hollow => {
            let hollow = HollowRuntime::new(Duration::from_millis(args.hollow_start_delay_ms));
            Arc::new(if args.hollow_log_lines {
                hollow.with_log_lines(everynode_clock::system())
            } else {
                hollow
            })
        }
        RuntimeKind::Process => {
            let exe = std::env::current_exe().map_err(|e| {
                Error::Startup(format!("cannot find this executable for the shim: {e}"))
            })?;
            Arc::new(ProcessRuntime::new(&state_root, exe))
        }
        RuntimeKind::Cri => {
            let endpoint = args.container_runtime_endpoint.clone().unwrap_or_default();
            let cgroup_parent = args
                .cgroup_parent
                .clone()
                .unwrap_or_else(|| format!("/everynode/{base_name}"));
            let cri = CriRuntime::connect(&endpoint, cgroup_parent, Duration::from_secs(30))
                .await
                .map_err(|e| Error::Startup(e.to_string()))?
                .with_log_rotation(args.container_log_max_size, args.container_log_max_files);
            Arc::new(cri)
        }
    };
    let (listener, local) = crate::bind(args.listen).await?;
    let port = local.port();
    let (cpus, memory, info) = host_info(&runtime.version());
    let mut capacity = BTreeMap::from([
        (
            "cpu".to_owned(),
            args.cpu
                .clone()
                .unwrap_or_else(|| if hollow { "4".into() } else { cpus.to_string() }),
        ),
        (
            "memory".to_owned(),
            args.memory.clone().unwrap_or_else(|| {
                if hollow {
                    "8Gi".into()
                } else {
                    format!("{}Ki", memory / 1024)
                }
            }),
        ),
        ("pods".to_owned(), args.max_pods.to_string()),
        ("ephemeral-storage".to_owned(), "100Gi".to_owned()),
    ]);
    capacity.extend(parse_pairs(&args.extended_resources, "extended resource")?);
    let labels = parse_pairs(&args.node_labels, "node label")?;
    let taints = args
        .register_with_taints
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| parse_taint(s))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<String> = if hollow && args.hollow_nodes > 1 {
        (1..=args.hollow_nodes)
            .map(|i| format!("{base_name}-{i:05}"))
            .collect()
    } else {
        vec![base_name.clone()]
    };
    // Served where the pods' traffic leaves them, for a node whose pods have a network of
    // their own.
    let cluster_dns = match (
        hollow || args.no_cluster_dns,
        &args.pod_bridge,
        &args.pod_cidr,
    ) {
        (false, Some(_), Some(cidr)) => Some(everynode_agent::cluster_dns::DnsConfig {
            listen: std::net::SocketAddr::from((first_host(cidr)?, 53)),
            zone: everynode_agent::dns::CLUSTER_DOMAIN.to_owned(),
            upstream: dns_upstream(&args.dns_upstream)?,
        }),
        _ => None,
    };
    let report_every = Duration::from_secs(300);
    let configs: Vec<AgentConfig> = names
        .iter()
        .enumerate()
        .map(|(index, name)| AgentConfig {
            node: NodeConfig {
                name: name.clone(),
                ip: args.node_ip.clone(),
                labels: labels.clone(),
                taints: taints.clone(),
                capacity: capacity.clone(),
                info: info.clone(),
                port,
                certificate_sha256: identity.sha256(),
                lease_duration_seconds: args.node_lease_duration_seconds,
                status_update_frequency: Duration::from_secs(
                    args.node_status_update_frequency.max(1),
                ),
                status_report_frequency: report_every,
                // A fleet spreads its reports over the period (index / nodes of it).
                status_report_phase: report_every.mul_f64(index as f64 / names.len() as f64),
                pod_cidr: args.pod_cidr.clone(),
            },
            state_dir: if names.len() == 1 {
                state_root.clone()
            } else {
                state_root.join(name)
            },
            log_max_bytes: args.container_log_max_size,
            log_max_files: args.container_log_max_files,
            normal_events: !hollow,
            pod_manifest_path: args.pod_manifest_path.clone(),
            shutdown_grace_period: (names.len() == 1)
                .then(|| Duration::from_secs(args.shutdown_grace_period)),
            cluster_dns: cluster_dns.as_ref().map(|d| d.listen.ip().to_string()),
        })
        .collect();
    // The agent's one clock: the system's.
    let clock = everynode_clock::system();
    let log_server = LogServer {
        state_dirs: Arc::new(configs.iter().map(|c| c.state_dir.clone()).collect()),
        clock: clock.clone(),
    };
    // Without the cluster CA (a plain-HTTP server on loopback) the endpoint could not tell the
    // API server from anyone else, so it does not serve: logs are then unavailable.
    match cluster_ca {
        Some(ca) => {
            let tls = identity
                .server_config(&ca)
                .map_err(|e| Error::Startup(e.to_string()))?;
            let router = everynode_agent::endpoint::router(
                log_server,
                everynode_agent::endpoint::Workloads {
                    state_dirs: Arc::new(configs.iter().map(|c| c.state_dir.clone()).collect()),
                    runtime: Arc::clone(&runtime),
                },
            );
            tokio::spawn(async move {
                if let Err(e) = everynode_agent::endpoint::serve(listener, router, tls).await {
                    tracing::error!(error = %e, "the agent endpoint stopped");
                }
            });
        }
        None => tracing::warn!(
            "no cluster CA (the kubeconfig has none and no --certificate-authority was given): \
             the agent endpoint is off, so `kubectl logs` cannot reach this node"
        ),
    }
    eprintln!(
        "everynode agent: {} node(s) ({}), endpoint port {port}, state in {}",
        configs.len(),
        runtime.version(),
        state_root.display()
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::stop_signal().await;
        tracing::info!("stopping: pods on this node are stopped first");
        let _ = stop_tx.send(true);
    });
    // One watch of Services and EndpointSlices for the proxy and the DNS; a hollow fleet has
    // no traffic to carry.
    let wanted = !args.no_proxy || cluster_dns.is_some();
    let services = (!hollow && wanted)
        .then(|| everynode_agent::service_cache::ServiceCache::start(client.clone()));
    let proxy = match (&services, args.no_proxy, configs.first()) {
        (Some(cache), false, Some(only)) => {
            let config = proxy_config(&only.node.name, &args)?;
            Some(tokio::spawn(everynode_agent::proxy::run(
                cache.clone(),
                config,
                stop_rx.clone(),
            )))
        }
        _ => None,
    };
    if let (Some(cache), Some(dns)) = (&services, cluster_dns) {
        let (cache, stop) = (cache.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let listen = dns.listen;
            if let Err(e) = everynode_agent::cluster_dns::run(cache, dns, stop).await {
                tracing::error!(%listen, error = %e, "the cluster DNS cannot serve");
            }
        });
    }
    agent::run(client, configs, runtime, clock, stop_rx).await;
    if let Some(proxy) = proxy {
        // It removes its nftables table once it sees the stop.
        let _ = proxy.await;
    }
    Ok(())
}

/// The cluster DNS's resolvers for other names: as given, or this host's.
fn dns_upstream(given: &[String]) -> Result<Vec<std::net::SocketAddr>, Error> {
    let with_port = |text: &str| -> Option<std::net::SocketAddr> {
        text.parse().ok().or_else(|| {
            text.parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| (ip, 53).into())
        })
    };
    if given.is_empty() {
        let (host, _) = &*everynode_agent::dns::NODE_FILES;
        return Ok(host.servers.iter().filter_map(|s| with_port(s)).collect());
    }
    given
        .iter()
        .map(|s| {
            with_port(s)
                .ok_or_else(|| Error::Usage(format!("--dns-upstream {s:?}: want an IP or IP:port")))
        })
        .collect()
}

/// The Service proxy's settings from the agent's flags.
fn proxy_config(
    node: &str,
    args: &AgentArgs,
) -> Result<everynode_agent::proxy::ProxyConfig, Error> {
    let node_ip = args
        .node_ip
        .parse()
        .map_err(|_| Error::Usage(format!("--node-ip {:?} is not an IP address", args.node_ip)))?;
    let pod_network = match (&args.pod_bridge, &args.pod_cidr) {
        (Some(bridge), Some(cidr)) => Some(everynode_agent::proxy::PodNetwork {
            bridge: bridge.clone(),
            gateway: first_host(cidr)?,
        }),
        _ => None,
    };
    Ok(everynode_agent::proxy::ProxyConfig {
        node: node.to_owned(),
        node_ip,
        pod_network,
    })
}

/// The first host address of an IPv4 CIDR: the CNI bridge's own (its gateway for the pods).
fn first_host(cidr: &str) -> Result<std::net::Ipv4Addr, Error> {
    everynode_api::service_ranges::ClusterIpRange::parse(cidr)
        .map(|range| range.nth(0))
        .map_err(|e| Error::Usage(format!("--pod-cidr: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_gateway_is_the_first_address_of_the_pod_cidr() {
        assert_eq!(
            first_host("10.251.2.0/24").expect("cidr"),
            std::net::Ipv4Addr::new(10, 251, 2, 1)
        );
        assert_eq!(
            first_host("10.251.2.77/24").expect("cidr"),
            std::net::Ipv4Addr::new(10, 251, 2, 1)
        );
        assert!(first_host("10.251.2.0").is_err());
        assert!(first_host("10.251.2.0/32").is_err());
    }

    #[test]
    fn taints_parse_like_kubelet_flags() {
        let t = parse_taint("dedicated=gpu:NoSchedule").expect("taint");
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        let t = parse_taint("edge:NoExecute").expect("taint");
        assert_eq!(
            (t.key.as_str(), t.value, t.effect.as_str()),
            ("edge", None, "NoExecute")
        );
        assert!(parse_taint("x=y:Sometimes").is_err());
        assert!(parse_taint("novalue").is_err());
    }
}
