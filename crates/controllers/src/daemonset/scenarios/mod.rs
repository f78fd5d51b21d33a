//! Spec §5.2–§5.6 scenarios, one test each, named after the scenario. Each runs the pure pass
//! against an in-memory world that applies plans the way upstream's test fakes do: a pass's
//! writes are observed at once.

use super::backoff::Backoff;
use super::pass::{HistoryOp, Pass, PassInput, Plan, Skip, sync};
use everynode_api::daemonset::{self as rules, HASH_LABEL};
use everynode_api::registry::Kind;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::time::Duration;

fn l1() -> Value {
    json!({"name": "simple-daemon", "type": "production"})
}
/// L1 with the hash of an older template.
fn old() -> Value {
    json!({"name": "simple-daemon", "type": "production", HASH_LABEL: "old-hash"})
}
fn l2() -> Value {
    json!({"name": "simple-daemon", "type": "test"})
}

/// DaemonSet `foo` as the API server stores it (defaulted), with a spec patch merged in.
fn ds_with(spec_patch: Value) -> DaemonSet {
    let mut v = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "foo", "namespace": "default", "uid": "foo-uid", "generation": 1,
            "annotations": {"deprecated.daemonset.template.generation": "1"}, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"selector": {"matchLabels": l1()}, "template": {"metadata": {"labels": l1()},
            "spec": {"containers": [{"name": "foo", "image": "foo/bar"}]}}}});
    merge(&mut v["spec"], spec_patch);
    everynode_api::defaults::apply(Kind::DaemonSet, &mut v);
    serde_json::from_value(v).expect("ds")
}

fn merge(t: &mut Value, p: Value) {
    match (t, p) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p,
    }
}

fn ds() -> DaemonSet {
    ds_with(json!({}))
}

fn node(name: &str, extra: Value) -> Node {
    let mut v = json!({"metadata": {"name": name, "labels": {}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    merge(&mut v, extra);
    serde_json::from_value(v).expect("node")
}

fn nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| node(&format!("node-{i}"), json!({})))
        .collect()
}

fn blue() -> Value {
    json!({"metadata": {"labels": {"color": "blue", "speed": "fast"}}})
}

fn t(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_800_000_000 + secs)
}

struct World {
    ds: DaemonSet,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    revisions: Vec<ControllerRevision>,
    backoff: Backoff,
    now: Timestamp,
    made: usize,
    last: Pass,
    progress: Option<super::progress::Progress>,
    shutdown_aware: bool,
}

impl World {
    fn new(ds: DaemonSet, nodes: Vec<Node>) -> Self {
        World {
            ds,
            nodes,
            pods: Vec::new(),
            revisions: Vec::new(),
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(900)),
            now: t(0),
            made: 0,
            last: Pass::Planned(Box::default()),
            progress: None,
            shutdown_aware: true,
        }
    }

    /// A pod on `node` with `labels`, owned by foo unless `owned` is false, created at `created`.
    fn add_pod(&mut self, node: &str, labels: Value, owned: bool, created: i64) -> String {
        self.made += 1;
        let name = format!("pod-{}", self.made);
        let mut v = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels,
            "creationTimestamp": Time(t(created))}, "spec": {"nodeName": node, "containers": [{"name": "foo", "image": "foo/bar"}]}, "status": {"phase": "Running"}});
        if owned {
            v["metadata"]["ownerReferences"] =
                json!([serde_json::to_value(rules::controller_ref(&self.ds)).expect("ref")]);
        }
        // As upstream's `newPod`: a pod made for this DaemonSet's selector carries the current hash.
        if labels == l1() {
            let spec = self.ds.spec.as_ref().expect("spec");
            let collision = self.ds.status.as_ref().and_then(|s| s.collision_count);
            v["metadata"]["labels"][HASH_LABEL] =
                json!(rules::template_hash(&spec.template, collision));
        }
        self.pods.push(serde_json::from_value(v).expect("pod"));
        name
    }

    fn pod(&mut self, name: &str) -> &mut Pod {
        self.pods
            .iter_mut()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .expect("pod exists")
    }

    /// Whether a pod named `name` exists.
    fn has_pod(&self, name: &str) -> bool {
        self.pods
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(name))
    }

    /// Whether every pod carries the template hash `hash`.
    fn all_pods_hashed(&self, hash: &str) -> bool {
        self.pods.iter().all(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HASH_LABEL))
                .map(String::as_str)
                == Some(hash)
        })
    }

    /// The stored status's updatedNumberScheduled.
    fn updated(&self) -> Option<i32> {
        self.ds
            .status
            .as_ref()
            .and_then(|s| s.updated_number_scheduled)
    }

    fn hash_of_current(&self) -> String {
        self.plan().hash.clone()
    }

    fn set_ready(pod: &mut Pod, ready: bool, at: Timestamp) {
        let status = pod.status.get_or_insert_with(Default::default);
        status.phase = Some("Running".into());
        status.conditions = Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            last_transition_time: Some(Time(at)),
            ..Default::default()
        }]);
    }

    /// Marks every pod Ready (as the "ready" step of the update scenarios).
    fn ready_all(&mut self) {
        let now = self.now;
        for p in &mut self.pods {
            if !rules::is_ready(p) {
                World::set_ready(p, true, now);
            }
        }
    }

    /// One pass, applied; returns (creates, deletes).
    /// The pods and revisions as a pass takes them (shared, as in the controller's caches).
    fn shared(
        &self,
    ) -> (
        Vec<std::sync::Arc<Pod>>,
        Vec<std::sync::Arc<ControllerRevision>>,
    ) {
        (
            self.pods.iter().cloned().map(std::sync::Arc::new).collect(),
            self.revisions
                .iter()
                .cloned()
                .map(std::sync::Arc::new)
                .collect(),
        )
    }

    fn pass(&mut self) -> (usize, usize) {
        let nodes: Vec<std::sync::Arc<Node>> = self
            .nodes
            .iter()
            .cloned()
            .map(std::sync::Arc::new)
            .collect();
        let (pods, revisions) = self.shared();
        let pass = sync(&PassInput {
            ds: &self.ds,
            nodes: &nodes,
            pods: &pods,
            revisions: &revisions,
            backoff: &self.backoff,
            expectations_satisfied: true,
            progress: self.progress.as_ref(),
            shutdown_aware: self.shutdown_aware,
            now: self.now,
        });
        if let Some(record) = pass.plan().and_then(|p| p.progress.clone()) {
            self.progress = Some(record);
        }
        let counts = match &pass {
            Pass::Planned(plan) => {
                self.apply(plan);
                (plan.creates.len(), plan.deletes.len())
            }
            Pass::Skipped { .. } | Pass::Failed { .. } => (0, 0),
        };
        self.last = pass;
        counts
    }

    /// The last pass's plan; a scenario that reads it expects the pass to have made one.
    fn plan(&self) -> &Plan {
        match &self.last {
            Pass::Planned(plan) => plan,
            other => panic!("the last pass made no plan: {other:?}"),
        }
    }

    fn apply(&mut self, plan: &Plan) {
        let owner = serde_json::to_value(rules::controller_ref(&self.ds)).expect("ref");
        for name in &plan.adopt_pods {
            let p = self.pod(name);
            p.metadata.owner_references =
                Some(vec![serde_json::from_value(owner.clone()).expect("ref")]);
        }
        for name in &plan.adopt_revisions {
            if let Some(r) = self
                .revisions
                .iter_mut()
                .find(|r| r.metadata.name.as_deref() == Some(name))
            {
                r.metadata.owner_references =
                    Some(vec![serde_json::from_value(owner.clone()).expect("ref")]);
            }
        }
        for name in &plan.release_pods {
            self.pod(name).metadata.owner_references = None;
        }
        for op in &plan.history {
            match op {
                HistoryOp::Create(r) => self.revisions.push((**r).clone()),
                HistoryOp::Renumber { name, revision } => {
                    if let Some(r) = self
                        .revisions
                        .iter_mut()
                        .find(|r| r.metadata.name.as_deref() == Some(name))
                    {
                        r.revision = *revision;
                    }
                }
                HistoryOp::Delete { name } => self
                    .revisions
                    .retain(|r| r.metadata.name.as_deref() != Some(name)),
                HistoryOp::RelabelPod { name, hash } => {
                    self.pod(name)
                        .metadata
                        .labels
                        .get_or_insert_with(Default::default)
                        .insert(HASH_LABEL.into(), hash.clone());
                }
                HistoryOp::LabelLegacy { name } => {
                    if let Some(r) = self
                        .revisions
                        .iter_mut()
                        .find(|r| r.metadata.name.as_deref() == Some(name))
                    {
                        r.metadata
                            .labels
                            .get_or_insert_with(Default::default)
                            .insert(HASH_LABEL.into(), name.clone());
                    }
                }
            }
        }
        for node in &plan.creates {
            self.made += 1;
            let mut p = rules::new_pod(&self.ds, node, &plan.hash);
            p.metadata.name = Some(format!("foo-{}", self.made));
            p.metadata.creation_timestamp = Some(Time(self.now));
            p.status = Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            });
            self.pods.push(p);
        }
        self.pods.retain(|p| {
            !plan
                .deletes
                .contains(p.metadata.name.as_ref().expect("name"))
        });
        self.revisions.retain(|r| {
            !plan
                .cleanup
                .contains(r.metadata.name.as_ref().expect("name"))
        });
        for key in &plan.backoff_next {
            self.backoff.next(key, self.now);
        }
        if let Some(s) = &plan.status {
            self.ds.status = Some(s.clone());
        }
        let annotations = self
            .ds
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        for (key, value) in &plan.annotations {
            match value {
                Some(v) => annotations.insert((*key).into(), v.clone()),
                None => annotations.remove(*key),
            };
        }
        if let Some(rollback) = &plan.rollback {
            annotations.insert(
                super::rollback::ROLLED_BACK.into(),
                rollback.event.message.clone(),
            );
            let template = rollback.template.clone();
            self.edit_template(|_| {});
            self.ds.spec.as_mut().expect("spec").template = template;
        }
    }

    /// Changes the image, as a client update does (generation and template generation rise).
    /// Binds every pod to its target node, as the scheduler does.
    fn bind_all(&mut self) {
        for p in &mut self.pods {
            let node = rules::target_node(p);
            p.spec.get_or_insert_with(Default::default).node_name = node;
        }
    }

    fn set_image(&mut self, image: &str) {
        self.edit_template(|spec| spec.containers[0].image = Some(image.into()));
    }

    /// A template change through the API: generation and template generation rise.
    fn edit_template(&mut self, edit: impl FnOnce(&mut k8s_openapi::api::core::v1::PodSpec)) {
        let spec = self.ds.spec.as_mut().expect("spec");
        edit(spec.template.spec.as_mut().expect("pod spec"));
        self.ds.metadata.generation = Some(self.ds.metadata.generation.unwrap_or(1) + 1);
        let tg = rules::template_generation(&self.ds).unwrap_or(1) + 1;
        self.ds
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                "deprecated.daemonset.template.generation".into(),
                tg.to_string(),
            );
    }

    fn set_strategy(&mut self, strategy: Value) {
        self.set_spec("updateStrategy", strategy);
    }

    /// Sets one field of the DaemonSet's spec, as written in JSON.
    fn set_spec(&mut self, field: &str, value: Value) {
        let mut v = serde_json::to_value(&self.ds).expect("json");
        v["spec"][field] = value;
        self.ds = serde_json::from_value(v).expect("ds");
    }
}

