//! The `Progressing` condition of a DaemonSet (beyond.md §2.1–§2.2): whether the rollout of the
//! update revision is new, moving, complete, paused or stuck past its deadline. A pure function
//! of what the pass counted, the progress record of the last pass and `now`.
//!
//! `apps/v1` DaemonSetCondition has no `lastUpdateTime` (Deployments keep their last progress
//! there), so the time of the last progress is a record the controller keeps beside the
//! failed-pod backoff and hands to the next pass. A controller that restarts starts the clock
//! again from its first pass: a deadline can only be late, never early.

use super::pass::PlannedEvent;
use k8s_openapi::api::apps::v1::DaemonSetCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

pub const CONDITION: &str = "Progressing";

/// When the rollout of `hash` last moved, and the counts it had then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub hash: String,
    pub since: Timestamp,
    pub updated: i32,
    pub available: i32,
    /// When this controller first saw the rollout of `hash` (for metrics).
    pub started: Timestamp,
    /// Nodes in scope of the rollout at the last pass (for metrics).
    pub in_scope: i32,
}

/// What the pass counted, for the condition.
#[derive(Clone, Debug, Default)]
pub struct Rollout<'a> {
    pub hash: &'a str,
    /// The update revision's number.
    pub revision: i64,
    /// Nodes that should run a pod, and of those, the ones in scope of the rollout.
    pub desired: i32,
    pub in_scope: i32,
    /// `updatedNumberScheduled` and `numberAvailable`.
    pub updated: i32,
    pub available: i32,
    /// Every in-scope node runs an available pod of the update revision and no old one.
    pub complete: bool,
    /// Paused by its annotation.
    pub paused: bool,
    pub deadline_seconds: Option<u32>,
    /// The first in-scope nodes (in rollout order, at most the 3 the message names) whose pod
    /// is not available, each with why (`CrashLoopBackOff`, `Pending (Insufficient cpu)`).
    pub stuck: Vec<(String, String)>,
    /// How many in-scope nodes have no available pod.
    pub stuck_count: usize,
}

/// The condition to write, the record for the next pass, an event when the condition's reason
/// changed, and when to look again for a deadline.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub condition: DaemonSetCondition,
    pub progress: Progress,
    pub event: Option<PlannedEvent>,
    pub requeue_after: Option<Duration>,
}

/// At most this many stuck nodes are named in the message.
pub const NAMED: usize = 3;

fn stuck_message(stuck: &[(String, String)], count: usize) -> String {
    let named: Vec<String> = stuck
        .iter()
        .take(NAMED)
        .map(|(node, why)| format!("{node} {why}"))
        .collect();
    let more = match count.saturating_sub(named.len()) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    let pods = if count == 1 { "pod" } else { "pods" };
    format!("{count} {pods} not available — {}{more}", named.join(", "))
}

