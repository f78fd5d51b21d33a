//! Garbage collection for the owners everynode's controllers set (DaemonSets; Services and
//! Endpoints, which own EndpointSlices) and their dependents (pods, ControllerRevisions,
//! EndpointSlices), following upstream's rules (spec §3.3):
//! - `orphan` finalizer: remove the owner reference from every dependent, then the finalizer;
//! - `foregroundDeletion` finalizer: delete the dependents, and the finalizer once none is left;
//! - a dependent whose owners are all gone is deleted (background propagation). Absence is
//!   confirmed with a live read first, so a cache that lags never deletes a live owner's pods.

use crate::stores::Informers;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy,
};
use kube::{Client, Resource};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

/// The kinds the collector knows, as owners or as dependents. Upstream's collector knows every
/// kind through discovery; ours knows the owners everynode's controllers set and what they own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    DaemonSet,
    Service,
    Endpoints,
    Pod,
    ControllerRevision,
    EndpointSlice,
}

/// The kinds whose objects own others: a dependent's references to any other kind are not
/// this collector's to judge.
const OWNER_KINDS: [Kind; 3] = [Kind::DaemonSet, Kind::Service, Kind::Endpoints];

impl Kind {
    fn api_resource(self) -> ApiResource {
        use k8s_openapi::api::{apps, core, discovery};
        match self {
            Kind::DaemonSet => ApiResource::erase::<apps::v1::DaemonSet>(&()),
            Kind::Service => ApiResource::erase::<core::v1::Service>(&()),
            Kind::Endpoints => ApiResource::erase::<core::v1::Endpoints>(&()),
            Kind::Pod => ApiResource::erase::<core::v1::Pod>(&()),
            Kind::ControllerRevision => ApiResource::erase::<apps::v1::ControllerRevision>(&()),
            Kind::EndpointSlice => ApiResource::erase::<discovery::v1::EndpointSlice>(&()),
        }
    }

    fn refers_to(self, o: &OwnerReference) -> bool {
        match self {
            Kind::DaemonSet => everynode_api::daemonset::is_daemonset_ref(o),
            _ => {
                let r = self.api_resource();
                o.kind == r.kind && o.api_version == r.api_version
            }
        }
    }
}

/// An object the collector sees, of a kind it knows.
#[derive(Clone, Copy)]
pub struct Seen<'a> {
    pub kind: Kind,
    pub meta: &'a ObjectMeta,
}

impl<'a> Seen<'a> {
    pub fn all<K: Resource>(kind: Kind, objects: &'a [Arc<K>]) -> impl Iterator<Item = Seen<'a>> {
        objects.iter().map(move |o| Seen {
            kind,
            meta: o.meta(),
        })
    }
}

/// A dependent's references to owners of known kinds.
fn known_owners(meta: &ObjectMeta) -> Vec<(Kind, &OwnerReference)> {
    meta.owner_references
        .iter()
        .flatten()
        .filter_map(|o| {
            OWNER_KINDS
                .into_iter()
                .find(|k| k.refers_to(o))
                .map(|k| (k, o))
        })
        .collect()
}

/// An object that an owner owns (or owned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependent {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Dependent {
    fn of(seen: &Seen<'_>) -> Self {
        let meta = seen.meta;
        Dependent {
            kind: seen.kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        }
    }
}

/// An owner a dependent names: its kind, name and uid.
pub type OwnerName = (Kind, String, String);

/// One step of garbage collection. `plan` decides them from the caches alone; `execute`
/// performs them in order and stops at the first error (the next pass starts over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Orphan propagation: drop the owner's reference from the dependent.
    Orphan {
        dependent: Dependent,
        owner_uid: String,
    },
    /// Foreground propagation: delete a dependent that is not being deleted yet.
    Delete { dependent: Dependent },
    /// Propagation is complete: the owner may go.
    RemoveFinalizer {
        kind: Kind,
        namespace: String,
        name: String,
        finalizer: &'static str,
        resource_version: Option<String>,
    },
    /// Background propagation: every known owner is missing from the cache. A live read of
    /// each owner must confirm it is gone (or replaced under a new uid) before deleting.
    DeleteIfOwnersGone {
        dependent: Dependent,
        owners: Vec<OwnerName>,
    },
}

