//! The DaemonSet controller's I/O: watches through the API, runs the pure pass, carries out its
//! plan (spec §2.7 order: history, claims, slow-start creates, deletes, cleanup, status).

use super::backoff::Backoff;
use super::expectations::Expectations;
use super::pass::{self, HistoryOp, Pass, PassError, PassInput, Plan, PlannedEvent};
use super::rollback;
use super::triggers;
use crate::events::Recorder;
use crate::metrics::{DAEMONSET as METRICS, DAEMONSET_QUEUE, DaemonSetLabels};
use crate::stores::{Change, Informers};
use everynode_api::daemonset as rules;
use everynode_clock::SharedClock;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Controller errors. All are retried with backoff: they come from the API, from a pass that
/// could not decide, or from a revision name that collided.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Pass(#[from] PassError),
    /// The cached DaemonSet's collisionCount is behind the stored one: the cache is stale.
    #[error("found a stale collision count ({used:?}, current {current:?}) for {daemonset}")]
    StaleCollisionCount {
        daemonset: String,
        used: Option<i32>,
        current: Option<i32>,
    },
    /// A new revision's name was taken by another; collisionCount was raised for the next pass.
    #[error(
        "controller revision {revision} collides with an existing one; collisionCount raised to {count}"
    )]
    RevisionCollision { revision: String, count: i32 },
    /// The DaemonSet was deleted or replaced since the cache saw it, so it adopts nothing (S-027).
    #[error("{namespace}/{name} was deleted or replaced; not adopting")]
    NotAdopting { namespace: String, name: String },
    /// An owner reference or a template did not encode (never expected: both are typed).
    #[error("could not encode an owner reference or a template: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Shared state of the controller.
pub struct Context {
    client: Client,
    nodes: Store<Node>,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    backoff: Mutex<Backoff>,
    expectations: Mutex<Expectations>,
    burst: usize,
    /// When each DaemonSet's last pass ended and how long it took, for `pace`.
    last_pass: Mutex<HashMap<String, (tokio::time::Instant, Duration)>>,
    /// Each DaemonSet's rollout progress record (beyond.md §2), by uid.
    progress: Mutex<HashMap<String, super::progress::Progress>>,
    /// beyond.md §5; `--shutdown-aware-daemonsets=false` turns it off.
    shutdown_aware: bool,
    clock: SharedClock,
    events: Recorder,
    /// The controller's own cache of DaemonSets, to forget the metrics of deleted ones.
    daemonsets: Store<DaemonSet>,
    /// DaemonSets a change has triggered whose pass has not started (the queue's depth).
    queued: Mutex<HashSet<ObjectRef<DaemonSet>>>,
    /// DaemonSets with per-DaemonSet metric series.
    measured: Mutex<HashSet<DaemonSetLabels>>,
}

/// Publishes a pass's rollout record and write counts, and drops the series of DaemonSets
/// that no longer exist.
fn record_metrics(
    ctx: &Context,
    labels: &DaemonSetLabels,
    progress: Option<&super::progress::Progress>,
    written: (usize, usize),
) {
    if let Some(p) = progress {
        METRICS
            .rollout_started
            .get_or_create(labels)
            .set(p.started.as_second());
        METRICS
            .rollout_last_progress
            .get_or_create(labels)
            .set(p.since.as_second());
        METRICS
            .nodes_in_scope
            .get_or_create(labels)
            .set(i64::from(p.in_scope));
    }
    METRICS
        .pods_created
        .get_or_create(labels)
        .inc_by(written.0 as u64);
    METRICS
        .pods_deleted
        .get_or_create(labels)
        .inc_by(written.1 as u64);
    let mut measured = lock(&ctx.measured);
    measured.insert(labels.clone());
    measured.retain(|l| {
        let exists = ctx
            .daemonsets
            .get(&ObjectRef::new(&l.daemonset).within(&l.namespace))
            .is_some();
        if !exists {
            METRICS.rollout_started.remove(l);
            METRICS.rollout_last_progress.remove(l);
            METRICS.nodes_in_scope.remove(l);
            METRICS.pods_created.remove(l);
            METRICS.pods_deleted.remove(l);
        }
        exists
    });
}

/// A DaemonSet's passes are spaced so that they take at most 1/(1 + PASS_SPACING) of the
/// time. A pass reads every node (about 15 ms at 10,000 nodes) and, during a rollout, pod
/// events arrive faster than that, so back-to-back passes would hold a core the API server
/// and scheduler need; events that arrive during the wait are all taken in by the next pass.
/// Small clusters are unaffected: a 1 ms pass waits 4 ms.
const PASS_SPACING: u32 = 4;