/// The `Progressing` condition after this pass.
pub fn progressing(
    rollout: &Rollout<'_>,
    previous: Option<&Progress>,
    stored: Option<&DaemonSetCondition>,
    now: Timestamp,
) -> Outcome {
    // A controller that restarted has no record: a rollout its condition says is under way
    // goes on from now, with no new event.
    let resumed = match (previous, stored) {
        (None, Some(c))
            if matches!(
                c.reason.as_deref(),
                Some("NewRevision" | "RolloutProgressing" | "ProgressDeadlineExceeded")
            ) =>
        {
            Some(Progress {
                hash: rollout.hash.to_owned(),
                since: now,
                updated: rollout.updated,
                available: rollout.available,
                started: now,
                in_scope: rollout.in_scope,
            })
        }
        _ => None,
    };
    let same_rollout = previous
        .or(resumed.as_ref())
        .filter(|p| p.hash == rollout.hash);
    let moved = same_rollout
        .is_some_and(|p| rollout.updated > p.updated || rollout.available > p.available);
    let fresh = Progress {
        hash: rollout.hash.to_owned(),
        since: now,
        updated: rollout.updated,
        available: rollout.available,
        started: same_rollout.map_or(now, |p| p.started),
        in_scope: rollout.in_scope,
    };
    let short_hash = rollout.hash;
    let (status, reason, message, progress, requeue) = if rollout.paused {
        // The clock stops while paused: it starts again from the pass that sees the resume.
        (
            "Unknown",
            "RolloutPaused",
            format!(
                "paused with {} of {} nodes updated",
                rollout.updated, rollout.desired
            ),
            fresh,
            None,
        )
    } else if rollout.complete {
        let message = if rollout.in_scope < rollout.desired {
            format!(
                "revision {} on the {} nodes in scope; {} kept at an older revision",
                rollout.revision,
                rollout.in_scope,
                rollout.desired - rollout.in_scope
            )
        } else {
            format!(
                "revision {} on all {} nodes",
                rollout.revision, rollout.desired
            )
        };
        ("True", "RolloutComplete", message, fresh, None)
    } else if let Some(p) = same_rollout.filter(|_| !moved) {
        // No progress since `p.since`: stuck once the deadline has passed.
        let waited = now.duration_since(p.since);
        let exceeded = stored.is_some_and(|c| {
            c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        });
        match rollout.deadline_seconds {
            // Once exceeded, it stays so until the rollout moves.
            Some(d) if exceeded || waited.as_secs() >= i64::from(d) => (
                "False",
                "ProgressDeadlineExceeded",
                format!(
                    "revision {} made no progress for {d}s: {}",
                    rollout.revision,
                    stuck_message(&rollout.stuck, rollout.stuck_count)
                ),
                p.clone(),
                None,
            ),
            deadline => {
                let requeue = deadline.map(|d| {
                    let left = i64::from(d) * 1_000_000_000 - waited.as_nanos() as i64;
                    Duration::from_nanos(left.max(0) as u64)
                });
                // The condition stays as the last pass wrote it (new revision or progressing).
                let (reason, message) = match stored {
                    Some(c)
                        if c.status == "True"
                            && matches!(
                                c.reason.as_deref(),
                                Some("NewRevision" | "RolloutProgressing")
                            ) =>
                    {
                        (
                            if c.reason.as_deref() == Some("NewRevision") {
                                "NewRevision"
                            } else {
                                "RolloutProgressing"
                            },
                            c.message.clone().unwrap_or_default(),
                        )
                    }
                    _ => (
                        "RolloutProgressing",
                        format!(
                            "{} of {} nodes updated, {} available",
                            rollout.updated, rollout.desired, rollout.available
                        ),
                    ),
                };
                ("True", reason, message, p.clone(), requeue)
            }
        }
    } else if moved {
        (
            "True",
            "RolloutProgressing",
            format!(
                "{} of {} nodes updated, {} available",
                rollout.updated, rollout.desired, rollout.available
            ),
            fresh,
            rollout
                .deadline_seconds
                .map(|d| Duration::from_secs(d.into())),
        )
    } else {
        (
            "True",
            "NewRevision",
            format!("rolling out revision {} ({short_hash})", rollout.revision),
            fresh,
            rollout
                .deadline_seconds
                .map(|d| Duration::from_secs(d.into())),
        )
    };
    // lastTransitionTime moves only when the status does (beyond.md §0.4).
    let transition = match stored {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    let changed = stored.is_none_or(|c| c.reason.as_deref() != Some(reason));
    let event = changed.then(|| PlannedEvent {
        warning: status == "False",
        reason,
        message: message.clone(),
    });
    let progress = Progress {
        in_scope: rollout.in_scope,
        ..progress
    };
    Outcome {
        condition: DaemonSetCondition {
            type_: CONDITION.into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: transition,
        },
        progress,
        event,
        requeue_after: requeue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn t(secs: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_800_000_000 + secs)
    }

    fn rollout(updated: i32, available: i32) -> Rollout<'static> {
        Rollout {
            hash: "5d8f9c7b4",
            revision: 3,
            desired: 10,
            in_scope: 10,
            updated,
            available,
            deadline_seconds: Some(30),
            stuck: vec![
                ("node-a".into(), "CrashLoopBackOff".into()),
                ("node-b".into(), "ImagePullBackOff".into()),
                ("node-c".into(), "Pending (Insufficient cpu)".into()),
            ],
            stuck_count: 4,
            ..Rollout::default()
        }
    }

    /// Runs passes at the given seconds with the given counts, carrying record and condition.
    fn passes(steps: &[(i64, Rollout<'static>)]) -> Vec<Outcome> {
        let mut previous: Option<Progress> = None;
        let mut stored: Option<DaemonSetCondition> = None;
        let mut out = Vec::new();
        for (at, r) in steps {
            let o = progressing(r, previous.as_ref(), stored.as_ref(), t(*at));
            previous = Some(o.progress.clone());
            stored = Some(o.condition.clone());
            out.push(o);
        }
        out
    }

    #[test]
    fn b02_no_progress_for_the_deadline_is_progress_deadline_exceeded() {
        let out = passes(&[
            (0, rollout(0, 10)),
            (10, rollout(0, 10)),
            (29, rollout(0, 10)),
            (30, rollout(0, 10)),
            (45, rollout(0, 10)),
        ]);
        assert_eq!(out[0].condition.reason.as_deref(), Some("NewRevision"));
        assert_eq!(
            out[0].condition.message.as_deref(),
            Some("rolling out revision 3 (5d8f9c7b4)")
        );
        assert_eq!(out[0].requeue_after, Some(Duration::from_secs(30)));
        assert_eq!(out[1].requeue_after, Some(Duration::from_secs(20)));
        assert_eq!(out[2].condition.status, "True");
        assert_eq!(out[3].condition.status, "False");
        assert_eq!(
            out[3].condition.message.as_deref(),
            Some(
                "revision 3 made no progress for 30s: 4 pods not available — node-a CrashLoopBackOff, node-b ImagePullBackOff, node-c Pending (Insufficient cpu) and 1 more"
            )
        );
        assert_eq!(out[3].condition.last_transition_time, Some(Time(t(30))));
        // One event for the change, none while it stays.
        let events: Vec<&str> = out
            .iter()
            .filter_map(|o| o.event.as_ref())
            .map(|e| e.reason)
            .collect();
        assert_eq!(events, ["NewRevision", "ProgressDeadlineExceeded"]);
        assert!(out[3].event.as_ref().is_some_and(|e| e.warning));
        assert_eq!(out[4].condition.last_transition_time, Some(Time(t(30))));
    }

    #[test]
    fn b04_steady_progress_never_exceeds_the_deadline() {
        let steps: Vec<(i64, Rollout<'static>)> = (0..10)
            .map(|i| (i64::from(i) * 25, rollout(i, 10 - 1)))
            .collect();
        let out = passes(&steps);
        assert!(out.iter().all(|o| o.condition.status == "True"));
        assert_eq!(
            out[9].condition.message.as_deref(),
            Some("9 of 10 nodes updated, 9 available")
        );
        // One lastTransitionTime for the whole rollout: the status never changed.
        assert!(
            out.iter()
                .all(|o| o.condition.last_transition_time == Some(Time(t(0))))
        );
    }

    #[test]
    fn b05_the_clock_stops_while_paused() {
        let paused = Rollout {
            paused: true,
            ..rollout(2, 10)
        };
        let out = passes(&[
            (0, rollout(2, 10)),
            (20, paused.clone()),
            (100, paused),
            (110, rollout(2, 10)),
            (139, rollout(2, 10)),
            (140, rollout(2, 10)),
        ]);
        assert_eq!(out[1].condition.status, "Unknown");
        assert_eq!(
            out[1].condition.message.as_deref(),
            Some("paused with 2 of 10 nodes updated")
        );
        // Resumed at 100 s: 40 s without progress since then, past the 30 s deadline only at 130.
        assert_eq!(out[4].condition.status, "False");
        assert_eq!(out[3].condition.status, "True");
    }

    #[test]
    fn a_restarted_controller_carries_on_without_a_new_event() {
        let out = passes(&[(0, rollout(2, 10)), (5, rollout(3, 10))]);
        let stored = out[1].condition.clone();
        let again = progressing(&rollout(3, 10), None, Some(&stored), t(100));
        assert_eq!(again.condition, stored);
        assert!(again.event.is_none());
        // A stalled rollout stays stalled.
        let stalled = passes(&[(0, rollout(2, 10)), (40, rollout(2, 10))]);
        let stored = stalled[1].condition.clone();
        assert_eq!(stored.status, "False");
        let again = progressing(&rollout(2, 10), None, Some(&stored), t(100));
        assert_eq!(again.condition.status, "False");
        assert!(again.event.is_none());
    }

    #[test]
    fn complete_rollouts_name_what_was_kept() {
        let done = Rollout {
            complete: true,
            in_scope: 4,
            ..rollout(4, 10)
        };
        let o = progressing(&done, None, None, t(0));
        assert_eq!(o.condition.reason.as_deref(), Some("RolloutComplete"));
        assert_eq!(
            o.condition.message.as_deref(),
            Some("revision 3 on the 4 nodes in scope; 6 kept at an older revision")
        );
        let all = Rollout {
            complete: true,
            ..rollout(10, 10)
        };
        let o = progressing(&all, None, None, t(0));
        assert_eq!(
            o.condition.message.as_deref(),
            Some("revision 3 on all 10 nodes")
        );
        assert!(o.requeue_after.is_none());
    }
}
