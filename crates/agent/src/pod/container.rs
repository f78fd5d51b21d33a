//! One container across its restarts: the I/O that drives its `Lifecycle` (start or adopt,
//! postStart, probes, wait, kill, back-off), and the reports and events each transition asks
//! for. Every decision is `Lifecycle::step`'s; this file only does what it says.

use super::lifecycle::{
    Action, Event, KillCause, Lifecycle, Names, PULL_BACK_OFF_NOTICE, Phase, Report, RestartPolicy,
};
use super::status::State;
use super::{Kind, PodCtx};
use crate::probe::{self, Action as ProbeAction, Timing};
use crate::runtime::{Container, Exit, Launch};
use k8s_openapi::api::core::v1::{Container as Spec, Pod, Probe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

pub use super::lifecycle::Outcome;

/// Waits until a stop is requested; yields the grace period in seconds.
pub async fn stop_requested(stop: &mut watch::Receiver<Option<i64>>) -> i64 {
    loop {
        if let Some(g) = *stop.borrow_and_update() {
            return g;
        }
        if stop.changed().await.is_err() {
            return 0;
        }
    }
}

/// Runs a lifecycle hook, bounded by `timeout`.
async fn run_hook(
    ctx: &PodCtx,
    spec: &Spec,
    container: &dyn Container,
    action: &ProbeAction,
    timeout: Duration,
) -> Result<(), String> {
    let ports = spec.ports.clone().unwrap_or_default();
    match tokio::time::timeout(
        timeout,
        probe::run(action, container, &ctx.pod_ip(), &ports, timeout),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(format!("hook timed out after {}s", timeout.as_secs())),
    }
}

/// Graceful termination: preStop, SIGTERM, then SIGKILL when the grace period is over
/// (with kubelet's 2 s extension when preStop used it all).
pub async fn terminate(
    ctx: &PodCtx,
    pod: &Pod,
    spec: &Spec,
    container: &dyn Container,
    grace: Duration,
) -> Exit {
    let deadline = Instant::now() + grace;
    if !grace.is_zero()
        && let Some(action) = spec
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(ProbeAction::of_hook)
        && let Err(message) = run_hook(ctx, spec, container, &action, grace).await
    {
        ctx.container_event(
            pod,
            &spec.name,
            true,
            "FailedPreStopHook",
            &format!("PreStopHook failed: {message}"),
        )
        .await;
    }
    if grace.is_zero() {
        container.signal(true);
        return container.wait().await;
    }
    container.signal(false);
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(2));
    match tokio::time::timeout(remaining, container.wait()).await {
        Ok(exit) => exit,
        Err(_) => {
            container.signal(true);
            container.wait().await
        }
    }
}

/// The pod's grace period: `deletionGracePeriodSeconds` when deleting, else the spec's.
pub fn grace_seconds(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .unwrap_or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
        })
}

/// Upstream's limits on a termination message: from the file, and from the log's tail.
const MAX_MESSAGE_FILE_BYTES: usize = 4096;
const MAX_MESSAGE_LOG_LINES: usize = 80;
const MAX_MESSAGE_LOG_BYTES: usize = 2048;

/// The host file the container's `terminationMessagePath` is mounted from.
pub fn termination_log(ctx: &PodCtx, container: &str) -> PathBuf {
    ctx.node
        .pod_dir(&ctx.uid)
        .join("containers")
        .join(container)
        .join("termination-log")
}

