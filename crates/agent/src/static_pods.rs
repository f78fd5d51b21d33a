//! Static pods: manifests in `--pod-manifest-path` run on this node without a controller. The
//! agent publishes each as a mirror pod `<name>-<node>` (annotations `kubernetes.io/config.source:
//! file`, `kubernetes.io/config.hash` and `kubernetes.io/config.mirror`, owned by the Node), and
//! the mirror pod is what the pod worker runs, so static pods get every lifecycle rule.
//!
//! Deviation from kubelet, documented: deleting a mirror pod stops the static pod until the next
//! scan (20 s) publishes it again; kubelet keeps it running.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SOURCE: &str = "kubernetes.io/config.source";
pub const HASH: &str = "kubernetes.io/config.hash";
pub const MIRROR: &str = "kubernetes.io/config.mirror";

/// A manifest turned into the mirror pod to publish.
#[derive(Debug)]
pub struct Manifest {
    pub file: PathBuf,
    pub pod: Pod,
}

/// Reads one manifest into its mirror pod for `node`. Errors name the file, line and column.
pub fn mirror_pod(
    file: &Path,
    bytes: &[u8],
    node: &str,
    node_uid: Option<&str>,
) -> Result<Pod, String> {
    let mut pod: Pod = if file.extension().is_some_and(|e| e == "json") {
        serde_json::from_slice(bytes).map_err(|e| format!("{}: {e}", file.display()))?
    } else {
        serde_yaml_ng::from_slice(bytes).map_err(|e| format!("{}: {e}", file.display()))?
    };
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{}: metadata.name is required", file.display()))?;
    let hash = format!(
        "{:016x}",
        everynode_api::fnv::fnv1a_64([bytes, node.as_bytes()])
    );
    pod.metadata.name = Some(format!("{name}-{node}"));
    pod.metadata.namespace = Some(
        pod.metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into()),
    );
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(SOURCE.into(), "file".into());
    annotations.insert(HASH.into(), hash.clone());
    annotations.insert(MIRROR.into(), hash);
    if let Some(uid) = node_uid {
        pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: node.into(),
            uid: uid.into(),
            controller: Some(true),
            ..Default::default()
        }]);
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.into());
    pod.status = None;
    Ok(pod)
}

fn read_manifests(dir: &Path, node: &str, node_uid: Option<&str>) -> Vec<Manifest> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    for file in files {
        let wanted = file
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
        // Hidden files are editor leftovers, as kubelet ignores them.
        let hidden = file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !wanted || hidden {
            continue;
        }
        match std::fs::read(&file)
            .map_err(|e| format!("{}: {e}", file.display()))
            .and_then(|bytes| mirror_pod(&file, &bytes, node, node_uid))
        {
            Ok(pod) => out.push(Manifest { file, pod }),
            Err(e) => tracing::warn!(error = %e, "skipping a static pod manifest"),
        }
    }
    out
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Publishes mirror pods for the manifests in `dir` every `period`, replaces a mirror whose
/// manifest changed and deletes mirrors whose manifest is gone. Runs until the process ends.
pub async fn run(
    client: Client,
    node: String,
    node_uid: Option<String>,
    dir: PathBuf,
    period: Duration,
) {
    let all: Api<Pod> = Api::all(client.clone());
    loop {
        let manifests = read_manifests(&dir, &node, node_uid.as_deref());
        let existing = all
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let mirrors: Vec<&Pod> = existing
            .iter()
            .filter(|p| annotation(p, MIRROR).is_some())
            .collect();
        for m in &manifests {
            let ns = m.pod.metadata.namespace.clone().unwrap_or_default();
            let name = m.pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let current = mirrors.iter().find(|p| {
                p.metadata.name.as_deref() == Some(&name)
                    && p.metadata.namespace.as_deref() == Some(&ns)
            });
            match current {
                Some(p) if annotation(p, HASH) == annotation(&m.pod, HASH) => {}
                Some(p) if p.metadata.deletion_timestamp.is_some() => {}
                Some(_) => {
                    tracing::info!(pod = %name, file = %m.file.display(), "static pod manifest changed; replacing its pod");
                    let _ = api.delete(&name, &DeleteParams::default()).await;
                }
                None => {
                    if let Err(e) = api.create(&PostParams::default(), &m.pod).await {
                        tracing::warn!(pod = %name, error = %e, "could not publish a mirror pod");
                    }
                }
            }
        }
        for p in mirrors {
            let listed = manifests.iter().any(|m| {
                m.pod.metadata.name == p.metadata.name
                    && m.pod.metadata.namespace == p.metadata.namespace
            });
            if !listed && p.metadata.deletion_timestamp.is_none() {
                let api: Api<Pod> = Api::namespaced(
                    client.clone(),
                    p.metadata.namespace.as_deref().unwrap_or("default"),
                );
                let _ = api
                    .delete(
                        p.metadata.name.as_deref().unwrap_or(""),
                        &DeleteParams::default(),
                    )
                    .await;
            }
        }
        tokio::time::sleep(period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_pods_are_named_after_the_node_and_annotated() {
        let yaml = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: nginx\n";
        let pod =
            mirror_pod(Path::new("/etc/pods/web.yaml"), yaml, "node-1", Some("u1")).expect("pod");
        assert_eq!(pod.metadata.name.as_deref(), Some("web-node-1"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(annotation(&pod, SOURCE), Some("file"));
        assert_eq!(annotation(&pod, HASH), annotation(&pod, MIRROR));
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some("node-1")
        );
        assert_eq!(
            pod.metadata
                .owner_references
                .as_ref()
                .map(|o| o[0].kind.as_str()),
            Some("Node")
        );
        let other = mirror_pod(Path::new("/etc/pods/web.yaml"), yaml, "node-2", None).expect("pod");
        assert_ne!(annotation(&pod, HASH), annotation(&other, HASH));
    }

    #[test]
    fn bad_manifests_name_the_file_and_position() {
        let err = mirror_pod(
            Path::new("/etc/pods/bad.yaml"),
            b"metadata:\n  name: [x\n",
            "n",
            None,
        )
        .expect_err("bad");
        assert!(err.starts_with("/etc/pods/bad.yaml: "), "{err}");
        assert!(err.contains("line"), "{err}");
        let err = mirror_pod(
            Path::new("/etc/pods/anon.yaml"),
            b"spec:\n  containers: []\n",
            "n",
            None,
        )
        .expect_err("no name");
        assert_eq!(err, "/etc/pods/anon.yaml: metadata.name is required");
    }
}
