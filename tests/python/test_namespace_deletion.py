"""Namespace deletion as upstream: the namespace goes Terminating with its `kubernetes` finalizer,
its content is deleted (pods gracefully, on their nodes), progress shows in its conditions,
creates into it are refused, and then it goes. Driven by kubectl 1.33, kubectl 1.20 and the
official Python client against a server with agents."""

import json

import kubernetes
import pytest

from conftest import kubectl_120_binary, stays, wait_for

DAEMONSET = {
    "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "slow"},
    "spec": {"selector": {"matchLabels": {"app": "slow"}},
             "template": {"metadata": {"labels": {"app": "slow"}}, "spec": {
                 # The container ignores SIGTERM: each pod takes its whole grace period to go.
                 "terminationGracePeriodSeconds": 3,
                 "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "trap '' TERM; sleep 3600"]}]}}},
}


def fill(server, ns):
    server.kubectl("create", "namespace", ns)
    ns_obj = json.loads(server.kubectl("get", "namespace", ns, "-o", "json").stdout)
    assert ns_obj["spec"]["finalizers"] == ["kubernetes"]
    assert ns_obj["status"]["phase"] == "Active"
    server.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(DAEMONSET))
    server.kubectl("-n", ns, "create", "configmap", "settings", "--from-literal=a=b")
    server.kubectl("-n", ns, "create", "secret", "generic", "token", "--from-literal=t=x")
    server.kubectl("-n", ns, "create", "serviceaccount", "robot")
    core = kubernetes.client.CoreV1Api(server.client())

    def running():
        pods = core.list_namespaced_pod(ns).items
        return len(pods) == 3 and all(p.status.phase == "Running" for p in pods)
    wait_for("a running pod on each node", running)


def left_in(server, ns):
    """Everything namespaced still stored in `ns`."""
    core = kubernetes.client.CoreV1Api(server.client())
    apps = kubernetes.client.AppsV1Api(server.client())
    return {
        "daemonsets": len(apps.list_namespaced_daemon_set(ns).items),
        "pods": len(core.list_namespaced_pod(ns).items),
        "configmaps": len(core.list_namespaced_config_map(ns).items),
        "secrets": len(core.list_namespaced_secret(ns).items),
        "serviceaccounts": len(core.list_namespaced_service_account(ns).items),
        "controllerrevisions": len(apps.list_namespaced_controller_revision(ns).items),
    }


def follow_deletion(server, ns):
    core = kubernetes.client.CoreV1Api(server.client())
    terminating = core.read_namespace(ns)
    assert terminating.status.phase == "Terminating"
    assert terminating.metadata.deletion_timestamp is not None
    # New content is refused while the old goes, in upstream's words.
    refused = server.kubectl("-n", ns, "create", "configmap", "late", check=False)
    assert refused.returncode != 0
    assert f"unable to create new content in namespace {ns} because it is being terminated" in refused.stderr

    def remaining_condition():
        conditions = {c.type: c for c in (core.read_namespace(ns).status.conditions or [])}
        c = conditions.get("NamespaceContentRemaining")
        return c if c and c.status == "True" and "pods. has 3 resource instances" in c.message else None
    wait_for("NamespaceContentRemaining naming the pods", remaining_condition, timeout=30)

    def gone():
        try:
            core.read_namespace(ns)
            return False
        except kubernetes.client.exceptions.ApiException as e:
            return e.status == 404
    wait_for("the namespace to go", gone, timeout=60)
    assert left_in(server, ns) == {k: 0 for k in left_in(server, ns)}


@pytest.mark.parametrize("client", ["kubectl-1.33", "kubectl-1.20", "python"])
def test_deleting_a_namespace_deletes_its_content_then_it(nodes, client):
    ns = "t-" + client.replace(".", "").replace("kubectl-", "k")
    fill(nodes, ns)
    if client == "python":
        kubernetes.client.CoreV1Api(nodes.client()).delete_namespace(ns)
    else:
        if client == "kubectl-1.20":
            nodes.kubectl_path = kubectl_120_binary()
        try:
            nodes.kubectl("delete", "namespace", ns, "--wait=false")
        finally:
            nodes.kubectl_path = None
    follow_deletion(nodes, ns)


def test_a_namespace_keeps_its_finalizer_until_emptied_whatever_the_client_sent(server):
    core = kubernetes.client.CoreV1Api(server.client())
    core.create_namespace({"metadata": {"name": "bare"}, "spec": {}, "status": {"phase": "Terminating"}})
    ns = core.read_namespace("bare")
    assert ns.spec.finalizers == ["kubernetes"] and ns.status.phase == "Active"
    core.create_namespace({"metadata": {"name": "own"}, "spec": {"finalizers": ["example.com/x"]}})
    assert core.read_namespace("own").spec.finalizers == ["example.com/x", "kubernetes"]
    # The API-only server runs no namespace controller's peers, but the namespace controller
    # is the server's own: an empty namespace goes at once.
    core.delete_namespace("bare")
    wait_for("the empty namespace to go", lambda: "bare" not in [n.metadata.name for n in core.list_namespace().items])
    stays("default stays", lambda: "default" in [n.metadata.name for n in core.list_namespace().items], seconds=0.5)
