"""The DaemonSet controller, scheduler and garbage collector against a real server process:
nodes are created through the API and pod status is written the way an agent would (agent_sim)."""

import json
import time

import kubernetes
import pytest
from kubernetes import watch

from agent_sim import AgentSim
from conftest import MERGE, daemonset

apps = kubernetes.client.AppsV1Api
core = kubernetes.client.CoreV1Api


def node(name, labels=None, taints=None, cpu="2"):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels or {}, **{"kubernetes.io/hostname": name})},
            "spec": {"taints": taints or []},
            "status": {"capacity": {"cpu": cpu, "memory": "4Gi", "pods": "110"}, "allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}]}}


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last value {last!r}")


def daemon_pods(api, name="foo", ns="default"):
    pods = core(api).list_namespaced_pod(ns).items
    return [p for p in pods if any(o.name == name and o.kind == "DaemonSet" for o in (p.metadata.owner_references or []))]


def by_node(pods):
    out = {}
    for p in pods:
        out.setdefault(p.spec.node_name, []).append(p)
    return out


def status(api, name="foo"):
    s = apps(api).read_namespaced_daemon_set_status(name, "default").status
    return (s.desired_number_scheduled, s.current_number_scheduled, s.number_ready, s.updated_number_scheduled or 0, s.number_available or 0)


def test_node_joins_and_label_and_taint_changes(cluster, cluster_api):
    c = core(cluster_api)
    with AgentSim(cluster):
        apps(cluster_api).create_namespaced_daemon_set("default", daemonset())
        c.create_node(node("node-0"))
        wait_for(lambda: status(cluster_api) == (1, 1, 1, 1, 1), what="one pod on node-0")
        c.create_node(node("node-1"))
        wait_for(lambda: status(cluster_api) == (2, 2, 2, 2, 2), what="node-1 joins")
        # nodeSelector: only blue nodes.
        apps(cluster_api).patch_namespaced_daemon_set("foo", "default", {"spec": {"template": {"spec": {"nodeSelector": {"color": "blue"}}}}}, _content_type=MERGE)
        wait_for(lambda: status(cluster_api)[0] == 0 and daemon_pods(cluster_api) == [], what="pods leave unlabelled nodes")
        c.patch_node("node-1", {"metadata": {"labels": {"color": "blue"}}})
        wait_for(lambda: [p.spec.node_name for p in daemon_pods(cluster_api)] == ["node-1"], what="a pod on the node labelled blue")
        c.patch_node("node-1", {"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoExecute"}]}})
        wait_for(lambda: daemon_pods(cluster_api) == [], what="a NoExecute taint removes the pod")


@pytest.mark.parametrize("rolling, nodes_count, max_unavailable, max_surge", [
    ({"maxUnavailable": 1}, 4, 1, 0),
    ({"maxUnavailable": "25%"}, 8, 2, 0),
    ({"maxUnavailable": 0, "maxSurge": 1}, 4, 0, 1),
], ids=["max-unavailable-1", "max-unavailable-25pct", "max-surge-1"])
def test_rolling_update_never_exceeds_its_budget_and_rollout_status(cluster, cluster_api, rolling, nodes_count, max_unavailable, max_surge):
    c = core(cluster_api)
    n = nodes_count
    for i in range(n):
        c.create_node(node(f"node-{i}"))
    with AgentSim(cluster):
        apps(cluster_api).create_namespaced_daemon_set("default", daemonset(updateStrategy={"type": "RollingUpdate", "rollingUpdate": rolling}))
        wait_for(lambda: status(cluster_api) == (n, n, n, n, n), what="converged")
        out = cluster.kubectl("rollout", "status", "ds/foo", "--timeout=60s").stdout
        assert out.strip().splitlines()[-1] == 'daemon set "foo" successfully rolled out'
        worst_unavailable, most_pods = 0, 0
        apps(cluster_api).patch_namespaced_daemon_set("foo", "default", {"spec": {"template": {"spec": {"containers": [{"name": "foo", "image": "foo/bar:2"}]}}}}, _content_type=MERGE)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            pods = daemon_pods(cluster_api)
            available_nodes = {p.spec.node_name for p in pods if p.metadata.deletion_timestamp is None and p.spec.node_name
                               and any(cd.type == "Ready" and cd.status == "True" for cd in (p.status.conditions or []))}
            worst_unavailable = max(worst_unavailable, n - len(available_nodes))
            most_pods = max(most_pods, len([p for p in pods if p.metadata.deletion_timestamp is None]))
            if status(cluster_api) == (n, n, n, n, n) and len(pods) == n and all(p.spec.containers[0].image == "foo/bar:2" for p in pods):
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the rollout did not finish")
        assert worst_unavailable <= max_unavailable, f"at some observation {worst_unavailable} nodes had no available pod"
        assert most_pods <= n + max_surge, f"at some observation {most_pods} pods existed"
        rollout = cluster.kubectl("rollout", "status", "ds/foo", "--timeout=60s").stdout
        assert 'daemon set "foo" successfully rolled out' in rollout


