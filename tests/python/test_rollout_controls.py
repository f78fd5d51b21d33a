"""beyond.md §1 and §3, end to end with the machine's kubectl: the `everynode.dev/` annotations that
pause a rollout, keep a partition of nodes at their revision or limit it to a canary selector, and
the 422 a bad value gets. Named after the scenarios they cover."""

import json

import kubernetes
import pytest

from agent_sim import AgentSim
from conftest import daemonset, stays
from test_daemonset_controller import apps, core, daemon_pods, node, status, wait_for


def images_by_node(api):
    return {p.spec.node_name: p.spec.containers[0].image for p in daemon_pods(api) if not p.metadata.deletion_timestamp}


def converged(cluster, api, n=3):
    for i in range(n):
        core(api).create_node(node(f"node-{i}", labels={"zone": "a" if i == 1 else "b"}))
    apps(api).create_namespaced_daemon_set("default", daemonset(
        updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}))
    wait_for(lambda: status(api) == (n, n, n, n, n), what="converged")


def test_b05_pause_then_resume(cluster, cluster_api):
    with AgentSim(cluster):
        converged(cluster, cluster_api)
        uids = {p.metadata.uid for p in daemon_pods(cluster_api)}
        cluster.kubectl("annotate", "ds/foo", "everynode.dev/paused=true")
        cluster.kubectl("set", "image", "ds/foo", "foo=foo/bar:2")
        stays("no pod replaced while paused", lambda: {p.metadata.uid for p in daemon_pods(cluster_api)} == uids, seconds=3)
        cluster.kubectl("annotate", "--overwrite", "ds/foo", "everynode.dev/paused=false")
        wait_for(lambda: set(images_by_node(cluster_api).values()) == {"foo/bar:2"} and status(cluster_api) == (3, 3, 3, 3, 3),
                 what="the rollout completes once resumed")


def test_b06_partition_then_promote(cluster, cluster_api):
    with AgentSim(cluster):
        converged(cluster, cluster_api)
        cluster.kubectl("annotate", "ds/foo", "everynode.dev/partition=2")
        cluster.kubectl("set", "image", "ds/foo", "foo=foo/bar:2")
        want = {"node-0": "foo/bar:2", "node-1": "foo/bar", "node-2": "foo/bar"}
        wait_for(lambda: images_by_node(cluster_api) == want, what="the first node by name updated")
        stays("the partition holds", lambda: images_by_node(cluster_api) == want, seconds=2)
        # Removing the partition promotes the rollout to every node.
        cluster.kubectl("annotate", "ds/foo", "everynode.dev/partition-")
        wait_for(lambda: set(images_by_node(cluster_api).values()) == {"foo/bar:2"}, what="promoted")
        done = cluster.kubectl("rollout", "status", "ds/foo", "--timeout=60s")
        assert done.stdout.strip().splitlines()[-1] == 'daemon set "foo" successfully rolled out'


def test_b08_canary_selector_then_promote(cluster, cluster_api):
    with AgentSim(cluster):
        converged(cluster, cluster_api)
        cluster.kubectl("annotate", "ds/foo", "everynode.dev/canary-node-selector=zone=a")
        cluster.kubectl("set", "image", "ds/foo", "foo=foo/bar:2")
        want = {"node-0": "foo/bar", "node-1": "foo/bar:2", "node-2": "foo/bar"}
        wait_for(lambda: images_by_node(cluster_api) == want, what="only the zone-a node updated")
        stays("the canary holds", lambda: images_by_node(cluster_api) == want, seconds=2)
        cluster.kubectl("annotate", "ds/foo", "everynode.dev/canary-node-selector-")
        wait_for(lambda: set(images_by_node(cluster_api).values()) == {"foo/bar:2"}, what="promoted")


