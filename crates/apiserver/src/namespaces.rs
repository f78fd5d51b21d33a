//! What exists from the start (system namespaces, built-in PriorityClasses) and namespace
//! deletion: a terminating namespace is emptied, then its `kubernetes` finalizer is removed and
//! it goes. Upstream runs this in the controller manager; it is here because it has to empty
//! every resource the server serves, and it uses the same operations as any client request.

use crate::error::{ApiError, ApiResult};
use crate::registry::{DeleteOptions, Registry, Write};
use everynode_api::registry::{self, Kind};
use everynode_api::selector::{FieldSelector, Selector};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Namespaces that always exist.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The names of the namespaces the cache holds that are not being deleted: where the per-namespace
/// publishers (root CA, default ServiceAccount) keep their objects.
pub fn active(api: &Registry) -> Vec<String> {
    let ns = registry::by_kind(Kind::Namespace);
    let filter = Registry::filter(ns, None, Selector::everything(), FieldSelector::default());
    api.cache
        .list(&filter, None, 0)
        .items
        .into_iter()
        .filter_map(|obj| {
            let v: Value = serde_json::from_slice(&obj.json).ok()?;
            if v["metadata"].get("deletionTimestamp").is_some() {
                return None;
            }
            v["metadata"]["name"].as_str().map(str::to_owned)
        })
        .collect()
}

/// Wakes a per-namespace publisher when the objects it keeps may need it: a namespace, or one of
/// the kept objects, changed. Waiting on every write instead would run the publisher hundreds of
/// times a second while a fleet reports status.
pub struct Changes {
    api: Arc<Registry>,
    /// Each kind watched, with the object name it is narrowed to, if any.
    watched: Vec<(Kind, Option<&'static str>)>,
    handles: Vec<crate::cache::WatchHandle>,
}

impl Changes {
    pub fn new(api: Arc<Registry>, watched: Vec<(Kind, Option<&'static str>)>) -> Self {
        Changes {
            api,
            watched,
            handles: Vec::new(),
        }
    }

    /// Returns when something watched changed, or after `every` at the latest. Events that
    /// arrived together count once.
    pub async fn next(&mut self, every: Duration) {
        if self.handles.is_empty() {
            let from = self.api.cache.revision();
            let opened: Result<Vec<_>, _> = self
                .watched
                .iter()
                .map(|(kind, name)| {
                    let fields = name.map_or_else(FieldSelector::default, |n| {
                        FieldSelector(vec![everynode_api::selector::FieldTerm {
                            field: "metadata.name".into(),
                            negated: false,
                            value: n.into(),
                        }])
                    });
                    let filter = Registry::filter(
                        registry::by_kind(*kind),
                        None,
                        Selector::everything(),
                        fields,
                    );
                    self.api.cache.watch(filter, Some(from))
                })
                .collect();
            match opened {
                Ok(handles) => self.handles = handles,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot watch for namespace changes; polling");
                    tokio::time::sleep(every).await;
                    return;
                }
            }
        }
        let closed = {
            let any =
                futures::future::select_all(self.handles.iter_mut().map(|h| Box::pin(h.next())));
            matches!(tokio::time::timeout(every, any).await, Ok((None, _, _)))
        };
        if closed {
            // The cache closed a watch that fell behind: open new ones next time.
            self.handles.clear();
            return;
        }
        for handle in &mut self.handles {
            loop {
                match handle.try_next_or_closed() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(crate::cache::WatchClosed) => {
                        self.handles.clear();
                        return;
                    }
                }
            }
        }
    }
}

