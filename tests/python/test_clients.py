"""The client matrix, Python part: the same user workflow through kubernetes-asyncio, lightkube
and kr8s against a server with three agents — list nodes; create a DaemonSet; watch its pods
until Ready; patch its image; wait for the rollout as `kubectl rollout status` does; follow a
pod's log; delete with propagation Orphan (the pods stay), adopt them again, delete with
Background (they go). (The official client and kubectl run the same steps in other tests.)"""

import asyncio
import os
import pathlib
import time

import pytest

from conftest import wait_for

LABEL = "client-matrix"


def daemonset(name, image="busybox:1.36"):
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name, "matrix": LABEL}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": image,
                                     "command": ["sh", "-c", "echo started on $(hostname); sleep 3600"]}]}}},
    }


def assert_orphaned(server, name):
    """The DaemonSet's three pods are still there after an Orphan delete, owned by nothing."""
    import kubernetes
    v1 = kubernetes.client.CoreV1Api(server.client())

    def orphaned():
        left = v1.list_namespaced_pod("default", label_selector=f"app={name}").items
        return len(left) == 3 and all(not p.metadata.owner_references for p in left)
    wait_for("the pods kept, without an owner, after the Orphan delete", orphaned)
    return v1


def run_workflow_program(server, argv, name, cwd=None):
    """Runs a client written in another language that does the workflow and prints one JSON
    line of what it saw (Node.js, kube-rs); checks that, then that the Orphan delete kept the pods."""
    import json
    import subprocess
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["nodes"] == ["node-1", "node-2", "node-3"]
    assert result["ready"] == 3 and result["updated"] == 3
    assert result["firstLine"].startswith("started on"), result
    assert_orphaned(server, name)


def ready(pod):
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def rolled_out(ds):
    """`kubectl rollout status`'s test for a DaemonSet."""
    st = ds.get("status") or {}
    return (ds["metadata"]["generation"] <= st.get("observedGeneration", 0)
            and st.get("updatedNumberScheduled", 0) == st.get("desiredNumberScheduled", -1)
            and st.get("numberAvailable", 0) == st.get("desiredNumberScheduled", -1))


# ---- kubernetes-asyncio ---------------------------------------------------------------------

async def asyncio_workflow(kubeconfig, name):
    import kubernetes_asyncio as k
    from kubernetes_asyncio import watch

    await k.config.load_kube_config(config_file=kubeconfig)
    async with k.client.ApiClient() as api:
        core, apps = k.client.CoreV1Api(api), k.client.AppsV1Api(api)
        nodes = await core.list_node()
        assert sorted(n.metadata.name for n in nodes.items) == ["node-1", "node-2", "node-3"]
        await apps.create_namespaced_daemon_set("default", daemonset(name))
        ready_pods = set()
        w = watch.Watch()
        async with w.stream(core.list_namespaced_pod, "default", label_selector=f"app={name}", timeout_seconds=60) as stream:
            async for event in stream:
                pod = api.sanitize_for_serialization(event["object"])
                if ready(pod):
                    ready_pods.add(pod["metadata"]["name"])
                if len(ready_pods) == 3:
                    w.stop()
        assert len(ready_pods) == 3
        await apps.patch_namespaced_daemon_set(name, "default", {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}})
        for _ in range(240):
            ds = api.sanitize_for_serialization(await apps.read_namespaced_daemon_set(name, "default"))
            if rolled_out(ds):
                break
            await asyncio.sleep(0.25)
        assert rolled_out(ds), ds["status"]
        pods = (await core.list_namespaced_pod("default", label_selector=f"app={name}")).items
        resp = await core.read_namespaced_pod_log(pods[0].metadata.name, "default", follow=True, _preload_content=False)
        line = await asyncio.wait_for(resp.content.readline(), 30)
        resp.close()
        assert line.decode().startswith("started on"), line
        await apps.delete_namespaced_daemon_set(name, "default", propagation_policy="Orphan")
        return [p.metadata.name for p in pods]


async def asyncio_delete_background(kubeconfig, name):
    import kubernetes_asyncio as k
    await k.config.load_kube_config(config_file=kubeconfig)
    async with k.client.ApiClient() as api:
        apps = k.client.AppsV1Api(api)
        await apps.create_namespaced_daemon_set("default", daemonset(name, "busybox:1.37"))
        await asyncio.sleep(1)
        await apps.delete_namespaced_daemon_set(name, "default", propagation_policy="Background")


# ---- lightkube ------------------------------------------------------------------------------

