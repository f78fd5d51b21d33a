//! This node in the API: registration (labels, taints, capacity), status heartbeats with the
//! four kubelet conditions, and the Lease in `kube-node-lease` the node lifecycle controller
//! watches.

use everynode_clock::{Clock, SharedClock};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Where the agent publishes its endpoint's certificate: the API server pins it, so a Node
/// pointing its address elsewhere reaches nothing that can answer.
pub use everynode_api::node_endpoint::CERTIFICATE_ANNOTATION;

/// Everything that describes this node, decided before registration.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: String,
    pub ip: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// capacity (cpu, memory, pods, ephemeral-storage, extended resources); allocatable equals it.
    pub capacity: BTreeMap<String, String>,
    pub info: NodeSystemInfo,
    /// Port of the agent's HTTPS endpoint (logs), published as the kubelet endpoint.
    pub port: u16,
    /// SHA-256 (hex) of the endpoint's serving certificate, published on the Node as
    /// [`CERTIFICATE_ANNOTATION`] so the API server talks only to this agent at that address.
    pub certificate_sha256: String,
    pub lease_duration_seconds: i32,
    pub status_update_frequency: Duration,
    /// Status is patched at least this often even when unchanged (upstream 5 min).
    pub status_report_frequency: Duration,
    /// How far into its first report period the node starts. Nodes started together (a fleet
    /// in one agent) spread their periodic reports over the period, as nodes started at
    /// different times do, instead of all reporting in the same second: at 10,000 nodes that
    /// burst went over the server's write limits every five minutes.
    pub status_report_phase: Duration,
    /// This node's pod network (`spec.podCIDR`), when its runtime gives pods their own IPs.
    pub pod_cidr: Option<String>,
}

/// Facts read from this host: (cpu count, memory in bytes, nodeInfo with kernel, OS image,
/// machine and boot ids).
pub fn host_info(runtime_version: &str) -> (usize, u64, NodeSystemInfo) {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let memory_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let os_image = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "Linux".into());
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let info = NodeSystemInfo {
        architecture: arch.to_owned(),
        boot_id: read("/proc/sys/kernel/random/boot_id"),
        container_runtime_version: runtime_version.to_owned(),
        kernel_version: read("/proc/sys/kernel/osrelease"),
        kube_proxy_version: String::new(),
        kubelet_version: "v1.33.0".into(),
        machine_id: read("/etc/machine-id"),
        operating_system: std::env::consts::OS.to_owned(),
        os_image,
        system_uuid: read("/sys/class/dmi/id/product_uuid"),
        ..Default::default()
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus, memory_kib * 1024, info)
}

/// The Node object to create.
pub fn build_node(cfg: &NodeConfig) -> Node {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), cfg.name.clone()),
        (
            "kubernetes.io/os".to_owned(),
            cfg.info.operating_system.clone(),
        ),
        (
            "kubernetes.io/arch".to_owned(),
            cfg.info.architecture.clone(),
        ),
        (
            "beta.kubernetes.io/os".to_owned(),
            cfg.info.operating_system.clone(),
        ),
        (
            "beta.kubernetes.io/arch".to_owned(),
            cfg.info.architecture.clone(),
        ),
    ]);
    labels.extend(cfg.labels.clone());
    Node {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([
                ("node.alpha.kubernetes.io/ttl".to_owned(), "0".to_owned()),
                (
                    CERTIFICATE_ANNOTATION.to_owned(),
                    cfg.certificate_sha256.clone(),
                ),
            ])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(cfg.taints.clone()).filter(|t| !t.is_empty()),
            pod_cidr: cfg.pod_cidr.clone(),
            pod_cidrs: cfg.pod_cidr.clone().map(|c| vec![c]),
            ..Default::default()
        }),
        status: None,
    }
}