fn pass_once(ds: DaemonSet, nodes: Vec<Node>) -> (usize, usize) {
    World::new(ds, nodes).pass()
}

// §5.2 Placement

#[test]
fn s020_simple_launch() {
    for strategy in [
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        json!({"type": "OnDelete"}),
    ] {
        let mut w = World::new(ds_with(json!({"updateStrategy": strategy})), nodes(5));
        assert_eq!(w.pass(), (5, 0));
        let mut targets: Vec<String> = w.pods.iter().filter_map(rules::target_node).collect();
        targets.sort();
        assert_eq!(
            targets,
            (0..5).map(|i| format!("node-{i}")).collect::<Vec<_>>()
        );
        assert!(
            w.pods
                .iter()
                .all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none())
        );
        assert_eq!(w.revisions.len(), 1);
        assert_eq!(w.revisions[0].revision, 1);
        assert_eq!(
            w.revisions[0].metadata.name.clone().expect("name"),
            format!("foo-{}", w.hash_of_current())
        );
        w.ready_all();
        w.pass();
        let s = w.ds.status.clone().expect("status");
        assert_eq!(
            (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_ready,
                s.updated_number_scheduled,
                s.number_available,
                s.number_unavailable,
                s.number_misscheduled,
                s.observed_generation
            ),
            (5, 5, 5, Some(5), Some(5), Some(0), 0, Some(1))
        );
    }
}

#[test]
fn s021_no_nodes() {
    let mut w = World::new(ds(), vec![]);
    assert_eq!(w.pass(), (0, 0));
    assert_eq!(w.revisions.len(), 1, "a revision is still created");
    let s = w.ds.status.clone().expect("status written");
    assert_eq!(
        (s.desired_number_scheduled, s.observed_generation),
        (0, Some(1))
    );
}

#[test]
fn s022_single_node() {
    assert_eq!(pass_once(ds(), vec![node("only-node", json!({}))]), (1, 0));
}

#[test]
fn s023_not_ready_node_without_taints_still_gets_a_pod() {
    assert_eq!(
        pass_once(
            ds(),
            vec![node(
                "n",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
            )]
        ),
        (1, 0)
    );
}

#[test]
fn s024_resources_are_not_the_controllers_concern() {
    let d = ds_with(
        json!({"template": {"spec": {"nodeName": "too-much-mem", "containers": [{"name": "foo", "image": "foo/bar", "resources": {"requests": {"memory": "75M", "cpu": "75m"}}}]}}}),
    );
    let mut w = World::new(
        d,
        vec![node(
            "too-much-mem",
            json!({"status": {"allocatable": {"memory": "100M", "cpu": "200m"}}}),
        )],
    );
    w.add_pod("too-much-mem", json!({"app": "other"}), false, 0);
    assert_eq!(w.pass(), (1, 0));
    // No placement event; the rollout's own `Progressing` event (beyond.md §2.2) is not one.
    assert!(
        w.plan().events.iter().all(|e| e.reason == "NewRevision"),
        "{:?}",
        w.plan().events
    );
}

