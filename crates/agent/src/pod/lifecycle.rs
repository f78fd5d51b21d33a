//! One container's lifecycle as explicit states and one pure transition.
//!
//! ```text
//!              Started                 Exited, restart, no back-off
//!  Starting ───────────▶ Running ─────────────────────────────────────▶ Starting
//!     │  ▲                 │  │ PostStartFailed / ProbeFailed / StopRequested
//!     │  │ BackOffElapsed  │  ▼
//!     │  └── BackingOff ◀──┴─ Killing ── Exited, stopped or not restarted ──▶ Done
//!     └── StartFailed ──▶ BackingOff
//! ```
//!
//! [`Lifecycle::step`] takes the state, an [`Event`] the driver observed (`container.rs` starts,
//! waits, kills and sleeps) and returns what to report and record; it does no I/O and reads no
//! clock, so every rule — restart policy, CrashLoopBackOff, postStart failure, termination — is
//! tested as one call.

use super::Kind;
use super::backoff::{self, CrashBackoff};
use super::status::State as Reported;
use crate::runtime::Exit;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use std::time::Duration;

/// `spec.restartPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// The pod's policy; `Always` when unset (validation refuses any other word).
    pub fn of(pod: &Pod) -> RestartPolicy {
        match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container of `kind` that exited with `exit` starts again. Init containers run
    /// until they succeed unless the policy is `Never`.
    pub fn restarts(self, kind: Kind, exit: Exit) -> bool {
        let succeeded = exit.code == 0;
        match (kind, self) {
            (_, RestartPolicy::Never) => false,
            (Kind::Init, _) | (Kind::Regular, RestartPolicy::OnFailure) => !succeeded,
            (Kind::Regular, RestartPolicy::Always) => true,
        }
    }
}

/// How a supervised container ended for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// The pod is being stopped.
    Stopped,
}

/// One start of the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    pub started_at: Timestamp,
    /// Adopted from an earlier agent: it was started (and its postStart run) then.
    pub adopted: bool,
    /// Whether the postStart hook is still to run.
    pub post_start_pending: bool,
}

/// Why a running container is being killed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillCause {
    /// Its postStart hook failed (upstream kills the container and restarts it per policy).
    PostStartHook(String),
    /// A startup or liveness probe failed.
    Probe(String),
    /// The pod is being stopped.
    Stop,
}

/// Where the container is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// To be started; `adopt` first looks for a container an earlier agent left running.
    Starting {
        adopt: bool,
    },
    Running(Run),
    /// Being stopped: preStop, SIGTERM, SIGKILL once `grace` is over.
    Killing {
        run: Run,
        cause: KillCause,
        grace: Duration,
    },
    /// Waiting before the next start.
    BackingOff {
        delay: Duration,
        /// A pull failed: after `PULL_BACK_OFF_NOTICE` the container reports
        /// `ImagePullBackOff` (kubelet shows `ErrImagePull` first, then the back-off).
        pull_failed: bool,
    },
    Done(Outcome),
}

/// What the driver observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The runtime started the container, or adopted one that was running.
    Started {
        id: String,
        at: Timestamp,
        adopted: bool,
        has_post_start: bool,
    },
    /// The runtime could not start it; `reason` is kubelet's waiting reason.
    StartFailed {
        reason: &'static str,
        message: String,
    },
    PostStartSucceeded,
    PostStartFailed {
        message: String,
        grace: Duration,
    },
    ProbeFailed {
        message: String,
        grace: Duration,
    },
    StopRequested {
        grace: Duration,
    },
    /// The container exited after running `ran_for`; `message` is its termination message.
    Exited {
        exit: Exit,
        ran_for: Duration,
        message: Option<String>,
        at: Timestamp,
    },
    BackOffElapsed,
    /// The notice period after a failed pull is over; the back-off goes on.
    PullBackOffNoticed,
}

/// How long a failed pull shows `ErrImagePull` before `ImagePullBackOff`.
pub const PULL_BACK_OFF_NOTICE: Duration = Duration::from_secs(2);

