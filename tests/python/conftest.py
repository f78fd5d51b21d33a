"""Fixtures that run a real `everynode server` process and point real clients at it."""

import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import kubernetes
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPO.parent / "shared" / "examples"


def everynode_binary():
    path = os.environ.get("EVERYNODE_BIN") or str(REPO / "target" / "debug" / "everynode")
    if not os.path.exists(path):
        pytest.fail(f"everynode binary not found at {path}; run `cargo build` first or set EVERYNODE_BIN")
    return path


def kubectl_binary():
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is required in CI")
        pytest.skip("kubectl not installed")
    return path


class Server:
    """One everynode server process with its own data directory."""

    def __init__(self, data_dir, extra_args=()):
        self.data_dir = pathlib.Path(data_dir)
        self.extra_args = list(extra_args)
        self.proc = None
        self.url = None

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
        result = subprocess.run([kubectl_binary(), *args], capture_output=True, text=True, env=full_env, input=input, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result


@pytest.fixture
def tmp_data_dir():
    d = tempfile.mkdtemp(prefix="everynode-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


# API tests run the server alone, so what they observe is the API's doing; controller tests use
# `cluster`, which runs the DaemonSet controller, scheduler and garbage collector too.
API_ONLY = ["--no-daemonset-controller", "--no-scheduler", "--no-garbage-collector"]


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
    s = Server(tmp_data_dir).start()
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
