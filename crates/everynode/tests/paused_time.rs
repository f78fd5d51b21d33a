//! Timing rules on paused tokio time: the real API server in-process (memory store), the real
//! controllers and the real agent heartbeat as `kube::Client`s over its tower router, all on one
//! `PausedClock`. Time moves only as the test lets it: `pass(d)` lets `d` of simulated time go
//! by, each timer firing at its own instant, and takes no real time (the paused runtime jumps
//! from one timer to the next). No test here waits on the wall clock.

use everynode_agent::node::{self, NodeConfig};
use everynode_apiserver::registry::Options;
use everynode_apiserver::server::{self, CacheSizes};
use everynode_clock::{Clock, PausedClock, SharedClock};
use everynode_controllers::daemonset::expectations::{EXPIRY, Expectations};
use everynode_controllers::nodelifecycle;
use everynode_controllers::stores::Informers;
use everynode_store::MemoryStore;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "paused-time-test-token";

fn start_wall() -> Timestamp {
    "2026-11-29T12:00:00Z".parse().expect("a timestamp")
}

/// An API server on `clock`, in this process, and a client of it that sends the admin token.
async fn cluster(clock: SharedClock) -> Client {
    let store = Arc::new(MemoryStore::new(10_000));
    let (_api, router) = server::start(
        store,
        clock,
        Options::default(),
        CacheSizes::default(),
        server::AuthnConfig::admin(TOKEN),
    )
    .await
    .expect("the API server starts");
    let authenticated = tower::ServiceBuilder::new()
        .map_request(|mut request: http::Request<kube::client::Body>| {
            request.headers_mut().insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_static("Bearer paused-time-test-token"),
            );
            request
        })
        .service(router);
    Client::new(authenticated, "default")
}

/// Lets `d` of simulated time go by (no real time under paused tokio time).
async fn pass(d: Duration) {
    tokio::time::sleep(d).await;
}

fn node_config(name: &str) -> NodeConfig {
    NodeConfig {
        name: name.to_owned(),
        ip: "127.0.0.1".into(),
        labels: Default::default(),
        taints: Vec::new(),
        capacity: [("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        info: Default::default(),
        port: 10250,
        certificate_sha256: "ab".repeat(32),
        lease_duration_seconds: 40,
        status_update_frequency: Duration::from_secs(10),
        status_report_frequency: Duration::from_secs(300),
        status_report_phase: Duration::ZERO,
        pod_cidr: None,
    }
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == key && t.effect == effect))
}

fn renew_time(lease: &Lease) -> Option<Timestamp> {
    lease.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)
}

fn pod_on(name: &str, node: &str, tolerations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "tolerations": tolerations,
            "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .expect("a pod")
}

