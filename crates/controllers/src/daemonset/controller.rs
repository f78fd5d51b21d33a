//! The DaemonSet controller's I/O: watches through the API, runs the pure pass, carries out its
//! plan (spec §2.7 order: history, claims, slow-start creates, deletes, cleanup, status).

use super::backoff::Backoff;
use super::pass::{self, HistoryOp, PassInput, Plan, PlannedEvent};
use crate::stores::reflect;
use everynode_api::daemonset as rules;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Controller errors. All are retried with backoff: they come from the API or from a pass that
/// could not finish (a hash collision, a scaling error, a vanished node).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Pass(String),
}

/// Writes this controller issued that it has not seen come back yet (upstream "expectations").
#[derive(Default)]
struct Pending {
    created: Vec<String>,
    deleted: Vec<String>,
    since: Option<Timestamp>,
}

/// Shared state of the controller.
pub struct Context {
    client: Client,
    nodes: Store<Node>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    backoff: Mutex<Backoff>,
    pending: Mutex<HashMap<String, Pending>>,
    burst: usize,
}

/// A periodic resync heals anything a missed event could leave behind (level-triggered).
const RESYNC: Duration = Duration::from_secs(30);

fn now() -> Timestamp {
    Timestamp::now()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Context {
    fn expectations_satisfied(&self, uid: &str, pods: &[Pod], now: Timestamp) -> bool {
        let mut pending = lock(&self.pending);
        let Some(p) = pending.get(uid) else {
            return true;
        };
        let expired = p
            .since
            .is_some_and(|s| now.duration_since(s).as_secs() >= 300);
        let by_name: HashMap<&str, &Pod> = pods
            .iter()
            .filter_map(|p| p.metadata.name.as_deref().map(|n| (n, p)))
            .collect();
        let created_seen = p.created.iter().all(|n| by_name.contains_key(n.as_str()));
        let deleted_seen = p.deleted.iter().all(|n| {
            by_name
                .get(n.as_str())
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
        });
        if expired || (created_seen && deleted_seen) {
            pending.remove(uid);
            return true;
        }
        false
    }
}

async fn record_event(client: &Client, ds: &DaemonSet, e: &PlannedEvent) {
    let involved = ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("DaemonSet".into()),
        name: Some(ds.name_any()),
        namespace: ds.namespace(),
        uid: ds.metadata.uid.clone(),
        resource_version: ds.metadata.resource_version.clone(),
        ..Default::default()
    };
    crate::events::record(
        client,
        involved,
        "daemonset-controller",
        e.warning,
        e.reason,
        &e.message,
    )
    .await;
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Carries out the history ops; a hash collision bumps collisionCount and fails the pass.
async fn run_history(client: &Client, ds: &DaemonSet, plan: &Plan) -> Result<(), Error> {
    let ns = ds.namespace().unwrap_or_default();
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for op in &plan.history {
        match op {
            HistoryOp::LabelLegacy { name } => {
                let patch = json!({"metadata": {"labels": {rules::HASH_LABEL: name}}});
                revisions
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            HistoryOp::Create(rev) => match revisions.create(&PostParams::default(), rev).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let existing = revisions.get(&rev.name_any()).await?;
                    if existing.data != rev.data {
                        let fresh = Api::<DaemonSet>::namespaced(client.clone(), &ns)
                            .get(&ds.name_any())
                            .await?;
                        let used = ds.status.as_ref().and_then(|s| s.collision_count);
                        let current = fresh.status.as_ref().and_then(|s| s.collision_count);
                        if used != current {
                            return Err(Error::Pass(format!(
                                "found a stale collision count ({used:?}, current {current:?}) for {}",
                                ds.name_any()
                            )));
                        }
                        let patch = json!({"status": {"collisionCount": current.unwrap_or(0) + 1}});
                        Api::<DaemonSet>::namespaced(client.clone(), &ns)
                            .patch_status(
                                &ds.name_any(),
                                &PatchParams::default(),
                                &Patch::Merge(&patch),
                            )
                            .await?;
                        return Err(Error::Pass(format!(
                            "controller revision {} collides with an existing one; collisionCount raised",
                            rev.name_any()
                        )));
                    }
                }
                Err(e) => return Err(e.into()),
            },
            HistoryOp::Renumber { name, revision } => {
                revisions
                    .patch(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"revision": revision})),
                    )
                    .await?;
            }
            HistoryOp::RelabelPod { name, hash } => {
                let patch = json!({"metadata": {"labels": {rules::HASH_LABEL: hash}}});
                if let Err(e) = pods
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    && !not_found(&e)
                {
                    return Err(e.into());
                }
            }
            HistoryOp::Delete { name } => {
                if let Err(e) = revisions.delete(name, &DeleteParams::default()).await
                    && !not_found(&e)
                {
                    return Err(e.into());
                }
            }
        }
    }
    Ok(())
}