#[test]
fn s025_network_unavailable() {
    let cond =
        json!({"status": {"conditions": [{"type": "NetworkUnavailable", "status": "True"}]}});
    assert_eq!(pass_once(ds(), vec![node("n", cond)]), (1, 0));
    let taint = json!({"spec": {"taints": [{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]}});
    assert_eq!(pass_once(ds(), vec![node("n", taint.clone())]), (0, 0));
    assert_eq!(
        pass_once(
            ds_with(json!({"template": {"spec": {"hostNetwork": true}}})),
            vec![node("n", taint)]
        ),
        (1, 0)
    );
}

#[test]
fn s026_being_deleted_no_action() {
    let mut d = ds();
    d.metadata.deletion_timestamp = Some(Time(t(0)));
    let mut w = World::new(d, nodes(1));
    w.add_pod("node-0", l1(), false, 0);
    assert_eq!(w.pass(), (0, 0));
    assert!(matches!(
        w.last,
        Pass::Skipped {
            why: Skip::BeingDeleted,
            ..
        }
    ));
    // Skipped: no status and no adoption to write.
    assert!(w.last.plan().is_none());
}

#[test]
fn s028_own_pod_with_host_port_is_kept() {
    let d = ds_with(
        json!({"template": {"spec": {"nodeName": "port-conflict", "containers": [{"name": "foo", "image": "foo/bar", "ports": [{"containerPort": 666, "hostPort": 666}]}]}}}),
    );
    let mut w = World::new(d, vec![node("port-conflict", json!({}))]);
    w.add_pod("port-conflict", l1(), true, 0);
    assert_eq!(w.pass(), (0, 0));
}

#[test]
fn s029_foreign_pod_with_a_different_host_port() {
    let mut w = World::new(ds(), nodes(1));
    w.add_pod("node-0", json!({"app": "other"}), false, 0);
    assert_eq!(w.pass(), (1, 0));
}

#[test]
fn s030_legacy_empty_selector() {
    let mut d = ds_with(json!({"template": {"spec": {"nodeSelector": {"foo": "bar"}}}}));
    d.spec.as_mut().expect("spec").selector = Default::default();
    let mut w = World::new(
        d,
        vec![node(
            "node1",
            json!({"metadata": {"labels": {"foo": "bar"}}}),
        )],
    );
    let foreign = w.add_pod("node1", json!({"bang": "boom"}), false, 0);
    assert_eq!(w.pass(), (0, 0));
    assert_eq!(
        w.last
            .events()
            .iter()
            .filter(|e| e.reason == "SelectingAll" && e.warning)
            .count(),
        1
    );
    assert!(w.has_pod(&foreign));
}

fn s031_state(strategy: Value) -> World {
    let mut w = World::new(ds_with(json!({"updateStrategy": strategy})), nodes(5));
    w.add_pod("node-1", l1(), true, 1);
    for i in 0..2 {
        w.add_pod("node-2", l1(), true, i);
    }
    for i in 0..5 {
        w.add_pod("node-3", l1(), true, i);
    }
    for i in 0..2 {
        w.add_pod("node-4", l2(), true, i);
    }
    w
}

#[test]
fn s031_existing_pods_dedupe_and_release() {
    for strategy in [
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        json!({"type": "OnDelete"}),
    ] {
        let mut w = s031_state(strategy);
        let oldest_on_3 = w
            .pods
            .iter()
            .find(|p| rules::target_node(p).as_deref() == Some("node-3"))
            .and_then(|p| p.metadata.name.clone())
            .expect("pod");
        assert_eq!(w.pass(), (2, 5));
        let mut created = w.plan().creates.clone();
        created.sort();
        assert_eq!(created, ["node-0", "node-4"]);
        assert_eq!(w.plan().release_pods.len(), 2);
        assert!(w.has_pod(&oldest_on_3), "the oldest pod is kept");
    }
}

#[test]
fn s032_node_selector_launch() {
    let mut ns = nodes(4);
    ns.extend((4..7).map(|i| node(&format!("node-{i}"), blue())));
    assert_eq!(
        pass_once(
            ds_with(json!({"template": {"spec": {"nodeSelector": {"color": "blue"}}}})),
            ns
        ),
        (3, 0)
    );
}

fn ten_nodes_five_blue() -> Vec<Node> {
    (0..10)
        .map(|i| {
            if i < 5 {
                node(&format!("node-{i}"), json!({}))
            } else {
                node(&format!("node-{i}"), blue())
            }
        })
        .collect()
}

#[test]
fn s033_node_selector_delete() {
    let mut w = World::new(
        ds_with(json!({"template": {"spec": {"nodeSelector": {"color": "blue"}}}})),
        ten_nodes_five_blue(),
    );
    w.add_pod("node-0", l2(), true, 0);
    w.add_pod("node-0", l2(), true, 0);
    for _ in 0..3 {
        w.add_pod("node-1", l1(), true, 0);
    }
    w.add_pod("node-1", l2(), true, 0);
    w.add_pod("node-4", l1(), true, 0);
    assert_eq!(w.pass(), (5, 4));
    assert_eq!(w.plan().release_pods.len(), 3);
}

#[test]
fn s034_node_selector_with_mixed_existing_pods() {
    let mut w = World::new(
        ds_with(
            json!({"updateStrategy": {"type": "OnDelete"}, "template": {"spec": {"nodeSelector": {"color": "blue"}}}}),
        ),
        ten_nodes_five_blue(),
    );
    let add = |w: &mut World, node: &str, labels: Value, n: usize| {
        for i in 0..n {
            w.add_pod(node, labels.clone(), true, i as i64);
        }
    };
    add(&mut w, "node-0", l1(), 1);
    add(&mut w, "node-1", l1(), 3);
    add(&mut w, "node-1", l2(), 2);
    add(&mut w, "node-2", l1(), 4);
    add(&mut w, "node-6", l1(), 13);
    add(&mut w, "node-7", l2(), 4);
    add(&mut w, "node-9", l1(), 1);
    add(&mut w, "node-9", l2(), 1);
    assert_eq!(w.pass(), (3, 20));
    let mut created = w.plan().creates.clone();
    created.sort();
    assert_eq!(created, ["node-5", "node-7", "node-8"]);
}

#[test]
fn s035_node_selector_matching_nothing() {
    assert_eq!(
        pass_once(
            ds_with(json!({"template": {"spec": {"nodeSelector": {"color": "nowhere"}}}})),
            nodes(4)
        ),
        (0, 0)
    );
}

#[test]
fn s036_to_s039_template_node_name() {
    assert_eq!(
        pass_once(
            ds_with(json!({"template": {"spec": {"nodeName": "node-0"}}})),
            nodes(5)
        ),
        (1, 0)
    );
    assert_eq!(
        pass_once(
            ds_with(json!({"template": {"spec": {"nodeName": "node-10"}}})),
            nodes(5)
        ),
        (0, 0)
    );
    assert_eq!(
        pass_once(
            ds_with(
                json!({"template": {"spec": {"nodeName": "node-6", "nodeSelector": {"color": "blue"}}}})
            ),
            ten_nodes_five_blue()
        ),
        (1, 0)
    );
    assert_eq!(
        pass_once(
            ds_with(
                json!({"template": {"spec": {"nodeName": "node-0", "nodeSelector": {"color": "blue"}}}})
            ),
            ten_nodes_five_blue()
        ),
        (0, 0)
    );
}

#[test]
fn s040_required_node_affinity() {
    let mut ns = nodes(4);
    ns.extend((4..7).map(|i| node(&format!("node-{i}"), blue())));
    let affinity = json!({"template": {"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "color", "operator": "In", "values": ["blue"]}]}]}}}}}});
    let mut w = World::new(ds_with(affinity), ns);
    assert_eq!(w.pass(), (3, 0));
    for p in &w.pods {
        let terms = everynode_api::scheduling::required_node_terms(p.spec.as_ref().expect("spec"))
            .expect("affinity");
        assert!(terms.len() == 1 && terms[0].match_expressions.is_none());
    }
}

#[test]
fn s042_number_ready() {
    let mut w = World::new(
        ds_with(json!({"template": {"spec": {"nodeSelector": {"color": "blue"}}}})),
        vec![node("node-0", blue()), node("node-1", blue())],
    );
    assert_eq!(w.pass(), (2, 0));
    assert_eq!(w.pass(), (0, 0));
    assert_eq!(w.ds.status.as_ref().map(|s| s.number_ready), Some(0));
    w.ready_all();
    assert_eq!(w.pass(), (0, 0));
    assert_eq!(w.ds.status.as_ref().map(|s| s.number_ready), Some(2));
}

#[test]
fn s043_observed_generation() {
    let mut w = World::new(ds(), nodes(1));
    w.pass();
    assert_eq!(
        w.ds.status.as_ref().and_then(|s| s.observed_generation),
        Some(1)
    );
}

#[test]
fn s044_failed_pods() {
    for (failed, normal, want, events) in [
        (0, 1, (0, 0), 0),
        (0, 0, (1, 0), 0),
        (1, 0, (0, 1), 1),
        (1, 3, (0, 3), 1),
    ] {
        let mut w = World::new(
            ds_with(json!({"updateStrategy": {"type": "OnDelete"}})),
            nodes(1),
        );
        for i in 0..normal {
            w.add_pod("node-0", l1(), true, 10 + i);
        }
        for _ in 0..failed {
            let name = w.add_pod("node-0", l1(), true, 0);
            w.pod(&name).status.as_mut().expect("status").phase = Some("Failed".into());
        }
        assert_eq!(w.pass(), want, "failed {failed} normal {normal}");
        assert_eq!(
            w.last
                .events()
                .iter()
                .filter(|e| e.reason == "FailedDaemonPod")
                .count(),
            events
        );
    }
}

#[test]
fn s045_failed_pod_backoff() {
    let mut w = World::new(
        ds_with(json!({"updateStrategy": {"type": "OnDelete"}})),
        nodes(1),
    );
    // A DaemonSet already observed at generation 1, so the backoff key is stable across passes.
    w.ds.status = Some(k8s_openapi::api::apps::v1::DaemonSetStatus {
        observed_generation: Some(1),
        ..Default::default()
    });
    let fail = |w: &mut World| {
        let name = w.add_pod("node-0", l1(), true, 0);
        w.pod(&name).status.as_mut().expect("status").phase = Some("Failed".into());
    };
    fail(&mut w);
    assert_eq!(w.pass(), (0, 1));
    let key = "foo-uid/1/node-0";
    assert_eq!(w.backoff.delay(key), Duration::from_millis(50));
    fail(&mut w);
    assert_eq!(w.pass(), (0, 0), "still in backoff");
    assert_eq!(w.plan().requeue_after, Some(Duration::from_millis(50)));
    w.now += SignedDuration::from_millis(49);
    assert_eq!(w.pass(), (0, 0));
    w.now += SignedDuration::from_millis(1);
    assert_eq!(w.pass(), (0, 1), "the delay has passed");
    assert_eq!(
        w.backoff.delay(key),
        Duration::from_millis(100),
        "and doubled"
    );
}

#[test]
fn s046_succeeded_pods() {
    let mut w = World::new(ds(), nodes(1));
    let name = w.add_pod("node-0", l1(), true, 0);
    w.pod(&name).status.as_mut().expect("status").phase = Some("Succeeded".into());
    assert_eq!(w.pass().1, 1);
    assert_eq!(
        w.last
            .events()
            .iter()
            .filter(|e| e.reason == "SucceededDaemonPod" && !e.warning)
            .count(),
        1
    );
    assert!(w.plan().backoff_next.is_empty());
}

fn tainted(effect: &str) -> Node {
    node(
        "node-0",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "user1", "effect": effect}]}}),
    )
}

