//! The node lifecycle controller (spec §3.2): a node whose agent stops renewing its Lease (and
//! posting status) for the grace period gets its conditions set to Unknown; NoSchedule and
//! NoExecute taints follow the conditions; pods on a node that stops being Ready are marked not
//! Ready; pods that do not tolerate a NoExecute taint are evicted (after their
//! `tolerationSeconds`). Recovery removes the taints.
//!
//! Decisions are pure functions of the objects and `now`; `run` only reads and writes.
//! Deviation: upstream adds NoExecute taints through a per-zone rate-limited queue (0.1 nodes/s);
//! here they are added on the next monitor pass. Small clusters see no difference.

use crate::last_change::LastChange;
use crate::stores::Informers;
use everynode_api::scheduling;
use everynode_clock::SharedClock;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const AGENT_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub monitor_period: Duration,
    pub grace_period: Duration,
    pub startup_grace_period: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            monitor_period: Duration::from_secs(5),
            grace_period: Duration::from_secs(50),
            startup_grace_period: Duration::from_secs(60),
        }
    }
}

fn condition<'a>(node: &'a Node, kind: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
}

/// When the agent was last heard from, as locally observed: upstream compares the heartbeat
/// values it sees change, with its own clock, so clock skew between hosts does not matter.
#[derive(Default)]
pub struct Health {
    seen: HashMap<String, LastChange<Heartbeat>>,
}

/// What changes while a node's agent is alive: (lease renewTime, Ready lastHeartbeatTime).
type Heartbeat = (Option<String>, Option<String>);

impl Health {
    /// Whether `node` has been silent longer than its grace period at `now`.
    pub fn silent(
        &mut self,
        node: &Node,
        lease: Option<&Lease>,
        now: Instant,
        s: &Settings,
    ) -> bool {
        let name = node.name_any();
        let renew = lease
            .and_then(|l| l.spec.as_ref())
            .and_then(|sp| sp.renew_time.as_ref())
            .map(|t| t.0.to_string());
        let heartbeat = condition(node, "Ready")
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0.to_string());
        let record = (renew, heartbeat);
        let silent_for = self
            .seen
            .entry(name)
            .or_insert_with(|| LastChange::new(record.clone(), now))
            .observe(record, now);
        let ever_ready = condition(node, "Ready").is_some_and(|c| c.last_heartbeat_time.is_some());
        let grace = if ever_ready {
            s.grace_period
        } else {
            s.startup_grace_period
        };
        silent_for > grace
    }

    pub fn forget_missing(&mut self, nodes: &[Arc<Node>]) {
        // A set, not a scan per entry: with thousands of nodes the scan was quadratic.
        let present: std::collections::HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        self.seen.retain(|name, _| present.contains(name.as_str()));
    }
}

/// The conditions to write when a node has gone silent, or `None` if they are already Unknown.
pub fn unknown_conditions(node: &Node, now: jiff::Timestamp) -> Option<Vec<NodeCondition>> {
    let existing = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    let mut out: Vec<NodeCondition> = existing
        .into_iter()
        .map(|mut c| {
            if AGENT_CONDITIONS.contains(&c.type_.as_str()) && c.status != "Unknown" {
                changed = true;
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
            }
            c
        })
        .collect();
    for kind in AGENT_CONDITIONS {
        if !out.iter().any(|c| c.type_ == kind) {
            changed = true;
            out.push(NodeCondition {
                type_: kind.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: None,
                last_transition_time: Some(Time(now)),
            });
        }
    }
    changed.then_some(out)
}

fn taint(key: &str, effect: &str, added: Option<jiff::Timestamp>) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        value: None,
        time_added: added.map(Time),
    }
}