@pytest.mark.parametrize("key,value,says", [
    ("everynode.dev/partition", "-1", "must be a whole number of nodes"),
    ("everynode.dev/partition", "abc", "must be a whole number of nodes"),
    ("everynode.dev/canary-node-selector", "a in (", "must be a label selector"),
    ("everynode.dev/progress-deadline-seconds", "0", "must be an integer number of seconds between 1 and 2147483647"),
    ("everynode.dev/auto-rollback", "yes", 'must be "true" or "false"'),
])
def test_b09_bad_values_are_refused_naming_the_annotation(cluster, cluster_api, key, value, says):
    apps(cluster_api).create_namespaced_daemon_set("default", daemonset())
    # kubectl shows the server's message, which names the annotation and the accepted form.
    out = cluster.kubectl("annotate", "ds/foo", f"{key}={value}", check=False)
    assert out.returncode != 0
    assert f"metadata.annotations[{key}]: Invalid value: {json.dumps(value)}: {says}" in out.stderr, out.stderr
    stored = apps(cluster_api).read_namespaced_daemon_set("foo", "default").metadata.annotations or {}
    assert key not in stored
    # A create carrying it is a 422 whose cause names the field; nothing is stored.
    body = daemonset(name="bar")
    body["metadata"]["annotations"] = {key: value}
    with pytest.raises(kubernetes.client.ApiException) as refused:
        apps(cluster_api).create_namespaced_daemon_set("default", body)
    assert refused.value.status == 422
    causes = json.loads(refused.value.body)["details"]["causes"]
    assert [c["field"] for c in causes] == [f"metadata.annotations[{key}]"]
    assert [d.metadata.name for d in apps(cluster_api).list_namespaced_daemon_set("default").items] == ["foo"]


def test_b10_unready_nodes_excluded_from_the_budget(cluster, cluster_api):
    down = node("node-2")
    down["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "down"}]
    for body in (node("node-0"), node("node-1"), down):
        core(cluster_api).create_node(body)
    apps(cluster_api).create_namespaced_daemon_set("default", daemonset(
        updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}))
    with AgentSim(cluster, hold={"node-2"}):
        wait_for(lambda: status(cluster_api)[:3] == (3, 3, 2), what="two of three pods Ready")
        cluster.kubectl("set", "image", "ds/foo", "foo=foo/bar:2")
        # Upstream: the NotReady node's unavailable pod uses up maxUnavailable 1.
        ready_nodes_old = lambda: all(images_by_node(cluster_api).get(n) == "foo/bar" for n in ("node-0", "node-1"))
        stays("no Ready node updated", ready_nodes_old, seconds=3)
        cluster.kubectl("annotate", "ds/foo", "everynode.dev/unready-nodes=exclude-from-budget")
        wait_for(lambda: all(images_by_node(cluster_api).get(n) == "foo/bar:2" for n in ("node-0", "node-1")),
                 what="the Ready nodes updated")
        # `Available` names the unready node apart from the pods that count.
        apart = "1 pod unavailable on unready nodes (node-2), not counted against maxUnavailable"
        wait_for(lambda: (c := condition(cluster_api, "Available")) is not None and c.message == apart,
                 what="Available naming the unready node")
        assert "reason: NodeUnready" in cluster.kubectl("get", "ds/foo", "-o", "yaml").stdout


def condition(api, kind):
    conditions = apps(api).read_namespaced_daemon_set_status("foo", "default").status.conditions or []
    return next((c for c in conditions if c.type == kind), None)


def progressing(api):
    return condition(api, "Progressing")


