"""Faults on a highly available cluster (etcd, two API servers, agents that know both).

- During a rolling update on three nodes, the API server holding the controllers' lease is
  killed with SIGKILL, then one of three etcd members, and both are started again: the rollout
  completes, every write acknowledged during the faults is there afterwards, no two Running pods
  of the DaemonSet ever share a node (no surge), and no pod the rollout did not replace restarts.
- The lease holder is stopped with SIGSTOP for longer than the lease: the other server takes the
  controllers over; when the first resumes, its controllers do not act on their stale view."""

import datetime
import json
import os
import signal
import threading
import time

from conftest import Agent, Etcd, EtcdCluster, remove_tree, server_on_etcd, stays, stop_process, wait_for

DAEMON = {
    "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "roller"},
    "spec": {"selector": {"matchLabels": {"app": "roller"}},
             "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
             # Each new pod must be ready 3 s before the next is replaced: the faults land
             # mid-rollout.
             "minReadySeconds": 3,
             "template": {"metadata": {"labels": {"app": "roller"}},
                          "spec": {"terminationGracePeriodSeconds": 1,
                                   "containers": [{"name": "main", "image": "busybox:1.36",
                                                   "command": ["sh", "-c", "while true; do sleep 1; done"]}]}}}}


def first_answer(servers, *args):
    """kubectl against whichever server answers."""
    last = None
    for s in servers:
        r = s.kubectl(*args, check=False)
        if r.returncode == 0:
            return r
        last = r
    return last


def test_a_rollout_survives_losing_the_lease_holder_and_an_etcd_member(tmp_path):
    etcd = EtcdCluster(tmp_path / "etcd").start()
    a = server_on_etcd(tmp_path / "a", etcd.client_urls)
    b = server_on_etcd(tmp_path / "b", etcd.client_urls, first=a)
    servers = [a, b]
    agents = [Agent(a, f"node-{i}", ["--server", f"{a.url},{b.url}"]).start() for i in (1, 2, 3)]
    stop = threading.Event()
    violations, acknowledged, failed_writes = [], [], []

    def pods():
        r = first_answer(servers, "get", "pods", "-l", "app=roller", "-o", "json", "--request-timeout=5s")
        return json.loads(r.stdout)["items"] if r.returncode == 0 else None

    def observe():
        while not stop.is_set():
            items = pods()
            if items is not None:
                by_node = {}
                for p in items:
                    if p["status"].get("phase") == "Running":
                        by_node.setdefault(p["spec"].get("nodeName"), []).append(p["metadata"]["name"])
                violations.extend(f"two Running pods on {n}: {names}" for n, names in by_node.items() if len(names) > 1)
            time.sleep(0.2)

    def write():
        i = 0
        while not stop.is_set():
            name = f"w-{i}"
            r = first_answer(servers, "create", "configmap", name, "--from-literal=n=1", "--request-timeout=5s")
            (acknowledged if r.returncode == 0 else failed_writes).append(name)
            i += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=observe), threading.Thread(target=write)]
    try:
        a.kubectl("apply", "-f", "-", input=json.dumps(DAEMON))
        wait_for("three roller pods Running", lambda: (lambda p: p is not None and len(p) == 3 and all(
            x["status"].get("phase") == "Running" for x in p))(pods()))
        for t in threads:
            t.start()
        a.kubectl("set", "image", "ds/roller", "main=busybox:1.37")

        holder = a.kubectl("get", "lease", "-n", "kube-system", "everynode-controllers",
                           "-o", "jsonpath={.spec.holderIdentity}").stdout
        leader = next(s for s in servers if f"identity={holder}" in (s.data_dir / "server.log").read_text())
        other = b if leader is a else a
        port = leader.url.rsplit(":", 1)[1]
        leader.kill()
        ds = json.loads(other.kubectl("get", "ds", "roller", "-o", "json").stdout)
        assert ds["status"].get("updatedNumberScheduled", 0) < 3 or ds["status"].get("numberAvailable", 0) < 3, \
            "the leader is killed mid-rollout"

        def holder_now():
            r = other.kubectl("get", "lease", "-n", "kube-system", "everynode-controllers",
                              "-o", "jsonpath={.spec.holderIdentity}", check=False)
            return r.stdout if r.returncode == 0 else None

        wait_for("the other server to take the controllers' lease", lambda: holder_now() not in (None, holder), timeout=60)
        etcd.kill_member(0)
        time.sleep(3)
        etcd.start_member(0)
        leader.start(listen=f"127.0.0.1:{port}")

        def rolled_out():
            ds = json.loads(first_answer(servers, "get", "ds", "roller", "-o", "json").stdout)
            st = ds.get("status", {})
            items = pods() or []
            return (st.get("updatedNumberScheduled") == 3 and st.get("numberAvailable") == 3
                    and len(items) == 3
                    and all(p["spec"]["containers"][0]["image"] == "busybox:1.37"
                            and p["status"].get("phase") == "Running" for p in items))

        wait_for("the rollout to complete across the faults", rolled_out, timeout=180)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert "became the leader" in (other.data_dir / "server.log").read_text()
        assert acknowledged, "the writer made writes"
        stored = json.loads(other.kubectl("get", "configmaps", "-o", "json").stdout)["items"]
        names = {c["metadata"]["name"] for c in stored}
        lost = [n for n in acknowledged if n not in names]
        assert lost == [], f"acknowledged writes lost: {lost}"
        assert violations == [], violations[:5]
        for p in pods():
            assert p["status"]["containerStatuses"][0]["restartCount"] == 0, p["metadata"]["name"]
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(timeout=60)
        for agent in agents:
            stop_process(agent.proc)
        for s in servers:
            s.kill()
        etcd.stop()
        remove_tree(tmp_path)