def lightkube_workflow(kubeconfig, name):
    from lightkube import Client, KubeConfig
    from lightkube.resources.apps_v1 import DaemonSet
    from lightkube.resources.core_v1 import Node, Pod
    from lightkube.types import PatchType

    client = Client(KubeConfig.from_file(kubeconfig).get())
    assert sorted(n.metadata.name for n in client.list(Node)) == ["node-1", "node-2", "node-3"]
    client.create(DaemonSet.from_dict(daemonset(name)))
    ready_pods = set()
    for _, pod in client.watch(Pod, namespace="default", labels={"app": name}):
        if ready(pod.to_dict()):
            ready_pods.add(pod.metadata.name)
        if len(ready_pods) == 3:
            break
    assert len(ready_pods) == 3
    client.patch(DaemonSet, name, {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}},
                 namespace="default", patch_type=PatchType.STRATEGIC)
    ds = wait_for("the lightkube rollout", lambda: (lambda d: d if rolled_out(d) else None)(
        client.get(DaemonSet, name, namespace="default").to_dict()))
    assert ds["status"]["updatedNumberScheduled"] == 3
    pods = [p.metadata.name for p in client.list(Pod, namespace="default", labels={"app": name})]
    first = next(iter(client.log(pods[0], namespace="default", follow=True)))
    assert first.startswith("started on"), first
    from lightkube.types import CascadeType
    client.delete(DaemonSet, name, namespace="default", cascade=CascadeType.ORPHAN)
    return pods


def lightkube_delete_background(kubeconfig, name):
    from lightkube import Client, KubeConfig
    from lightkube.resources.apps_v1 import DaemonSet
    client = Client(KubeConfig.from_file(kubeconfig).get())
    client.create(DaemonSet.from_dict(daemonset(name, "busybox:1.37")))
    time.sleep(1)
    from lightkube.types import CascadeType
    client.delete(DaemonSet, name, namespace="default", cascade=CascadeType.BACKGROUND)


# ---- kr8s -----------------------------------------------------------------------------------

def kr8s_workflow(kubeconfig, name):
    import kr8s
    from kr8s.objects import DaemonSet

    api = kr8s.api(kubeconfig=kubeconfig)
    assert sorted(n.name for n in api.get("nodes")) == ["node-1", "node-2", "node-3"]
    ds = DaemonSet(daemonset(name), api=api)
    ds.create()
    ready_pods = set()
    for _, pod in api.watch("pods", namespace="default", label_selector={"app": name}):
        if ready(pod.raw):
            ready_pods.add(pod.name)
        if len(ready_pods) == 3:
            break
    # kr8s patches with a merge patch by default, which would replace the container list.
    ds.patch([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "busybox:1.37"}], type="json")
    wait_for("the kr8s rollout", lambda: (ds.refresh() or True) and rolled_out(ds.raw))
    pods = list(api.get("pods", namespace="default", label_selector={"app": name}))
    first = next(iter(pods[0].logs(follow=True)))
    assert first.startswith("started on"), first
    ds.delete(propagation_policy="Orphan")
    return [p.name for p in pods]


def kr8s_delete_background(kubeconfig, name):
    import kr8s
    from kr8s.objects import DaemonSet
    api = kr8s.api(kubeconfig=kubeconfig)
    ds = DaemonSet(daemonset(name, "busybox:1.37"), api=api)
    ds.create()
    time.sleep(1)
    ds.delete(propagation_policy="Background")


WORKFLOWS = {
    "kubernetes-asyncio": (lambda kc, n: asyncio.run(asyncio_workflow(kc, n)),
                           lambda kc, n: asyncio.run(asyncio_delete_background(kc, n))),
    "lightkube": (lightkube_workflow, lightkube_delete_background),
    "kr8s": (kr8s_workflow, kr8s_delete_background),
}


@pytest.mark.parametrize("client", sorted(WORKFLOWS))
def test_the_user_workflow_through_each_client(nodes, client):
    workflow, delete_background = WORKFLOWS[client]
    name = "w-" + client.replace("-", "")[:12]
    pods = workflow(nodes.kubeconfig, name)
    v1 = assert_orphaned(nodes, name)
    assert sorted(p.metadata.name for p in v1.list_namespaced_pod("default", label_selector=f"app={name}").items) == sorted(pods)
    # The same DaemonSet again adopts them; a Background delete then takes them along.
    delete_background(nodes.kubeconfig, name)
    wait_for("the pods gone after the Background delete",
             lambda: v1.list_namespaced_pod("default", label_selector=f"app={name}").items == [], timeout=60)


