"""`everynode backup` of a running cluster on the embedded store, `everynode restore` into a new
data directory, and `everynode migrate` of a stopped cluster to etcd: every object is back with
its uid, and the restored or migrated server serves them."""

import json
import os
import stat
import subprocess

import pytest

from conftest import Agent, Etcd, Server, everynode_binary, remove_tree, stop_process, wait_for

DAEMON = {
    "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "keeper"},
    "spec": {"selector": {"matchLabels": {"app": "keeper"}},
             "template": {"metadata": {"labels": {"app": "keeper"}},
                          "spec": {"terminationGracePeriodSeconds": 1,
                                   "containers": [{"name": "main", "image": "busybox:1.36",
                                                   "command": ["sh", "-c", "while true; do sleep 1; done"]}]}}}}


def everynode(*args):
    r = subprocess.run([everynode_binary(), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r


def uids(server):
    out = server.kubectl("get", "ds,pods,configmaps,secrets,nodes", "-A", "-o", "json").stdout
    return {(i["kind"], i["metadata"].get("namespace", ""), i["metadata"]["name"]): i["metadata"]["uid"]
            for i in json.loads(out)["items"]}


@pytest.fixture
def cluster(tmp_path):
    (tmp_path / "original").mkdir()
    server = Server(tmp_path / "original").start()
    agent = Agent(server, "node-1").start()
    try:
        server.kubectl("apply", "-f", "-", input=json.dumps(DAEMON))
        server.kubectl("create", "secret", "generic", "kept", "--from-literal=password=s3cret")
        wait_for("the keeper pod Running", lambda: "Running" in server.kubectl("get", "pods", "-l", "app=keeper", "--no-headers").stdout)
        yield server, tmp_path
    finally:
        stop_process(agent.proc)
        server.kill()
        remove_tree(tmp_path / "original")


def test_a_running_cluster_is_backed_up_and_restored_with_its_uids(cluster):
    server, tmp = cluster
    before = uids(server)
    backup = tmp / "cluster.backup"
    out = everynode("backup", "--data-dir", str(server.data_dir), str(backup)).stdout
    assert "backed up" in out
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600, "it holds every Secret"

    everynode("restore", str(backup), "--data-dir", str(tmp / "restored"))
    restored = Server(tmp / "restored").start()
    try:
        after = uids(restored)
        assert after == before
        secret = json.loads(restored.kubectl("get", "secret", "kept", "-o", "json").stdout)
        assert secret["data"]["password"] == "czNjcmV0"
        # The same credentials: the original admin token works against the restored server.
        assert restored.token == server.token
    finally:
        restored.kill()
    # A data directory that holds a cluster is not overwritten.
    r = subprocess.run([everynode_binary(), "restore", str(backup), "--data-dir", str(tmp / "restored")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "already holds a cluster" in r.stderr


def test_a_stopped_cluster_migrates_to_etcd_with_its_uids(cluster):
    server, tmp = cluster
    before = uids(server)
    server.kill()
    etcd = Etcd(tmp / "etcd").start()
    try:
        everynode("migrate", "--from-data-dir", str(server.data_dir), "--to-etcd", etcd.client_url)
        assert "/registry/daemonsets/default/keeper" in etcd.etcdctl("get", "--prefix", "/registry/daemonsets", "--keys-only").stdout
        on_etcd = Server(server.data_dir, ["--etcd-servers", etcd.client_url]).start()
        try:
            assert uids(on_etcd) == before
        finally:
            on_etcd.kill()
        # A second migration into the same etcd is refused.
        r = subprocess.run([everynode_binary(), "migrate", "--from-data-dir", str(server.data_dir), "--to-etcd", etcd.client_url],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "already holds a cluster" in r.stderr
    finally:
        etcd.stop()
        remove_tree(tmp / "etcd")
