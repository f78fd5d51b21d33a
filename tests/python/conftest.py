"""Fixtures that run a real `everynode server` process and point real clients at it."""

import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
import select
import urllib.request

import kubernetes
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "tests" / "examples"


def everynode_binary():
    path = os.environ.get("EVERYNODE_BIN") or str(REPO / "target" / "debug" / "everynode")
    if not os.path.exists(path):
        pytest.fail(f"everynode binary not found at {path}; run `cargo build` first or set EVERYNODE_BIN")
    return path


def kubectl_120_binary():
    """Debian's kubectl 1.20, extracted by scripts/test.sh (KUBECTL_120)."""
    path = os.environ.get("KUBECTL_120")
    if not path or not os.path.exists(path):
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl 1.20 is required in CI (scripts/test.sh extracts it)")
        pytest.skip("kubectl 1.20 not extracted; run scripts/test.sh")
    return path


def required_tool(name, env_var, why):
    """The path of a program the tests drive: `env_var`, else `name` on PATH. Missing, it fails
    the test in CI and skips it elsewhere."""
    path = os.environ.get(env_var) or shutil.which(name)
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI ({why})")
        pytest.skip(f"{name} not installed")
    return path


def chromium_path():
    return required_tool("chromium", "CHROMIUM", "scripts/test.sh installs it")


def kubectl_binary():
    return required_tool("kubectl", "KUBECTL", "the base image's /usr/bin/kubectl")


class Server:
    """One everynode server process with its own data directory."""

    def __init__(self, data_dir, extra_args=(), env=None):
        self.data_dir = pathlib.Path(data_dir)
        self.extra_args = list(extra_args)
        # Extra environment for the server process (LD_PRELOAD of libfaketime, say).
        self.env = env
        self.proc = None
        self.url = None
        # Which kubectl `kubectl()` runs; None: the machine's.
        self.kubectl_path = None

    @property
    def kubeconfig(self):
        return str(self.data_dir / "kubeconfig")

    @property
    def token(self):
        return (self.data_dir / "admin.token").read_text().strip()

    @property
    def ca(self):
        return str(self.data_dir / "pki" / "ca.crt")

    def start(self, listen="127.0.0.1:0"):
        log = open(self.data_dir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [everynode_binary(), "server", "--data-dir", str(self.data_dir), "--listen", listen, *self.extra_args],
            stdout=subprocess.PIPE,
            stderr=log,
            env=dict(os.environ, **self.env) if self.env else None,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if "listening on" in line:
                self.url = line.split("listening on ")[1].split()[0]
                return self
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"server did not start; see {self.data_dir / 'server.log'}")

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def client(self):
        return kubernetes.config.new_client_from_config(config_file=self.kubeconfig)

    def kubectl(self, *args, check=True, input=None, env=None):
        full_env = dict(os.environ, KUBECONFIG=self.kubeconfig, HOME=str(self.data_dir / "home"))
        full_env.update(env or {})
        result = subprocess.run([self.kubectl_path or kubectl_binary(), *args], capture_output=True, text=True, env=full_env, input=input, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result


@pytest.fixture
def tmp_data_dir():
    d = tempfile.mkdtemp(prefix="everynode-test-")
    yield d
    remove_tree(d)


def unmount_under(path):
    """Lazily unmounts everything mounted at or under `path`, deepest first: the tmpfs volumes
    (Secrets, kube-api-access tokens) of pods whose agent was stopped or killed, which stay
    mounted as kubelet's do."""
    path = os.path.realpath(str(path))
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for m in sorted((m for m in mounts if m == path or m.startswith(path + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)


def remove_tree(path):
    """Removes a test's directory, unmounting what the agents left mounted in it first."""
    unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)


# API tests run the server alone, so what they observe is the API's doing; controller tests use
# `cluster`, which runs the DaemonSet controller, scheduler and garbage collector too.
API_ONLY = [
    "--no-daemonset-controller",
    "--no-scheduler",
    "--no-garbage-collector",
    "--no-node-lifecycle-controller",
    "--no-pod-gc",
    "--no-root-ca-publisher",
    "--no-endpoints-controllers",
]
# The same, for servers whose agents run pods: a pod's kube-api-access volume needs the
# kube-root-ca.crt ConfigMap, as upstream's does.
API_ONLY_WITH_ROOT_CA = [a for a in API_ONLY if a != "--no-root-ca-publisher"]


@pytest.fixture
def server(tmp_data_dir):
    s = Server(tmp_data_dir, API_ONLY).start()
    yield s
    s.kill()


@pytest.fixture
def api(server):
    client = server.client()
    yield client
    client.close()


@pytest.fixture
def cluster(tmp_data_dir):
    # Nodes here are API objects without agents: the lifecycle controller would mark them
    # Unknown, so it runs only where agents do (`nodes` below).
    s = Server(tmp_data_dir, ["--no-node-lifecycle-controller"]).start()
    yield s
    s.kill()


@pytest.fixture
def cluster_api(cluster):
    client = cluster.client()
    yield client
    client.close()


def daemonset(name="foo", labels=None, **spec_overrides):
    """The DaemonSet the upstream unit tests use: selector and template labels L1."""
    labels = labels or {"name": "simple-daemon", "type": "production"}
    spec = {
        "selector": {"matchLabels": dict(labels)},
        "template": {
            "metadata": {"labels": dict(labels)},
            "spec": {"containers": [{"name": "foo", "image": "foo/bar"}]},
        },
    }
    spec.update(spec_overrides)
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name}, "spec": spec}


