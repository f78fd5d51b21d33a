//! The cluster's objects as metrics, with kube-state-metrics' names and labels, so dashboards and
//! alerts written for kube-state-metrics work unchanged against `/metrics` (DaemonSets, pods,
//! nodes), plus everynode's rollout conditions. Computed from the watch cache at each scrape, as
//! kube-state-metrics computes them from its informers, and never stored.
//!
//! Objects are read into slim views holding only the fields the metrics need, whose strings are
//! borrowed from the cached JSON itself (`Str`), so a scrape of 10,000 pods allocates little
//! more than one small struct per object; each sample's labels are borrowed from the views and
//! written at once: no sample is held between its creation and its line of text.

use crate::cache::WatchCache;
use bytes::Bytes;
use everynode_api::registry::{self, Kind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Result as Written;

/// One sample's labels.
type Labels<'a> = Vec<(Cow<'static, str>, Cow<'a, str>)>;

fn label<'a>(name: &'static str, value: &'a str) -> (Cow<'static, str>, Cow<'a, str>) {
    (Cow::Borrowed(name), Cow::Borrowed(value))
}

/// Writes one sample of the family being written.
type Emit<'e> = dyn FnMut(&Labels<'_>, i64) -> Written + 'e;

/// Writes one family: its descriptor, then the samples `samples` emits.
fn family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    counter: bool,
    samples: impl FnOnce(&mut Emit<'_>) -> Written,
) -> Written {
    if counter {
        // A counter's name is given without `_total`, which the encoder adds.
        let name = name.trim_end_matches("_total");
        let kind = ConstCounter::new(0u64).metric_type();
        let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
        samples(&mut |labels: &Labels<'_>, value: i64| {
            ConstCounter::new(u64::try_from(value).unwrap_or(0))
                .encode(metric.encode_family(labels)?)
        })
    } else {
        let kind = ConstGauge::new(0i64).metric_type();
        let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
        samples(&mut |labels: &Labels<'_>, value: i64| {
            ConstGauge::new(value).encode(metric.encode_family(labels)?)
        })
    }
}

/// The objects of one scrape: their cached JSON (shared with the cache, not copied).
#[derive(Debug, Default)]
pub struct ClusterState {
    daemonsets: Vec<Bytes>,
    pods: Vec<Bytes>,
    nodes: Vec<Bytes>,
    /// Stored objects by resource (`daemonsets.apps`).
    stored: Vec<(String, i64)>,
}

/// The slim views of one scrape's objects, borrowing from its JSON.
struct Views<'a> {
    daemonsets: Vec<DaemonSet<'a>>,
    pods: Vec<Pod<'a>>,
    nodes: Vec<Node<'a>>,
}

impl Collector for ClusterState {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Written {
        let views = Views {
            daemonsets: decode(&self.daemonsets),
            pods: decode(&self.pods),
            nodes: decode(&self.nodes),
        };
        views.encode_daemonsets(&mut encoder)?;
        views.encode_pods(&mut encoder)?;
        views.encode_nodes(&mut encoder)?;
        family(
            &mut encoder,
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind.",
            false,
            |emit| {
                for (resource, count) in &self.stored {
                    emit(&vec![label("resource", resource)], *count)?;
                }
                Ok(())
            },
        )
    }
}

/// A string of a cached object's JSON: borrowed from it, unless it held escapes to undo.
#[derive(Debug, Default, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Str<'a>(Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for Str<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Meta<'a> {
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(borrow)]
    namespace: Str<'a>,
    #[serde(borrow)]
    uid: Str<'a>,
    #[serde(borrow)]
    owner_references: Vec<OwnerReference<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OwnerReference<'a> {
    #[serde(borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    name: Str<'a>,
    controller: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Condition<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    status: Str<'a>,
    #[serde(borrow)]
    reason: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DaemonSet<'a> {
    #[serde(borrow)]
    metadata: DaemonSetMeta<'a>,
    #[serde(borrow)]
    status: DaemonSetStatus<'a>,
}