/// The message of a terminated container, as kubelet takes it: what the container wrote to
/// its `terminationMessagePath` (at most 4 KiB); else, under `FallbackToLogsOnError` and when it
/// failed, the last 80 lines of its log (at most 2 KiB).
fn termination_message(spec: &Spec, file: &Path, log: &Path, exit: Exit) -> Option<String> {
    let written = std::fs::read(file).unwrap_or_default();
    if !written.is_empty() {
        let cut = &written[..written.len().min(MAX_MESSAGE_FILE_BYTES)];
        return Some(String::from_utf8_lossy(cut).into_owned());
    }
    let fallback = spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    if !fallback || exit.code == 0 {
        return None;
    }
    let text = std::fs::read_to_string(log).ok()?;
    // CRI log lines: `<time> <stream> <F|P> <text>`.
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .collect();
    let tail = lines[lines.len().saturating_sub(MAX_MESSAGE_LOG_LINES)..].join("\n");
    let start = tail.len().saturating_sub(MAX_MESSAGE_LOG_BYTES);
    let start = (start..=tail.len())
        .find(|i| tail.is_char_boundary(*i))
        .unwrap_or(tail.len());
    let tail = &tail[start..];
    (!tail.is_empty()).then(|| tail.to_owned())
}

fn seconds(g: i64) -> Duration {
    Duration::from_secs(g.max(0) as u64)
}

/// What one container of a pod needs besides its lifecycle: the pod, its spec and launch,
/// and what decides its `started` and `ready`.
struct Supervised {
    ctx: Arc<PodCtx>,
    kind: Kind,
    index: usize,
    pod: Arc<Pod>,
    spec: Spec,
    probes_run: bool,
    needs_probe_gate: bool,
}

impl Supervised {
    /// Carries out what a transition asked for.
    async fn perform(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Record {
                    warning,
                    reason,
                    message,
                } => {
                    self.ctx
                        .container_event(&self.pod, &self.spec.name, warning, reason, &message)
                        .await;
                }
                Action::Report(report) => self.report(report),
            }
        }
    }

    fn report(&self, report: Report) {
        let spec = &self.spec;
        self.ctx
            .update_container(self.kind, self.index, |c| match report {
                Report::Waiting { reason, message } => {
                    c.state = State::Waiting { reason, message };
                    c.ready = false;
                    c.started = false;
                }
                Report::Running {
                    id,
                    started_at,
                    restart_count,
                    adopted,
                } => {
                    c.state = State::Running { started_at };
                    // Only the very container the pod reported keeps what it had earned.
                    let previous = c
                        .previous
                        .take()
                        .filter(|p| adopted && p.container_id == id);
                    c.container_id = Some(id);
                    c.restart_count = restart_count;
                    c.started = !self.probes_run || spec.startup_probe.is_none();
                    c.ready = self.kind == Kind::Regular && !self.needs_probe_gate;
                    if let Some(p) = previous {
                        c.started |= p.started;
                        c.ready |= p.ready && c.started && self.kind == Kind::Regular;
                    }
                }
                Report::Terminated(state) => {
                    c.state = state;
                    c.ready = false;
                }
                Report::Restarting {
                    last,
                    restart_count,
                    waiting,
                } => {
                    c.last_terminated = Some(last);
                    c.restart_count = restart_count;
                    c.ready = false;
                    c.started = false;
                    if let Some((reason, message)) = waiting {
                        c.state = State::Waiting {
                            reason,
                            message: Some(message),
                        };
                    }
                }
            });
    }
}