/// Adds the controller reference, with the object's uid as precondition.
async fn adopt<K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug>(
    api: &Api<K>,
    name: &str,
    owner: &serde_json::Value,
    uid: &str,
) -> Result<(), Error> {
    let patch = json!({"metadata": {"ownerReferences": [owner], "uid": uid}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    Ok(())
}

/// Removes the reference to the DaemonSet `owner_uid`; an object already gone or changed is fine.
async fn release<K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug>(
    api: &Api<K>,
    name: &str,
    owner_uid: &str,
    uid: &str,
) -> Result<(), Error> {
    let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": uid}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 422 => Ok(()),
        other => other.map(|_| ()).map_err(Error::from),
    }
}

/// Adopts and releases (§2.5): adoption re-reads the DaemonSet first, so a deleted one adopts nothing.
async fn run_claims(
    client: &Client,
    ds: &DaemonSet,
    plan: &Plan,
    pods: &[Pod],
    revisions: &[ControllerRevision],
) -> Result<(), Error> {
    let ns = ds.namespace().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    if !plan.adopt_pods.is_empty() || !plan.adopt_revisions.is_empty() {
        let fresh = Api::<DaemonSet>::namespaced(client.clone(), &ns)
            .get(&ds.name_any())
            .await?;
        if fresh.metadata.uid.as_deref() != Some(uid.as_str())
            || fresh.metadata.deletion_timestamp.is_some()
        {
            return Err(Error::Pass(format!(
                "{}/{} was deleted or replaced; not adopting",
                ns,
                ds.name_any()
            )));
        }
    }
    let owner =
        serde_json::to_value(rules::controller_ref(ds)).map_err(|e| Error::Pass(e.to_string()))?;
    let uid_of = |name: &str, list: &[(&str, &str)]| {
        list.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, u)| (*u).to_owned())
            .unwrap_or_default()
    };
    let pod_uids: Vec<(&str, &str)> = pods
        .iter()
        .map(|p| {
            (
                p.metadata.name.as_deref().unwrap_or(""),
                p.metadata.uid.as_deref().unwrap_or(""),
            )
        })
        .collect();
    let rev_uids: Vec<(&str, &str)> = revisions
        .iter()
        .map(|r| {
            (
                r.metadata.name.as_deref().unwrap_or(""),
                r.metadata.uid.as_deref().unwrap_or(""),
            )
        })
        .collect();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let rev_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    for name in &plan.adopt_pods {
        adopt(&pod_api, name, &owner, &uid_of(name, &pod_uids)).await?;
    }
    for name in &plan.release_pods {
        release(&pod_api, name, &uid, &uid_of(name, &pod_uids)).await?;
    }
    for name in &plan.adopt_revisions {
        adopt(&rev_api, name, &owner, &uid_of(name, &rev_uids)).await?;
    }
    for name in &plan.release_revisions {
        release(&rev_api, name, &uid, &uid_of(name, &rev_uids)).await?;
    }
    Ok(())
}

