//! The DaemonSet pass on arbitrary worlds: nodes, the DaemonSet's pods in any state and of any
//! owner, an old and a current template, surge or not. Whatever the world, the plan
//!   - deletes only pods the DaemonSet owns or adopts in this pass,
//!   - creates at most one pod per node, and only on a node without a live pod of the
//!     DaemonSet, or (surge) beside one old pod,
//!   - leaves no node with more live pods than it had or than one (two with surge) allows,
//!   - in a rolling update, never takes more nodes out of service than maxUnavailable allows
//!     (judged where a rollout can be: no duplicate pods of one template on a node).
#![no_main]

use arbitrary::Arbitrary;
use everynode_api::daemonset::{self as rules, TEMPLATE_GENERATION_LABEL};
use everynode_api::registry::Kind;
use everynode_controllers::daemonset::backoff::Backoff;
use everynode_controllers::daemonset::pass::{PassInput, sync};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Arbitrary, Debug)]
enum Owner {
    ThisDaemonSet,
    /// Matching labels and no controller: the pass adopts it.
    Orphan,
    /// Matching labels, another controller: never ours.
    Other,
}

#[derive(Arbitrary, Debug)]
enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

#[derive(Arbitrary, Debug)]
struct PodState {
    node: u8,
    bound: bool,
    owner: Owner,
    current_template: bool,
    phase: Phase,
    ready: bool,
    /// Seconds before now that the pod became Ready.
    ready_for: u8,
    terminating: bool,
    created_ago: u16,
}

#[derive(Arbitrary, Debug)]
struct World {
    nodes: u8,
    node_not_ready: Vec<bool>,
    pods: Vec<PodState>,
    rolling: bool,
    max_surge: u8,
    max_unavailable: u8,
    min_ready_seconds: u8,
    expectations_satisfied: bool,
    /// beyond.md §5 on or off: the invariants hold either way.
    shutdown_aware: bool,
}

/// The DaemonSet's template generation; old pods carry the one before.
const TEMPLATE_GENERATION: i64 = 2;

fn t(ago: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_800_000_000 - ago)
}

fn daemon_set(world: &World) -> DaemonSet {
    let labels = json!({"app": "agent"});
    let strategy = if world.rolling {
        json!({"type": "RollingUpdate", "rollingUpdate": {
            "maxSurge": i32::from(world.max_surge % 3),
            "maxUnavailable": i32::from(world.max_unavailable % 3)}})
    } else {
        json!({"type": "OnDelete"})
    };
    let mut v = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 2,
            "annotations": {"deprecated.daemonset.template.generation": "2"},
            "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"selector": {"matchLabels": labels}, "minReadySeconds": i32::from(world.min_ready_seconds % 8),
            "updateStrategy": strategy,
            "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "agent", "image": "agent:2"}]}}}});
    everynode_api::defaults::apply(Kind::DaemonSet, &mut v);
    serde_json::from_value(v).expect("a valid DaemonSet")
}

fn node(name: &str, ready: bool) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}))
        .expect("a valid Node")
}

fn pod(ds: &DaemonSet, i: usize, state: &PodState, node_name: &str, hash: &str) -> Pod {
    let mut p = rules::new_pod(ds, node_name, if state.current_template { hash } else { "old-hash" });
    p.metadata.name = Some(format!("agent-{i}"));
    if !state.current_template
        && let Some(labels) = p.metadata.labels.as_mut()
    {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), "1".into());
    }
    p.metadata.uid = Some(format!("pod-uid-{i}"));
    p.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        t(i64::from(state.created_ago)),
    ));
    match state.owner {
        Owner::ThisDaemonSet => {}
        Owner::Orphan => p.metadata.owner_references = None,
        Owner::Other => {
            if let Some(owner) = p.metadata.owner_references.as_mut().and_then(|o| o.first_mut()) {
                owner.uid = "other-uid".into();
                owner.name = "other".into();
            }
        }
    }
    if state.terminating {
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(1)));
    }
    if let Some(spec) = p.spec.as_mut()
        && state.bound
    {
        spec.node_name = Some(node_name.to_owned());
    }
    let phase = match state.phase {
        Phase::Pending => "Pending",
        Phase::Running => "Running",
        Phase::Succeeded => "Succeeded",
        Phase::Failed => "Failed",
    };
    p.status = Some(serde_json::from_value(json!({"phase": phase, "conditions": [{"type": "Ready",
        "status": if state.ready { "True" } else { "False" },
        "lastTransitionTime": t(i64::from(state.ready_for)).to_string()}]})).expect("a valid status"));
    p
}

/// A pod that counts on its node: not terminating, not finished.
fn live(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && !matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Failed" | "Succeeded")
        )
}

fn owned_by_ds(p: &Pod) -> bool {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == "ds-uid")
}

