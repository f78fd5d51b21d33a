//! Garbage collection for DaemonSets and their dependents (pods, ControllerRevisions), following
//! upstream's rules (spec §3.3):
//! - `orphan` finalizer: remove the owner reference from every dependent, then the finalizer;
//! - `foregroundDeletion` finalizer: delete the dependents, and the finalizer once none is left;
//! - a dependent whose owners are all gone is deleted (background propagation). Absence is
//!   confirmed with a live read first, so a cache that lags never deletes a live owner's pods.

use crate::stores::spawn_store_notifying;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

fn daemonset_owners(meta: &ObjectMeta) -> Vec<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .filter(|o| o.kind == "DaemonSet" && o.api_version.starts_with("apps/"))
        .collect()
}

/// Dependents (name, metadata, is pod) of the DaemonSet with `uid` in `ns`.
fn dependents<'a>(
    uid: &str,
    ns: &str,
    pods: &'a [Arc<Pod>],
    revisions: &'a [Arc<ControllerRevision>],
) -> Vec<(&'a ObjectMeta, bool)> {
    let owned = |m: &ObjectMeta| {
        m.namespace.as_deref() == Some(ns)
            && m.owner_references.iter().flatten().any(|o| o.uid == uid)
    };
    pods.iter()
        .map(|p| (&p.metadata, true))
        .chain(revisions.iter().map(|r| (&r.metadata, false)))
        .filter(|(m, _)| owned(m))
        .collect()
}

/// Patches (strategic) or deletes a dependent, whichever kind it is; NotFound and a failed
/// precondition mean someone else already did it.
async fn on_dependent(
    client: &Client,
    ns: &str,
    name: &str,
    is_pod: bool,
    patch: Option<&serde_json::Value>,
    dp: &DeleteParams,
) -> Result<(), kube::Error> {
    async fn act<K>(
        api: Api<K>,
        name: &str,
        patch: Option<&serde_json::Value>,
        dp: &DeleteParams,
    ) -> Result<(), kube::Error>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match patch {
            Some(p) => api
                .patch(name, &PatchParams::default(), &Patch::Strategic(p))
                .await
                .map(|_| ()),
            None => api.delete(name, dp).await.map(|_| ()),
        }
    }
    let result = if is_pod {
        act(Api::<Pod>::namespaced(client.clone(), ns), name, patch, dp).await
    } else {
        act(
            Api::<ControllerRevision>::namespaced(client.clone(), ns),
            name,
            patch,
            dp,
        )
        .await
    };
    match result {
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        other => other,
    }
}

async fn remove_finalizer(
    api: &Api<DaemonSet>,
    ds: &DaemonSet,
    finalizer: &str,
) -> Result<(), kube::Error> {
    let kept: Vec<String> = ds
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    let patch = json!({"metadata": {"finalizers": kept, "resourceVersion": ds.resource_version()}});
    api.patch(
        &ds.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
}

async fn pass(
    client: &Client,
    daemonsets: &[Arc<DaemonSet>],
    pods: &[Arc<Pod>],
    revisions: &[Arc<ControllerRevision>],
) -> Result<(), kube::Error> {
    for ds in daemonsets
        .iter()
        .filter(|d| d.metadata.deletion_timestamp.is_some())
    {
        let ns = ds.namespace().unwrap_or_default();
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let api: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
        let deps = dependents(&uid, &ns, pods, revisions);
        if ds.finalizers().iter().any(|f| f == ORPHAN) {
            for (meta, is_pod) in &deps {
                let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": meta.uid}});
                let name = meta.name.clone().unwrap_or_default();
                on_dependent(
                    client,
                    &ns,
                    &name,
                    *is_pod,
                    Some(&patch),
                    &DeleteParams::default(),
                )
                .await?;
            }
            remove_finalizer(&api, ds, ORPHAN).await?;
        } else if ds.finalizers().iter().any(|f| f == FOREGROUND) {
            if deps.is_empty() {
                remove_finalizer(&api, ds, FOREGROUND).await?;
                continue;
            }
            for (meta, is_pod) in deps.iter().filter(|(m, _)| m.deletion_timestamp.is_none()) {
                let name = meta.name.clone().unwrap_or_default();
                let dp = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..Default::default()
                };
                on_dependent(client, &ns, &name, *is_pod, None, &dp).await?;
            }
        }
    }
    // Dependents whose DaemonSet owners are all gone.
    let known = |ns: &str, o: &OwnerReference| {
        daemonsets.iter().any(|d| {
            d.metadata.uid.as_deref() == Some(o.uid.as_str())
                && d.metadata.namespace.as_deref() == Some(ns)
        })
    };
    let candidates = pods
        .iter()
        .map(|p| (&p.metadata, true))
        .chain(revisions.iter().map(|r| (&r.metadata, false)));
    for (meta, is_pod) in candidates {
        let ns = meta.namespace.clone().unwrap_or_default();
        let owners = daemonset_owners(meta);
        if owners.is_empty()
            || meta.deletion_timestamp.is_some()
            || owners.iter().any(|o| known(&ns, o))
        {
            continue;
        }
        if meta.owner_references.iter().flatten().count() != owners.len() {
            continue; // other kinds of owner: not ours to judge
        }
        let api: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
        let mut all_gone = true;
        for o in &owners {
            match api.get_opt(&o.name).await? {
                Some(live) if live.metadata.uid.as_deref() == Some(o.uid.as_str()) => {
                    all_gone = false
                }
                _ => {}
            }
        }
        if !all_gone {
            continue;
        }
        let name = meta.name.clone().unwrap_or_default();
        let dp = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: meta.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        on_dependent(client, &ns, &name, is_pod, None, &dp).await?;
    }
    Ok(())
}

/// Runs the garbage collector until the process ends.
pub async fn run(client: Client) {
    let changed = Arc::new(tokio::sync::Notify::new());
    let daemonsets =
        spawn_store_notifying(Api::<DaemonSet>::all(client.clone()), Arc::clone(&changed));
    let pods = spawn_store_notifying(Api::<Pod>::all(client.clone()), Arc::clone(&changed));
    let revisions = spawn_store_notifying(
        Api::<ControllerRevision>::all(client.clone()),
        Arc::clone(&changed),
    );
    if daemonsets.wait_until_ready().await.is_err()
        || pods.wait_until_ready().await.is_err()
        || revisions.wait_until_ready().await.is_err()
    {
        tracing::error!("garbage collector caches never became ready");
        return;
    }
    loop {
        if let Err(e) = pass(
            &client,
            &daemonsets.state(),
            &pods.state(),
            &revisions.state(),
        )
        .await
        {
            tracing::warn!(error = %e, "garbage collection pass failed; retrying");
        }
        // Level-triggered: look again on any change, and at least every few seconds.
        let _ = tokio::time::timeout(Duration::from_secs(5), changed.notified()).await;
    }
}
