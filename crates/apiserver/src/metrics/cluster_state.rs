//! The cluster's objects as metrics, with kube-state-metrics' names and labels, so dashboards and
//! alerts written for kube-state-metrics work unchanged against `/metrics` (DaemonSets, pods,
//! nodes), plus everynode's rollout conditions. Computed from the watch cache at each scrape, as
//! kube-state-metrics computes them from its informers, and never stored.
//!
//! Objects are read into slim views holding only the fields the metrics need, so a scrape of
//! 10,000 pods decodes a fraction of each.

use crate::cache::{CachedObject, WatchCache};
use everynode_api::registry::{self, Kind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

type Labels = Vec<(&'static str, String)>;

/// One family: a gauge or a counter, and its samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    counter: bool,
    samples: Vec<(Labels, i64)>,
}

impl Family {
    fn gauge(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            counter: false,
            samples: Vec::new(),
        }
    }

    fn counter(name: &'static str, help: &'static str) -> Self {
        Family {
            counter: true,
            ..Family::gauge(name, help)
        }
    }

    fn push(&mut self, labels: Labels, value: i64) {
        self.samples.push((labels, value));
    }
}

/// Every family of one scrape.
#[derive(Debug, Default)]
pub struct ClusterState {
    families: Vec<Family>,
}

