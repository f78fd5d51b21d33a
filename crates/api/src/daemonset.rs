//! DaemonSet rules that are plain functions of the objects: node eligibility (spec §2.3),
//! default tolerations (§2.4), pods built from the template (§1.7), revision data and hash
//! (§1.6), budget scaling (§2.9), and the updated / ready / available predicates.

use crate::scheduling;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use std::cmp::Ordering;

/// Label on pods and revisions naming the template revision.
pub const HASH_LABEL: &str = "controller-revision-hash";
/// Deprecated label carrying the template generation a pod was made from.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// `NodeShouldRunDaemonPod`'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eligibility {
    pub should_run: bool,
    pub should_continue_running: bool,
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    }
}

/// The tolerations every daemon pod gets (§2.4).
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut t = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        t.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    t
}

/// "Add or update": a toleration equal in key, operator, value and effect is replaced.
pub fn add_or_update_tolerations(existing: &mut Vec<Toleration>, defaults: Vec<Toleration>) {
    for d in defaults {
        let same = |t: &Toleration| {
            t.key == d.key
                && t.operator.as_deref().unwrap_or("Equal")
                    == d.operator.as_deref().unwrap_or("Equal")
                && t.value.as_deref().unwrap_or("") == d.value.as_deref().unwrap_or("")
                && t.effect == d.effect
        };
        match existing.iter().position(same) {
            Some(i) => existing[i] = d,
            None => existing.push(d),
        }
    }
}

/// `NodeShouldRunDaemonPod` (§2.3).
pub fn node_should_run(node: &Node, ds: &DaemonSet) -> Eligibility {
    DaemonPlacement::new(ds).on(node)
}

/// What `NodeShouldRunDaemonPod` needs of a DaemonSet, worked out once so that a pass over
/// thousands of nodes does not rebuild the pod's tolerations (or clone its spec) per node.
pub struct DaemonPlacement<'a> {
    spec: Option<&'a PodSpec>,
    tolerations: Vec<Toleration>,
}

impl<'a> DaemonPlacement<'a> {
    pub fn new(ds: &'a DaemonSet) -> Self {
        let spec = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        let mut tolerations = spec.and_then(|s| s.tolerations.clone()).unwrap_or_default();
        add_or_update_tolerations(
            &mut tolerations,
            default_tolerations(spec.and_then(|s| s.host_network).unwrap_or(false)),
        );
        DaemonPlacement { spec, tolerations }
    }

    /// Whether the daemon pod should run on `node`, and whether one already there may stay.
    pub fn on(&self, node: &Node) -> Eligibility {
        let never = Eligibility {
            should_run: false,
            should_continue_running: false,
        };
        let node_name = node.metadata.name.as_deref().unwrap_or("");
        if let Some(n) = self
            .spec
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
            && n != node_name
        {
            return never;
        }
        if let Some(spec) = self.spec
            && !scheduling::node_matches(spec, node)
        {
            return never;
        }
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default();
        if scheduling::untolerated(taints, &self.tolerations, &["NoSchedule", "NoExecute"])
            .is_none()
        {
            return Eligibility {
                should_run: true,
                should_continue_running: true,
            };
        }
        Eligibility {
            should_run: false,
            should_continue_running: scheduling::untolerated(
                taints,
                &self.tolerations,
                &["NoExecute"],
            )
            .is_none(),
        }
    }

    /// The first taint of `node` the pod does not tolerate, as `key=value:Effect`.
    pub fn untolerated(&self, node: &Node) -> Option<String> {
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default();
        scheduling::untolerated(taints, &self.tolerations, &["NoSchedule", "NoExecute"]).map(|t| {
            match t.value.as_deref().filter(|v| !v.is_empty()) {
                Some(v) => format!("{}={v}:{}", t.key, t.effect),
                None => format!("{}:{}", t.key, t.effect),
            }
        })
    }
}