#[test]
fn s047_no_schedule_taint_keeps_running_pod() {
    let mut w = World::new(ds(), vec![tainted("NoSchedule")]);
    w.add_pod("node-0", l1(), true, 0);
    assert_eq!(w.pass(), (0, 0));
    let s = w.ds.status.clone().expect("status");
    assert_eq!((s.desired_number_scheduled, s.number_misscheduled), (0, 1));
}

#[test]
fn s048_no_execute_taint_evicts() {
    let mut w = World::new(ds(), vec![tainted("NoExecute")]);
    w.add_pod("node-0", l1(), true, 0);
    assert_eq!(w.pass(), (0, 1));
    assert_eq!(w.pass(), (0, 0), "no replacement");
}

#[test]
fn s049_to_s051_taints_and_tolerations() {
    assert_eq!(pass_once(ds(), vec![tainted("NoSchedule")]), (0, 0));
    let tolerating = ds_with(
        json!({"template": {"spec": {"tolerations": [{"key": "dedicated", "value": "user1", "effect": "NoSchedule"}]}}}),
    );
    assert_eq!(
        pass_once(tolerating.clone(), vec![tainted("NoSchedule")]),
        (1, 0)
    );
    assert_eq!(pass_once(tolerating, nodes(1)), (1, 0));
}

#[test]
fn s052_not_ready_and_unreachable_no_execute() {
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        assert_eq!(
            pass_once(
                ds(),
                vec![node(
                    "n",
                    json!({"spec": {"taints": [{"key": key, "effect": "NoExecute"}]}})
                )]
            ),
            (1, 0)
        );
    }
}

#[test]
fn s053_real_not_ready_node_both_taints() {
    let n = node(
        "node-0",
        json!({"spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}, {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]}}),
    );
    assert_eq!(pass_once(ds(), vec![n.clone()]), (0, 0));
    let mut w = World::new(ds(), vec![n]);
    w.add_pod("node-0", l1(), true, 0);
    assert_eq!(w.pass(), (0, 0), "the existing pod is kept");
    let s = w.ds.status.clone().expect("status");
    assert_eq!((s.desired_number_scheduled, s.number_misscheduled), (0, 1));
}

#[test]
fn s054_pressure_taints() {
    let taints: Vec<Value> = ["disk-pressure", "memory-pressure", "pid-pressure"]
        .iter()
        .map(|k| json!({"key": format!("node.kubernetes.io/{k}"), "effect": "NoSchedule"}))
        .collect();
    assert_eq!(
        pass_once(ds(), vec![node("n", json!({"spec": {"taints": taints}}))]),
        (1, 0)
    );
}

#[test]
fn s055_cordoned_node() {
    let n = node(
        "n",
        json!({"spec": {"unschedulable": true, "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}}),
    );
    assert_eq!(pass_once(ds(), vec![n]), (1, 0));
}

#[test]
fn s056_terminating_pod_is_not_replaced_yet() {
    let mut w = World::new(ds(), nodes(1));
    let name = w.add_pod("node-0", l1(), true, 0);
    w.pod(&name).metadata.deletion_timestamp = Some(Time(t(0)));
    assert_eq!(w.pass(), (0, 0));
    w.pods.clear();
    assert_eq!(w.pass(), (1, 0), "replaced once gone");
}

#[test]
fn s057_unscheduled_pod_targeting_a_vanished_node() {
    let mut w = World::new(ds(), nodes(1));
    w.add_pod("node-0", l1(), true, 0);
    w.add_pod("node-1", l1(), true, 0);
    let mut unscheduled = rules::new_pod(&w.ds, "node-2", "x");
    unscheduled.metadata.name = Some("unscheduled".into());
    w.pods.push(unscheduled);
    let (_, deletes) = w.pass();
    assert_eq!(deletes, 1);
    assert_eq!(w.plan().deletes, vec!["unscheduled".to_owned()]);
}

#[test]
fn s058_node_deleted() {
    let mut w = World::new(ds(), nodes(3));
    w.pass();
    w.bind_all();
    w.nodes.pop();
    assert_eq!(w.pass(), (0, 0), "the bound pod is left for pod GC");
    assert_eq!(
        w.ds.status.as_ref().map(|s| s.desired_number_scheduled),
        Some(2)
    );
}

#[test]
fn s059_node_added_and_relabelled() {
    let mut w = World::new(
        ds_with(json!({"template": {"spec": {"nodeSelector": {"color": "blue"}}}})),
        vec![],
    );
    w.pass();
    w.nodes.push(node("node-0", blue()));
    assert_eq!(w.pass(), (1, 0));
    w.nodes[0] = node(
        "node-0",
        json!({"metadata": {"labels": {"color": "green"}}}),
    );
    assert_eq!(w.pass(), (0, 1));
    w.nodes[0] = node("node-0", blue());
    assert_eq!(w.pass(), (1, 0));
}

#[test]
fn s063_pod_grouping() {
    let mut w = World::new(ds(), nodes(2));
    w.add_pod("node-0", l1(), true, 0);
    w.add_pod("node-0", l1(), false, 1);
    let succeeded = w.add_pod("node-1", l1(), true, 0);
    w.pod(&succeeded).status.as_mut().expect("status").phase = Some("Succeeded".into());
    let gone = w.add_pod("node-1", l1(), true, 0);
    w.pod(&gone).status.as_mut().expect("status").phase = Some("Failed".into());
    w.pod(&gone).metadata.deletion_timestamp = Some(Time(t(0)));
    w.add_pod("node-1", l2(), true, 0);
    let mut other = rules::controller_ref(&w.ds);
    other.uid = "foo2-uid".into();
    let foreign = w.add_pod("node-1", l1(), false, 0);
    w.pod(&foreign).metadata.owner_references = Some(vec![other]);
    w.pass();
    assert_eq!(w.plan().adopt_pods.len(), 1);
    assert_eq!(w.plan().release_pods.len(), 1);
    assert!(w.has_pod(&foreign), "other controllers' pods are untouched");
}

#[test]
fn s065_orphan_adoption_without_recreation() {
    let mut w = World::new(ds(), nodes(3));
    let orphan = w.add_pod("node-0", l1(), false, 0);
    assert_eq!(w.pass(), (2, 0));
    assert_eq!(w.plan().adopt_pods, vec![orphan]);
    assert!(!w.plan().creates.contains(&"node-0".to_owned()));
}

#[test]
fn s066_release_on_label_change() {
    let mut w = World::new(ds(), nodes(2));
    w.pass();
    let on1 = w
        .pods
        .iter()
        .find(|p| rules::target_node(p).as_deref() == Some("node-1"))
        .and_then(|p| p.metadata.name.clone())
        .expect("pod");
    w.pod(&on1).metadata.labels = Some(serde_json::from_value(l2()).expect("labels"));
    assert_eq!(w.pass(), (1, 0));
    assert_eq!(w.plan().release_pods, vec![on1]);
}

#[test]
fn s067_pods_of_other_controllers_are_ignored() {
    let mut w = World::new(ds(), nodes(1));
    let rs = w.add_pod("node-0", l1(), false, 0);
    w.pod(&rs).metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "rs".into(),
            uid: "rs-uid".into(),
            controller: Some(true),
            block_owner_deletion: None,
        },
    ]);
    assert_eq!(w.pass(), (1, 0));
    assert!(w.plan().adopt_pods.is_empty() && w.plan().deletes.is_empty());
}

#[test]
fn s074_burst_replicas() {
    let mut w = World::new(ds(), nodes(300));
    assert_eq!(w.pass(), (250, 0));
    assert_eq!(w.pass(), (50, 0));
}

// §5.3 Surge placement

fn surge_ds() -> DaemonSet {
    ds_with(
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}),
    )
}

