"""Leader election: of two `everynode controllers` processes against one API server, only the
lease holder runs the controllers; when it is killed the other takes over."""

import signal
import subprocess
import time

import kubernetes

from conftest import API_ONLY, Server, daemonset, everynode_binary, stays, wait_for


def node(name):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


def test_one_leader_runs_controllers_and_a_standby_takes_over(tmp_data_dir):
    server = Server(tmp_data_dir, ["--store", "memory", *API_ONLY]).start()
    procs = {}
    for identity in ("c1", "c2"):
        log = open(server.data_dir / f"controllers-{identity}.log", "ab")
        procs[identity] = subprocess.Popen(
            [everynode_binary(), "controllers", "--kubeconfig", server.kubeconfig, "--identity", identity,
             "--no-node-lifecycle-controller", "--no-pod-gc",
             "--leader-elect-lease-duration", "3", "--leader-elect-renew-deadline", "2", "--leader-elect-retry-period", "1"],
            stdout=subprocess.DEVNULL, stderr=log)
    client = server.client()
    try:
        coord = kubernetes.client.CoordinationV1Api(client)
        core = kubernetes.client.CoreV1Api(client)
        apps = kubernetes.client.AppsV1Api(client)
        holder = wait_for("a leader", lambda: coord.read_namespaced_lease("everynode-controllers", "kube-system").spec.holder_identity)
        assert holder in procs
        core.create_node(node("n1"))
        apps.create_namespaced_daemon_set("default", daemonset())
        wait_for("a daemon pod on n1", lambda: [p for p in core.list_namespaced_pod("default").items if p.spec.node_name == "n1"])
        # A second, wrongly active controller would show itself by a second pod.
        stays("exactly one controller acting", lambda: len(core.list_namespaced_pod("default").items) == 1, seconds=2)
        procs[holder].send_signal(signal.SIGKILL)
        procs[holder].wait()
        standby = next(i for i in procs if i != holder)
        wait_for("the standby leads", lambda: coord.read_namespaced_lease("everynode-controllers", "kube-system").spec.holder_identity == standby)
        lease = coord.read_namespaced_lease("everynode-controllers", "kube-system")
        assert lease.spec.lease_transitions >= 1
        core.create_node(node("n2"))
        wait_for("a daemon pod on n2", lambda: [p for p in core.list_namespaced_pod("default").items if p.spec.node_name == "n2"])
        pods = core.list_namespaced_pod("default").items
        assert sorted(p.spec.node_name for p in pods) == ["n1", "n2"]
    finally:
        client.close()
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)
        server.kill()
