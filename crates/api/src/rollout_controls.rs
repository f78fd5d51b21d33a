//! The rollout controls a DaemonSet carries as `everynode.dev/` annotations on its own metadata
//! (beyond.md §1): a progress deadline, automatic rollback, pause, a partition and a canary node
//! selector, and how unready nodes count against the budget. Annotations rather than fields keep
//! the manifest portable: an upstream cluster ignores them.
//!
//! One parser serves admission (every bad value is a 422 naming the annotation and the accepted
//! form) and the controller (which reads what admission let through, and treats anything that
//! does not parse, as on an object stored before validation, as absent).

use crate::field::{ErrorList, FieldError, Path};
use crate::selector::{self, Selector};
use std::collections::BTreeMap;

pub const PREFIX: &str = "everynode.dev/";
pub const PROGRESS_DEADLINE_SECONDS: &str = "everynode.dev/progress-deadline-seconds";
pub const AUTO_ROLLBACK: &str = "everynode.dev/auto-rollback";
pub const PAUSED: &str = "everynode.dev/paused";
pub const PARTITION: &str = "everynode.dev/partition";
pub const CANARY_NODE_SELECTOR: &str = "everynode.dev/canary-node-selector";
pub const UNREADY_NODES: &str = "everynode.dev/unready-nodes";

/// How many nodes a partition keeps at their current revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partition {
    Count(u32),
    /// A percentage of the desired nodes, rounded up.
    Percent(u32),
}

impl Partition {
    /// The number of nodes kept out of `desired`.
    pub fn kept(self, desired: usize) -> usize {
        match self {
            Partition::Count(n) => n as usize,
            Partition::Percent(p) => (desired * p as usize).div_ceil(100),
        }
    }
}

/// Whether pods on unready nodes use up maxUnavailable (§3.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnreadyNodes {
    /// Upstream: they do.
    #[default]
    Count,
    /// They do not, and the rolling update skips those nodes until they are Ready.
    ExcludeFromBudget,
}

/// The controls of one DaemonSet; the default is upstream's behaviour.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RolloutControls {
    pub progress_deadline_seconds: Option<u32>,
    pub auto_rollback: bool,
    pub paused: bool,
    pub partition: Option<Partition>,
    pub canary: Option<Selector>,
    pub unready_nodes: UnreadyNodes,
}

impl RolloutControls {
    /// Whether any control steers which nodes a template change replaces.
    pub fn steers(&self) -> bool {
        self.paused || self.partition.is_some() || self.canary.is_some()
    }
}

/// The largest value an int32 field holds: the bound upstream puts on counts and seconds.
const MAX_INT32: u32 = i32::MAX as u32;

fn path(key: &str) -> Path {
    Path::root("metadata").child("annotations").key(key)
}

fn boolean(key: &str, value: &str, errs: &mut ErrorList) -> bool {
    match value {
        "true" => true,
        "false" => false,
        other => {
            errs.push(FieldError::invalid(
                &path(key),
                other,
                "must be \"true\" or \"false\"",
            ));
            false
        }
    }
}

