//! The placement grid of a DaemonSet's page: one cell per node, coloured by its state, grouped
//! by reason code; a reason filter and a node filter narrow it, a click on a cell shows the
//! node's reason, message and pod. Live: the grid is re-rendered on every change to the
//! DaemonSet, the namespace's pods or the nodes, and the browser keeps the filters.
//!
//! Ten thousand nodes are ten thousand small inline elements carrying only what the detail box
//! needs (node, pod, message); the reason is carried once per group.

use crate::daemonsets::Fleet;
use crate::placement::{State, group, placement};
use everynode_api::placement::{NodeRow, Summary};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::jiff::Timestamp;
use maud::{Markup, html};
use std::collections::BTreeMap;

/// Groups in the order a user reads them: what is wrong first, what runs last.
fn group_rank(code: &str) -> (u8, &str) {
    let rank = match code {
        "CrashLoopBackOff" | "ImagePullBackOff" | "Unschedulable" => 0,
        "NodeUnready" | "Misscheduled" => 1,
        "Pending" | "ContainerCreating" | "NotReady" => 2,
        "Paused" | "Partitioned" | "OutsideCanary" => 3,
        "Running" => 5,
        _ => 4,
    };
    (rank, code)
}

/// The messages of a group, most common first, at most three, with their counts.
fn common_messages(rows: &[&NodeRow]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows {
        if let Some(m) = r.message.as_deref() {
            *counts.entry(m).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, usize)> =
        counts.into_iter().map(|(m, n)| (m.to_owned(), n)).collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(3);
    counts
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The filters, outside the live part so that typing survives a refresh: every reason code a
/// group can have.
pub fn tools() -> Markup {
    html! {
        div.table-tools #placement-tools {
            label { "Reason"
                select #placement-reason aria-label="Reason" {
                    option value="" { "All reasons" }
                    option value="Running" { "Running (no reason)" }
                    @for code in everynode_api::placement::REASON_CODES {
                        option value=(code) { (code) }
                    }
                }
            }
            label { "Node"
                input #placement-node type="search" placeholder="node name contains" aria-label="Node";
            }
            span.count.muted #placement-shown {}
        }
    }
}

/// The live part: counters, the legend, and the grid.
pub fn fragment(ds: &DaemonSet, fleet: &Fleet, now: Timestamp) -> Markup {
    let (summary, rows) = placement(ds, &fleet.nodes, &fleet.pods, now);
    render(&summary, &rows, fleet.nodes.is_empty())
}

fn render(summary: &Summary, rows: &[NodeRow], no_nodes: bool) -> Markup {
    let mut groups: BTreeMap<(u8, &str), Vec<&NodeRow>> = BTreeMap::new();
    for row in rows {
        groups.entry(group_rank(group(row))).or_default().push(row);
    }
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for row in rows {
        *states.entry(State::of(row).class()).or_default() += 1;
    }
    html! {
        div.card #placement-summary data-nodes=(summary.nodes) {
            div.counters {
                span { "Nodes " b { (summary.nodes) } }
                span { "Should run " b { (summary.should_run) } }
                span { "Scheduled " b { (summary.scheduled) } }
                span { "Ready " b { (summary.ready) } }
                span { "Available " b { (summary.available) } }
                span { "Up-to-date " b { (summary.updated) } }
            }
            p.legend {
                @for state in State::ALL {
                    @let n = states.get(state.class()).copied().unwrap_or(0);
                    @if n > 0 {
                        span { i class={"c " (state.class())} {} " " (state.class()) " " (n) }
                    }
                }
            }
            @if no_nodes {
                p.muted { "Your role may not list nodes: only nodes with a pod of this DaemonSet are known." }
            }
        }
        div #placement-grid {
            @for ((_, code), members) in &groups {
                section.group data-group=(code) data-count=(members.len()) {
                    h3 {
                        (code) " · " (members.len()) " node" (plural(members.len()))
                    }
                    @for (message, n) in common_messages(members) {
                        p.muted.message { (message) @if n != members.len() { " (" (n) ")" } }
                    }
                    div.cells {
                        @for r in members {
                            i class={"c " (State::of(r).class())} title=(r.node)
                                data-p=[r.pod.as_deref()] data-m=[r.message.as_deref()]
                                data-v=[r.revision.as_deref()] {}
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: &str, reason: Option<&str>, updated: bool) -> NodeRow {
        NodeRow {
            node: node.into(),
            should_run: true,
            pod: Some(format!("agent-{node}")),
            updated,
            reason: reason.map(str::to_owned),
            message: reason.map(|r| format!("because {r}")),
            ..NodeRow::default()
        }
    }

    #[test]
    fn cells_are_grouped_by_reason_failures_first_and_carry_their_node() {
        let rows = [
            row("n1", None, true),
            row("n2", Some("CrashLoopBackOff"), true),
            row("n3", None, true),
            row("n4", Some("UntoleratedTaint"), false),
        ];
        let html = render(&Summary::default(), &rows, false).into_string();
        let crash = html
            .find(r#"data-group="CrashLoopBackOff""#)
            .expect("crash group");
        let taint = html
            .find(r#"data-group="UntoleratedTaint""#)
            .expect("taint group");
        let running = html.find(r#"data-group="Running""#).expect("running group");
        assert!(crash < taint && taint < running);
        assert!(html.contains(r#"<i class="c failing" title="n2" data-p="agent-n2" data-m="because CrashLoopBackOff">"#));
        assert!(html.contains(r#"Running · 2 nodes"#));
    }
}