def test_background_delete_removes_pods(cluster, cluster_api):
    core(cluster_api).create_node(node("node-0"))
    with AgentSim(cluster):
        apps(cluster_api).create_namespaced_daemon_set("default", daemonset())
        wait_for(lambda: status(cluster_api) == (1, 1, 1, 1, 1), what="converged")
        cluster.kubectl("delete", "ds", "foo")
        wait_for(lambda: core(cluster_api).list_namespaced_pod("default").items == [], what="pods garbage-collected")
        wait_for(lambda: apps(cluster_api).list_namespaced_controller_revision("default").items == [], what="revisions garbage-collected")


def test_pod_that_cannot_fit_stays_pending_with_upstream_message(cluster, cluster_api):
    core(cluster_api).create_node(node("small", cpu="1"))
    ds = daemonset()
    ds["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "2"}}
    apps(cluster_api).create_namespaced_daemon_set("default", ds)

    def condition():
        for p in daemon_pods(cluster_api):
            for cd in p.status.conditions or []:
                if cd.type == "PodScheduled" and cd.status == "False":
                    return cd
        return None

    cd = wait_for(condition, what="PodScheduled=False")
    assert cd.reason == "Unschedulable"
    assert cd.message == "0/1 nodes are available: 1 Insufficient cpu."
    out = cluster.kubectl("get", "pods").stdout
    assert out.splitlines()[1].split()[2] == "Pending"
    events = core(cluster_api).list_namespaced_event("default", field_selector="reason=FailedScheduling").items
    assert events and events[0].message == "0/1 nodes are available: 1 Insufficient cpu."


def test_controller_events_and_on_delete(cluster, cluster_api):
    core(cluster_api).create_node(node("node-0"))
    with AgentSim(cluster):
        apps(cluster_api).create_namespaced_daemon_set("default", daemonset(updateStrategy={"type": "OnDelete"}))
        wait_for(lambda: status(cluster_api) == (1, 1, 1, 1, 1), what="converged")
        events = core(cluster_api).list_namespaced_event("default", field_selector="involvedObject.kind=DaemonSet,involvedObject.name=foo").items
        assert any(e.reason == "SuccessfulCreate" and e.message.startswith("Created pod: foo-") for e in events)
        apps(cluster_api).patch_namespaced_daemon_set("foo", "default", {"spec": {"template": {"spec": {"containers": [{"name": "foo", "image": "foo/bar:2"}]}}}}, _content_type=MERGE)
        wait_for(lambda: status(cluster_api)[3] == 0, what="updatedNumberScheduled drops to 0")
        old = daemon_pods(cluster_api)[0]
        assert old.spec.containers[0].image == "foo/bar", "OnDelete does not replace pods"
        out = cluster.kubectl("rollout", "status", "ds/foo", check=False)
        assert out.returncode != 0 and "rollout status is only available for RollingUpdate strategy type" in out.stderr
        core(cluster_api).delete_namespaced_pod(old.metadata.name, "default")
        wait_for(lambda: [p.spec.containers[0].image for p in daemon_pods(cluster_api) if not p.metadata.deletion_timestamp] == ["foo/bar:2"], what="replacement uses the new template")


def test_required_pod_anti_affinity_spreads_and_leaves_the_extra_pod_pending(cluster, cluster_api):
    for n in ("a", "b"):
        core(cluster_api).create_node(node(n))
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    for i in range(3):
        core(cluster_api).create_namespaced_pod("default", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"web-{i}", "labels": {"app": "web"}},
            "spec": {"affinity": anti, "containers": [{"name": "c", "image": "nginx"}]}})

    def placed():
        pods = core(cluster_api).list_namespaced_pod("default", label_selector="app=web").items
        bound = sorted(p.spec.node_name for p in pods if p.spec.node_name)
        pending = [c for p in pods if not p.spec.node_name for c in (p.status.conditions or []) if c.type == "PodScheduled"]
        # The scheduler may first have seen one node only: wait for the message about both.
        expected = "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules."
        return bound == ["a", "b"] and pending and pending[0].message == expected and pending[0]

    cd = wait_for(placed, what="two pods spread, one pending")
    assert cd.reason == "Unschedulable"
