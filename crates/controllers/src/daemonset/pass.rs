//! One sync pass of the DaemonSet controller as a pure function (spec §2.2):
//! `(DaemonSet, nodes, pods, revisions, backoff, now) → Plan`. The I/O wrapper executes the plan.
//!
//! As upstream's unit tests observe their own writes at once, the pass simulates the effect of
//! manage's creates and deletes before the rolling update and the status computation, so one
//! pass gives the counts the scenarios of spec §5 state.

use super::available::{self, Unavailable, Why};
use super::backoff::Backoff;
use super::first_named::FirstNamed;
use super::progress::{self, Progress};
use super::rollback::{self, Rollback};
use everynode_api::daemonset::{self as rules, HASH_LABEL, NotAPercentage};
use everynode_api::rollout_controls::{self, RolloutControls, UnreadyNodes};
use everynode_api::selector::{self, Selector, SelectorError};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// The most creates and the most deletes one pass issues (upstream `BurstReplicas`).
pub const BURST_REPLICAS: usize = 250;

/// Why a pass did nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The DaemonSet is being deleted (§2.14).
    BeingDeleted,
    /// A legacy empty selector (§2.2 step 4).
    SelectingAll,
}

/// Why a pass could not decide what to do. Retryable: the controller requeues with backoff, as
/// upstream requeues a failed sync. A bad selector or budget persists until the DaemonSet
/// changes (validation refuses them, so only objects stored before it did carry them); a
/// vanished node clears on the next pass.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PassError {
    /// The selector does not convert to a label selector.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// A rolling update with no maxUnavailable (upstream's message for the nil pointer).
    #[error("nil value for IntOrString")]
    NoMaxUnavailable,
    /// maxSurge or maxUnavailable is a string that is not a percentage.
    #[error(transparent)]
    Budget(#[from] NotAPercentage),
    /// A pod's node left the cache between the pass's reads; the next pass sees it consistent.
    #[error("node {node:?} of pod {pod} no longer exists")]
    NodeVanished { node: String, pod: String },
}

/// What one pass decided: nothing (and why), nothing it could decide (and why), or a plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Pass {
    /// The DaemonSet is left alone; its events are still recorded.
    Skipped {
        why: Skip,
        events: Vec<PlannedEvent>,
    },
    /// The pass could not decide; nothing is written but the events, and the pass is retried.
    Failed {
        error: PassError,
        events: Vec<PlannedEvent>,
    },
    /// What to write (boxed: a plan is large beside the other outcomes).
    Planned(Box<Plan>),
}

impl Pass {
    /// The plan, when the pass made one.
    pub fn plan(&self) -> Option<&Plan> {
        match self {
            Pass::Planned(plan) => Some(plan),
            Pass::Skipped { .. } | Pass::Failed { .. } => None,
        }
    }

    /// The events to record, whatever the outcome.
    pub fn events(&self) -> &[PlannedEvent] {
        match self {
            Pass::Planned(plan) => &plan.events,
            Pass::Skipped { events, .. } | Pass::Failed { events, .. } => events,
        }
    }
}

/// An event to record on the DaemonSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// History writes, in the order they must happen (before pods are touched).
#[derive(Clone, Debug, PartialEq)]
pub enum HistoryOp {
    /// A legacy revision without the hash label gets its name as the label.
    LabelLegacy { name: String },
    /// A new revision for the current template.
    Create(Box<ControllerRevision>),
    /// The current revision takes the next revision number (rollback).
    Renumber { name: String, revision: i64 },
    /// A pod of a duplicate current revision is relabelled to the kept hash.
    RelabelPod { name: String, hash: String },
    /// A duplicate current revision is removed.
    Delete { name: String },
}

/// Everything one pass decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub hash: String,
    pub adopt_pods: Vec<String>,
    pub release_pods: Vec<String>,
    pub adopt_revisions: Vec<String>,
    pub release_revisions: Vec<String>,
    pub history: Vec<HistoryOp>,
    /// Nodes to create a daemon pod for.
    pub creates: Vec<String>,
    /// Pods to delete.
    pub deletes: Vec<String>,
    /// Old revisions to delete after the pods are handled.
    pub cleanup: Vec<String>,
    pub events: Vec<PlannedEvent>,
    /// Backoff keys whose attempt is recorded now.
    pub backoff_next: Vec<String>,
    pub requeue_after: Option<Duration>,
    /// The status to write, when it differs from the stored one.
    pub status: Option<DaemonSetStatus>,
    /// The progress record for the next pass.
    pub progress: Option<Progress>,
    /// Annotations of the DaemonSet to set (`Some`) or remove (`None`): the revision whose
    /// rollout completed, and a rollback record left from a replaced template (beyond.md §2.3).
    pub annotations: Vec<(&'static str, Option<String>)>,
    /// A template to restore (automatic rollback): written before anything else, and the
    /// pass plans no pod change, as the next pass works from the restored template.
    pub rollback: Option<Rollback>,
}