/// Lease renewal, its expiry, the node-monitor grace period and taint eviction, in one
/// timeline: the agent renews its Lease every quarter of its duration and the node stays Ready
/// long past the grace period; once the agent stops, the node goes Unknown after the grace
/// period (not before) and gets the unreachable taints; a pod tolerating the NoExecute taint
/// for 60 s is evicted 60 s later, one tolerating it forever stays.
#[tokio::test(start_paused = true)]
async fn lease_renewal_expiry_node_grace_and_eviction() {
    let clock = PausedClock::shared(start_wall());
    let client = cluster(clock.clone()).await;
    let cfg = node_config("node-1");
    node::register(&client, &cfg, clock.as_ref())
        .await
        .expect("the node registers");
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let (_node_tx, node_rx) =
        tokio::sync::watch::channel(Arc::new(nodes.get("node-1").await.expect("the node")));
    let heartbeat = tokio::spawn(node::heartbeat(
        client.clone(),
        Arc::new(cfg),
        clock.clone(),
        node_rx,
    ));
    let settings = nodelifecycle::Settings {
        monitor_period: Duration::from_secs(5),
        grace_period: Duration::from_secs(50),
        startup_grace_period: Duration::from_secs(60),
    };
    let lifecycle = tokio::spawn(nodelifecycle::run(
        Informers::new(client.clone()),
        clock.clone(),
        settings,
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let unreachable = |seconds: Option<i64>| {
        json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": seconds}])
    };
    for pod in [
        pod_on("brief", "node-1", unreachable(Some(60))),
        pod_on("daemon", "node-1", unreachable(None)),
    ] {
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("a pod");
    }

    // Renewal: a 40 s lease is renewed every 10 s, at the clock's time.
    pass(Duration::from_secs(35)).await;
    let lease = leases.get("node-1").await.expect("the node's lease");
    assert_eq!(
        renew_time(&lease),
        Some(start_wall() + SignedDuration::from_secs(30)),
        "renewed at 0, 10, 20 and 30 s"
    );
    // Well past the grace period, a renewing node is still Ready.
    pass(Duration::from_secs(120)).await;
    let node = nodes.get("node-1").await.expect("the node");
    assert_eq!(ready_status(&node).as_deref(), Some("True"));
    assert!(!has_taint(
        &node,
        "node.kubernetes.io/unreachable",
        "NoExecute"
    ));

    // Expiry: the agent stops. Its last renewal was at 150 s.
    heartbeat.abort();
    let last = renew_time(&leases.get("node-1").await.expect("lease")).expect("renewed");
    let silent_since = last.duration_since(start_wall());
    assert_eq!(silent_since, SignedDuration::from_secs(150));
    // 45 s of silence is within the 50 s grace period.
    pass(Duration::from_secs(45) - Duration::from_secs(5)).await;
    let node = nodes.get("node-1").await.expect("the node");
    assert_eq!(
        ready_status(&node).as_deref(),
        Some("True"),
        "within the grace period"
    );
    // Past the grace period, at the next monitor pass, the node is Unknown and tainted.
    pass(Duration::from_secs(12)).await;
    let node = nodes.get("node-1").await.expect("the node");
    assert_eq!(ready_status(&node).as_deref(), Some("Unknown"));
    assert!(has_taint(
        &node,
        "node.kubernetes.io/unreachable",
        "NoExecute"
    ));
    assert!(has_taint(
        &node,
        "node.kubernetes.io/unreachable",
        "NoSchedule"
    ));
    let tainted_at = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .and_then(|ts| {
            ts.iter()
                .find(|t| t.effect == "NoExecute")
                .and_then(|t| t.time_added.as_ref())
        })
        .map(|t| t.0)
        .expect("the NoExecute taint records when it was added");

    // Eviction: the pod tolerating the taint for 60 s stays for those 60 s, then goes.
    let evicted = |pod: &Pod| pod.metadata.deletion_timestamp.is_some();
    let until_evicted = tainted_at + SignedDuration::from_secs(60) - clock.now();
    pass(Duration::try_from(until_evicted).expect("in the future") - Duration::from_secs(2)).await;
    let brief = pods.get_opt("brief").await.expect("read");
    assert!(
        brief.as_ref().is_some_and(|p| !evicted(p)),
        "tolerated for 60 s"
    );
    pass(Duration::from_secs(10)).await;
    let brief = pods.get_opt("brief").await.expect("read");
    assert!(brief.as_ref().is_none_or(evicted), "evicted after 60 s");
    let daemon = pods.get_opt("daemon").await.expect("read");
    assert!(
        daemon.as_ref().is_some_and(|p| !evicted(p)),
        "tolerates the taint forever"
    );
    lifecycle.abort();
}

/// Expectations expire after upstream's 5 minutes, by the clock the controller is given.
#[tokio::test(start_paused = true)]
async fn expectations_expire_after_five_minutes() {
    let clock = PausedClock::starting_at(start_wall());
    let mut expectations = Expectations::default();
    expectations.expect("ds-uid", 3, 0, clock.now());
    assert!(!expectations.satisfied("ds-uid", clock.now()));
    pass(EXPIRY - Duration::from_secs(1)).await;
    assert!(
        !expectations.satisfied("ds-uid", clock.now()),
        "still waiting for the watch"
    );
    pass(Duration::from_secs(1)).await;
    assert!(expectations.satisfied("ds-uid", clock.now()), "given up");
}

fn daemonset(min_ready_seconds: i32) -> DaemonSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "minReadySeconds": min_ready_seconds,
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}}}
    }))
    .expect("a DaemonSet")
}

/// A node that reports Ready, with no agent behind it: the test plays the kubelet.
async fn ready_node(client: &Client, clock: &dyn Clock) {
    node::register(client, &node_config("node-1"), clock)
        .await
        .expect("the node registers");
}

