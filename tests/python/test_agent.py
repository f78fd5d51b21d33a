"""The node agent running pods for real (process runtime), with real kubectl: issue 5's cases.

Every test runs a server with all controllers and three `everynode agent` processes (fixture
`nodes`), except the first, which runs `everynode up --nodes 3` as a user would.
"""

import json
import os
import pathlib
import signal
import subprocess
import threading
import time

import kubernetes
import yaml

from conftest import EXAMPLES, Agent, Server, everynode_binary, kubectl_binary, stays, wait_for


def loop_ds(name, command, **pod_spec):
    spec = {"containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", command],
                            "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}]}
    spec.update(pod_spec)
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
    }


def apply(server, obj):
    server.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj))


def pods_of(core, name):
    return core.list_namespaced_pod("default", label_selector=f"app={name}").items


def ready(pod):
    conditions = (pod.status and pod.status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def ds_status(apps, name):
    s = apps.read_namespaced_daemon_set(name, "default").status
    return (s.desired_number_scheduled, s.current_number_scheduled, s.number_ready or 0,
            s.updated_number_scheduled or 0, s.number_available or 0)


def test_up_three_nodes_runs_a_daemonset_with_logs(tmp_data_dir):
    """`everynode up --nodes 3`, `kubectl apply` a shell-loop DaemonSet: one Running, Ready pod per
    node, `kubectl logs` shows their output, `kubectl get ds` shows 3 3 3 3 3."""
    data = pathlib.Path(tmp_data_dir)
    log = open(data / "up.log", "ab")
    up = subprocess.Popen([everynode_binary(), "up", "--nodes", "3", "--listen", "127.0.0.1:0",
                           "--data-dir", str(data / "cluster")], stdout=subprocess.PIPE, stderr=log)
    try:
        line = up.stdout.readline().decode()
        assert "listening on" in line, line
        env = dict(os.environ, KUBECONFIG=str(data / "cluster" / "kubeconfig"), HOME=str(data))

        def kubectl(*args, input=None):
            r = subprocess.run([kubectl_binary(), *args], capture_output=True, text=True, env=env, input=input, timeout=60)
            assert r.returncode == 0, r.stderr
            return r.stdout

        wait_for("3 Ready nodes", lambda: kubectl("get", "nodes").count(" Ready ") == 3)
        marker = f"tick-{os.getpid()}-{time.monotonic_ns()}"
        kubectl("apply", "-f", "-", input=yaml.safe_dump(
            loop_ds("ticker", f"i=0; while true; do echo {marker} $i on $NODE; i=$((i+1)); sleep 1; done")))
        wait_for("ds 3 3 3 3 3", lambda: kubectl("get", "ds", "ticker", "--no-headers").split()[1:6] == ["3"] * 5)
        wide = kubectl("get", "pods", "-l", "app=ticker", "-o", "wide", "--no-headers")
        rows = [r.split() for r in wide.strip().splitlines()]
        assert sorted(r[6] for r in rows) == ["node-1", "node-2", "node-3"], wide
        assert all(r[1] == "1/1" and r[2] == "Running" for r in rows), wide
        header = kubectl("get", "ds", "ticker").splitlines()[0].split()
        assert header[:6] == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE"]
        for r in rows:
            out = wait_for("log lines", lambda: kubectl("logs", r[0]).strip())
            assert f"{marker} 0 on {r[6]}" in out, out
        # `logs -f ds/NAME` follows one of the pods: new lines keep arriving.
        follow = subprocess.Popen([kubectl_binary(), "logs", "-f", "ds/ticker", "--tail", "1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            first = int(follow.stdout.readline().split()[1])
            second = int(follow.stdout.readline().split()[1])
            assert second == first + 1
        finally:
            follow.kill()
            follow.wait()
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
    # Stopping `up` stops the agents, and they stop their containers.
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.strip()
    assert left == "", f"containers still running after up stopped: {left}"


def test_logs_follow_previous_and_tail(nodes):
    client = nodes.client()
    core = kubernetes.client.CoreV1Api(client)
    apply(nodes, loop_ds("talker", "echo start $NODE; i=0; while [ $i -lt 3 ]; do echo line $i; i=$((i+1)); sleep 0.3; done; exit 1"))
    pods = wait_for("restarted pods", lambda: [p for p in pods_of(core, "talker")
                                               if p.status.container_statuses and p.status.container_statuses[0].restart_count >= 1])
    name = pods[0].metadata.name
    previous = nodes.kubectl("logs", name, "--previous").stdout
    assert previous.splitlines()[:2] == [f"start {pods[0].spec.node_name}", "line 0"], previous
    tail = wait_for("tail", lambda: nodes.kubectl("logs", name, "--tail", "1", "--previous").stdout)
    assert tail == "line 2\n"
    stamped = nodes.kubectl("logs", name, "--previous", "--timestamps").stdout.splitlines()[0]
    assert stamped.split(" ", 1)[1].startswith("start "), stamped
    missing = nodes.kubectl("logs", name, "-c", "nope", check=False)
    assert missing.returncode != 0 and f"container nope is not valid for pod {name}" in missing.stderr
    client.close()


def test_deleted_pod_is_replaced(nodes):
    client = nodes.client()
    core = kubernetes.client.CoreV1Api(client)
    apply(nodes, loop_ds("keeper", "while true; do sleep 1; done"))
    pods = wait_for("3 ready pods", lambda: len([p for p in pods_of(core, "keeper") if ready(p)]) == 3 and pods_of(core, "keeper"))
    victim = next(p for p in pods if p.spec.node_name == "node-2")
    nodes.kubectl("delete", "pod", victim.metadata.name)
    replacement = wait_for("a new Ready pod on node-2", lambda: [
        p for p in pods_of(core, "keeper")
        if p.spec.node_name == "node-2" and p.metadata.uid != victim.metadata.uid and ready(p)])
    assert len(replacement) == 1
    client.close()


def test_crashing_container_backs_off_with_growing_delay(nodes):
    client = nodes.client()
    core = kubernetes.client.CoreV1Api(client)
    apply(nodes, loop_ds("crasher", "echo boom; exit 3"))
    seen = set()

    def backoff_messages():
        for p in pods_of(core, "crasher"):
            for c in p.status.container_statuses or []:
                w = c.state.waiting
                if w and w.reason == "CrashLoopBackOff":
                    seen.add(w.message.split(" restarting")[0])
                    assert c.last_state.terminated.exit_code == 3
        return {"back-off 10s", "back-off 20s"} <= seen

    wait_for("back-off 10s then 20s", backoff_messages, timeout=120)
    out = nodes.kubectl("get", "pods", "-l", "app=crasher").stdout
    assert "CrashLoopBackOff" in out, out
    described = nodes.kubectl("describe", "pods", "-l", "app=crasher").stdout
    assert "Back-off restarting failed container main in pod" in described, described
    client.close()


def test_termination_messages_and_a_failed_post_start_hook(nodes):
    """A container's termination message comes from its terminationMessagePath, or under
    FallbackToLogsOnError from its log's tail; a failed postStart hook is reported as upstream
    reports it (FailedPostStartHook, then the container is killed and restarted)."""
    client = nodes.client()
    core = kubernetes.client.CoreV1Api(client)
    apply(nodes, loop_ds("messenger", "printf 'disk is full' > /dev/termination-log; exit 4"))
    fallback = loop_ds("fallback", "echo first line; echo last line; exit 5")
    fallback["spec"]["template"]["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    apply(nodes, fallback)
    hooked = loop_ds("hooked", "while true; do sleep 1; done")
    hooked["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {
        "postStart": {"exec": {"command": ["sh", "-c", "echo no config; exit 3"]}}}
    hooked["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    apply(nodes, hooked)

    def messages(name):
        found = set()
        for p in pods_of(core, name):
            for c in p.status.container_statuses or []:
                for state in (c.state, c.last_state):
                    if state and state.terminated and state.terminated.message:
                        found.add(state.terminated.message)
        return found

    assert wait_for("the written message", lambda: "disk is full" in messages("messenger"), timeout=60)
    assert wait_for("the log's tail", lambda: "first line\nlast line" in messages("fallback"), timeout=60)
    wait_for("a restart after the postStart failure", lambda: any(
        c.restart_count >= 1 for p in pods_of(core, "hooked") for c in (p.status.container_statuses or [])), timeout=60)
    events = core.list_namespaced_event("default").items
    hook_events = [e for e in events if e.involved_object.name.startswith("hooked")]
    assert any(e.reason == "FailedPostStartHook" and e.message == "PostStartHook failed" and e.type == "Warning"
               for e in hook_events), [(e.reason, e.message) for e in hook_events]
    assert any(e.reason == "Killing" and e.message == "FailedPostStartHook" for e in hook_events)
    client.close()


def test_failing_readiness_probe_lowers_number_ready(nodes, tmp_path):
    client = nodes.client()
    core = kubernetes.client.CoreV1Api(client)
    apps = kubernetes.client.AppsV1Api(client)
    flags = str(tmp_path)  # pytest removes it
    for n in ("node-1", "node-2", "node-3"):
        pathlib.Path(flags, n).touch()
    ds = loop_ds("probed", "while true; do sleep 1; done")
    ds["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
        "exec": {"command": ["sh", "-c", f"test -f {flags}/$NODE"]}, "periodSeconds": 1, "failureThreshold": 1}
    apply(nodes, ds)
    wait_for("3 ready", lambda: ds_status(apps, "probed")[2] == 3)
    os.remove(os.path.join(flags, "node-2"))
    wait_for("numberReady 2", lambda: ds_status(apps, "probed")[2] == 2)
    pod = next(p for p in pods_of(core, "probed") if p.spec.node_name == "node-2")
    assert pod.status.phase == "Running" and not ready(pod)
    cond = next(c for c in pod.status.conditions if c.type == "Ready")
    assert cond.reason == "ContainersNotReady" and cond.message == "containers with unready status: [main]"
    pathlib.Path(flags, "node-2").touch()
    wait_for("3 ready again", lambda: ds_status(apps, "probed")[2] == 3)
    client.close()


def test_failing_liveness_probe_restarts_the_container(nodes):
    client = nodes.client()
    core = kubernetes.client.CoreV1Api(client)
    ds = loop_ds("lively", "while true; do sleep 1; done")
    ds["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {
        "exec": {"command": ["sh", "-c", "exit 1"]}, "periodSeconds": 1, "failureThreshold": 2}
    ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    apply(nodes, ds)
    wait_for("a liveness restart", lambda: any(
        c.restart_count >= 1 for p in pods_of(core, "lively") for c in (p.status.container_statuses or [])))
    described = nodes.kubectl("describe", "pods", "-l", "app=lively").stdout
    assert "Container main failed liveness probe, will be restarted" in described, described
    assert "Liveness probe failed:" in described
    client.close()


def test_prestop_runs_before_sigterm_and_grace_period_is_honoured(nodes, tmp_path):
    client = nodes.client()
    core = kubernetes.client.CoreV1Api(client)
    out = str(tmp_path)  # pytest removes it
    ds = loop_ds("stopper", f"trap 'echo term >> {out}/$NODE; exit 0' TERM; while true; do sleep 0.1; done")
    spec = ds["spec"]["template"]["spec"]
    spec["terminationGracePeriodSeconds"] = 2
    spec["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["sh", "-c", f"echo prestop >> {out}/$NODE"]}}}
    # A second container ignores SIGTERM: it is killed when the grace period ends.
    spec["containers"].append({"name": "stubborn", "image": "busybox",
                               "command": ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]})
    apply(nodes, ds)
    wait_for("3 ready", lambda: len([p for p in pods_of(core, "stopper") if ready(p)]) == 3)
    victim = next(p for p in pods_of(core, "stopper") if p.spec.node_name == "node-1")
    w = kubernetes.watch.Watch()
    last = None
    nodes.kubectl("delete", "pod", victim.metadata.name, "--wait=false")
    for event in w.stream(core.list_namespaced_pod, "default", field_selector=f"metadata.name={victim.metadata.name}",
                          resource_version=victim.metadata.resource_version, timeout_seconds=60):
        if event["type"] == "DELETED":
            break
        last = event["object"]
    w.stop()
    assert pathlib.Path(out, "node-1").read_text().split() == ["prestop", "term"]
    statuses = {c.name: c.state.terminated for c in last.status.container_statuses}
    assert statuses["main"].exit_code == 0
    assert statuses["stubborn"].exit_code == 137
    client.close()


def test_killed_agent_node_goes_unknown_then_recovers_without_a_second_pod(nodes):
    """S-150 end to end: the node goes Ready=Unknown with the unreachable taints, the daemon pod
    stays (not Ready); a restarted agent adopts the still-running container."""
    client = nodes.client()
    core = kubernetes.client.CoreV1Api(client)
    apps = kubernetes.client.AppsV1Api(client)
    apply(nodes, loop_ds("survivor", "while true; do sleep 1; done"))
    wait_for("3 ready", lambda: ds_status(apps, "survivor")[2] == 3)
    before = next(p for p in pods_of(core, "survivor") if p.spec.node_name == "node-2")
    nodes.agents["node-2"].stop(signal.SIGKILL)

    def unknown_and_tainted():
        n = core.read_node("node-2")
        cond = next(c for c in n.status.conditions if c.type == "Ready")
        taints = {(t.key, t.effect) for t in (n.spec.taints or [])}
        return cond.status == "Unknown" and {
            ("node.kubernetes.io/unreachable", "NoSchedule"),
            ("node.kubernetes.io/unreachable", "NoExecute")} <= taints and cond.reason == "NodeStatusUnknown"

    wait_for("node-2 Unknown and tainted", unknown_and_tainted)
    wait_for("numberReady 2, desired 2", lambda: ds_status(apps, "survivor")[0] == 2 and ds_status(apps, "survivor")[2] == 2)
    kept = [p for p in pods_of(core, "survivor") if p.spec.node_name == "node-2"]
    assert [p.metadata.uid for p in kept] == [before.metadata.uid], "the daemon pod must stay"
    assert not ready(kept[0])
    out = nodes.kubectl("get", "nodes").stdout
    assert "node-2   NotReady" in out, out
    nodes.agents["node-2"] = Agent(nodes, "node-2").start()

    def recovered():
        n = core.read_node("node-2")
        on_node = [p for p in pods_of(core, "survivor") if p.spec.node_name == "node-2"]
        assert len(on_node) <= 1, "never two daemon pods on one node"
        return not (n.spec.taints or []) and len(on_node) == 1 and ready(on_node[0]) and on_node

    after = wait_for("node-2 recovered", recovered)
    assert after[0].metadata.uid == before.metadata.uid
    assert after[0].status.container_statuses[0].restart_count == 0, "the running container is adopted, not restarted"
    wait_for("3 ready again", lambda: ds_status(apps, "survivor") == (3, 3, 3, 3, 3))
    client.close()


def test_rolling_update_across_three_nodes_never_has_two_unavailable(nodes):
    client = nodes.client()
    core = kubernetes.client.CoreV1Api(client)
    apps = kubernetes.client.AppsV1Api(client)
    apply(nodes, loop_ds("roller", "while true; do sleep 1; done"))
    wait_for("3 ready", lambda: ds_status(apps, "roller")[2] == 3)
    w = kubernetes.watch.Watch()
    pods = {p.metadata.uid: p for p in pods_of(core, "roller")}
    rv = core.list_namespaced_pod("default", label_selector="app=roller").metadata.resource_version
    ds = loop_ds("roller", "while true; do sleep 2; done")
    apply(nodes, ds)
    worst = 0
    for event in w.stream(core.list_namespaced_pod, "default", label_selector="app=roller", resource_version=rv, timeout_seconds=120):
        p = event["object"]
        if event["type"] == "DELETED":
            pods.pop(p.metadata.uid, None)
        else:
            pods[p.metadata.uid] = p
        available = {q.spec.node_name for q in pods.values() if ready(q) and q.metadata.deletion_timestamp is None}
        worst = max(worst, 3 - len(available))
        new = [q for q in pods.values() if ready(q) and q.spec.containers[0].command[-1].endswith("sleep 2; done")]
        if len(new) == 3 and len(pods) == 3:
            break
    w.stop()
    assert worst <= 1, f"{worst} nodes without an available pod at once"
    out = nodes.kubectl("rollout", "status", "ds/roller", "--timeout=60s").stdout
    assert 'daemon set "roller" successfully rolled out' in out
    client.close()


def test_example_manifest_missing_host_path_directory_fails_with_upstream_message(nodes):
    doc = yaml.safe_load((EXAMPLES / "dce-hwameistor-zh.yaml").read_text())
    for field in ("uid", "resourceVersion", "generation", "creationTimestamp"):
        doc["metadata"].pop(field, None)
    doc.pop("status", None)
    volumes = doc["spec"]["template"]["spec"]["volumes"]
    missing = next(v["hostPath"]["path"] for v in volumes
                   if v.get("hostPath", {}).get("type") == "Directory" and not os.path.isdir(v["hostPath"]["path"]))
    volume = next(v["name"] for v in volumes if v.get("hostPath", {}).get("path") == missing)
    nodes.kubectl("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "hwameistor"}}))
    # The ServiceAccount its chart creates beside it: without it, pods are refused, as upstream.
    nodes.kubectl("create", "serviceaccount", "hwameistor-admin", "-n", "hwameistor")
    nodes.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    expected = f'MountVolume.SetUp failed for volume "{volume}" : hostPath type check failed: {missing} is not a directory'
    described = wait_for("FailedMount in describe", lambda: (lambda out: expected in out and out)(
        nodes.kubectl("describe", "pods", "-n", "hwameistor").stdout))
    assert "FailedMount" in described
    pods = json.loads(nodes.kubectl("get", "pods", "-n", "hwameistor", "-o", "json").stdout)["items"]
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Pending" for p in pods)
    waiting = {c["state"]["waiting"]["reason"] for p in pods for c in p["status"]["containerStatuses"]}
    assert waiting == {"ContainerCreating"}


def test_hollow_fleet_of_100_nodes_runs_a_daemonset(tmp_data_dir):
    """The CI smoke test of the scale path: 100 hollow nodes in one agent process, a DaemonSet on
    all of them. Asserts completion, never speed (speed is bench/RESULTS.md's business)."""
    from conftest import Server
    server = Server(tmp_data_dir, ["--store", "memory"]).start()
    fleet = Agent(server, "hollow", ["--runtime", "hollow", "--hollow-nodes", "100", "--hollow-start-delay-ms", "100"])
    fleet.start()
    client = server.client()
    try:
        core = kubernetes.client.CoreV1Api(client)
        apps = kubernetes.client.AppsV1Api(client)
        wait_for("100 Ready nodes", lambda: sum(
            1 for n in core.list_node().items
            if any(c.type == "Ready" and c.status == "True" for c in ((n.status and n.status.conditions) or []))) == 100)
        apply(server, loop_ds("everywhere", "true"))
        wait_for("100 pods Ready", lambda: ds_status(apps, "everywhere") == (100, 100, 100, 100, 100), timeout=180)
        nodes_with_pods = {p.spec.node_name for p in pods_of(core, "everywhere")}
        assert len(nodes_with_pods) == 100
        hosts = {p.status.pod_ip for p in pods_of(core, "everywhere")}
        assert len(hosts) > 90, "hollow pods get distinct addresses"
    finally:
        client.close()
        fleet.stop()
        server.kill()


def test_static_pod_runs_and_is_mirrored(tmp_data_dir):
    from conftest import Server
    server = Server(tmp_data_dir, ["--store", "memory"]).start()
    manifests = pathlib.Path(tmp_data_dir) / "manifests"
    manifests.mkdir()
    marker = f"static-{os.getpid()}-{time.monotonic_ns()}"
    (manifests / "web.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
                                 "command": ["sh", "-c", f"echo {marker}; while true; do sleep 1; done"]}]}}))
    agent = Agent(server, "solo", ["--pod-manifest-path", str(manifests)]).start()
    client = server.client()
    try:
        core = kubernetes.client.CoreV1Api(client)
        pod = wait_for("the mirror pod Running", lambda: (lambda p: p.status is not None and p.status.phase == "Running" and ready(p) and p)(
            core.read_namespaced_pod("web-solo", "default")))
        assert pod.metadata.annotations["kubernetes.io/config.source"] == "file"
        assert pod.metadata.annotations["kubernetes.io/config.mirror"] == pod.metadata.annotations["kubernetes.io/config.hash"]
        assert pod.metadata.owner_references[0].kind == "Node"
        assert wait_for("its log", lambda: marker in server.kubectl("logs", "web-solo").stdout)
        (manifests / "web.yaml").unlink()
        wait_for("the mirror pod gone", lambda: not [p for p in core.list_namespaced_pod("default").items if p.metadata.name == "web-solo"], timeout=90)
        wait_for("the container stopped", lambda: subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1)
    finally:
        client.close()
        agent.stop()
        server.kill()


def test_pods_of_a_deleted_node_are_garbage_collected(nodes):
    client = nodes.client()
    core = kubernetes.client.CoreV1Api(client)
    apps = kubernetes.client.AppsV1Api(client)
    apply(nodes, loop_ds("collected", "while true; do sleep 1; done"))
    wait_for("3 ready", lambda: ds_status(apps, "collected")[2] == 3)
    nodes.agents["node-3"].stop()
    core.delete_node("node-3")
    # Pod GC deletes the pod after the 40 s quarantine; the DaemonSet then wants 2.
    wait_for("no pod on node-3", lambda: not [p for p in pods_of(core, "collected") if p.spec.node_name == "node-3"], timeout=120)
    wait_for("ds 2 2 2 2 2", lambda: ds_status(apps, "collected") == (2, 2, 2, 2, 2))
    client.close()


def test_daemon_pod_preempts_a_lower_priority_pod(tmp_data_dir):
    """A node full of a low-priority pod: the high-priority daemon pod is nominated to it, the
    victim gets DisruptionTarget and is deleted gracefully, then the daemon pod runs."""
    from conftest import Server
    server = Server(tmp_data_dir, ["--store", "memory"]).start()
    agent = Agent(server, "small", ["--cpu", "1"]).start()
    client = server.client()
    try:
        core = kubernetes.client.CoreV1Api(client)
        wait_for("the node Ready", lambda: any(
            c.type == "Ready" and c.status == "True"
            for c in ((core.read_node("small").status and core.read_node("small").status.conditions) or [])))
        server.kubectl("create", "priorityclass", "low", "--value=10")
        server.kubectl("create", "priorityclass", "high", "--value=1000")
        hog = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hog"},
               "spec": {"priorityClassName": "low", "terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "while true; do sleep 1; done"],
                                        "resources": {"requests": {"cpu": "800m"}}}]}}
        apply(server, hog)
        running = wait_for("the hog Running", lambda: (lambda p: ready(p) and p)(core.read_namespaced_pod("hog", "default")))
        assert running.spec.priority == 10
        w = kubernetes.watch.Watch()
        ds = loop_ds("critical", "while true; do sleep 1; done")
        spec = ds["spec"]["template"]["spec"]
        spec["priorityClassName"] = "high"
        spec["containers"][0]["resources"] = {"requests": {"cpu": "500m"}}
        apply(server, ds)
        disrupted = None
        for event in w.stream(core.list_namespaced_pod, "default", field_selector="metadata.name=hog",
                              resource_version=running.metadata.resource_version, timeout_seconds=60):
            conditions = (event["object"].status and event["object"].status.conditions) or []
            disrupted = disrupted or next((c for c in conditions if c.type == "DisruptionTarget"), None)
            if event["type"] == "DELETED":
                break
        w.stop()
        assert disrupted is not None and disrupted.reason == "PreemptionByScheduler"
        daemon = wait_for("the daemon pod Running", lambda: [p for p in pods_of(core, "critical") if ready(p)])
        assert daemon[0].spec.node_name == "small" and daemon[0].spec.priority == 1000
        events = server.kubectl("get", "events", "--field-selector", "involvedObject.name=hog").stdout
        assert "Preempted" in events and "on node small" in events, events
    finally:
        client.close()
        agent.stop()
        server.kill()


