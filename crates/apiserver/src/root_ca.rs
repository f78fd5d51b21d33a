//! Upstream's root-CA publisher: a `kube-root-ca.crt` ConfigMap in every namespace holding the
//! cluster CA (`ca.crt`), so pods can verify the API server (the projected service-account
//! volume mounts it). Recreated when deleted, put back when changed. Upstream runs it in the
//! controller manager; it is here because the server holds the CA.

use crate::registry::{Registry, Write};
use everynode_api::registry::{self, Kind};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub const CONFIG_MAP: &str = "kube-root-ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// The ConfigMap for namespace `ns`.
pub fn wanted(ns: &str, ca_pem: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIG_MAP,
            "namespace": ns,
            "annotations": {"kubernetes.io/description": DESCRIPTION},
        },
        "data": {"ca.crt": ca_pem},
    })
}

/// Whether a stored ConfigMap says what the publisher wants (its data and the annotation).
pub fn up_to_date(current: &Value, ca_pem: &str) -> bool {
    current["data"] == json!({"ca.crt": ca_pem})
        && current["metadata"]["annotations"]["kubernetes.io/description"] == DESCRIPTION
}

async fn publish(api: &Registry, ns: &str, ca_pem: &str) {
    let cm = registry::by_kind(Kind::ConfigMap);
    match api.get(cm, Some(ns), CONFIG_MAP, false).await {
        Ok(current) if up_to_date(&current, ca_pem) => {}
        Ok(_) => {
            let result = api
                .update_with(&Write::system(cm, Some(ns), CONFIG_MAP), &|current| {
                    let mut new = current.clone();
                    new["data"] = json!({"ca.crt": ca_pem});
                    new["metadata"]["annotations"]["kubernetes.io/description"] =
                        json!(DESCRIPTION);
                    if let Some(data) = new.as_object_mut() {
                        data.remove("binaryData");
                    }
                    Ok(new)
                })
                .await;
            if let Err(e) = result {
                tracing::debug!(namespace = ns, error = %e, "could not put back the root CA");
            }
        }
        Err(_) => {
            if let Err(e) = api
                .create(cm, Some(ns), wanted(ns, ca_pem), false, None)
                .await
            {
                // A namespace being deleted refuses new content; the next pass sees it gone.
                tracing::debug!(namespace = ns, error = %e, "could not publish the root CA");
            }
        }
    }
}

/// Publishes forever: at once when a namespace or one of the ConfigMaps changes (which restores
/// a deleted or edited one), and every ten seconds in any case.
pub async fn run(api: Arc<Registry>, ca_pem: String) {
    let mut changes = crate::namespaces::Changes::new(
        Arc::clone(&api),
        vec![(Kind::Namespace, None), (Kind::ConfigMap, Some(CONFIG_MAP))],
    );
    loop {
        for ns in crate::namespaces::active(&api) {
            publish(&api, &ns, &ca_pem).await;
        }
        changes.next(Duration::from_secs(10)).await;
    }
}

/// Where kubeadm-style discovery reads the cluster's CA and address (`kube-public`).
pub const CLUSTER_INFO: &str = "cluster-info";

/// Writes `kube-public/cluster-info`: a kubeconfig naming the server and its CA, readable
/// without credentials, which a joining node checks against its `--ca-cert-hash`.
pub async fn publish_cluster_info(api: &Registry, server_url: &str, ca_pem: &str) {
    use base64::Engine;
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {}\ncontexts: null\ncurrent-context: \"\"\nusers: null\npreferences: {{}}\n",
        base64::engine::general_purpose::STANDARD.encode(ca_pem)
    );
    let cm = registry::by_kind(Kind::ConfigMap);
    let wanted = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CLUSTER_INFO, "namespace": "kube-public"},
        "data": {"kubeconfig": kubeconfig},
    });
    let result = match api.get(cm, Some("kube-public"), CLUSTER_INFO, false).await {
        Ok(current) if current["data"]["kubeconfig"] == wanted["data"]["kubeconfig"] => Ok(current),
        Ok(_) => {
            api.update_with(
                &Write::system(cm, Some("kube-public"), CLUSTER_INFO),
                &|current| {
                    let mut new = current.clone();
                    new["data"]["kubeconfig"] = wanted["data"]["kubeconfig"].clone();
                    Ok(new)
                },
            )
            .await
        }
        Err(_) => {
            api.create(cm, Some("kube-public"), wanted.clone(), false, None)
                .await
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not publish kube-public/cluster-info; nodes cannot join");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_map_holds_the_ca_with_upstreams_description() {
        let cm = wanted("team-a", "PEM");
        assert_eq!(cm["metadata"]["name"], "kube-root-ca.crt");
        assert_eq!(cm["data"]["ca.crt"], "PEM");
        assert!(up_to_date(&cm, "PEM"));
        assert!(!up_to_date(&cm, "OTHER"));
        let mut edited = cm.clone();
        edited["metadata"]["annotations"] = json!({});
        assert!(!up_to_date(&edited, "PEM"));
    }
}