/// A change to the container's reported status.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        id: String,
        started_at: Timestamp,
        restart_count: i32,
        /// Found running from an earlier agent rather than started now.
        adopted: bool,
    },
    Terminated(Reported),
    /// It will start again: `last` becomes `lastState`, and it waits as `waiting` says.
    Restarting {
        last: Reported,
        restart_count: i32,
        waiting: Option<(String, String)>,
    },
}

/// What a transition asks the driver to do besides moving to the next phase.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Report(Report),
    /// An event on the pod about this container.
    Record {
        warning: bool,
        reason: &'static str,
        message: String,
    },
}

/// The names messages carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    pub container: String,
    pub pod: String,
    pub namespace: String,
    pub uid: String,
    pub image: String,
}

/// One container's lifecycle: its phase and what it remembers across restarts.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    pub phase: Phase,
    kind: Kind,
    policy: RestartPolicy,
    restart_count: i32,
    backoff: CrashBackoff,
    names: Names,
}

fn record(warning: bool, reason: &'static str, message: String) -> Action {
    Action::Record {
        warning,
        reason,
        message,
    }
}

impl Lifecycle {
    /// A container about to start for the first time in this agent (adopting what an earlier
    /// agent left running), with the restarts its status already counts.
    pub fn new(kind: Kind, policy: RestartPolicy, restart_count: i32, names: Names) -> Self {
        Lifecycle {
            phase: Phase::Starting { adopt: true },
            kind,
            policy,
            restart_count,
            backoff: CrashBackoff::default(),
            names,
        }
    }

    /// The restarts so far, for the log file of the next start.
    pub fn restart_count(&self) -> i32 {
        self.restart_count
    }

    /// Moves to the next phase on `event`; returns what to report and record. An event that
    /// means nothing in the current phase changes nothing.
    pub fn step(&mut self, event: Event) -> Vec<Action> {
        let phase = std::mem::replace(&mut self.phase, Phase::Done(Outcome::Stopped));
        let (next, actions) = self.transition(phase, event);
        self.phase = next;
        actions
    }