/// What the garbage collector should do for these owners and dependents (spec §3.3).
pub fn plan(owners: &[Seen<'_>], dependents: &[Seen<'_>]) -> Vec<Action> {
    let mut actions = Vec::new();
    for owner in owners
        .iter()
        .filter(|o| o.meta.deletion_timestamp.is_some())
    {
        let meta = owner.meta;
        let ns = meta.namespace.clone().unwrap_or_default();
        let uid = meta.uid.clone().unwrap_or_default();
        let deps: Vec<&Seen<'_>> = dependents
            .iter()
            .filter(|d| {
                d.meta.namespace.as_deref() == Some(ns.as_str())
                    && d.meta
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == uid)
            })
            .collect();
        let finish = |finalizer| Action::RemoveFinalizer {
            kind: owner.kind,
            namespace: ns.clone(),
            name: meta.name.clone().unwrap_or_default(),
            finalizer,
            resource_version: meta.resource_version.clone(),
        };
        let finalizers = meta.finalizers.as_deref().unwrap_or_default();
        if finalizers.iter().any(|f| f == ORPHAN) {
            actions.extend(deps.iter().map(|d| Action::Orphan {
                dependent: Dependent::of(d),
                owner_uid: uid.clone(),
            }));
            actions.push(finish(ORPHAN));
        } else if finalizers.iter().any(|f| f == FOREGROUND) {
            if deps.is_empty() {
                actions.push(finish(FOREGROUND));
                continue;
            }
            actions.extend(
                deps.iter()
                    .filter(|d| d.meta.deletion_timestamp.is_none())
                    .map(|d| Action::Delete {
                        dependent: Dependent::of(d),
                    }),
            );
        }
    }
    let known = |ns: &str, kind: Kind, o: &OwnerReference| {
        owners.iter().any(|owner| {
            owner.kind == kind
                && owner.meta.uid.as_deref() == Some(o.uid.as_str())
                && owner.meta.namespace.as_deref() == Some(ns)
        })
    };
    for dependent in dependents {
        let meta = dependent.meta;
        let ns = meta.namespace.clone().unwrap_or_default();
        let refs = known_owners(meta);
        if refs.is_empty()
            || meta.deletion_timestamp.is_some()
            || refs.iter().any(|(kind, o)| known(&ns, *kind, o))
        {
            continue;
        }
        if meta.owner_references.iter().flatten().count() != refs.len() {
            continue; // other kinds of owner: not ours to judge
        }
        actions.push(Action::DeleteIfOwnersGone {
            dependent: Dependent::of(dependent),
            owners: refs
                .iter()
                .map(|(kind, o)| (*kind, o.name.clone(), o.uid.clone()))
                .collect(),
        });
    }
    actions
}

fn api(client: &Client, kind: Kind, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &kind.api_resource())
}

/// Patches (strategic) or deletes a dependent, whichever kind it is; NotFound and a failed
/// precondition mean someone else already did it.
async fn on_dependent(
    client: &Client,
    dependent: &Dependent,
    patch: Option<&serde_json::Value>,
    dp: &DeleteParams,
) -> Result<(), kube::Error> {
    let api = api(client, dependent.kind, &dependent.namespace);
    let result = match patch {
        Some(p) => api
            .patch(
                &dependent.name,
                &PatchParams::default(),
                &Patch::Strategic(p),
            )
            .await
            .map(|_| ()),
        None => api.delete(&dependent.name, dp).await.map(|_| ()),
    };
    match result {
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        other => other,
    }
}

