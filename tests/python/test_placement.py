"""Why a node has no pod, asked of the API (beyond.md §7.1, B-13): `GET .../daemonsets/{name}/placement`
against a real server, its controller and scheduler, through kubectl 1.33 and 1.20 `get --raw`,
the Python client, and a user who may only view."""

import json
import subprocess

import kubernetes
import pytest

from agent_sim import AgentSim
from conftest import everynode_binary, kubectl_120_binary, wait_for
from test_daemonset_controller import node

apps = kubernetes.client.AppsV1Api
core = kubernetes.client.CoreV1Api
RAW = "/apis/apps/v1/namespaces/default/daemonsets/agent/placement"


def daemonset():
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"nodeSelector": {"role": "worker"},
                                           "containers": [{"name": "c", "image": "agent:1",
                                                           "resources": {"requests": {"cpu": "2"}}}]}}}}


def placement(server, query="", kubectl=None, kubeconfig=None):
    env = {"KUBECONFIG": kubeconfig} if kubeconfig else None
    server.kubectl_path = kubectl
    try:
        out = server.kubectl("get", "--raw", RAW + query, env=env)
    finally:
        server.kubectl_path = None
    return json.loads(out.stdout)


@pytest.fixture
def five_nodes(cluster, cluster_api):
    worker = {"role": "worker"}
    c = core(cluster_api)
    c.create_node(node("n1", worker, cpu="4"))
    c.create_node(node("n2", worker, taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}], cpu="4"))
    c.create_node(node("n3", {"role": "edge"}, cpu="4"))
    c.create_node(node("n4", worker, cpu="1"))
    unready = node("n5", worker, cpu="4")
    unready["status"]["conditions"][0].update(status="False", reason="KubeletNotReady")
    c.create_node(unready)
    with AgentSim(cluster, hold=["n5"]):
        apps(cluster_api).create_namespaced_daemon_set("default", daemonset())
        wait_for("n1's pod available and n4's unschedulable", lambda: (
            (p := placement(cluster))["summary"]["available"] == 1
            and p["summary"]["byReason"].get("Unschedulable") == 1
            and p["summary"]["scheduled"] == 3) and p)
        yield cluster


@pytest.mark.parametrize("version", ["1.33", "1.20"])
def test_b13_placement_names_each_nodes_reason(five_nodes, version):
    p = placement(five_nodes, kubectl=kubectl_120_binary() if version == "1.20" else None)
    assert p["apiVersion"] == "everynode.dev/v1alpha1" and p["kind"] == "DaemonSetPlacement"
    assert p["metadata"]["name"] == "agent" and p["metadata"]["resourceVersion"]
    rows = {r["node"]: r for r in p["nodes"]}
    assert [r["node"] for r in p["nodes"]] == ["n1", "n2", "n3", "n4", "n5"]
    assert rows["n1"]["shouldRun"] and rows["n1"]["available"] and rows["n1"]["updated"] and "reason" not in rows["n1"]
    assert rows["n1"]["pod"].startswith("agent-") and rows["n1"]["phase"] == "Running"
    assert (rows["n2"]["reason"], rows["n2"]["message"]) == ("UntoleratedTaint", "dedicated=db:NoSchedule")
    assert rows["n3"]["reason"] == "NodeSelectorMismatch"
    assert rows["n3"]["message"] == "nodeSelector role=worker does not match (role=edge)"
    assert not rows["n2"]["shouldRun"] and not rows["n3"]["shouldRun"]
    assert rows["n4"]["reason"] == "Unschedulable"
    assert rows["n4"]["message"] == ("0/5 nodes are available: 1 Insufficient cpu, "
                                     "4 node(s) didn't match Pod's node affinity/selector.")
    assert rows["n5"]["reason"] == "NodeUnready"
    s = p["summary"]
    assert (s["nodes"], s["shouldRun"], s["scheduled"], s["ready"], s["available"]) == (5, 3, 3, 1, 1)
    assert s["byReason"] == {"UntoleratedTaint": 1, "NodeSelectorMismatch": 1, "Unschedulable": 1, "NodeUnready": 1}


def test_placement_filters_pages_and_refuses_unknown_reasons(five_nodes):
    s = five_nodes
    only = placement(s, "?reason=UntoleratedTaint&reason=NodeUnready")
    assert [r["node"] for r in only["nodes"]] == ["n2", "n5"]
    assert only["summary"]["nodes"] == 5, "the summary counts every node"
    assert [r["node"] for r in placement(s, "?node=n4")["nodes"]] == ["n4"]
    first = placement(s, "?limit=2")
    assert [r["node"] for r in first["nodes"]] == ["n1", "n2"]
    second = placement(s, f"?limit=2&continue={first['metadata']['continue']}")
    assert [r["node"] for r in second["nodes"]] == ["n3", "n4"]
    last = placement(s, f"?limit=2&continue={second['metadata']['continue']}")
    assert [r["node"] for r in last["nodes"]] == ["n5"] and "continue" not in last["metadata"]
    bad = s.kubectl("get", "--raw", RAW + "?reason=Sleepy", check=False)
    assert bad.returncode != 0 and 'unknown reason "Sleepy": want one of NodeSelectorMismatch' in bad.stderr
    missing = s.kubectl("get", "--raw", "/apis/apps/v1/namespaces/default/daemonsets/nope/placement", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    # Listed in discovery, read-only.
    resources = json.loads(s.kubectl("get", "--raw", "/apis/apps/v1").stdout)["resources"]
    assert {"name": "daemonsets/placement", "singularName": "", "namespaced": True,
            "kind": "DaemonSetPlacement", "verbs": ["get"]} in resources
    put = s.kubectl("replace", "--raw", RAW, "-f", "-", input="{}", check=False)
    assert put.returncode != 0 and "MethodNotAllowed" in put.stderr


def test_placement_through_the_python_client_and_for_a_viewer(five_nodes):
    s = five_nodes
    client = s.client()
    try:
        request = client.param_serialize("GET", RAW, query_params=[("reason", "Unschedulable")],
                                         auth_settings=["BearerToken"])
        response = client.call_api(*request)
        response.read()
        assert response.status == 200
        assert [r["node"] for r in json.loads(response.data)["nodes"]] == ["n4"]
    finally:
        client.close()
    out = subprocess.run([everynode_binary(), "user", "add", "watcher", "--data-dir", str(s.data_dir),
                          "--namespace", "default", "--role", "view"], capture_output=True, text=True, check=True)
    kubeconfig = out.stdout.strip()
    viewed = placement(s, kubeconfig=kubeconfig)
    assert viewed["summary"]["nodes"] == 5
    other = subprocess.run([everynode_binary(), "user", "add", "outsider", "--data-dir", str(s.data_dir),
                            "--namespace", "kube-system", "--role", "view"], capture_output=True, text=True, check=True)
    s.kubectl("create", "namespace", "elsewhere")
    denied = s.kubectl("get", "--raw", RAW, env={"KUBECONFIG": other.stdout.strip()}, check=False)
    assert denied.returncode != 0
    assert 'User "outsider" cannot get resource "daemonsets" in API group "apps"' in denied.stderr