#[test]
fn s080_surge_dedupe() {
    let mut w = World::new(surge_ds(), nodes(5));
    w.pass();
    let hash = w.hash_of_current();
    w.pods.clear();
    let cur = json!({"name": "simple-daemon", "type": "production", HASH_LABEL: hash});
    w.add_pod("node-1", cur.clone(), true, 1);
    for i in 0..2 {
        w.add_pod("node-2", cur.clone(), true, i);
    }
    for i in 0..5 {
        w.add_pod("node-3", cur.clone(), true, i);
    }
    for i in 0..2 {
        w.add_pod("node-4", l2(), true, i);
    }
    assert_eq!(w.pass(), (2, 5));
}

fn surge_world(min_ready: i32) -> (World, Value) {
    let mut d = surge_ds();
    d.spec.as_mut().expect("spec").min_ready_seconds = Some(min_ready);
    let mut w = World::new(d, nodes(5));
    w.pass();
    let hash = w.hash_of_current();
    w.pods.clear();
    (
        w,
        json!({"name": "simple-daemon", "type": "production", HASH_LABEL: hash}),
    )
}

#[test]
fn s081_keep_ready_old_and_newest() {
    let (mut w, cur) = surge_world(0);
    w.add_pod("node-1", cur.clone(), true, 100);
    let old50 = w.add_pod("node-1", old(), true, 50);
    let old60 = w.add_pod("node-1", old(), true, 60);
    World::set_ready(w.pod(&old50), true, t(50));
    World::set_ready(w.pod(&old60), true, t(60));
    w.add_pod("node-2", cur, true, 0);
    assert_eq!(w.pass(), (3, 1));
    assert_eq!(w.plan().deletes, vec![old60]);
}

#[test]
fn s082_create_while_old_pod_terminates() {
    let (mut w, cur) = surge_world(0);
    w.add_pod("node-0", cur, true, 10);
    for n in 0..5 {
        let old = w.add_pod(&format!("node-{n}"), old(), true, 0);
        World::set_ready(w.pod(&old), true, t(0));
        if n == 4 {
            w.pod(&old).metadata.deletion_timestamp = Some(Time(t(5)));
        }
    }
    assert_eq!(w.pass(), (1, 0));
    assert_eq!(w.plan().creates, vec!["node-4".to_owned()]);
}

#[test]
fn s083_unready_old_pod_removed() {
    let (mut w, cur) = surge_world(0);
    w.add_pod("node-1", cur, true, 100);
    w.add_pod("node-1", old(), true, 50);
    let old60 = w.add_pod("node-1", old(), true, 60);
    World::set_ready(w.pod(&old60), true, t(60));
    assert_eq!(w.pass(), (4, 2));
}

/// Issue 15 defect 9: in a surge rollout the old pod keeps the node available, so the counts
/// show nothing waiting; the pass must still requeue for the moment the new pod becomes
/// available, or the old one waits for the 30 s resync (about 30 s per node).
#[test]
fn surge_requeues_when_the_new_pod_becomes_available() {
    let (mut w, cur) = surge_world(4);
    let new = w.add_pod("node-1", cur, true, 50);
    World::set_ready(w.pod(&new), true, t(50));
    let o = w.add_pod("node-1", old(), true, 0);
    World::set_ready(w.pod(&o), true, t(0));
    w.now = t(52);
    w.pass();
    assert_eq!(
        w.plan().requeue_after,
        Some(Duration::from_secs(3)),
        "Ready at 50 s, available after 4 s, looked at 1 s later: 3 s from now"
    );
}

#[test]
fn s084_s085_min_ready_seconds_and_surge() {
    for (now, want_deletes) in [(60, 1), (70, 2)] {
        let (mut w, cur) = surge_world(15);
        let new = w.add_pod("node-1", cur.clone(), true, 50);
        World::set_ready(w.pod(&new), true, t(50));
        let o50 = w.add_pod("node-1", old(), true, 50);
        World::set_ready(w.pod(&o50), true, t(50));
        let o60 = w.add_pod("node-1", old(), true, 60);
        World::set_ready(w.pod(&o60), true, t(60));
        w.now = t(now);
        assert_eq!(w.pass().1, want_deletes, "now {now}");
    }
}

// §5.4 Rolling updates

/// 5 nodes, OnDelete, converged and Ready; then the image changes and the strategy is set.
fn updated_world(node_count: usize, strategy: Value) -> World {
    let mut w = World::new(
        ds_with(json!({"updateStrategy": {"type": "OnDelete"}})),
        nodes(node_count),
    );
    w.pass();
    w.ready_all();
    w.pass();
    w.set_image("foo2/bar2");
    w.set_strategy(strategy);
    w
}

fn passes(w: &mut World, script: &[&str]) {
    for (i, step) in script.iter().enumerate() {
        if *step == "ready" {
            w.ready_all();
            continue;
        }
        let want: Vec<usize> = step
            .split(',')
            .map(|n| n.parse().expect("number"))
            .collect();
        assert_eq!(w.pass(), (want[0], want[1]), "step {i} of {script:?}");
    }
}

#[test]
fn s090_max_unavailable_2() {
    let mut w = updated_world(
        5,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2, "maxSurge": 0}}),
    );
    // One pass runs manage and the rolling update; replacements come in the pass after the deletes.
    passes(
        &mut w,
        &[
            "0,2", "2,0", "ready", "0,2", "2,0", "ready", "0,1", "1,0", "ready", "0,0",
        ],
    );
}

#[test]
fn s091_max_surge_2() {
    let mut w = updated_world(
        5,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 2}}),
    );
    passes(
        &mut w,
        &[
            "2,0", "0,0", "ready", "2,2", "0,0", "ready", "1,2", "0,0", "ready", "0,1", "0,0",
        ],
    );
}

#[test]
fn s093_new_pods_never_become_ready() {
    let mut w = updated_world(
        5,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 3, "maxSurge": 0}}),
    );
    passes(&mut w, &["0,3", "3,0", "0,0", "0,0"]);
}

#[test]
fn s097_all_old_pods_unready() {
    let mut w = World::new(
        ds_with(json!({"updateStrategy": {"type": "OnDelete"}})),
        nodes(5),
    );
    w.pass();
    w.set_image("foo2/bar2");
    w.set_strategy(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 3, "maxSurge": 0}}),
    );
    passes(&mut w, &["0,5", "5,0", "0,0"]);
}

#[test]
fn s099_strategy_change_without_template_change() {
    let mut w = World::new(
        ds_with(json!({"updateStrategy": {"type": "OnDelete"}})),
        nodes(5),
    );
    w.pass();
    w.ready_all();
    w.set_strategy(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 3, "maxSurge": 0}}),
    );
    assert_eq!(w.pass(), (0, 0));
    assert_eq!(w.revisions.len(), 1);
}

#[test]
fn s104_on_delete() {
    let mut w = World::new(
        ds_with(json!({"updateStrategy": {"type": "OnDelete"}})),
        nodes(3),
    );
    w.pass();
    w.ready_all();
    w.pass();
    let first_hash = w.hash_of_current();
    w.set_image("foo2/bar2");
    assert_eq!(w.pass(), (0, 0), "no pod is replaced for a template change");
    assert_eq!(w.revisions.len(), 2);
    assert_ne!(w.hash_of_current(), first_hash);
    assert_eq!(w.updated(), Some(0));
    w.pods.remove(0);
    assert_eq!(w.pass(), (1, 0));
    assert_eq!(w.updated(), Some(1));
}

// §5.5 History

#[test]
fn s110_first_revision() {
    let mut w = World::new(ds(), nodes(2));
    w.pass();
    let r = &w.revisions[0];
    let hash = w.hash_of_current();
    assert_eq!(
        r.metadata.name.as_deref(),
        Some(format!("foo-{hash}").as_str())
    );
    assert_eq!(r.revision, 1);
    assert_eq!(
        r.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)),
        Some(&hash)
    );
    assert_eq!(
        r.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deprecated.daemonset.template.generation"))
            .map(String::as_str),
        Some("1")
    );
    let owner = &r.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    assert_eq!(
        r.data
            .as_ref()
            .map(|d| d.0["spec"]["template"]["$patch"].clone()),
        Some(json!("replace"))
    );
    assert!(w.all_pods_hashed(&hash));
}