/// Performs the planned actions in order.
async fn execute(client: &Client, actions: &[Action]) -> Result<(), kube::Error> {
    for action in actions {
        match action {
            Action::Orphan {
                dependent,
                owner_uid,
            } => {
                let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": dependent.uid}});
                on_dependent(client, dependent, Some(&patch), &DeleteParams::default()).await?;
            }
            Action::Delete { dependent } => {
                let dp = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..Default::default()
                };
                on_dependent(client, dependent, None, &dp).await?;
            }
            Action::RemoveFinalizer {
                kind,
                namespace,
                name,
                finalizer,
                resource_version,
            } => {
                let api = api(client, *kind, namespace);
                let Some(live) = api.get_opt(name).await? else {
                    continue;
                };
                if live.metadata.resource_version != *resource_version {
                    continue; // changed since the plan: the next pass decides again
                }
                let kept: Vec<&String> = live
                    .metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .filter(|f| f != finalizer)
                    .collect();
                let patch =
                    json!({"metadata": {"finalizers": kept, "resourceVersion": resource_version}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Action::DeleteIfOwnersGone { dependent, owners } => {
                let mut all_gone = true;
                for (kind, name, uid) in owners {
                    let api = api(client, *kind, &dependent.namespace);
                    if let Some(live) = api.get_opt(name).await?
                        && live.metadata.uid.as_deref() == Some(uid.as_str())
                    {
                        all_gone = false;
                    }
                }
                if all_gone {
                    let dp = DeleteParams {
                        preconditions: Some(kube::api::Preconditions {
                            uid: Some(dependent.uid.clone()),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    on_dependent(client, dependent, None, &dp).await?;
                }
            }
        }
    }
    Ok(())
}

/// Runs the garbage collector until the process ends.
pub async fn run(informers: Informers) {
    let client = informers.client();
    let changed = Arc::new(tokio::sync::Notify::new());
    let daemonsets = informers.daemonsets().ready_cache(&changed).await;
    let services = informers.services().ready_cache(&changed).await;
    let endpoints = informers.endpoints().ready_cache(&changed).await;
    let pods = informers.pods().ready_cache(&changed).await;
    let revisions = informers.revisions().ready_cache(&changed).await;
    let slices = informers.endpoint_slices().ready_cache(&changed).await;
    loop {
        let (daemonsets, services, endpoints) =
            (daemonsets.state(), services.state(), endpoints.state());
        let (pods, revisions, slices) = (pods.state(), revisions.state(), slices.state());
        let owners: Vec<Seen<'_>> = Seen::all(Kind::DaemonSet, &daemonsets)
            .chain(Seen::all(Kind::Service, &services))
            .chain(Seen::all(Kind::Endpoints, &endpoints))
            .collect();
        let dependents: Vec<Seen<'_>> = Seen::all(Kind::Pod, &pods)
            .chain(Seen::all(Kind::ControllerRevision, &revisions))
            .chain(Seen::all(Kind::EndpointSlice, &slices))
            .collect();
        let actions = plan(&owners, &dependents);
        if let Err(e) = execute(&client, &actions).await {
            tracing::warn!(error = %e, "garbage collection pass failed; retrying");
        }
        // Level-triggered: look again on any change, and at least every few seconds; a pass
        // reads every pod, so bursts of changes are coalesced into one pass per 200 ms.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), changed.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    //! Spec §5.8, the collector's side, one test per scenario, on the pure `plan`.
    use super::*;
    use crate::daemonset::backoff::Backoff;
    use crate::daemonset::pass::{PassInput, sync};
    use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::ResourceExt;

    fn owner(name: &str, uid: &str) -> serde_json::Value {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true})
    }

    fn ds(name: &str, finalizers: &[&str], deleting: bool) -> Arc<DaemonSet> {
        let mut v = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"), "resourceVersion": "7", "finalizers": finalizers},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(v).expect("ds"))
    }

    fn pod(name: &str, owners: serde_json::Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"), "ownerReferences": owners}})).expect("pod"))
    }

    fn revision(name: &str, owners: serde_json::Value) -> Arc<ControllerRevision> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"), "ownerReferences": owners}, "revision": 1})).expect("revision"))
    }

    /// Three pods and two revisions of `foo`, one pod of `bar`, one pod owned by a ReplicaSet.
    fn world() -> (Vec<Arc<Pod>>, Vec<Arc<ControllerRevision>>) {
        let foo = json!([owner("foo", "foo-uid")]);
        let pods = vec![
            pod("foo-a", foo.clone()),
            pod("foo-b", foo.clone()),
            pod("foo-c", foo.clone()),
            pod("bar-a", json!([owner("bar", "bar-uid")])),
            pod(
                "rs-a",
                json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-uid"}]),
            ),
        ];
        let revisions = vec![revision("foo-1", foo.clone()), revision("foo-2", foo)];
        (pods, revisions)
    }

    /// The collector's plan over DaemonSets, pods and revisions.
    fn plan(
        daemonsets: &[Arc<DaemonSet>],
        pods: &[Arc<Pod>],
        revisions: &[Arc<ControllerRevision>],
    ) -> Vec<Action> {
        let owners: Vec<Seen<'_>> = Seen::all(Kind::DaemonSet, daemonsets).collect();
        let dependents: Vec<Seen<'_>> = Seen::all(Kind::Pod, pods)
            .chain(Seen::all(Kind::ControllerRevision, revisions))
            .collect();
        super::plan(&owners, &dependents)
    }

    fn names(actions: &[Action]) -> Vec<String> {
        let mut names: Vec<String> = actions
            .iter()
            .map(|a| match a {
                Action::Orphan { dependent, .. } => format!("orphan {}", dependent.name),
                Action::Delete { dependent } => format!("delete {}", dependent.name),
                Action::DeleteIfOwnersGone { dependent, .. } => format!("gone {}", dependent.name),
                Action::RemoveFinalizer {
                    name, finalizer, ..
                } => {
                    format!("finish {name} {finalizer}")
                }
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn s140_background_delete_removes_pods_and_revisions() {
        // Background deletion removes the DaemonSet at once; its dependents remain with
        // references to an owner the cache no longer has.
        let (pods, revisions) = world();
        let actions = plan(&[ds("bar", &[], false)], &pods, &revisions);
        assert_eq!(
            names(&actions),
            [
                "gone foo-1",
                "gone foo-2",
                "gone foo-a",
                "gone foo-b",
                "gone foo-c"
            ]
        );
        // Each is deleted only after a live read shows the owner gone.
        assert!(actions.iter().all(|a| matches!(a,
            Action::DeleteIfOwnersGone { owners, .. } if owners == &[(Kind::DaemonSet, "foo".to_owned(), "foo-uid".to_owned())])));
    }

    #[test]
    fn s141_foreground_delete_deletes_dependents_first_and_creates_no_replacements() {
        let (mut pods, mut revisions) = world();
        let foo = ds("foo", &[FOREGROUND], true);
        let bar = ds("bar", &[], false);
        assert_eq!(
            names(&plan(
                &[Arc::clone(&foo), Arc::clone(&bar)],
                &pods,
                &revisions
            )),
            [
                "delete foo-1",
                "delete foo-2",
                "delete foo-a",
                "delete foo-b",
                "delete foo-c"
            ]
        );
        // The DaemonSet controller leaves a DaemonSet being deleted alone: no replacements.
        let nodes: Vec<Arc<k8s_openapi::api::core::v1::Node>> = vec![serde_json::from_value(
            json!({"metadata": {"name": "n1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .map(Arc::new)
        .expect("node")];
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(900));
        let no_pods: Vec<Arc<Pod>> = Vec::new();
        let pass = sync(&PassInput {
            ds: &foo,
            nodes: &nodes,
            pods: &no_pods,
            revisions: &[],
            backoff: &backoff,
            expectations_satisfied: true,
            progress: None,
            shutdown_aware: true,
            now: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        });
        assert!(pass.plan().is_none_or(|plan| plan.creates.is_empty()));
        // While dependents are terminating, nothing more to do and the finalizer stays.
        let terminating = |p: &Arc<Pod>| {
            let mut p = (**p).clone();
            p.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
            Arc::new(p)
        };
        pods = pods
            .iter()
            .map(|p| {
                if p.name_any().starts_with("foo") {
                    terminating(p)
                } else {
                    Arc::clone(p)
                }
            })
            .collect();
        revisions.clear();
        assert!(plan(&[Arc::clone(&foo), Arc::clone(&bar)], &pods, &revisions).is_empty());
        // Once they are gone, the DaemonSet may go.
        pods.retain(|p| !p.name_any().starts_with("foo"));
        assert_eq!(
            plan(&[foo, bar], &pods, &revisions),
            [Action::RemoveFinalizer {
                kind: Kind::DaemonSet,
                namespace: "default".into(),
                name: "foo".into(),
                finalizer: FOREGROUND,
                resource_version: Some("7".into()),
            }]
        );
    }

    #[test]
    fn s142_orphan_delete_removes_owner_references_then_the_finalizer() {
        let (pods, revisions) = world();
        let actions = plan(
            &[ds("foo", &[ORPHAN], true), ds("bar", &[], false)],
            &pods,
            &revisions,
        );
        assert_eq!(
            names(&actions),
            [
                "finish foo orphan",
                "orphan foo-1",
                "orphan foo-2",
                "orphan foo-a",
                "orphan foo-b",
                "orphan foo-c"
            ]
        );
        assert!(
            matches!(actions.last(), Some(Action::RemoveFinalizer { .. })),
            "the finalizer goes only after every dependent is orphaned"
        );
        // Orphaned dependents have no DaemonSet owner left: never collected.
        let orphaned: Vec<Arc<Pod>> = pods
            .iter()
            .map(|p| {
                let mut p = (**p).clone();
                if p.name_any().starts_with("foo") {
                    p.metadata.owner_references = None;
                }
                Arc::new(p)
            })
            .collect();
        assert!(plan(&[ds("bar", &[], false)], &orphaned, &[]).is_empty());
    }

    #[test]
    fn s144_delete_collection_collects_every_daemonsets_dependents() {
        // DELETE on the collection deletes each DaemonSet in the background: afterwards
        // neither foo nor bar is in the cache, and all their dependents go; the
        // ReplicaSet's pod is not ours to judge.
        let (pods, revisions) = world();
        assert_eq!(
            names(&plan(&[], &pods, &revisions)),
            [
                "gone bar-a",
                "gone foo-1",
                "gone foo-2",
                "gone foo-a",
                "gone foo-b",
                "gone foo-c"
            ]
        );
    }

    #[test]
    fn a_recreated_owner_with_the_same_name_is_checked_by_uid() {
        // The dependent names its owner by uid; a new foo (new uid) does not save it,
        // which the live read in `execute` decides from the returned uid.
        let (pods, _) = world();
        let mut new_foo = (*ds("foo", &[], false)).clone();
        new_foo.metadata.uid = Some("foo-uid-2".into());
        let actions = plan(&[Arc::new(new_foo)], &pods[..1], &[]);
        assert_eq!(names(&actions), ["gone foo-a"]);
    }
}