/// What a pass reads.
pub struct PassInput<'a> {
    pub ds: &'a DaemonSet,
    pub nodes: &'a [Arc<Node>],
    /// Pods in the DaemonSet's namespace, shared with the cache rather than cloned.
    pub pods: &'a [Arc<Pod>],
    /// ControllerRevisions in the DaemonSet's namespace.
    pub revisions: &'a [Arc<ControllerRevision>],
    pub backoff: &'a Backoff,
    /// Whether every create and delete of earlier passes has been observed.
    pub expectations_satisfied: bool,
    /// When the rollout last moved, as the previous pass recorded it (beyond.md §2).
    pub progress: Option<&'a Progress>,
    /// No pod is created on a node whose agent is shutting down, whatever the pod tolerates
    /// (beyond.md §5); `false` is upstream's behaviour.
    pub shutdown_aware: bool,
    pub now: Timestamp,
}

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// The template-hash label of a pod or revision.
fn hash_label(meta: &ObjectMeta) -> Option<&String> {
    meta.labels.as_ref().and_then(|l| l.get(HASH_LABEL))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// The claim procedure (§2.5) over objects' metadata: (claimed, to adopt, to release).
fn claim<'a>(
    ds: &DaemonSet,
    sel: &Selector,
    items: impl Iterator<Item = &'a ObjectMeta>,
) -> (Vec<usize>, Vec<String>, Vec<String>) {
    let uid = ds.metadata.uid.as_deref().unwrap_or("");
    let ds_deleting = deleting(&ds.metadata);
    let (mut claimed, mut adopt, mut release) = (Vec::new(), Vec::new(), Vec::new());
    for (i, meta) in items.enumerate() {
        static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
        let matches = sel.matches(meta.labels.as_ref().unwrap_or(&NO_LABELS));
        match controller_uid(meta) {
            Some(owner) if owner != uid => {}
            Some(_) if matches => claimed.push(i),
            Some(_) if !ds_deleting => release.push(name_of(meta)),
            Some(_) => {}
            None if matches && !ds_deleting && !deleting(meta) => {
                claimed.push(i);
                adopt.push(name_of(meta));
            }
            None => {}
        }
    }
    (claimed, adopt, release)
}

/// Claimed pods grouped by target node (§2.5), each node's pods in primary order.
fn by_node(pods: &[Arc<Pod>], include_deleted_terminal: bool) -> PodsByNode {
    let mut map = PodsByNode::new();
    for p in pods {
        let terminal = matches!(phase(p), "Failed" | "Succeeded");
        if terminal && deleting(&p.metadata) && !include_deleted_terminal {
            continue;
        }
        if let Some(node) = rules::target_node(p) {
            map.entry(node).or_default().push(p.clone());
        }
    }
    for list in map.values_mut() {
        list.sort_by(|a, b| rules::primary_order(a, b));
    }
    map
}

/// Claimed pods by the node they target, each node's pods in primary order.
type PodsByNode = BTreeMap<String, Vec<Arc<Pod>>>;

struct Ctx<'a> {
    ds: &'a DaemonSet,
    nodes: &'a [Arc<Node>],
    /// `NodeShouldRunDaemonPod` for each of `nodes`, at the same index: worked out once per
    /// pass, as manage, the rolling update, the budgets and the status all ask it.
    eligibility: Vec<rules::Eligibility>,
    /// Index into `nodes` by name.
    by_name: HashMap<&'a str, usize>,
    now: Timestamp,
    hash: String,
    template_generation: Option<i64>,
    min_ready: i32,
    /// The nodes whose pods a template change may replace now (beyond.md §1.1); `None` when no
    /// control steers the rollout, so every node may.
    scope: Option<HashSet<&'a str>>,
    /// Nodes the rolling update leaves out of its budget and its work: unready ones with
    /// `everynode.dev/unready-nodes: exclude-from-budget` (beyond.md §3.4), and nodes
    /// shutting down unless `--shutdown-aware-daemonsets=false` (§5).
    excluded: HashSet<&'a str>,
    /// The `everynode.dev/` rollout controls (beyond.md §1).
    controls: RolloutControls,
}

impl<'a> Ctx<'a> {
    fn new(input: &PassInput<'a>, hash: String) -> Self {
        let placement = rules::DaemonPlacement::new(input.ds);
        let eligibility: Vec<rules::Eligibility> = input
            .nodes
            .iter()
            .map(|n| {
                let e = placement.on(n);
                // As a NoSchedule taint the pod cannot tolerate: a pod already there stays,
                // none is created, and the node leaves the rolling update's budget.
                if input.shutdown_aware && e.should_run && rules::node_shutting_down(n) {
                    rules::Eligibility {
                        should_run: false,
                        ..e
                    }
                } else {
                    e
                }
            })
            .collect();
        // Values admission would refuse (on objects stored before it did) count as absent.
        let (controls, _) =
            rollout_controls::parse(&input.ds.metadata.annotations.clone().unwrap_or_default());
        let scope = scope(&controls, input.nodes, &eligibility);
        // Pods on nodes shutting down are being terminated there: they never hold up the
        // rolling update (beyond.md §5), whatever the DaemonSet says of unready nodes.
        let exclude_unready = controls.unready_nodes == UnreadyNodes::ExcludeFromBudget;
        let excluded: HashSet<&str> = if exclude_unready || input.shutdown_aware {
            input
                .nodes
                .iter()
                .filter(|n| {
                    (exclude_unready && rules::node_unready(n))
                        || (input.shutdown_aware && rules::node_shutting_down(n))
                })
                .filter_map(|n| n.metadata.name.as_deref())
                .collect()
        } else {
            HashSet::new()
        };
        Ctx {
            ds: input.ds,
            nodes: input.nodes,
            controls,
            eligibility,
            by_name: input
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.metadata.name.as_deref().unwrap_or(""), i))
                .collect(),
            now: input.now,
            hash,
            template_generation: rules::template_generation(input.ds),
            min_ready: input
                .ds
                .spec
                .as_ref()
                .and_then(|s| s.min_ready_seconds)
                .unwrap_or(0),
            scope,
            excluded,
        }
    }

    /// Whether the rolling update may replace the pod on this node (beyond.md §1.1).
    fn in_scope(&self, node: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| s.contains(node))
    }

    fn available(&self, p: &Pod) -> bool {
        rules::is_available(p, self.min_ready, self.now)
    }
    /// Nodes with their eligibility.
    fn placed(&self) -> impl Iterator<Item = (&'a Node, rules::Eligibility)> + '_ {
        self.nodes
            .iter()
            .map(|n| &**n)
            .zip(self.eligibility.iter().copied())
    }
    /// The eligibility of the node with this name, if it exists.
    fn eligibility_of(&self, name: &str) -> Option<rules::Eligibility> {
        self.by_name.get(name).map(|&i| self.eligibility[i])
    }
    fn allows_surge(&self) -> bool {
        let strategy = self
            .ds
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref());
        strategy.is_some_and(|s| s.type_.as_deref() == Some("RollingUpdate"))
            && strategy
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_surge.as_ref())
                .is_some_and(|ms| rules::scale(Some(ms), 1).is_ok_and(|v| v > 0))
    }
}