/// The node's taints as they should be (`None` when they already are): the condition taints
/// (`doNoScheduleTaintingPass` and the NoExecute pass) replaced, every other taint kept.
pub fn desired_taints(node: &Node, now: jiff::Timestamp) -> Option<Vec<Taint>> {
    let status = |kind: &str| condition(node, kind).map(|c| c.status.as_str());
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut wanted_no_schedule: Vec<&str> = Vec::new();
    match status("Ready") {
        Some("False") => wanted_no_schedule.push(NOT_READY),
        Some("Unknown") => wanted_no_schedule.push(UNREACHABLE),
        _ => {}
    }
    for (kind, key) in [
        ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
        ("DiskPressure", "node.kubernetes.io/disk-pressure"),
        ("PIDPressure", "node.kubernetes.io/pid-pressure"),
        (
            "NetworkUnavailable",
            "node.kubernetes.io/network-unavailable",
        ),
    ] {
        if status(kind) == Some("True") {
            wanted_no_schedule.push(key);
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted_no_schedule.push(UNSCHEDULABLE);
    }
    let wanted_no_execute = match status("Ready") {
        Some("False") => Some(NOT_READY),
        Some("Unknown") => Some(UNREACHABLE),
        _ => None,
    };
    let managed_no_schedule = [
        NOT_READY,
        UNREACHABLE,
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/network-unavailable",
        UNSCHEDULABLE,
    ];
    let mut out: Vec<Taint> = Vec::new();
    for t in &current {
        let managed = (t.effect == "NoSchedule" && managed_no_schedule.contains(&t.key.as_str()))
            || (t.effect == "NoExecute" && (t.key == NOT_READY || t.key == UNREACHABLE));
        let keep = !managed
            || (t.effect == "NoSchedule" && wanted_no_schedule.contains(&t.key.as_str()))
            || (t.effect == "NoExecute" && wanted_no_execute == Some(t.key.as_str()));
        if keep {
            out.push(t.clone());
        }
    }
    for key in wanted_no_schedule {
        if !out.iter().any(|t| t.key == key && t.effect == "NoSchedule") {
            out.push(taint(key, "NoSchedule", Some(now)));
        }
    }
    if let Some(key) = wanted_no_execute
        && !out.iter().any(|t| t.key == key && t.effect == "NoExecute")
    {
        out.push(taint(key, "NoExecute", Some(now)));
    }
    (out != current).then_some(out)
}

/// What taint eviction does with a pod on a node with NoExecute taints.
#[derive(Debug, PartialEq, Eq)]
pub enum Eviction {
    Keep,
    /// Delete now.
    Now,
    /// Delete once this many more seconds have passed.
    After(i64),
}

/// Upstream's taint eviction: a pod that does not tolerate every NoExecute taint is evicted;
/// one that tolerates them all with `tolerationSeconds` goes after the smallest of them,
/// counted from when the taint was added.
pub fn eviction(pod: &Pod, node: &Node, now: jiff::Timestamp) -> Eviction {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut soonest: Option<i64> = None;
    for t in node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .iter()
        .filter(|t| t.effect == "NoExecute")
    {
        let matching: Vec<_> = tolerations
            .iter()
            .filter(|tol| scheduling::tolerates(tol, t))
            .collect();
        if matching.is_empty() {
            return Eviction::Now;
        }
        if matching.iter().any(|tol| tol.toleration_seconds.is_none()) {
            continue;
        }
        let secs = matching
            .iter()
            .filter_map(|tol| tol.toleration_seconds)
            .min()
            .unwrap_or(0)
            .max(0);
        let added = t.time_added.as_ref().map_or(now, |a| a.0);
        let left = secs - now.duration_since(added).as_secs();
        soonest = Some(soonest.map_or(left, |s: i64| s.min(left)));
    }
    match soonest {
        None => Eviction::Keep,
        Some(left) if left <= 0 => Eviction::Now,
        Some(left) => Eviction::After(left),
    }
}

/// Runs the controller until the process ends.
pub async fn run(informers: Informers, clock: SharedClock, settings: Settings) {
    let client = informers.client();
    let changed = Arc::new(tokio::sync::Notify::new());
    let nodes = informers.nodes().ready_cache(&changed).await;
    let leases = informers.node_leases().ready_cache(&changed).await;
    let pods = informers.pods().ready_cache(&changed).await;
    let node_api: Api<Node> = Api::all(client.clone());
    let mut health = Health::default();
    let mut tick = tokio::time::interval(settings.monitor_period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = changed.notified() => {
                // Coalesce bursts of watch events into one pass: with thousands of nodes
                // renewing leases, changes never stop, and a pass looks at every node.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let now = Instant::now();
        let wall = clock.now();
        let all_nodes = nodes.state();
        health.forget_missing(&all_nodes);
        let lease_by_node: HashMap<String, Arc<Lease>> = leases
            .state()
            .into_iter()
            .map(|l| (l.name_any(), l))
            .collect();
        let mut pods_by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for p in pods.state() {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                pods_by_node.entry(n).or_default().push(p);
            }
        }
        for node in &all_nodes {
            let name = node.name_any();
            let lease = lease_by_node.get(&name).cloned();
            // Shared with the cache; replaced only by what a status write returns.
            let mut node: Arc<Node> = Arc::clone(node);
            if health.silent(&node, lease.as_deref(), now, &settings)
                && let Some(conditions) = unknown_conditions(&node, wall)
            {
                tracing::info!(node = %name, "node stopped reporting; marking its conditions Unknown");
                let patch = serde_json::json!({"status": {"conditions": conditions}});
                match node_api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(n) => node = Arc::new(n),
                    Err(e) => {
                        tracing::warn!(node = %name, error = %e, "could not mark node Unknown");
                        continue;
                    }
                }
            }
            if let Some(taints) = desired_taints(&node, wall) {
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": node.metadata.resource_version},
                    "spec": {"taints": taints}
                });
                if let Err(e) = node_api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!(node = %name, error = %e, "taint update failed; retrying next pass");
                }
            }
            let ready = condition(&node, "Ready").is_some_and(|c| c.status == "True");
            for pod in pods_by_node.get(&name).into_iter().flatten() {
                let ns = pod.namespace().unwrap_or_default();
                let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                if !ready && everynode_api::daemonset::is_ready(pod) {
                    mark_not_ready(&pod_api, pod, wall).await;
                }
                if pod.metadata.deletion_timestamp.is_none()
                    && eviction(pod, &node, wall) == Eviction::Now
                {
                    tracing::info!(pod = %pod.name_any(), node = %name, "evicting a pod that does not tolerate the node's NoExecute taint");
                    let dp = DeleteParams::default();
                    let _ = pod_api.delete(&pod.name_any(), &dp).await;
                }
            }
        }
    }
}

