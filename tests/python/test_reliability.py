"""Issue 15: one client's abuse must not take the server from everyone else. Each test is a
regression test for a defect found by probing a release server as an attacker would."""

import os
import pathlib
import resource
import shutil
import socket
import tempfile
import urllib.parse

from conftest import API_ONLY, Server


def open_file_soft_limit(pid):
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")


def test_idle_connections_do_not_lock_out_other_clients(tmp_data_dir):
    """1,100 connections that send nothing used to exhaust the server's 1024 descriptors and block
    `accept`: the server raises its soft limit to the hard one, and drops a client that does not
    finish its TLS handshake."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    server = Server(tmp_data_dir, API_ONLY).start()
    idle = []
    try:
        if hard > 1024:
            assert open_file_soft_limit(server.proc.pid) == hard
        url = urllib.parse.urlparse(server.url)
        address = (url.hostname, url.port)
        for _ in range(1100):
            idle.append(socket.create_connection(address, timeout=30))
        # Everyone else is still served.
        assert server.kubectl("get", "namespaces", "-o", "name").stdout.count("namespace/") >= 4
        # A client that never starts its TLS handshake is dropped (10 s), not kept forever.
        silent = idle[0]
        silent.settimeout(60)
        assert silent.recv(1) == b"", "the server closes a silent connection"
    finally:
        for s in idle:
            s.close()
        server.kill()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_secrets_and_state_are_private_to_the_agent(tmp_data_dir):
    """The store, keys, agent state and pods' volumes used to be 0644/0755: a pod running as
    uid 1000 read another pod's Secret from the host. Now everything the server and the agent
    write is 0600/0700; a pod still reads its own Secret through its mount."""
    import kubernetes
    import stat
    import subprocess

    from conftest import Agent, wait_for

    server = Server(tmp_data_dir, API_ONLY).start()
    agent = Agent(server, "node-1").start()
    client = server.client()
    try:
        core = kubernetes.client.CoreV1Api(client)
        wait_for("node-1 Ready", lambda: any(
            c.type == "Ready" and c.status == "True"
            for n in core.list_node().items for c in (n.status.conditions or [])))
        core.create_namespaced_secret("default", {"metadata": {"name": "db"}, "stringData": {"password": "hunter2"}})
        # Under /tmp (1777): pytest's own temp dirs are 0700, which uid 1000 could not traverse.
        mount = pathlib.Path(tempfile.gettempdir()) / f"everynode-secret-{os.getpid()}"
        core.create_namespaced_pod("default", {
            "metadata": {"name": "reader"},
            "spec": {"nodeName": "node-1", "securityContext": {"runAsUser": 1000},
                     "volumes": [{"name": "db", "secret": {"secretName": "db"}}],
                     "containers": [{"name": "c", "image": "busybox",
                                     "command": ["sh", "-c", f"cat {mount}/password; echo; sleep 3600"],
                                     "volumeMounts": [{"name": "db", "mountPath": str(mount)}]}]}})
        logs = wait_for("the pod reads its own secret as uid 1000",
                        lambda: "hunter2" in core.read_namespaced_pod_log("reader", "default")
                        and core.read_namespaced_pod_log("reader", "default"))
        assert "hunter2" in logs
        uid = core.read_namespaced_pod("reader", "default").metadata.uid
        secret_files = list((agent.state_dir / "pods" / uid).rglob("password"))
        assert secret_files, "the secret volume is on the host"
        for f in secret_files:
            read = subprocess.run(["cat", str(f)], user=65534, capture_output=True, text=True)
            assert read.returncode != 0 and "hunter2" not in read.stdout, f"uid 65534 read {f}"
        launch = list((agent.state_dir).rglob("launch.json"))
        assert launch and all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in launch)
        for directory in (server.data_dir, agent.state_dir):
            assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
        written_by_the_test = {"server.log", "agent-node-1.log"}
        for path in server.data_dir.iterdir():
            if path.is_file() and path.name not in written_by_the_test:
                mode = stat.S_IMODE(os.stat(path).st_mode)
                assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
    finally:
        client.close()
        agent.stop()
        server.kill()
        shutil.rmtree(pathlib.Path(tempfile.gettempdir()) / f"everynode-secret-{os.getpid()}", ignore_errors=True)