/// Creates the system namespaces and built-in PriorityClasses when absent.
pub async fn bootstrap(api: &Registry) -> ApiResult<()> {
    crate::registry::move_separately_stored_events(api.store.as_ref())
        .await
        .map_err(ApiError::storage)?;
    let ns = registry::by_kind(Kind::Namespace);
    for name in SYSTEM_NAMESPACES {
        if api.get(ns, None, name, false).await.is_err() {
            api.create(ns, None, json!({"metadata": {"name": name}}), false, None)
                .await?;
        }
    }
    let pc = registry::by_kind(Kind::PriorityClass);
    for (name, value, description) in [
        (
            "system-node-critical",
            2_000_001_000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        (
            "system-cluster-critical",
            2_000_000_000,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ] {
        if api.get(pc, None, name, false).await.is_err() {
            api.create(pc, None, json!({"metadata": {"name": name}, "value": value, "description": description, "globalDefault": false}), false, None).await?;
        }
    }
    // The daemon class (beyond.md §4), made once: a class an administrator has since changed
    // or made under that name is theirs.
    if let Some(name) = api
        .options
        .daemon_priority_class
        .as_deref()
        .filter(|n| !n.is_empty())
        && api.get(pc, None, name, false).await.is_err()
    {
        api.create(
            pc,
            None,
            json!({"metadata": {"name": name}, "value": crate::admission::DAEMON_PRIORITY_VALUE,
                "preemptionPolicy": "PreemptLowerPriority",
                "description": crate::admission::DAEMON_PRIORITY_DESCRIPTION, "globalDefault": false}),
            false,
            None,
        )
        .await?;
    }
    Ok(())
}

/// What the namespace controller found in a terminating namespace on one pass.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// `<plural>.<group>` (core resources as `pods.`) → objects left.
    pub remaining: Vec<(String, usize)>,
    /// Finalizer → objects still held by it.
    pub finalizers: Vec<(String, usize)>,
    /// Deletes that failed (not NotFound), as `<resource> "<name>": <message>`.
    pub failures: Vec<String>,
}

/// The namespace's deletion conditions, as upstream's namespace controller words them
/// (`NamespaceDeletionContentFailure`, `NamespaceContentRemaining`,
/// `NamespaceFinalizersRemaining`, and the two discovery conditions, which cannot fail here).
pub fn deletion_conditions(progress: &Progress, now: &str) -> Vec<Value> {
    let condition = |kind: &str, status: bool, reason: &str, message: String| json!({"type": kind, "status": if status { "True" } else { "False" }, "lastTransitionTime": now, "reason": reason, "message": message});
    // Sorted, as upstream sorts its messages.
    let listed = |items: &[(String, usize)], verb: &str| {
        let mut lines: Vec<String> = items
            .iter()
            .map(|(name, n)| format!("{name} {verb} {n} resource instances"))
            .collect();
        lines.sort();
        lines.join(", ")
    };
    vec![
        condition(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
        if progress.failures.is_empty() {
            condition(
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into(),
            )
        } else {
            condition(
                "NamespaceDeletionContentFailure",
                true,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    progress.failures.len(),
                    progress.failures.join(", ")
                ),
            )
        },
        if progress.remaining.is_empty() {
            condition(
                "NamespaceContentRemaining",
                false,
                "ContentRemoved",
                "All content successfully removed".into(),
            )
        } else {
            condition(
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                format!(
                    "Some resources are remaining: {}",
                    listed(&progress.remaining, "has")
                ),
            )
        },
        if progress.finalizers.is_empty() {
            condition(
                "NamespaceFinalizersRemaining",
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
            )
        } else {
            condition(
                "NamespaceFinalizersRemaining",
                true,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    listed(&progress.finalizers, "in")
                ),
            )
        },
    ]
}

/// Whether two condition lists say the same, apart from their times.
fn same_conditions(a: &Value, b: &[Value]) -> bool {
    let strip = |c: &Value| {
        let mut c = c.clone();
        if let Some(o) = c.as_object_mut() {
            o.remove("lastTransitionTime");
        }
        c
    };
    a.as_array()
        .is_some_and(|a| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| strip(x) == strip(y)))
}

