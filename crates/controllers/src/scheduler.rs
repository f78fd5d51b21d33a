//! The scheduler: binds pods whose `schedulerName` is `default-scheduler` to a node that passes
//! upstream's filters (NodeUnschedulable, NodeAffinity, TaintToleration, NodeResourcesFit,
//! NodePorts). When none does, the pod gets `PodScheduled=False` with upstream's message and a
//! FailedScheduling event, and is retried with backoff (1 s doubling to 10 s).

use crate::events::Recorder;
use crate::interpod::NamespaceLabels;
use crate::metrics::{self, AttemptLabels, PendingLabels, SCHEDULER};
use crate::stores::Informers;
use everynode_api::quantity::Quantity;
use everynode_api::scheduling;
use everynode_clock::SharedClock;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

fn taint_text(t: &Taint) -> String {
    format!("{{{}: {}}}", t.key, t.value.clone().unwrap_or_default())
}

/// Bound pods grouped by node name.
fn pods_by_node(pods: &[Arc<Pod>]) -> HashMap<&str, Vec<&Pod>> {
    let mut by_node: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for p in pods {
        if let Some(n) = scheduling::bound_node(p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    by_node
}

/// The reference an event about `pod` names.
fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(pod.name_any()),
        namespace: pod.namespace(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Whether `pod` fits `node` with `others` already there; the reasons when it does not.
pub fn fits<P: Borrow<Pod>>(pod: &Pod, node: &Node, others: &[P]) -> Result<(), Vec<String>> {
    let default_spec = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        let t = Taint {
            key: UNSCHEDULABLE_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !tolerations.iter().any(|tol| scheduling::tolerates(tol, &t)) {
            return Err(vec!["node(s) were unschedulable".into()]);
        }
    }
    if !scheduling::node_matches(spec, node) {
        return Err(vec![
            "node(s) didn't match Pod's node affinity/selector".into(),
        ]);
    }
    if let Some(t) = scheduling::untolerated(taints, tolerations, &["NoSchedule", "NoExecute"]) {
        return Err(vec![format!(
            "node(s) had untolerated taint {}",
            taint_text(t)
        )]);
    }
    let mut reasons = Vec::new();
    let live: Vec<&Pod> = others
        .iter()
        .map(Borrow::borrow)
        .filter(|p| !scheduling::is_terminated(p))
        .collect();
    let max_pods = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("pods"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .map_or(110, |q| q.units_ceil());
    if live.len() as i128 + 1 > max_pods {
        reasons.push("Too many pods".into());
    }
    for shortage in scheduling::shortages(pod, node, &live) {
        reasons.push(format!("Insufficient {}", shortage.resource));
    }
    if scheduling::host_port_conflict(pod, &live) {
        reasons.push("node(s) didn't have free ports for the requested pod ports".into());
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// Upstream's message: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match ...`.
/// No node fits a pod, with how many nodes failed for each reason. Retryable: the scheduler
/// tries the pod again when nodes or pods change. Its message is upstream's `FailedScheduling`
/// text, `0/N nodes are available: ...`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", unschedulable_message(*.nodes, .reasons))]
pub struct Unschedulable {
    /// How many nodes were considered.
    pub nodes: usize,
    /// Each reason a node was refused, with the number of nodes it refused.
    pub reasons: BTreeMap<String, usize>,
}

pub fn unschedulable_message(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    if parts.is_empty() {
        format!("0/{total} nodes are available.")
    } else {
        format!("0/{total} nodes are available: {}.", parts.join(", "))
    }
}

fn has_pod_terms(p: &Pod) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

/// Bound pods by node, built once per scheduling round and kept current as the round binds
/// pods, so placing a pod costs the nodes it may go to, not every pod in the cluster.
pub struct Placement {
    by_node: HashMap<String, Vec<Arc<Pod>>>,
    /// Whether some bound pod has inter-pod (anti-)affinity terms, which every placement
    /// must then respect.
    any_terms: bool,
}

impl Placement {
    pub fn new(pods: &[Arc<Pod>]) -> Self {
        let mut placement = Placement {
            by_node: HashMap::new(),
            any_terms: false,
        };
        for p in pods {
            placement.assume(Arc::clone(p));
        }
        placement
    }

    /// Counts `pod` on its node from now on (a binding this round made).
    pub fn assume(&mut self, pod: Arc<Pod>) {
        let Some(node) = scheduling::bound_node(&pod).map(str::to_owned) else {
            return;
        };
        self.any_terms |= has_pod_terms(&pod);
        self.by_node.entry(node).or_default().push(pod);
    }

    fn on(&self, node: &str) -> &[Arc<Pod>] {
        self.by_node.get(node).map_or(&[], Vec::as_slice)
    }
}

/// The only nodes a pod's required node affinity admits, when every term names nodes with
/// `matchFields metadata.name In` (as a daemon pod's does): upstream's NodeAffinity PreFilter,
/// which spares checking every other node.
fn pinned_nodes(pod: &Pod) -> Option<BTreeSet<&str>> {
    let terms = scheduling::required_node_terms(pod.spec.as_ref()?)?;
    let mut names = BTreeSet::new();
    for term in terms {
        let named = term
            .match_fields
            .iter()
            .flatten()
            .find(|r| r.key == "metadata.name" && r.operator == "In")?;
        names.extend(named.values.iter().flatten().map(String::as_str));
    }
    (!terms.is_empty()).then_some(names)
}

/// Picks a node for `pod`: the feasible one with the fewest pods (then by name).
pub fn choose<'a, N: Borrow<Node>>(
    pod: &Pod,
    nodes: &'a [N],
    placement: &Placement,
    namespaces: &NamespaceLabels,
) -> Result<&'a Node, Unschedulable> {
    choose_indexed(pod, nodes, &index_by_name(nodes), placement, namespaces)
}

/// Positions of `nodes` by name.
fn index_by_name<N: Borrow<Node>>(nodes: &[N]) -> HashMap<&str, usize> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.borrow().metadata.name.as_deref().unwrap_or(""), i))
        .collect()
}

/// `choose` with the nodes' index by name built once per round: a pinned pod's nodes are
/// looked up, where scanning every node for each pod was quadratic at 10,000 nodes.
fn choose_indexed<'a, N: Borrow<Node>>(
    pod: &Pod,
    nodes: &'a [N],
    by_name: &HashMap<&str, usize>,
    placement: &Placement,
    namespaces: &NamespaceLabels,
) -> Result<&'a Node, Unschedulable> {
    if let Some(names) = pinned_nodes(pod) {
        let candidates = names
            .iter()
            .filter_map(|name| by_name.get(name))
            .map(|&i| nodes[i].borrow());
        if let Ok(node) = choose_among(pod, candidates, nodes, placement, namespaces) {
            return Ok(node);
        }
        // Nothing fits: evaluate every node, for upstream's full message.
    }
    choose_among(
        pod,
        nodes.iter().map(Borrow::borrow),
        nodes,
        placement,
        namespaces,
    )
    .map_err(|reasons| Unschedulable {
        nodes: nodes.len(),
        reasons,
    })
}

