//! Node shutdown without a recreate loop (beyond.md §5). An agent stopping gracefully first
//! says so on its Node: condition `ShuttingDown` True and the taint
//! `everynode.dev/shutting-down:NoSchedule`. The DaemonSet controller then creates no pod there,
//! even for pods that tolerate every taint, while the agent terminates its pods. Upstream
//! kubelet says nothing the controller can read, so a DaemonSet tolerating everything
//! recreates its pod on the node it is leaving, over and over (kubernetes#122912).
//!
//! The agent clears both when it starts again: registration writes the node's conditions
//! whole (which drops `ShuttingDown`), and [`clear`] removes the taint.

use everynode_api::daemonset::{SHUTTING_DOWN_CONDITION, SHUTTING_DOWN_TAINT};
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// Attempts at a taint change that lost a race with another writer of the node's taints (the
/// node lifecycle controller): each reads the node again.
const ATTEMPTS: usize = 5;

/// Errors of marking or clearing; the caller logs them (shutdown goes on regardless).
#[derive(Debug, thiserror::Error)]
#[error("node {node}: {source}")]
pub struct ShutdownError {
    node: String,
    source: kube::Error,
}

fn taint() -> Taint {
    Taint {
        key: SHUTTING_DOWN_TAINT.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    }
}

fn taints_of(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

/// Sets the node's taints to what `change` makes of the current ones, with the
/// resourceVersion read as a precondition, so a taint another writer added meanwhile is
/// never dropped. Does nothing when `change` leaves them as they are.
async fn update_taints(
    api: &Api<Node>,
    name: &str,
    change: impl Fn(&mut Vec<Taint>),
) -> Result<(), kube::Error> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let node = api.get(name).await?;
        let current = taints_of(&node);
        let mut wanted = current.clone();
        change(&mut wanted);
        if wanted == current {
            return Ok(());
        }
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"taints": wanted},
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => last = Some(kube::Error::Api(e)),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        kube::Error::Service("the node's taints kept changing under the agent".into())
    }))
}

/// The condition this agent writes while it stops its pods.
pub fn condition(now: jiff::Timestamp) -> NodeCondition {
    NodeCondition {
        type_: SHUTTING_DOWN_CONDITION.into(),
        status: "True".into(),
        reason: Some("GracefulShutdown".into()),
        message: Some("the agent is stopping; its pods are being terminated".into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Marks the node shutting down: the condition first, so the pass that the taint's change
/// wakes already sees it.
pub async fn mark(api: &Api<Node>, name: &str, now: jiff::Timestamp) -> Result<(), ShutdownError> {
    let err = |source| ShutdownError {
        node: name.to_owned(),
        source,
    };
    let node = api.get(name).await.map_err(err)?;
    let mut conditions: Vec<NodeCondition> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions.retain(|c| c.type_ != SHUTTING_DOWN_CONDITION);
    conditions.push(condition(now));
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"conditions": conditions}})),
    )
    .await
    .map_err(err)?;
    update_taints(api, name, |taints| {
        if !taints.iter().any(|t| t.key == SHUTTING_DOWN_TAINT) {
            taints.push(taint());
        }
    })
    .await
    .map_err(err)
}

/// Removes the taint a previous run left (its condition went when the node registered).
pub async fn clear(api: &Api<Node>, name: &str) -> Result<(), ShutdownError> {
    update_taints(api, name, |taints| {
        taints.retain(|t| t.key != SHUTTING_DOWN_TAINT)
    })
    .await
    .map_err(|source| ShutdownError {
        node: name.to_owned(),
        source,
    })
}