fn node_condition(
    previous: &[NodeCondition],
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> NodeCondition {
    let transition = previous
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    NodeCondition {
        type_: kind.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(transition),
    }
}

/// The status this agent reports, keeping transition times of unchanged conditions.
pub fn node_status(cfg: &NodeConfig, current: Option<&Node>, now: jiff::Timestamp) -> NodeStatus {
    let previous = current
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let quantities: BTreeMap<String, Quantity> = cfg
        .capacity
        .iter()
        .map(|(k, v)| (k.clone(), Quantity(v.clone())))
        .collect();
    NodeStatus {
        conditions: Some(vec![
            node_condition(
                &previous,
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                now,
            ),
            node_condition(
                &previous,
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                now,
            ),
            node_condition(
                &previous,
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                now,
            ),
            node_condition(
                &previous,
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
                now,
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: cfg.ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: cfg.name.clone(),
            },
        ]),
        capacity: Some(quantities.clone()),
        allocatable: Some(quantities),
        node_info: Some(cfg.info.clone()),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(cfg.port),
            }),
        }),
        ..Default::default()
    }
}

/// Whether `current` differs from what this agent would report in anything but heartbeat
/// times: then the status is patched now rather than at the next report interval.
fn differs(current: &Node, wanted: &NodeStatus) -> bool {
    let Some(status) = current.status.as_ref() else {
        return true;
    };
    let summary = |cs: &Option<Vec<NodeCondition>>| {
        cs.iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    summary(&status.conditions) != summary(&wanted.conditions)
        || status.allocatable != wanted.allocatable
        || status.addresses != wanted.addresses
        || status.daemon_endpoints != wanted.daemon_endpoints
}

/// Errors of registration; all are retried by the caller.
#[derive(Debug, thiserror::Error)]
#[error("registering node {node}: {source}")]
pub struct RegisterError {
    node: String,
    source: kube::Error,
}

/// Creates the Node (or, when it exists, adds this agent's labels) and reports its status.
pub async fn register(
    client: &Client,
    cfg: &NodeConfig,
    clock: &dyn Clock,
) -> Result<Node, RegisterError> {
    let api: Api<Node> = Api::all(client.clone());
    let err = |source| RegisterError {
        node: cfg.name.clone(),
        source,
    };
    // Created with its status, as kubelet registers: a Node is never seen without conditions.
    let mut node = build_node(cfg);
    node.status = Some(node_status(cfg, None, clock.now()));
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let mut patch = serde_json::json!({"metadata": {"labels": &node.metadata.labels,
                "annotations": {CERTIFICATE_ANNOTATION: cfg.certificate_sha256}}});
            // spec.podCIDR may be set once (the API refuses a change), as the node registers.
            if let Some(cidr) = &cfg.pod_cidr
                && let Ok(existing) = api.get(&cfg.name).await
                && existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_ref())
                    .is_none()
            {
                patch["spec"] = serde_json::json!({"podCIDR": cidr, "podCIDRs": [cidr]});
            }
            api.patch(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(err)?;
        }
        Err(e) => return Err(err(e)),
    }
    let current = api.get(&cfg.name).await.map_err(err)?;
    let left_shutting_down = current
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|t| t.key == everynode_api::daemonset::SHUTTING_DOWN_TAINT);
    if left_shutting_down && let Err(e) = crate::shutdown::clear(&api, &cfg.name).await {
        tracing::warn!(error = %e, "could not remove the shutting-down taint");
    }
    // The conditions are written whole: a `ShuttingDown` left by the last run goes.
    let status = node_status(cfg, Some(&current), clock.now());
    api.patch_status(
        &cfg.name,
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"status": status})),
    )
    .await
    .map_err(err)
}