fuzz_target!(|world: World| {
    let node_count = usize::from(world.nodes % 6) + 1;
    let ds = daemon_set(&world);
    let now = t(0);
    let nodes: Vec<Arc<Node>> = (0..node_count)
        .map(|i| Arc::new(node(&format!("node-{i}"), !world.node_not_ready.get(i).copied().unwrap_or(false))))
        .collect();
    let hash = rules::template_hash(&ds.spec.as_ref().expect("spec").template, None);
    let pods: Vec<Arc<Pod>> = world
        .pods
        .iter()
        .take(16)
        .enumerate()
        .map(|(i, s)| {
            let node_name = format!("node-{}", usize::from(s.node) % node_count);
            Arc::new(pod(&ds, i, s, &node_name, &hash))
        })
        .collect();
    let backoff = Backoff::default();
    let input = PassInput {
        ds: &ds,
        nodes: &nodes,
        pods: &pods,
        revisions: &[],
        backoff: &backoff,
        expectations_satisfied: world.expectations_satisfied,
        progress: None,
        shutdown_aware: world.shutdown_aware,
        now,
    };
    let pass = sync(&input);
    let Some(plan) = pass.plan() else {
        return;
    };
    let by_name: BTreeMap<&str, &Pod> = pods
        .iter()
        .map(|p| (p.metadata.name.as_deref().unwrap_or_default(), &**p))
        .collect();

    // Deletes only its own pods.
    for name in &plan.deletes {
        let p = by_name.get(name.as_str()).unwrap_or_else(|| panic!("deletes unknown pod {name}"));
        assert!(
            owned_by_ds(p) || plan.adopt_pods.contains(name),
            "deletes {name}, which it neither owns nor adopts: {world:?}"
        );
    }

    // Creates once per node, on nodes that exist.
    let creates: BTreeSet<&str> = plan.creates.iter().map(String::as_str).collect();
    assert_eq!(creates.len(), plan.creates.len(), "two creates for one node: {:?}", plan.creates);
    let mine: Vec<&Pod> = pods
        .iter()
        .map(|p| &**p)
        .filter(|p| owned_by_ds(p) || plan.adopt_pods.iter().any(|a| Some(a.as_str()) == p.metadata.name.as_deref()))
        .collect();
    let surge = world.rolling && world.max_surge % 3 > 0;
    let min_ready = i32::from(world.min_ready_seconds % 8);
    let mut unavailable_before = 0;
    let mut unavailable_after = 0;
    for n in &nodes {
        let name = n.metadata.name.as_deref().unwrap_or_default();
        let on_node: Vec<&Pod> = mine
            .iter()
            .copied()
            .filter(|p| rules::target_node(p).as_deref() == Some(name) && live(p))
            .collect();
        let kept: Vec<&Pod> = on_node
            .iter()
            .copied()
            .filter(|p| !plan.deletes.iter().any(|d| Some(d.as_str()) == p.metadata.name.as_deref()))
            .collect();
        let created = usize::from(creates.contains(name));
        if created == 1 {
            let beside_old = surge
                && kept.len() == 1
                && !rules::is_updated(kept[0], &hash, Some(TEMPLATE_GENERATION));
            assert!(
                kept.is_empty() || beside_old,
                "creates on {name}, which keeps {} live pods (surge {surge}): {world:?}",
                kept.len()
            );
        }
        let allowed = on_node.len().max(if surge { 2 } else { 1 });
        assert!(
            kept.len() + created <= allowed,
            "{name} ends with {} pods, more than {allowed}: {world:?}",
            kept.len() + created
        );
        let available = |ps: &[&Pod]| ps.iter().any(|p| rules::is_available(p, min_ready, now));
        unavailable_before += usize::from(!available(&on_node));
        unavailable_after += usize::from(!available(&kept));
    }

    // The unavailability budget, for worlds a rollout can be in: one live pod per node, or
    // (surge) an old one beside a new one. Cleaning up other worlds is not a rollout.
    // Two pods of one template on a node are duplicates, which upstream prunes oldest-kept
    // whatever their readiness: cleanup, not a rollout.
    let regular = nodes.iter().all(|n| {
        let name = n.metadata.name.as_deref().unwrap_or_default();
        let on_node = mine
            .iter()
            .filter(|p| rules::target_node(p).as_deref() == Some(name) && live(p));
        let (new, old): (Vec<&&Pod>, Vec<&&Pod>) = on_node
            .partition(|p| rules::is_updated(p, &hash, Some(TEMPLATE_GENERATION)));
        if surge {
            new.len() <= 1 && old.len() <= 1
        } else {
            new.len() + old.len() <= 1
        }
    });
    if regular && world.rolling && world.expectations_satisfied {
        // Both zero is refused by validation; the pass then allows one, as upstream does.
        let budget = match (world.max_unavailable % 3, world.max_surge % 3) {
            (0, 0) => 1,
            (n, _) => usize::from(n),
        };
        assert!(
            unavailable_after <= unavailable_before.max(budget),
            "{unavailable_after} nodes unavailable after the plan, {unavailable_before} before, budget {budget}: {world:?}"
        );
    }
});