/// Creates in slow-start batches (1, 2, 4, ...) and deletes concurrently (§2.7). Returns the
/// names written and the first error.
async fn run_pods(
    ctx: &Context,
    ds: &DaemonSet,
    plan: &Plan,
) -> (Vec<String>, Vec<String>, Option<Error>) {
    let ns = ds.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let (mut created, mut deleted, mut first_error) = (Vec::new(), Vec::new(), None);
    let creates: Vec<&String> = plan.creates.iter().take(ctx.burst).collect();
    let mut start = 0;
    let mut batch = 1;
    while start < creates.len() {
        let end = (start + batch).min(creates.len());
        let results = futures::future::join_all(creates[start..end].iter().map(|node| {
            let pod = rules::new_pod(ds, node, &plan.hash);
            let api = api.clone();
            async move { api.create(&PostParams::default(), &pod).await }
        }))
        .await;
        let mut failed = false;
        for r in results {
            match r {
                Ok(p) => {
                    let name = p.name_any();
                    record_event(
                        &ctx.client,
                        ds,
                        &PlannedEvent {
                            warning: false,
                            reason: "SuccessfulCreate",
                            message: format!("Created pod: {name}"),
                        },
                    )
                    .await;
                    created.push(name);
                }
                Err(kube::Error::Api(s))
                    if s.details.as_ref().is_some_and(|d| {
                        d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
                    }) => {}
                Err(e) => {
                    record_event(
                        &ctx.client,
                        ds,
                        &PlannedEvent {
                            warning: true,
                            reason: "FailedCreate",
                            message: format!("Error creating: {e}"),
                        },
                    )
                    .await;
                    failed = true;
                    first_error.get_or_insert(Error::Api(e));
                }
            }
        }
        if failed {
            break;
        }
        start = end;
        batch *= 2;
    }
    let deletes: Vec<&String> = plan.deletes.iter().take(ctx.burst).collect();
    let results = futures::future::join_all(deletes.iter().map(|name| {
        let api = api.clone();
        async move {
            (
                name.to_string(),
                api.delete(name, &DeleteParams::default()).await,
            )
        }
    }))
    .await;
    for (name, r) in results {
        match r {
            Ok(_) => {
                record_event(
                    &ctx.client,
                    ds,
                    &PlannedEvent {
                        warning: false,
                        reason: "SuccessfulDelete",
                        message: format!("Deleted pod: {name}"),
                    },
                )
                .await;
                deleted.push(name);
            }
            Err(e) if not_found(&e) => {}
            Err(e) => {
                record_event(
                    &ctx.client,
                    ds,
                    &PlannedEvent {
                        warning: true,
                        reason: "FailedDelete",
                        message: format!("Error deleting: {e}"),
                    },
                )
                .await;
                first_error.get_or_insert(Error::Api(e));
            }
        }
    }
    (created, deleted, first_error)
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    for ready in [
        ctx.nodes.wait_until_ready().await,
        ctx.pods.wait_until_ready().await,
        ctx.revisions.wait_until_ready().await,
    ] {
        ready.map_err(|e| Error::Pass(format!("caches not ready: {e}")))?;
    }
    let ns = ds.namespace().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let t = now();
    let nodes: Vec<Node> = ctx.nodes.state().iter().map(|n| (**n).clone()).collect();
    let pods: Vec<Pod> = ctx
        .pods
        .state()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .map(|p| (**p).clone())
        .collect();
    let revisions: Vec<ControllerRevision> = ctx
        .revisions
        .state()
        .iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
        .map(|r| (**r).clone())
        .collect();
    let satisfied = ctx.expectations_satisfied(&uid, &pods, t);
    let plan = {
        let backoff = lock(&ctx.backoff).clone();
        pass::sync(&PassInput {
            ds: &ds,
            nodes: &nodes,
            pods: &pods,
            revisions: &revisions,
            backoff: &backoff,
            expectations_satisfied: satisfied,
            now: t,
        })
    };
    for e in &plan.events {
        record_event(&ctx.client, &ds, e).await;
    }
    if plan.skip.is_some() {
        return Ok(Action::await_change());
    }
    if let Some(e) = &plan.error {
        return Err(Error::Pass(e.clone()));
    }
    run_history(&ctx.client, &ds, &plan).await?;
    run_claims(&ctx.client, &ds, &plan, &pods, &revisions).await?;
    {
        let mut backoff = lock(&ctx.backoff);
        for key in &plan.backoff_next {
            backoff.next(key, t);
        }
        backoff.gc(t);
    }
    let (created, deleted, pod_error) = run_pods(&ctx, &ds, &plan).await;
    if !created.is_empty() || !deleted.is_empty() {
        let mut pending = lock(&ctx.pending);
        let p = pending.entry(uid.clone()).or_default();
        p.created.extend(created);
        p.deleted.extend(deleted);
        p.since = Some(t);
    }
    let revisions_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    for name in &plan.cleanup {
        if let Err(e) = revisions_api.delete(name, &DeleteParams::default()).await
            && !not_found(&e)
        {
            tracing::warn!(revision = name, error = %e, "could not delete an old revision");
        }
    }
    if let Some(status) = &plan.status {
        let patch = json!({"status": status});
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        let written = api
            .patch_status(
                &ds.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
        // A pod error wins over a status error (spec S-072); a vanished DaemonSet needs no status.
        if let Err(e) = written
            && pod_error.is_none()
            && !not_found(&e)
        {
            return Err(e.into());
        }
    }
    if let Some(e) = pod_error {
        return Err(e);
    }
    if !satisfied {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    Ok(plan.requeue_after.map_or_else(
        || Action::requeue(RESYNC),
        |d| Action::requeue(d + Duration::from_millis(100)),
    ))
}

fn error_policy(ds: Arc<DaemonSet>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(daemonset = %ds.name_any(), namespace = ?ds.namespace(), %error, "sync failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

/// Runs the DaemonSet controller until the process ends.
pub async fn run(client: Client, burst: usize) {
    // Triggers come from the same reflectors that fill the stores a pass reads, so a pass never
    // sees a store older than the event that started it.
    let (nodes, node_events) = reflect(Api::<Node>::all(client.clone()));
    let (pods, pod_events) = reflect(Api::<Pod>::all(client.clone()));
    let (revisions, revision_events) = reflect(Api::<ControllerRevision>::all(client.clone()));
    let ctx = Arc::new(Context {
        client: client.clone(),
        nodes,
        pods,
        revisions,
        backoff: Mutex::new(Backoff::default()),
        pending: Mutex::new(HashMap::new()),
        burst,
    });
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let all = controller.store();
    let all_for_nodes = all.clone();
    controller
        .watches_stream(node_events, move |_node: Node| {
            all_for_nodes
                .state()
                .iter()
                .map(|d| ObjectRef::from_obj(&**d))
                .collect::<Vec<_>>()
        })
        .watches_stream(pod_events, move |pod: Pod| {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let owner = pod
                .metadata
                .owner_references
                .as_ref()
                .and_then(|o| o.iter().find(|r| r.controller == Some(true)).cloned());
            match owner {
                Some(o) if o.kind == "DaemonSet" => {
                    vec![ObjectRef::<DaemonSet>::new(&o.name).within(&ns)]
                }
                Some(_) => vec![],
                None => {
                    let labels = pod.metadata.labels.clone().unwrap_or_default();
                    all.state()
                        .iter()
                        .filter(|d| d.metadata.namespace.as_deref() == Some(ns.as_str()))
                        .filter(|d| {
                            everynode_api::selector::from_label_selector(
                                d.spec.as_ref().map(|s| &s.selector),
                            )
                            .is_ok_and(|s| !s.is_everything() && s.matches(&labels))
                        })
                        .map(|d| ObjectRef::from_obj(&**d))
                        .collect()
                }
            }
        })
        .owns_stream(revision_events)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
