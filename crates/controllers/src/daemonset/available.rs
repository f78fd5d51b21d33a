//! The `Available` condition of a DaemonSet (beyond.md §6): whether every node that should run
//! a pod runs an available one, and if not, why, grouped by reason with the first nodes of
//! each group named. Gathered in the pass's one walk over the nodes.

use super::first_named::FirstNamed;
use k8s_openapi::api::apps::v1::DaemonSetCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::borrow::Cow;

pub const CONDITION: &str = "Available";

/// At most this many nodes are named per group.
pub const NAMED: usize = 3;

/// Why one node has no available pod: a reason code of §6 and, for some, the detail
/// (`Pending` with the scheduler's message). Borrowed when fixed, so the 10,000 nodes of a
/// new DaemonSet, all `Pending (no pod yet)`, allocate nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Why {
    pub code: Cow<'static, str>,
    pub detail: Option<Cow<'static, str>>,
}

impl Why {
    pub fn new(code: impl Into<Cow<'static, str>>) -> Why {
        Why {
            code: code.into(),
            detail: None,
        }
    }

    pub fn with(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Why {
        Why {
            code: Cow::Borrowed(code),
            detail: Some(detail.into()),
        }
    }

    /// A node that should run a pod and has none yet.
    pub const NO_POD: Why = Why {
        code: Cow::Borrowed("Pending"),
        detail: Some(Cow::Borrowed("no pod yet")),
    };
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{} ({d})", self.code),
            None => f.write_str(&self.code),
        }
    }
}

/// Nodes of one reason: how many, and the first few by name.
type Group = FirstNamed<()>;

fn named(group: &Group) -> String {
    let names: Vec<&str> = group.first().iter().map(|(n, _)| n.as_str()).collect();
    let mut out = names.join(", ");
    if group.count() > names.len() {
        out.push_str(&format!(" and {} more", group.count() - names.len()));
    }
    out
}

/// The unavailable nodes of one pass, grouped.
#[derive(Clone, Debug)]
pub struct Unavailable {
    /// In order of first appearance; a pass sees few distinct reasons.
    groups: Vec<(Why, Group)>,
    /// Nodes left out of the budget as unready (`unready-nodes: exclude-from-budget`).
    unready: Group,
}

impl Default for Unavailable {
    fn default() -> Self {
        Unavailable {
            groups: Vec::new(),
            unready: Group::new(NAMED),
        }
    }
}

impl Unavailable {
    pub fn add(&mut self, node: &str, why: Why) {
        match self.groups.iter_mut().find(|(w, _)| *w == why) {
            Some((_, g)) => g.add(node, || ()),
            None => {
                let mut g = Group::new(NAMED);
                g.add(node, || ());
                self.groups.push((why, g));
            }
        }
    }

    pub fn add_unready(&mut self, node: &str) {
        self.unready.add(node, || ());
    }

    fn total(&self) -> usize {
        self.groups.iter().map(|(_, g)| g.count()).sum::<usize>() + self.unready.count()
    }
}

/// The condition after this pass; `lastTransitionTime` moves only when the status does.
pub fn available(
    unavailable: &Unavailable,
    stored: Option<&DaemonSetCondition>,
    now: Timestamp,
) -> DaemonSetCondition {
    let (status, reason, message) = if unavailable.total() == 0 {
        (
            "True",
            "AllNodesAvailable".to_owned(),
            "every node that should run a pod runs an available one".to_owned(),
        )
    } else {
        let mut groups: Vec<&(Why, Group)> = unavailable.groups.iter().collect();
        // The largest group first: it is the reason; ties keep the order seen.
        groups.sort_by_key(|(_, g)| std::cmp::Reverse(g.count()));
        let counted: usize = groups.iter().map(|(_, g)| g.count()).sum();
        let mut parts = Vec::new();
        if counted > 0 {
            let listed: Vec<String> = groups
                .iter()
                .map(|(why, g)| match &why.detail {
                    Some(d) => format!("{} {} ({d}: {})", g.count(), why.code, named(g)),
                    None => format!("{} {} ({})", g.count(), why.code, named(g)),
                })
                .collect();
            parts.push(format!("{counted} unavailable: {}", listed.join(", ")));
        }
        let unready = &unavailable.unready;
        if unready.count() > 0 {
            let pods = if unready.count() == 1 { "pod" } else { "pods" };
            parts.push(format!(
                "{} {pods} unavailable on unready nodes ({}), not counted against maxUnavailable",
                unready.count(),
                named(unready)
            ));
        }
        let reason = groups
            .first()
            .map_or_else(|| "NodeUnready".to_owned(), |(why, _)| why.code.to_string());
        ("False", reason, parts.join("; "))
    };
    let transition = match stored {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    DaemonSetCondition {
        type_: CONDITION.into(),
        status: status.into(),
        reason: Some(reason),
        message: Some(message),
        last_transition_time: transition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(m: &str) -> Why {
        Why::with("Pending", m.to_owned())
    }

    #[test]
    fn groups_by_reason_naming_the_first_three_nodes_of_each() {
        let mut u = Unavailable::default();
        for i in (1..=9).rev() {
            u.add(&format!("node-{i}"), pending("Insufficient cpu"));
        }
        for i in 10..13 {
            u.add(&format!("node-{i}"), Why::new("CrashLoopBackOff"));
        }
        let c = available(&u, None, Timestamp::UNIX_EPOCH);
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some("Pending"))
        );
        assert_eq!(
            c.message.as_deref(),
            Some(
                "12 unavailable: 9 Pending (Insufficient cpu: node-1, node-2, node-3 and 6 more), \
                 3 CrashLoopBackOff (node-10, node-11, node-12)"
            )
        );
    }

    #[test]
    fn b10_unready_nodes_are_named_apart() {
        let mut u = Unavailable::default();
        u.add_unready("node-9");
        u.add_unready("node-8");
        let c = available(&u, None, Timestamp::UNIX_EPOCH);
        assert_eq!(c.reason.as_deref(), Some("NodeUnready"));
        assert_eq!(
            c.message.as_deref(),
            Some(
                "2 pods unavailable on unready nodes (node-8, node-9), not counted against maxUnavailable"
            )
        );
    }

    #[test]
    fn all_available_is_true_and_keeps_its_transition_time() {
        let first = available(&Unavailable::default(), None, Timestamp::UNIX_EPOCH);
        assert_eq!(first.status, "True");
        let later = Timestamp::from_second(100).expect("time");
        let again = available(&Unavailable::default(), Some(&first), later);
        assert_eq!(again.last_transition_time, first.last_transition_time);
    }
}