/// Why a pod is not available, in the words of beyond.md §6: the first container's waiting
/// reason, `Pending` with the scheduler's message, or `NotReady`. The controller's `Available`
/// condition and the placement view both say it this way.
pub fn unavailable_reason(p: &Pod) -> (std::borrow::Cow<'static, str>, Option<String>) {
    use std::borrow::Cow;
    let status = p.status.as_ref();
    let waiting = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    if let Some(reason) = waiting {
        return (Cow::Owned(reason), None);
    }
    if status.and_then(|s| s.phase.as_deref()).unwrap_or("") == "Pending" {
        let unschedulable = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            .and_then(|c| c.message.clone());
        return (Cow::Borrowed("Pending"), unschedulable);
    }
    (Cow::Borrowed("NotReady"), None)
}

/// The template generation of a DaemonSet (its deprecated annotation), if set and numeric.
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(crate::strategy::TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

/// The controller reference a DaemonSet puts on what it owns.
pub fn controller_ref(ds: &DaemonSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: ds.metadata.name.clone().unwrap_or_default(),
        uid: ds.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A new daemon pod for `node` (§1.7). The API server generates the name.
pub fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.take().unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    if let Some(g) = template_generation(ds) {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    let generate_name = format!("{name}-");
    let valid_prefix = crate::names::dns1123_subdomain(&format!("{generate_name}abcde")).is_empty();
    let mut spec = template.spec.clone().unwrap_or_default();
    let mut tolerations = spec.tolerations.take().unwrap_or_default();
    add_or_update_tolerations(
        &mut tolerations,
        default_tolerations(spec.host_network.unwrap_or(false)),
    );
    spec.tolerations = Some(tolerations);
    let affinity = spec.affinity.get_or_insert_with(Default::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(Default::default);
    node_affinity.required_during_scheduling_ignored_during_execution =
        Some(k8s_openapi::api::core::v1::NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_fields: Some(vec![NodeSelectorRequirement {
                    key: "metadata.name".into(),
                    operator: "In".into(),
                    values: Some(vec![node.into()]),
                }]),
                match_expressions: None,
            }],
        });
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            generate_name: Some(if valid_prefix { generate_name } else { name }),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations.take(),
            finalizers: meta.finalizers.take(),
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The node a daemon pod is for: `spec.nodeName`, else the single `metadata.name In [x]` field
/// requirement of its required node affinity.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = crate::scheduling::required_node_terms(spec)?;
    let fields: Vec<&NodeSelectorRequirement> = terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .filter(|r| r.key == "metadata.name" && r.operator == "In")
        .collect();
    match fields.as_slice() {
        [only] => match only.values.as_deref() {
            Some([v]) => Some(v.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The revision data of a DaemonSet: a strategic merge patch restoring its template (§1.6),
/// with keys sorted at every level.
pub fn revision_data(ds: &DaemonSet) -> Value {
    let template = serde_json::to_value(
        ds.spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default(),
    )
    .unwrap_or(json!({}));
    let mut t = template;
    // Go encodes a few zero values that serde omits; kubectl's "skipped rollback" check compares
    // revision data with Go's bytes, so write them as Go does (v1.33): the template's zero
    // creationTimestamp as null and a missing container `resources` as {}.
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
        if let Some(m) = o
            .entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            m.entry("creationTimestamp").or_insert(Value::Null);
        }
        if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) {
            for key in ["initContainers", "containers"] {
                for c in spec
                    .get_mut(key)
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(c) = c.as_object_mut() {
                        c.entry("resources").or_insert_with(|| json!({}));
                    }
                }
            }
        }
    }
    sorted(&json!({"spec": {"template": t}}))
}

