"""Issue 15: one client's abuse must not take the server from everyone else. Each test is a
regression test for a defect found by probing a release server as an attacker would."""

import hashlib
import json
import os
import pathlib
import resource
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request

import kubernetes
import pytest

from conftest import API_ONLY, API_ONLY_WITH_ROOT_CA, Agent, Server, unmount_under, wait_for


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

    server = Server(tmp_data_dir, API_ONLY_WITH_ROOT_CA).start()
    agent = Agent(server, "node-1").start()
    client = server.client()
    try:
        core = kubernetes.client.CoreV1Api(client)
        wait_for("node-1 Ready", lambda: any(
            c.type == "Ready" and c.status == "True"
            for n in core.list_node().items for c in ((n.status and n.status.conditions) or [])))
        core.create_namespaced_secret("default", {"metadata": {"name": "db"}, "stringData": {"password": "hunter2"}})
        # Under /tmp (1777): pytest's own temp dirs are 0700, which uid 1000 could not traverse.
        mount = pathlib.Path(tempfile.gettempdir()) / f"everynode-secret-{os.getpid()}"
        core.create_namespaced_pod("default", {
            "metadata": {"name": "reader"},
            "spec": {"nodeName": "node-1", "securityContext": {"runAsUser": 1000},
                     "volumes": [{"name": "db", "secret": {"secretName": "db"}}],
                     "containers": [{"name": "c", "image": "busybox",
                                     "command": ["sh", "-c", f"cat {mount}/password; echo; echo env=$DB_PASSWORD; sleep 3600"],
                                     "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}],
                                     "volumeMounts": [{"name": "db", "mountPath": str(mount)}]}]}})
        logs = wait_for("the pod reads its own secret as uid 1000, from its volume and its environment",
                        lambda: "env=hunter2" in core.read_namespaced_pod_log("reader", "default")
                        and core.read_namespaced_pod_log("reader", "default"))
        assert logs.startswith("hunter2\n"), logs
        uid = core.read_namespaced_pod("reader", "default").metadata.uid
        secret_files = list((agent.state_dir / "pods" / uid).rglob("password"))
        assert secret_files, "the secret volume is on the host"
        for f in secret_files:
            read = subprocess.run(["cat", str(f)], user=65534, capture_output=True, text=True)
            assert read.returncode != 0 and "hunter2" not in read.stdout, f"uid 65534 read {f}"
        # In memory, as kubelet keeps Secret volumes: a tmpfs, gone with the pod.
        pod_dir = str(agent.state_dir / "pods" / uid)

        def mounts_under_pod():
            return [line.split()[1:3] for line in open("/proc/self/mounts") if line.split()[1].startswith(pod_dir)]
        # The Secret's volume and the kube-api-access token's.
        kinds = sorted((m.split("/volumes/")[1].split("/")[0], fs) for m, fs in mounts_under_pod())
        assert kinds == [("kubernetes.io~projected", "tmpfs"), ("kubernetes.io~secret", "tmpfs")], kinds
        launch = list((agent.state_dir).rglob("launch.json"))
        assert launch and all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in launch)
        # The environment is handed to the container, not written down: no Secret value in
        # launch.json, whoever could read it.
        for p in launch:
            assert "hunter2" not in p.read_text(), f"{p} holds the Secret's value"
        core.delete_namespaced_pod("reader", "default", grace_period_seconds=0)
        wait_for("the pod's tmpfs unmounted once it is gone", lambda: mounts_under_pod() == [])
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