#[test]
fn s111_s112_template_change_then_rollback_renumbers() {
    let mut w = World::new(ds(), nodes(2));
    w.pass();
    let h1 = w.hash_of_current();
    w.set_image("foo/bar:2");
    w.pass();
    let h2 = w.hash_of_current();
    assert_ne!(h1, h2);
    let numbered = |w: &World| {
        let mut v: Vec<(String, i64)> = w
            .revisions
            .iter()
            .map(|r| {
                (
                    r.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(HASH_LABEL))
                        .cloned()
                        .unwrap_or_default(),
                    r.revision,
                )
            })
            .collect();
        v.sort_by_key(|(_, n)| *n);
        v
    };
    assert_eq!(numbered(&w), vec![(h1.clone(), 1), (h2.clone(), 2)]);
    w.set_image("foo/bar");
    w.pass();
    assert_eq!(w.hash_of_current(), h1);
    assert_eq!(
        numbered(&w),
        vec![(h2, 2), (h1, 3)],
        "rollback renumbers instead of creating"
    );
}

#[test]
fn s113_history_limit() {
    let mut w = World::new(ds_with(json!({"revisionHistoryLimit": 2})), nodes(1));
    w.pass();
    for i in 2..=6 {
        w.set_image(&format!("foo/bar:{i}"));
        for _ in 0..4 {
            w.pass();
            w.ready_all();
        }
    }
    let mut numbers: Vec<i64> = w.revisions.iter().map(|r| r.revision).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![4, 5, 6]);
}

#[test]
fn s115_revisions_still_used_are_kept() {
    let mut w = World::new(
        ds_with(json!({"revisionHistoryLimit": 0, "updateStrategy": {"type": "OnDelete"}})),
        nodes(2),
    );
    w.pass();
    for i in 2..=4 {
        w.set_image(&format!("foo/bar:{i}"));
        w.pass();
    }
    let mut numbers: Vec<i64> = w.revisions.iter().map(|r| r.revision).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, vec![1, 4]);
}

#[test]
fn s116_duplicate_current_revisions() {
    let mut w = World::new(ds(), nodes(1));
    w.pass();
    let mut a = w.revisions[0].clone();
    a.metadata.name = Some("foo-aaaa".into());
    a.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), "aaaa".into());
    a.revision = 2;
    let mut b = a.clone();
    b.metadata.name = Some("foo-bbbb".into());
    b.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), "bbbb".into());
    b.revision = 5;
    w.revisions = vec![a, b];
    for p in &mut w.pods {
        p.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(HASH_LABEL.into(), "aaaa".into());
    }
    assert_eq!(w.pass(), (0, 0), "no pod is restarted");
    assert_eq!(
        w.revisions
            .iter()
            .map(|r| r.metadata.name.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        vec!["foo-bbbb"]
    );
    assert!(w.pods.iter().all(|p| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HASH_LABEL))
            .map(String::as_str)
            == Some("bbbb")
    }));
}

#[test]
fn s118_legacy_revision_without_hash_label() {
    let mut w = World::new(ds(), nodes(1));
    w.pass();
    w.revisions[0]
        .metadata
        .labels
        .as_mut()
        .expect("labels")
        .remove(HASH_LABEL);
    let name = w.revisions[0].metadata.name.clone().expect("name");
    w.pass();
    assert!(
        w.plan()
            .history
            .contains(&HistoryOp::LabelLegacy { name: name.clone() })
    );
    assert_eq!(
        w.revisions[0]
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HASH_LABEL)),
        Some(&name)
    );
}

#[test]
fn s119_revision_adoption_scope() {
    let mut w = World::new(ds(), nodes(1));
    w.pass();
    let mut orphan = w.revisions[0].clone();
    orphan.metadata.name = Some("foo-orphan".into());
    orphan.metadata.owner_references = None;
    orphan.revision = 7;
    orphan.data = Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
        json!({"spec": {"template": {"$patch": "replace"}}}),
    ));
    w.revisions.push(orphan);
    w.pass();
    assert_eq!(w.plan().adopt_revisions, vec!["foo-orphan".to_owned()]);
}

// §5.6 Status

#[test]
fn s130_min_ready_seconds_in_status() {
    let mut w = World::new(ds_with(json!({"minReadySeconds": 30})), nodes(3));
    w.pass();
    w.ready_all();
    w.pass();
    let s = w.ds.status.clone().expect("status");
    assert_eq!(
        (s.number_ready, s.number_available, s.number_unavailable),
        (3, Some(0), Some(3))
    );
    assert_eq!(
        w.plan().requeue_after,
        Some(Duration::from_secs(31)),
        "the controller requeues itself just after the pods become available"
    );
    w.now += SignedDuration::from_secs(31);
    w.pass();
    let s = w.ds.status.clone().expect("status");
    assert_eq!(
        (s.number_available, s.number_unavailable),
        (Some(3), Some(0))
    );
}

#[test]
fn s131_misscheduled_count() {
    let mut w = World::new(
        ds_with(
            json!({"updateStrategy": {"type": "OnDelete"}, "template": {"spec": {"nodeSelector": {"color": "blue"}}}}),
        ),
        vec![node("node-0", blue()), node("node-1", blue())],
    );
    w.pass();
    w.nodes[1] = node(
        "node-1",
        json!({"metadata": {"labels": {"color": "green"}}}),
    );
    // The pass that deletes reports the state after the delete, as observed at once.
    assert_eq!(w.pass(), (0, 1));
    let s = w.ds.status.clone().expect("status");
    assert_eq!(
        (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_misscheduled
        ),
        (1, 1, 0)
    );
}

#[test]
fn s133_surge_in_progress_counts_the_oldest_pod() {
    let (mut w, cur) = surge_world(0);
    for n in 0..5 {
        let old = w.add_pod(&format!("node-{n}"), old(), true, 0);
        World::set_ready(w.pod(&old), true, t(0));
    }
    w.add_pod("node-0", cur, true, 10);
    w.pass();
    let s = w.ds.status.clone().expect("status");
    assert_eq!(
        s.updated_number_scheduled,
        Some(0),
        "node-0's primary pod is still the old one"
    );
    assert_eq!(s.number_ready, 5);
}

#[test]
fn s134_observed_generation_lags_while_expectations_pending() {
    let mut w = World::new(ds(), nodes(1));
    w.pass();
    w.set_image("foo/bar:2");
    let nodes: Vec<std::sync::Arc<Node>> =
        w.nodes.iter().cloned().map(std::sync::Arc::new).collect();
    let (pods, revisions) = w.shared();
    let pass = sync(&PassInput {
        ds: &w.ds,
        nodes: &nodes,
        pods: &pods,
        revisions: &revisions,
        backoff: &w.backoff,
        expectations_satisfied: false,
        progress: None,
        shutdown_aware: true,
        now: w.now,
    });
    let plan = pass.plan().expect("a plan while expectations are pending");
    assert!(plan.creates.is_empty() && plan.deletes.is_empty());
    assert!(
        plan.status
            .as_ref()
            .is_none_or(|s| s.observed_generation == Some(1))
    );
    w.pass();
    assert_eq!(
        w.ds.status.as_ref().and_then(|s| s.observed_generation),
        Some(2)
    );
}

#[test]
fn s135_conditions_are_preserved() {
    let mut w = World::new(ds(), nodes(1));
    w.pass();
    w.ds.status.as_mut().expect("status").conditions =
        Some(vec![k8s_openapi::api::apps::v1::DaemonSetCondition {
            type_: "Custom".into(),
            status: "True".into(),
            ..Default::default()
        }]);
    w.ready_all();
    w.pass();
    let conditions =
        w.ds.status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
    // The client's condition stays beside the controller's own `Progressing` and `Available`
    // (beyond.md §2.2, §6).
    assert!(
        conditions.iter().any(|c| c.type_ == "Custom"),
        "{conditions:?}"
    );
    assert!(
        conditions
            .iter()
            .all(|c| ["Custom", "Progressing", "Available"].contains(&c.type_.as_str()))
    );
}

// §5.8 Garbage collection: the DaemonSet controller's side (the collector's side is in gc.rs)

/// Converged `foo` on three nodes, then deleted with `propagationPolicy: Orphan`: the world the
/// garbage collector leaves behind (pods and revision without owner references).
fn orphaned_by_foo() -> World {
    let mut w = World::new(ds(), nodes(3));
    w.pass();
    w.bind_all();
    w.ready_all();
    w.pass();
    for p in &mut w.pods {
        p.metadata.owner_references = None;
    }
    for r in &mut w.revisions {
        r.metadata.owner_references = None;
    }
    w
}

