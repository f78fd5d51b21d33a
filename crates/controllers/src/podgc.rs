//! Pod garbage collection (spec §3.4), as kube-controller-manager's podgc:
//! - pods bound to a node that no longer exists are deleted (grace 0) once the node has been
//!   missing for the quarantine (40 s): the DaemonSet controller relies on this;
//! - pods being deleted that were never bound to a node are deleted at once (no agent will);
//! - terminated pods (Succeeded, Failed) above `--terminated-pod-gc-threshold` (12500) are
//!   deleted, oldest first.
//!
//! Decisions are pure functions of the pods, the nodes and `now`.

use crate::stores::Informers;
use everynode_api::scheduling::bound_node;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::{Client, ResourceExt};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub const QUARANTINE: Duration = Duration::from_secs(40);
pub const DEFAULT_TERMINATED_THRESHOLD: usize = 12_500;

/// Tracks since when each missing node has been missing (locally observed).
#[derive(Default)]
pub struct Missing {
    since: HashMap<String, Instant>,
}

impl Missing {
    /// Pods to delete because their node has been gone longer than `quarantine` at `now`.
    pub fn orphaned<'a>(
        &mut self,
        pods: &'a [Arc<Pod>],
        nodes: &HashSet<String>,
        now: Instant,
        quarantine: Duration,
    ) -> Vec<&'a Pod> {
        let mut still_missing = HashSet::new();
        let mut out = Vec::new();
        for p in pods {
            let Some(node) = bound_node(p) else { continue };
            if nodes.contains(node) {
                continue;
            }
            still_missing.insert(node.to_owned());
            let since = *self.since.entry(node.to_owned()).or_insert(now);
            if now.saturating_duration_since(since) >= quarantine {
                out.push(p.as_ref());
            }
        }
        self.since.retain(|n, _| still_missing.contains(n));
        out
    }
}

/// Pods being deleted that no node will ever finish: never bound.
pub fn unscheduled_terminating(pods: &[Arc<Pod>]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && bound_node(p).is_none())
        .map(|p| p.as_ref())
        .collect()
}

/// The oldest terminated pods beyond `threshold` (0 disables).
pub fn excess_terminated(pods: &[Arc<Pod>], threshold: usize) -> Vec<&Pod> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut done: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            everynode_api::scheduling::is_terminated(p) && p.metadata.deletion_timestamp.is_none()
        })
        .map(|p| p.as_ref())
        .collect();
    if done.len() <= threshold {
        return Vec::new();
    }
    done.sort_by(|a, b| everynode_api::daemonset::oldest_first(a, b));
    let excess = done.len() - threshold;
    done.truncate(excess);
    done
}

async fn force_delete(client: &Client, pod: &Pod, why: &str) {
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: pod.metadata.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&pod.name_any(), &dp).await {
        Ok(_) => {
            tracing::info!(pod = %pod.name_any(), namespace = %ns, why, "pod garbage-collected")
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(pod = %pod.name_any(), error = %e, "pod GC delete failed"),
    }
}

/// Runs pod GC until the process ends, checking every 20 s (upstream's gcCheckPeriod).
pub async fn run(informers: Informers, terminated_threshold: usize) {
    // Pod GC looks on a timer, not on changes (upstream's gcCheckPeriod).
    let client = informers.client();
    let pods = informers.pods().ready_store().await;
    let nodes = informers.nodes().ready_store().await;
    let mut missing = Missing::default();
    let mut tick = tokio::time::interval(Duration::from_secs(20));
    loop {
        tick.tick().await;
        let all = pods.state();
        let names: HashSet<String> = nodes.state().iter().map(|n| n.name_any()).collect();
        for p in missing.orphaned(&all, &names, Instant::now(), QUARANTINE) {
            force_delete(&client, p, "its node no longer exists").await;
        }
        for p in unscheduled_terminating(&all) {
            force_delete(&client, p, "being deleted and never bound to a node").await;
        }
        for p in excess_terminated(&all, terminated_threshold) {
            force_delete(&client, p, "terminated pods above the threshold").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, phase: &str, created: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "creationTimestamp": created},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": phase}
            }))
            .expect("pod"),
        )
    }

    #[test]
    fn pods_on_vanished_nodes_go_after_the_quarantine() {
        let pods = vec![
            pod("a", Some("gone"), "Running", "2026-01-01T00:00:00Z"),
            pod("b", Some("here"), "Running", "2026-01-01T00:00:00Z"),
            pod("c", None, "Pending", "2026-01-01T00:00:00Z"),
        ];
        let nodes: HashSet<String> = ["here".to_owned()].into();
        let mut m = Missing::default();
        let t0 = Instant::now();
        assert!(m.orphaned(&pods, &nodes, t0, QUARANTINE).is_empty());
        assert!(
            m.orphaned(&pods, &nodes, t0 + Duration::from_secs(39), QUARANTINE)
                .is_empty()
        );
        let out = m.orphaned(&pods, &nodes, t0 + QUARANTINE, QUARANTINE);
        assert_eq!(
            out.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
            vec!["a"]
        );
        // A node that comes back resets its quarantine.
        let back: HashSet<String> = ["here".to_owned(), "gone".to_owned()].into();
        assert!(
            m.orphaned(&pods, &back, t0 + Duration::from_secs(50), QUARANTINE)
                .is_empty()
        );
        assert!(
            m.orphaned(&pods, &nodes, t0 + Duration::from_secs(51), QUARANTINE)
                .is_empty()
        );
    }

    #[test]
    fn oldest_terminated_pods_above_the_threshold_go() {
        let pods = vec![
            pod("new", Some("n"), "Succeeded", "2026-01-03T00:00:00Z"),
            pod("old", Some("n"), "Failed", "2026-01-01T00:00:00Z"),
            pod("mid", Some("n"), "Succeeded", "2026-01-02T00:00:00Z"),
            pod("live", Some("n"), "Running", "2025-01-01T00:00:00Z"),
        ];
        let out = excess_terminated(&pods, 1);
        assert_eq!(
            out.iter().map(|p| p.name_any()).collect::<Vec<_>>(),
            vec!["old", "mid"]
        );
        assert!(excess_terminated(&pods, 3).is_empty());
        assert!(excess_terminated(&pods, 0).is_empty());
    }

    #[test]
    fn unbound_terminating_pods_are_finished_by_gc() {
        let mut p = (*pod("x", None, "Pending", "2026-01-01T00:00:00Z")).clone();
        p.metadata.deletion_timestamp = p.metadata.creation_timestamp.clone();
        let pods = vec![
            Arc::new(p),
            pod("y", None, "Pending", "2026-01-01T00:00:00Z"),
        ];
        assert_eq!(unscheduled_terminating(&pods).len(), 1);
    }
}