def test_a_restarted_agent_keeps_its_adopted_container_started_and_ready(tmp_data_dir, tmp_path):
    """Upstream's kubelet-restart rule (the default since 1.35): the container the pod reported
    keeps `started` and `ready`; its startup probe is not run again and the pod never flaps to
    not ready. The startup probe here succeeds exactly once, so a second run would keep the
    container unstarted."""
    # The default node-monitor grace (40 s): the restart must not be taken for a lost node,
    # whose pods the node lifecycle controller marks not ready.
    server = Server(tmp_data_dir, ["--store", "memory"]).start()
    agent = Agent(server, "node-1").start()
    client = server.client()
    core = kubernetes.client.CoreV1Api(client)
    try:
        once = str(tmp_path / "started")
        ds = loop_ds("steady", "while true; do sleep 1; done")
        main = ds["spec"]["template"]["spec"]["containers"][0]
        main["startupProbe"] = {"exec": {"command": ["mkdir", once]}, "periodSeconds": 1, "failureThreshold": 100}
        main["readinessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 30}
        apply(server, ds)
        before = wait_for("steady Ready", lambda: next((p for p in pods_of(core, "steady") if ready(p)), None))
        old = before.status.container_statuses[0]
        transition = next(c for c in before.status.conditions if c.type == "Ready").last_transition_time

        def certificate():
            return core.read_node("node-1").metadata.annotations["everynode.io/agent-certificate-sha256"]
        old_certificate = certificate()
        agent.stop(signal.SIGKILL)
        agent = Agent(server, "node-1").start()
        wait_for("a new agent for node-1", lambda: certificate() != old_certificate)

        def unchanged():
            p = core.read_namespaced_pod(before.metadata.name, "default")
            c = p.status.container_statuses[0]
            ready_condition = next(c for c in p.status.conditions if c.type == "Ready")
            return (c.container_id, c.restart_count, c.started, c.ready, ready(p),
                    ready_condition.last_transition_time) == (old.container_id, 0, True, True, True, transition)
        stays("the adopted container started and ready", unchanged, seconds=4, interval=0.2)
    finally:
        client.close()
        agent.stop()
        server.kill()


def test_b12_a_graceful_agent_stop_marks_the_node_and_no_pod_is_created_there(nodes):
    """beyond.md §5: SIGTERM makes the agent mark its node (condition `ShuttingDown`, taint
    `everynode.dev/shutting-down:NoSchedule`) before it stops its pods. A DaemonSet tolerating
    every taint gets no pod there while the mark stands, even when its pod is deleted; when the
    agent starts again the mark goes and the pod returns. Creates are counted from a watch."""
    client = nodes.client()
    core = kubernetes.client.CoreV1Api(client)
    apps = kubernetes.client.AppsV1Api(client)
    apply(nodes, loop_ds("collector", "while true; do sleep 1; done",
                         tolerations=[{"operator": "Exists"}], terminationGracePeriodSeconds=2))
    wait_for("3 ready", lambda: ds_status(apps, "collector")[2] == 3)
    created = []
    stop = threading.Event()

    def count_creates():
        since = core.list_namespaced_pod("default").metadata.resource_version
        w = kubernetes.watch.Watch()
        for ev in w.stream(core.list_namespaced_pod, "default", resource_version=since, timeout_seconds=120,
                           label_selector="app=collector"):
            if ev["type"] == "ADDED":
                created.append(ev["object"].spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
                               .node_selector_terms[0].match_fields[0].values[0])
            if stop.is_set():
                w.stop()
    watcher = threading.Thread(target=count_creates, daemon=True)
    watcher.start()
    time.sleep(0.5)  # the watch is open before anything happens
    nodes.agents["node-2"].stop(signal.SIGTERM)
    node = core.read_node("node-2")
    shutting = next(c for c in node.status.conditions if c.type == "ShuttingDown")
    assert (shutting.status, shutting.reason) == ("True", "GracefulShutdown")
    assert [(t.key, t.effect) for t in node.spec.taints or [] if t.key.startswith("everynode.dev/")] == \
        [("everynode.dev/shutting-down", "NoSchedule")]
    # The pod the agent stopped goes (as a failed pod would be cleaned up): none comes back.
    on_node = [p for p in pods_of(core, "collector") if p.spec.node_name == "node-2"]
    assert len(on_node) == 1
    core.delete_namespaced_pod(on_node[0].metadata.name, "default", grace_period_seconds=0)
    stays("no pod for node-2 while it shuts down",
          lambda: not [p for p in pods_of(core, "collector") if p.spec.node_name == "node-2"], seconds=5, interval=0.25)
    assert "node-2" not in created
    out = nodes.kubectl("get", "ds", "collector", "-o", "jsonpath={.status.desiredNumberScheduled}").stdout
    assert out == "2", out
    # The agent is back: mark gone, pod back.
    nodes.agents["node-2"] = Agent(nodes, "node-2").start()
    wait_for("node-2's pod Ready again", lambda: any(
        p.spec.node_name == "node-2" and ready(p) for p in pods_of(core, "collector")), timeout=60)
    node = core.read_node("node-2")
    assert not [c for c in node.status.conditions if c.type == "ShuttingDown"]
    assert not [t for t in node.spec.taints or [] if t.key == "everynode.dev/shutting-down"]
    stop.set()
    assert created.count("node-2") == 1, created
    client.close()


def test_b11_a_daemon_pod_without_a_class_preempts_a_bare_pod_on_its_node_only(tmp_data_dir):
    """beyond.md §4: a daemon pod naming no priorityClassName gets `everynode-daemon` (made at
    start) and, on a node full of ordinary pods, preempts there and nowhere else. Both sides'
    events name the other."""
    from conftest import Server
    server = Server(tmp_data_dir, ["--store", "memory"]).start()
    agents = [Agent(server, name, ["--cpu", "1", "--node-labels", f"size={name}"]).start() for name in ("small", "other")]
    client = server.client()
    try:
        core = kubernetes.client.CoreV1Api(client)
        sched = kubernetes.client.SchedulingV1Api(client)
        klass = sched.read_priority_class("everynode-daemon")
        assert (klass.value, klass.preemption_policy, klass.global_default) == (100000000, "PreemptLowerPriority", False)
        wait_for("both nodes Ready", lambda: len([n for n in core.list_node().items if any(
            c.type == "Ready" and c.status == "True" for c in ((n.status and n.status.conditions) or []))]) == 2)
        for node in ("small", "other"):
            hog = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"hog-{node}"},
                   "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                            "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "while true; do sleep 1; done"],
                                            "resources": {"requests": {"cpu": "800m"}}}]}}
            apply(server, hog)
        wait_for("the hogs Running", lambda: all(ready(core.read_namespaced_pod(f"hog-{n}", "default")) for n in ("small", "other")))
        assert core.read_namespaced_pod("hog-small", "default").spec.priority == 0
        ds = loop_ds("collector", "while true; do sleep 1; done", nodeSelector={"size": "small"})
        ds["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "500m"}}
        apply(server, ds)
        daemon = wait_for("the daemon pod Running", lambda: [p for p in pods_of(core, "collector") if ready(p)], timeout=60)[0]
        assert (daemon.spec.node_name, daemon.spec.priority_class_name, daemon.spec.priority) == \
            ("small", "everynode-daemon", 100000000)
        names = {p.metadata.name for p in core.list_namespaced_pod("default").items}
        assert "hog-small" not in names and "hog-other" in names, names
        preempted = server.kubectl("get", "events", "--field-selector", "involvedObject.name=hog-small,reason=Preempted",
                                   "-o", "jsonpath={.items[*].message}").stdout
        assert f"(daemon pod default/{daemon.metadata.name} of DaemonSet collector)" in preempted, preempted
        preempting = server.kubectl("get", "events", "--field-selector",
                                    f"involvedObject.name={daemon.metadata.name},reason=Preempting",
                                    "-o", "jsonpath={.items[*].message}").stdout
        assert preempting == "Preempting on node small to make room: default/hog-small", preempting
    finally:
        client.close()
        for a in agents:
            a.stop()
        server.kill()


def test_b10_two_agents_down_and_unready_nodes_left_out_of_the_budget(nodes):
    """Issue 19's e2e: two of three agents killed (their nodes go NotReady, their pods not
    ready), maxUnavailable 1. Upstream, their unavailable pods use up the budget and the Ready
    node never updates; with `unready-nodes: exclude-from-budget` it does."""
    client = nodes.client()
    core = kubernetes.client.CoreV1Api(client)
    apps = kubernetes.client.AppsV1Api(client)
    ds = loop_ds("budget", "while true; do sleep 1; done", terminationGracePeriodSeconds=1)
    ds["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    apply(nodes, ds)
    wait_for("3 ready", lambda: ds_status(apps, "budget")[2] == 3)
    for name in ("node-2", "node-3"):
        nodes.agents[name].stop(signal.SIGKILL)
    wait_for("two pods not ready", lambda: ds_status(apps, "budget")[2] == 1, timeout=60)
    nodes.kubectl("set", "env", "ds/budget", "VERSION=2")

    def node_1_updated():
        pod = next(p for p in pods_of(core, "budget") if p.spec.node_name == "node-1")
        return any(e.name == "VERSION" for e in pod.spec.containers[0].env or [])
    stays("node-1 not updated (upstream)", lambda: not node_1_updated(), seconds=4, interval=0.5)
    nodes.kubectl("annotate", "ds/budget", "everynode.dev/unready-nodes=exclude-from-budget")
    wait_for("node-1 updated and Ready", lambda: node_1_updated() and any(
        ready(p) for p in pods_of(core, "budget") if p.spec.node_name == "node-1"), timeout=60)
    # The killed agents left their containers running: agents again, which the fixture stops
    # (with their pods) at the end.
    for name in ("node-2", "node-3"):
        nodes.agents[name] = Agent(nodes, name).start()
    wait_for("3 ready again", lambda: ds_status(apps, "budget")[2] == 3, timeout=60)
    client.close()
    # Containers the killed agents left behind (their pods deleted while they were down) are
    # not this test's subject: end every shim under those nodes' state.
    for name in ("node-2", "node-3"):
        nodes.agents[name].stop()
        state = str(nodes.data_dir / "agents" / name)
        for entry in pathlib.Path("/proc").iterdir():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if len(args) > 2 and args[1] == b"shim" and args[2].decode(errors="replace").startswith(state):
                os.kill(int(entry.name), signal.SIGKILL)