/// Supervises container `index` of `kind` until it is done for good.
pub async fn supervise(
    ctx: Arc<PodCtx>,
    kind: Kind,
    index: usize,
    spec: Spec,
    mut launch: Launch,
    mut stop: watch::Receiver<Option<i64>>,
) -> Outcome {
    let Some(pod) = ctx.current() else {
        return Outcome::Stopped;
    };
    let names = Names {
        container: spec.name.clone(),
        pod: pod.metadata.name.clone().unwrap_or_default(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        uid: ctx.uid.clone(),
        image: launch.image.clone(),
    };
    let restart_count = ctx.container(kind, index).map_or(0, |c| c.restart_count);
    let mut life = Lifecycle::new(kind, RestartPolicy::of(&pod), restart_count, names);
    let probes_run = ctx.node.runtime.runs_workloads() && kind == Kind::Regular;
    let supervised = Supervised {
        needs_probe_gate: probes_run
            && (spec.startup_probe.is_some() || spec.readiness_probe.is_some()),
        probes_run,
        ctx: Arc::clone(&ctx),
        kind,
        index,
        pod: Arc::clone(&pod),
        spec: spec.clone(),
    };
    let log_dir = ctx.node.log_dir(&pod).join(&spec.name);
    let message_file = termination_log(&ctx, &spec.name);
    let post_start = spec
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
        .and_then(ProbeAction::of_hook);
    let grace = seconds(grace_seconds(&pod));
    let mut container: Option<Arc<dyn Container>> = None;
    let mut ran_from = Instant::now();
    loop {
        let event = match &life.phase {
            Phase::Done(outcome) => return *outcome,
            Phase::Starting { adopt } => {
                if let Some(g) = *stop.borrow() {
                    Event::StopRequested { grace: seconds(g) }
                } else {
                    let adopted = if *adopt {
                        ctx.node.runtime.adopt(&launch.key).await
                    } else {
                        None
                    };
                    let adopted_now = adopted.is_some();
                    let started = match adopted {
                        Some(c) => Ok(c),
                        None => {
                            let count = life.restart_count();
                            launch.log_path = log_dir.join(format!("{count}.log"));
                            // Keep this start's log and the previous one (`kubectl logs --previous`).
                            if count >= 2 {
                                let _ = std::fs::remove_file(
                                    log_dir.join(format!("{}.log", count - 2)),
                                );
                            }
                            // Each start writes its own termination message.
                            if message_file.exists() {
                                let _ = std::fs::write(&message_file, b"");
                            }
                            match ensure_image(&ctx, &pod, &spec.name, &launch).await {
                                Ok(()) => ctx.node.runtime.start(launch.clone()).await,
                                Err(e) => Err(e),
                            }
                        }
                    };
                    match started {
                        Ok(c) => {
                            let c: Arc<dyn Container> = Arc::from(c);
                            let id = c.id();
                            container = Some(c);
                            ran_from = Instant::now();
                            // An adopted container keeps the start time the pod reports.
                            let reported = adopted_now
                                .then(|| ctx.container(kind, index))
                                .flatten()
                                .and_then(|c| match c.state {
                                    State::Running { started_at } => Some(started_at),
                                    _ => None,
                                });
                            Event::Started {
                                id,
                                at: reported.unwrap_or_else(|| ctx.node.clock.now()),
                                adopted: adopted_now,
                                has_post_start: post_start.is_some(),
                            }
                        }
                        Err(e) => Event::StartFailed {
                            reason: e.reason(),
                            message: e.to_string(),
                        },
                    }
                }
            }
            Phase::Running(run) => {
                let Some(c) = container.clone() else {
                    return Outcome::Stopped;
                };
                if run.post_start_pending {
                    let hook = post_start.as_ref().map(|action| {
                        run_hook(
                            &ctx,
                            &spec,
                            c.as_ref(),
                            action,
                            grace.max(Duration::from_secs(1)),
                        )
                    });
                    match hook {
                        Some(hook) => match hook.await {
                            Ok(()) => Event::PostStartSucceeded,
                            Err(message) => Event::PostStartFailed { message, grace },
                        },
                        None => Event::PostStartSucceeded,
                    }
                } else {
                    let (fail_tx, fail_rx) = oneshot::channel();
                    let probes = probes_run.then(|| {
                        tokio::spawn(probe_loops(
                            Arc::clone(&ctx),
                            index,
                            spec.clone(),
                            Arc::clone(&c),
                            fail_tx,
                        ))
                    });
                    let event = tokio::select! {
                        exit = c.wait() => exited(&ctx, &spec, &message_file, &launch, exit, ran_from),
                        Ok((message, grace)) = fail_rx => Event::ProbeFailed { message, grace },
                        g = stop_requested(&mut stop) => Event::StopRequested { grace: seconds(g) },
                    };
                    if let Some(p) = probes {
                        p.abort();
                    }
                    event
                }
            }
            Phase::Killing { cause, grace, .. } => {
                let Some(c) = container.clone() else {
                    return Outcome::Stopped;
                };
                let grace = *grace;
                if *cause == KillCause::Stop {
                    let exit = terminate(&ctx, &pod, &spec, c.as_ref(), grace).await;
                    exited(&ctx, &spec, &message_file, &launch, exit, ran_from)
                } else {
                    tokio::select! {
                        exit = terminate(&ctx, &pod, &spec, c.as_ref(), grace) => {
                            exited(&ctx, &spec, &message_file, &launch, exit, ran_from)
                        }
                        g = stop_requested(&mut stop) => Event::StopRequested { grace: seconds(g) },
                    }
                }
            }
            Phase::BackingOff { delay, pull_failed } => {
                let (sleep, then) = if *pull_failed {
                    (
                        (*delay).min(PULL_BACK_OFF_NOTICE),
                        Event::PullBackOffNoticed,
                    )
                } else {
                    (*delay, Event::BackOffElapsed)
                };
                tokio::select! {
                    _ = tokio::time::sleep(sleep) => then,
                    g = stop_requested(&mut stop) => Event::StopRequested { grace: seconds(g) },
                }
            }
        };
        let actions = life.step(event);
        supervised.perform(actions).await;
    }
}

/// Makes the container's image present as its `imagePullPolicy` asks, with kubelet's events
/// (`Pulling`, `Pulled`, `ErrImageNeverPull`). Runtimes without images skip all of it.
async fn ensure_image(
    ctx: &PodCtx,
    pod: &Pod,
    container: &str,
    launch: &Launch,
) -> Result<(), crate::runtime::RuntimeError> {
    use crate::runtime::image::{self, Plan};
    let image = &launch.image;
    image::validate(image).map_err(crate::runtime::RuntimeError::InvalidImageName)?;
    let Some(present) = ctx.node.runtime.image_present(image).await? else {
        return Ok(());
    };
    match image::plan(launch.pull_policy, present) {
        Plan::UsePresent => {
            let message = format!("Container image \"{image}\" already present on machine");
            ctx.container_event(pod, container, false, "Pulled", &message)
                .await;
            Ok(())
        }
        Plan::NeverPullMissing => Err(crate::runtime::RuntimeError::ImageNeverPull(format!(
            "Container image \"{image}\" is not present with pull policy of Never"
        ))),
        Plan::Pull => {
            let message = format!("Pulling image \"{image}\"");
            ctx.container_event(pod, container, false, "Pulling", &message)
                .await;
            let began = Instant::now();
            let size = ctx
                .node
                .runtime
                .pull_image(image, &launch.registry_auth)
                .await?;
            let took = began.elapsed().as_secs_f64();
            let message = format!(
                "Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting). Image size: {size} bytes."
            );
            ctx.container_event(pod, container, false, "Pulled", &message)
                .await;
            Ok(())
        }
    }
}

/// The `Exited` event for `exit`, with the termination message and how long it ran.
fn exited(
    ctx: &PodCtx,
    spec: &Spec,
    message_file: &Path,
    launch: &Launch,
    exit: Exit,
    ran_from: Instant,
) -> Event {
    Event::Exited {
        exit,
        ran_for: ran_from.elapsed(),
        message: termination_message(spec, message_file, &launch.log_path, exit),
        at: ctx.node.clock.now(),
    }
}

/// The container a probe runs against, and what its events name.
struct Target<'a> {
    ctx: &'a PodCtx,
    pod: &'a Pod,
    spec: &'a Spec,
    container: &'a dyn Container,
}