/// Empties one terminating namespace, as upstream's namespace controller: every namespaced
/// object is deleted (in the background, pods gracefully), progress goes into the namespace's
/// conditions, and once nothing is left the `kubernetes` finalizer is removed. Returns true
/// when it is finished.
async fn finalize(api: &Registry, name: &str) -> ApiResult<bool> {
    let mut progress = Progress::default();
    let mut finalizers: std::collections::BTreeMap<String, usize> = Default::default();
    for res in registry::RESOURCES.iter().filter(|r| r.namespaced) {
        let filter = Registry::filter(
            res,
            Some(name),
            Selector::everything(),
            FieldSelector::default(),
        );
        let items = api.cache.list(&filter, None, 0).items;
        if items.is_empty() {
            continue;
        }
        progress
            .remaining
            .push((format!("{}.{}", res.plural, res.group), items.len()));
        for obj in items {
            let v: Value = serde_json::from_slice(&obj.json).unwrap_or(Value::Null);
            for f in v["metadata"]["finalizers"].as_array().into_iter().flatten() {
                *finalizers
                    .entry(f.as_str().unwrap_or("").to_owned())
                    .or_default() += 1;
            }
            if v["metadata"].get("deletionTimestamp").is_some() {
                continue;
            }
            let obj_name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let opts = DeleteOptions {
                propagation_policy: Some("Background".into()),
                ..Default::default()
            };
            if let Err(e) = api.delete(res, Some(name), &obj_name, &opts).await
                && e.code != axum::http::StatusCode::NOT_FOUND
            {
                tracing::warn!(namespace = name, object = obj_name, error = %e, "namespace cleanup could not delete an object");
                progress
                    .failures
                    .push(format!("{} {obj_name:?}: {}", res.plural, e.message));
            }
        }
    }
    progress.finalizers = finalizers.into_iter().collect();
    let done = progress.remaining.is_empty();
    let ns = registry::by_kind(Kind::Namespace);
    let now = everynode_clock::format_time(api.clock.now());
    let conditions = deletion_conditions(&progress, &now);
    api.update_with(&Write::system(ns, None, name), &|current| {
        let mut new = current.clone();
        if !same_conditions(&current["status"]["conditions"], &conditions) {
            new["status"]["conditions"] = json!(conditions);
        }
        if done {
            let kept: Vec<Value> = new["spec"]["finalizers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| *f != "kubernetes")
                .cloned()
                .collect();
            new["spec"]["finalizers"] = json!(kept);
        }
        Ok(new)
    })
    .await?;
    Ok(done)
}

/// Follows namespaces forever, finishing the deletion of terminating ones.
pub async fn run(api: Arc<Registry>) {
    let ns = registry::by_kind(Kind::Namespace);
    let mut last = 0;
    loop {
        let rev = api.cache.revision();
        if rev != last {
            last = rev;
            let filter =
                Registry::filter(ns, None, Selector::everything(), FieldSelector::default());
            for obj in api.cache.list(&filter, None, 0).items {
                let v: Value = serde_json::from_slice(&obj.json).unwrap_or(Value::Null);
                if v["metadata"].get("deletionTimestamp").is_none() {
                    continue;
                }
                let name = v["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                match finalize(&api, &name).await {
                    Ok(true) => tracing::info!(namespace = name, "namespace emptied and finalized"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(namespace = name, error = %e, "namespace finalization failed; will retry")
                    }
                }
            }
        }
        // Level-triggered: look again when anything changes, and at least every second.
        let _ = api.cache.wait_for(last + 1, Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(conditions: &'a [Value], kind: &str) -> &'a Value {
        conditions
            .iter()
            .find(|c| c["type"] == kind)
            .expect("the condition")
    }

    #[test]
    fn conditions_report_what_remains_as_upstream() {
        let progress = Progress {
            remaining: vec![("pods.".into(), 2), ("daemonsets.apps".into(), 1)],
            finalizers: vec![("example.com/hold".into(), 1)],
            failures: vec![],
        };
        let c = deletion_conditions(&progress, "2026-11-30T00:00:00Z");
        assert_eq!(c.len(), 5);
        let remaining = find(&c, "NamespaceContentRemaining");
        assert_eq!(remaining["status"], "True");
        assert_eq!(remaining["reason"], "SomeResourcesRemain");
        assert_eq!(
            remaining["message"],
            "Some resources are remaining: daemonsets.apps has 1 resource instances, pods. has 2 resource instances"
        );
        let finalizers = find(&c, "NamespaceFinalizersRemaining");
        assert_eq!(
            finalizers["message"],
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        );
        assert_eq!(
            find(&c, "NamespaceDeletionContentFailure")["status"],
            "False"
        );
    }

    #[test]
    fn an_empty_namespace_reports_its_content_removed() {
        let c = deletion_conditions(&Progress::default(), "t");
        assert_eq!(
            find(&c, "NamespaceContentRemaining")["reason"],
            "ContentRemoved"
        );
        assert_eq!(find(&c, "NamespaceFinalizersRemaining")["status"], "False");
        assert!(same_conditions(
            &json!(c.clone()),
            &deletion_conditions(&Progress::default(), "later")
        ));
    }
}