def test_a_leader_paused_past_its_lease_does_not_act_on_its_stale_view(tmp_path):
    etcd = Etcd(tmp_path / "etcd").start()
    a = server_on_etcd(tmp_path / "a", etcd.client_url)
    # The first server leads (the only candidate at first); the agent talks to the second, so
    # what is tested is the paused leader's controllers, not the agent's way around it.
    wait_for("the first server to lead", lambda: "became the leader" in (tmp_path / "a" / "server.log").read_text())
    b = server_on_etcd(tmp_path / "b", etcd.client_url, first=a)
    agent = Agent(a, "node-1", ["--server", f"{b.url},{a.url}"]).start()
    paused = None
    try:
        b.kubectl("apply", "-f", "-", input=json.dumps(dict(DAEMON, spec=dict(DAEMON["spec"], minReadySeconds=0))))
        wait_for("the roller pod Running", lambda: "Running" in b.kubectl("get", "pods", "-l", "app=roller", "--no-headers").stdout)
        holder = b.kubectl("get", "lease", "-n", "kube-system", "everynode-controllers",
                           "-o", "jsonpath={.spec.holderIdentity}").stdout
        leader, other = a, b
        assert f"identity={holder}" in (a.data_dir / "server.log").read_text()
        paused = leader
        os.kill(leader.proc.pid, signal.SIGSTOP)
        wait_for("the other server to take the lease", lambda: other.kubectl(
            "get", "lease", "-n", "kube-system", "everynode-controllers", "-o", "jsonpath={.spec.holderIdentity}",
            check=False).stdout not in ("", holder), timeout=60)
        # While the leader sleeps, the DaemonSet stops selecting the node: the new leader removes
        # its pod. The paused one still sees the node selected and no pod.
        other.kubectl("patch", "ds", "roller", "--type=merge", "-p",
                      json.dumps({"spec": {"template": {"spec": {"nodeSelector": {"nowhere": "true"}}}}}))
        wait_for("the pod removed by the new leader", lambda: other.kubectl(
            "get", "pods", "-l", "app=roller", "--no-headers", check=False).stdout.strip() == "")
        resumed_at = datetime.datetime.now(datetime.timezone.utc)
        os.kill(leader.proc.pid, signal.SIGCONT)
        paused = None
        stays("no pod recreated from the stale view", lambda: other.kubectl(
            "get", "pods", "-l", "app=roller", "--no-headers").stdout.strip() == "", seconds=6, interval=0.3)
        wait_for("the resumed server to give the controllers up",
                 lambda: "lost the leader lease" in (leader.data_dir / "server.log").read_text(), timeout=30)
        # Nothing the resumed server's controllers wrote after waking reached the API.
        for line in (leader.data_dir / "audit.log").read_text().splitlines():
            event = json.loads(line)
            when = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
            user = event.get("user", {}).get("username", "")
            if when > resumed_at and event.get("verb") in ("create", "update", "patch", "delete") \
                    and user.startswith("system:serviceaccount:kube-system:") and "lease" not in json.dumps(event.get("objectRef", {})):
                raise AssertionError(f"a stale controller wrote after resuming: {line}")
    finally:
        if paused is not None:
            os.kill(paused.proc.pid, signal.SIGCONT)
        stop_process(agent.proc)
        a.kill()
        b.kill()
        etcd.stop()
        remove_tree(tmp_path)


def test_an_agent_whose_server_hangs_moves_to_the_other(tmp_path):
    """SIGSTOP, not a refused connection: requests get no answer. The agent gives up on the
    silent server (20 s for an answer, 75 s of silence on a watch) and carries on through the
    other; its pod keeps running and a new DaemonSet reaches it."""
    etcd = Etcd(tmp_path / "etcd").start()
    a = server_on_etcd(tmp_path / "a", etcd.client_url)
    b = server_on_etcd(tmp_path / "b", etcd.client_url, first=a)
    agent = Agent(a, "node-1", ["--server", f"{a.url},{b.url}"]).start()
    paused = None
    try:
        a.kubectl("apply", "-f", "-", input=json.dumps(DAEMON))
        wait_for("the roller pod Running", lambda: "Running" in a.kubectl("get", "pods", "-l", "app=roller", "--no-headers").stdout)
        before = json.loads(a.kubectl("get", "pods", "-l", "app=roller", "-o", "json").stdout)["items"][0]
        os.kill(a.proc.pid, signal.SIGSTOP)
        paused = a
        other = json.loads(json.dumps(DAEMON).replace("roller", "later"))
        b.kubectl("apply", "-f", "-", input=json.dumps(other))
        wait_for("the new DaemonSet's pod Running through the other server", lambda: "Running" in b.kubectl(
            "get", "pods", "-l", "app=later", "--no-headers", check=False).stdout, timeout=240)
        after = json.loads(b.kubectl("get", "pods", "-l", "app=roller", "-o", "json").stdout)["items"][0]
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["status"]["containerStatuses"][0]["restartCount"] == 0
        node = json.loads(b.kubectl("get", "node", "node-1", "-o", "json").stdout)
        assert next(c for c in node["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
    finally:
        if paused is not None:
            os.kill(paused.proc.pid, signal.SIGCONT)
        stop_process(agent.proc)
        a.kill()
        b.kill()
        etcd.stop()
        remove_tree(tmp_path)