fn choose_among<'a, N: Borrow<Node>>(
    pod: &Pod,
    candidates: impl Iterator<Item = &'a Node>,
    all_nodes: &[N],
    placement: &Placement,
    namespaces: &NamespaceLabels,
) -> Result<&'a Node, BTreeMap<String, usize>> {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Option<(&Node, usize)> = None;
    // Inter-pod affinity needs every bound pod with its node; built only when some pod has
    // required terms, so the common case stays a per-node check.
    let check_interpod = has_pod_terms(pod) || placement.any_terms;
    let placed: Vec<(&Pod, &Node)> = if check_interpod {
        // Pods on every node count (a zone spans nodes), not only on the candidates.
        let known: HashMap<&str, &Node> = all_nodes
            .iter()
            .map(Borrow::borrow)
            .map(|n| (n.metadata.name.as_deref().unwrap_or(""), n))
            .collect();
        placement
            .by_node
            .iter()
            .filter_map(|(name, pods)| known.get(name.as_str()).map(|n| (pods, *n)))
            .flat_map(|(pods, n)| {
                pods.iter()
                    .filter(|p| !scheduling::is_terminated(p))
                    .map(move |p| (p.as_ref(), n))
            })
            .collect()
    } else {
        Vec::new()
    };
    for node in candidates {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let others = placement.on(name);
        let result = fits(pod, node, others).and_then(|()| {
            if check_interpod {
                crate::interpod::check(pod, node, &placed, namespaces)
                    .map_err(|r| vec![r.to_owned()])
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                if best.is_none_or(|(b, count)| {
                    others.len() < count
                        || (others.len() == count && node.metadata.name < b.metadata.name)
                }) {
                    best = Some((node, others.len()));
                }
            }
            Err(rs) => {
                for r in rs {
                    *reasons.entry(r).or_default() += 1;
                }
            }
        }
    }
    best.map(|(n, _)| n).ok_or(reasons)
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// The pod's controller, when it is one of the given kinds.
fn controller_kind<'a>(pod: &'a Pod, kinds: &[&str]) -> Option<&'a str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.kind.as_str())
        .filter(|k| kinds.contains(k))
}