/// The nodes in scope of a rollout (beyond.md §1.1): none while paused; otherwise the first
/// `desired − partition` eligible nodes in rollout order (ascending name) that the canary
/// selector matches. `None` when no control is set: every node, as upstream.
fn scope<'a>(
    controls: &RolloutControls,
    nodes: &'a [Arc<Node>],
    eligibility: &[rules::Eligibility],
) -> Option<HashSet<&'a str>> {
    if !controls.steers() {
        return None;
    }
    if controls.paused {
        return Some(HashSet::new());
    }
    let mut eligible: Vec<&'a Node> = nodes
        .iter()
        .zip(eligibility)
        .filter(|(_, e)| e.should_run)
        .map(|(n, _)| &**n)
        .collect();
    eligible.sort_unstable_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let kept = controls.partition.map_or(0, |p| p.kept(eligible.len()));
    let updating = eligible.len().saturating_sub(kept);
    let no_labels = BTreeMap::new();
    Some(
        eligible
            .into_iter()
            .take(updating)
            .filter(|n| {
                controls.canary.as_ref().is_none_or(|canary| {
                    canary.matches(n.metadata.labels.as_ref().unwrap_or(&no_labels))
                })
            })
            .filter_map(|n| n.metadata.name.as_deref())
            .collect(),
    )
}

/// The pod manage creates, as the simulation sees it (observed at once, not Ready).
fn simulated_pod(ctx: &Ctx<'_>, node: &str) -> Arc<Pod> {
    let mut p = rules::new_pod(ctx.ds, node, &ctx.hash);
    p.metadata.name = Some(format!("{}-new-{node}", name_of(&ctx.ds.metadata)));
    p.metadata.creation_timestamp = Some(Time(ctx.now));
    Arc::new(p)
}

/// `manage` (§2.6): creates, deletes, events and backoff for one pass.
fn manage(ctx: &Ctx<'_>, map: &PodsByNode, backoff: &Backoff, plan: &mut Plan) {
    let uid = ctx.ds.metadata.uid.as_deref().unwrap_or("");
    let observed_gen = ctx
        .ds
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0);
    let ns = ctx.ds.metadata.namespace.clone().unwrap_or_default();
    let surge = ctx.allows_surge();
    for (node, e) in ctx.placed() {
        let node_name = name_of(&node.metadata);
        let pods = map.get(&node_name);
        if e.should_run && pods.is_none() {
            plan.creates.push(node_name);
            continue;
        }
        let Some(pods) = pods else { continue };
        if !e.should_continue_running {
            plan.deletes.extend(
                pods.iter()
                    .filter(|p| !deleting(&p.metadata))
                    .map(|p| name_of(&p.metadata)),
            );
            continue;
        }
        let mut running: Vec<&Pod> = Vec::new();
        for p in pods.iter().filter(|p| !deleting(&p.metadata)) {
            let pod_name = name_of(&p.metadata);
            match phase(p) {
                "Failed" => {
                    let key = format!("{uid}/{observed_gen}/{node_name}");
                    if backoff.in_backoff(&key, ctx.now) {
                        let delay = backoff.delay(&key);
                        plan.requeue_after =
                            Some(plan.requeue_after.map_or(delay, |d| d.min(delay)));
                        continue;
                    }
                    plan.backoff_next.push(key);
                    plan.events.push(PlannedEvent {
                        warning: true,
                        reason: "FailedDaemonPod",
                        message: format!("Found failed daemon pod {ns}/{pod_name} on node {node_name}, will try to kill it"),
                    });
                    plan.deletes.push(pod_name);
                }
                "Succeeded" => {
                    plan.events.push(PlannedEvent {
                        warning: false,
                        reason: "SucceededDaemonPod",
                        message: format!("Found succeeded daemon pod {ns}/{pod_name} on node {node_name}, will try to delete it"),
                    });
                    plan.deletes.push(pod_name);
                }
                _ => running.push(p),
            }
        }
        if !surge {
            // Keep the oldest scheduled pod; a lone terminating pod is not replaced yet.
            plan.deletes
                .extend(running.iter().skip(1).map(|p| name_of(&p.metadata)));
            continue;
        }
        if running.is_empty() {
            if e.should_run {
                plan.creates.push(node_name);
            }
            continue;
        }
        if running.len() == 1 {
            continue;
        }
        let is_new = |p: &Pod| hash_label(&p.metadata) == Some(&ctx.hash);
        let oldest_new = running.iter().position(|p| is_new(p));
        let oldest_old = running.iter().position(|p| !is_new(p));
        for (i, p) in running.iter().enumerate() {
            if Some(i) != oldest_new && Some(i) != oldest_old {
                plan.deletes.push(name_of(&p.metadata));
            }
        }
        if let (Some(n), Some(o)) = (oldest_new, oldest_old)
            && (!rules::is_ready(running[o]) || ctx.available(running[n]))
        {
            plan.deletes.push(name_of(&running[o].metadata));
        }
    }
    // Unscheduled pods whose target node is gone (PodGC cannot clean those).
    let known: BTreeSet<String> = ctx.nodes.iter().map(|n| name_of(&n.metadata)).collect();
    for (node, pods) in map {
        if known.contains(node) {
            continue;
        }
        for p in pods {
            let unscheduled = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_none_or(String::is_empty);
            if unscheduled && !deleting(&p.metadata) {
                plan.deletes.push(name_of(&p.metadata));
            }
        }
    }
}

