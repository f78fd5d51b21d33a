"""Real kubectl (the machine's, which picks 1.33 from /version), default flags, against a real
server: one test per command users run on DaemonSets, asserting on what kubectl prints."""

import json
import os
import stat
import textwrap

import yaml

import pytest

from conftest import API_ONLY, EXAMPLES, Server, kubectl_120_binary


@pytest.fixture(params=["1.33", "1.20"], ids=["kubectl-1.33", "kubectl-1.20"])
def server(request, tmp_data_dir):
    """Every test here runs with the machine's kubectl (1.33) and with Debian's 1.20."""
    # Found before the server starts: a skip (no kubectl 1.20 outside CI) must not leave it running.
    kubectl_path = kubectl_120_binary() if request.param == "1.20" else None
    s = Server(tmp_data_dir, API_ONLY).start()
    s.kubectl_path = kubectl_path
    yield s
    s.kill()


def is_120(server):
    return server.kubectl_path is not None

DS = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: DaemonSet
    metadata:
      name: fluentd
      labels: {k8s-app: fluentd-logging}
    spec:
      selector:
        matchLabels: {name: fluentd}
      template:
        metadata:
          labels: {name: fluentd}
        spec:
          tolerations:
          - {key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}
          containers:
          - name: fluentd
            image: fluentd:v1.16
            env:
            - {name: A, value: "1"}
    """)

NODE = textwrap.dedent("""\
    apiVersion: v1
    kind: Node
    metadata:
      name: node-1
      labels: {kubernetes.io/hostname: node-1, node-role.kubernetes.io/worker: ""}
    status:
      conditions:
      - {type: Ready, status: "True", reason: KubeletReady, message: ready}
      nodeInfo: {kubeletVersion: v1.33.0, osImage: Debian GNU/Linux 12, kernelVersion: 6.1.0, containerRuntimeVersion: everynode://0.1.0,
                 machineID: m, systemUUID: s, bootID: b, kubeProxyVersion: "", operatingSystem: linux, architecture: amd64}
      addresses:
      - {type: InternalIP, address: 10.0.0.1}
    """)


def create_ds(server, text=DS):
    return server.kubectl("create", "-f", "-", input=text)


def header(out):
    return out.splitlines()[0].split()


def test_create_with_default_validation(server):
    out = create_ds(server).stdout
    assert out.strip() == "daemonset.apps/fluentd created"


def test_create_rejects_misplaced_fields_by_path(server):
    result = server.kubectl("create", "-f", str(EXAMPLES / "k8s-docs-fluentd.yaml"), check=False)
    assert result.returncode == 1
    if is_120(server):
        # 1.20 validates on the client, against /openapi/v2, before sending anything.
        assert "error validating data: [ValidationError(DaemonSet.spec.template)" in result.stderr
        for field in ("tolerations", "containers"):
            assert f'unknown field "{field}" in io.k8s.api.core.v1.PodTemplateSpec' in result.stderr
    else:
        assert "Error from server (BadRequest)" in result.stderr
        for field in ("spec.template.tolerations", "spec.template.containers"):
            assert f'unknown field "{field}"' in result.stderr
    assert server.kubectl("get", "ds", "-A", "-o", "name").stdout == ""


def test_example_manifests_through_create(server):
    """The other three manifests of tests/examples as `kubectl create -f` treats them (the
    fluentd one is the test above)."""
    for broken, line in (("dce-hwameistor-en.yaml", 16), ("cka-fluentd-es-demo.yaml", 30)):
        result = server.kubectl("create", "-f", str(EXAMPLES / broken), check=False)
        assert result.returncode == 1
        assert f"error converting YAML to JSON: yaml: line {line}:" in result.stderr, result.stderr
    assert server.kubectl("get", "ds", "-A", "-o", "name").stdout == "", "nothing is created"
    # kubectl clears resourceVersion before creating (upstream's resource helper), so the
    # exported manifest creates; the server sets uid, creationTimestamp and generation anew.
    exported = EXAMPLES / "dce-hwameistor-zh.yaml"
    original = yaml.safe_load(exported.read_text())
    server.kubectl("create", "namespace", "hwameistor")
    out = server.kubectl("create", "-f", str(exported)).stdout
    assert out.strip() == "daemonset.apps/hwameistor-local-disk-manager created"
    created = json.loads(server.kubectl("get", "ds", "-n", "hwameistor", "-o", "json").stdout)["items"][0]
    assert created["metadata"]["uid"] != original["metadata"]["uid"]
    assert created["metadata"]["generation"] == 1
    assert created["status"].get("desiredNumberScheduled", 0) == 0, "status is the server's, not the file's"


def test_apply_twice_then_unchanged(server):
    assert server.kubectl("apply", "-f", "-", input=DS).stdout.strip() == "daemonset.apps/fluentd created"
    changed = DS.replace("fluentd:v1.16", "fluentd:v1.17").replace('{name: A, value: "1"}', '{name: B, value: "2"}')
    assert server.kubectl("apply", "-f", "-", input=changed).stdout.strip() == "daemonset.apps/fluentd configured"
    obj = json.loads(server.kubectl("get", "ds", "fluentd", "-o", "json").stdout)
    container = obj["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "fluentd:v1.17"
    assert container["env"] == [{"name": "B", "value": "2"}], "the three-way patch removed what the old config had"
    assert obj["metadata"]["generation"] == 2
    assert server.kubectl("apply", "-f", "-", input=changed).stdout.strip() == "daemonset.apps/fluentd unchanged"


def managers(server, name="fluentd"):
    # kubectl 1.20 always prints managedFields; later versions hide them unless asked.
    show = [] if is_120(server) else ["--show-managed-fields"]
    obj = json.loads(server.kubectl("get", "ds", name, "-o", "json", *show).stdout)
    return {(e["manager"], e["operation"]): e["fieldsV1"] for e in obj["metadata"]["managedFields"]}


def test_apply_server_side_creates_updates_and_records_the_manager(server):
    out = server.kubectl("apply", "--server-side", "-f", "-", input=DS).stdout
    assert out.strip() == "daemonset.apps/fluentd serverside-applied"
    owned = managers(server)[("kubectl", "Apply")]
    container = owned["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"fluentd"}']
    assert set(container) == {".", "f:env", "f:image", "f:name"}
    changed = DS.replace("fluentd:v1.16", "fluentd:v1.17").replace('{name: A, value: "1"}', '{name: B, value: "2"}')
    assert server.kubectl("apply", "--server-side", "-f", "-", input=changed).stdout.strip() == "daemonset.apps/fluentd serverside-applied"
    obj = json.loads(server.kubectl("get", "ds", "fluentd", "-o", "json").stdout)
    container = obj["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "fluentd:v1.17"
    assert container["env"] == [{"name": "B", "value": "2"}], "the env var no longer applied is removed"
    if not is_120(server):
        assert "managedFields" not in obj["metadata"], "kubectl hides managedFields unless asked"


def test_apply_server_side_conflict_names_the_manager_and_field_then_force_takes_it(server):
    server.kubectl("apply", "--server-side", "-f", "-", input=DS)
    other = DS.replace("fluentd:v1.16", "fluentd:v2")
    result = server.kubectl("apply", "--server-side", "--field-manager=ops", "-f", "-", input=other, check=False)
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first == 'error: Apply failed with 1 conflict: conflict with "kubectl": .spec.template.spec.containers[name="fluentd"].image'
    assert "--force-conflicts" in result.stderr
    image = server.kubectl("get", "ds", "fluentd", "-o", "jsonpath={.spec.template.spec.containers[0].image}").stdout
    assert image == "fluentd:v1.16", "a refused apply changes nothing"
    server.kubectl("apply", "--server-side", "--field-manager=ops", "--force-conflicts", "-f", "-", input=other)
    image = server.kubectl("get", "ds", "fluentd", "-o", "jsonpath={.spec.template.spec.containers[0].image}").stdout
    assert image == "fluentd:v2"
    fields = managers(server)
    path = lambda m: fields[(m, "Apply")]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"fluentd"}']
    assert "f:image" in path("ops")
    assert "f:image" not in path("kubectl"), "forcing moved the field to the new manager"


def test_apply_server_side_conflicts_with_an_imperative_change(server):
    create_ds(server)
    server.kubectl("set", "image", "ds/fluentd", "fluentd=fluentd:v3")
    result = server.kubectl("apply", "--server-side", "-f", "-", input=DS, check=False)
    assert result.returncode == 1
    assert 'conflict with "kubectl-set" using apps/v1: .spec.template.spec.containers[name="fluentd"].image' in result.stderr
    assert ("kubectl-create", "Update") in managers(server)


def test_get_wide_yaml_json_jsonpath(server):
    create_ds(server)
    out = server.kubectl("get", "ds").stdout
    assert header(out) == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE", "SELECTOR", "AGE"]
    assert out.splitlines()[1].split()[:7] == ["fluentd", "0", "0", "0", "0", "0", "<none>"]
    wide = server.kubectl("get", "ds", "-o", "wide").stdout
    assert header(wide)[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide.splitlines()[1].split()[-3:] == ["fluentd", "fluentd:v1.16", "name=fluentd"]
    assert yaml.safe_load(server.kubectl("get", "ds", "fluentd", "-o", "yaml").stdout)["kind"] == "DaemonSet"
    assert json.loads(server.kubectl("get", "ds", "fluentd", "-o", "json").stdout)["spec"]["revisionHistoryLimit"] == 10
    path = server.kubectl("get", "ds", "fluentd", "-o", "jsonpath={.spec.updateStrategy.type}").stdout
    assert path == "RollingUpdate"


def test_get_watch_prints_changes(server):
    create_ds(server)
    import subprocess
    env = dict(os.environ, KUBECONFIG=server.kubeconfig, HOME=str(server.data_dir / "home"))
    from conftest import kubectl_binary
    proc = subprocess.Popen([kubectl_binary(), "get", "ds", "-w"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline()
        assert first.split()[0] == "NAME"
        assert proc.stdout.readline().split()[0] == "fluentd"
        # The watch resumes from the list's resourceVersion, so a change made now is not missed.
        server.kubectl("label", "ds", "fluentd", "tier=logging")
        assert proc.stdout.readline().split()[0] == "fluentd", "the change arrives as a new row"
    finally:
        proc.kill()
        proc.wait()


def test_describe_daemonset(server, api):
    create_ds(server)
    import kubernetes
    ds = kubernetes.client.AppsV1Api(api).read_namespaced_daemon_set("fluentd", "default")
    event = {"metadata": {"name": "fluentd.1"}, "involvedObject": {"kind": "DaemonSet", "namespace": "default", "name": "fluentd", "uid": ds.metadata.uid, "apiVersion": "apps/v1"},
             "reason": "SuccessfulCreate", "message": "Created pod: fluentd-abcde", "type": "Normal", "source": {"component": "daemonset-controller"}, "count": 1,
             "firstTimestamp": ds.metadata.creation_timestamp.isoformat().replace("+00:00", "Z"), "lastTimestamp": ds.metadata.creation_timestamp.isoformat().replace("+00:00", "Z")}
    kubernetes.client.CoreV1Api(api).create_namespaced_event("default", event)
    out = server.kubectl("describe", "ds", "fluentd").stdout
    assert "Name:           fluentd" in out
    assert "Selector:       name=fluentd" in out
    assert "Desired Number of Nodes Scheduled: 0" in out
    assert "Image:      fluentd:v1.16" in out
    assert "SuccessfulCreate" in out and "Created pod: fluentd-abcde" in out


def test_edit_with_editor_script(server):
    create_ds(server)
    editor = server.data_dir / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/fluentd:v1.16/fluentd:v2.0/' \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    out = server.kubectl("edit", "ds", "fluentd", env={"EDITOR": str(editor)}).stdout
    assert out.strip() == "daemonset.apps/fluentd edited"
    image = server.kubectl("get", "ds", "fluentd", "-o", "jsonpath={.spec.template.spec.containers[0].image}").stdout
    assert image == "fluentd:v2.0"


def test_label_and_annotate(server):
    create_ds(server)
    assert server.kubectl("label", "ds", "fluentd", "tier=logging").stdout.strip() == "daemonset.apps/fluentd labeled"
    assert server.kubectl("annotate", "ds", "fluentd", "owner=platform").stdout.strip() == "daemonset.apps/fluentd annotated"
    meta = json.loads(server.kubectl("get", "ds", "fluentd", "-o", "json").stdout)["metadata"]
    assert meta["labels"]["tier"] == "logging" and meta["annotations"]["owner"] == "platform"
    # kubectl 1.20 says "labeled" for a removal too; later versions say "unlabeled".
    removed = "labeled" if is_120(server) else "unlabeled"
    assert server.kubectl("label", "ds", "fluentd", "tier-").stdout.strip() == f"daemonset.apps/fluentd {removed}"
    refused = server.kubectl("label", "ds", "fluentd", "k8s-app=other", check=False)
    assert refused.returncode == 1 and "'k8s-app' already has a value (fluentd-logging)" in refused.stderr


def test_patch_all_three_types(server):
    create_ds(server)
    strategic = server.kubectl("patch", "ds", "fluentd", "-p", '{"spec":{"template":{"spec":{"containers":[{"name":"fluentd","env":[{"name":"B","value":"2"}]}]}}}}')
    assert strategic.stdout.strip() == "daemonset.apps/fluentd patched"
    env = json.loads(server.kubectl("get", "ds", "fluentd", "-o", "jsonpath={.spec.template.spec.containers[0].env}").stdout)
    assert env == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], "strategic merge merges env by name"
    server.kubectl("patch", "ds", "fluentd", "--type=merge", "-p", '{"spec":{"minReadySeconds":5}}')
    server.kubectl("patch", "ds", "fluentd", "--type=json", "-p", '[{"op":"replace","path":"/spec/revisionHistoryLimit","value":3}]')
    spec = json.loads(server.kubectl("get", "ds", "fluentd", "-o", "json").stdout)["spec"]
    assert (spec["minReadySeconds"], spec["revisionHistoryLimit"]) == (5, 3)
    bad = server.kubectl("patch", "ds", "fluentd", "--type=merge", "-p", '{"spec":{"minReadySeconds":-1}}', check=False)
    assert bad.returncode == 1
    assert 'The DaemonSet "fluentd" is invalid: spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0' in bad.stderr


def test_delete_cascades(server):
    for name in ("bg", "fg", "orphan"):
        create_ds(server, DS.replace("name: fluentd\n  labels", f"name: {name}\n  labels"))
    assert server.kubectl("delete", "ds", "bg", "--cascade=background").stdout.strip() == 'daemonset.apps "bg" deleted'
    # Foreground and orphan deletion wait for the garbage collector to remove the finalizer; here
    # we check what the API does with them and do not wait.
    server.kubectl("delete", "ds", "fg", "--cascade=foreground", "--wait=false")
    server.kubectl("delete", "ds", "orphan", "--cascade=orphan", "--wait=false")
    fins = {d["metadata"]["name"]: d["metadata"].get("finalizers") for d in json.loads(server.kubectl("get", "ds", "-o", "json").stdout)["items"]}
    assert fins == {"fg": ["foregroundDeletion"], "orphan": ["orphan"]}


def test_get_nodes_taint_cordon_uncordon(server):
    server.kubectl("create", "-f", "-", input=NODE)
    out = server.kubectl("get", "nodes").stdout
    assert header(out) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert out.splitlines()[1].split()[:3] == ["node-1", "Ready", "worker"]
    wide = server.kubectl("get", "nodes", "-o", "wide").stdout
    assert "INTERNAL-IP" in header(wide) and "10.0.0.1" in wide
    assert server.kubectl("taint", "nodes", "node-1", "dedicated=gpu:NoSchedule").stdout.strip() == "node/node-1 tainted"
    taints = json.loads(server.kubectl("get", "node", "node-1", "-o", "jsonpath={.spec.taints}").stdout)
    assert taints == [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    assert server.kubectl("taint", "nodes", "node-1", "dedicated:NoSchedule-").stdout.strip() == "node/node-1 untainted"
    assert server.kubectl("cordon", "node-1").stdout.strip() == "node/node-1 cordoned"
    assert server.kubectl("get", "nodes").stdout.splitlines()[1].split()[1] == "Ready,SchedulingDisabled"
    assert server.kubectl("uncordon", "node-1").stdout.strip() == "node/node-1 uncordoned"


def test_api_resources(server):
    out = server.kubectl("api-resources").stdout
    # `nodes` and `pods` are also resources of metrics.k8s.io, as with metrics-server.
    rows = [line.split() for line in out.splitlines()[1:]]
    assert ["daemonsets", "ds", "apps/v1", "true", "DaemonSet"] in rows
    assert ["nodes", "no", "v1", "false", "Node"] in rows
    assert ["nodes", "metrics.k8s.io/v1beta1", "false", "NodeMetrics"] in rows
    assert ["pods", "metrics.k8s.io/v1beta1", "true", "PodMetrics"] in rows
    # And of everynode's usage history (the console's charts).
    assert ["nodes", "usage.everynode.io/v1", "false", "NodeUsage"] in rows
    assert ["pods", "usage.everynode.io/v1", "true", "PodUsage"] in rows


def test_explain_update_strategy(server):
    out = server.kubectl("explain", "ds.spec.updateStrategy").stdout
    if is_120(server):
        # 1.20 reads /openapi/v2 and names object fields <Object>.
        assert "KIND:     DaemonSet" in out
        assert "RESOURCE: updateStrategy <Object>" in out
        assert "rollingUpdate\t<Object>" in out
    else:
        assert "KIND:       DaemonSet" in out
        assert "FIELD: updateStrategy <DaemonSetUpdateStrategy>" in out
        assert "rollingUpdate\t<RollingUpdateDaemonSet>" in out
    assert 'Type of daemon set update. Can be "RollingUpdate" or "OnDelete"' in out


def test_create_generators_send_protobuf_and_work(server):
    """`kubectl create namespace|configmap|secret|serviceaccount|service|priorityclass` send
    protobuf bodies; they are read like JSON."""
    assert server.kubectl("create", "namespace", "team-a").stdout == "namespace/team-a created\n"
    server.kubectl("create", "configmap", "settings", "--from-literal=level=debug", "-n", "team-a")
    server.kubectl("create", "secret", "generic", "creds", "--from-literal=password=s3cret", "-n", "team-a")
    server.kubectl("create", "serviceaccount", "robot", "-n", "team-a")
    server.kubectl("create", "service", "clusterip", "web", "--tcp=80:8080", "-n", "team-a")
    server.kubectl("create", "priorityclass", "high", "--value=1000", "--description=important")
    get = lambda *a: server.kubectl("get", *a).stdout
    assert get("cm", "settings", "-n", "team-a", "-o", "jsonpath={.data.level}") == "debug"
    assert get("secret", "creds", "-n", "team-a", "-o", "jsonpath={.data.password}") == "czNjcmV0"
    assert get("sa", "robot", "-n", "team-a", "-o", "jsonpath={.metadata.namespace}") == "team-a"
    assert get("svc", "web", "-n", "team-a", "-o", "jsonpath={.spec.ports[0].targetPort}") == "8080"
    assert get("pc", "high", "-o", "jsonpath={.value}") == "1000"
    again = server.kubectl("create", "namespace", "team-a", check=False)
    assert again.returncode == 1
    assert 'namespaces "team-a" already exists' in again.stderr


def test_debug_node_sends_a_pod_as_protobuf(server):
    """`kubectl debug node/x` creates its Pod through client-go's typed client, as protobuf: the
    pod lands on the node with the host's namespaces and root filesystem mounted."""
    server.kubectl("create", "-f", "-", input=NODE)
    out = server.kubectl("debug", "node/node-1", "--image=busybox").stdout
    name = out.split("Creating debugging pod ")[1].split()[0]
    pod = json.loads(server.kubectl("get", "pod", name, "-o", "json").stdout)
    spec = pod["spec"]
    assert spec["nodeName"] == "node-1"
    assert spec["hostNetwork"] is True and spec["hostPID"] is True
    assert spec["restartPolicy"] == "Never"
    assert {"name": "host-root", "hostPath": {"path": "/", "type": ""}} in spec["volumes"] or any(
        v.get("hostPath", {}).get("path") == "/" for v in spec["volumes"])
    container = spec["containers"][0]
    assert container["image"] == "busybox"
    assert {"mountPath": "/host", "name": "host-root"}.items() <= container["volumeMounts"][0].items()
    # Go writes `stdin: false` and `ports: null`... every non-pointer field; unset zeros do not
    # appear, as they would not in JSON.
    assert "stdin" not in container and "hostname" not in spec
    assert pod["metadata"]["creationTimestamp"]