async fn mark_not_ready(api: &Api<Pod>, pod: &Pod, now: jiff::Timestamp) {
    let conditions: Vec<_> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|mut c| {
            if c.type_ == "Ready" {
                c.status = "False".into();
                c.last_transition_time = Some(Time(now));
            }
            c
        })
        .collect();
    let patch = serde_json::json!({"status": {"conditions": conditions}});
    if let Err(e) = api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::debug!(pod = %pod.name_any(), error = %e, "could not mark pod not ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(ready: &str, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "node-2"},
            "spec": {"taints": taints},
            "status": {"conditions": [
                {"type": "Ready", "status": ready, "lastHeartbeatTime": "2026-11-25T10:00:00Z"},
                {"type": "MemoryPressure", "status": "False"}
            ]}
        }))
        .expect("node")
    }

    fn now() -> jiff::Timestamp {
        "2026-11-25T10:01:00Z".parse().expect("time")
    }

    fn daemon_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "ds-x"},
            "spec": {"containers": [], "tolerations": [
                {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"},
                {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
            ]}
        }))
        .expect("pod")
    }

    fn plain_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"containers": [], "tolerations": [
                {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]}
        }))
        .expect("pod")
    }

    /// (key, effect) of each taint, in order.
    fn keys(taints: &[Taint]) -> Vec<(&str, &str)> {
        taints
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect()
    }

    #[test]
    fn s150_node_stops_reporting_gets_unknown_and_unreachable_taints_and_daemon_pod_stays() {
        let settings = Settings::default();
        let mut health = Health::default();
        let n = node("True", json!([]));
        let start = Instant::now();
        assert!(!health.silent(&n, None, start, &settings));
        assert!(!health.silent(&n, None, start + Duration::from_secs(50), &settings));
        assert!(health.silent(&n, None, start + Duration::from_secs(51), &settings));
        let conditions = unknown_conditions(&n, now()).expect("changes");
        let ready = conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        // Never-posted conditions are added as NodeStatusNeverUpdated.
        let disk = conditions
            .iter()
            .find(|c| c.type_ == "DiskPressure")
            .expect("disk");
        assert_eq!(disk.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        let unknown = node("Unknown", json!([]));
        assert_eq!(
            unknown_conditions(&unknown, now()).map(|c| c.len()),
            Some(4)
        );
        let taints = desired_taints(&unknown, now()).expect("taints");
        let keys = keys(&taints);
        assert_eq!(
            keys,
            vec![(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]
        );
        let tainted = node("Unknown", serde_json::to_value(&taints).expect("json"));
        assert_eq!(desired_taints(&tainted, now()), None);
        assert_eq!(eviction(&daemon_pod(), &tainted, now()), Eviction::Keep);
        // Recovery removes both taints.
        let recovered = node("True", serde_json::to_value(&taints).expect("json"));
        assert_eq!(desired_taints(&recovered, now()), Some(vec![]));
    }

    #[test]
    fn s151_node_not_ready_gets_not_ready_taints() {
        let n = node(
            "False",
            json!([{"key": UNREACHABLE, "effect": "NoExecute"}]),
        );
        let taints = desired_taints(&n, now()).expect("taints");
        let keys = keys(&taints);
        // The unreachable NoExecute taint is swapped for not-ready at once.
        assert_eq!(
            keys,
            vec![(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]
        );
    }

    #[test]
    fn s152_user_no_execute_taint_evicts_intolerant_pods() {
        let n = node(
            "True",
            json!([{"key": "dedicated", "value": "x", "effect": "NoExecute"}]),
        );
        assert_eq!(eviction(&daemon_pod(), &n, now()), Eviction::Now);
        // User taints are never touched by the controller.
        assert_eq!(desired_taints(&n, now()), None);
    }

    #[test]
    fn toleration_seconds_delay_eviction_from_when_the_taint_was_added() {
        let n = node(
            "Unknown",
            json!([{"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-11-25T10:00:00Z"}]),
        );
        assert_eq!(eviction(&plain_pod(), &n, now()), Eviction::After(240));
        let later: jiff::Timestamp = "2026-11-25T10:05:00Z".parse().expect("time");
        assert_eq!(eviction(&plain_pod(), &n, later), Eviction::Now);
    }

    #[test]
    fn s153_cordon_taints_unschedulable_and_daemon_pods_stay() {
        let mut n = node("True", json!([]));
        if let Some(spec) = n.spec.as_mut() {
            spec.unschedulable = Some(true);
        }
        let taints = desired_taints(&n, now()).expect("taints");
        assert_eq!(taints[0].key, UNSCHEDULABLE);
        assert_eq!(taints[0].effect, "NoSchedule");
        // A NoSchedule taint never evicts: the daemon pod stays (and sc04 binds new ones).
        let cordoned: Node = {
            let mut c = n.clone();
            c.spec.get_or_insert_with(Default::default).taints = Some(taints);
            c
        };
        assert_eq!(eviction(&daemon_pod(), &cordoned, now()), Eviction::Keep);
    }
}
