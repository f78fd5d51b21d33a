//! The controllers' metrics, registered with the process's registry (`everynode_metrics`) and
//! served on the API server's `/metrics` when the controllers run in the server's process.
//! Names are upstream's where upstream has the metric (the work queue's, the scheduler's);
//! everynode's own are prefixed `everynode_`.

use everynode_metrics::{register, short_histogram};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::LazyLock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub name: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DaemonSetLabels {
    pub namespace: String,
    pub daemonset: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub result: &'static str,
    pub profile: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PendingLabels {
    pub queue: &'static str,
}

#[derive(Clone)]
pub struct ShortBuckets;

impl MetricConstructor<Histogram> for ShortBuckets {
    fn new_metric(&self) -> Histogram {
        short_histogram()
    }
}

/// The DaemonSet controller's.
pub struct DaemonSetMetrics {
    /// DaemonSets waiting for a pass (upstream's `workqueue_depth`).
    pub depth: Family<QueueLabels, Gauge>,
    pub adds: Family<QueueLabels, Counter>,
    /// How long a pass takes, writes included (upstream's `workqueue_work_duration_seconds`).
    pub work: Family<QueueLabels, Histogram, ShortBuckets>,
    pub pods_created: Family<DaemonSetLabels, Counter>,
    pub pods_deleted: Family<DaemonSetLabels, Counter>,
    pub rollout_started: Family<DaemonSetLabels, Gauge>,
    pub rollout_last_progress: Family<DaemonSetLabels, Gauge>,
    pub nodes_in_scope: Family<DaemonSetLabels, Gauge>,
}

pub static DAEMONSET: LazyLock<DaemonSetMetrics> = LazyLock::new(|| DaemonSetMetrics {
    depth: register(
        "workqueue_depth",
        "Current depth of workqueue",
        Family::default(),
    ),
    adds: register(
        "workqueue_adds",
        "Total number of adds handled by workqueue",
        Family::default(),
    ),
    work: register(
        "workqueue_work_duration_seconds",
        "How long in seconds processing an item from workqueue takes.",
        Family::new_with_constructor(ShortBuckets),
    ),
    pods_created: register(
        "everynode_daemonset_controller_pods_created",
        "Pods the DaemonSet controller created, by DaemonSet.",
        Family::default(),
    ),
    pods_deleted: register(
        "everynode_daemonset_controller_pods_deleted",
        "Pods the DaemonSet controller deleted, by DaemonSet.",
        Family::default(),
    ),
    rollout_started: register(
        "everynode_daemonset_rollout_start_time_seconds",
        "Unix time at which the controller first saw the current rollout (time() minus this is how long it has run).",
        Family::default(),
    ),
    rollout_last_progress: register(
        "everynode_daemonset_rollout_last_progress_time_seconds",
        "Unix time of the current rollout's last progress (more pods updated or available); the progress deadline counts from it.",
        Family::default(),
    ),
    nodes_in_scope: register(
        "everynode_daemonset_rollout_nodes_in_scope",
        "Nodes in scope of the current rollout (not held back by pause, partition or canary selector).",
        Family::default(),
    ),
});

/// The scheduler's.
pub struct SchedulerMetrics {
    pub attempts: Family<AttemptLabels, Counter>,
    pub attempt_duration: Family<AttemptLabels, Histogram, ShortBuckets>,
    pub pending: Family<PendingLabels, Gauge>,
}

pub static SCHEDULER: LazyLock<SchedulerMetrics> = LazyLock::new(|| SchedulerMetrics {
    attempts: register(
        "scheduler_schedule_attempts",
        "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
        Family::default(),
    ),
    attempt_duration: register(
        "scheduler_scheduling_attempt_duration_seconds",
        "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
        Family::new_with_constructor(ShortBuckets),
    ),
    pending: register(
        "scheduler_pending_pods",
        "Number of pending pods, by the queue type. 'active' means number of pods waiting to be tried; 'backoff' means number of pods in backoff after a failed attempt.",
        Family::default(),
    ),
});

pub const DAEMONSET_QUEUE: QueueLabels = QueueLabels { name: "daemonset" };
pub const PROFILE: &str = "default-scheduler";

/// Registers the families with their fixed series, so a scrape shows them from the start.
pub fn init() {
    // A series exists from its first `get_or_create`; the guards it returns are let go at once.
    let _ = DAEMONSET.depth.get_or_create(&DAEMONSET_QUEUE);
    let _ = DAEMONSET.adds.get_or_create(&DAEMONSET_QUEUE);
    let _ = DAEMONSET.work.get_or_create(&DAEMONSET_QUEUE);
    LazyLock::force(&SCHEDULER);
    for queue in ["active", "backoff"] {
        let _ = SCHEDULER.pending.get_or_create(&PendingLabels { queue });
    }
}