const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `ComputeHash`: FNV-1a 32 over a canonical serialization of the template, salted with the
/// collision count, rendered in upstream's safe alphabet (§1.6).
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let canonical = serde_json::to_vec(&sorted(
        &serde_json::to_value(template).unwrap_or(Value::Null),
    ))
    .unwrap_or_default();
    // The salt is the collision count as Go writes an int64: 8 little-endian bytes.
    let salt: Vec<u8> = collision_count
        .map(|c| i64::from(c as u32).to_le_bytes().to_vec())
        .unwrap_or_default();
    let h = crate::fnv::fnv1a_32([canonical.as_slice(), salt.as_slice()]);
    h.to_string()
        .bytes()
        .map(|d| SAFE_ALPHABET[(d % 27) as usize] as char)
        .collect()
}

/// An int-or-string that is neither a number nor a percentage. Not retryable: validation refuses
/// such values, so only an object stored before it did can carry one; the controller reports it
/// as upstream does and waits for the object to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for IntOrString: invalid type: string is not a percentage: {0:?}")]
pub struct NotAPercentage(pub String);

/// Scales an int-or-percent against `total`, rounding percentages up.
pub fn scale(v: Option<&IntOrString>, total: i32) -> Result<i32, NotAPercentage> {
    match v {
        None => Ok(0),
        Some(IntOrString::Int(i)) => Ok(*i),
        Some(IntOrString::String(s)) => {
            let p = crate::validation::daemonset::parse_percent(s)
                .ok_or_else(|| NotAPercentage(s.clone()))?;
            Ok(((p * i64::from(total)) as f64 / 100.0).ceil() as i32)
        }
    }
}

/// `IsPodUpdated`: the current hash label, or the current template generation label.
pub fn is_updated(pod: &Pod, hash: &str, template_generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let by_hash = labels
        .and_then(|l| l.get(HASH_LABEL))
        .is_some_and(|h| h == hash);
    let by_generation = template_generation.is_some_and(|g| {
        labels
            .and_then(|l| l.get(TEMPLATE_GENERATION_LABEL))
            .is_some_and(|v| *v == g.to_string())
    });
    by_hash || by_generation
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The condition and the taint an agent sets on its node while it shuts down (beyond.md §5).
pub const SHUTTING_DOWN_CONDITION: &str = "ShuttingDown";
pub const SHUTTING_DOWN_TAINT: &str = "everynode.dev/shutting-down";

/// Whether the node's agent is shutting down: condition `ShuttingDown` True.
pub fn node_shutting_down(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == SHUTTING_DOWN_CONDITION && c.status == "True")
}

/// Whether a node is unready in the sense of beyond.md §3.4: its Ready condition is not True
/// (False, Unknown or missing), it carries the `unreachable` or `not-ready` taint, or it is
/// shutting down (condition `ShuttingDown` True).
pub fn node_unready(node: &Node) -> bool {
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let status_of = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.as_str())
    };
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|t| {
            t.key == "node.kubernetes.io/unreachable" || t.key == "node.kubernetes.io/not-ready"
        });
    status_of("Ready") != Some("True") || tainted || node_shutting_down(node)
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When a Ready pod's `min_ready_seconds` run out (its Ready transition plus the seconds); it
/// counts as available strictly after that instant.
pub fn ready_until_available(pod: &Pod, min_ready_seconds: i32) -> Option<Timestamp> {
    let c = ready_condition(pod).filter(|c| c.status == "True")?;
    let t = c.last_transition_time.as_ref()?;
    Some(t.0 + k8s_openapi::jiff::SignedDuration::from_secs(i64::from(min_ready_seconds)))
}

/// Ready for at least `min_ready_seconds` (strictly, as up to v1.33).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(c) = ready_condition(pod).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    c.last_transition_time.as_ref().is_some_and(|t| {
        t.0 + k8s_openapi::jiff::SignedDuration::from_secs(i64::from(min_ready_seconds)) < now
    })
}

/// The "primary pod" order: scheduled first, then older, then by name.
pub fn primary_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some_and(|n| !n.is_empty())
    };
    scheduled(b)
        .cmp(&scheduled(a))
        .then_with(|| oldest_first(a, b))
}