/// The DaemonSet that controls the pod, if one does.
fn daemonset_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && everynode_api::daemonset::is_daemonset_ref(o))
        .map(|o| o.name.as_str())
}

/// Whether a controller will place the pod again elsewhere once it is preempted.
fn placed_again_elsewhere(pod: &Pod) -> bool {
    controller_kind(pod, &["ReplicaSet", "Job", "StatefulSet"]).is_some()
}

/// The pods to evict from `node` so that `pod` fits, as upstream's `SelectVictimsOnNode`:
/// every lower-priority pod is a candidate; then, highest priority first, candidates are
/// reprieved while the pod still fits without them. `None` when even removing them all is not
/// enough (or the pod may not preempt).
pub fn victims_on<'a>(pod: &Pod, node: &Node, on_node: &[&'a Pod]) -> Option<Vec<&'a Pod>> {
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never")
    {
        return None;
    }
    let mine = priority(pod);
    let (mut candidates, mut kept): (Vec<&Pod>, Vec<&Pod>) = on_node
        .iter()
        .partition(|p| priority(p) < mine && p.metadata.deletion_timestamp.is_none());
    if candidates.is_empty() || fits(pod, node, &kept).is_err() {
        return None;
    }
    // Reprieved first, so preempted last: the most important. For a daemon pod (beyond.md §4),
    // among equal priorities a bare pod is more important than one a controller will place
    // again elsewhere; other pods keep upstream's order.
    let daemon = daemonset_of(pod).is_some();
    candidates.sort_by_key(|p| {
        (
            std::cmp::Reverse(priority(p)),
            daemon && placed_again_elsewhere(p),
        )
    });
    let mut victims = Vec::new();
    for c in candidates {
        kept.push(c);
        if fits(pod, node, &kept).is_err() {
            kept.pop();
            victims.push(c);
        }
    }
    Some(victims)
}

/// The node to preempt on and its victims: the one whose most important victim matters least,
/// then the fewest victims, then the name.
pub fn choose_preemption<'a, N: Borrow<Node>>(
    pod: &Pod,
    nodes: &'a [N],
    pods: &'a [Arc<Pod>],
) -> Option<(&'a Node, Vec<&'a Pod>)> {
    let by_node = pods_by_node(pods);
    nodes
        .iter()
        .map(Borrow::borrow)
        .filter_map(|n: &'a Node| {
            let on_node = by_node
                .get(n.metadata.name.as_deref().unwrap_or(""))
                .cloned()
                .unwrap_or_default();
            victims_on(pod, n, &on_node).map(|v| (n, v))
        })
        .filter(|(_, v)| !v.is_empty())
        .min_by_key(|(n, v)| {
            (
                v.iter().map(|p| priority(p)).max().unwrap_or(i32::MIN),
                v.len(),
                n.metadata.name.clone(),
            )
        })
}

/// Whether `pod` already preempted and pods on its nominated node are still terminating: it
/// waits for them rather than preempting again.
fn waiting_on_victims(pod: &Pod, pods: &[Arc<Pod>]) -> bool {
    pod.status
        .as_ref()
        .and_then(|st| st.nominated_node_name.as_deref())
        .is_some_and(|n| {
            pods.iter().any(|p| {
                p.metadata.deletion_timestamp.is_some() && scheduling::bound_node(p) == Some(n)
            })
        })
}

