//! Pod status as kubelet reports it, computed from what the agent observed: a pure function of
//! the pod (for the conditions it already has), the observation and `now`.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

#[derive(Clone, Debug, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        message: Option<String>,
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
        container_id: Option<String>,
    },
}

impl State {
    pub fn creating() -> State {
        State::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        }
    }

    fn to_api(&self) -> ApiState {
        match self {
            State::Waiting { reason, message } => ApiState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..Default::default()
            },
            State::Running { started_at } => ApiState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..Default::default()
            },
            State::Terminated {
                exit_code,
                signal,
                reason,
                message,
                started_at,
                finished_at,
                container_id,
            } => ApiState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    signal: *signal,
                    reason: Some(reason.clone()),
                    message: message.clone(),
                    started_at: started_at.map(Time),
                    finished_at: Some(Time(*finished_at)),
                    container_id: container_id.clone(),
                }),
                ..Default::default()
            },
        }
    }
}

/// What the agent knows of one container.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub container_id: Option<String>,
    pub state: State,
    pub last_terminated: Option<State>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
    /// What the pod reported for this container before this agent started: an adopted
    /// container with the same ID keeps its `started` and `ready` rather than flapping to
    /// not ready while its probes run again (upstream's rule since 1.35).
    pub previous: Option<Previous>,
}

/// A container's identity and readiness as the pod last reported them.
#[derive(Clone, Debug, PartialEq)]
pub struct Previous {
    pub container_id: String,
    pub started: bool,
    pub ready: bool,
}

impl ContainerView {
    pub fn new(name: &str, image: &str) -> ContainerView {
        ContainerView {
            name: name.to_owned(),
            image: image.to_owned(),
            container_id: None,
            state: State::creating(),
            last_terminated: None,
            restart_count: 0,
            ready: false,
            started: false,
            previous: None,
        }
    }

    fn to_api(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: String::new(),
            container_id: self.container_id.clone(),
            state: Some(self.state.to_api()),
            last_state: Some(
                self.last_terminated
                    .as_ref()
                    .map(State::to_api)
                    .unwrap_or_default(),
            ),
            ready: self.ready,
            restart_count: self.restart_count,
            started: Some(self.started),
            ..Default::default()
        }
    }
}

/// What the agent knows of one pod.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PodView {
    /// Admission refused the pod: (reason, message). The pod is Failed.
    pub rejected: Option<(String, String)>,
    /// Volumes are set up (condition PodReadyToStartContainers).
    pub sandbox_ready: bool,
    /// Every init container has succeeded.
    pub initialized: bool,
    pub init_containers: Vec<ContainerView>,
    pub containers: Vec<ContainerView>,
    pub start_time: Option<Timestamp>,
    pub host_ip: String,
    pub pod_ip: String,
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn exited(state: &State) -> Option<i32> {
    match state {
        State::Terminated { exit_code, .. } => Some(*exit_code),
        _ => None,
    }
}

/// Upstream's `getPhase`.
pub fn phase(pod: &Pod, view: &PodView) -> &'static str {
    if view.rejected.is_some() {
        return "Failed";
    }
    let policy = restart_policy(pod);
    if !view.initialized {
        let init_failed = view
            .init_containers
            .iter()
            .any(|c| exited(&c.state).is_some_and(|code| code != 0));
        return if init_failed && policy == "Never" {
            "Failed"
        } else {
            "Pending"
        };
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &view.containers {
        match &c.state {
            State::Running { .. } => running += 1,
            State::Terminated { exit_code, .. } => {
                stopped += 1;
                if *exit_code == 0 {
                    succeeded += 1;
                }
            }
            State::Waiting { .. } => {
                if c.last_terminated.is_some() {
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ => "Failed",
        }
    } else {
        "Pending"
    }
}

fn condition(
    pod: &Pod,
    kind: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let previous = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind));
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    PodCondition {
        type_: kind.to_owned(),
        status: status.to_owned(),
        reason,
        message,
        last_transition_time,
        ..Default::default()
    }
}