# Patches in these tests are JSON merge patches; strategic merge patch has its own tests.
MERGE = "application/merge-patch+json"


class Agent:
    """One `everynode agent` process for a node, with its own state directory."""

    def __init__(self, server, name, extra_args=(), kubeconfig=None):
        self.server = server
        self.name = name
        # The administrator's by default; a node's own identity for the authorization tests.
        self.kubeconfig = kubeconfig or server.kubeconfig
        self.state_dir = server.data_dir / "agents" / name
        self.extra_args = list(extra_args)
        self.proc = None

    def start(self):
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.server.data_dir / f"agent-{self.name}.log", "ab")
        self.proc = subprocess.Popen(
            [
                everynode_binary(), "agent",
                "--kubeconfig", self.kubeconfig,
                "--name", self.name,
                "--state-dir", str(self.state_dir),
                "--listen", "127.0.0.1:0",
                # Short heartbeats so the lifecycle tests see a lost node in seconds.
                "--node-lease-duration-seconds", "4",
                "--node-status-update-frequency", "1",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)


FAST_LIFECYCLE = ["--node-monitor-grace-period", "4", "--node-monitor-period", "1", "--node-startup-grace-period", "10"]


def stop_process(proc, timeout=60):
    """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds; reaps it."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(what, check, timeout=90, interval=0.25):
    """Polls `check` until it returns something truthy; fails naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except kubernetes.client.exceptions.ApiException as e:
            # Not there yet, or the server asks to come back (429, as client-go retries it).
            if e.status not in (404, 429):
                raise
            last = f"{e.status} {e.reason}"
            time.sleep(interval)
            continue
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last saw {last!r}")


def retrying(call, *args, **kwargs):
    """`call`, again after the server's Retry-After while it answers 429 (busy starting
    thousands of hollow nodes, say), as client-go does."""
    for _ in range(120):
        try:
            return call(*args, **kwargs)
        except kubernetes.client.exceptions.ApiException as e:
            if e.status != 429:
                raise
            time.sleep(int(e.headers.get("Retry-After", "1")))
    raise AssertionError(f"{call.__name__} kept getting 429")


def stays(what, check, seconds=1.0, interval=0.05):
    """Polls `check` for `seconds` and fails the moment it is false: for rules that say
    something does not happen (nothing restarts, a standby does not act)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not check():
            raise AssertionError(f"expected {what} to hold, and it stopped holding")
        time.sleep(interval)


@pytest.fixture
def nodes(tmp_data_dir):
    """A server with every controller and three process-runtime agents: node-1..node-3."""
    s = Server(tmp_data_dir, ["--store", "memory", *FAST_LIFECYCLE]).start()
    agents = {f"node-{i}": Agent(s, f"node-{i}").start() for i in (1, 2, 3)}
    s.agents = agents
    client = s.client()
    core = kubernetes.client.CoreV1Api(client)

    def all_ready():
        items = core.list_node().items
        ready = [n for n in items if any(c.type == "Ready" and c.status == "True" for c in ((n.status and n.status.conditions) or []))]
        return len(ready) == 3

    try:
        wait_for("three Ready nodes", all_ready)
        yield s
    finally:
        client.close()
        for a in s.agents.values():
            a.stop()
        s.kill()


@contextlib.contextmanager
def daemonset_on_agents(data, manifest, server_args=(), nodes=3):
    """A server (memory store) with `nodes` process-runtime agents, node-1 onwards, running the
    DaemonSet `manifest` until each node's pod is Running; everything is stopped and removed
    after."""
    s = Server(data, ["--store", "memory", *server_args]).start()
    agents = [Agent(s, f"node-{i}").start() for i in range(1, nodes + 1)]
    selector = ",".join(f"{k}={v}" for k, v in manifest["spec"]["selector"]["matchLabels"].items())
    try:
        s.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        wait_for(f"{nodes} {manifest['metadata']['name']} pods Running",
                 lambda: s.kubectl("get", "pods", "-l", selector, "--no-headers").stdout.count("Running") == nodes)
        yield s
    finally:
        for a in agents:
            a.stop()
        s.kill()
        remove_tree(data)


def start_hollow_fleet(server, binary, nodes, log):
    """One hollow agent process serving `nodes` nodes that renew their Leases every 100 s (the
    server is to be started with `--node-monitor-grace-period 600`), so the heartbeat does not
    compete with what a scale test measures. Stop it with `stop_process`."""
    return subprocess.Popen(
        [binary, "agent", "--kubeconfig", server.kubeconfig, "--runtime", "hollow",
         "--hollow-nodes", str(nodes), "--name", "hollow", "--listen", "127.0.0.1:0",
         "--hollow-start-delay-ms", "300", "--node-lease-duration-seconds", "400",
         "--node-status-update-frequency", "60"],
        stdout=subprocess.DEVNULL, stderr=log)


def read_until(fd, wanted, timeout=30):
    """What `fd` yields until `wanted` appears, it ends, or `timeout` seconds pass."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and wanted not in out:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def start_port_forward(kubeconfig, home, binary, target, remote):
    """`kubectl port-forward target :remote`, once it forwards: the process and its local port."""
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), HOME=str(home))
    proc = subprocess.Popen([binary, "port-forward", target, f":{remote}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    line = read_until(proc.stdout.fileno(), b"\n", timeout=30).decode()
    if not line.startswith("Forwarding from 127.0.0.1:"):
        proc.kill()
        raise AssertionError(f"kubectl port-forward did not start: {line!r} {proc.stderr.read()!r}")
    return proc, int(line.split("127.0.0.1:")[1].split()[0])


def fetch_local(local_port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{local_port}/{path}", timeout=30) as response:
        return response.read()


def free_tcp_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def etcdctl(endpoints, *args, check=True):
    """etcd's v3 client against `endpoints` (comma-separated)."""
    binary = required_tool("etcdctl", "ETCDCTL", "scripts/test.sh installs etcd-client")
    result = subprocess.run([binary, "--endpoints", endpoints, *args], capture_output=True, text=True,
                            env=dict(os.environ, ETCDCTL_API="3"), timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"etcdctl {' '.join(args)} failed: {result.stderr}")
    return result


class Etcd:
    """One etcd member (Debian's `etcd-server`) on loopback ports of its own, with its data in
    `data_dir`. `etcdctl(...)` runs the v3 client against it."""

    def __init__(self, data_dir, name="etcd"):
        self.data_dir = pathlib.Path(data_dir)
        self.name = name
        self.client_url = f"http://127.0.0.1:{free_tcp_port()}"
        self.peer_url = f"http://127.0.0.1:{free_tcp_port()}"
        self.proc = None

    def start(self):
        binary = required_tool("etcd", "ETCD", "scripts/test.sh installs etcd-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "etcd.log", "ab")
        self.proc = subprocess.Popen(
            [binary, "--name", self.name, "--data-dir", str(self.data_dir / "data"),
             "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
             "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
             "--initial-cluster", f"{self.name}={self.peer_url}"],
            stdout=subprocess.DEVNULL, stderr=log)
        wait_for("etcd healthy", lambda: self.etcdctl("endpoint", "health", check=False).returncode == 0, timeout=30)
        return self

    def etcdctl(self, *args, check=True):
        return etcdctl(self.client_url, *args, check=check)

    def stop(self):
        stop_process(self.proc)


class EtcdCluster:
    """Several etcd members on loopback ports, one cluster; members can be killed and started
    again from their data."""

    def __init__(self, data_dir, members=3):
        self.data_dir = pathlib.Path(data_dir)
        self.members = [{"name": f"m{i}", "client": f"http://127.0.0.1:{free_tcp_port()}",
                         "peer": f"http://127.0.0.1:{free_tcp_port()}", "proc": None} for i in range(1, members + 1)]

    @property
    def client_urls(self):
        return ",".join(m["client"] for m in self.members)

    def start_member(self, i):
        binary = required_tool("etcd", "ETCD", "scripts/test.sh installs etcd-server")
        m = self.members[i]
        d = self.data_dir / m["name"]
        d.mkdir(parents=True, exist_ok=True)
        cluster = ",".join(f"{x['name']}={x['peer']}" for x in self.members)
        m["proc"] = subprocess.Popen(
            [binary, "--name", m["name"], "--data-dir", str(d / "data"),
             "--listen-client-urls", m["client"], "--advertise-client-urls", m["client"],
             "--listen-peer-urls", m["peer"], "--initial-advertise-peer-urls", m["peer"],
             "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "test"],
            stdout=subprocess.DEVNULL, stderr=open(d / "etcd.log", "ab"))

    def start(self):
        for i in range(len(self.members)):
            self.start_member(i)
        wait_for("the etcd cluster healthy", self.healthy, timeout=60)
        return self

    def healthy(self):
        return self.etcdctl("endpoint", "health", check=False).returncode == 0

    def etcdctl(self, *args, check=True):
        return etcdctl(self.client_urls, *args, check=check)

    def kill_member(self, i):
        proc = self.members[i]["proc"]
        proc.kill()
        proc.wait()

    def stop(self):
        for m in self.members:
            if m["proc"]:
                stop_process(m["proc"])


def server_on_etcd(data_dir, etcd_urls, first=None):
    """A started server on the etcd at `etcd_urls` with a fresh data directory; given `first`,
    it joins that server's cluster with its cluster secret, as a second server does."""
    data_dir = pathlib.Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    args = ["--etcd-servers", etcd_urls]
    if first is not None:
        args += ["--cluster-secret-file", str(first.data_dir / "cluster-secret")]
    return Server(data_dir, args).start()