/// The wait before a pass, given when the previous one ended and how long it took.
fn pace(last: Option<(tokio::time::Instant, Duration)>, now: tokio::time::Instant) -> Duration {
    let Some((ended, took)) = last else {
        return Duration::ZERO;
    };
    let gap = (took * PASS_SPACING).min(Duration::from_secs(1));
    gap.saturating_sub(now.saturating_duration_since(ended))
}

/// A periodic resync heals anything a missed event could leave behind (level-triggered).
const RESYNC: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn record_event(events: &Recorder, ds: &DaemonSet, e: &PlannedEvent) {
    let involved = ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("DaemonSet".into()),
        name: Some(ds.name_any()),
        namespace: ds.namespace(),
        uid: ds.metadata.uid.clone(),
        resource_version: ds.metadata.resource_version.clone(),
        ..Default::default()
    };
    events
        .record(involved, e.warning, e.reason, &e.message)
        .await;
}

/// A pod-control event (SuccessfulCreate, FailedDelete, ...) on the DaemonSet.
async fn pod_event(
    events: &Recorder,
    ds: &DaemonSet,
    warning: bool,
    reason: &'static str,
    message: String,
) {
    record_event(
        events,
        ds,
        &PlannedEvent {
            warning,
            reason,
            message,
        },
    )
    .await;
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The collisionCount to store after the revision name for the current template turned out to
/// be taken by different data (S-117): one more than the stored count, provided the pass used
/// the stored count (otherwise a newer pass already raised it).
fn raised_collision_count(cached: &DaemonSet, fresh: &DaemonSet) -> Result<i32, Error> {
    let used = cached.status.as_ref().and_then(|s| s.collision_count);
    let current = fresh.status.as_ref().and_then(|s| s.collision_count);
    if used != current {
        return Err(Error::StaleCollisionCount {
            daemonset: cached.name_any(),
            used,
            current,
        });
    }
    Ok(current.unwrap_or(0) + 1)
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
                    if existing.data == rev.data {
                        continue; // made by an earlier pass whose write we had not seen
                    }
                    let fresh = Api::<DaemonSet>::namespaced(client.clone(), &ns)
                        .get(&ds.name_any())
                        .await?;
                    let count = raised_collision_count(ds, &fresh)?;
                    let patch = json!({"status": {"collisionCount": count}});
                    Api::<DaemonSet>::namespaced(client.clone(), &ns)
                        .patch_status(
                            &ds.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await?;
                    return Err(Error::RevisionCollision {
                        revision: rev.name_any(),
                        count,
                    });
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
/// Adoption re-reads the DaemonSet uncached first (upstream's `RecheckDeletionTimestamp`): a
/// DaemonSet deleted or replaced since the cache saw it must not adopt, and the pass stops
/// before touching pods (S-027).
fn may_adopt(cached: &DaemonSet, fresh: &DaemonSet) -> Result<(), Error> {
    if fresh.metadata.uid != cached.metadata.uid || fresh.metadata.deletion_timestamp.is_some() {
        return Err(Error::NotAdopting {
            namespace: cached.namespace().unwrap_or_default(),
            name: cached.name_any(),
        });
    }
    Ok(())
}

async fn run_claims(
    client: &Client,
    ds: &DaemonSet,
    plan: &Plan,
    pods: &[Arc<Pod>],
    revisions: &[Arc<ControllerRevision>],
) -> Result<(), Error> {
    let ns = ds.namespace().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    if !plan.adopt_pods.is_empty() || !plan.adopt_revisions.is_empty() {
        let fresh = Api::<DaemonSet>::namespaced(client.clone(), &ns)
            .get(&ds.name_any())
            .await?;
        may_adopt(ds, &fresh)?;
    }
    let owner = serde_json::to_value(rules::controller_ref(ds)).map_err(Error::Encode)?;
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

/// Slow start (§2.7): `attempt` runs on batches of 1, 2, 4, ... items, concurrently within a
/// batch, and no further batch starts after one with a failure, so an API that refuses
/// (quota, admission) costs few calls. `Ok(None)` is a refusal that is not an error
/// (a terminating namespace, S-075). Returns what succeeded, with the items' indices, and
/// the first error.
pub async fn slow_start<T, R, E, F, Fut>(items: &[T], attempt: F) -> (Vec<(usize, R)>, Option<E>)
where
    F: Fn(&T) -> Fut,
    Fut: std::future::Future<Output = Result<Option<R>, E>>,
{
    let (mut done, mut first_error) = (Vec::new(), None);
    let (mut start, mut batch) = (0, 1);
    while start < items.len() && first_error.is_none() {
        let end = (start + batch).min(items.len());
        let results = futures::future::join_all(items[start..end].iter().map(&attempt)).await;
        for (offset, result) in results.into_iter().enumerate() {
            match result {
                Ok(Some(r)) => done.push((start + offset, r)),
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        start = end;
        batch *= 2;
    }
    (done, first_error)
}

/// Whether a create was refused because the namespace is being deleted: no error, no event.
fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.details.as_ref().is_some_and(|d| {
        d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
    }))
}

/// Pods written by one pass: (node, name) created, names deleted.
struct Written {
    created: Vec<(String, String)>,
    deleted: Vec<String>,
}

/// Deletes concurrently, then creates in slow-start batches (§2.7). Returns what was written
/// and the first error (a create error before a delete error).
async fn run_pods(ctx: &Context, ds: &DaemonSet, plan: &Plan) -> (Written, Option<Error>) {
    let ns = ds.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    // Deletes go first (upstream issues creates first): a surge rollout then never has more
    // than desired + maxSurge pods at any instant, not even for the moment between the two.
    let (mut deleted, mut delete_error) = (Vec::new(), None);
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
                pod_event(
                    &ctx.events,
                    ds,
                    false,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                )
                .await;
                deleted.push(name);
            }
            Err(e) if not_found(&e) => {}
            Err(e) => {
                pod_event(
                    &ctx.events,
                    ds,
                    true,
                    "FailedDelete",
                    format!("Error deleting: {e}"),
                )
                .await;
                delete_error.get_or_insert(Error::Api(e));
            }
        }
    }
    let creates: Vec<&String> = plan.creates.iter().take(ctx.burst).collect();
    let (done, create_error) = slow_start(&creates, |node| {
        let pod = rules::new_pod(ds, node, &plan.hash);
        let api = api.clone();
        async move {
            match api.create(&PostParams::default(), &pod).await {
                Ok(p) => {
                    let name = p.name_any();
                    pod_event(
                        &ctx.events,
                        ds,
                        false,
                        "SuccessfulCreate",
                        format!("Created pod: {name}"),
                    )
                    .await;
                    Ok(Some(name))
                }
                Err(e) if namespace_terminating(&e) => Ok(None),
                Err(e) => {
                    pod_event(
                        &ctx.events,
                        ds,
                        true,
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    )
                    .await;
                    Err(Error::Api(e))
                }
            }
        }
    })
    .await;
    let created: Vec<(String, String)> = done
        .into_iter()
        .map(|(i, name)| (creates[i].clone(), name))
        .collect();
    let first_error = create_error.or(delete_error);
    (Written { created, deleted }, first_error)
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = ds.namespace().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let last = lock(&ctx.last_pass).get(&uid).copied();
    let wait = pace(last, tokio::time::Instant::now());
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    {
        let mut queued = lock(&ctx.queued);
        queued.remove(&ObjectRef::from_obj(ds.as_ref()));
        METRICS
            .depth
            .get_or_create(&DAEMONSET_QUEUE)
            .set(queued.len() as i64);
    }
    let started = tokio::time::Instant::now();
    let action = pass_and_write(&ds, &ctx, &ns, &uid, started).await;
    METRICS
        .work
        .get_or_create(&DAEMONSET_QUEUE)
        .observe(started.elapsed().as_secs_f64());
    action
}

/// One pass and its writes.
async fn pass_and_write(
    ds: &DaemonSet,
    ctx: &Context,
    ns: &str,
    uid: &str,
    started: tokio::time::Instant,
) -> Result<Action, Error> {
    let (ds, ns, uid) = (ds, ns.to_owned(), uid.to_owned());
    let t = ctx.clock.now();
    let nodes: Vec<Arc<Node>> = ctx.nodes.state();
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let revisions: Vec<Arc<ControllerRevision>> = ctx
        .revisions
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let satisfied = lock(&ctx.expectations).satisfied(&uid, t);
    let backoff = lock(&ctx.backoff).clone();
    let progress = lock(&ctx.progress).get(&uid).cloned();
    let input = PassInput {
        ds,
        nodes: &nodes,
        pods: &pods,
        revisions: &revisions,
        backoff: &backoff,
        expectations_satisfied: satisfied,
        progress: progress.as_ref(),
        shutdown_aware: ctx.shutdown_aware,
        now: t,
    };
    let pass = pass::sync(&input);
    if let Some(record) = pass.plan().and_then(|p| p.progress.clone()) {
        lock(&ctx.progress).insert(uid.clone(), record);
    }
    lock(&ctx.last_pass).insert(
        uid.clone(),
        (tokio::time::Instant::now(), started.elapsed()),
    );
    for e in pass.events() {
        record_event(&ctx.events, ds, e).await;
    }
    let plan = match pass {
        Pass::Planned(plan) => plan,
        Pass::Skipped { .. } => return Ok(Action::await_change()),
        Pass::Failed { error, .. } => return Err(Error::Pass(error)),
    };
    run_history(&ctx.client, ds, &plan).await?;
    run_claims(&ctx.client, ds, &plan, &pods, &revisions).await?;
    if let Some(rollback) = &plan.rollback {
        restore_template(&ctx.client, ds, rollback).await?;
        record_event(&ctx.events, ds, &rollback.event).await;
    }
    {
        let mut backoff = lock(&ctx.backoff);
        for key in &plan.backoff_next {
            backoff.next(key, t);
        }
        backoff.gc(t);
    }
    let (creates, deletes) = (
        plan.creates.len().min(ctx.burst),
        plan.deletes.len().min(ctx.burst),
    );
    lock(&ctx.expectations).expect(&uid, creates, deletes, t);
    let (written, pod_error) = run_pods(ctx, ds, &plan).await;
    let labels = DaemonSetLabels {
        namespace: ns.clone(),
        daemonset: ds.name_any(),
    };
    record_metrics(
        ctx,
        &labels,
        plan.progress.as_ref(),
        (written.created.len(), written.deleted.len()),
    );
    lock(&ctx.expectations).lower(
        &uid,
        creates - written.created.len(),
        deletes - written.deleted.len(),
    );
    let status = if written.created.len() == plan.creates.len()
        && written.deleted.len() == plan.deletes.len()
    {
        plan.status.clone()
    } else {
        let created: Vec<String> = written.created.into_iter().map(|(node, _)| node).collect();
        pass::status_after(&input, &plan, &created, &written.deleted)
    };
    let revisions_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    for name in &plan.cleanup {
        if let Err(e) = revisions_api.delete(name, &DeleteParams::default()).await
            && !not_found(&e)
        {
            tracing::warn!(revision = name, error = %e, "could not delete an old revision");
        }
    }
    let mut status_error = None;
    if let Some(status) = &status {
        let patch = json!({"status": status});
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        let written = api
            .patch_status(
                &ds.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
        // A vanished DaemonSet needs no status.
        status_error = written.err().filter(|e| !not_found(e)).map(Error::from);
    }
    first_error(pod_error, status_error)?;
    if !plan.annotations.is_empty() {
        let annotations: serde_json::Map<String, serde_json::Value> = plan
            .annotations
            .iter()
            .map(|(key, value)| ((*key).to_owned(), json!(value)))
            .collect();
        let patch = json!({"metadata": {"annotations": annotations}});
        Api::<DaemonSet>::namespaced(ctx.client.clone(), &ns)
            .patch(
                &ds.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(Error::from)?;
    }
    if !satisfied {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    Ok(plan.requeue_after.map_or_else(
        || Action::requeue(RESYNC),
        |d| Action::requeue(d + Duration::from_millis(100)),
    ))
}

/// Writes back the template of the last complete revision (beyond.md §2.3) as `kubectl rollout
/// undo` does: the revision's own data is a strategic merge patch replacing the template. The
/// resourceVersion the pass read is a precondition, so a change made meanwhile by anyone else
/// wins and the next pass decides again.
async fn restore_template(
    client: &Client,
    ds: &DaemonSet,
    rollback: &rollback::Rollback,
) -> Result<(), Error> {
    let mut template = serde_json::to_value(&rollback.template).map_err(Error::Encode)?;
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    let patch = json!({
        "metadata": {
            "resourceVersion": ds.metadata.resource_version,
            "annotations": {rollback::ROLLED_BACK: rollback.event.message},
        },
        "spec": {"template": template},
    });
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), &ds.namespace().unwrap_or_default());
    api.patch(
        &ds.name_any(),
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await?;
    tracing::warn!(daemonset = %ds.name_any(), revision = %rollback.revision, "rolled back after the progress deadline");
    Ok(())
}

/// The error a pass returns (S-072): the status is written even when pods could not be, and a
/// pod error wins over a status error.
fn first_error(pod_error: Option<Error>, status_error: Option<Error>) -> Result<(), Error> {
    match pod_error.or(status_error) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn error_policy(ds: Arc<DaemonSet>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(daemonset = %ds.name_any(), namespace = ?ds.namespace(), %error, "sync failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

/// Lowers the expectations of the DaemonSet that owns a pod the watch shows added, being
/// deleted, or deleted (upstream's addPod, updatePod and deletePod).
fn observe(expectations: &Mutex<Expectations>, change: &Change<Pod>) {
    let owner = |p: &Pod| {
        triggers::controller_of(&p.metadata)
            .filter(|o| rules::is_daemonset_ref(o))
            .map(|o| o.uid.clone())
    };
    let deleting = |p: &Pod| p.metadata.deletion_timestamp.is_some();
    match (change.old.as_deref(), change.new.as_deref()) {
        (None, Some(new)) => {
            if let Some(uid) = owner(new) {
                let mut e = lock(expectations);
                if deleting(new) {
                    e.deletion_observed(&uid);
                } else {
                    e.add_observed(&uid);
                }
            }
        }
        (Some(old), Some(new)) if !deleting(old) && deleting(new) => {
            if let Some(uid) = owner(new) {
                lock(expectations).deletion_observed(&uid);
            }
        }
        (Some(old), None) => {
            if let Some(uid) = owner(old) {
                lock(expectations).deletion_observed(&uid);
            }
        }
        _ => {}
    }
}

/// Runs the DaemonSet controller until the process ends.
pub async fn run(informers: Informers, clock: SharedClock, burst: usize, shutdown_aware: bool) {
    // The shared caches are updated before their subscribers hear of a change, so a pass never
    // sees a store older than the change that started it; `triggers` picks the DaemonSets each
    // change concerns, from its old and new versions.
    let client = informers.client();
    let (nodes, pods, revisions) = (informers.nodes(), informers.pods(), informers.revisions());
    let (node_changes, pod_changes, revision_changes) =
        (nodes.changes(), pods.changes(), revisions.changes());
    // Passes read the caches only once they hold a full list.
    let (nodes, pods, revisions) = (
        nodes.ready_store().await,
        pods.ready_store().await,
        revisions.ready_store().await,
    );
    crate::metrics::init();
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let ctx = Arc::new(Context {
        daemonsets: controller.store(),
        queued: Mutex::default(),
        measured: Mutex::default(),
        client: client.clone(),
        nodes,
        pods,
        revisions,
        backoff: Mutex::new(Backoff::default()),
        expectations: Mutex::new(Expectations::default()),
        burst,
        last_pass: Mutex::new(HashMap::new()),
        progress: Mutex::new(HashMap::new()),
        shutdown_aware,
        events: Recorder::new(client.clone(), "daemonset-controller", clock.clone()),
        clock,
    });
    let all = controller.store();
    let (for_nodes, for_pods, for_revisions) = (all.clone(), all.clone(), all);
    let node_triggers = node_changes.map(move |c: Change<Node>| {
        triggers::for_node(c.old.as_deref(), c.new.as_deref(), &for_nodes.state())
    });
    let observer = Arc::clone(&ctx);
    let pod_triggers = pod_changes.map(move |c: Change<Pod>| {
        observe(&observer.expectations, &c);
        triggers::for_pod(c.old.as_deref(), c.new.as_deref(), &for_pods.state())
    });
    let revision_triggers = revision_changes.map(move |c: Change<ControllerRevision>| {
        triggers::for_revision(
            c.old.as_deref().map(|r| &r.metadata),
            c.new.as_deref().map(|r| &r.metadata),
            &for_revisions.state(),
        )
    });
    let triggered = futures::stream::select(
        futures::stream::select(node_triggers, pod_triggers),
        revision_triggers,
    )
    .flat_map(futures::stream::iter);
    let counter = Arc::clone(&ctx);
    let triggered = triggered.inspect(move |daemonset| {
        let mut queued = lock(&counter.queued);
        queued.insert(daemonset.clone());
        METRICS.adds.get_or_create(&DAEMONSET_QUEUE).inc();
        METRICS
            .depth
            .get_or_create(&DAEMONSET_QUEUE)
            .set(queued.len() as i64);
    });
    controller
        .reconcile_on(triggered)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
mod tests {
    //! Spec §5.2 scenarios about the controller's own steps (not the pure pass).
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ds(uid: &str) -> DaemonSet {
        serde_json::from_value(
            json!({"metadata": {"name": "foo", "namespace": "default", "uid": uid}}),
        )
        .expect("ds")
    }

    fn api_error(code: u16, reason: &str, cause: Option<&str>) -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(json!({"code": code, "reason": reason, "message": reason,
            "details": {"causes": cause.map(|c| vec![json!({"reason": c, "message": c})]).unwrap_or_default()}}))
            .expect("status");
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn passes_are_spaced_by_four_times_their_duration_at_most_a_second() {
        let t0 = tokio::time::Instant::now();
        assert_eq!(pace(None, t0), Duration::ZERO);
        let ms = Duration::from_millis;
        assert_eq!(pace(Some((t0, ms(20))), t0), ms(80));
        assert_eq!(pace(Some((t0, ms(20))), t0 + ms(50)), ms(30));
        assert_eq!(pace(Some((t0, ms(20))), t0 + ms(100)), Duration::ZERO);
        assert_eq!(pace(Some((t0, ms(900))), t0), Duration::from_secs(1));
    }

    #[test]
    fn s027_deletion_race_blocks_adoption() {
        let cached = ds("foo-uid");
        let mut fresh = ds("foo-uid");
        fresh.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert!(may_adopt(&cached, &fresh).is_err());
        assert!(
            may_adopt(&cached, &ds("other-uid")).is_err(),
            "replaced under the same name"
        );
        assert!(may_adopt(&cached, &ds("foo-uid")).is_ok());
    }

    #[tokio::test]
    async fn s069_slow_start_under_quota() {
        // 100 nodes; the API accepts 10 creations and refuses the rest.
        let nodes: Vec<usize> = (0..100).collect();
        let calls = AtomicUsize::new(0);
        let (done, error) = slow_start(&nodes, |_| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 10 {
                    Ok(Some(n))
                } else {
                    Err(api_error(403, "Forbidden", None))
                }
            }
        })
        .await;
        assert_eq!(done.len(), 10);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            15,
            "batches 1, 2, 4, 8, then stop"
        );
        assert!(error.is_some());
    }

    #[test]
    fn s117_hash_collision_raises_the_collision_count_once() {
        let stored = |count: Option<i32>| {
            let mut d = ds("foo-uid");
            d.status = Some(k8s_openapi::api::apps::v1::DaemonSetStatus {
                collision_count: count,
                ..Default::default()
            });
            d
        };
        assert_eq!(
            raised_collision_count(&stored(None), &stored(None)).ok(),
            Some(1)
        );
        assert_eq!(
            raised_collision_count(&stored(Some(1)), &stored(Some(1))).ok(),
            Some(2)
        );
        assert!(
            raised_collision_count(&stored(None), &stored(Some(1))).is_err(),
            "another pass already raised it"
        );
    }

    #[test]
    fn s072_error_precedence() {
        // Two errors told apart by their variant: a pod write's and a status write's.
        let pod = || {
            Some(Error::NotAdopting {
                namespace: "default".into(),
                name: "create".into(),
            })
        };
        let status = || Some(Error::Pass(PassError::NoMaxUnavailable));
        let is_pod = |r: Result<(), Error>| matches!(r, Err(Error::NotAdopting { .. }));
        let is_status = |r: Result<(), Error>| matches!(r, Err(Error::Pass(_)));
        assert!(is_pod(first_error(pod(), None)));
        assert!(is_status(first_error(None, status())));
        assert!(is_pod(first_error(pod(), status())));
        assert!(first_error(None, None).is_ok());
    }

    #[tokio::test]
    async fn s075_terminating_namespace_is_not_an_error() {
        assert!(namespace_terminating(&api_error(
            403,
            "Forbidden",
            Some("NamespaceTerminating")
        )));
        assert!(!namespace_terminating(&api_error(403, "Forbidden", None)));
        let nodes = [1, 2, 3];
        let (done, error) = slow_start(&nodes, |_| async {
            let e = api_error(403, "Forbidden", Some("NamespaceTerminating"));
            if namespace_terminating(&e) {
                Ok::<Option<()>, kube::Error>(None)
            } else {
                Err(e)
            }
        })
        .await;
        assert!(done.is_empty() && error.is_none());
    }
}