/// The complete pod status to report.
pub fn pod_status(pod: &Pod, view: &PodView, now: Timestamp) -> PodStatus {
    let phase = phase(pod, view);
    let mut status = PodStatus {
        phase: Some(phase.to_owned()),
        host_ip: Some(view.host_ip.clone()).filter(|s| !s.is_empty()),
        host_ips: Some(vec![HostIP {
            ip: view.host_ip.clone(),
        }])
        .filter(|_| !view.host_ip.is_empty()),
        pod_ip: Some(view.pod_ip.clone()).filter(|s| !s.is_empty()),
        pod_ips: Some(vec![PodIP {
            ip: view.pod_ip.clone(),
        }])
        .filter(|_| !view.pod_ip.is_empty()),
        start_time: view.start_time.map(Time),
        qos_class: pod.status.as_ref().and_then(|s| s.qos_class.clone()),
        ..Default::default()
    };
    if let Some((reason, message)) = &view.rejected {
        status.reason = Some(reason.clone());
        status.message = Some(message.clone());
        status.conditions = pod.status.as_ref().and_then(|s| s.conditions.clone());
        return status;
    }
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let names = |pred: &dyn Fn(&ContainerView) -> bool, list: &[ContainerView]| {
        list.iter()
            .filter(|c| pred(c))
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    let unready = names(&|c| !c.ready, &view.containers);
    let incomplete = names(&|c| exited(&c.state) != Some(0), &view.init_containers);
    let gates_missing: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|g| {
            !pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == g.condition_type && c.status == "True")
                })
        })
        .map(|g| g.condition_type)
        .collect();
    let mut conditions = vec![condition(
        pod,
        "PodReadyToStartContainers",
        view.sandbox_ready && !terminal,
        None,
        None,
        now,
    )];
    conditions.push(if view.initialized {
        condition(pod, "Initialized", true, None, None, now)
    } else {
        condition(
            pod,
            "Initialized",
            false,
            Some("ContainersNotInitialized".into()),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
            now,
        )
    });
    let containers_ready = unready.is_empty() && !terminal;
    let (reason, message) = if terminal {
        (Some("PodCompleted".to_owned()), None)
    } else if !unready.is_empty() {
        (
            Some("ContainersNotReady".to_owned()),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    } else {
        (None, None)
    };
    let (ready_reason, ready_message) = if containers_ready && !gates_missing.is_empty() {
        (
            Some("ReadinessGatesNotReady".to_owned()),
            Some(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                gates_missing[0]
            )),
        )
    } else {
        (reason.clone(), message.clone())
    };
    conditions.push(condition(
        pod,
        "Ready",
        containers_ready && gates_missing.is_empty(),
        ready_reason,
        ready_message,
        now,
    ));
    conditions.push(condition(
        pod,
        "ContainersReady",
        containers_ready,
        reason,
        message,
        now,
    ));
    // Conditions the agent does not own (PodScheduled, readiness gates, DisruptionTarget) stay.
    let owned = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
    ];
    for c in pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
    {
        if !owned.contains(&c.type_.as_str()) {
            conditions.push(c);
        }
    }
    status.conditions = Some(conditions);
    status.container_statuses = Some(view.containers.iter().map(ContainerView::to_api).collect());
    if !view.init_containers.is_empty() {
        status.init_container_statuses = Some(
            view.init_containers
                .iter()
                .map(ContainerView::to_api)
                .collect(),
        );
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]}
        }))
        .expect("pod")
    }

    fn terminated(code: i32) -> State {
        State::Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
            container_id: None,
        }
    }

    fn view(states: [State; 2]) -> PodView {
        let [a, b] = states;
        let mut va = ContainerView::new("a", "img");
        va.state = a;
        let mut vb = ContainerView::new("b", "img");
        vb.state = b;
        PodView {
            sandbox_ready: true,
            initialized: true,
            containers: vec![va, vb],
            ..Default::default()
        }
    }

    #[test]
    fn phase_follows_upstream_get_phase() {
        let running = State::Running {
            started_at: Timestamp::UNIX_EPOCH,
        };
        assert_eq!(
            phase(&pod("Always"), &view([running.clone(), State::creating()])),
            "Pending"
        );
        assert_eq!(
            phase(&pod("Always"), &view([running.clone(), terminated(1)])),
            "Running"
        );
        assert_eq!(
            phase(&pod("Always"), &view([terminated(0), terminated(1)])),
            "Running"
        );
        assert_eq!(
            phase(&pod("Never"), &view([terminated(0), terminated(1)])),
            "Failed"
        );
        assert_eq!(
            phase(&pod("Never"), &view([terminated(0), terminated(0)])),
            "Succeeded"
        );
        assert_eq!(
            phase(&pod("OnFailure"), &view([terminated(0), terminated(1)])),
            "Running"
        );
        // A container waiting to restart after a crash counts as stopped, not waiting.
        let mut crashed = view([running, State::creating()]);
        crashed.containers[1].last_terminated = Some(terminated(1));
        crashed.containers[1].state = State::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: None,
        };
        assert_eq!(phase(&pod("Always"), &crashed), "Running");
    }

    #[test]
    fn ready_condition_names_unready_containers_and_keeps_transition_times() {
        let now: Timestamp = "2026-11-25T10:00:00Z".parse().expect("time");
        let running = State::Running { started_at: now };
        let mut v = view([running.clone(), running]);
        v.containers[0].ready = true;
        let s = pod_status(&pod("Always"), &v, now);
        let conds = s.conditions.expect("conditions");
        let ready = conds.iter().find(|c| c.type_ == "Ready").expect("ready");
        assert_eq!(ready.status, "False");
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [b]")
        );
        // Unchanged status keeps the old transition time.
        assert_eq!(
            ready.last_transition_time.as_ref().map(|t| t.0.to_string()),
            Some("2026-01-01T00:00:00Z".into())
        );
        assert!(conds.iter().any(|c| c.type_ == "PodScheduled"));
        v.containers[1].ready = true;
        let s = pod_status(&pod("Always"), &v, now);
        let conds = s.conditions.expect("conditions");
        let ready = conds.iter().find(|c| c.type_ == "Ready").expect("ready");
        assert_eq!(ready.status, "True");
        assert_eq!(ready.last_transition_time.as_ref().map(|t| t.0), Some(now));
    }
}