/// Nominates `node` for `pod` and evicts the victims: each gets the DisruptionTarget condition,
/// a Preempted event, and a graceful delete.
async fn preempt(client: &Client, events: &Recorder, pod: &Pod, node: &str, victims: &[&Pod]) {
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let nominate = json!({"status": {"nominatedNodeName": node}});
    if let Err(e) = api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&nominate),
        )
        .await
    {
        tracing::debug!(error = %e, "could not nominate a node");
    }
    if daemonset_of(pod).is_some() {
        let named: Vec<String> = victims
            .iter()
            .map(|v| format!("{}/{}", v.namespace().unwrap_or_default(), v.name_any()))
            .collect();
        events
            .record(
                pod_reference(pod),
                false,
                "Preempting",
                &format!(
                    "Preempting on node {node} to make room: {}",
                    named.join(", ")
                ),
            )
            .await;
    }
    for v in victims {
        let vns = v.namespace().unwrap_or_default();
        let vapi: Api<Pod> = Api::namespaced(client.clone(), &vns);
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
            "message": "default-scheduler: preempting to accommodate a higher priority pod",
            "lastTransitionTime": Time(events.now())}]}});
        let _ = vapi
            .patch_status(
                &v.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&condition),
            )
            .await;
        let involved = pod_reference(v);
        // Upstream's words, and for a daemon pod its name and DaemonSet (beyond.md §4).
        let mut message = format!(
            "Preempted by pod {} on node {node}",
            pod.metadata.uid.as_deref().unwrap_or("")
        );
        if let Some(ds) = daemonset_of(pod) {
            message.push_str(&format!(
                " (daemon pod {}/{} of DaemonSet {ds})",
                ns,
                pod.name_any()
            ));
        }
        events.record(involved, false, "Preempted", &message).await;
        if let Err(e) = vapi.delete(&v.name_any(), &Default::default()).await {
            tracing::debug!(error = %e, "could not delete a preemption victim");
        }
    }
}

struct Retry {
    at: Instant,
    delay: Duration,
    message: String,
}

