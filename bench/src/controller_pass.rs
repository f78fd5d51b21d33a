//! One DaemonSet controller pass (the pure `sync`) over N nodes, in memory: no API, no I/O.
//!
//! Two cases, each timed over several repetitions (median and max reported):
//! - `fresh`: N nodes and no pods or revisions: the pass plans the first revision and its creates
//!   (capped at the burst, 250);
//! - `steady`: N nodes, N Running and Ready pods of the current revision: the pass finds nothing
//!   to do but recomputes status (the pass every pod status change triggers).
//!
//! `cargo run --release -p everynode-bench --bin controller-pass-bench -- --nodes 10000`

use clap::Parser;
use everynode_api::daemonset as rules;
use everynode_api::registry::Kind;
use everynode_controllers::daemonset::backoff::Backoff;
use everynode_controllers::daemonset::pass::{HistoryOp, Pass, PassInput, sync};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
// Outside a runtime tokio's Instant reads the system's monotonic clock, as std's does.
use tokio::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    #[arg(long, default_value_t = 7)]
    repeat: usize,
}

fn daemonset() -> DaemonSet {
    let mut v = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 1,
            "annotations": {"deprecated.daemonset.template.generation": "1"},
            "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1",
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}]}}}});
    everynode_api::defaults::apply(Kind::DaemonSet, &mut v);
    serde_json::from_value(v).expect("a valid DaemonSet")
}

fn nodes(n: usize) -> Vec<std::sync::Arc<Node>> {
    (0..n)
        .map(|i| {
            serde_json::from_value(json!({
                "metadata": {"name": format!("node-{i:05}"), "labels": {"kubernetes.io/hostname": format!("node-{i:05}")}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}],
                    "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
            }))
            .map(std::sync::Arc::new)
            .expect("a valid node")
        })
        .collect()
}

fn timed(repeat: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..repeat.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[times.len() - 1])
}

fn main() {
    let args = Args::parse();
    let ds = daemonset();
    let nodes = nodes(args.nodes);
    let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(900));
    let now: Timestamp = "2026-11-25T10:00:00Z".parse().expect("a time");
    let fresh_input = PassInput {
        ds: &ds,
        nodes: &nodes,
        pods: &[],
        revisions: &[],
        backoff: &backoff,
        expectations_satisfied: true,
        progress: None,
        shutdown_aware: true,
        now,
    };
    let Pass::Planned(plan) = sync(&fresh_input) else {
        panic!("a fresh DaemonSet is planned, not skipped or failed");
    };
    // The pass caps creates at the burst (250), as upstream's burstReplicas.
    assert_eq!(
        plan.creates.len(),
        args.nodes.min(250),
        "a fresh pass plans a pod per node up to the burst"
    );
    let (fresh_median, fresh_max) = timed(args.repeat, || {
        std::hint::black_box(sync(&fresh_input));
    });
    let revision: ControllerRevision = plan
        .history
        .iter()
        .find_map(|op| match op {
            HistoryOp::Create(r) => Some((**r).clone()),
            _ => None,
        })
        .expect("the first pass creates a revision");
    let pods: Vec<Arc<Pod>> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut p = rules::new_pod(&ds, n.metadata.name.as_deref().unwrap_or(""), &plan.hash);
            p.metadata.name = Some(format!("agent-{i:05}"));
            p.metadata.uid = Some(format!("pod-uid-{i}"));
            p.metadata.creation_timestamp = ds.metadata.creation_timestamp.clone();
            p.spec.get_or_insert_with(Default::default).node_name = n.metadata.name.clone();
            p.status = Some(
                serde_json::from_value(json!({"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-25T09:00:00Z"}]}))
                .expect("a valid status"),
            );
            Arc::new(p)
        })
        .collect();
    let revisions = vec![Arc::new(revision)];
    let steady_input = PassInput {
        ds: &ds,
        nodes: &nodes,
        pods: &pods,
        revisions: &revisions,
        backoff: &backoff,
        expectations_satisfied: true,
        progress: None,
        shutdown_aware: true,
        now,
    };
    let Pass::Planned(steady) = sync(&steady_input) else {
        panic!("a converged DaemonSet is planned, not skipped or failed");
    };
    assert!(
        steady.creates.is_empty() && steady.deletes.is_empty(),
        "a converged DaemonSet needs nothing: {} creates, {} deletes",
        steady.creates.len(),
        steady.deletes.len()
    );
    let (steady_median, steady_max) = timed(args.repeat, || {
        std::hint::black_box(sync(&steady_input));
    });
    println!(
        "controller pass, {} nodes ({} repetitions):\n  fresh  (plan {} creates): median {:.1} ms, max {:.1} ms\n  steady ({} pods, status only): median {:.1} ms, max {:.1} ms",
        args.nodes,
        args.repeat,
        plan.creates.len(),
        fresh_median.as_secs_f64() * 1e3,
        fresh_max.as_secs_f64() * 1e3,
        pods.len(),
        steady_median.as_secs_f64() * 1e3,
        steady_max.as_secs_f64() * 1e3,
    );
}