/// Older first (by creationTimestamp), then by name.
pub fn oldest_first(a: &Pod, b: &Pod) -> Ordering {
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Whether an owner reference points to a DaemonSet (`apps/*`, kind DaemonSet).
pub fn is_daemonset_ref(owner: &OwnerReference) -> bool {
    owner.kind == "DaemonSet" && owner.api_version.starts_with("apps/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(v: Value) -> DaemonSet {
        serde_json::from_value(v).expect("ds")
    }

    #[test]
    fn a_node_is_unready_by_condition_taint_or_shutdown() {
        let node = |v: Value| -> Node { serde_json::from_value(v).expect("node") };
        let ready = json!({"type": "Ready", "status": "True"});
        assert!(!node_unready(&node(
            json!({"status": {"conditions": [ready]}})
        )));
        for unready in [
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
            json!({}),
            json!({"status": {"conditions": [ready]}, "spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}}),
            json!({"status": {"conditions": [ready]}, "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}}),
            json!({"status": {"conditions": [ready, {"type": "ShuttingDown", "status": "True"}]}}),
        ] {
            assert!(node_unready(&node(unready.clone())), "{unready}");
        }
    }

    fn node(v: Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    fn base(template_spec: Value) -> DaemonSet {
        ds(
            json!({"metadata": {"name": "foo", "namespace": "default", "uid": "u-1", "annotations": {"deprecated.daemonset.template.generation": "1"}},
            "spec": {"selector": {"matchLabels": {"name": "simple-daemon"}}, "template": {"metadata": {"labels": {"name": "simple-daemon", "type": "production"}}, "spec": template_spec}}}),
        )
    }

    fn container() -> Value {
        json!([{"name": "foo", "image": "foo/bar"}])
    }

    #[test]
    fn s041_node_should_run_daemon_pod_truth_table() {
        let n = node(
            json!({"metadata": {"name": "node", "labels": {"name": "simple-daemon", "type": "production"}},
            "status": {"allocatable": {"memory": "100M", "cpu": "1"}}}),
        );
        let case = |spec: Value| node_should_run(&n, &base(spec));
        let run = Eligibility {
            should_run: true,
            should_continue_running: true,
        };
        let never = Eligibility {
            should_run: false,
            should_continue_running: false,
        };
        assert_eq!(
            case(
                json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"memory": "50M"}}}]})
            ),
            run
        );
        assert_eq!(
            case(
                json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"memory": "200M"}}}]})
            ),
            run
        );
        assert_eq!(
            case(json!({"containers": container(), "nodeName": "other-node"})),
            never
        );
        assert_eq!(
            case(
                json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 666, "hostPort": 666}]}]})
            ),
            run
        );
        assert_eq!(
            case(json!({"containers": container(), "nodeSelector": {"type": "test"}})),
            never
        );
        assert_eq!(
            case(json!({"containers": container(), "nodeSelector": {"type": "production"}})),
            run
        );
        let affinity = |v: &str| json!({"containers": container(), "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "type", "operator": "In", "values": [v]}]}]}}}});
        assert_eq!(case(affinity("test")), never);
        assert_eq!(case(affinity("production")), run);
        let cordoned = node(json!({"metadata": {"name": "node"}, "spec": {"unschedulable": true}}));
        assert_eq!(
            node_should_run(&cordoned, &base(json!({"containers": container()}))),
            run
        );
    }

    #[test]
    fn taints_decide_run_and_continue() {
        let tainted = |effect: &str| {
            node(
                json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "dedicated", "value": "user1", "effect": effect}]}}),
            )
        };
        let d = base(json!({"containers": container()}));
        assert_eq!(
            node_should_run(&tainted("NoSchedule"), &d),
            Eligibility {
                should_run: false,
                should_continue_running: true
            }
        );
        assert_eq!(
            node_should_run(&tainted("NoExecute"), &d),
            Eligibility {
                should_run: false,
                should_continue_running: false
            }
        );
        assert!(node_should_run(&tainted("PreferNoSchedule"), &d).should_run);
        let not_ready = node(
            json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]}}),
        );
        assert!(
            node_should_run(&not_ready, &d).should_run,
            "S-052: not-ready NoExecute is tolerated"
        );
        let net = node(
            json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]}}),
        );
        assert!(
            !node_should_run(&net, &d).should_run,
            "S-025 without hostNetwork"
        );
        assert!(
            node_should_run(
                &net,
                &base(json!({"containers": container(), "hostNetwork": true}))
            )
            .should_run,
            "S-025 with hostNetwork"
        );
    }

    #[test]
    fn s020_created_pod_shape() {
        let d = base(
            json!({"containers": container(), "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]}),
        );
        let pod = new_pod(&d, "node-3", "abc");
        let spec = pod.spec.as_ref().expect("spec");
        assert!(spec.node_name.is_none());
        assert_eq!(target_node(&pod).as_deref(), Some("node-3"));
        let tolerations = spec.tolerations.as_ref().expect("tolerations");
        assert_eq!(tolerations.len(), 6);
        assert!(
            tolerations.iter().all(|t| t.toleration_seconds.is_none()),
            "the user's same toleration is replaced by the default"
        );
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels.get(HASH_LABEL).map(String::as_str), Some("abc"));
        assert_eq!(
            labels.get(TEMPLATE_GENERATION_LABEL).map(String::as_str),
            Some("1")
        );
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("foo-"));
        let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.controller,
                owner.block_owner_deletion
            ),
            ("DaemonSet", Some(true), Some(true))
        );
    }

    #[test]
    fn s040_required_affinity_is_replaced_by_the_node_term() {
        let d = base(
            json!({"containers": container(), "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "color", "operator": "In", "values": ["blue"]}]}]}}}}),
        );
        let pod = new_pod(&d, "node-5", "h");
        let terms =
            scheduling::required_node_terms(pod.spec.as_ref().expect("spec")).expect("required");
        assert_eq!(terms.len(), 1);
        assert!(terms[0].match_expressions.is_none());
        assert_eq!(terms[0].match_fields.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn hash_alphabet_salt_and_revision_data() {
        let d = base(json!({"containers": container()}));
        let template = d.spec.as_ref().expect("spec").template.clone();
        let h = template_hash(&template, None);
        assert!(
            !h.is_empty() && h.len() <= 10 && h.chars().all(|c| "456789bcdf".contains(c)),
            "{h}"
        );
        assert_eq!(h, template_hash(&template, None), "deterministic");
        // Pinned: stored revisions and pod labels carry these; they must never change.
        assert_eq!(h, "7fffcf5c77");
        assert_eq!(template_hash(&template, Some(1)), "5975c6f584");
        assert_ne!(
            h,
            template_hash(&template, Some(1)),
            "the collision count salts it"
        );
        let data = revision_data(&d);
        assert_eq!(
            data.to_string(),
            r#"{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null,"labels":{"name":"simple-daemon","type":"production"}},"spec":{"containers":[{"image":"foo/bar","name":"foo","resources":{}}]}}}}"#,
            "the bytes Go's encoder gives kubectl"
        );
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            data.to_string().find("$patch"),
            Some(22),
            "keys are sorted, so $patch comes first"
        );
    }

    #[test]
    fn scaling_rounds_up() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(scale(Some(&pct("50%")), 2), Ok(1));
        assert_eq!(scale(Some(&pct("50%")), 3), Ok(2));
        assert_eq!(scale(Some(&pct("100%")), 2), Ok(2));
        assert_eq!(scale(Some(&pct("10%")), 1), Ok(1));
        assert_eq!(scale(Some(&IntOrString::Int(1)), 10), Ok(1));
        assert!(scale(Some(&pct("x")), 3).is_err());
    }
}