/// Patches node status when it changed (or every report interval) and renews the Lease every
/// quarter of its duration, as kubelet does. Runs until the process ends.
pub async fn heartbeat(
    client: Client,
    cfg: Arc<NodeConfig>,
    clock: SharedClock,
    node: watch::Receiver<Arc<Node>>,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let renew_every = Duration::from_secs((cfg.lease_duration_seconds.max(4) / 4) as u64);
    let mut status_tick = tokio::time::interval(cfg.status_update_frequency);
    let mut lease_tick = tokio::time::interval(renew_every);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = tokio::time::Instant::now();
    let mut last_report = started
        .checked_sub(cfg.status_report_phase)
        .unwrap_or(started);
    loop {
        tokio::select! {
            _ = lease_tick.tick() => {
                let uid = node.borrow().metadata.uid.clone();
                if let Err(e) = renew_lease(&leases, &cfg, uid, clock.now()).await {
                    tracing::warn!(node = %cfg.name, error = %e, "lease renewal failed");
                }
            }
            _ = status_tick.tick() => {
                let current = node.borrow().clone();
                let wanted = node_status(&cfg, Some(&current), clock.now());
                if differs(&current, &wanted) || last_report.elapsed() >= cfg.status_report_frequency {
                    match nodes
                        .patch_status(&cfg.name, &PatchParams::default(), &Patch::Merge(&serde_json::json!({"status": wanted})))
                        .await
                    {
                        Ok(_) => last_report = tokio::time::Instant::now(),
                        Err(kube::Error::Api(e)) if e.code == 404 => {
                            // Someone deleted the Node: register again, as kubelet does.
                            if let Err(e) = register(&client, &cfg, clock.as_ref()).await {
                                tracing::warn!(error = %e, "re-registration failed");
                            }
                        }
                        Err(e) => tracing::warn!(node = %cfg.name, error = %e, "node status update failed"),
                    }
                }
            }
        }
    }
}

async fn renew_lease(
    leases: &Api<Lease>,
    cfg: &NodeConfig,
    node_uid: Option<String>,
    now: jiff::Timestamp,
) -> Result<(), kube::Error> {
    let spec = LeaseSpec {
        holder_identity: Some(cfg.name.clone()),
        lease_duration_seconds: Some(cfg.lease_duration_seconds),
        renew_time: Some(MicroTime(now)),
        ..Default::default()
    };
    let patch = serde_json::json!({"spec": spec});
    match leases
        .patch(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: node_uid.map(|uid| {
                        vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: cfg.name.clone(),
                            uid,
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NodeConfig {
        NodeConfig {
            name: "n1".into(),
            ip: "127.0.0.1".into(),
            labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
            taints: vec![],
            capacity: BTreeMap::from([
                ("cpu".to_owned(), "2".to_owned()),
                ("pods".to_owned(), "110".to_owned()),
            ]),
            info: NodeSystemInfo {
                operating_system: "linux".into(),
                architecture: "amd64".into(),
                ..Default::default()
            },
            port: 10250,
            certificate_sha256: "ab".repeat(32),
            lease_duration_seconds: 40,
            pod_cidr: None,
            status_update_frequency: Duration::from_secs(10),
            status_report_frequency: Duration::from_secs(300),
            status_report_phase: Duration::ZERO,
        }
    }

    #[test]
    fn node_has_standard_labels_and_ready_status() {
        let c = cfg();
        let node = build_node(&c);
        let labels = node.metadata.labels.expect("labels");
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["zone"], "a");
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().expect("time");
        let status = node_status(&c, None, now);
        let ready = status
            .conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .expect("ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );
        let mut current = Node {
            status: Some(status.clone()),
            ..Default::default()
        };
        // Same statuses, later heartbeat: nothing to report early.
        assert!(!differs(
            &current,
            &node_status(
                &c,
                Some(&current),
                now + jiff::SignedDuration::from_secs(10)
            )
        ));
        // The lifecycle controller marked it Unknown: report at once.
        if let Some(cs) = current.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            for cond in cs.iter_mut() {
                cond.status = "Unknown".into();
            }
        }
        assert!(differs(&current, &node_status(&c, Some(&current), now)));
    }
}
