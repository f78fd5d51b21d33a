//! "Which nodes gain, lose or restart a pod?", shown before a create, an edit or a YAML update
//! is confirmed. The console asks the server for a dry run of the write (so defaulting,
//! validation and admission are the real ones), then computes the answer with the same pure
//! function that serves `daemonsets/{name}/preview` (`everynode_api::preview`), over the nodes
//! and pods the signed-in user can read. It works against any cluster for that reason.
//!
//! A submission is applied only when it carries the digest of the one the user previewed: a
//! form changed after its preview is previewed again rather than applied unseen.

use crate::client::ApiClient;
use crate::daemonsets::Fleet;
use crate::error::{ConsoleError, ConsoleResult};
use crate::placement::{current_hash, owned_by};
use everynode_api::preview::{Action, Preview};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use maud::{Markup, html};
use serde_json::Value;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

/// The form field carrying the digest of the previewed submission.
pub const FIELD: &str = "previewed";

/// A stable digest of what a submission would write (the same text gives the same digest for
/// the life of the binary, which is all a preview-then-confirm round trip needs).
pub fn digest(submission: &[u8]) -> String {
    let mut h = std::hash::DefaultHasher::new();
    submission.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Whether `fields` confirm the submission whose digest is `expected`.
pub fn confirmed(fields: &BTreeMap<String, String>, expected: &str) -> bool {
    fields.get(FIELD).map(String::as_str) == Some(expected)
}

/// The preview of writing `new` (the server's dry-run answer) over `current` (None for a
/// create), and whether the user could list the nodes at all.
pub async fn compute(
    client: &ApiClient,
    new: &Value,
    current: Option<&DaemonSet>,
) -> ConsoleResult<(Preview, bool)> {
    let new: DaemonSet = serde_json::from_value(new.clone())
        .map_err(|e| ConsoleError::Internal(format!("the dry run's DaemonSet: {e}")))?;
    let ns = new.metadata.namespace.clone().unwrap_or_default();
    let fleet = Fleet::load(client, &ns).await?;
    let pods: Vec<Pod> = match current {
        Some(ds) => fleet
            .pods
            .iter()
            .filter(|p| owned_by(p, ds))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let current_hash = current.map(current_hash);
    let preview = everynode_api::preview::preview(
        &new,
        current_hash.as_deref(),
        &current_hash_of_new(&new, current),
        &fleet.nodes,
        &pods,
    );
    Ok((preview, !fleet.nodes.is_empty()))
}

/// The new template's hash: a create's dry run has no status, an update's keeps the stored
/// collision count, as the controller will hash it.
fn current_hash_of_new(new: &DaemonSet, current: Option<&DaemonSet>) -> String {
    let mut new = new.clone();
    if new.status.is_none() {
        new.status = current.and_then(|c| c.status.clone());
    }
    current_hash(&new)
}

fn action_word(a: &Action) -> &'static str {
    match a {
        Action::Create => "Create",
        Action::Delete => "Delete",
        Action::Replace => "Replace",
        Action::Keep => "Keep",
    }
}

/// The preview as a card: the counts in words, the batches, and the nodes grouped by action and
/// reason (the first few named), so ten thousand nodes stay a short table.
pub fn render(preview: &Preview, nodes_known: bool) -> Markup {
    let s = &preview.summary;
    let mut groups: BTreeMap<(u8, &str, &str), Vec<&str>> = BTreeMap::new();
    for n in &preview.nodes {
        let rank = match n.action {
            Action::Create => 0,
            Action::Delete => 1,
            Action::Replace => 2,
            Action::Keep => 3,
        };
        groups
            .entry((rank, action_word(&n.action), n.reason.as_str()))
            .or_default()
            .push(n.node.as_str());
    }
    let batch = preview.batches.first().map_or(0, Vec::len);
    html! {
        div.card #change-preview data-create=(s.create) data-delete=(s.delete)
            data-replace=(s.replace) data-keep=(s.keep) {
            h2 { "What this changes" }
            p.preview-summary {
                (s.create) " node" (plural(s.create)) " gain a pod, "
                (s.delete) " lose " (if s.delete == 1 { "its" } else { "theirs" }) ", "
                (s.replace) " restart " (if s.replace == 1 { "its pod" } else { "their pods" }) " with the new template, "
                (s.keep) " keep " (if s.keep == 1 { "its own" } else { "theirs" }) " as " (if s.keep == 1 { "it is" } else { "they are" }) "."
            }
            @if !preview.batches.is_empty() {
                p { "The rolling update replaces them in " (preview.batches.len()) " step" (plural(preview.batches.len()))
                    " of up to " (batch) " node" (plural(batch)) "." }
            }
            @if !preview.new_revision {
                p.muted { "The pod template does not change: no pod restarts." }
            }
            @if !nodes_known {
                p.muted { "Your role may not list nodes, so the nodes without a pod of this DaemonSet are not counted." }
            }
            @if !groups.is_empty() {
                table #preview-nodes {
                    thead { tr { th { "Action" } th { "Nodes" } th { "Why" } th { "Which" } } }
                    tbody {
                        @for ((_, action, reason), nodes) in &groups {
                            tr data-action=(action) {
                                td { (action) } td { (nodes.len()) } td { (reason) }
                                td { (nodes.iter().take(5).copied().collect::<Vec<_>>().join(", "))
                                    @if nodes.len() > 5 { " and " (nodes.len() - 5) " more" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use everynode_api::preview::{NodeAction, Summary};

    #[test]
    fn a_preview_reads_as_counts_and_groups_of_nodes() {
        let node = |n: usize, action: Action, reason: &str| NodeAction {
            node: format!("node-{n}"),
            action,
            reason: reason.to_owned(),
        };
        let mut nodes: Vec<NodeAction> = (1..=7)
            .map(|n| node(n, Action::Replace, "runs an older template"))
            .collect();
        nodes.push(node(
            8,
            Action::Keep,
            "no pod: UntoleratedTaint: a=b:NoSchedule",
        ));
        let p = Preview {
            summary: Summary {
                create: 0,
                delete: 0,
                replace: 7,
                keep: 1,
            },
            new_revision: true,
            batches: vec![vec!["node-1".into(); 2]; 4],
            nodes,
        };
        let html = render(&p, true).into_string();
        assert!(html.contains("0 nodes gain a pod, 0 lose theirs, 7 restart their pods with the new template, 1 keep its own as it is."), "{html}");
        assert!(html.contains("replaces them in 4 steps of up to 2 nodes"));
        assert!(html.contains("node-1, node-2, node-3, node-4, node-5 and 2 more"));
        assert!(html.contains(r#"data-replace="7""#));
    }

    #[test]
    fn the_digest_tells_submissions_apart() {
        assert_eq!(digest(b"a: 1"), digest(b"a: 1"));
        assert_ne!(digest(b"a: 1"), digest(b"a: 2"));
    }
}