/// Applies creates and deletes to the per-node map, as if observed.
fn simulate(ctx: &Ctx<'_>, map: &mut PodsByNode, creates: &[String], deletes: &[String]) {
    if !deletes.is_empty() {
        let gone: HashSet<&str> = deletes.iter().map(String::as_str).collect();
        for pods in map.values_mut() {
            pods.retain(|p| !gone.contains(p.metadata.name.as_deref().unwrap_or("")));
        }
        map.retain(|_, pods| !pods.is_empty());
    }
    for node in creates {
        let pods = map.entry(node.clone()).or_default();
        pods.push(simulated_pod(ctx, node));
        pods.sort_by(|a, b| rules::primary_order(a, b));
    }
}

/// `findUpdatedPodsOnNode`: (new, old, ok).
fn updated_on_node<'p>(
    ctx: &Ctx<'_>,
    pods: &'p [Arc<Pod>],
) -> (Option<&'p Pod>, Option<&'p Pod>, bool) {
    let (mut new, mut old) = (None, None);
    for p in pods.iter().map(|p| &**p).filter(|p| !deleting(&p.metadata)) {
        let slot = if rules::is_updated(p, &ctx.hash, ctx.template_generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return (None, None, false);
        }
        *slot = Some(p);
    }
    (new, old, true)
}

/// `rollingUpdate` (§2.9): returns (creates, deletes) or a scaling / lookup error.
/// A rolling update's budgets (`updatedDesiredNodeCounts`, spec §2.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budgets {
    pub max_surge: i32,
    pub max_unavailable: i32,
    /// Nodes that should run a daemon pod.
    pub desired: i32,
    /// Of those, nodes with no pod at all.
    pub empty_nodes: i32,
}

/// Scales maxSurge and maxUnavailable against the desired node count, percentages rounding up;
/// when both come to 0 (possible only for objects stored before validation forbade it)
/// maxUnavailable falls back to 1, so a rollout can always progress.
fn budgets<'n>(
    ds: &DaemonSet,
    placed: impl Iterator<Item = (&'n Node, rules::Eligibility)>,
    map: &PodsByNode,
) -> Result<Budgets, PassError> {
    let (mut desired, mut empty_nodes) = (0, 0);
    for (node, e) in placed {
        if e.should_run {
            desired += 1;
            if map.get(&name_of(&node.metadata)).is_none_or(Vec::is_empty) {
                empty_nodes += 1;
            }
        }
    }
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let max_unavailable_raw = ru
        .and_then(|r| r.max_unavailable.as_ref())
        .ok_or(PassError::NoMaxUnavailable)?;
    let mut max_unavailable = rules::scale(Some(max_unavailable_raw), desired)?;
    let max_surge = rules::scale(ru.and_then(|r| r.max_surge.as_ref()), desired)?;
    if desired > 0 && max_unavailable == 0 && max_surge == 0 {
        max_unavailable = 1;
    }
    Ok(Budgets {
        max_surge,
        max_unavailable,
        desired,
        empty_nodes,
    })
}

/// `budgets` for a DaemonSet with these nodes and pods (its own pods, as a pass claims them).
pub fn budgets_for<N: Borrow<Node>>(
    ds: &DaemonSet,
    nodes: &[N],
    pods: &[Arc<Pod>],
) -> Result<Budgets, PassError> {
    let placement = rules::DaemonPlacement::new(ds);
    let placed = nodes.iter().map(|n| (n.borrow(), placement.on(n.borrow())));
    budgets(ds, placed, &by_node(pods, false))
}