def test_b02_deadline_exceeded_shows_in_describe_and_events(cluster, cluster_api):
    with AgentSim(cluster, hold={"node-1", "node-2"}) as sim:
        for i in range(3):
            core(cluster_api).create_node(node(f"node-{i}"))
        apps(cluster_api).create_namespaced_daemon_set("default", daemonset(
            updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 3}}))
        wait_for(lambda: (c := progressing(cluster_api)) is not None and c.reason in ("NewRevision", "RolloutProgressing"),
                 what="a rollout under way")
        cluster.kubectl("annotate", "ds/foo", "everynode.dev/progress-deadline-seconds=3")
        wait_for(lambda: (c := progressing(cluster_api)) is not None and c.status == "False", timeout=30,
                 what="the deadline passes")
        c = progressing(cluster_api)
        assert c.reason == "ProgressDeadlineExceeded"
        assert c.message.startswith("revision 1 made no progress for 3s: 2 pods not available — node-1 "), c.message
        describe = cluster.kubectl("describe", "ds/foo").stdout
        assert "ProgressDeadlineExceeded" in describe, describe
        events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=foo,reason=ProgressDeadlineExceeded", "-o", "json").stdout
        assert len(json.loads(events)["items"]) == 1
        # Progress clears it: the held nodes come back and the rollout completes.
        sim.hold.clear()
        wait_for(lambda: (c := progressing(cluster_api)) is not None and c.reason == "RolloutComplete", timeout=60,
                 what="the rollout completes")
        assert progressing(cluster_api).message == "revision 1 on all 3 nodes"


def test_b03_a_stalled_rollout_rolls_back_on_real_nodes(nodes):
    """Three process-runtime agents; a template whose readiness never passes stalls past its
    20 s deadline and is rolled back to the last complete revision. The pods that never left
    it keep their names and start times."""
    from test_agent import apply, loop_ds

    api = nodes.client()
    ds = loop_ds("steered", "while true; do sleep 1; done", terminationGracePeriodSeconds=1)
    ds["metadata"]["annotations"] = {"everynode.dev/progress-deadline-seconds": "20", "everynode.dev/auto-rollback": "true"}
    ds["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    ds["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    apply(nodes, ds)

    def read():
        return apps(api).read_namespaced_daemon_set("steered", "default")

    def condition(kind):
        return next((c for c in (read().status.conditions or []) if c.type == kind), None)

    def pods():
        listed = core(api).list_namespaced_pod("default", label_selector="app=steered").items
        return {p.spec.node_name: p for p in listed if not p.metadata.deletion_timestamp}

    def started(p):
        statuses = p.status.container_statuses or []
        return statuses[0].state.running.started_at if statuses and statuses[0].state.running else None

    wait_for(lambda: (c := condition("Progressing")) is not None and c.reason == "RolloutComplete" and
             "everynode.dev/last-complete-revision" in (read().metadata.annotations or {}), timeout=60,
             what="the first rollout completes and is recorded")
    before = {node: (p.metadata.name, started(p)) for node, p in pods().items()}
    assert len(before) == 3
    # The readiness probe of the new template never passes.
    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/readinessProbe/exec/command", "value": ["false"]}]
    nodes.kubectl("patch", "ds/steered", "--type=json", "-p", json.dumps(patch))
    wait_for(lambda: condition("RolledBack") is not None, timeout=90, what="the rollback")
    rolled = condition("RolledBack")
    assert (rolled.status, rolled.reason, rolled.message) == \
        ("True", "ProgressDeadlineExceeded", "rolled back from revision 2 to revision 1")
    command = read().spec.template.spec.containers[0].readiness_probe._exec.command
    assert command == ["true"]
    wait_for(lambda: (c := condition("Progressing")) is not None and c.reason == "RolloutComplete" and
             len(pods()) == 3 and all(started(p) for p in pods().values()), timeout=60,
             what="the restored revision runs everywhere")
    after = {node: (p.metadata.name, started(p)) for node, p in pods().items()}
    kept = [node for node in before if after[node] == before[node]]
    assert len(kept) == 2, (before, after)
    # kubectl sees the restored revision renumbered newest, the rollback in events and describe.
    history = nodes.kubectl("rollout", "history", "ds/steered").stdout.split()
    assert history[-4:] == ["2", "<none>", "3", "<none>"], history
    events = json.loads(nodes.kubectl("get", "events", "--field-selector",
                                      "involvedObject.name=steered,reason=RolledBack", "-o", "json").stdout)["items"]
    assert [e["message"] for e in events] == ["rolled back from revision 2 to revision 1"]
    describe = nodes.kubectl("describe", "ds/steered").stdout
    assert "RolledBack" in describe and "ProgressDeadlineExceeded" in describe, describe
    api.close()