/// Runs the scheduler until the process ends.
pub async fn run(informers: Informers, clock: SharedClock) {
    metrics::init();
    let client = informers.client();
    let events = Recorder::new(client.clone(), "default-scheduler", clock);
    let changed = Arc::new(tokio::sync::Notify::new());
    let pods = informers.pods().ready_cache(&changed).await;
    let nodes = informers.nodes().ready_cache(&changed).await;
    let namespaces = informers.namespaces().ready_cache(&changed).await;
    let mut retries: HashMap<String, Retry> = HashMap::new();
    // Pods bound by this scheduler that the watch cache may not show bound yet, as
    // upstream's "assumed pods": without them, the next pod in the same pass would
    // be placed as if the first were still pending (two anti-affine pods on one
    // node, or two pods into room for one).
    let mut assumed: HashMap<String, (String, Instant)> = HashMap::new();
    loop {
        let mut all_pods = pods.state();
        // Looked up by uid, not by scanning the pods for each assumed one (quadratic at
        // thousands of pods bound in one round).
        let unbound: HashSet<&str> = all_pods
            .iter()
            .filter(|p| scheduling::bound_node(p).is_none())
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        assumed.retain(|uid, (_, at)| {
            at.elapsed() < ASSUMED_POD_EXPIRY && unbound.contains(uid.as_str())
        });
        for p in all_pods.iter_mut() {
            if let Some((node, _)) = p.metadata.uid.as_ref().and_then(|u| assumed.get(u)) {
                *p = Arc::new(bound_to(p, node));
            }
        }
        // Most wake-ups are status changes of bound pods: with none waiting, skip building
        // the round's indexes over every pod and node.
        let waiting = all_pods.iter().any(|p| {
            scheduling::bound_node(p).is_none() && p.metadata.deletion_timestamp.is_none()
        });
        if !waiting {
            retries.clear();
            publish_pending(&[], &retries);
            let _ = tokio::time::timeout(Duration::from_secs(10), changed.notified()).await;
            continue;
        }
        let all_nodes: Vec<Arc<Node>> = nodes.state();
        let by_name = index_by_name(&all_nodes);
        let mut placement = Placement::new(&all_pods);
        let namespace_labels: NamespaceLabels = namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
        let mut next_wake = Duration::from_secs(10);
        for index in 0..all_pods.len() {
            let pod = Arc::clone(&all_pods[index]);
            let pod = &pod;
            let ours = pod
                .spec
                .as_ref()
                .and_then(|s| s.scheduler_name.as_deref())
                .is_none_or(|s| s == "default-scheduler");
            if scheduling::bound_node(pod).is_some()
                || !ours
                || pod.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            let key = pod.metadata.uid.clone().unwrap_or_default();
            if let Some(r) = retries.get(&key)
                && r.at > Instant::now()
            {
                next_wake = next_wake.min(r.at - Instant::now());
                continue;
            }
            let ns = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let attempt = Attempt::start();
            match choose_indexed(pod, &all_nodes, &by_name, &placement, &namespace_labels) {
                Ok(node) => {
                    let binding = Binding {
                        metadata: ObjectMeta {
                            name: Some(pod.name_any()),
                            namespace: Some(ns.clone()),
                            ..Default::default()
                        },
                        target: ObjectReference {
                            api_version: Some("v1".into()),
                            kind: Some("Node".into()),
                            name: node.metadata.name.clone(),
                            ..Default::default()
                        },
                    };
                    let body = serde_json::to_vec(&binding).unwrap_or_default();
                    let req = http_post(
                        &format!("/api/v1/namespaces/{ns}/pods/{}/binding", pod.name_any()),
                        body,
                    );
                    match client.request_text(req).await {
                        Ok(_) => {
                            attempt.end("scheduled");
                            retries.remove(&key);
                            let node_name = node.metadata.name.clone().unwrap_or_default();
                            all_pods[index] = Arc::new(bound_to(pod, &node_name));
                            placement.assume(Arc::clone(&all_pods[index]));
                            assumed.insert(key, (node_name, Instant::now()));
                        }
                        Err(e) => {
                            attempt.end("error");
                            tracing::debug!(pod = %pod.name_any(), error = %e, "binding failed; will retry")
                        }
                    }
                }
                Err(unschedulable) => {
                    attempt.end("unschedulable");
                    let message = unschedulable.to_string();
                    let previous = retries.get(&key);
                    let delay = previous.map_or(Duration::from_secs(1), |r| {
                        (r.delay * 2).min(Duration::from_secs(10))
                    });
                    let changed_message = previous.is_none_or(|r| r.message != message);
                    if changed_message {
                        let patch = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null,
                            "lastTransitionTime": Time(events.now())}]}});
                        if let Err(e) = api
                            .patch_status(
                                &pod.name_any(),
                                &PatchParams::default(),
                                &Patch::Strategic(&patch),
                            )
                            .await
                        {
                            tracing::debug!(error = %e, "could not record the scheduling failure");
                        }
                        record_failed_scheduling(&events, pod, &message).await;
                    }
                    if !waiting_on_victims(pod, &all_pods)
                        && let Some((node, victims)) = choose_preemption(pod, &all_nodes, &all_pods)
                    {
                        let node_name = node.metadata.name.clone().unwrap_or_default();
                        tracing::info!(pod = %pod.name_any(), node = %node_name, victims = victims.len(), "preempting lower-priority pods");
                        preempt(&client, &events, pod, &node_name, &victims).await;
                    }
                    retries.insert(
                        key,
                        Retry {
                            at: Instant::now() + delay,
                            delay,
                            message,
                        },
                    );
                    next_wake = next_wake.min(delay);
                }
            }
        }
        let present: HashSet<&str> = all_pods
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        retries.retain(|uid, _| present.contains(uid.as_str()));
        publish_pending(&all_pods, &retries);
        let _ = tokio::time::timeout(next_wake, changed.notified()).await;
    }
}

/// One scheduling attempt, timed from the choice of a node to the binding's answer.
struct Attempt(Instant);

impl Attempt {
    fn start() -> Self {
        Attempt(Instant::now())
    }