/// When a probe loop ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// At the first success (startup), or after `failureThreshold` failures in a row.
    FirstSuccess,
    /// Only after `failureThreshold` failures in a row (liveness).
    FailureThreshold,
    /// Never (readiness: it only reports).
    Never,
}

impl Target<'_> {
    /// One probe attempt; a failure is reported as an `Unhealthy` event.
    async fn once(&self, action: &ProbeAction, timing: &Timing, label: &str) -> Result<(), String> {
        let ports = self.spec.ports.clone().unwrap_or_default();
        let result = probe::run(
            action,
            self.container,
            &self.ctx.pod_ip(),
            &ports,
            timing.timeout,
        )
        .await;
        if let Err(message) = &result {
            self.ctx
                .node
                .events
                .pod(
                    self.pod,
                    Some(&self.spec.name),
                    true,
                    "Unhealthy",
                    &format!("{label} probe failed: {message}"),
                )
                .await;
        }
        result
    }

    /// Probes every period after the initial delay until `until` says stop; `Err` carries the
    /// last failure. `on_result(ok, streak, threshold)` sees every result.
    async fn repeat(
        &self,
        probe: &Probe,
        label: &str,
        until: Until,
        mut on_result: impl FnMut(bool, u32, u32),
    ) -> Result<(), String> {
        let timing = Timing::of(probe);
        let Some(action) = ProbeAction::of_probe(probe) else {
            return std::future::pending().await;
        };
        tokio::time::sleep(timing.initial_delay).await;
        let (mut successes, mut failures) = (0u32, 0u32);
        loop {
            match self.once(&action, &timing, label).await {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                    on_result(true, successes, timing.success_threshold);
                    if until == Until::FirstSuccess {
                        return Ok(());
                    }
                }
                Err(message) => {
                    failures += 1;
                    successes = 0;
                    on_result(false, failures, timing.failure_threshold);
                    if failures >= timing.failure_threshold && until != Until::Never {
                        return Err(message);
                    }
                }
            }
            tokio::time::sleep(timing.period).await;
        }
    }
}