/// The DaemonSet controller and the scheduler on `clock`.
fn controllers(client: &Client, clock: &SharedClock) -> Vec<tokio::task::JoinHandle<()>> {
    let informers = Informers::new(client.clone());
    vec![
        tokio::spawn(everynode_controllers::daemonset::controller::run(
            informers.clone(),
            clock.clone(),
            250,
            true,
        )),
        tokio::spawn(everynode_controllers::scheduler::run(
            informers,
            clock.clone(),
        )),
    ]
}

/// The one pod of the DaemonSet that is not being deleted, once it is bound.
async fn live_pod(pods: &Api<Pod>) -> Option<Pod> {
    pods.list(&Default::default())
        .await
        .expect("list pods")
        .items
        .into_iter()
        .find(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
        })
}

async fn set_phase(pods: &Api<Pod>, name: &str, phase: &str, ready: bool, now: Timestamp) {
    let status = json!({"status": {"phase": phase, "conditions": [
        {"type": "Ready", "status": if ready { "True" } else { "False" },
         "lastTransitionTime": now}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("pod status");
}

async fn available(client: &Client) -> i32 {
    Api::<DaemonSet>::namespaced(client.clone(), "default")
        .get("agent")
        .await
        .expect("the DaemonSet")
        .status
        .and_then(|s| s.number_available)
        .unwrap_or(0)
}

/// S-103: a Ready pod becomes available minReadySeconds later with no event to say so; the
/// controller requeues itself for that moment instead of waiting for its 30 s resync.
#[tokio::test(start_paused = true)]
async fn min_ready_seconds_requeue() {
    let clock = PausedClock::shared(start_wall());
    let client = cluster(clock.clone()).await;
    ready_node(&client, clock.as_ref()).await;
    let running = controllers(&client, &clock);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    daemonsets
        .create(&PostParams::default(), &daemonset(10))
        .await
        .expect("create");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pass(Duration::from_secs(2)).await;
    let pod = live_pod(&pods).await.expect("a pod bound to node-1");
    let name = pod.metadata.name.clone().expect("named");
    set_phase(&pods, &name, "Running", true, clock.now()).await;
    pass(Duration::from_secs(9)).await;
    assert_eq!(available(&client).await, 0, "Ready for 9 of 10 s");
    pass(Duration::from_secs(3)).await;
    assert_eq!(
        available(&client).await,
        1,
        "available 10 s after Ready, long before a resync"
    );
    running.iter().for_each(tokio::task::JoinHandle::abort);
}

/// S-045: a failed daemon pod is replaced at once the first time; a pod that fails again on
/// the same node is kept until its back-off (1 s, then doubling) has passed.
#[tokio::test(start_paused = true)]
async fn failed_pod_backoff() {
    let clock = PausedClock::shared(start_wall());
    let client = cluster(clock.clone()).await;
    ready_node(&client, clock.as_ref()).await;
    let running = controllers(&client, &clock);
    Api::<DaemonSet>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &daemonset(0))
        .await
        .expect("create");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pass(Duration::from_secs(2)).await;
    let deleted = |name: &str| {
        let pods = pods.clone();
        let name = name.to_owned();
        async move {
            pods.get_opt(&name)
                .await
                .expect("read")
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
        }
    };

    // First failure: no back-off yet, deleted at once.
    let first = live_pod(&pods).await.expect("a pod");
    let first = first.metadata.name.expect("named");
    set_phase(&pods, &first, "Failed", false, clock.now()).await;
    pass(Duration::from_millis(300)).await;
    assert!(
        deleted(&first).await,
        "the first failure is replaced at once"
    );
    pass(Duration::from_millis(300)).await;

    // Second failure within the 1 s back-off: kept until it has passed.
    let second = live_pod(&pods).await.expect("a replacement");
    let second = second.metadata.name.expect("named");
    assert_ne!(second, first);
    set_phase(&pods, &second, "Failed", false, clock.now()).await;
    pass(Duration::from_millis(200)).await;
    assert!(!deleted(&second).await, "in back-off");
    pass(Duration::from_secs(2)).await;
    assert!(
        deleted(&second).await,
        "deleted once the 1 s back-off passed"
    );

    // Third failure: the delay has doubled to 2 s.
    pass(Duration::from_millis(300)).await;
    let third = live_pod(&pods).await.expect("a replacement");
    let third = third.metadata.name.expect("named");
    set_phase(&pods, &third, "Failed", false, clock.now()).await;
    pass(Duration::from_millis(1500)).await;
    assert!(
        !deleted(&third).await,
        "a 2 s back-off has not passed at 1.5 s"
    );
    pass(Duration::from_secs(2)).await;
    assert!(
        deleted(&third).await,
        "deleted once the 2 s back-off passed"
    );
    running.iter().for_each(tokio::task::JoinHandle::abort);
}

/// The container statuses of pod `name`'s only container: (restartCount, waiting reason and
/// message, running).
async fn container_state(pods: &Api<Pod>, name: &str) -> (i32, Option<(String, String)>, bool) {
    let pod = pods.get(name).await.expect("the pod");
    let status = pod
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|cs| cs.into_iter().next())
        .expect("a container status");
    let state = status.state.unwrap_or_default();
    let waiting = state
        .waiting
        .map(|w| (w.reason.unwrap_or_default(), w.message.unwrap_or_default()));
    (status.restart_count, waiting, state.running.is_some())
}

/// CrashLoopBackOff, by the real agent on a runtime whose containers exit 1 s after they start:
/// the first restart is at once, then 10 s, then 20 s, each announced in the waiting message.
#[tokio::test(start_paused = true)]
async fn crash_loop_back_off_delays() {
    use everynode_agent::agent::{self, AgentConfig};
    use everynode_agent::runtime::hollow::HollowRuntime;
    let clock = PausedClock::shared(start_wall());
    let client = cluster(clock.clone()).await;
    let state = tempfile::tempdir().expect("a state directory");
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let config = AgentConfig {
        node: node_config("node-1"),
        state_dir: state.path().to_owned(),
        log_max_bytes: 1 << 20,
        log_max_files: 2,
        normal_events: true,
        pod_manifest_path: None,
        shutdown_grace_period: None,
        cluster_dns: None,
    };
    let agent = tokio::spawn(agent::run(
        client.clone(),
        vec![config],
        Arc::new(HollowRuntime::exiting(
            Duration::ZERO,
            Duration::from_secs(1),
            1,
        )),
        clock.clone(),
        stop_rx,
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pass(Duration::from_secs(1)).await;
    pods.create(
        &PostParams::default(),
        &pod_on("crasher", "node-1", json!([])),
    )
    .await
    .expect("a pod");
    // Simulated timeline from the first start at t=0 (give or take the pod's admission):
    // runs 1 s, restarts at once, runs 1 s (t=2), backs off 10 s, runs from t=12 to 13,
    // backs off 20 s, runs from t=33.
    let start = tokio::time::Instant::now();
    let at = |secs: f64| start + Duration::from_secs_f64(secs);
    tokio::time::sleep_until(at(7.0)).await;
    let (restarts, waiting, running) = container_state(&pods, "crasher").await;
    assert_eq!(restarts, 2, "exited at 1 s and at 2 s");
    assert!(!running);
    let (reason, message) = waiting.expect("waiting to restart");
    assert_eq!(reason, "CrashLoopBackOff");
    assert!(
        message.starts_with("back-off 10s restarting failed container=c pod=crasher_default("),
        "{message}"
    );
    tokio::time::sleep_until(at(12.6)).await;
    let (restarts, _, running) = container_state(&pods, "crasher").await;
    assert_eq!(
        (restarts, running),
        (2, true),
        "restarted 10 s after the second exit"
    );
    tokio::time::sleep_until(at(25.0)).await;
    let (restarts, waiting, running) = container_state(&pods, "crasher").await;
    assert_eq!((restarts, running), (3, false));
    let (_, message) = waiting.expect("waiting to restart");
    assert!(message.starts_with("back-off 20s"), "{message}");
    tokio::time::sleep_until(at(32.0)).await;
    assert!(
        !container_state(&pods, "crasher").await.2,
        "still backing off at 32 s"
    );
    tokio::time::sleep_until(at(33.6)).await;
    let (restarts, _, running) = container_state(&pods, "crasher").await;
    assert_eq!(
        (restarts, running),
        (3, true),
        "restarted 20 s after the third exit"
    );
    agent.abort();
}

/// Upstream's recorder aggregates: a repeat of an event within ten minutes bumps the first
/// one's count and last timestamp; after ten quiet minutes a new event starts a new series.
#[tokio::test(start_paused = true)]
async fn a_repeated_controller_event_is_one_object_with_a_count() {
    use everynode_controllers::events::Recorder;
    use k8s_openapi::api::core::v1::{Event, ObjectReference};
    let clock = PausedClock::shared(start_wall());
    let client = cluster(clock.clone()).await;
    let recorder = Recorder::new(client.clone(), "daemonset-controller", clock.clone());
    let involved = ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("DaemonSet".into()),
        name: Some("agent".into()),
        namespace: Some("default".into()),
        uid: Some("ds-uid".into()),
        ..Default::default()
    };
    for _ in 0..3 {
        recorder
            .record(involved.clone(), true, "FailedCreate", "quota exceeded")
            .await;
        pass(Duration::from_secs(30)).await;
    }
    recorder
        .record(
            involved.clone(),
            false,
            "SuccessfulCreate",
            "Created pod: agent-x",
        )
        .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&Default::default()).await.expect("events");
    let failed: Vec<&Event> = list
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .collect();
    assert_eq!(failed.len(), 1, "one object for the series");
    assert_eq!(failed[0].count, Some(3));
    let first = failed[0].first_timestamp.as_ref().map(|t| t.0);
    let last = failed[0].last_timestamp.as_ref().map(|t| t.0);
    assert_eq!(first, Some(start_wall()));
    assert_eq!(last, Some(start_wall() + SignedDuration::from_secs(60)));
    assert_eq!(list.items.len(), 2, "another reason is another event");
    // Ten quiet minutes end the series.
    pass(Duration::from_secs(601)).await;
    recorder
        .record(involved, true, "FailedCreate", "quota exceeded")
        .await;
    let list = events.list(&Default::default()).await.expect("events");
    assert_eq!(
        list.items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
            .count(),
        2
    );
}

fn ready_heartbeat(node: &Node) -> Option<Timestamp> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?
        .last_heartbeat_time
        .as_ref()
        .map(|t| t.0)
}

/// Nodes started together spread their periodic status reports: an unchanged status is
/// reported once per report period, and a node whose phase is 200 s of a 300 s period reports
/// first after 100 s, while a node without a phase waits the whole period. (A fleet of 10,000
/// nodes all reporting in the same second went over the server's write limits.)
#[tokio::test(start_paused = true)]
async fn a_fleets_unchanged_status_reports_are_spread_over_the_period() {
    let clock = PausedClock::shared(start_wall());
    let client = cluster(clock.clone()).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let mut running = Vec::new();
    for (name, phase) in [("early", 200), ("late", 0)] {
        let cfg = NodeConfig {
            status_report_phase: Duration::from_secs(phase),
            ..node_config(name)
        };
        node::register(&client, &cfg, clock.as_ref())
            .await
            .expect("the node registers");
        let current = Arc::new(nodes.get(name).await.expect("the node"));
        let (node_tx, node_rx) = tokio::sync::watch::channel(current);
        let heartbeat = tokio::spawn(node::heartbeat(
            client.clone(),
            Arc::new(cfg),
            clock.clone(),
            node_rx,
        ));
        running.push((node_tx, heartbeat));
    }
    let reported = |name: &'static str| {
        let nodes = nodes.clone();
        async move { ready_heartbeat(&nodes.get(name).await.expect("the node")) }
    };
    let registered = (reported("early").await, reported("late").await);

    pass(Duration::from_secs(95)).await;
    assert_eq!(
        reported("early").await,
        registered.0,
        "not before its phase"
    );
    pass(Duration::from_secs(20)).await;
    assert_ne!(
        reported("early").await,
        registered.0,
        "reported after 100 s"
    );
    assert_eq!(reported("late").await, registered.1, "a whole period");
    pass(Duration::from_secs(200)).await;
    assert_ne!(reported("late").await, registered.1, "reported after 300 s");
    for (_node_tx, heartbeat) in running {
        heartbeat.abort();
    }
}