fn rolling_update(
    ctx: &Ctx<'_>,
    map: &PodsByNode,
) -> Result<(Vec<String>, Vec<String>), PassError> {
    // Every node with pods, and every node that should have one, in name order; borrowed,
    // since copying the map costs more than the rolling update itself at 10,000 nodes.
    // Merged from the map (already in order) and the few nodes without pods (sorted here).
    let mut empty: Vec<&str> = ctx
        .placed()
        .filter(|(_, e)| e.should_run)
        .filter_map(|(n, _)| n.metadata.name.as_deref())
        .filter(|n| !map.contains_key(*n))
        .collect();
    empty.sort_unstable();
    let none: &[Arc<Pod>] = &[];
    let mut entries: Vec<(&str, &[Arc<Pod>])> = Vec::with_capacity(map.len() + empty.len());
    let mut empty = empty.into_iter().peekable();
    for (name, pods) in map {
        while let Some(e) = empty.next_if(|e| *e < name.as_str()) {
            entries.push((e, none));
        }
        entries.push((name, pods));
    }
    entries.extend(empty.map(|e| (e, none)));
    let Budgets {
        max_surge,
        max_unavailable,
        desired,
        ..
    } = budgets(ctx.ds, ctx.placed(), map)?;
    let (mut creates, mut deletes) = (Vec::new(), Vec::new());
    if max_surge == 0 {
        let mut unavailable = 0;
        let (mut allowed, mut candidates) = (Vec::new(), Vec::new());
        for (node_name, pods) in entries {
            // Left alone, and not counted, until the node is Ready again.
            if ctx.excluded.contains(node_name) {
                continue;
            }
            let (new, old, ok) = updated_on_node(ctx, pods);
            if !ok {
                unavailable += 1;
                continue;
            }
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(n), None) => {
                    if !ctx.available(n) {
                        unavailable += 1;
                    }
                }
                // Kept at its revision on purpose (paused, partitioned or outside the canary).
                (None, Some(o)) if !ctx.in_scope(node_name) => {
                    if !ctx.available(o) {
                        unavailable += 1;
                    }
                }
                (None, Some(o)) => {
                    if !ctx.available(o) {
                        allowed.push(name_of(&o.metadata));
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(name_of(&o.metadata));
                    }
                }
            }
        }
        let remaining = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        deletes.extend(allowed);
        deletes.extend(candidates.into_iter().take(remaining));
        return Ok((creates, deletes));
    }
    let (mut surge, mut available) = (0, 0);
    let (mut should_not_run_old, mut candidate_nodes, mut allowed_nodes) =
        (Vec::new(), Vec::new(), Vec::new());
    for (node_name, pods) in entries {
        if ctx.excluded.contains(node_name) {
            continue;
        }
        let (new, old, ok) = updated_on_node(ctx, pods);
        if !ok {
            surge += 1;
            continue;
        }
        match (old, new) {
            (Some(o), _) if ctx.available(o) => available += 1,
            (None, Some(n)) if ctx.available(n) => available += 1,
            _ => {}
        }
        match (old, new) {
            (None, _) => {}
            (Some(o), None) => {
                let should_run = ctx
                    .eligibility_of(node_name)
                    .ok_or_else(|| PassError::NodeVanished {
                        node: node_name.to_owned(),
                        pod: name_of(&o.metadata),
                    })?
                    .should_run;
                if should_run && !ctx.in_scope(node_name) {
                    // Kept at its revision on purpose.
                } else if !ctx.available(o) {
                    if should_run {
                        allowed_nodes.push(node_name.to_owned());
                    } else {
                        deletes.push(name_of(&o.metadata));
                    }
                } else if !should_run {
                    should_not_run_old.push(name_of(&o.metadata));
                } else if surge < max_surge {
                    candidate_nodes.push(node_name.to_owned());
                }
            }
            (Some(o), Some(n)) => {
                if ctx.available(n) {
                    deletes.push(name_of(&o.metadata));
                } else {
                    surge += 1;
                }
            }
        }
    }
    let remaining_surge = (max_surge - surge).clamp(0, candidate_nodes.len() as i32) as usize;
    let extra = available - desired;
    if extra > 0 {
        deletes.extend(should_not_run_old.into_iter().take(extra as usize));
    }
    creates.extend(allowed_nodes);
    creates.extend(candidate_nodes.into_iter().take(remaining_surge));
    Ok((creates, deletes))
}

/// Why a pod is not available (beyond.md §6), as the placement view says it too.
fn unavailable_why(p: &Pod) -> Why {
    match rules::unavailable_reason(p) {
        (code, Some(detail)) => Why {
            code,
            detail: Some(detail.into()),
        },
        (code, None) => Why::new(code),
    }
}

/// What the `Progressing` condition needs from this pass.
fn rollout_view<'c>(
    ctx: &'c Ctx<'_>,
    status: &DaemonSetStatus,
    tally: Tally,
    revision: i64,
) -> progress::Rollout<'c> {
    let controls = &ctx.controls;
    progress::Rollout {
        hash: &ctx.hash,
        revision,
        desired: status.desired_number_scheduled,
        in_scope: tally.in_scope,
        updated: status.updated_number_scheduled.unwrap_or(0),
        available: status.number_available.unwrap_or(0),
        complete: tally.complete,
        paused: controls.paused,
        deadline_seconds: controls.progress_deadline_seconds,
        stuck_count: tally.stuck.count(),
        stuck: tally.stuck.into_first(),
    }
}

/// What the `Progressing` condition needs beyond the counters, gathered in the same walk over
/// the nodes (a second walk cost a third of a steady pass at 10,000 nodes).
#[derive(Debug)]
struct Tally {
    in_scope: i32,
    complete: bool,
    /// In-scope nodes without an available pod, the first named with why.
    stuck: FirstNamed<String>,
    /// Every node that should run a pod and has no available one, for `Available`.
    unavailable: Unavailable,
}

impl Tally {
    /// Counts a node without an available pod, apart when it is left out of the budget as
    /// unready (beyond.md §3.4).
    fn unavailable(&mut self, ctx: &Ctx<'_>, node: &str, why: impl FnOnce() -> Why) {
        if !ctx.excluded.is_empty() && ctx.excluded.contains(node) {
            self.unavailable.add_unready(node);
        } else {
            self.unavailable.add(node, why());
        }
    }
}