/// Startup, then liveness and readiness probes of one running container. A failed startup or
/// liveness probe sends (message, grace) on `fail` and ends.
async fn probe_loops(
    ctx: Arc<PodCtx>,
    index: usize,
    spec: Spec,
    container: Arc<dyn Container>,
    fail: oneshot::Sender<(String, Duration)>,
) {
    let Some(pod) = ctx.current() else {
        return;
    };
    let pod_grace = Duration::from_secs(grace_seconds(&pod).max(0) as u64);
    let grace_of = |p: &Probe| {
        p.termination_grace_period_seconds
            .map_or(pod_grace, |g| Duration::from_secs(g.max(0) as u64))
    };
    let target = Target {
        ctx: &ctx,
        pod: &pod,
        spec: &spec,
        container: container.as_ref(),
    };
    // An adopted container that had already started does not prove it again.
    let started = ctx
        .container(Kind::Regular, index)
        .is_some_and(|c| c.started);
    if let Some(startup) = spec.startup_probe.as_ref().filter(|_| !started) {
        if target
            .repeat(startup, "Startup", Until::FirstSuccess, |_, _, _| {})
            .await
            .is_err()
        {
            let _ = fail.send((
                format!(
                    "Container {} failed startup probe, will be restarted",
                    spec.name
                ),
                grace_of(startup),
            ));
            return;
        }
        ctx.update_container(Kind::Regular, index, |c| {
            c.started = true;
            if spec.readiness_probe.is_none() {
                c.ready = true;
            }
        });
    }
    let liveness = async {
        match &spec.liveness_probe {
            Some(p) => {
                let _ = target
                    .repeat(p, "Liveness", Until::FailureThreshold, |_, _, _| {})
                    .await;
                grace_of(p)
            }
            None => std::future::pending().await,
        }
    };
    let readiness = async {
        let Some(p) = &spec.readiness_probe else {
            return std::future::pending::<()>().await;
        };
        let _ = target
            .repeat(p, "Readiness", Until::Never, |ok, count, threshold| {
                let ready = ctx.container(Kind::Regular, index).is_some_and(|c| c.ready);
                if count >= threshold && ok != ready {
                    ctx.update_container(Kind::Regular, index, |c| c.ready = ok);
                }
            })
            .await;
    };
    tokio::select! {
        grace = liveness => {
            let _ = fail.send((
                format!("Container {} failed liveness probe, will be restarted", spec.name),
                grace,
            ));
        }
        () = readiness => {}
    }
}
