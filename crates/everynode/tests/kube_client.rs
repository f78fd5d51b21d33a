//! kube-rs as an outside client of a real `everynode server` process.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A server process that is killed when the test ends.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_everynode"))
        // API semantics only: no controllers writing alongside the test.
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--no-daemonset-controller",
            "--no-scheduler",
            "--no-garbage-collector",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn everynode");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read ready line");
    assert!(
        line.contains("listening on"),
        "unexpected first line: {line}"
    );
    Server { child, dir }
}

async fn client(server: &Server) -> Client {
    let kubeconfig =
        Kubeconfig::read_from(server.dir.path().join("kubeconfig")).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

fn daemonset(name: &str) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
        }
    }))
    .expect("daemonset")
}

#[tokio::test]
async fn daemonset_crud_conflict_and_watch() {
    let server = start_server();
    let client = client(&server).await;
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "default");

    let created = ds
        .create(&PostParams::default(), &daemonset("agent"))
        .await
        .expect("create");
    let rv = created
        .metadata
        .resource_version
        .clone()
        .expect("resourceVersion");
    let mut stream = ds
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();

    let patched = ds
        .patch(
            "agent",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minReadySeconds": 5}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(patched.metadata.generation, Some(2));

    let mut stale = created.clone();
    stale.spec.as_mut().expect("spec").min_ready_seconds = Some(9);
    let err = ds
        .replace("agent", &PostParams::default(), &stale)
        .await
        .expect_err("stale write");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "Conflict");
        }
        other => panic!("expected a 409, got {other:?}"),
    }

    ds.delete("agent", &DeleteParams::default())
        .await
        .expect("delete");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .expect("event in time")
            .expect("ok")
            .expect("open");
        match event {
            WatchEvent::Modified(d) => seen.push(("MODIFIED", d.metadata.generation)),
            WatchEvent::Deleted(d) => seen.push(("DELETED", d.metadata.generation)),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(seen, vec![("MODIFIED", Some(2)), ("DELETED", Some(2))]);
}

#[tokio::test]
async fn runtime_watcher_nodes_pods_and_leases() {
    let server = start_server();
    let client = client(&server).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(
        json!({"metadata": {"name": "node-0", "labels": {"kubernetes.io/hostname": "node-0"}}}),
    )
    .expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut applied = watcher(
        pods.clone(),
        watcher::Config::default().fields("spec.nodeName=node-0"),
    )
    .boxed();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"nodeName": "node-0", "containers": [{"name": "c", "image": "busybox:1.36"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let other: Pod = serde_json::from_value(json!({
        "metadata": {"name": "elsewhere"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox:1.36"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &other)
        .await
        .expect("create other pod");
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = applied.try_next().await.expect("watcher") {
            if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = event {
                return p.metadata.name;
            }
        }
        None
    })
    .await
    .expect("event in time");
    assert_eq!(found.as_deref(), Some("p"));
    let listed = pods
        .list(&ListParams::default().fields("spec.nodeName=node-0"))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);

    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "node-0"}, "spec": {"holderIdentity": "node-0", "leaseDurationSeconds": 40}})).expect("lease");
    leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create lease");
    let mut current = leases.get("node-0").await.expect("get lease");
    current.spec.as_mut().expect("spec").lease_duration_seconds = Some(10);
    let replaced = leases
        .replace("node-0", &PostParams::default(), &current)
        .await
        .expect("renew");
    assert_eq!(
        replaced.spec.and_then(|s| s.lease_duration_seconds),
        Some(10)
    );
}