def _agent_processes(state_dir):
    """Pids of `everynode agent` processes serving `state_dir`, zombies excluded."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().split(") ")[-1].split()[0]
        except OSError:
            continue
        if b"agent" in args and str(state_dir).encode() in args and state != "Z":
            found.append(int(entry.name))
    return found


def test_up_supervises_its_agents_and_never_runs_two_for_a_node(tmp_data_dir):
    """`everynode up` used to neither restart nor reap a dead agent, to orphan its agents when
    killed, and to start a second set beside them when started again (one node ran up to 5 copies
    of a DaemonSet's pod). Now: a killed agent is restarted and reaped, agents die with `up`, a new
    `up` stops leftovers, the pods are adopted rather than restarted, and agent logs are kept."""
    import signal
    import subprocess
    import time

    import yaml

    from conftest import everynode_binary, kubectl_binary, wait_for

    data = pathlib.Path(tmp_data_dir) / "cluster"
    state = data / "agents" / "node-1"
    ups = []

    def start_up():
        up = subprocess.Popen([everynode_binary(), "up", "--nodes", "1", "--listen", "127.0.0.1:0",
                               "--data-dir", str(data)], stdout=subprocess.PIPE,
                              stderr=open(pathlib.Path(tmp_data_dir) / "up.log", "ab"), text=True)
        ups.append(up)
        lines = [up.stdout.readline(), up.stdout.readline()]
        assert "listening on" in lines[0], lines
        assert lines[1].startswith("everynode agent node-1 pid "), lines
        return up, int(lines[1].split()[-1])

    def kubectl(*args, input=None):
        env = dict(os.environ, KUBECONFIG=str(data / "kubeconfig"), HOME=str(tmp_data_dir))
        r = subprocess.run([kubectl_binary(), *args], capture_output=True, text=True, env=env, input=input, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def pod():
        items = json.loads(kubectl("get", "pods", "-l", "app=looper", "-o", "json"))["items"]
        return items[0] if len(items) == 1 else None

    def running_pod():
        p = pod()
        statuses = (p or {}).get("status", {}).get("containerStatuses", [])
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in (p or {}).get("status", {}).get("conditions", []))
        return p if statuses and "running" in statuses[0]["state"] and ready else None

    try:
        up, first_agent = start_up()
        wait_for("node-1 Ready", lambda: " Ready " in kubectl("get", "nodes"))
        kubectl("apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "looper"},
            "spec": {"selector": {"matchLabels": {"app": "looper"}},
                     "template": {"metadata": {"labels": {"app": "looper"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox",
                                                           "command": ["sh", "-c", "while true; do sleep 1; done"]}]}}}}))
        before = wait_for("the pod running", running_pod)
        container = before["status"]["containerStatuses"][0]["containerID"]

        # A killed agent is restarted (a new pid) and reaped (no zombie left).
        os.kill(first_agent, signal.SIGKILL)
        line = up.stdout.readline()
        assert line.startswith("everynode agent node-1 pid "), line
        second_agent = int(line.split()[-1])
        assert second_agent != first_agent
        wait_for("the killed agent reaped", lambda: first_agent not in _agent_processes(state)
                 and not pathlib.Path(f"/proc/{first_agent}").exists())
        after = wait_for("the pod running again", running_pod)
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["status"]["containerStatuses"][0]["containerID"] == container, "adopted, not restarted"
        assert after["status"]["containerStatuses"][0]["restartCount"] == 0

        # kill -9 of `up`: its agent dies with it; the containers live on.
        up.kill()
        up.wait()
        wait_for("the agent gone with up", lambda: not _agent_processes(state))
        # An agent left by an earlier `up` that could not take it down (an older version): a
        # new `up` finds it by its pid file and stops it before starting its own.
        orphan = subprocess.Popen([everynode_binary(), "agent", "--kubeconfig", str(data / "kubeconfig"),
                                   "--name", "node-1", "--state-dir", str(state), "--listen", "127.0.0.1:0"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (data / "agents" / "node-1.pid").write_text(f"{orphan.pid}\n")
        wait_for("the orphan running", lambda: _agent_processes(state) == [orphan.pid])
        # A new `up` runs exactly one agent for node-1, which adopts the pod's container.
        up, third_agent = start_up()
        orphan.wait(timeout=30)
        assert orphan.returncode == -signal.SIGKILL, "stopped by SIGKILL, which leaves its pods running"
        wait_for("one agent", lambda: _agent_processes(state) == [third_agent])
        again = wait_for("the pod running under the new up", running_pod)
        assert again["metadata"]["uid"] == before["metadata"]["uid"]
        assert again["status"]["containerStatuses"][0]["containerID"] == container
        assert again["status"]["containerStatuses"][0]["restartCount"] == 0
        log = (data / "agents" / "node-1.log").read_text()
        assert log.count("--- everynode up started agent node-1") == 3, "each start appends"
    finally:
        for u in ups:
            if u.poll() is None:
                u.send_signal(signal.SIGTERM)
                try:
                    u.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    u.kill()
        for pid in _agent_processes(state):
            os.kill(pid, signal.SIGKILL)


def test_an_agent_that_lost_its_state_does_not_run_a_second_copy(tmp_data_dir):
    """An agent whose state directory was lost used to start a second copy of each container
    while the first ran on forever; now the containers it can no longer adopt are stopped."""
    import kubernetes
    import shutil as _shutil
    import signal

    from conftest import Agent, stays, wait_for

    server = Server(tmp_data_dir, API_ONLY_WITH_ROOT_CA).start()
    agent = Agent(server, "node-1").start()
    client = server.client()
    marker = f"copy-marker-{os.getpid()}"

    def copies():
        shells = [pid for pid, args in _commands() if any(marker in a for a in args) and args[:1] == ["sh"]]
        # The loop forks for each `sleep`; for an instant the child is a copy of the shell
        # before it becomes `sleep`. A container is a shell whose parent is not one of them.
        return [pid for pid in shells if _parent(pid) not in shells]

    try:
        core = kubernetes.client.CoreV1Api(client)
        wait_for("node-1 Ready", lambda: any(
            c.type == "Ready" and c.status == "True"
            for n in core.list_node().items for c in ((n.status and n.status.conditions) or [])))
        core.create_namespaced_pod("default", {
            "metadata": {"name": "looper"},
            "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox",
                                     "command": ["sh", "-c", f"while true; do echo {marker}; sleep 1; done"]}]}})
        def container():
            statuses = core.read_namespaced_pod("looper", "default").status.container_statuses or []
            return statuses[0] if statuses and statuses[0].state.running else None

        first = wait_for("the pod running", container).container_id
        wait_for("one copy running", lambda: len(copies()) == 1)
        original = copies()
        agent.stop(signal.SIGKILL)
        # Lost as a reboot loses it: the pods' tmpfs volumes go too.
        unmount_under(agent.state_dir)
        _shutil.rmtree(agent.state_dir)
        agent.start()
        # Its state gone, the agent cannot adopt the container: it starts a new one...
        wait_for("a new container", lambda: (container() or first) != first and container())
        # ...and stops the one it could not adopt: never two copies at once, and the new copy
        # is started once, not replaced again (it once was, shortly after it started).
        def new_copy_alone():
            now = copies()
            assert len(now) <= 1, f"two copies at once: {now}"
            return len(now) == 1 and now != original
        wait_for("exactly one new copy", new_copy_alone)
        new_copy = copies()
        seen = set()

        def one_and_the_same():
            now = copies()
            seen.update(now)
            return now == new_copy
        stays("the one new copy, never two", one_and_the_same, seconds=4, interval=0.05)
        assert seen == set(new_copy)
        assert core.read_namespaced_pod("looper", "default").status.container_statuses[0].restart_count == 0
    finally:
        client.close()
        agent.stop()
        server.kill()


def _parent(pid):
    """The parent of `pid` (field 4 of /proc/PID/stat, after the command in parentheses)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _commands():
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
            except OSError:
                continue
            yield int(entry.name), args


class RecordingTlsListener(threading.Thread):
    """A TLS listener of an attacker's: answers every request with 200 and records what came."""

    def __init__(self, workdir):
        super().__init__(daemon=True)
        self.cert, self.key = workdir / "fake.crt", workdir / "fake.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(self.key), "-out", str(self.cert), "-days", "1",
                        "-subj", "/CN=fake", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        der = ssl.PEM_cert_to_DER_cert(self.cert.read_text())
        self.sha256 = hashlib.sha256(der).hexdigest()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.received = []

    def run(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(["http/1.1"])
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(5)
                    self.received.append(tls.recv(65536))
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfake\n")
            except (OSError, ssl.SSLError):
                self.received.append(b"<handshake failed>")


def test_the_server_sends_no_credential_to_an_address_a_node_advertises(tmp_data_dir, tmp_path):
    """Defect 4: the server sent `Bearer <admin token>` to whatever address a Node advertised,
    without checking the certificate. Now it presents a client certificate instead of a token
    and trusts only the certificate the Node publishes; the agent's endpoint refuses callers
    without a certificate from the cluster CA, the admin token included."""
    server = Server(tmp_data_dir, API_ONLY).start()
    agent = Agent(server, "real").start()
    client = server.client()
    core = kubernetes.client.CoreV1Api(client)
    listener = RecordingTlsListener(tmp_path)
    listener.start()
    try:
        def fake_node(pin):
            body = {"metadata": {"name": "fake", "annotations": {}},
                    "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                               "daemonEndpoints": {"kubeletEndpoint": {"Port": listener.port}}}}
            if pin:
                body["metadata"]["annotations"]["everynode.io/agent-certificate-sha256"] = pin
            try:
                core.delete_node("fake")
            except kubernetes.client.exceptions.ApiException:
                pass
            core.create_node(body)
            core.patch_node_status("fake", {"status": body["status"]})

        core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {
            "nodeName": "fake", "containers": [{"name": "c", "image": "busybox"}]}})

        def read_log():
            try:
                return 200, core.read_namespaced_pod_log("p", "default")
            except kubernetes.client.exceptions.ApiException as e:
                return e.status, json.loads(e.body)["message"]

        # No published certificate: no connection at all.
        fake_node(None)
        code, message = read_log()
        assert code == 400 and "does not publish its agent's certificate" in message, (code, message)
        assert listener.received == []
        # Another certificate published (the real agent's): the handshake fails, nothing is sent.
        real_pin = wait_for("the real agent's published certificate", lambda: (
            core.read_node("real").metadata.annotations or {}).get("everynode.io/agent-certificate-sha256"))
        fake_node(real_pin)
        code, message = read_log()
        assert code == 500 and "cannot reach the agent" in message, (code, message)
        assert all(r == b"<handshake failed>" for r in listener.received), listener.received
        # Its own certificate published, as a Node's writer can: it is asked, but gets no token.
        fake_node(listener.sha256)
        assert read_log() == (200, "fake\n")
        request = listener.received[-1].decode(errors="replace")
        assert request.startswith("GET /containerLogs/default/p/c"), request
        assert "authorization" not in request.lower(), request
        assert server.token not in request

        # The real agent's endpoint: no client certificate, no answer, token or not.
        node = core.read_node("real")
        port = node.status.daemon_endpoints.kubelet_endpoint.port
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
            req = urllib.request.Request(f"https://127.0.0.1:{port}/containerLogs/default/p/c",
                                         headers={"Authorization": f"Bearer {server.token}"})
            urllib.request.urlopen(req, context=ctx, timeout=5).read()
    finally:
        listener.sock.close()
        client.close()
        agent.stop()
        server.kill()


@pytest.mark.parametrize("http_version", ["--http1.1", "--http2"])
def test_an_oversized_body_gets_a_413_status_over_both_http_versions(tmp_data_dir, tmp_path, http_version):
    """Defect 10: the 413 for a body over 3 MiB was plain text, and over HTTP/2 a stream reset.
    curl, a real client of both protocols, must read upstream's Status either way."""
    curl = shutil.which("curl")
    if not curl:
        if os.environ.get("CI") == "true":
            pytest.fail("curl is required in CI (it is on the base image)")
        pytest.skip("curl not installed")
    server = Server(tmp_data_dir, API_ONLY).start()
    try:
        body = tmp_path / "big.json"
        body.write_text(json.dumps({"metadata": {"name": "big"}, "data": {"k": "a" * 4_000_000}}))
        out = subprocess.run(
            [curl, "-s", http_version, "--cacert", server.ca, "-H", f"Authorization: Bearer {server.token}",
             "-H", "Content-Type: application/json", "-X", "POST", "--data-binary", f"@{body}",
             "-w", "\n%{http_code} %{http_version}", f"{server.url}/api/v1/namespaces/default/configmaps"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        status_text, _, trailer = out.stdout.rpartition("\n")
        code, version = trailer.split()
        assert code == "413" and version == ("2" if http_version == "--http2" else "1.1"), out.stdout[-300:]
        status = json.loads(status_text)
        assert status["kind"] == "Status" and status["reason"] == "RequestEntityTooLarge", status
        assert status["message"] == "Request entity too large: limit is 3145728", status
    finally:
        server.kill()