/// Reads the controls from a DaemonSet's annotations, with a field error for each bad value.
pub fn parse(annotations: &BTreeMap<String, String>) -> (RolloutControls, ErrorList) {
    let mut controls = RolloutControls::default();
    let mut errs = ErrorList::new();
    if let Some(v) = annotations.get(PROGRESS_DEADLINE_SECONDS) {
        match v.parse::<u32>() {
            Ok(s) if (1..=MAX_INT32).contains(&s) => controls.progress_deadline_seconds = Some(s),
            _ => errs.push(FieldError::invalid(
                &path(PROGRESS_DEADLINE_SECONDS),
                v.as_str(),
                "must be an integer number of seconds between 1 and 2147483647",
            )),
        }
    }
    if let Some(v) = annotations.get(AUTO_ROLLBACK) {
        controls.auto_rollback = boolean(AUTO_ROLLBACK, v, &mut errs);
        if controls.auto_rollback && !annotations.contains_key(PROGRESS_DEADLINE_SECONDS) {
            errs.push(FieldError::invalid(
                &path(AUTO_ROLLBACK),
                v.as_str(),
                format!("needs {PROGRESS_DEADLINE_SECONDS}: a rollout is rolled back when it passes its deadline"),
            ));
        }
    }
    if let Some(v) = annotations.get(PAUSED) {
        controls.paused = boolean(PAUSED, v, &mut errs);
    }
    if let Some(v) = annotations.get(PARTITION) {
        let parsed = match v.strip_suffix('%') {
            Some(p) => p
                .parse::<u32>()
                .ok()
                .filter(|p| *p <= 100)
                .map(Partition::Percent),
            None => v
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= MAX_INT32)
                .map(Partition::Count),
        };
        match parsed {
            Some(p) => controls.partition = Some(p),
            None => errs.push(FieldError::invalid(
                &path(PARTITION),
                v.as_str(),
                "must be a whole number of nodes (0 or more) or a percentage of the desired nodes from 0% to 100%, such as \"30%\"",
            )),
        }
    }
    if let Some(v) = annotations.get(CANARY_NODE_SELECTOR) {
        match selector::parse_label_selector(v) {
            Ok(s) if !v.trim().is_empty() => controls.canary = Some(s),
            Ok(_) => errs.push(FieldError::invalid(
                &path(CANARY_NODE_SELECTOR),
                v.as_str(),
                "must not be empty: it selects the nodes a rollout updates, such as \"zone=a,tier in (edge,core),!gpu\"",
            )),
            Err(e) => errs.push(FieldError::invalid(
                &path(CANARY_NODE_SELECTOR),
                v.as_str(),
                format!(
                    "must be a label selector such as \"zone=a,tier in (edge,core),!gpu\": {e}"
                ),
            )),
        }
    }
    if let Some(v) = annotations.get(UNREADY_NODES) {
        match v.as_str() {
            "count" => controls.unready_nodes = UnreadyNodes::Count,
            "exclude-from-budget" => controls.unready_nodes = UnreadyNodes::ExcludeFromBudget,
            other => errs.push(FieldError::not_supported(
                &path(UNREADY_NODES),
                other,
                &["count", "exclude-from-budget"],
            )),
        }
    }
    (controls, errs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn no_annotations_is_upstream() {
        let (c, errs) = parse(&BTreeMap::new());
        assert_eq!(c, RolloutControls::default());
        assert!(errs.is_empty());
        assert!(!c.steers());
    }

    #[test]
    fn every_control_reads() {
        let (c, errs) = parse(&annotations(&[
            (PROGRESS_DEADLINE_SECONDS, "600"),
            (AUTO_ROLLBACK, "true"),
            (PAUSED, "false"),
            (PARTITION, "25%"),
            (CANARY_NODE_SELECTOR, "zone=a,tier in (edge,core),!gpu"),
            (UNREADY_NODES, "exclude-from-budget"),
        ]));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(c.progress_deadline_seconds, Some(600));
        assert!(c.auto_rollback && !c.paused);
        assert_eq!(c.partition, Some(Partition::Percent(25)));
        assert!(c.canary.is_some());
        assert_eq!(c.unready_nodes, UnreadyNodes::ExcludeFromBudget);
    }

    /// B-07: a percentage partition keeps that share of the desired nodes, rounded up.
    #[test]
    fn b07_percentage_partition_rounds_up() {
        assert_eq!(Partition::Percent(25).kept(10), 3);
        assert_eq!(Partition::Percent(0).kept(10), 0);
        assert_eq!(Partition::Percent(100).kept(7), 7);
        assert_eq!(Partition::Count(3).kept(10), 3);
    }

    /// B-09: each bad value is a field error naming the annotation and the accepted form.
    #[test]
    fn b09_invalid_values_name_the_annotation() {
        let cases = [
            (PARTITION, "-1", "a whole number of nodes"),
            (PARTITION, "abc", "a whole number of nodes"),
            (PARTITION, "101%", "from 0% to 100%"),
            (CANARY_NODE_SELECTOR, "a in (", "must be a label selector"),
            (PROGRESS_DEADLINE_SECONDS, "0", "between 1 and 2147483647"),
            (
                PROGRESS_DEADLINE_SECONDS,
                "2147483648",
                "between 1 and 2147483647",
            ),
            (PROGRESS_DEADLINE_SECONDS, "10m", "between 1 and 2147483647"),
            (PAUSED, "yes", "\"true\" or \"false\""),
            (UNREADY_NODES, "ignore", "supported values"),
        ];
        for (key, value, says) in cases {
            let (_, errs) = parse(&annotations(&[(key, value)]));
            assert_eq!(errs.len(), 1, "{key}={value}: {errs:?}");
            let text = errs[0].to_string();
            assert!(
                text.starts_with(&format!("metadata.annotations[{key}]")),
                "{text}"
            );
            assert!(text.contains(says), "{key}={value}: {text}");
        }
        let (_, errs) = parse(&annotations(&[(AUTO_ROLLBACK, "yes")]));
        assert!(errs[0].to_string().contains("\"true\" or \"false\""));
        let (_, errs) = parse(&annotations(&[(AUTO_ROLLBACK, "true")]));
        assert!(errs[0].to_string().contains(PROGRESS_DEADLINE_SECONDS));
        let (_, errs) = parse(&annotations(&[(AUTO_ROLLBACK, "false")]));
        assert!(errs.is_empty());
    }
}
