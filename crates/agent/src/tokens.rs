//! ServiceAccount tokens for projected volumes, as kubelet manages them: each
//! `serviceAccountToken` source is a TokenRequest bound to the pod, written into the volume,
//! and requested again once 80 % of its lifetime has passed, for as long as the pod runs.

use crate::volumes::{projected_dir, replace_file};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// One `serviceAccountToken` source of a projected volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSource {
    pub volume: String,
    pub path: String,
    pub audience: Option<String>,
    pub expiration_seconds: i64,
    pub mode: i32,
}

impl TokenSource {
    /// The key [`crate::volumes::VolumeData::tokens`] holds it under.
    pub fn key(&self) -> String {
        format!("{}/{}", self.volume, self.path)
    }

    /// When kubelet asks again: after 80 % of the lifetime.
    pub fn refresh_after(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.expiration_seconds.max(600) * 4 / 5).unwrap_or(480))
    }
}

/// Every token source of a pod's projected volumes.
pub fn sources(pod: &Pod) -> Vec<TokenSource> {
    let mut out = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(projected) = &v.projected else {
            continue;
        };
        for source in projected.sources.iter().flatten() {
            if let Some(t) = &source.service_account_token {
                out.push(TokenSource {
                    volume: v.name.clone(),
                    path: t.path.clone(),
                    audience: t.audience.clone().filter(|a| !a.is_empty()),
                    expiration_seconds: t.expiration_seconds.unwrap_or(3600),
                    mode: projected.default_mode.unwrap_or(0o644),
                });
            }
        }
    }
    out
}

/// A token for `source`, bound to `pod`.
pub async fn request(
    client: &kube::Client,
    pod: &Pod,
    source: &TokenSource,
) -> Result<Vec<u8>, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: source.audience.iter().cloned().collect(),
            expiration_seconds: Some(source.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let answer = api
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("failed to fetch token: {e}"))?;
    answer
        .status
        .map(|s| s.token.into_bytes())
        .ok_or_else(|| "failed to fetch token: the answer has no token".into())
}

/// Keeps the pod's tokens fresh until the worker lets go of the pod (its channel closes or
/// says the pod is gone).
pub async fn refresh(
    client: kube::Client,
    pod_dir: PathBuf,
    mut pod_rx: watch::Receiver<Option<Arc<Pod>>>,
    sources: Vec<TokenSource>,
) {
    let Some(interval) = sources.iter().map(TokenSource::refresh_after).min() else {
        return;
    };
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            changed = pod_rx.changed() => {
                if changed.is_err() || pod_rx.borrow().is_none() {
                    return;
                }
                continue;
            }
        }
        let Some(pod) = pod_rx.borrow().clone() else {
            return;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        for source in &sources {
            match request(&client, &pod, source).await {
                Ok(token) => {
                    let dir = projected_dir(&pod_dir, &source.volume);
                    if let Err(e) = replace_file(&dir, &source.path, &token, source.mode) {
                        tracing::warn!(pod = ?pod.metadata.name, error = %e, "cannot write the refreshed token");
                    }
                }
                Err(e) => {
                    tracing::warn!(pod = ?pod.metadata.name, error = %e, "cannot refresh the token")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_sources_and_when_they_are_refreshed() {
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [], "volumes": [
            {"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt"}}]}},
            {"name": "vault", "projected": {"sources": [
                {"serviceAccountToken": {"path": "t", "audience": "vault"}}]}}]}}))
        .expect("pod");
        let found = sources(&pod);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].key(), "kube-api-access-x/token");
        assert_eq!(found[0].mode, 420);
        assert_eq!(found[0].refresh_after(), Duration::from_secs(2885));
        assert_eq!(found[1].audience.as_deref(), Some("vault"));
        assert_eq!(found[1].refresh_after(), Duration::from_secs(2880));
    }
}
