//! One container across its restarts: start (or adopt after an agent restart), postStart,
//! probes, exit, restart with backoff per `restartPolicy`, and graceful termination (preStop,
//! SIGTERM, grace period, SIGKILL).

use super::backoff::{self, CrashBackoff};
use super::status::State;
use super::{Kind, PodCtx};
use crate::probe::{self, Action, Timing};
use crate::runtime::{Container, Exit, Launch};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container as Spec, Pod, Probe};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// How a supervised container ended for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// The pod is being stopped.
    Stopped,
}

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

fn terminated_state(
    exit: Exit,
    started_at: Timestamp,
    finished_at: Timestamp,
    id: &str,
    message: Option<String>,
) -> State {
    State::Terminated {
        exit_code: exit.code,
        signal: exit.signal,
        reason: if exit.code == 0 { "Completed" } else { "Error" }.into(),
        message,
        started_at: Some(started_at),
        finished_at,
        container_id: Some(id.to_owned()),
    }
}

/// Runs a lifecycle hook, bounded by `timeout`.
async fn run_hook(
    ctx: &PodCtx,
    spec: &Spec,
    container: &dyn Container,
    action: &Action,
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
            .and_then(Action::of_hook)
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

enum Ended {
    Exited(Exit),
    ProbeFailed(String, Duration),
    Stop(i64),
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
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    let mut backoff = CrashBackoff::default();
    let mut restart_count = ctx.container(kind, index).map_or(0, |c| c.restart_count);
    let mut first = true;
    let log_dir = ctx.node.log_dir(&pod).join(&spec.name);
    loop {
        if stop.borrow().is_some() {
            return Outcome::Stopped;
        }
        let adopted = if first {
            ctx.node.runtime.adopt(&launch.key).await
        } else {
            None
        };
        let adopting = adopted.is_some();
        first = false;
        let container: Arc<dyn Container> = match adopted {
            Some(c) => Arc::from(c),
            None => {
                launch.log_path = log_dir.join(format!("{restart_count}.log"));
                // Keep this start's log and the previous one (`kubectl logs --previous`).
                if restart_count >= 2 {
                    let _ =
                        std::fs::remove_file(log_dir.join(format!("{}.log", restart_count - 2)));
                }
                match ctx.node.runtime.start(launch.clone()).await {
                    Ok(c) => {
                        ctx.container_event(
                            &pod,
                            &spec.name,
                            false,
                            "Created",
                            &format!("Created container {}", spec.name),
                        )
                        .await;
                        Arc::from(c)
                    }
                    Err(e) => {
                        let message = e.to_string();
                        ctx.update_container(kind, index, |c| {
                            c.state = State::Waiting {
                                reason: e.reason().into(),
                                message: Some(message.clone()),
                            };
                        });
                        ctx.container_event(
                            &pod,
                            &spec.name,
                            true,
                            "Failed",
                            &format!("Error: {message}"),
                        )
                        .await;
                        let delay = backoff.on_exit(Duration::ZERO).max(Duration::from_secs(1));
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => continue,
                            _ = stop_requested(&mut stop) => return Outcome::Stopped,
                        }
                    }
                }
            }
        };
        let id = container.id();
        let started_at = if adopting {
            // Keep the start time and counters the pod already reports.
            ctx.container(kind, index)
                .and_then(|c| match c.state {
                    State::Running { started_at } => Some(started_at),
                    _ => None,
                })
                .unwrap_or_else(|| ctx.node.clock.now())
        } else {
            ctx.node.clock.now()
        };
        let ran_from = Instant::now();
        let probes_run = ctx.node.runtime.runs_processes() && kind == Kind::Regular;
        let needs_probe_gate =
            probes_run && (spec.startup_probe.is_some() || spec.readiness_probe.is_some());
        ctx.update_container(kind, index, |c| {
            c.state = State::Running { started_at };
            c.container_id = Some(id.clone());
            c.restart_count = restart_count;
            c.started = !probes_run || spec.startup_probe.is_none();
            c.ready = kind == Kind::Regular && !needs_probe_gate;
        });
        if !adopting {
            ctx.container_event(
                &pod,
                &spec.name,
                false,
                "Started",
                &format!("Started container {}", spec.name),
            )
            .await;
        }
        let grace = Duration::from_secs(grace_seconds(&pod).max(0) as u64);
        let mut post_start_failed = None;
        if !adopting
            && let Some(action) = spec
                .lifecycle
                .as_ref()
                .and_then(|l| l.post_start.as_ref())
                .and_then(Action::of_hook)
            && let Err(message) = run_hook(
                &ctx,
                &spec,
                container.as_ref(),
                &action,
                grace.max(Duration::from_secs(1)),
            )
            .await
        {
            ctx.container_event(
                &pod,
                &spec.name,
                true,
                "FailedPostStartHook",
                &format!("PostStartHook failed: {message}"),
            )
            .await;
            post_start_failed = Some(message);
        }
        let (fail_tx, fail_rx) = oneshot::channel();
        let probes = if probes_run && post_start_failed.is_none() {
            Some(tokio::spawn(probe_loops(
                Arc::clone(&ctx),
                index,
                spec.clone(),
                Arc::clone(&container),
                fail_tx,
            )))
        } else {
            None
        };
        let ended = if let Some(message) = post_start_failed.clone() {
            Ended::ProbeFailed(message, grace)
        } else {
            tokio::select! {
                exit = container.wait() => Ended::Exited(exit),
                Ok((message, grace)) = fail_rx => Ended::ProbeFailed(message, grace),
                g = stop_requested(&mut stop) => Ended::Stop(g),
            }
        };
        if let Some(p) = probes {
            p.abort();
        }
        let (exit, stopped, message) = match ended {
            Ended::Exited(exit) => (exit, false, None),
            Ended::ProbeFailed(message, grace) => {
                ctx.container_event(&pod, &spec.name, false, "Killing", &message)
                    .await;
                let exit = tokio::select! {
                    exit = terminate(&ctx, &pod, &spec, container.as_ref(), grace) => exit,
                    g = stop_requested(&mut stop) => {
                        terminate(&ctx, &pod, &spec, container.as_ref(), Duration::from_secs(g.max(0) as u64)).await
                    }
                };
                (exit, stop.borrow().is_some(), None)
            }
            Ended::Stop(g) => {
                ctx.container_event(
                    &pod,
                    &spec.name,
                    false,
                    "Killing",
                    &format!("Stopping container {}", spec.name),
                )
                .await;
                let exit = terminate(
                    &ctx,
                    &pod,
                    &spec,
                    container.as_ref(),
                    Duration::from_secs(g.max(0) as u64),
                )
                .await;
                (exit, true, None)
            }
        };
        let terminated = terminated_state(exit, started_at, ctx.node.clock.now(), &id, message);
        ctx.update_container(kind, index, |c| {
            c.state = terminated.clone();
            c.ready = false;
        });
        if stopped {
            return Outcome::Stopped;
        }
        let succeeded = exit.code == 0;
        let restart = match (kind, policy.as_str()) {
            (_, "Never") => false,
            (Kind::Init, _) | (Kind::Regular, "OnFailure") => !succeeded,
            (Kind::Regular, _) => true,
        };
        if !restart {
            return if succeeded {
                Outcome::Succeeded
            } else {
                Outcome::Failed
            };
        }
        restart_count += 1;
        let delay = backoff.on_exit(ran_from.elapsed());
        ctx.update_container(kind, index, |c| {
            c.last_terminated = Some(terminated.clone());
            c.restart_count = restart_count;
            if !delay.is_zero() {
                c.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(backoff::message(
                        delay,
                        &spec.name,
                        pod.metadata.name.as_deref().unwrap_or(""),
                        pod.metadata.namespace.as_deref().unwrap_or(""),
                        &ctx.uid,
                    )),
                };
            }
        });
        if !delay.is_zero() {
            ctx.container_event(
                &pod,
                &spec.name,
                true,
                "BackOff",
                &format!(
                    "Back-off restarting failed container {} in pod {}_{}({})",
                    spec.name,
                    pod.metadata.name.as_deref().unwrap_or(""),
                    pod.metadata.namespace.as_deref().unwrap_or(""),
                    ctx.uid
                ),
            )
            .await;
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop_requested(&mut stop) => return Outcome::Stopped,
            }
        }
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
    async fn once(&self, action: &Action, timing: &Timing, label: &str) -> Result<(), String> {
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
        let Some(action) = Action::of_probe(probe) else {
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
    if let Some(startup) = &spec.startup_probe {
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
