"""The API server on a real etcd (`--etcd-servers`): objects under upstream's keys, where an
operator's `etcdctl get --prefix /registry/...` finds them; DaemonSets run and roll out; a
server killed with kill -9 and started again finds everything in etcd, its pods untouched; and
with two servers on one etcd, an agent given both fails over when one is killed."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import (Agent, Etcd, EtcdCluster, Server, everynode_binary, free_tcp_port, kubectl_binary, remove_tree,
                      required_tool, server_on_etcd, stop_process, wait_for)

DAEMON = {
    "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "collector"},
    "spec": {"selector": {"matchLabels": {"app": "collector"}},
             "template": {"metadata": {"labels": {"app": "collector"}},
                          "spec": {"terminationGracePeriodSeconds": 1,
                                   "containers": [{"name": "main", "image": "busybox:1.36",
                                                   "command": ["sh", "-c", "while true; do sleep 1; done"]}]}}}}


@pytest.fixture
def on_etcd(tmp_path_factory):
    data = tmp_path_factory.mktemp("etcd")
    etcd = Etcd(data / "etcd").start()
    server = server_on_etcd(data / "server", etcd.client_url)
    agents = [Agent(server, f"node-{i}").start() for i in (1, 2)]
    try:
        yield etcd, server
    finally:
        for a in agents:
            stop_process(a.proc)
        server.kill()
        etcd.stop()
        remove_tree(data)


def pods(server):
    out = server.kubectl("get", "pods", "-l", "app=collector", "-o", "json").stdout
    return json.loads(out)["items"]


def running(server, image=None):
    items = pods(server)
    return len(items) == 2 and all(
        p["status"].get("phase") == "Running" and (image is None or p["spec"]["containers"][0]["image"] == image)
        for p in items)


def test_objects_live_in_etcd_under_upstreams_keys_and_survive_a_server_kill(on_etcd):
    etcd, server = on_etcd
    server.kubectl("apply", "-f", "-", input=json.dumps(DAEMON))
    wait_for("two collector pods Running", lambda: running(server))

    keys = etcd.etcdctl("get", "--prefix", "/registry/", "--keys-only").stdout.split()
    assert "/registry/daemonsets/default/collector" in keys, keys
    assert "/registry/minions/node-1" in keys and "/registry/minions/node-2" in keys
    assert any(k.startswith("/registry/pods/default/collector-") for k in keys)
    assert any(k.startswith("/registry/leases/kube-node-lease/") for k in keys)
    stored = json.loads(etcd.etcdctl("get", "/registry/daemonsets/default/collector", "--print-value-only").stdout)
    assert stored["metadata"]["name"] == "collector" and stored["kind"] == "DaemonSet"

    # resourceVersion is etcd's mod revision of the key.
    ds = json.loads(server.kubectl("get", "ds", "collector", "-o", "json").stdout)
    revision = json.loads(etcd.etcdctl("get", "/registry/daemonsets/default/collector", "-w", "json").stdout)["kvs"][0]["mod_revision"]
    assert ds["metadata"]["resourceVersion"] == str(revision)
    # A write against an old resourceVersion conflicts, as upstream's.
    stale = dict(ds, metadata=dict(ds["metadata"], resourceVersion="2"))
    r = server.kubectl("replace", "-f", "-", input=json.dumps(stale), check=False)
    assert r.returncode != 0 and "the object has been modified" in r.stderr, r.stderr

    before = {p["metadata"]["uid"] for p in pods(server)}
    port = server.url.rsplit(":", 1)[1]
    server.kill()
    # On the same address: the agents keep the one they were given.
    server.start(listen=f"127.0.0.1:{port}")
    assert {p["metadata"]["uid"] for p in pods(server)} == before, "the same pods, read back from etcd"
    # The restarted server's controllers act on what etcd holds: a rollout completes.
    server.kubectl("set", "image", "ds/collector", "main=busybox:1.37")
    wait_for("the rollout to busybox:1.37", lambda: running(server, "busybox:1.37"), timeout=120)
    r = server.kubectl("rollout", "status", "ds/collector", "--timeout=60s")
    assert "successfully rolled out" in r.stdout


def test_an_agent_fails_over_to_the_other_server_on_the_same_etcd(tmp_path_factory):
    data = tmp_path_factory.mktemp("ha")
    # Three members, as a production etcd.
    etcd = EtcdCluster(data / "etcd").start()
    first = server_on_etcd(data / "a", etcd.client_urls)
    # The second server joins with a fresh data directory and the first one's cluster secret:
    # the CA, service-account key and admin token come from etcd, sealed with it.
    second = server_on_etcd(data / "b", etcd.client_urls, first=first)
    assert second.token == first.token
    assert (second.data_dir / "pki" / "ca.crt").read_text() == (first.data_dir / "pki" / "ca.crt").read_text()
    assert "cluster-credentials" in etcd.etcdctl("get", "--prefix", "/everynode/", "--keys-only").stdout
    assert first.token not in etcd.etcdctl("get", "/everynode/cluster-credentials", "--print-value-only").stdout, "sealed"
    # A wrong secret does not open them, and the server says so.
    (data / "wrong-secret").write_text("not the secret")
    (data / "c").mkdir()
    wrong = Server(data / "c", ["--etcd-servers", etcd.client_urls, "--cluster-secret-file", str(data / "wrong-secret")])
    with pytest.raises(RuntimeError):
        wrong.start()
    assert "do not open with this cluster secret" in (data / "c" / "server.log").read_text()
    agent = Agent(first, "node-1", ["--server", f"{first.url},{second.url}"]).start()
    try:
        first.kubectl("apply", "-f", "-", input=json.dumps(DAEMON))
        wait_for("the collector pod Running", lambda: len(pods(first)) == 1 and pods(first)[0]["status"].get("phase") == "Running")
        # Both servers serve the same cluster: what is written through one is read, and
        # watched, through the other (the official Python client on the second server).
        assert [p["metadata"]["uid"] for p in pods(second)] == [pods(first)[0]["metadata"]["uid"]]
        import kubernetes
        client = second.client()
        try:
            core = kubernetes.client.CoreV1Api(client)
            start = core.list_namespaced_config_map("default").metadata.resource_version
            first.kubectl("create", "configmap", "through-a", "--from-literal=k=v")
            seen = []
            watch = kubernetes.watch.Watch()
            for event in watch.stream(core.list_namespaced_config_map, "default", resource_version=start,
                                      timeout_seconds=30):
                seen.append(event["object"].metadata.name)
                if event["type"] == "ADDED" and event["object"].metadata.name == "through-a":
                    watch.stop()
            assert "through-a" in seen, seen
            assert core.read_namespaced_config_map("through-a", "default").data == {"k": "v"}
        finally:
            client.close()
        before = pods(first)[0]

        first.kill()
        # The second server's controllers take the lease; the agent's watches move to it.
        other = json.loads(json.dumps(DAEMON).replace("collector", "shipper"))
        second.kubectl("apply", "-f", "-", input=json.dumps(other))

        def shipper_running():
            items = json.loads(second.kubectl("get", "pods", "-l", "app=shipper", "-o", "json").stdout)["items"]
            return len(items) == 1 and items[0]["status"].get("phase") == "Running"

        wait_for("a new DaemonSet's pod Running through the second server", shipper_running, timeout=120)
        after = pods(second)[0]
        assert after["metadata"]["uid"] == before["metadata"]["uid"], "the same pod"
        assert after["status"]["containerStatuses"][0]["restartCount"] == 0, "not restarted"
        log = (first.data_dir / "agent-node-1.log").read_text()
        assert "failed over to another API server" in log, log[-2000:]
        node = json.loads(second.kubectl("get", "node", "node-1", "-o", "json").stdout)
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", ready
    finally:
        stop_process(agent.proc)
        first.kill()
        second.kill()
        etcd.stop()
        remove_tree(data)


def test_up_ha_runs_etcd_two_servers_and_nodes_that_survive_a_member_and_a_server(tmp_path):
    """`everynode up --ha`: a 3-member etcd, two API servers with a kubeconfig context each,
    and agents given both. Losing an etcd member and then the second server leaves the
    cluster working; stopping `up` stops every child."""
    required_tool("etcd", "ETCD", "scripts/test.sh installs etcd-server")
    data = tmp_path / "ha"
    def ports_free(base):
        import socket
        for p in [base, base + 1, *range(base + 10, base + 13), *range(base + 20, base + 23)]:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", p))
                except OSError:
                    return False
        return True

    port = free_tcp_port()
    while port + 23 > 65535 or not ports_free(port):
        port = free_tcp_port()
    log_path = tmp_path / "up.log"
    log = open(log_path, "wb")
    up = subprocess.Popen([everynode_binary(), "up", "--ha", "--nodes", "2", "--data-dir", str(data),
                           "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    env = dict(os.environ, KUBECONFIG=str(data / "kubeconfig"), HOME=str(tmp_path))

    def kubectl(*args, check=True, input=None):
        r = subprocess.run([kubectl_binary(), *args], capture_output=True, text=True, env=env, input=input, timeout=60)
        assert not check or r.returncode == 0, r.stderr
        return r

    def ready_nodes(context):
        r = kubectl("--context", context, "get", "nodes", "--no-headers", check=False)
        return r.returncode == 0 and r.stdout.count(" Ready ") == 2

    try:
        wait_for("everynode up --ha", lambda: "everynode is up" in log_path.read_text() or up.poll() is not None, timeout=120)
        second_log = data / "server-2" / "server.log"
        assert up.poll() is None, log_path.read_text() + (second_log.read_text() if second_log.exists() else "")
        text = log_path.read_text()
        assert f"API servers https://127.0.0.1:{port} and https://127.0.0.1:{port + 1}" in text, text
        contexts = kubectl("config", "get-contexts", "-o", "name").stdout.split()
        assert contexts == ["everynode-1", "everynode-2"]
        wait_for("both nodes Ready through both servers", lambda: ready_nodes("everynode-1") and ready_nodes("everynode-2"))

        etcd_pids = [int(p) for p in re.findall(r"etcd member etcd-\d pid (\d+)", text)]
        second_pid = int(re.search(r"everynode server 2 pid (\d+)", text).group(1))
        assert len(etcd_pids) == 3
        os.kill(etcd_pids[0], signal.SIGKILL)
        kubectl("apply", "-f", "-", input=json.dumps(DAEMON))

        def running(context):
            r = kubectl("--context", context, "get", "pods", "-l", "app=collector", "-o", "json", check=False)
            items = json.loads(r.stdout)["items"] if r.returncode == 0 else []
            return len(items) == 2 and all(p["status"].get("phase") == "Running" for p in items)

        wait_for("the DaemonSet Running with one etcd member down", lambda: running("everynode-2"))
        os.kill(second_pid, signal.SIGKILL)
        kubectl("create", "configmap", "after", "--from-literal=a=b")
        assert running("everynode-1")
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=120)
        log.close()
    # Every child is gone with it: the etcd members, the second server, the agents.
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", str(data)], capture_output=True, text=True).stdout.split()
    assert left == [], left
    remove_tree(data)


def test_up_ha_without_etcd_names_the_package(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    r = subprocess.run([everynode_binary(), "up", "--ha", "--data-dir", str(tmp_path / "d")], capture_output=True,
                       text=True, env=dict(os.environ, PATH=str(bin_dir)), timeout=60)
    assert r.returncode != 0
    assert "install Debian's etcd-server" in r.stderr, r.stderr
