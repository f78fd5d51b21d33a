//! The client matrix's kube-rs part: the user workflow every client in
//! `tests/python/test_clients.py` runs, through kube-rs with its runtime watcher — list nodes;
//! create a DaemonSet; watch its pods until Ready; patch its image (strategic merge); wait for
//! the rollout as `kubectl rollout status` does; follow a pod's log; delete with propagation
//! Orphan. Prints one JSON line with what it saw, for the test to check.
//!
//!     client-workflow KUBECONFIG NAME

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::BTreeSet;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn run(kubeconfig: &str, name: &str) -> Result<serde_json::Value, Error> {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &Default::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let nodes: Api<Node> = Api::all(client.clone());
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");

    let mut node_names: Vec<String> = nodes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    node_names.sort();
    let ds: DaemonSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox:1.36",
                                     "command": ["sh", "-c", "echo started on $(hostname); sleep 3600"]}]}}},
    }))?;
    daemonsets.create(&PostParams::default(), &ds).await?;

    // kube-runtime's watcher, as controllers written with kube-rs follow objects.
    let selector = format!("app={name}");
    let mut ready_pods = BTreeSet::new();
    let stream = watcher(pods.clone(), watcher::Config::default().labels(&selector))
        .applied_objects()
        .boxed();
    let mut stream = stream;
    tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(pod) = stream.try_next().await? {
            if ready(&pod) {
                ready_pods.insert(pod.metadata.name.clone().unwrap_or_default());
            }
            if ready_pods.len() == node_names.len() {
                break;
            }
        }
        Ok::<_, Error>(())
    })
    .await??;

    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}});
    daemonsets
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    let status = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let ds = daemonsets.get(name).await?;
            let st = ds.status.clone().unwrap_or_default();
            let done = ds.metadata.generation.unwrap_or(0) <= st.observed_generation.unwrap_or(0)
                && st.updated_number_scheduled == Some(st.desired_number_scheduled)
                && st.number_available == Some(st.desired_number_scheduled);
            if done {
                return Ok::<_, Error>(st);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await??;

    let listed = pods.list(&ListParams::default().labels(&selector)).await?;
    let first = listed
        .items
        .first()
        .and_then(|p| p.metadata.name.clone())
        .ok_or("no pod")?;
    let mut lines = pods
        .log_stream(
            &first,
            &LogParams {
                follow: true,
                ..Default::default()
            },
        )
        .await?
        .lines();
    let first_line = tokio::time::timeout(Duration::from_secs(30), lines.next())
        .await?
        .ok_or("no log line")??;

    daemonsets.delete(name, &DeleteParams::orphan()).await?;
    Ok(serde_json::json!({
        "nodes": node_names,
        "ready": ready_pods.len(),
        "updated": status.updated_number_scheduled,
        "firstLine": first_line,
    }))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(kubeconfig), Some(name)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: client-workflow KUBECONFIG NAME");
        return std::process::ExitCode::from(2);
    };
    match run(kubeconfig, name).await {
        Ok(seen) => {
            println!("{seen}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