    fn transition(&mut self, phase: Phase, event: Event) -> (Phase, Vec<Action>) {
        let name = self.names.container.clone();
        match (phase, event) {
            (Phase::Done(o), _) => (Phase::Done(o), Vec::new()),
            (
                Phase::Starting { .. },
                Event::Started {
                    id,
                    at,
                    adopted,
                    has_post_start,
                },
            ) => {
                let report = Action::Report(Report::Running {
                    id: id.clone(),
                    started_at: at,
                    restart_count: self.restart_count,
                    adopted,
                });
                let actions = if adopted {
                    vec![report]
                } else {
                    vec![
                        record(false, "Created", format!("Created container {name}")),
                        report,
                        record(false, "Started", format!("Started container {name}")),
                    ]
                };
                let run = Run {
                    id,
                    started_at: at,
                    adopted,
                    post_start_pending: has_post_start && !adopted,
                };
                (Phase::Running(run), actions)
            }
            (Phase::Starting { .. }, Event::StartFailed { reason, message }) => {
                let delay = self
                    .backoff
                    .on_exit(Duration::ZERO)
                    .max(Duration::from_secs(1));
                let pull_failed = reason == "ErrImagePull";
                let mut actions = vec![Action::Report(Report::Waiting {
                    reason: reason.into(),
                    message: Some(message.clone()),
                })];
                // kubelet's image manager words pull failures its own way; the rest say
                // `Error: <message>`.
                match reason {
                    "ErrImagePull" => {
                        let image = &self.names.image;
                        actions.push(record(
                            true,
                            "Failed",
                            format!("Failed to pull image \"{image}\": {message}"),
                        ));
                        actions.push(record(true, "Failed", "Error: ErrImagePull".into()));
                    }
                    "ErrImageNeverPull" | "InvalidImageName" => {
                        actions.push(record(true, reason, message.clone()));
                        actions.push(record(true, "Failed", format!("Error: {reason}")));
                    }
                    _ => actions.push(record(true, "Failed", format!("Error: {message}"))),
                }
                (Phase::BackingOff { delay, pull_failed }, actions)
            }
            (Phase::BackingOff { delay, .. }, Event::PullBackOffNoticed) => {
                let image = &self.names.image;
                let message = format!("Back-off pulling image \"{image}\"");
                let actions = vec![
                    Action::Report(Report::Waiting {
                        reason: "ImagePullBackOff".into(),
                        message: Some(message.clone()),
                    }),
                    record(false, "BackOff", message),
                    record(true, "Failed", "Error: ImagePullBackOff".into()),
                ];
                let delay = delay.saturating_sub(PULL_BACK_OFF_NOTICE);
                let phase = Phase::BackingOff {
                    delay,
                    pull_failed: false,
                };
                (phase, actions)
            }
            (Phase::Starting { .. } | Phase::BackingOff { .. }, Event::StopRequested { .. }) => {
                (Phase::Done(Outcome::Stopped), Vec::new())
            }
            (Phase::Running(mut run), Event::PostStartSucceeded) => {
                run.post_start_pending = false;
                (Phase::Running(run), Vec::new())
            }
            (Phase::Running(run), Event::PostStartFailed { message, grace }) => {
                // As kubelet: the event does not repeat the hook's output (it may hold
                // secrets); the status's waiting message does.
                let actions = vec![
                    record(true, "FailedPostStartHook", "PostStartHook failed".into()),
                    record(false, "Killing", "FailedPostStartHook".into()),
                ];
                let run = Run {
                    post_start_pending: false,
                    ..run
                };
                let cause = KillCause::PostStartHook(message);
                (Phase::Killing { run, cause, grace }, actions)
            }
            (Phase::Running(run), Event::ProbeFailed { message, grace }) => {
                let actions = vec![record(false, "Killing", message.clone())];
                let cause = KillCause::Probe(message);
                (Phase::Killing { run, cause, grace }, actions)
            }
            (Phase::Running(run), Event::StopRequested { grace }) => {
                let actions = vec![record(
                    false,
                    "Killing",
                    format!("Stopping container {name}"),
                )];
                let cause = KillCause::Stop;
                (Phase::Killing { run, cause, grace }, actions)
            }
            (Phase::Killing { run, cause, .. }, Event::StopRequested { grace })
                if cause != KillCause::Stop =>
            {
                let cause = KillCause::Stop;
                (Phase::Killing { run, cause, grace }, Vec::new())
            }
            (
                Phase::Running(run),
                Event::Exited {
                    exit,
                    ran_for,
                    message,
                    at,
                },
            ) => self.exited(&run, None, exit, ran_for, message, at),
            (
                Phase::Killing { run, cause, .. },
                Event::Exited {
                    exit,
                    ran_for,
                    message,
                    at,
                },
            ) => self.exited(&run, Some(cause), exit, ran_for, message, at),
            (Phase::BackingOff { .. }, Event::BackOffElapsed) => {
                (Phase::Starting { adopt: false }, Vec::new())
            }
            (phase, _) => (phase, Vec::new()),
        }
    }