/// A DaemonSet's metadata: with its labels, which are metrics (`kube_daemonset_labels`), where
/// pods' and nodes' are not and go unread.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DaemonSetMeta<'a> {
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(borrow)]
    namespace: Str<'a>,
    generation: i64,
    #[serde(borrow)]
    creation_timestamp: Option<Str<'a>>,
    #[serde(borrow)]
    labels: BTreeMap<Str<'a>, Str<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct DaemonSetStatus<'a> {
    desired_number_scheduled: i64,
    current_number_scheduled: i64,
    number_ready: i64,
    number_available: i64,
    number_unavailable: i64,
    number_misscheduled: i64,
    updated_number_scheduled: i64,
    observed_generation: i64,
    #[serde(borrow)]
    conditions: Vec<Condition<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Pod<'a> {
    #[serde(borrow)]
    metadata: Meta<'a>,
    #[serde(borrow)]
    spec: PodSpec<'a>,
    #[serde(borrow)]
    status: PodStatus<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PodSpec<'a> {
    #[serde(borrow)]
    node_name: Str<'a>,
    #[serde(borrow)]
    priority_class_name: Str<'a>,
    host_network: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PodStatus<'a> {
    #[serde(borrow)]
    phase: Str<'a>,
    #[serde(rename = "hostIP", borrow)]
    host_ip: Str<'a>,
    #[serde(rename = "podIP", borrow)]
    pod_ip: Str<'a>,
    #[serde(borrow)]
    container_statuses: Vec<ContainerStatus<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ContainerStatus<'a> {
    #[serde(borrow)]
    name: Str<'a>,
    restart_count: i64,
    #[serde(borrow)]
    state: ContainerState<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContainerState<'a> {
    #[serde(borrow)]
    waiting: Option<Reason<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Reason<'a> {
    #[serde(borrow)]
    reason: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Node<'a> {
    #[serde(borrow)]
    metadata: Meta<'a>,
    spec: NodeSpec,
    #[serde(borrow)]
    status: NodeStatus<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeSpec {
    unschedulable: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeStatus<'a> {
    #[serde(borrow)]
    conditions: Vec<Condition<'a>>,
}

fn decode<'a, T: Deserialize<'a>>(objects: &'a [Bytes]) -> Vec<T> {
    objects
        .iter()
        .filter_map(|json| serde_json::from_slice(json).ok())
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
fn condition_series(
    emit: &mut Emit<'_>,
    base: &Labels<'_>,
    condition: &Condition<'_>,
    with_reason: bool,
) -> Written {
    for status in ["true", "false", "unknown"] {
        let mut labels = base.clone();
        labels.push(label("condition", &condition.kind));
        labels.push(label("status", status));
        if with_reason {
            labels.push(label("reason", &condition.reason));
        }
        emit(
            &labels,
            i64::from(condition.status.eq_ignore_ascii_case(status)),
        )?;
    }
    Ok(())
}

/// Reads one count of a DaemonSet's status.
type StatusField = fn(&DaemonSetStatus<'_>) -> i64;

/// The DaemonSet status families: name, help, field.
const DAEMONSET_COUNTS: &[(&str, &str, StatusField)] = &[
    (
        "kube_daemonset_status_desired_number_scheduled",
        "The number of nodes that should be running the daemon pod.",
        |s| s.desired_number_scheduled,
    ),
    (
        "kube_daemonset_status_current_number_scheduled",
        "The number of nodes running at least one daemon pod and are supposed to.",
        |s| s.current_number_scheduled,
    ),
    (
        "kube_daemonset_status_number_ready",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
        |s| s.number_ready,
    ),
    (
        "kube_daemonset_status_number_available",
        "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available",
        |s| s.number_available,
    ),
    (
        "kube_daemonset_status_number_unavailable",
        "The number of nodes that should be running the daemon pod and have none of the daemon pod running and available",
        |s| s.number_unavailable,
    ),
    (
        "kube_daemonset_status_number_misscheduled",
        "The number of nodes running a daemon pod but are not supposed to.",
        |s| s.number_misscheduled,
    ),
    (
        "kube_daemonset_status_updated_number_scheduled",
        "The total number of nodes that are running updated daemon pod",
        |s| s.updated_number_scheduled,
    ),
    (
        "kube_daemonset_status_observed_generation",
        "The most recent generation observed by the daemon set controller.",
        |s| s.observed_generation,
    ),
];

const PHASES: [&str; 5] = ["Pending", "Succeeded", "Failed", "Unknown", "Running"];

fn daemonset_labels<'a>(ds: &'a DaemonSet<'_>) -> Labels<'a> {
    vec![
        label("namespace", &ds.metadata.namespace),
        label("daemonset", &ds.metadata.name),
    ]
}

fn pod_labels<'a>(pod: &'a Pod<'_>) -> Labels<'a> {
    vec![
        label("namespace", &pod.metadata.namespace),
        label("pod", &pod.metadata.name),
        label("uid", &pod.metadata.uid),
    ]
}

impl Views<'_> {
    fn encode_daemonsets(&self, encoder: &mut DescriptorEncoder<'_>) -> Written {
        let base = daemonset_labels;
        for (name, help, field) in DAEMONSET_COUNTS {
            family(encoder, name, help, false, |emit| {
                for ds in &self.daemonsets {
                    emit(&base(ds), field(&ds.status))?;
                }
                Ok(())
            })?;
        }
        family(
            encoder,
            "kube_daemonset_metadata_generation",
            "Sequence number representing a specific generation of the desired state.",
            false,
            |emit| {
                for ds in &self.daemonsets {
                    emit(&base(ds), ds.metadata.generation)?;
                }
                Ok(())
            },
        )?;
        family(
            encoder,
            "kube_daemonset_created",
            "Unix creation timestamp",
            false,
            |emit| {
                for ds in &self.daemonsets {
                    if let Some(at) = seconds_of(ds.metadata.creation_timestamp.as_deref()) {
                        emit(&base(ds), at)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            encoder,
            "kube_daemonset_labels",
            "Kubernetes labels converted to Prometheus labels.",
            false,
            |emit| {
                for ds in &self.daemonsets {
                    let mut labels = base(ds);
                    for (key, value) in &ds.metadata.labels {
                        labels.push((Cow::Owned(label_name(key)), Cow::Borrowed(value)));
                    }
                    emit(&labels, 1)?;
                }
                Ok(())
            },
        )?;
        family(
            encoder,
            "everynode_daemonset_status_condition",
            "The DaemonSet's conditions (Progressing, RolledBack, Available): one series per status, 1 for the status that holds, with the condition's reason.",
            false,
            |emit| {
                for ds in &self.daemonsets {
                    for condition in &ds.status.conditions {
                        condition_series(emit, &base(ds), condition, true)?;
                    }
                }
                Ok(())
            },
        )
    }

    fn encode_pods(&self, encoder: &mut DescriptorEncoder<'_>) -> Written {
        let base = pod_labels;
        family(
            encoder,
            "kube_pod_status_phase",
            "The pods current phase.",
            false,
            |emit| {
                for pod in &self.pods {
                    for phase in PHASES {
                        let mut labels = base(pod);
                        labels.push(label("phase", phase));
                        emit(&labels, i64::from(pod.status.phase == phase))?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            encoder,
            "kube_pod_info",
            "Information about pod.",
            false,
            |emit| {
                for pod in &self.pods {
                    let controller = pod
                        .metadata
                        .owner_references
                        .iter()
                        .find(|o| o.controller == Some(true));
                    let mut labels = base(pod);
                    labels.extend([
                        label("host_ip", &pod.status.host_ip),
                        label("pod_ip", &pod.status.pod_ip),
                        label("node", &pod.spec.node_name),
                        label("created_by_kind", controller.map_or("<none>", |o| &*o.kind)),
                        label("created_by_name", controller.map_or("<none>", |o| &*o.name)),
                        label("priority_class", &pod.spec.priority_class_name),
                        label(
                            "host_network",
                            if pod.spec.host_network {
                                "true"
                            } else {
                                "false"
                            },
                        ),
                    ]);
                    emit(&labels, 1)?;
                }
                Ok(())
            },
        )?;
        family(
            encoder,
            "kube_pod_owner",
            "Information about the Pod's owner.",
            false,
            |emit| {
                for pod in &self.pods {
                    if pod.metadata.owner_references.is_empty() {
                        let mut labels = base(pod);
                        labels.extend([
                            label("owner_kind", "<none>"),
                            label("owner_name", "<none>"),
                            label("owner_is_controller", "<none>"),
                        ]);
                        emit(&labels, 1)?;
                    }
                    for owner in &pod.metadata.owner_references {
                        let mut labels = base(pod);
                        let controller = if owner.controller == Some(true) {
                            "true"
                        } else {
                            "false"
                        };
                        labels.extend([
                            label("owner_kind", &owner.kind),
                            label("owner_name", &owner.name),
                            label("owner_is_controller", controller),
                        ]);
                        emit(&labels, 1)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            encoder,
            "kube_pod_container_status_restarts_total",
            "The number of container restarts per container.",
            true,
            |emit| {
                for pod in &self.pods {
                    for container in &pod.status.container_statuses {
                        let mut labels = base(pod);
                        labels.push(label("container", &container.name));
                        emit(&labels, container.restart_count)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            encoder,
            "kube_pod_container_status_waiting_reason",
            "Describes the reason the container is currently in waiting state.",
            false,
            |emit| {
                for pod in &self.pods {
                    for container in &pod.status.container_statuses {
                        if let Some(waiting) = &container.state.waiting {
                            let mut labels = base(pod);
                            labels.push(label("container", &container.name));
                            labels.push(label("reason", &waiting.reason));
                            emit(&labels, 1)?;
                        }
                    }
                }
                Ok(())
            },
        )
    }

    fn encode_nodes(&self, encoder: &mut DescriptorEncoder<'_>) -> Written {
        family(
            encoder,
            "kube_node_status_condition",
            "The condition of a cluster node.",
            false,
            |emit| {
                for node in &self.nodes {
                    let base = vec![label("node", &node.metadata.name)];
                    for condition in &node.status.conditions {
                        condition_series(emit, &base, condition, false)?;
                    }
                }
                Ok(())
            },
        )?;
        family(
            encoder,
            "kube_node_spec_unschedulable",
            "Whether a node can schedule new pods.",
            false,
            |emit| {
                for node in &self.nodes {
                    emit(
                        &vec![label("node", &node.metadata.name)],
                        i64::from(node.spec.unschedulable),
                    )?;
                }
                Ok(())
            },
        )
    }
}

fn json_of(cache: &WatchCache, prefix: &str) -> Vec<Bytes> {
    cache.all(prefix).iter().map(|o| o.json.clone()).collect()
}

/// The objects of one scrape, read from `cache`.
pub fn collect(cache: &WatchCache) -> ClusterState {
    let prefix = |kind: Kind| registry::by_kind(kind).key_prefix();
    ClusterState {
        daemonsets: json_of(cache, &prefix(Kind::DaemonSet)),
        pods: json_of(cache, &prefix(Kind::Pod)),
        nodes: json_of(cache, &prefix(Kind::Node)),
        stored: registry::RESOURCES
            .iter()
            .map(|resource| {
                let name = if resource.group.is_empty() {
                    resource.plural.to_owned()
                } else {
                    format!("{}.{}", resource.plural, resource.group)
                };
                (name, cache.count(&resource.key_prefix()) as i64)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::prometheus_text;
    use prometheus_client::registry::Registry;

    fn json_bytes(v: serde_json::Value) -> Bytes {
        Bytes::from(v.to_string())
    }

    fn text(state: ClusterState) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(state));
        let mut out = String::new();
        prometheus_text::encode(&mut out, &registry).expect("encode");
        out
    }

    #[test]
    fn object_labels_are_named_as_kube_state_metrics_names_them() {
        assert_eq!(
            label_name("app.kubernetes.io/name"),
            "label_app_kubernetes_io_name"
        );
        assert_eq!(label_name("tier"), "label_tier");
        let ds = json_bytes(serde_json::json!({
            "metadata": {"name": "d", "namespace": "n", "labels": {"app.kubernetes.io/name": "x"}},
            "status": {"numberReady": 2}
        }));
        let out = text(ClusterState {
            daemonsets: vec![ds],
            ..ClusterState::default()
        });
        assert!(out.contains("kube_daemonset_labels{namespace=\"n\",daemonset=\"d\",label_app_kubernetes_io_name=\"x\"} 1"), "{out}");
        assert!(
            out.contains("kube_daemonset_status_number_ready{namespace=\"n\",daemonset=\"d\"} 2"),
            "{out}"
        );
    }

    #[test]
    fn a_pods_phase_and_waiting_reason_are_one_series_each() {
        let pod = json_bytes(serde_json::json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u",
                "ownerReferences": [{"kind": "DaemonSet", "name": "d", "controller": true}]},
            "spec": {"nodeName": "node-1"},
            "status": {"phase": "Pending", "containerStatuses": [
                {"name": "c", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        }));
        let out = text(ClusterState {
            pods: vec![pod],
            ..ClusterState::default()
        });
        let phases: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("kube_pod_status_phase{"))
            .collect();
        assert_eq!(phases.len(), 5);
        assert_eq!(phases.iter().filter(|l| l.ends_with(" 1")).count(), 1);
        assert!(
            out.contains(
                "kube_pod_status_phase{namespace=\"n\",pod=\"p\",uid=\"u\",phase=\"Pending\"} 1"
            ),
            "{out}"
        );
        assert!(out.contains("kube_pod_container_status_restarts_total{namespace=\"n\",pod=\"p\",uid=\"u\",container=\"c\"} 3"), "{out}");
        assert!(out.contains("reason=\"CrashLoopBackOff\"} 1"), "{out}");
        assert!(out.contains("created_by_kind=\"DaemonSet\""), "{out}");
    }

    #[test]
    fn a_condition_is_three_series_of_which_one_holds() {
        let node = json_bytes(serde_json::json!({
            "metadata": {"name": "a"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}
        }));
        let out = text(ClusterState {
            nodes: vec![node],
            ..ClusterState::default()
        });
        for (status, value) in [("true", 0), ("false", 0), ("unknown", 1)] {
            let line = format!(
                "kube_node_status_condition{{node=\"a\",condition=\"Ready\",status=\"{status}\"}} {value}"
            );
            assert!(out.contains(&line), "{out}");
        }
    }

    #[test]
    fn strings_are_borrowed_from_the_json_unless_escaped() {
        let json = br#"{"metadata": {"name": "plain", "namespace": "n\u0031"}}"#;
        let pod: Pod<'_> = serde_json::from_slice(json).expect("pod");
        assert!(matches!(pod.metadata.name.0, Cow::Borrowed("plain")));
        assert!(matches!(pod.metadata.namespace.0, Cow::Owned(ref n) if n == "n1"));
    }
}