/// Status (§2.12) from the per-node map.
fn compute_status(ctx: &Ctx<'_>, map: &PodsByNode, observed: bool) -> DaemonSetStatus {
    status_and_tally(ctx, map, observed).0
}

/// Status (§2.12) and the rollout tally from the per-node map.
fn status_and_tally(ctx: &Ctx<'_>, map: &PodsByNode, observed: bool) -> (DaemonSetStatus, Tally) {
    let (mut desired, mut current, mut ready, mut available, mut updated, mut misscheduled) =
        (0, 0, 0, 0, 0, 0);
    let mut tally = Tally {
        in_scope: 0,
        complete: true,
        stuck: FirstNamed::new(progress::NAMED),
        unavailable: Unavailable::default(),
    };
    for (node, e) in ctx.placed() {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let pods = map.get(name).filter(|p| !p.is_empty());
        if e.should_run {
            desired += 1;
            let in_scope = ctx.in_scope(name);
            if in_scope {
                tally.in_scope += 1;
            }
            let Some(pods) = pods else {
                tally.unavailable(ctx, name, || Why::NO_POD);
                if in_scope {
                    tally.complete = false;
                    tally.stuck.add(name, || Why::NO_POD.to_string());
                }
                continue;
            };
            current += 1;
            let p = &pods[0];
            let p_available = rules::is_ready(p) && ctx.available(p);
            if rules::is_ready(p) {
                ready += 1;
            }
            if p_available {
                available += 1;
            } else {
                tally.unavailable(ctx, name, || unavailable_why(p));
            }
            let p_updated = rules::is_updated(p, &ctx.hash, ctx.template_generation);
            if p_updated {
                updated += 1;
            }
            if in_scope {
                if pods.len() == 1 && !deleting(&p.metadata) {
                    // The usual case: one pod, judged above.
                    if !(p_updated && p_available) {
                        tally.complete = false;
                    }
                    if !p_available {
                        tally.stuck.add(name, || unavailable_why(p).to_string());
                    }
                } else {
                    let live: Vec<&Pod> = pods
                        .iter()
                        .map(|p| &**p)
                        .filter(|p| !deleting(&p.metadata))
                        .collect();
                    let done = matches!(live.as_slice(), [p] if rules::is_updated(p, &ctx.hash, ctx.template_generation) && ctx.available(p));
                    if !done {
                        tally.complete = false;
                    }
                    if let Some(p) = live.iter().find(|p| !ctx.available(p)) {
                        tally.stuck.add(name, || unavailable_why(p).to_string());
                    }
                }
            }
        } else if pods.is_some() {
            misscheduled += 1;
        }
    }
    let stored = ctx.ds.status.clone().unwrap_or_default();
    let generation = ctx.ds.metadata.generation.unwrap_or(0);
    let status = DaemonSetStatus {
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        desired_number_scheduled: desired,
        number_ready: ready,
        updated_number_scheduled: Some(updated),
        number_available: Some(available),
        number_unavailable: Some(desired - available),
        observed_generation: if observed {
            Some(generation.max(stored.observed_generation.unwrap_or(0)))
        } else {
            stored.observed_generation
        },
        collision_count: stored.collision_count,
        conditions: stored.conditions,
    };
    (status, tally)
}

/// Whether the status must be written: a counter differs, or observedGeneration rises (§2.12).
fn status_changed(old: Option<&DaemonSetStatus>, new: &DaemonSetStatus) -> bool {
    let Some(old) = old else { return true };
    let counters = |s: &DaemonSetStatus| {
        (
            s.current_number_scheduled,
            s.number_misscheduled,
            s.desired_number_scheduled,
            s.number_ready,
            s.updated_number_scheduled.unwrap_or(0),
            s.number_available.unwrap_or(0),
            s.number_unavailable.unwrap_or(0),
        )
    };
    counters(old) != counters(new)
        || new.observed_generation.unwrap_or(0) > old.observed_generation.unwrap_or(0)
        || old.conditions != new.conditions
}