    fn end(self, result: &'static str) {
        let labels = AttemptLabels {
            result,
            profile: metrics::PROFILE,
        };
        SCHEDULER.attempts.get_or_create(&labels).inc();
        SCHEDULER
            .attempt_duration
            .get_or_create(&labels)
            .observe(self.0.elapsed().as_secs_f64());
    }
}

/// Pods waiting to be bound: in backoff after a failed attempt, or to be tried.
fn publish_pending(pods: &[Arc<Pod>], retries: &HashMap<String, Retry>) {
    let now = Instant::now();
    let (mut active, mut backoff) = (0i64, 0i64);
    for pod in pods {
        if scheduling::bound_node(pod).is_some() || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let waiting_out = pod
            .metadata
            .uid
            .as_ref()
            .and_then(|u| retries.get(u))
            .is_some_and(|r| r.at > now);
        if waiting_out {
            backoff += 1;
        } else {
            active += 1;
        }
    }
    SCHEDULER
        .pending
        .get_or_create(&PendingLabels { queue: "active" })
        .set(active);
    SCHEDULER
        .pending
        .get_or_create(&PendingLabels { queue: "backoff" })
        .set(backoff);
}

/// How long a pod this scheduler bound counts as placed without the watch
/// confirming it; upstream's default assumed-pod TTL is 30 s as well.
const ASSUMED_POD_EXPIRY: Duration = Duration::from_secs(30);

/// The pod as it will look once the binding shows up in the watch.
fn bound_to(pod: &Pod, node: &str) -> Pod {
    let mut pod = pod.clone();
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.to_string());
    }
    pod
}

fn http_post(path: &str, body: Vec<u8>) -> http::Request<Vec<u8>> {
    let mut req = http::Request::new(body);
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = path.parse().unwrap_or_default();
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    req
}

