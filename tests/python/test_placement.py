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


PREVIEW = "/apis/apps/v1/namespaces/default/daemonsets/agent/preview"


@pytest.fixture
def five_workers(cluster, cluster_api):
    c = core(cluster_api)
    for i in range(1, 6):
        c.create_node(node(f"n{i}", {"role": "worker", "zone": "a" if i <= 2 else "b"}, cpu="4"))
    ds = daemonset()
    ds["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}
    with AgentSim(cluster):
        apps(cluster_api).create_namespaced_daemon_set("default", ds)
        wait_for("5 pods available", lambda: placement(cluster)["summary"]["available"] == 5)
        cluster.ds = ds
        yield cluster


def preview(server, ds, check=True):
    return server.kubectl("create", "--raw", PREVIEW, "-f", "-", input=json.dumps(ds), check=check)


def test_b14_preview_of_an_image_change_and_of_a_node_selector_change(five_workers):
    s = five_workers
    generation = json.loads(s.kubectl("get", "ds", "agent", "-o", "json").stdout)["metadata"]["generation"]
    changed = json.loads(json.dumps(s.ds))
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "agent:2"
    p = json.loads(preview(s, changed).stdout)
    assert p["kind"] == "DaemonSetPreview" and p["newRevision"] is True
    assert p["summary"] == {"create": 0, "delete": 0, "replace": 5, "keep": 0}
    assert p["batches"] == [["n1", "n2"], ["n3", "n4"], ["n5"]]
    moved = json.loads(json.dumps(s.ds))
    moved["spec"]["template"]["spec"]["nodeSelector"] = {"role": "worker", "zone": "a"}
    p = json.loads(preview(s, moved).stdout)
    actions = {n["node"]: n["action"] for n in p["nodes"]}
    assert actions == {"n1": "Replace", "n2": "Replace", "n3": "Delete", "n4": "Delete", "n5": "Delete"}
    assert p["nodes"][2]["reason"].startswith("NodeSelectorMismatch: nodeSelector zone=a")
    same = json.loads(preview(s, s.ds).stdout)
    assert same["newRevision"] is False and same["summary"]["keep"] == 5
    # Nothing was written.
    after = json.loads(s.kubectl("get", "ds", "agent", "-o", "json").stdout)
    assert after["metadata"]["generation"] == generation
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "agent:1"


def test_a_preview_of_an_invalid_daemonset_is_the_same_422_as_apply(five_workers):
    s = five_workers
    bad = json.loads(json.dumps(s.ds))
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    bad["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = 0
    previewed = preview(s, bad, check=False)
    applied = s.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert previewed.returncode != 0 and applied.returncode != 0
    assert "is invalid" in applied.stderr
    for message in ("spec.template.metadata.labels: Invalid value", "`selector` does not match template `labels`",
                    "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"):
        assert message in applied.stderr and message in previewed.stderr, (message, previewed.stderr)
    # A new DaemonSet previews as a create: every eligible node gains a pod.
    fresh = json.loads(json.dumps(s.ds))
    fresh["metadata"]["name"] = "fresh"
    out = s.kubectl("create", "--raw", PREVIEW.replace("/agent/", "/fresh/"), "-f", "-", input=json.dumps(fresh))
    p = json.loads(out.stdout)
    assert p["summary"]["create"] == 5 and p["newRevision"] is True
    assert s.kubectl("get", "ds", "fresh", check=False).returncode != 0, "a preview creates nothing"