    /// The container exited (on its own, or killed for `cause`): report it terminated, then
    /// stop, finish, or restart after the back-off.
    fn exited(
        &mut self,
        run: &Run,
        cause: Option<KillCause>,
        exit: Exit,
        ran_for: Duration,
        message: Option<String>,
        at: Timestamp,
    ) -> (Phase, Vec<Action>) {
        let terminated = Reported::Terminated {
            exit_code: exit.code,
            signal: exit.signal,
            reason: if exit.oom_killed {
                "OOMKilled"
            } else if exit.code == 0 {
                "Completed"
            } else {
                "Error"
            }
            .into(),
            message,
            started_at: Some(run.started_at),
            finished_at: at,
            container_id: Some(run.id.clone()),
        };
        let mut actions = vec![Action::Report(Report::Terminated(terminated.clone()))];
        if cause == Some(KillCause::Stop) {
            return (Phase::Done(Outcome::Stopped), actions);
        }
        if !self.policy.restarts(self.kind, exit) {
            let outcome = if exit.code == 0 {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            };
            return (Phase::Done(outcome), actions);
        }
        self.restart_count += 1;
        let delay = self.backoff.on_exit(ran_for);
        let Names {
            container,
            pod,
            namespace,
            uid,
            ..
        } = &self.names;
        let waiting = if !delay.is_zero() {
            Some((
                "CrashLoopBackOff".to_owned(),
                backoff::message(delay, container, pod, namespace, uid),
            ))
        } else if let Some(KillCause::PostStartHook(hook_message)) = &cause {
            Some(("PostStartHookError".to_owned(), hook_message.clone()))
        } else {
            None
        };
        actions.push(Action::Report(Report::Restarting {
            last: terminated,
            restart_count: self.restart_count,
            waiting,
        }));
        if delay.is_zero() {
            return (Phase::Starting { adopt: false }, actions);
        }
        actions.push(record(
            true,
            "BackOff",
            format!(
                "Back-off restarting failed container {container} in pod {pod}_{namespace}({uid})"
            ),
        ));
        let pull_failed = false;
        (Phase::BackingOff { delay, pull_failed }, actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("a timestamp")
    }

    fn names() -> Names {
        Names {
            container: "c".into(),
            pod: "p".into(),
            namespace: "ns".into(),
            uid: "u".into(),
            image: "docker.io/local/agent:1".into(),
        }
    }

    fn lifecycle(kind: Kind, policy: RestartPolicy) -> Lifecycle {
        Lifecycle::new(kind, policy, 0, names())
    }

    fn started(adopted: bool, has_post_start: bool) -> Event {
        Event::Started {
            id: "process://1".into(),
            at: at(0),
            adopted,
            has_post_start,
        }
    }

    fn exited(code: i32, ran_for: u64) -> Event {
        Event::Exited {
            exit: Exit {
                code,
                signal: None,
                oom_killed: false,
            },
            ran_for: Duration::from_secs(ran_for),
            message: None,
            at: at(ran_for as i64),
        }
    }

    fn reasons(actions: &[Action]) -> Vec<&'static str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Record { reason, .. } => Some(*reason),
                Action::Report(_) => None,
            })
            .collect()
    }

    fn waiting_reason(actions: &[Action]) -> Option<String> {
        actions.iter().find_map(|a| match a {
            Action::Report(Report::Restarting {
                waiting: Some((reason, _)),
                ..
            }) => Some(reason.clone()),
            Action::Report(Report::Waiting { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
    }

    #[test]
    fn restart_policy_by_kind_and_exit() {
        let ok = Exit {
            code: 0,
            signal: None,
            oom_killed: false,
        };
        let failed = Exit {
            code: 1,
            signal: None,
            oom_killed: false,
        };
        use RestartPolicy::*;
        assert!(Always.restarts(Kind::Regular, ok));
        assert!(Always.restarts(Kind::Regular, failed));
        assert!(!OnFailure.restarts(Kind::Regular, ok));
        assert!(OnFailure.restarts(Kind::Regular, failed));
        assert!(!Never.restarts(Kind::Regular, failed));
        assert!(
            !Always.restarts(Kind::Init, ok),
            "an init container that succeeded is done"
        );
        assert!(Always.restarts(Kind::Init, failed));
        assert!(!Never.restarts(Kind::Init, failed));
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"spec": {"containers": [], "restartPolicy": "OnFailure"}}),
        )
        .expect("a pod");
        assert_eq!(RestartPolicy::of(&pod), OnFailure);
        assert_eq!(RestartPolicy::of(&Pod::default()), Always);
    }

    #[test]
    fn a_fresh_start_is_created_and_started_an_adopted_one_is_quiet() {
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Always);
        let actions = l.step(started(false, false));
        assert_eq!(reasons(&actions), vec!["Created", "Started"]);
        assert!(matches!(l.phase, Phase::Running(ref r) if !r.post_start_pending));
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Always);
        let actions = l.step(started(true, true));
        assert!(reasons(&actions).is_empty());
        assert!(
            matches!(l.phase, Phase::Running(ref r) if r.adopted && !r.post_start_pending),
            "an adopted container's postStart ran in the earlier agent"
        );
    }

    #[test]
    fn a_failed_start_waits_with_its_reason_and_backs_off() {
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Always);
        let actions = l.step(Event::StartFailed {
            reason: "CreateContainerConfigError",
            message: "no command".into(),
        });
        assert!(actions.contains(&Action::Report(Report::Waiting {
            reason: "CreateContainerConfigError".into(),
            message: Some("no command".into()),
        })));
        assert_eq!(reasons(&actions), vec!["Failed"]);
        assert_eq!(
            l.phase,
            Phase::BackingOff {
                delay: Duration::from_secs(1),
                pull_failed: false,
            }
        );
        l.step(Event::BackOffElapsed);
        assert_eq!(l.phase, Phase::Starting { adopt: false });
    }

    #[test]
    fn a_failed_pull_shows_err_image_pull_then_image_pull_back_off() {
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Always);
        let actions = l.step(Event::StartFailed {
            reason: "ErrImagePull",
            message: "rpc error: code = Unknown desc = not found".into(),
        });
        assert_eq!(waiting_reason(&actions).as_deref(), Some("ErrImagePull"));
        assert!(actions.contains(&Action::Record {
            warning: true,
            reason: "Failed",
            message: "Failed to pull image \"docker.io/local/agent:1\": rpc error: code = Unknown desc = not found".into(),
        }));
        let Phase::BackingOff {
            delay,
            pull_failed: true,
        } = l.phase
        else {
            panic!("expected a pull back-off, got {:?}", l.phase);
        };
        let actions = l.step(Event::PullBackOffNoticed);
        assert_eq!(
            waiting_reason(&actions).as_deref(),
            Some("ImagePullBackOff")
        );
        assert_eq!(reasons(&actions), vec!["BackOff", "Failed"]);
        assert_eq!(
            l.phase,
            Phase::BackingOff {
                delay: delay.saturating_sub(PULL_BACK_OFF_NOTICE),
                pull_failed: false,
            }
        );
        l.step(Event::BackOffElapsed);
        assert_eq!(l.phase, Phase::Starting { adopt: false });
    }

    #[test]
    fn an_oom_kill_is_reported_as_oom_killed() {
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Always);
        l.step(started(false, false));
        let actions = l.step(Event::Exited {
            exit: Exit {
                code: 137,
                signal: None,
                oom_killed: true,
            },
            ran_for: Duration::from_secs(5),
            message: None,
            at: at(5),
        });
        let reported = actions.iter().find_map(|a| match a {
            Action::Report(Report::Terminated(Reported::Terminated {
                reason, exit_code, ..
            })) => Some((reason.clone(), *exit_code)),
            _ => None,
        });
        assert_eq!(reported, Some(("OOMKilled".to_owned(), 137)));
    }

    #[test]
    fn crash_loop_back_off_doubles_from_ten_seconds() {
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Always);
        let mut delays = Vec::new();
        for _ in 0..5 {
            l.step(started(false, false));
            let actions = l.step(exited(1, 1));
            match l.phase {
                Phase::BackingOff { delay, .. } => {
                    assert_eq!(
                        waiting_reason(&actions).as_deref(),
                        Some("CrashLoopBackOff")
                    );
                    assert!(reasons(&actions).contains(&"BackOff"));
                    delays.push(delay.as_secs());
                    l.step(Event::BackOffElapsed);
                }
                Phase::Starting { adopt: false } => {
                    assert_eq!(
                        waiting_reason(&actions),
                        None,
                        "the first restart is at once"
                    );
                    delays.push(0);
                }
                ref other => panic!("unexpected phase {other:?}"),
            }
        }
        assert_eq!(delays, vec![0, 10, 20, 40, 80]);
        assert_eq!(l.restart_count(), 5);
        // Ten minutes of running forgives the past: the next restart is at once.
        l.step(started(false, false));
        l.step(exited(1, 600));
        assert_eq!(l.phase, Phase::Starting { adopt: false });
    }

    #[test]
    fn exits_follow_the_restart_policy() {
        let mut l = lifecycle(Kind::Regular, RestartPolicy::OnFailure);
        l.step(started(false, false));
        let actions = l.step(exited(0, 5));
        assert_eq!(l.phase, Phase::Done(Outcome::Succeeded));
        assert!(matches!(
            &actions[..],
            [Action::Report(Report::Terminated(Reported::Terminated { reason, exit_code: 0, .. }))] if reason == "Completed"
        ));
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Never);
        l.step(started(false, false));
        l.step(exited(2, 5));
        assert_eq!(l.phase, Phase::Done(Outcome::Failed));
        let mut l = lifecycle(Kind::Init, RestartPolicy::Always);
        l.step(started(false, false));
        l.step(exited(0, 5));
        assert_eq!(l.phase, Phase::Done(Outcome::Succeeded));
    }

    #[test]
    fn a_failed_post_start_hook_kills_and_restarts_as_upstream() {
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Always);
        l.step(started(false, true));
        assert!(matches!(l.phase, Phase::Running(ref r) if r.post_start_pending));
        let actions = l.step(Event::PostStartFailed {
            message: "exit status 3".into(),
            grace: Duration::from_secs(30),
        });
        assert_eq!(reasons(&actions), vec!["FailedPostStartHook", "Killing"]);
        assert!(actions.contains(&Action::Record {
            warning: false,
            reason: "Killing",
            message: "FailedPostStartHook".into(),
        }));
        assert!(matches!(
            l.phase,
            Phase::Killing { cause: KillCause::PostStartHook(_), grace, .. } if grace == Duration::from_secs(30)
        ));
        let actions = l.step(exited(143, 1));
        assert_eq!(
            waiting_reason(&actions).as_deref(),
            Some("PostStartHookError"),
            "the first restart is at once; meanwhile the status says why"
        );
        assert_eq!(l.phase, Phase::Starting { adopt: false });
    }

    #[test]
    fn a_failed_probe_kills_and_restarts() {
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Always);
        l.step(started(false, false));
        let message = "Container c failed liveness probe, will be restarted".to_owned();
        let actions = l.step(Event::ProbeFailed {
            message: message.clone(),
            grace: Duration::from_secs(5),
        });
        assert!(actions.contains(&Action::Record {
            warning: false,
            reason: "Killing",
            message,
        }));
        l.step(exited(137, 1));
        assert_eq!(l.phase, Phase::Starting { adopt: false });
        assert_eq!(l.restart_count(), 1);
    }

    #[test]
    fn a_stop_wins_over_every_other_phase() {
        let stop = || Event::StopRequested {
            grace: Duration::from_secs(7),
        };
        // Running: killed with the pod's grace, and stopped for good once it exits.
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Always);
        l.step(started(false, false));
        let actions = l.step(stop());
        assert_eq!(reasons(&actions), vec!["Killing"]);
        assert!(matches!(
            l.phase,
            Phase::Killing {
                cause: KillCause::Stop,
                ..
            }
        ));
        l.step(exited(143, 3));
        assert_eq!(l.phase, Phase::Done(Outcome::Stopped));
        // Killing for a probe: the stop takes over, with its own grace.
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Always);
        l.step(started(false, false));
        l.step(Event::ProbeFailed {
            message: "m".into(),
            grace: Duration::from_secs(30),
        });
        l.step(stop());
        assert!(matches!(
            l.phase,
            Phase::Killing { cause: KillCause::Stop, grace, .. } if grace == Duration::from_secs(7)
        ));
        l.step(exited(143, 3));
        assert_eq!(l.phase, Phase::Done(Outcome::Stopped));
        // Starting or backing off: nothing to kill.
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Always);
        l.step(stop());
        assert_eq!(l.phase, Phase::Done(Outcome::Stopped));
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Always);
        l.step(Event::StartFailed {
            reason: "RunContainerError",
            message: "m".into(),
        });
        l.step(stop());
        assert_eq!(l.phase, Phase::Done(Outcome::Stopped));
        // Done stays done.
        l.step(started(false, false));
        assert_eq!(l.phase, Phase::Done(Outcome::Stopped));
    }

    #[test]
    fn a_terminated_state_carries_the_termination_message() {
        let mut l = lifecycle(Kind::Regular, RestartPolicy::Never);
        l.step(started(false, false));
        let actions = l.step(Event::Exited {
            exit: Exit {
                code: 1,
                signal: None,
                oom_killed: false,
            },
            ran_for: Duration::from_secs(2),
            message: Some("disk full".into()),
            at: at(2),
        });
        assert!(matches!(
            &actions[..],
            [Action::Report(Report::Terminated(Reported::Terminated { message: Some(m), started_at: Some(s), finished_at, .. }))]
                if m == "disk full" && *s == at(0) && *finished_at == at(2)
        ));
    }
}