/// `bar`: another name and uid, same selector, with a spec patch.
fn bar_with(spec_patch: Value) -> DaemonSet {
    let mut d = ds_with(spec_patch);
    d.metadata.name = Some("bar".into());
    d.metadata.uid = Some("bar-uid".into());
    d
}

#[test]
fn s142_orphan_delete_then_identical_daemonset_adopts_without_restart() {
    let mut w = orphaned_by_foo();
    let pods: Vec<String> = w
        .pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let revision = w.revisions[0].metadata.name.clone().expect("name");
    assert!(revision.starts_with("foo-"));
    w.ds = bar_with(json!({}));
    assert_eq!(w.pass(), (0, 0), "nothing created or deleted");
    let mut adopted = w.plan().adopt_pods.clone();
    adopted.sort();
    let mut expected = pods.clone();
    expected.sort();
    assert_eq!(adopted, expected);
    assert_eq!(w.plan().adopt_revisions, vec![revision.clone()]);
    assert!(
        !w.plan()
            .history
            .iter()
            .any(|op| matches!(op, HistoryOp::Create(_))),
        "the adopted revision keeps its old name; no new one is made"
    );
    assert_eq!(w.revisions.len(), 1);
    assert!(w.pods.iter().all(|p| {
        p.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o[0].uid == "bar-uid")
    }));
    // Converged: a further pass changes nothing and reports every pod up to date.
    assert_eq!(w.pass(), (0, 0));
    let status = w.ds.status.clone().expect("status");
    assert_eq!(
        (
            status.desired_number_scheduled,
            status.updated_number_scheduled,
            status.number_ready
        ),
        (3, Some(3), 3)
    );
}

#[test]
fn s143_adoption_by_template_generation_counts_pods_as_updated() {
    let mut w = orphaned_by_foo();
    assert!(w.pods.iter().all(|p| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(rules::TEMPLATE_GENERATION_LABEL))
            .map(String::as_str)
            == Some("1")
    }));
    // A different template (container renamed), template generation also 1.
    w.ds = bar_with(
        json!({"template": {"spec": {"containers": [{"name": "renamed", "image": "foo/bar"}]}}}),
    );
    assert_eq!(rules::template_generation(&w.ds), Some(1));
    assert_eq!(w.pass(), (0, 0));
    assert_eq!(w.plan().adopt_pods.len(), 3);
    w.pass();
    w.pass();
    assert_eq!(w.plan().deletes.len(), 0, "they are not rolled");
    assert_eq!(w.updated(), Some(3));
}

// Further §5.2, §5.4, §5.5 and §5.6 scenarios

#[test]
fn s071_status_in_the_same_pass() {
    let mut w = World::new(ds(), nodes(5));
    assert_eq!(w.pass(), (5, 0));
    let status = w
        .plan()
        .status
        .clone()
        .expect("a status write in the same pass");
    assert_eq!(
        (
            status.desired_number_scheduled,
            status.current_number_scheduled
        ),
        (5, 5)
    );
}

#[test]
fn s092_surge_with_a_node_that_stops_being_eligible() {
    let mut all = nodes(5);
    all[0] = node(
        "node-0",
        json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
    );
    let tolerating = ds_with(json!({
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"spec": {"tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]}}}));
    let mut w = World::new(tolerating, all);
    assert_eq!(w.pass(), (5, 0));
    w.ready_all();
    w.pass();
    w.edit_template(|spec| spec.tolerations = None);
    passes(
        &mut w,
        &[
            "1,1", "0,0", "ready", "1,1", "0,0", "ready", "1,1", "0,0", "ready", "1,1", "0,0",
            "ready", "0,1", "0,0",
        ],
    );
    assert!(
        w.pods
            .iter()
            .all(|p| rules::target_node(p).as_deref() != Some("node-0"))
    );
    assert_eq!(w.pods.len(), 4);
}

fn ready_names(w: &World) -> Vec<String> {
    let mut v: Vec<String> = w
        .pods
        .iter()
        .filter(|p| rules::is_ready(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn s094_unavailable_pods_of_an_older_rollout_are_replaced_first() {
    let mut w = updated_world(
        5,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2, "maxSurge": 0}}),
    );
    let original_ready_before = ready_names(&w);
    passes(&mut w, &["0,2", "2,0", "0,0"]);
    let unready: Vec<String> = w
        .pods
        .iter()
        .filter(|p| !rules::is_ready(p))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(unready.len(), 2);
    w.set_image("foo3/bar3");
    assert_eq!(w.pass(), (0, 2));
    let mut deleted = w.plan().deletes.clone();
    deleted.sort();
    let mut expected = unready.clone();
    expected.sort();
    assert_eq!(deleted, expected, "exactly the two unready pods");
    passes(&mut w, &["2,0", "0,0"]);
    let ready = ready_names(&w);
    assert_eq!(ready.len(), 3);
    assert!(
        ready.iter().all(|n| original_ready_before.contains(n)),
        "the 3 original pods were never touched"
    );
}

#[test]
fn s095_healthy_old_pods_are_protected() {
    let mut w = updated_world(
        20,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 10, "maxSurge": 0}}),
    );
    passes(&mut w, &["0,10", "10,0", "0,0"]);
    let healthy = ready_names(&w);
    assert_eq!(healthy.len(), 10);
    // Upstream picks maxUnavailable at random in [0, 9]; every value is tried here.
    for (round, max_unavailable) in (0..10).enumerate() {
        w.set_image(&format!("foo/bar:{round}"));
        w.set_strategy(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": 0}}));
        passes(&mut w, &["0,10", "10,0", "0,0"]);
        assert_eq!(
            ready_names(&w),
            healthy,
            "round {round}: Ready pods are never deleted"
        );
    }
    w.set_image("foo/bar:last");
    w.set_strategy(
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 11, "maxSurge": 0}}),
    );
    passes(&mut w, &["0,11", "11,0", "0,0"]);
    assert_eq!(ready_names(&w).len(), 9);
}

#[test]
fn s096_mixed_old_and_new_unavailability() {
    let mut w = updated_world(
        100,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 10, "maxSurge": 0}}),
    );
    for _ in 0..10 {
        passes(&mut w, &["0,10", "10,0", "ready"]);
    }
    assert_eq!(w.pass(), (0, 0));
    // Force: 88 unavailable current pods, 2 unavailable and 10 available old-hash pods.
    let now = w.now;
    let mut names: Vec<String> = w
        .pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    let (old_unready, rest) = names.split_at(2);
    let (old_ready, current_unready) = rest.split_at(10);
    for (name, ready, old) in old_unready
        .iter()
        .map(|n| (n, false, true))
        .chain(old_ready.iter().map(|n| (n, true, true)))
        .chain(current_unready.iter().map(|n| (n, false, false)))
    {
        let p = w.pod(name);
        World::set_ready(p, ready, now);
        if old {
            let labels = p.metadata.labels.get_or_insert_with(Default::default);
            labels.insert(HASH_LABEL.into(), "old-hash".into());
            labels.insert(rules::TEMPLATE_GENERATION_LABEL.into(), "1".into());
        }
    }
    assert_eq!(w.pass(), (0, 2));
    let mut deleted = w.plan().deletes.clone();
    deleted.sort();
    assert_eq!(
        deleted,
        old_unready.to_vec(),
        "exactly the 2 unavailable old pods"
    );
    passes(&mut w, &["2,0", "0,0"]);
}

