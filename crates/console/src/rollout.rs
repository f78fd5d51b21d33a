//! Steering a rollout from the DaemonSet's page (beyond.md §1–§3, §6): its conditions in words
//! with their time, and the controls (pause, resume, partition, canary node selector, promote,
//! progress deadline, automatic rollback, unready nodes), which are the `everynode.dev/`
//! annotations kubectl users set. The API server validates them: a refused value comes back on
//! its input.

use crate::error::ConsoleError;
use everynode_api::rollout_controls::{
    AUTO_ROLLBACK, CANARY_NODE_SELECTOR, PARTITION, PAUSED, PROGRESS_DEADLINE_SECONDS,
    UNREADY_NODES,
};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::jiff::Timestamp;
use maud::{Markup, html};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

/// The conditions the controller writes, in the order a reader wants them.
const CONDITIONS: [&str; 3] = ["Progressing", "Available", "RolledBack"];

/// Each control: its form input, its annotation, and its label.
const INPUTS: [(&str, &str, &str); 4] = [
    (
        "partition",
        PARTITION,
        "Partition: nodes kept at their revision (a number, or a percentage like 30%)",
    ),
    (
        "canary",
        CANARY_NODE_SELECTOR,
        "Canary node selector: only matching nodes update (zone=a,tier in (edge,core))",
    ),
    (
        "deadline",
        PROGRESS_DEADLINE_SECONDS,
        "Upgrade maximum duration (seconds without progress before the rollout is marked failed)",
    ),
    ("unready", UNREADY_NODES, "Unready nodes"),
];

/// The conditions in words, each with how long it has held.
pub fn conditions(ds: &DaemonSet, now: Timestamp) -> Markup {
    let all = ds
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let shown: Vec<_> = CONDITIONS
        .iter()
        .filter_map(|kind| all.iter().find(|c| c.type_ == *kind))
        .collect();
    html! {
        @if !shown.is_empty() {
            ul.conditions #conditions {
                @for c in shown {
                    li data-condition=(c.type_) data-status=(c.status) {
                        b { (c.type_) } " " (c.status)
                        @if let Some(reason) = &c.reason { " · " code { (reason) } }
                        @if let Some(message) = &c.message { " — " (message) }
                        @if let Some(t) = &c.last_transition_time {
                            span.muted { " (for "
                                (everynode_api::table::human_duration(now.duration_since(t.0).as_secs()))
                                ")" }
                        }
                    }
                }
            }
        }
    }
}

fn annotation<'a>(ds: &'a DaemonSet, key: &str) -> Option<&'a str> {
    ds.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The form input a cause's field names: `metadata.annotations[everynode.dev/partition]`.
fn input_for(field: &str) -> Option<&'static str> {
    let key = field
        .strip_prefix("metadata.annotations[")?
        .strip_suffix(']')?;
    if key == AUTO_ROLLBACK {
        return Some("autoRollback");
    }
    INPUTS
        .iter()
        .find(|(_, k, _)| *k == key)
        .map(|(i, _, _)| *i)
}

/// The controls, with the server's refusal (if any) on the inputs it names.
pub fn controls(ns: &str, name: &str, ds: &DaemonSet, problem: Option<&ConsoleError>) -> Markup {
    let errors: HashMap<&str, &str> = problem
        .map(|p| p.causes())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| Some((input_for(&c.field)?, c.message.as_str())))
        .collect();
    let paused = annotation(ds, PAUSED) == Some("true");
    let auto_rollback = annotation(ds, AUTO_ROLLBACK) == Some("true");
    let action = format!("/ui/daemonsets/{ns}/{name}/rollout");
    html! {
        form.card #rollout-controls method="post" action=(action) {
            h2 { "Rollout" }
            p {
                @if paused { b { "Paused" } ": a template change replaces no pod until resumed. " }
                @else { "Rolling as the update strategy says. " }
                @if paused {
                    button type="submit" name="action" value="resume" { "Resume" }
                } @else {
                    button type="submit" name="action" value="pause" { "Pause" }
                }
                " "
                button type="submit" name="action" value="promote"
                    title="Remove the partition and the canary selector: every node updates" { "Promote" }
            }
            @for (input, key, label) in INPUTS {
                @let value = annotation(ds, key).unwrap_or_default();
                @let error = errors.get(input);
                label {
                    (label)
                    @if input == "unready" {
                        select name=(input) aria-invalid=[error.map(|_| "true")] {
                            option value="" selected[value.is_empty()] { "count against maxUnavailable (upstream)" }
                            option value="exclude-from-budget" selected[value == "exclude-from-budget"] { "leave out of the budget" }
                        }
                    } @else {
                        input name=(input) value=(value) aria-invalid=[error.map(|_| "true")];
                    }
                    @if let Some(e) = error { span.field-error role="alert" { (e) } }
                }
            }
            label.check {
                input type="checkbox" name="autoRollback" value="true" checked[auto_rollback]
                    aria-invalid=[errors.get("autoRollback").map(|_| "true")];
                "Roll back automatically to the last complete revision when the duration passes"
                @if let Some(e) = errors.get("autoRollback") { span.field-error role="alert" { (e) } }
            }
            button.primary type="submit" name="action" value="save" { "Save" }
        }
    }
}

/// The annotation patch a submitted form asks for: `null` removes an annotation.
pub fn patch(form: &BTreeMap<String, String>) -> Value {
    let mut annotations = Map::new();
    let field = |name: &str| form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    match form.get("action").map(String::as_str) {
        Some("pause") => {
            annotations.insert(PAUSED.into(), json!("true"));
        }
        Some("resume") => {
            annotations.insert(PAUSED.into(), Value::Null);
        }
        Some("promote") => {
            annotations.insert(PARTITION.into(), Value::Null);
            annotations.insert(CANARY_NODE_SELECTOR.into(), Value::Null);
        }
        _ => {
            for (input, key, _) in INPUTS {
                annotations.insert(key.into(), field(input).map_or(Value::Null, |v| json!(v)));
            }
            let auto = form.get("autoRollback").is_some_and(|v| v == "true");
            annotations.insert(
                AUTO_ROLLBACK.into(),
                if auto { json!("true") } else { Value::Null },
            );
        }
    }
    json!({"metadata": {"annotations": annotations}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn buttons_set_or_remove_one_control() {
        assert_eq!(
            patch(&form(&[("action", "pause")])),
            json!({"metadata": {"annotations": {PAUSED: "true"}}})
        );
        assert_eq!(
            patch(&form(&[("action", "promote"), ("partition", "3")])),
            json!({"metadata": {"annotations": {PARTITION: null, CANARY_NODE_SELECTOR: null}}})
        );
    }

    #[test]
    fn save_writes_every_control_and_removes_the_empty_ones() {
        let p = patch(&form(&[
            ("action", "save"),
            ("partition", " 30% "),
            ("canary", ""),
            ("deadline", "600"),
            ("autoRollback", "true"),
        ]));
        assert_eq!(
            p,
            json!({"metadata": {"annotations": {
                PARTITION: "30%", CANARY_NODE_SELECTOR: null, PROGRESS_DEADLINE_SECONDS: "600",
                UNREADY_NODES: null, AUTO_ROLLBACK: "true"}}})
        );
    }

    #[test]
    fn a_cause_names_its_input() {
        assert_eq!(
            input_for("metadata.annotations[everynode.dev/partition]"),
            Some("partition")
        );
        assert_eq!(
            input_for("metadata.annotations[everynode.dev/auto-rollback]"),
            Some("autoRollback")
        );
        assert_eq!(input_for("spec.template"), None);
    }
}