/// `constructHistory` (§2.11): history writes and the current hash.
fn history(
    input: &PassInput<'_>,
    revisions: &[&ControllerRevision],
    claimed_pods: &[Arc<Pod>],
    plan: &mut Plan,
) -> (String, (String, i64), Vec<ControllerRevision>) {
    let ds = input.ds;
    let data = serde_json::to_value(rules::revision_data(ds)).unwrap_or_default();
    let mut current: Vec<ControllerRevision> = Vec::new();
    let mut old: Vec<ControllerRevision> = Vec::new();
    for r in revisions {
        let mut r = (*r).clone();
        let has_label = r
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(HASH_LABEL));
        if !has_label {
            let name = name_of(&r.metadata);
            plan.history
                .push(HistoryOp::LabelLegacy { name: name.clone() });
            r.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(HASH_LABEL.into(), name);
        }
        if r.data.as_ref().map(|d| &d.0) == Some(&data) {
            current.push(r)
        } else {
            old.push(r)
        }
    }
    let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let kept = match current.len() {
        0 => {
            let collision = ds.status.as_ref().and_then(|s| s.collision_count);
            let template = ds
                .spec
                .as_ref()
                .map(|s| s.template.clone())
                .unwrap_or_default();
            let hash = rules::template_hash(&template, collision);
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(HASH_LABEL.into(), hash.clone());
            let rev = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(format!("{}-{hash}", name_of(&ds.metadata))),
                    namespace: ds.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: ds.metadata.annotations.clone(),
                    owner_references: Some(vec![rules::controller_ref(ds)]),
                    ..Default::default()
                },
                data: Some(RawExtension(data)),
                revision: next,
            };
            plan.history.push(HistoryOp::Create(Box::new(rev.clone())));
            rev
        }
        _ => {
            // Several revisions match (a race): keep the highest, move pods onto it, drop the rest.
            let keep_index = current
                .iter()
                .enumerate()
                .max_by_key(|(i, r)| (r.revision, *i))
                .map_or(0, |(i, _)| i);
            let kept = current.remove(keep_index);
            let kept_hash = hash_label(&kept.metadata).cloned().unwrap_or_default();
            for dup in &current {
                for p in claimed_pods {
                    if hash_label(&p.metadata) != Some(&kept_hash) {
                        let op = HistoryOp::RelabelPod {
                            name: name_of(&p.metadata),
                            hash: kept_hash.clone(),
                        };
                        if !plan.history.contains(&op) {
                            plan.history.push(op);
                        }
                    }
                }
                plan.history.push(HistoryOp::Delete {
                    name: name_of(&dup.metadata),
                });
            }
            if kept.revision < next {
                plan.history.push(HistoryOp::Renumber {
                    name: name_of(&kept.metadata),
                    revision: next,
                });
            }
            kept
        }
    };
    let hash = hash_label(&kept.metadata).cloned().unwrap_or_default();
    let renumbered = plan.history.iter().find_map(|op| match op {
        HistoryOp::Renumber { name, revision } if Some(name) == kept.metadata.name.as_ref() => {
            Some(*revision)
        }
        _ => None,
    });
    (
        hash,
        (name_of(&kept.metadata), renumbered.unwrap_or(kept.revision)),
        old,
    )
}

/// `cleanupHistory` (§2.11): old revisions beyond the limit that no pod uses, oldest first.
fn cleanup(
    ds: &DaemonSet,
    mut old: Vec<ControllerRevision>,
    pods: &[Arc<Pod>],
    keep: Option<&str>,
) -> Vec<String> {
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut to_kill = old.len().saturating_sub(limit);
    if to_kill == 0 {
        return Vec::new();
    }
    // Revisions still in use: those of claimed pods that have a node to run on.
    let used: BTreeSet<String> = pods
        .iter()
        .filter(|p| rules::target_node(p).is_some())
        .filter_map(|p| p.metadata.labels.as_ref()?.get(HASH_LABEL).cloned())
        .collect();
    old.sort_by_key(|r| r.revision);
    let mut out = Vec::new();
    for r in old {
        if to_kill == 0 {
            break;
        }
        let hash = hash_label(&r.metadata).cloned().unwrap_or_default();
        if used.contains(&hash) || r.metadata.name.as_deref() == keep {
            continue;
        }
        out.push(name_of(&r.metadata));
        to_kill -= 1;
    }
    out
}

