"""`kubectl everynode` (beyond.md §7.4) through real kubectl's plugin mechanism: the binary
linked as kubectl-everynode on PATH by `everynode kubectl-plugin install`."""

import json
import os
import subprocess

import kubernetes
import pytest
import yaml

from agent_sim import AgentSim
from conftest import everynode_binary, kubectl_binary, wait_for
from test_daemonset_controller import node
from test_placement import daemonset, five_nodes, five_workers, placement  # noqa: F401 (fixtures)

apps = kubernetes.client.AppsV1Api
core = kubernetes.client.CoreV1Api


def plugin(server, tmp_path, *args, check=True):
    bin_dir = tmp_path / "bin"
    if not (bin_dir / "kubectl-everynode").exists():
        out = subprocess.run([everynode_binary(), "kubectl-plugin", "install", str(bin_dir)],
                             capture_output=True, text=True, check=True)
        assert "kubectl-everynode" in out.stdout
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", KUBECONFIG=server.kubeconfig,
               HOME=str(server.data_dir / "home"))
    result = subprocess.run([kubectl_binary(), "everynode", *args], capture_output=True, text=True, env=env,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl everynode {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def test_why_names_each_reason_and_one_nodes_answer(five_nodes, tmp_path):
    s = five_nodes
    out = plugin(s, tmp_path, "why", "agent").stdout
    assert "daemonset.apps/agent: 5 nodes, 3 should run, 3 scheduled, 1 ready, 1 available" in out
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert "n2" in lines["UntoleratedTaint"] and "dedicated=db:NoSchedule" in lines["UntoleratedTaint"]
    assert "Insufficient cpu" in lines["Unschedulable"]
    one = plugin(s, tmp_path, "why", "agent", "n4", "-n", "default").stdout
    assert "reason:      Unschedulable" in one and "0/5 nodes are available: 1 Insufficient cpu" in one
    as_json = json.loads(plugin(s, tmp_path, "why", "agent", "-o", "json").stdout)
    assert as_json["kind"] == "DaemonSetPlacement" and len(as_json["nodes"]) == 5
    missing = plugin(s, tmp_path, "why", "nope", check=False)
    assert missing.returncode == 1 and "NotFound" in missing.stderr


def test_preview_pause_resume_and_promote(five_workers, tmp_path):
    s = five_workers
    changed = json.loads(json.dumps(s.ds))
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "agent:2"
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(changed))
    out = plugin(s, tmp_path, "preview", "-f", str(path)).stdout
    assert "new revision; 0 create, 0 delete, 5 replace, 0 keep" in out
    assert out.count("Replace") == 5
    assert "batches: [n1 n2] [n3 n4] [n5]" in out
    annotations = lambda: json.loads(s.kubectl("get", "ds", "agent", "-o", "json").stdout)["metadata"].get("annotations", {})
    assert plugin(s, tmp_path, "pause", "agent").stdout.strip() == "daemonset.apps/agent paused"
    assert annotations()["everynode.dev/paused"] == "true"
    paused = plugin(s, tmp_path, "preview", "-f", str(path)).stdout
    assert "0 replace, 5 keep" in paused and "Paused" in paused
    plugin(s, tmp_path, "resume", "agent")
    assert "everynode.dev/paused" not in annotations()
    s.kubectl("annotate", "ds", "agent", "everynode.dev/partition=3", "everynode.dev/canary-node-selector=zone=a")
    plugin(s, tmp_path, "promote", "agent")
    left = annotations()
    assert "everynode.dev/partition" not in left and "everynode.dev/canary-node-selector" not in left


def test_status_waits_for_the_rollout_and_fails_past_its_deadline(cluster, cluster_api, tmp_path):
    for name in ("s1", "s2"):
        core(cluster_api).create_node(node(name, {"role": "worker"}, cpu="4"))
    ds = daemonset()
    ds["metadata"]["annotations"] = {"everynode.dev/progress-deadline-seconds": "3"}
    with AgentSim(cluster):
        apps(cluster_api).create_namespaced_daemon_set("default", ds)
        done = plugin(cluster, tmp_path, "status", "agent", "--timeout", "60")
        assert 'daemon set "agent" successfully rolled out' in done.stdout
        assert "[####################] 2/2 updated, 2/2 available" in done.stdout
    # No agent now: the replaced pods never go, and the rollout stalls past its deadline.
    cluster.kubectl("set", "image", "ds/agent", "c=agent:2")
    stalled = plugin(cluster, tmp_path, "status", "agent", "--timeout", "60", check=False)
    assert stalled.returncode == 1, stalled.stdout + stalled.stderr
    assert 'error: daemon set "agent" exceeded its progress deadline' in stalled.stdout