#[test]
fn s098_surge_with_unready_old_pods_and_min_ready_seconds() {
    let mut w = World::new(
        ds_with(
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 3}}}),
        ),
        nodes(5),
    );
    assert_eq!(w.pass(), (5, 0));
    w.set_image("foo2/bar3");
    w.now = t(100);
    assert_eq!(w.pass(), (5, 0), "every old pod is unavailable: all surge");
    w.now = t(200);
    assert_eq!(w.pass(), (0, 5));
    for p in &mut w.pods {
        World::set_ready(p, true, t(200));
    }
    w.set_spec("minReadySeconds", json!(15));
    w.set_image("foo2/bar4");
    w.now = t(300);
    assert_eq!(w.pass(), (3, 0));
    let hash = w.hash_of_current();
    let new_pods: Vec<String> = w
        .pods
        .iter()
        .filter(|p| p.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)) == Some(&hash))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(new_pods.len(), 3);
    for name in &new_pods[..2] {
        World::set_ready(w.pod(name), true, t(300));
    }
    let surged: Vec<String> = w
        .pods
        .iter()
        .filter(|p| new_pods.contains(p.metadata.name.as_ref().expect("name")))
        .filter_map(rules::target_node)
        .collect();
    let lone_old = w
        .pods
        .iter()
        .find(|p| !surged.contains(&rules::target_node(p).expect("node")))
        .and_then(|p| p.metadata.name.clone())
        .expect("an old pod on a node without a new one");
    World::set_ready(w.pod(&lone_old), false, t(300));
    w.now = t(310);
    assert_eq!(
        w.pass(),
        (1, 0),
        "a replacement for the unready old pod, beyond the surge budget"
    );
    w.now = t(320);
    assert_eq!(w.pass(), (1, 3));
    for p in &mut w.pods {
        if !rules::is_ready(p) {
            World::set_ready(p, true, t(320));
        }
    }
    w.now = t(340);
    assert_eq!(w.pass(), (0, 2));
    w.now = t(350);
    assert_eq!(w.pass(), (0, 0));
}

/// A pod of `foo` on `node`, Ready, optionally terminating.
fn own_pod(w: &mut World, node: &str, terminating: bool) {
    let name = w.add_pod(node, l1(), true, 0);
    let now = w.now;
    let p = w.pod(&name);
    World::set_ready(p, true, now);
    if terminating {
        p.metadata.deletion_timestamp = Some(Time(now));
    }
}

#[test]
fn s100_budget_arithmetic() {
    use super::pass::{Budgets, budgets_for};
    let strategy = |ru: Value| {
        ds_with(json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": ru}}))
    };
    // (nodes, rollingUpdate, Ready pods, terminating pods, (maxSurge, maxUnavailable, desired, empty nodes))
    type Case = (usize, Value, usize, usize, (i32, i32, i32, i32));
    let cases: Vec<Case> = vec![
        (
            0,
            json!({"maxUnavailable": 0, "maxSurge": 0}),
            0,
            0,
            (0, 0, 0, 0),
        ),
        (
            2,
            json!({"maxUnavailable": 1, "maxSurge": 0}),
            2,
            0,
            (0, 1, 2, 0),
        ),
        (
            2,
            json!({"maxUnavailable": 0, "maxSurge": 0}),
            1,
            0,
            (0, 1, 2, 1),
        ),
        (
            2,
            json!({"maxSurge": 0, "maxUnavailable": 0}),
            1,
            0,
            (0, 1, 2, 1),
        ),
        (
            2,
            json!({"maxUnavailable": "50%", "maxSurge": 0}),
            2,
            0,
            (0, 1, 2, 0),
        ),
        (
            2,
            json!({"maxUnavailable": 0, "maxSurge": "50%"}),
            2,
            0,
            (1, 0, 2, 0),
        ),
        (
            2,
            json!({"maxUnavailable": 0, "maxSurge": "100%"}),
            2,
            0,
            (2, 0, 2, 0),
        ),
        (
            3,
            json!({"maxUnavailable": "50%", "maxSurge": 0}),
            1,
            1,
            (0, 2, 3, 1),
        ),
    ];
    for (n, ru, ready, terminating, want) in cases {
        let mut w = World::new(strategy(ru.clone()), nodes(n));
        for i in 0..ready {
            own_pod(&mut w, &format!("node-{i}"), false);
        }
        for i in ready..ready + terminating {
            own_pod(&mut w, &format!("node-{i}"), true);
        }
        let got = budgets_for(&w.ds, &w.nodes, &w.shared().0).expect("budgets");
        let want = Budgets {
            max_surge: want.0,
            max_unavailable: want.1,
            desired: want.2,
            empty_nodes: want.3,
        };
        assert_eq!(
            got, want,
            "{n} nodes, {ru}, {ready} Ready, {terminating} terminating"
        );
    }
}

#[test]
fn s101_percent_rounding_direction() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let pct = |s: &str| IntOrString::String(s.into());
    assert_eq!(rules::scale(Some(&pct("10%")), 5), Ok(1));
    assert_eq!(rules::scale(Some(&pct("25%")), 3), Ok(1));
    assert_eq!(rules::scale(Some(&pct("50%")), 3), Ok(2));
    assert_eq!(rules::scale(Some(&pct("30%")), 10), Ok(3));
    assert_eq!(rules::scale(Some(&pct("1%")), 7), Ok(1));
}

#[test]
fn s102_non_surge_replacement_waits_for_termination() {
    let mut w = updated_world(
        3,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
    );
    let before = w.pods.clone();
    assert_eq!(w.pass(), (0, 1));
    // The deleted pod ignores SIGTERM: it stays, terminating, for its grace period.
    let victim = w.plan().deletes[0].clone();
    let mut terminating = before
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some(&victim))
        .expect("victim");
    terminating.metadata.deletion_timestamp = Some(Time(w.now));
    let node = rules::target_node(&terminating).expect("node");
    w.pods.push(terminating);
    assert_eq!(
        w.pass(),
        (0, 0),
        "nothing is created while the old pod terminates"
    );
    assert_eq!(w.pass(), (0, 0));
    // It reports a terminal phase while deleting: now exactly one replacement.
    w.pod(&victim).status.as_mut().expect("status").phase = Some("Failed".into());
    assert_eq!(w.pass(), (1, 0));
    assert_eq!(w.plan().creates, vec![node]);
}

#[test]
fn s103_min_ready_seconds_gates_progress() {
    let mut w = updated_world(
        3,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
    );
    w.set_spec("minReadySeconds", json!(10));
    w.now = t(1000);
    // Old pods were Ready long ago: available.
    passes(&mut w, &["0,1", "1,0"]);
    w.now = t(1005);
    w.ready_all(); // the new pod turns Ready at t=1005
    assert_eq!(w.pass(), (0, 0));
    assert_eq!(
        w.plan().requeue_after,
        Some(Duration::from_secs(11)),
        "requeued for transition + 10 s + 1 s"
    );
    w.now = t(1015);
    assert_eq!(
        w.pass(),
        (0, 0),
        "not at exactly transition + minReadySeconds (strict, up to v1.33)"
    );
    w.now = t(1016);
    assert_eq!(
        w.pass(),
        (0, 1),
        "the next old pod goes once the new one is available"
    );
}

#[test]
fn s114_history_limit_zero() {
    let mut w = updated_world(
        3,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
    );
    w.set_spec("revisionHistoryLimit", json!(0));
    w.pass();
    assert_eq!(
        w.revisions.len(),
        2,
        "old pods still reference the old hash: it survives"
    );
    for _ in 0..3 {
        w.ready_all();
        w.pass();
        w.pass();
    }
    w.ready_all();
    w.pass();
    assert!(w.pods.iter().all(|p| {
        p.spec.as_ref().expect("spec").containers[0]
            .image
            .as_deref()
            == Some("foo2/bar2")
    }));
    assert_eq!(
        w.revisions.len(),
        1,
        "converged: only the current revision remains"
    );
    assert_eq!(
        w.revisions[0]
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HASH_LABEL)),
        Some(&w.hash_of_current())
    );
}

#[test]
fn s117_collision_count_changes_the_revision_name_and_pod_hash() {
    let mut w = World::new(ds(), nodes(1));
    w.pass();
    let first = w.hash_of_current();
    // The controller raised collisionCount after the name was taken by different data.
    let mut taken = w.revisions[0].clone();
    taken.data = Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "other"}]}}}}),
    ));
    w.revisions = vec![taken];
    w.ds.status.as_mut().expect("status").collision_count = Some(1);
    w.pods.clear();
    w.pass();
    let second = w.hash_of_current();
    assert_ne!(first, second);
    assert!(
        w.revisions
            .iter()
            .any(|r| r.metadata.name.as_deref() == Some(format!("foo-{second}").as_str()))
    );
    assert!(w.all_pods_hashed(&second));
}

#[test]
fn s132_pending_pods_count_as_current() {
    let mut w = World::new(ds(), nodes(2));
    w.pass();
    // One pod runs; the other cannot be scheduled and stays Pending.
    let name = w.pods[0].metadata.name.clone().expect("name");
    let now = w.now;
    World::set_ready(w.pod(&name), true, now);
    w.pass();
    let s = w.ds.status.clone().expect("status");
    assert_eq!((s.current_number_scheduled, s.number_ready), (2, 1));
}

mod beyond;