/// One sync pass (§2.2).
pub fn sync(input: &PassInput<'_>) -> Pass {
    let ds = input.ds;
    let raw_selector = ds.spec.as_ref().map(|s| &s.selector);
    if raw_selector.is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
    }) {
        return Pass::Skipped {
            why: Skip::SelectingAll,
            events: vec![PlannedEvent {
                warning: true,
                reason: "SelectingAll",
                message: "This daemon set is selecting all pods. A non-empty selector is required."
                    .into(),
            }],
        };
    }
    if deleting(&ds.metadata) {
        return Pass::Skipped {
            why: Skip::BeingDeleted,
            events: Vec::new(),
        };
    }
    let sel = match selector::from_label_selector(raw_selector) {
        Ok(s) => s,
        Err(e) => {
            return Pass::Failed {
                error: e.into(),
                events: Vec::new(),
            };
        }
    };
    let mut plan = Plan::default();
    let (claimed_idx, adopt, release) = claim(ds, &sel, input.pods.iter().map(|p| &p.metadata));
    plan.adopt_pods = adopt;
    plan.release_pods = release;
    let claimed: Vec<Arc<Pod>> = claimed_idx
        .into_iter()
        .map(|i| input.pods[i].clone())
        .collect();
    let (rev_idx, adopt_r, release_r) =
        claim(ds, &sel, input.revisions.iter().map(|r| &r.metadata));
    plan.adopt_revisions = adopt_r;
    plan.release_revisions = release_r;
    let revisions: Vec<&ControllerRevision> =
        rev_idx.into_iter().map(|i| &*input.revisions[i]).collect();
    let (hash, (update_name, revision), old) = history(input, &revisions, &claimed, &mut plan);
    plan.hash = hash.clone();
    let ctx = Ctx::new(input, hash);
    let mut map = by_node(&claimed, false);
    if !input.expectations_satisfied {
        let status = compute_status(&ctx, &map, false);
        if status_changed(ds.status.as_ref(), &status) {
            plan.status = Some(status);
        }
        return Pass::Planned(Box::new(plan));
    }
    manage(&ctx, &map, input.backoff, &mut plan);
    plan.creates.truncate(BURST_REPLICAS);
    plan.deletes.truncate(BURST_REPLICAS);
    simulate(&ctx, &mut map, &plan.creates.clone(), &plan.deletes.clone());
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("RollingUpdate");
    if rolling {
        match rolling_update(&ctx, &map) {
            Ok((creates, deletes)) => {
                let deletes: Vec<String> = deletes
                    .into_iter()
                    .filter(|d| !plan.deletes.contains(d))
                    .collect();
                let creates: Vec<String> = creates
                    .into_iter()
                    .filter(|c| !plan.creates.contains(c))
                    .collect();
                simulate(&ctx, &mut map, &creates, &deletes);
                plan.creates.extend(creates);
                plan.deletes.extend(deletes);
                plan.creates.truncate(BURST_REPLICAS);
                plan.deletes.truncate(BURST_REPLICAS);
            }
            Err(error) => {
                return Pass::Failed {
                    error,
                    events: plan.events,
                };
            }
        }
    }
    let controls = &ctx.controls;
    let last_complete = ds
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(rollback::LAST_COMPLETE_REVISION))
        .map(String::as_str);
    // The revision auto-rollback would restore is kept whatever the history limit says.
    let keep = last_complete.filter(|_| controls.auto_rollback);
    plan.cleanup = cleanup(ds, old, &claimed, keep);
    let (mut status, mut tally) = status_and_tally(&ctx, &map, true);
    let unavailable = std::mem::take(&mut tally.unavailable);
    let outcome = progress::progressing(
        &rollout_view(&ctx, &status, tally, revision),
        input.progress,
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == progress::CONDITION),
        ctx.now,
    );
    let exceeded = outcome.condition.reason.as_deref() == Some("ProgressDeadlineExceeded");
    // Recorded only for a DaemonSet that asks for rollbacks: others keep upstream's objects.
    if controls.auto_rollback
        && outcome.condition.reason.as_deref() == Some("RolloutComplete")
        && last_complete != Some(update_name.as_str())
    {
        plan.annotations
            .push((rollback::LAST_COMPLETE_REVISION, Some(update_name.clone())));
    }
    let decision = rollback::decide(&rollback::Input {
        auto_rollback: controls.auto_rollback,
        exceeded,
        just_exceeded: exceeded && outcome.event.is_some(),
        update: (&update_name, revision),
        last_complete,
        revisions: &revisions,
        rolled_back: ds
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(rollback::ROLLED_BACK))
            .map(String::as_str),
        stored: status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == rollback::CONDITION),
        now: ctx.now,
    });
    if decision.rollback.is_some() {
        // Nothing is replaced for a template about to be withdrawn; the counts stay the
        // stored ones until the next pass, which works from the restored template.
        plan.creates.clear();
        plan.deletes.clear();
        plan.backoff_next.clear();
        status = DaemonSetStatus {
            conditions: status.conditions.take(),
            ..ds.status.clone().unwrap_or_default()
        };
    }
    let available = available::available(
        &unavailable,
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == available::CONDITION),
        ctx.now,
    );
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| {
        ![
            progress::CONDITION,
            available::CONDITION,
            rollback::CONDITION,
        ]
        .contains(&c.type_.as_str())
    });
    conditions.push(outcome.condition);
    conditions.push(available);
    conditions.extend(decision.condition);
    plan.events.extend(outcome.event);
    plan.events.extend(decision.event);
    plan.rollback = decision.rollback;
    if decision.clear_annotation {
        plan.annotations.push((rollback::ROLLED_BACK, None));
    }
    plan.progress = Some(outcome.progress);
    if let Some(wait) = outcome.requeue_after {
        // Just after the deadline passes, so the pass that sees it is not a moment early.
        let wait = wait + Duration::from_millis(100);
        plan.requeue_after = Some(plan.requeue_after.map_or(wait, |d| d.min(wait)));
    }
    if status_changed(ds.status.as_ref(), &status) {
        plan.status = Some(status.clone());
    }
    // A Ready pod becomes available with no event to say so: look again just after the
    // first one does (S-103: its Ready transition + minReadySeconds + 1 s). Every pod counts,
    // not only nodes short of an available pod: in a surge rollout the old pod keeps its node
    // available while the new one waits, and its deletion waits on exactly this moment.
    if ctx.min_ready > 0 {
        let first = map
            .values()
            .flatten()
            .filter(|p| !ctx.available(p))
            .filter_map(|p| rules::ready_until_available(p, ctx.min_ready))
            .min();
        if let Some(at) = first {
            let wait = Duration::try_from(at.duration_since(ctx.now)).unwrap_or(Duration::ZERO)
                + Duration::from_secs(1);
            plan.requeue_after = Some(plan.requeue_after.map_or(wait, |d| d.min(wait)));
        }
    }
    Pass::Planned(Box::new(plan))
}

/// The status to write when only part of `plan` was carried out (spec S-069: the API refused
/// some creations): `sync`'s status assumed every create and delete succeeded; this one
/// counts the pods on `created` nodes and the `deleted` pods that did.
pub fn status_after(
    input: &PassInput<'_>,
    plan: &Plan,
    created: &[String],
    deleted: &[String],
) -> Option<DaemonSetStatus> {
    let sel = selector::from_label_selector(input.ds.spec.as_ref().map(|s| &s.selector)).ok()?;
    let (claimed_idx, _, _) = claim(input.ds, &sel, input.pods.iter().map(|p| &p.metadata));
    let claimed: Vec<Arc<Pod>> = claimed_idx
        .into_iter()
        .map(|i| input.pods[i].clone())
        .collect();
    let ctx = Ctx::new(input, plan.hash.clone());
    let mut map = by_node(&claimed, false);
    simulate(&ctx, &mut map, created, deleted);
    let mut status = compute_status(&ctx, &map, true);
    // The conditions are the pass's: they describe the rollout, not these counts.
    if let Some(planned) = plan.status.as_ref().and_then(|s| s.conditions.clone()) {
        status.conditions = Some(planned);
    }
    status_changed(input.ds.status.as_ref(), &status).then_some(status)
}