async fn record_failed_scheduling(events: &Recorder, pod: &Pod, message: &str) {
    let involved = pod_reference(pod);
    events
        .record(involved, true, "FailedScheduling", message)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).expect("node")
    }
    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    /// A daemon pod as the DaemonSet controller makes it for `node` (affinity to that node and
    /// the automatic tolerations), with `extra` merged into its spec.
    fn daemon_pod(node: &str, extra: serde_json::Value) -> Pod {
        let ds: k8s_openapi::api::apps::v1::DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "ds", "namespace": "default", "uid": "ds-uid"},
            "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        }))
        .expect("ds");
        let mut v =
            serde_json::to_value(everynode_api::daemonset::new_pod(&ds, node, "h")).expect("json");
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            for (k, val) in extra {
                spec.insert(k.clone(), val.clone());
            }
        }
        pod(v)
    }

    fn sized(name: &str, cpu: &str) -> Node {
        node(
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}}}),
        )
    }

    fn running_on(name: &str, node_name: &str, spec: serde_json::Value) -> Arc<Pod> {
        let mut v = json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec, "status": {"phase": "Running"}});
        v["spec"]["nodeName"] = json!(node_name);
        Arc::new(pod(v))
    }

    #[test]
    fn sc01_pinned_scheduling_never_binds_elsewhere() {
        let nodes = vec![sized("node-1", "1"), sized("node-2", "8")];
        let full = running_on(
            "hog",
            "node-1",
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}),
        );
        let daemon = daemon_pod(
            "node-1",
            json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "500m"}}}]}),
        );
        let err = choose(
            &daemon,
            &nodes,
            &Placement::new(&[full]),
            &NamespaceLabels::new(),
        )
        .expect_err("node-1 is full")
        .to_string();
        assert_eq!(
            err,
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector."
        );
    }

    #[test]
    fn sc02_preemption_of_priority_zero_pods_for_a_system_node_critical_daemon() {
        let nodes = vec![sized("node-1", "1"), sized("node-2", "8")];
        let a = running_on(
            "a",
            "node-1",
            json!({"priority": 0, "containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}),
        );
        let b = running_on(
            "b",
            "node-1",
            json!({"priority": 0, "containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}),
        );
        let daemon = daemon_pod(
            "node-1",
            json!({"priority": 2000001000, "priorityClassName": "system-node-critical",
            "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "400m"}}}]}),
        );
        let pods = [a, b];
        assert!(
            choose(
                &daemon,
                &nodes,
                &Placement::new(&pods),
                &NamespaceLabels::new()
            )
            .is_err()
        );
        let (chosen, victims) = choose_preemption(&daemon, &nodes, &pods).expect("preempts");
        assert_eq!(
            chosen.name_any(),
            "node-1",
            "only the daemon pod's own node"
        );
        assert_eq!(victims.len(), 1, "enough victims, not all");
    }

    #[test]
    fn sc03_host_port_conflict_keeps_the_daemon_pod_pending() {
        let nodes = vec![sized("node-1", "8")];
        let foreign = running_on(
            "web",
            "node-1",
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        );
        let daemon = daemon_pod(
            "node-1",
            json!({"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 8080, "hostPort": 8080}]}]}),
        );
        let err = choose(
            &daemon,
            &nodes,
            &Placement::new(&[foreign]),
            &NamespaceLabels::new(),
        )
        .expect_err("port taken")
        .to_string();
        assert_eq!(
            err,
            "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
        );
    }

    #[test]
    fn sc04_unschedulable_node_still_gets_its_daemon_pod() {
        let mut n = sized("node-1", "8");
        n.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            unschedulable: Some(true),
            ..Default::default()
        });
        let daemon = daemon_pod("node-1", json!({}));
        assert_eq!(
            choose(
                &daemon,
                std::slice::from_ref(&n),
                &Placement::new(&[]),
                &NamespaceLabels::new()
            )
            .map(|n| n.name_any()),
            Ok("node-1".into())
        );
        let plain =
            pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}));
        assert_eq!(
            choose(&plain, &[n], &Placement::new(&[]), &NamespaceLabels::new())
                .map(|n| n.name_any())
                .map_err(|e| e.to_string()),
            Err("0/1 nodes are available: 1 node(s) were unschedulable.".into())
        );
    }

    #[test]
    fn a_nominated_pod_waits_while_its_victims_terminate() {
        let mut nominated = daemon_pod("node-1", json!({}));
        nominated.status = Some(k8s_openapi::api::core::v1::PodStatus {
            nominated_node_name: Some("node-1".into()),
            ..Default::default()
        });
        let victim = running_on("victim", "node-1", json!({}));
        assert!(!waiting_on_victims(&nominated, &[Arc::clone(&victim)]));
        let mut terminating = (*victim).clone();
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let terminating = Arc::new(terminating);
        assert!(waiting_on_victims(&nominated, &[Arc::clone(&terminating)]));
        let not_nominated = daemon_pod("node-1", json!({}));
        assert!(!waiting_on_victims(&not_nominated, &[terminating]));
    }

    #[test]
    fn preemption_picks_the_fewest_least_important_victims() {
        let n = node(
            json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "2", "pods": "110"}}}),
        );
        let with = |name: &str, cpu: &str, prio: i32| {
            pod(
                json!({"metadata": {"name": name}, "spec": {"nodeName": "n1", "priority": prio,
                "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}),
            )
        };
        let low = with("low", "1", 10);
        let lower = with("lower", "500m", 5);
        let high = with("high", "500m", 2000);
        let daemon = pod(
            json!({"metadata": {"name": "ds"}, "spec": {"priority": 1000,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        // Removing `lower` alone is not enough (needs 1 cpu free); removing `low` is: `lower` is
        // reprieved, `high` is never a candidate.
        let victims = victims_on(&daemon, &n, &[&low, &lower, &high]).expect("possible");
        assert_eq!(
            victims.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
            vec!["low"]
        );
        let mut never = daemon.clone();
        never.spec.as_mut().expect("spec").preemption_policy = Some("Never".into());
        assert!(victims_on(&never, &n, &[&low, &lower, &high]).is_none());
        // Nothing of lower priority to remove: no preemption.
        assert!(victims_on(&daemon, &n, &[&high, &with("h2", "1500m", 3000)]).is_none());
    }

    #[test]
    fn b11_a_daemon_pod_preempts_a_pod_placed_again_elsewhere_before_a_bare_one() {
        let n = node(
            json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "2", "pods": "110"}}}),
        );
        let with = |name: &str, owner: Option<(&str, &str)>, prio: i32| {
            let owners = owner.map_or(json!([]), |(api, kind)| {
                json!([{"apiVersion": api, "kind": kind, "name": "o", "uid": "o", "controller": true}])
            });
            pod(
                json!({"metadata": {"name": name, "ownerReferences": owners},
                "spec": {"nodeName": "n1", "priority": prio,
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}),
            )
        };
        let bare = with("bare", None, 0);
        let replicated = with("web", Some(("apps/v1", "ReplicaSet")), 0);
        let daemon = |name: &str, prio: i32| {
            pod(
                json!({"metadata": {"name": name, "ownerReferences": [{"apiVersion": "apps/v1",
                "kind": "DaemonSet", "name": name, "uid": name, "controller": true}]},
                "spec": {"nodeName": "n1", "priority": prio,
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}),
            )
        };
        let collector = daemon("collector", 100_000_000);
        let names = |v: Vec<&Pod>| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        // Equal priorities: the pod a ReplicaSet places again elsewhere goes, not the bare one.
        let victims = victims_on(&collector, &n, &[&bare, &replicated]).expect("possible");
        assert_eq!(names(victims), vec!["web"]);
        let victims = victims_on(&collector, &n, &[&replicated, &bare]).expect("possible");
        assert_eq!(names(victims), vec!["web"]);
        // Upstream's order for any other pod: the last candidate of equal priority goes.
        let plain = with("plain", None, 1000);
        let victims = victims_on(&plain, &n, &[&bare, &replicated]).expect("possible");
        assert_eq!(names(victims), vec!["web"]);
        let victims = victims_on(&plain, &n, &[&replicated, &bare]).expect("possible");
        assert_eq!(names(victims), vec!["bare"]);
        // Another DaemonSet's pod of equal priority is never a victim.
        let agent = daemon("agent", 100_000_000);
        let victims = victims_on(&collector, &n, &[&agent, &bare]).expect("possible");
        assert_eq!(names(victims), vec!["bare"]);
        assert!(victims_on(&collector, &n, &[&agent, &daemon("metrics", 100_000_000)]).is_none());
    }

    #[test]
    fn filters_and_message() {
        let small = node(
            json!({"metadata": {"name": "small"}, "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "110"}}}),
        );
        let tainted = node(
            json!({"metadata": {"name": "gpu"}, "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}, "status": {"allocatable": {"cpu": "8"}}}),
        );
        let cordoned = node(
            json!({"metadata": {"name": "cordoned"}, "spec": {"unschedulable": true}, "status": {"allocatable": {"cpu": "8"}}}),
        );
        let big = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}}),
        );
        let err = choose(
            &big,
            &[small.clone(), tainted, cordoned],
            &Placement::new(&[]),
            &NamespaceLabels::new(),
        )
        .expect_err("nothing fits")
        .to_string();
        assert_eq!(
            err,
            "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable."
        );
        let fitting = pod(
            json!({"metadata": {"name": "q"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}}),
        );
        assert_eq!(
            choose(
                &fitting,
                std::slice::from_ref(&small),
                &Placement::new(&[]),
                &NamespaceLabels::new()
            )
            .ok()
            .and_then(|n| n.metadata.name.clone())
            .as_deref(),
            Some("small")
        );
        let resident = Arc::new(pod(
            json!({"metadata": {"name": "r"}, "spec": {"nodeName": "small", "containers": [{"name": "c", "resources": {"requests": {"cpu": "600m"}}}]}}),
        ));
        assert!(
            choose(
                &fitting,
                &[small],
                &Placement::new(&[resident]),
                &NamespaceLabels::new()
            )
            .is_err(),
            "the resident pod's requests count"
        );
    }

    #[test]
    fn daemon_pod_tolerates_cordon_and_targets_its_node() {
        let cordoned = node(json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}}));
        let other = node(json!({"metadata": {"name": "n2"}}));
        let daemon = pod(
            json!({"metadata": {"name": "d"}, "spec": {"containers": [{"name": "c"}],
            "tolerations": [{"key": UNSCHEDULABLE_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}}),
        );
        assert_eq!(
            choose(
                &daemon,
                &[other, cordoned],
                &Placement::new(&[]),
                &NamespaceLabels::new()
            )
            .ok()
            .and_then(|n| n.metadata.name.clone())
            .as_deref(),
            Some("n1")
        );
    }
}