def test_the_user_workflow_through_client_node_with_its_informer(nodes):
    """@kubernetes/client-node 1.x (npm, installed by scripts/test.sh into tests/node)."""
    import shutil

    from conftest import REPO

    node = shutil.which("node")
    module = REPO / "tests" / "node" / "node_modules" / "@kubernetes" / "client-node"
    if not node or not module.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("node and tests/node/node_modules are required in CI (scripts/test.sh runs npm ci)")
        pytest.skip("run `npm ci` in tests/node")
    name = "w-clientnode"
    run_workflow_program(nodes, [node, "workflow.mjs", nodes.kubeconfig, name], name, cwd=REPO / "tests" / "node")


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: node-agent\nversion: 0.1.0\nappVersion: \"1.0\"\n",
    "values.yaml": "image: busybox:1.36\ngreeting: hello\n",
    "templates/configmap.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"),
    "templates/service.yaml": (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n"
        "  clusterIP: None\n  selector:\n    app: {{ .Release.Name }}\n  ports:\n  - port: 9100\n"),
    "templates/daemonset.yaml": (
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n"
        "  selector:\n    matchLabels:\n      app: {{ .Release.Name }}\n  template:\n    metadata:\n"
        "      labels:\n        app: {{ .Release.Name }}\n    spec:\n      terminationGracePeriodSeconds: 1\n"
        "      containers:\n      - name: agent\n        image: {{ .Values.image }}\n"
        "        command: [\"sh\", \"-c\", \"sleep 3600\"]\n"),
}


def test_helm_installs_upgrades_rolls_back_and_uninstalls(nodes, tmp_path):
    """Helm's Go SDK (client-go inside, through helm-python-sdk's libhelm_c): a chart with a
    DaemonSet, a ConfigMap and a Service; after uninstall the release Secrets are gone too.
    client-go sends DeleteOptions as protobuf, which the uninstall exercises."""
    import kubernetes
    import helm_python as helm

    chart_dir = tmp_path / "node-agent"
    for path, text in CHART.items():
        (chart_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (chart_dir / path).write_text(text)
    config = helm.Config(kubeconfig_path=nodes.kubeconfig, namespace="default")
    apps = kubernetes.client.AppsV1Api(nodes.client())
    core = kubernetes.client.CoreV1Api(nodes.client())
    releases = lambda: [s.metadata.name for s in core.list_namespaced_secret("default", label_selector="owner=helm").items]  # noqa: E731

    config.install(str(chart_dir), "agent")
    assert apps.read_namespaced_daemon_set("agent", "default").spec.template.spec.containers[0].image == "busybox:1.36"
    assert core.read_namespaced_config_map("agent-settings", "default").data == {"greeting": "hello"}
    config.upgrade(str(chart_dir), "agent", {"image": "busybox:1.37", "greeting": "hi"})
    assert apps.read_namespaced_daemon_set("agent", "default").spec.template.spec.containers[0].image == "busybox:1.37"
    config.rollback("agent")
    assert apps.read_namespaced_daemon_set("agent", "default").spec.template.spec.containers[0].image == "busybox:1.36"
    assert core.read_namespaced_config_map("agent-settings", "default").data == {"greeting": "hello"}
    assert sorted(releases()) == ["sh.helm.release.v1.agent.v1", "sh.helm.release.v1.agent.v2", "sh.helm.release.v1.agent.v3"]
    config.uninstall("agent")
    assert releases() == []
    names = lambda items: [i.metadata.name for i in items]  # noqa: E731
    assert "agent" not in names(apps.list_namespaced_daemon_set("default").items)
    assert "agent-settings" not in names(core.list_namespaced_config_map("default").items)
    assert "agent" not in names(core.list_namespaced_service("default").items)
    wait_for("the release's pods gone",
             lambda: core.list_namespaced_pod("default", label_selector="app=agent").items == [], timeout=60)


def test_the_user_workflow_through_kube_rs_with_its_watcher(nodes):
    """kube-rs with kube-runtime's watcher (bench/src/client_workflow.rs, built with the
    workspace)."""

    from conftest import REPO

    binary = pathlib.Path(os.environ.get("EVERYNODE_BIN") or REPO / "target" / "debug" / "everynode").parent / "client-workflow"
    if not binary.exists():
        pytest.fail(f"{binary} not built; run `cargo build --workspace`")
    name = "w-kubers"
    run_workflow_program(nodes, [str(binary), nodes.kubeconfig, name], name)
