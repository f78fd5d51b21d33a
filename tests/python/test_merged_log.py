"""One log stream for a DaemonSet (beyond.md §7.3, B-15): `GET .../daemonsets/{name}/log` and
`kubectl everynode logs` over real agents of the process runtime on three nodes."""

import json
import os
import select
import subprocess
import time

import pytest

from conftest import daemonset_on_agents, everynode_binary, kubectl_binary, stop_process, wait_for

TICKER = {
    "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ticker"},
    "spec": {"selector": {"matchLabels": {"app": "ticker"}},
             "template": {"metadata": {"labels": {"app": "ticker"}},
                          "spec": {"terminationGracePeriodSeconds": 1,
                                   "containers": [{"name": "tick", "image": "busybox:1.36",
                                                   "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                                                   "command": ["sh", "-c", "i=0; while true; do echo \"tick $POD $i\"; i=$((i+1)); sleep 0.3; done"]}]}}}}
RAW = "/apis/apps/v1/namespaces/default/daemonsets/ticker/log"


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory):
    with daemonset_on_agents(tmp_path_factory.mktemp("merged-log"), TICKER) as s:
        yield s


def read_until(proc, done, timeout=60):
    """Lines from `proc` until `done(lines)` holds."""
    lines, buf = [], b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(lines):
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *complete, buf = buf.split(b"\n")
            lines += [c.decode() for c in complete]
    return lines


def test_a_merged_log_has_every_nodes_lines_prefixed(three_nodes):
    s = three_nodes
    # Each ticker writes a line every 0.3 s; wait until every one has written two.
    out = wait_for("two lines from each ticker", lambda: (
        lines if len(lines := s.kubectl("get", "--raw", RAW + "?tailLines=2").stdout.splitlines()) == 6 else None))
    prefixes = {line.split("] ", 1)[0] + "]" for line in out}
    assert len(prefixes) == 3 and len(out) == 6, out
    for line in out:
        node_pod_container, text = line[1:].split("] ", 1)
        node, pod, container = node_pod_container.split("/")
        assert node in ("node-1", "node-2", "node-3") and container == "tick"
        assert text.startswith(f"tick {pod} ")
    only = s.kubectl("get", "--raw", RAW + "?tailLines=1&node=node-2").stdout.splitlines()
    assert len(only) == 1 and only[0].startswith("[node-2/")
    bad = s.kubectl("get", "--raw", RAW + "?container=nope&tailLines=1").stdout
    assert bad == "", "no pod has that container"
    missing = s.kubectl("get", "--raw", "/apis/apps/v1/namespaces/default/daemonsets/nope/log", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_b15_following_joins_a_replaced_pod_without_reconnecting(three_nodes, tmp_path):
    s = three_nodes
    bin_dir = tmp_path / "bin"
    subprocess.run([everynode_binary(), "kubectl-plugin", "install", str(bin_dir)], check=True, capture_output=True)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", KUBECONFIG=s.kubeconfig)
    proc = subprocess.Popen([kubectl_binary(), "everynode", "logs", "ticker", "-f", "--tail", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        nodes_seen = lambda lines: {l[1:].split("/", 1)[0] for l in lines if l.startswith("[")}
        first = read_until(proc, lambda lines: len(nodes_seen(lines)) == 3)
        assert nodes_seen(first) == {"node-1", "node-2", "node-3"}, first
        old = json.loads(s.kubectl("get", "pods", "-l", "app=ticker", "--field-selector", "spec.nodeName=node-2",
                                   "-o", "json").stdout)["items"][0]["metadata"]["name"]
        s.kubectl("delete", "pod", old, "--wait=false")
        new_pod_line = lambda lines: any(l.startswith("[node-2/") and f"/{old}/" not in l for l in lines)
        later = read_until(proc, new_pod_line, timeout=90)
        assert new_pod_line(later), later[-10:]
        assert proc.poll() is None, "the stream stayed open"
    finally:
        stop_process(proc)