impl Collector for ClusterState {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            if family.counter {
                // A counter's name is given without `_total`, which the encoder adds.
                let name = family.name.trim_end_matches("_total");
                let kind = ConstCounter::new(0u64).metric_type();
                let mut metric = encoder.encode_descriptor(name, family.help, None, kind)?;
                for (labels, value) in &family.samples {
                    let value = u64::try_from(*value).unwrap_or(0);
                    ConstCounter::new(value).encode(metric.encode_family(labels)?)?;
                }
            } else {
                let kind = ConstGauge::new(0i64).metric_type();
                let mut metric = encoder.encode_descriptor(family.name, family.help, None, kind)?;
                for (labels, value) in &family.samples {
                    ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Meta {
    name: String,
    namespace: String,
    uid: String,
    generation: i64,
    creation_timestamp: Option<String>,
    labels: BTreeMap<String, String>,
    owner_references: Vec<OwnerReference>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OwnerReference {
    kind: String,
    name: String,
    controller: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
    reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DaemonSet {
    metadata: Meta,
    status: DaemonSetStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DaemonSetStatus {
    desired_number_scheduled: i64,
    current_number_scheduled: i64,
    number_ready: i64,
    number_available: i64,
    number_unavailable: i64,
    number_misscheduled: i64,
    updated_number_scheduled: i64,
    observed_generation: i64,
    conditions: Vec<Condition>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Pod {
    metadata: Meta,
    spec: PodSpec,
    status: PodStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PodSpec {
    node_name: String,
    priority_class_name: String,
    host_network: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PodStatus {
    phase: String,
    #[serde(rename = "hostIP")]
    host_ip: String,
    #[serde(rename = "podIP")]
    pod_ip: String,
    container_statuses: Vec<ContainerStatus>,
    init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ContainerStatus {
    name: String,
    restart_count: i64,
    state: ContainerState,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContainerState {
    waiting: Option<Reason>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Reason {
    reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Node {
    metadata: Meta,
    spec: NodeSpec,
    status: NodeStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeSpec {
    unschedulable: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeStatus {
    conditions: Vec<Condition>,
}

fn decode<T: Default + for<'de> Deserialize<'de>>(objects: &[Arc<CachedObject>]) -> Vec<T> {
    objects
        .iter()
        .filter_map(|o| serde_json::from_slice(&o.json).ok())
        .collect()
}

/// kube-state-metrics' label name for an object label: `label_` and the key with every
/// character outside `[a-zA-Z0-9_]` made `_`.
fn label_name(key: &str) -> String {
    let clean: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("label_{clean}")
}

fn seconds_of(timestamp: Option<&str>) -> Option<i64> {
    timestamp
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second())
}

/// kube-state-metrics' three condition series: one per status, 1 for the one that holds.
fn condition_series(family: &mut Family, base: &Labels, condition: &Condition, with_reason: bool) {
    for status in ["true", "false", "unknown"] {
        let mut labels = base.clone();
        labels.push(("condition", condition.kind.clone()));
        labels.push(("status", status.to_owned()));
        if with_reason {
            labels.push(("reason", condition.reason.clone()));
        }
        let holds = condition.status.eq_ignore_ascii_case(status);
        family.push(labels, i64::from(holds));
    }
}

/// Reads one count of a DaemonSet's status.
type StatusField = fn(&DaemonSetStatus) -> i64;

fn daemonset_families(daemonsets: &[DaemonSet]) -> Vec<Family> {
    let mut counts: Vec<(Family, StatusField)> = vec![
        (
            Family::gauge(
                "kube_daemonset_status_desired_number_scheduled",
                "The number of nodes that should be running the daemon pod.",
            ),
            |s| s.desired_number_scheduled,
        ),
        (
            Family::gauge(
                "kube_daemonset_status_current_number_scheduled",
                "The number of nodes running at least one daemon pod and are supposed to.",
            ),
            |s| s.current_number_scheduled,
        ),
        (
            Family::gauge(
                "kube_daemonset_status_number_ready",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
            ),
            |s| s.number_ready,
        ),
        (
            Family::gauge(
                "kube_daemonset_status_number_available",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available",
            ),
            |s| s.number_available,
        ),
        (
            Family::gauge(
                "kube_daemonset_status_number_unavailable",
                "The number of nodes that should be running the daemon pod and have none of the daemon pod running and available",
            ),
            |s| s.number_unavailable,
        ),
        (
            Family::gauge(
                "kube_daemonset_status_number_misscheduled",
                "The number of nodes running a daemon pod but are not supposed to.",
            ),
            |s| s.number_misscheduled,
        ),
        (
            Family::gauge(
                "kube_daemonset_status_updated_number_scheduled",
                "The total number of nodes that are running updated daemon pod",
            ),
            |s| s.updated_number_scheduled,
        ),
        (
            Family::gauge(
                "kube_daemonset_status_observed_generation",
                "The most recent generation observed by the daemon set controller.",
            ),
            |s| s.observed_generation,
        ),
    ];
    let mut generation = Family::gauge(
        "kube_daemonset_metadata_generation",
        "Sequence number representing a specific generation of the desired state.",
    );
    let mut created = Family::gauge("kube_daemonset_created", "Unix creation timestamp");
    let mut labels_family = Family::gauge(
        "kube_daemonset_labels",
        "Kubernetes labels converted to Prometheus labels.",
    );
    let mut conditions = Family::gauge(
        "everynode_daemonset_status_condition",
        "The DaemonSet's conditions (Progressing, RolledBack, Available): one series per status, 1 for the status that holds, with the condition's reason.",
    );
    for ds in daemonsets {
        let base: Labels = vec![
            ("namespace", ds.metadata.namespace.clone()),
            ("daemonset", ds.metadata.name.clone()),
        ];
        for (family, value) in counts.iter_mut() {
            family.push(base.clone(), value(&ds.status));
        }
        generation.push(base.clone(), ds.metadata.generation);
        if let Some(at) = seconds_of(ds.metadata.creation_timestamp.as_deref()) {
            created.push(base.clone(), at);
        }
        // Leaked so the label names can be `&'static str`, as the encoder wants: each distinct
        // label key is leaked once per process, not once per scrape.
        let mut with_labels = base.clone();
        for (key, value) in &ds.metadata.labels {
            with_labels.push((static_name(&label_name(key)), value.clone()));
        }
        labels_family.push(with_labels, 1);
        for condition in &ds.status.conditions {
            condition_series(&mut conditions, &base, condition, true);
        }
    }
    let mut families: Vec<Family> = counts.into_iter().map(|(f, _)| f).collect();
    families.extend([generation, created, labels_family, conditions]);
    families
}

/// One `&'static str` per distinct label name, kept for the life of the process.
fn static_name(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock, PoisonError};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

const PHASES: [&str; 5] = ["Pending", "Succeeded", "Failed", "Unknown", "Running"];

fn pod_families(pods: &[Pod]) -> Vec<Family> {
    let mut phase = Family::gauge("kube_pod_status_phase", "The pods current phase.");
    let mut info = Family::gauge("kube_pod_info", "Information about pod.");
    let mut owner = Family::gauge("kube_pod_owner", "Information about the Pod's owner.");
    let mut restarts = Family::counter(
        "kube_pod_container_status_restarts_total",
        "The number of container restarts per container.",
    );
    let mut waiting = Family::gauge(
        "kube_pod_container_status_waiting_reason",
        "Describes the reason the container is currently in waiting state.",
    );
    for pod in pods {
        let base: Labels = vec![
            ("namespace", pod.metadata.namespace.clone()),
            ("pod", pod.metadata.name.clone()),
            ("uid", pod.metadata.uid.clone()),
        ];
        for p in PHASES {
            let mut labels = base.clone();
            labels.push(("phase", p.to_owned()));
            phase.push(labels, i64::from(pod.status.phase == p));
        }
        let controller = pod
            .metadata
            .owner_references
            .iter()
            .find(|o| o.controller == Some(true));
        let mut labels = base.clone();
        labels.extend([
            ("host_ip", pod.status.host_ip.clone()),
            ("pod_ip", pod.status.pod_ip.clone()),
            ("node", pod.spec.node_name.clone()),
            (
                "created_by_kind",
                controller
                    .map(|o| o.kind.clone())
                    .unwrap_or_else(|| "<none>".into()),
            ),
            (
                "created_by_name",
                controller
                    .map(|o| o.name.clone())
                    .unwrap_or_else(|| "<none>".into()),
            ),
            ("priority_class", pod.spec.priority_class_name.clone()),
            ("host_network", pod.spec.host_network.to_string()),
        ]);
        info.push(labels, 1);
        if pod.metadata.owner_references.is_empty() {
            let mut labels = base.clone();
            labels.extend([
                ("owner_kind", "<none>".to_owned()),
                ("owner_name", "<none>".to_owned()),
                ("owner_is_controller", "<none>".to_owned()),
            ]);
            owner.push(labels, 1);
        }
        for o in &pod.metadata.owner_references {
            let mut labels = base.clone();
            labels.extend([
                ("owner_kind", o.kind.clone()),
                ("owner_name", o.name.clone()),
                (
                    "owner_is_controller",
                    o.controller.unwrap_or(false).to_string(),
                ),
            ]);
            owner.push(labels, 1);
        }
        for container in &pod.status.container_statuses {
            let mut labels = base.clone();
            labels.push(("container", container.name.clone()));
            restarts.push(labels.clone(), container.restart_count);
            if let Some(w) = &container.state.waiting {
                labels.push(("reason", w.reason.clone()));
                waiting.push(labels, 1);
            }
        }
    }
    vec![phase, info, owner, restarts, waiting]
}

fn node_families(nodes: &[Node]) -> Vec<Family> {
    let mut conditions = Family::gauge(
        "kube_node_status_condition",
        "The condition of a cluster node.",
    );
    let mut unschedulable = Family::gauge(
        "kube_node_spec_unschedulable",
        "Whether a node can schedule new pods.",
    );
    for node in nodes {
        let base: Labels = vec![("node", node.metadata.name.clone())];
        for condition in &node.status.conditions {
            condition_series(&mut conditions, &base, condition, false);
        }
        unschedulable.push(base, i64::from(node.spec.unschedulable));
    }
    vec![conditions, unschedulable]
}

/// The families of one scrape, read from `cache`.
pub fn collect(cache: &WatchCache) -> ClusterState {
    let prefix = |kind: Kind| registry::by_kind(kind).key_prefix();
    let daemonsets: Vec<DaemonSet> = decode(&cache.all(&prefix(Kind::DaemonSet)));
    let pods: Vec<Pod> = decode(&cache.all(&prefix(Kind::Pod)));
    let nodes: Vec<Node> = decode(&cache.all(&prefix(Kind::Node)));
    let mut families = daemonset_families(&daemonsets);
    families.extend(pod_families(&pods));
    families.extend(node_families(&nodes));
    let mut objects = Family::gauge(
        "apiserver_storage_objects",
        "Number of stored objects at the time of last check split by kind.",
    );
    for resource in registry::RESOURCES {
        let name = if resource.group.is_empty() {
            resource.plural.to_owned()
        } else {
            format!("{}.{}", resource.plural, resource.group)
        };
        objects.push(
            vec![("resource", name)],
            cache.count(&resource.key_prefix()) as i64,
        );
    }
    families.push(objects);
    ClusterState { families }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_labels_are_named_as_kube_state_metrics_names_them() {
        assert_eq!(
            label_name("app.kubernetes.io/name"),
            "label_app_kubernetes_io_name"
        );
        assert_eq!(label_name("tier"), "label_tier");
    }

    #[test]
    fn a_pods_phase_and_waiting_reason_are_one_series_each() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u",
                "ownerReferences": [{"kind": "DaemonSet", "name": "d", "controller": true}]},
            "spec": {"nodeName": "node-1"},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "c", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        }))
        .expect("pod");
        let families = pod_families(&[pod]);
        let phase = &families[0];
        let ones: Vec<&str> = phase
            .samples
            .iter()
            .filter(|(_, v)| *v == 1)
            .map(|(l, _)| l[3].1.as_str())
            .collect();
        assert_eq!(ones, ["Pending"]);
        assert_eq!(phase.samples.len(), 5);
        let restarts = &families[3];
        assert_eq!(restarts.samples[0].1, 3);
        let waiting = &families[4];
        assert_eq!(
            waiting.samples[0].0.last().map(|(k, v)| (*k, v.as_str())),
            Some(("reason", "CrashLoopBackOff"))
        );
        let info = &families[1];
        assert!(
            info.samples[0]
                .0
                .contains(&("created_by_kind", "DaemonSet".to_owned()))
        );
    }

    #[test]
    fn a_condition_is_three_series_of_which_one_holds() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}
        }))
        .expect("node");
        let families = node_families(&[node]);
        let held: Vec<(String, i64)> = families[0]
            .samples
            .iter()
            .map(|(l, v)| (l[2].1.clone(), *v))
            .collect();
        assert_eq!(
            held,
            [
                ("true".into(), 0),
                ("false".into(), 0),
                ("unknown".into(), 1)
            ]
        );
    }
}
