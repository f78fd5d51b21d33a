"""The web console in real Chromium (Debian's, driven by Playwright) against `everynode up
--nodes 3`: the create wizard with every section, live status, logs, edit and rollout, roll back,
redeploy, delete with orphan; each example manifest through the YAML import; nodes and
namespaces. Every page is saved as a screenshot under target/console-screenshots."""

import json
import os
import pathlib
import re
import subprocess
import tempfile
import time

import kubernetes
import pytest
import yaml

from conftest import EXAMPLES, REPO, chromium_path, everynode_binary, remove_tree, stop_process, wait_for

SHOTS = pathlib.Path(os.environ.get("EVERYNODE_SCREENSHOTS", REPO / "target" / "console-screenshots"))


@pytest.fixture(scope="module")
def up():
    """`everynode up --nodes 3` in a temporary data directory."""
    data = pathlib.Path(tempfile.mkdtemp(prefix="everynode-console-"))
    log = open(data / "up.log", "wb")
    proc = subprocess.Popen([everynode_binary(), "up", "--nodes", "3", "--data-dir", str(data / "d"),
                             "--listen", "127.0.0.1:0"], stdout=log, stderr=subprocess.STDOUT)
    try:
        url = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and url is None:
            found = re.search(r"listening on (https://\S+)", (data / "up.log").read_text())
            url = found and found.group(1)
            if proc.poll() is not None:
                raise RuntimeError((data / "up.log").read_text())
            time.sleep(0.1)
        assert url, "everynode up did not start"
        client = kubernetes.config.new_client_from_config(config_file=str(data / "d" / "kubeconfig"))
        core = kubernetes.client.CoreV1Api(client)

        def three_ready():
            nodes = core.list_node().items
            return sum(1 for n in nodes for c in ((n.status and n.status.conditions) or []) if c.type == "Ready" and c.status == "True") == 3

        wait_for("three Ready nodes", three_ready)
        yield {"url": url, "token": (data / "d" / "admin.token").read_text().strip(), "client": client,
               "data_dir": str(data / "d")}
        client.close()
    finally:
        stop_process(proc)
        log.close()
        remove_tree(data)


@pytest.fixture(scope="module")
def browser(up):
    from playwright.sync_api import sync_playwright
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        context = b.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(up["url"] + "/ui/")
        assert "/ui/login" in page.url
        shot(page, "login")
        page.fill("input[name=token]", up["token"])
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/daemonsets")
        yield page
        context.close()
        b.close()


def shot(page, name):
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def apps(up):
    return kubernetes.client.AppsV1Api(up["client"])


def core(up):
    return kubernetes.client.CoreV1Api(up["client"])


def test_a_wrong_token_is_refused(up):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        page = b.new_context(ignore_https_errors=True).new_page()
        page.goto(up["url"] + "/ui/login")
        page.fill("input[name=token]", "not-the-token")
        page.click("button[type=submit]")
        assert "did not accept that token" in page.inner_text(".error")
        page.goto(up["url"] + "/ui/daemonsets")
        assert "/ui/login" in page.url
        b.close()


def set_fields(page, fields):
    """Fills form fields by name, as a user would: types into inputs and text areas, picks
    options, ticks checkboxes (value True)."""
    for name, value in fields.items():
        selector = f"[name='{name}']"
        tag = page.eval_on_selector(selector, "e => e.tagName")
        if value is True:
            page.check(selector)
        elif tag == "SELECT":
            page.select_option(selector, value)
        else:
            page.fill(selector, value)


def add_row(page, template, container=None):
    scope = f"#containers fieldset[data-container='{container}'] " if container is not None else ""
    page.click(f"{scope}button[data-add={template}]")


def fill_wizard(page):
    set_fields(page, {"name": "node-agent", "namespace": "default",
                      "description": "Collects node facts; created by the browser test."})
    shot(page, "wizard-1-basic")
    page.click("button[data-step='1']")
    for template, count in (("tpl-port", 1), ("tpl-env", 2), ("tpl-vol", 2)):
        for _ in range(count):
            add_row(page, template, container=0)
    add_row(page, "tpl-init")
    set_fields(page, {
        # basic
        "c.0.name": "agent", "c.0.image": "busybox:1.36", "c.0.pullPolicy": "IfNotPresent", "c.0.privileged": True,
        "c.0.cpuRequest": "10m", "c.0.cpuLimit": "500m", "c.0.memRequest": "16Mi", "c.0.memLimit": "256Mi",
        "c.0.port.0.name": "metrics", "c.0.port.0.containerPort": "9100",
        # lifecycle
        "c.0.command": "sh\n-c",
        "c.0.args": 'echo "agent up on $NODE mode $MODE"; while true; do echo tick; sleep 2; done',
        "c.0.postStart": "sh\n-c\necho started > /scratch/started", "c.0.preStop": "sh\n-c\necho stopping",
        # health checks
        "c.0.liveness.type": "exec", "c.0.liveness.command": "true", "c.0.liveness.periodSeconds": "5",
        "c.0.readiness.type": "exec", "c.0.readiness.command": "test\n-d\n/host/proc/1", "c.0.readiness.periodSeconds": "1",
        "c.0.startup.type": "exec", "c.0.startup.command": "true", "c.0.startup.failureThreshold": "30",
        # environment
        "c.0.env.0.name": "MODE", "c.0.env.0.source": "value", "c.0.env.0.value": "fast",
        "c.0.env.1.name": "NODE", "c.0.env.1.source": "field", "c.0.env.1.ref": "spec.nodeName",
        # data storage
        "c.0.vol.0.type": "hostPath", "c.0.vol.0.name": "proc", "c.0.vol.0.source": "/proc",
        "c.0.vol.0.hostPathType": "Directory", "c.0.vol.0.mountPath": "/host/proc", "c.0.vol.0.readOnly": True,
        "c.0.vol.1.type": "emptyDir", "c.0.vol.1.name": "scratch", "c.0.vol.1.mountPath": "/scratch",
        # security
        "c.0.runAsUser": "0", "c.0.capAdd": "SYS_PTRACE",
        # an init container
        "c.1.name": "setup", "c.1.image": "busybox:1.36", "c.1.command": "sh\n-c\necho init done",
    })
    shot(page, "wizard-2-containers")
    page.click("button[data-step='2']")
    page.click("button[data-add=tpl-svc-port]")
    set_fields(page, {"svc.enabled": True, "svc.type": "Headless", "svc.port.0.name": "metrics",
                      "svc.port.0.port": "9100", "svc.port.0.targetPort": "metrics"})
    shot(page, "wizard-3-service")
    page.click("button[data-step='3']")
    for template in ("tpl-tol", "tpl-na", "tpl-pa"):
        add_row(page, template)
    set_fields(page, {
        "dnsPolicy": "None", "nameservers": "127.0.0.1", "searches": "cluster.local", "dnsOptions": "ndots=2",
        "hostAliases": "10.9.8.7 metrics.local",
        "strategy": "RollingUpdate", "maxUnavailable": "1", "maxSurge": "0", "minReadySeconds": "0",
        "revisionHistoryLimit": "10", "terminationGracePeriodSeconds": "5",
        "tol.0.key": "dedicated", "tol.0.operator": "Equal", "tol.0.value": "gpu", "tol.0.effect": "NoExecute",
        "tol.0.seconds": "60", "nodeSelector": "kubernetes.io/os=linux",
        "na.0.key": "kubernetes.io/hostname", "na.0.values": "node-1, node-2, node-3",
        "pa.0.kind": "anti", "pa.0.labels": "app=not-this-one", "pa.0.topologyKey": "kubernetes.io/hostname",
        "labels": "team=infra", "annotations": "owner=ops", "podLabels": "app=node-agent",
        "podAnnotations": "scrape=true", "syncTimezone": True,
    })
    shot(page, "wizard-4-advanced")
    page.click("button[data-step='4']")
    page.wait_for_function("document.getElementById('preview').textContent.includes('host-localtime')")
    shot(page, "wizard-5-review")


def test_wizard_checks_the_name_as_you_type_and_puts_server_errors_on_their_field(up, browser):
    page = browser
    page.goto(up["url"] + "/ui/create")
    page.fill("input[name=name]", "Bad_Name")
    assert "lowercase letters" in page.inner_text("input[name=name] + .field-error")
    page.fill("input[name=name]", "fine-name")
    page.click("button[data-step='1']")
    page.fill("input[name='c.0.name']", "c")
    page.fill("input[name='c.0.image']", "busybox")
    page.fill("input[name='c.0.memRequest']", "lots")
    page.click("button.primary[type=submit]")
    error = page.wait_for_selector("input[name='c.0.memRequest'] + .field-error")
    assert "spec.template.spec.containers[0].resources.requests" in error.inner_text()
    shot(page, "wizard-field-error")
    assert [d.metadata.name for d in apps(up).list_namespaced_daemon_set("default").items] == []


def test_create_by_form_then_operate_it(up, browser):
    page = browser
    page.goto(up["url"] + "/ui/daemonsets")
    shot(page, "list-empty")
    page.goto(up["url"] + "/ui/create")
    fill_wizard(page)
    # The first press shows what the create does to the nodes, and creates nothing.
    page.click("button.primary[type=submit]")
    preview = page.wait_for_selector("#change-preview")
    assert "3 nodes gain a pod" in preview.inner_text()
    assert page.inner_text("button.primary[type=submit]") == "Confirm create"
    assert apps(up).list_namespaced_daemon_set("default").items == []
    # It is the API's own answer for the same object.
    manifest = next(d for d in yaml.safe_load_all(page.text_content("#preview")) if d["kind"] == "DaemonSet")
    answer = up["client"].call_api(*up["client"].param_serialize(
        "POST", "/apis/apps/v1/namespaces/default/daemonsets/node-agent/preview",
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=manifest, auth_settings=["BearerToken"]))
    answer.read()
    summary = json.loads(answer.data)["summary"]
    shown = {k: int(preview.get_attribute(f"data-{k}")) for k in ("create", "delete", "replace", "keep")}
    assert shown == summary, (shown, summary)
    shot(page, "wizard-6-preview")
    page.click("button.primary[type=submit]")
    page.wait_for_url("**/ui/daemonsets/default/node-agent?tab=overview**")

    ds = apps(up).read_namespaced_daemon_set("node-agent", "default")
    spec = ds.spec.template.spec
    assert ds.metadata.annotations["kubernetes.io/description"].startswith("Collects node facts")
    # The upgrade section's maximum duration, 600 s unless changed (DCE's default).
    assert ds.metadata.annotations["everynode.dev/progress-deadline-seconds"] == "600"
    assert [c.name for c in spec.init_containers] == ["setup"]
    assert spec.dns_config.nameservers == ["127.0.0.1"] and spec.host_aliases[0].hostnames == ["metrics.local"]
    assert spec.tolerations[0].toleration_seconds == 60
    assert spec.affinity.pod_anti_affinity.required_during_scheduling_ignored_during_execution[0].topology_key == "kubernetes.io/hostname"
    assert spec.containers[0].volume_mounts[-1].mount_path == "/etc/localtime"
    assert core(up).read_namespaced_service("node-agent", "default").spec.cluster_ip == "None"

    # The overview updates itself as the pods become Ready on the 3 nodes.
    page.wait_for_selector("#status-panel[data-status=Running]", timeout=120_000)
    assert page.inner_text("#status-panel b.ready") == "3"
    assert page.locator("#pods tbody tr[data-status=Running]").count() == 3
    # The wizard's Service is on the page, with its endpoints as the EndpointSlices list them.
    page.wait_for_selector("#service-panel[data-service=node-agent] b[data-field=ready]:text-is('3')", timeout=60_000)
    assert page.inner_text("#service-panel code[data-field=cluster-ip]") == "None"
    assert page.inner_text("#service-panel code[data-field=ports]") == "9100/TCP → metrics"
    assert sorted(page.locator("#endpoints tbody tr[data-state=ready]").evaluate_all(
        "rows => rows.map(r => r.dataset.node)")) == ["node-1", "node-2", "node-3"]
    shot(page, "detail-overview")

    # The list shows it live.
    page.goto(up["url"] + "/ui/daemonsets")
    page.wait_for_selector("#daemonsets tr[data-name=node-agent][data-status=Running]")
    shot(page, "list")

    for tab in ("placement", "events", "metadata", "edit", "yaml", "delete", "pods"):
        page.goto(up["url"] + f"/ui/daemonsets/default/node-agent?tab={tab}")
        shot(page, f"detail-{tab}")
    assert page.locator("#placement-grid i.c").count() == 0  # the pods tab has no placement grid
    # The placement grid: a cell per node; a click names the node's pod.
    page.goto(up["url"] + "/ui/daemonsets/default/node-agent?tab=placement")
    assert page.locator("#placement-grid section[data-group=Running] i.c.running").count() == 3
    page.click("#placement-grid i.c[title=node-2]")
    assert page.inner_text("#placement-detail dd[data-field=node]") == "node-2"
    pod_on_2 = [p.metadata.name for p in core(up).list_namespaced_pod("default", label_selector="app=node-agent").items
                if p.spec.node_name == "node-2"]
    assert page.inner_text("#placement-detail dd[data-field=pod]") == pod_on_2[0]

    # A pod's logs, then followed.
    page.goto(up["url"] + "/ui/daemonsets/default/node-agent?tab=pods")
    page.click("#pods tbody tr >> nth=0 >> a:text('logs')")
    page.wait_for_selector("#logs")
    page.select_option("select[name=container]", "agent")
    page.click("#log-options button[type=submit]")
    page.wait_for_function("document.getElementById('logs').textContent.includes('agent up on node-')")
    shot(page, "logs")
    page.check("input[name=follow]")
    page.click("#log-options button[type=submit]")
    page.wait_for_function("(document.getElementById('logs').textContent.match(/tick/g) || []).length >= 2", timeout=30_000)
    shot(page, "logs-follow")

    # Logs of all pods: every node's lines, prefixed; narrowed to a node and a text; followed.
    page.goto(up["url"] + "/ui/daemonsets/default/node-agent?tab=pods")
    page.click("#all-logs")
    page.wait_for_selector("#logs")
    text = page.inner_text("#logs")
    for node in ("node-1", "node-2", "node-3"):
        assert re.search(rf"^\[{node}/node-agent-\w+/agent\] agent up on {node}", text, re.M), text
    page.select_option("select[name=node]", "node-2")
    page.fill("input[name=search]", "AGENT UP")
    page.click("#log-options button[type=submit]")
    page.wait_for_selector("#logs")
    lines = page.inner_text("#logs").strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[node-2/") and "agent up on node-2" in lines[0], lines
    page.select_option("select[name=node]", "")
    page.fill("input[name=search]", "tick")
    page.check("input[name=follow]")
    page.click("#log-options button[type=submit]")
    page.wait_for_function("""() => {
        const text = document.getElementById('logs').textContent;
        return ['node-1', 'node-2', 'node-3'].every(n => text.includes('[' + n + '/'));
    }""", timeout=30_000)
    assert "agent up" not in page.inner_text("#logs")
    shot(page, "logs-all-pods")

    # Edit the image and watch the rollout finish.
    page.goto(up["url"] + "/ui/daemonsets/default/node-agent?tab=edit")
    page.fill("input[name='image.agent']", "busybox:1.37")
    page.fill("input[name=changeCause]", "image 1.37")
    # The first press previews: every node restarts its pod, in steps of maxUnavailable 1.
    page.click("form.card button[type=submit]")
    preview = page.wait_for_selector("#change-preview")
    assert preview.get_attribute("data-replace") == "3", preview.inner_text()
    assert "in 3 steps of up to 1 node" in preview.inner_text()
    assert page.input_value("input[name='image.agent']") == "busybox:1.37"
    assert apps(up).read_namespaced_daemon_set("node-agent", "default").spec.template.spec.containers[0].image == "busybox:1.36"
    shot(page, "detail-edit-preview")
    page.click("form.card button[type=submit]")
    page.wait_for_url("**tab=overview**")
    page.wait_for_selector("#status-panel code.images:text('busybox:1.37')")
    page.wait_for_selector("#status-panel[data-status=Running]", timeout=120_000)
    assert page.inner_text("#status-panel b.updated") == "3"
    shot(page, "detail-after-edit")

    # Revisions: diff 1 → 2, then roll back to 1.
    page.goto(up["url"] + "/ui/daemonsets/default/node-agent?tab=revisions&from=1&to=2")
    assert page.locator("#revisions tbody tr").count() == 2
    assert "image: busybox:1.37" in page.inner_text(".diff .add")
    shot(page, "detail-revisions")
    page.click("#revisions tr[data-revision='1'] button")
    page.wait_for_url("**tab=overview**")
    assert "Rolled back to revision 1" in page.inner_text(".notice")
    page.wait_for_selector("#status-panel code.images:text('busybox:1.36')")
    page.wait_for_selector("#status-panel[data-status=Running]", timeout=120_000)
    assert apps(up).read_namespaced_daemon_set("node-agent", "default").spec.template.spec.containers[0].image == "busybox:1.36"

    # The list follows changes made elsewhere (here kubectl's way: a patch over the API) without
    # a reload.
    page.goto(up["url"] + "/ui/daemonsets")
    page.wait_for_selector("#daemonsets tbody[data-updates]")
    page.evaluate("window.loadedOnce = true")
    apps(up).patch_namespaced_daemon_set("node-agent", "default", {"metadata": {"labels": {"seen": "live"}},
                                                                   "spec": {"minReadySeconds": 1}})
    page.wait_for_selector("#daemonsets tr[data-name=node-agent][data-status=Running]")
    apps(up).patch_namespaced_daemon_set("node-agent", "default", {"spec": {"template": {"spec": {
        "containers": [{"name": "agent", "image": "busybox:1.38"}]}}}})
    page.wait_for_selector("#daemonsets tr[data-name=node-agent] code:text('busybox:1.38')")
    page.wait_for_selector("#daemonsets tr[data-name=node-agent][data-status=Running]", timeout=120_000)
    assert page.evaluate("window.loadedOnce === true"), "the list was reloaded instead of updated in place"

    # Redeploy from the list: every pod is replaced.
    before = {p.metadata.name for p in core(up).list_namespaced_pod("default", label_selector="app=node-agent").items}
    page.goto(up["url"] + "/ui/daemonsets")
    page.click("#daemonsets tr[data-name=node-agent] button:text('Redeploy')")
    page.wait_for_url("**tab=overview**")
    restarted = apps(up).read_namespaced_daemon_set("node-agent", "default").spec.template.metadata.annotations
    assert "kubectl.kubernetes.io/restartedAt" in restarted

    def all_replaced():
        pods = core(up).list_namespaced_pod("default", label_selector="app=node-agent").items
        names = {p.metadata.name for p in pods if p.metadata.deletion_timestamp is None}
        ready = [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))]
        return len(names) == 3 and not (names & before) and len(ready) == 3

    wait_for("every pod replaced by the redeploy", all_replaced, timeout=120)

    # Edit in the full wizard, from the list: every section comes back filled, one change is
    # previewed and saved, and nothing else moves (the DaemonSet and its Service).
    stored = apps(up).read_namespaced_daemon_set("node-agent", "default")
    spec_before = up["client"].sanitize_for_serialization(stored.spec)
    svc_before = up["client"].sanitize_for_serialization(core(up).read_namespaced_service("node-agent", "default").spec)
    page.goto(up["url"] + "/ui/daemonsets")
    page.click("#daemonsets tr[data-name=node-agent] a:text('Edit')")
    page.wait_for_url("**/ui/daemonsets/default/node-agent/wizard")
    assert page.input_value("input[name=name]") == "node-agent"
    assert page.input_value("textarea[name=description]").startswith("Collects node facts")
    assert page.input_value("input[name='c.0.env.0.value']") == "fast"
    assert page.input_value("input[name='c.0.vol.0.mountPath']") == "/host/proc"
    assert page.input_value("input[name='c.1.name']") == "setup"
    assert page.input_value("input[name='tol.0.seconds']") == "60"
    assert page.input_value("select[name='svc.type']") == "Headless"
    assert page.input_value("input[name='svc.port.0.targetPort']") == "metrics"
    assert page.is_checked("input[name=syncTimezone]")
    shot(page, "wizard-edit")
    page.click("button[data-step='1']")
    page.fill("input[name='c.0.env.0.value']", "slow")
    page.click("button.primary[type=submit]")
    preview = page.wait_for_selector("#change-preview")
    assert preview.get_attribute("data-replace") == "3", preview.inner_text()
    assert page.inner_text("button.primary[type=submit]") == "Confirm save"
    # The controller's status writes between preview and confirm are not a conflict.
    apps(up).patch_namespaced_daemon_set_status("node-agent", "default", {"status": {"numberMisscheduled": 7}})
    page.click("button.primary[type=submit]")
    page.wait_for_url("**tab=overview**")
    spec_after = up["client"].sanitize_for_serialization(apps(up).read_namespaced_daemon_set("node-agent", "default").spec)
    assert spec_after["template"]["spec"]["containers"][0]["env"][0] == {"name": "MODE", "value": "slow"}
    spec_after["template"]["spec"]["containers"][0]["env"][0]["value"] = "fast"

    def pruned(v):
        """Without empty objects: `resources: {}` (which the roll back above leaves on the init
        container) and no `resources` ask for the same."""
        if isinstance(v, dict):
            return {k: pruned(x) for k, x in v.items() if x != {}}
        return [pruned(x) for x in v] if isinstance(v, list) else v

    assert pruned(spec_after) == pruned(spec_before)
    assert up["client"].sanitize_for_serialization(core(up).read_namespaced_service("node-agent", "default").spec) == svc_before
    page.wait_for_selector("#status-panel[data-status=Running]", timeout=120_000)
    page.wait_for_selector("#status-panel[data-status=Running]", timeout=120_000)

    # Delete, keeping the pods (orphan).
    page.goto(up["url"] + "/ui/daemonsets/default/node-agent?tab=delete")
    page.select_option("select[name=propagationPolicy]", "Orphan")
    page.click("button.danger")
    page.wait_for_url("**/ui/daemonsets?namespace=default**")
    assert "Deleted DaemonSet node-agent (Orphan)" in page.inner_text(".notice")
    wait_for("the DaemonSet gone", lambda: apps(up).list_namespaced_daemon_set("default").items == [])
    pods = core(up).list_namespaced_pod("default", label_selector="app=node-agent").items
    assert len(pods) == 3 and all(not p.metadata.owner_references for p in pods)
    for p in pods:
        core(up).delete_namespaced_pod(p.metadata.name, "default", grace_period_seconds=0)


def type_into_editor(page, text):
    """Puts `text` into the YAML editor (CodeMirror) as a paste would, and checks that the
    form's text area, which is what gets posted, follows it."""
    page.wait_for_selector("#yaml-editor[data-editor-ready]", state="attached")
    page.click(".cm-content")
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.evaluate("""text => {
        const data = new DataTransfer();
        data.setData("text/plain", text);
        document.querySelector(".cm-content").dispatchEvent(
            new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
    }""", text)
    assert page.eval_on_selector("#yaml-editor", "e => e.value") == text


def import_yaml(up, page, text):
    page.goto(up["url"] + "/ui/import")
    type_into_editor(page, text)
    page.click("form button.primary")
    page.wait_for_load_state()


def test_examples_through_the_yaml_import(up, browser):
    page = browser
    page.goto(up["url"] + "/ui/namespaces")
    page.fill("input[name=value]", "hwameistor")
    page.click("form.card button")
    assert "Created namespace hwameistor" in page.inner_text(".notice")
    shot(page, "namespaces")

    # Exported with kubectl get -o yaml: accepted once the server-set fields are gone, and says so.
    import_yaml(up, page, (EXAMPLES / "dce-hwameistor-zh.yaml").read_text())
    created = page.inner_text("p.created")
    assert "Created DaemonSet hwameistor/" in created, created
    assert page.inner_text("code.dropped") == "metadata.uid, metadata.resourceVersion, metadata.creationTimestamp, metadata.generation, status"
    shot(page, "import-exported")
    assert len(apps(up).list_namespaced_daemon_set("hwameistor").items) == 1

    # Damaged in translation, and with all indentation lost: YAML errors with line and column.
    for name in ("dce-hwameistor-en.yaml", "cka-fluentd-es-demo.yaml"):
        import_yaml(up, page, (EXAMPLES / name).read_text())
        message = page.inner_text(".yaml-error")
        line = int(re.search(r"YAML error at line (\d+), column \d+: ", message).group(1))
        assert "Nothing was created" in message
        # The editor marks that line, and highlights the YAML.
        page.wait_for_selector(".cm-line.cm-error-line")
        marked = page.inner_text(".cm-line.cm-error-line")
        assert marked.strip() == (EXAMPLES / name).read_text().splitlines()[line - 1].strip(), (marked, line)
        assert page.locator(".cm-content span[class]").count() > 10
        shot(page, f"import-{name.removesuffix('.yaml')}")

    # Highlighting: a key and a string value get different colours.
    page.goto(up["url"] + "/ui/import")
    type_into_editor(page, 'kind: "ConfigMap"\n')
    colours = page.eval_on_selector_all(".cm-line span", "spans => spans.map(s => [s.textContent, getComputedStyle(s).color])")
    by_text = dict(colours)
    assert by_text.get("kind") and by_text.get('"ConfigMap"') and by_text["kind"] != by_text['"ConfigMap"'], colours
    shot(page, "import-editor")

    # Fields one level too high: refused under strict validation, each unknown field by path.
    import_yaml(up, page, (EXAMPLES / "k8s-docs-fluentd.yaml").read_text())
    text = page.inner_text(".error")
    for field in ("spec.template.tolerations", "spec.template.containers", "spec.template.volumes",
                  "spec.template.priorityClassName", "spec.template.terminationGracePeriodSeconds"):
        assert f'unknown field "{field}"' in text, text
    assert "spec.template.spec.containers" in text
    shot(page, "import-k8s-docs-fluentd")
    assert apps(up).list_namespaced_daemon_set("kube-system").items == []
    assert [d.metadata.namespace for d in apps(up).list_daemon_set_for_all_namespaces().items] == ["hwameistor"]


def test_nodes_page_cordons_labels_and_taints(up, browser):
    page = browser
    page.goto(up["url"] + "/ui/nodes")
    assert page.locator("#nodes tbody tr").count() == 3
    shot(page, "nodes")
    row = "#nodes tr[data-node=node-3]"
    page.click(f"{row} button:text('Cordon')")
    assert "SchedulingDisabled" in page.inner_text(f"{row} .node-status")
    page.click(f"{row} button:text('Uncordon')")
    assert "SchedulingDisabled" not in page.inner_text(f"{row} .node-status")
    page.fill(f"{row} form[action$='/label'] input", "disk=ssd")
    page.click(f"{row} button:text('Add label')")
    assert core(up).read_node("node-3").metadata.labels["disk"] == "ssd"
    page.fill(f"{row} form[action$='/taint'] input", "dedicated=gpu:NoSchedule")
    page.click(f"{row} button:text('Add taint')")
    assert "dedicated=gpu:NoSchedule" in page.inner_text(f"{row} .taints")
    shot(page, "nodes-tainted")

    # A DaemonSet that does not tolerate it says which node is left out and why.
    import_yaml(up, page, """apiVersion: apps/v1
kind: DaemonSet
metadata: {name: picky, namespace: default}
spec:
  selector: {matchLabels: {app: picky}}
  template:
    metadata: {labels: {app: picky}}
    spec:
      containers: [{name: c, image: busybox, command: [sh, -c, "sleep 3600"]}]
""")
    page.goto(up["url"] + "/ui/daemonsets?namespace=default")
    page.wait_for_selector("#daemonsets tr[data-name=picky][data-status=Running]", timeout=120_000)
    assert "1 node: untolerated taint dedicated=gpu:NoSchedule" in page.text_content("#daemonsets tr[data-name=picky] details.reasons")
    page.goto(up["url"] + "/ui/daemonsets/default/picky?tab=placement")
    taint_group = "#placement-grid section[data-group=UntoleratedTaint]"
    assert "dedicated=gpu:NoSchedule" in page.inner_text(taint_group)
    # The reason filter narrows the grid to that group.
    page.select_option("#placement-reason", "UntoleratedTaint")
    assert page.inner_text("#placement-shown") == "1 node shown"
    assert page.is_hidden("#placement-grid section[data-group=Running]")
    page.click(f"{taint_group} i.c[title=node-3]")
    assert page.inner_text("#placement-detail dd[data-field=message]") == "dedicated=gpu:NoSchedule"
    shot(page, "detail-placement-taint")
    # Live: the taint goes, and node-3's cell leaves the group without a reload.
    core(up).patch_node("node-3", {"spec": {"taints": None}})
    page.wait_for_selector(taint_group, state="detached", timeout=60_000)
    page.wait_for_selector("#placement-grid i.c[title=node-3]", state="attached")
    assert page.inner_text("#placement-shown") == "0 nodes shown"
    apps(up).delete_namespaced_daemon_set("picky", "default")


def test_node_detail_dark_mode_phone_width_list_tools_and_pod_events(up, browser):
    page = browser
    # A node's page, from the nodes list: capacity, allocatable, conditions, its pods.
    page.goto(up["url"] + "/ui/nodes")
    page.click("#nodes tr[data-node=node-2] a:text('node-2')")
    page.wait_for_url("**/ui/nodes/node-2")
    assert "cpu" in page.inner_text("#node-resources") and "pods" in page.inner_text("#node-resources")
    assert "Ready" in page.inner_text("#node-conditions")
    assert page.locator("#node-pods").count() == 1
    shot(page, "node-detail")
    assert page.goto(up["url"] + "/ui/nodes/no-such-node").status == 404

    # The DaemonSet list filters, sorts and pages; a refresh keeps the filter.
    for name in ["tools-a", "tools-b"]:
        import_yaml(up, page, f"""apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: c, image: busybox, command: [sh, -c, "sleep 3600"]}}]
""")
    page.goto(up["url"] + "/ui/daemonsets?namespace=default")
    page.wait_for_selector("#daemonsets tr[data-name=tools-b]")
    page.fill(".table-tools[data-for=daemonsets] input[type=search]", "tools-a")
    assert page.locator("#daemonsets tr[data-name=tools-a]").is_visible()
    assert not page.locator("#daemonsets tr[data-name=tools-b]").is_visible()
    assert page.inner_text(".table-tools[data-for=daemonsets] .count").startswith("1 of ")
    page.fill(".table-tools[data-for=daemonsets] input[type=search]", "")
    page.click("#daemonsets thead th:text('Name')")
    page.click("#daemonsets thead th:text('Name')")
    names = [n for n in page.locator("#daemonsets tbody tr").evaluate_all("rows => rows.map(r => r.dataset.name)") if n]
    assert names == sorted(names, reverse=True), names

    # The Events tab shows the pods' events beside the DaemonSet's own.
    page.goto(up["url"] + "/ui/daemonsets/default/tools-a?tab=events")
    wait_for("pod events in the Events tab", lambda: (page.reload() or True) and "Pod/tools-a-" in page.inner_text("#events"))
    shot(page, "detail-events-with-pods")

    # Dark mode follows the system's preference.
    page.emulate_media(color_scheme="dark")
    page.goto(up["url"] + "/ui/daemonsets")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)", background
    shot(page, "dark-mode")
    page.emulate_media(color_scheme="light")

    # At phone width the page is as wide as the screen; wide tables scroll in their own box.
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ["/ui/daemonsets", "/ui/nodes", "/ui/create", "/ui/daemonsets/default/tools-a"]:
        page.goto(up["url"] + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (path, width)
    shot(page, "phone-width")
    page.set_viewport_size({"width": 1400, "height": 900})

    # Name fields carry a pattern the browser can compile (Chromium checks it with the v flag).
    page.goto(up["url"] + "/ui/create")
    valid = page.evaluate("""() => [...document.querySelectorAll('input[pattern]')].every(i => {
        try { new RegExp('^(?:' + i.pattern + ')$', 'v'); return true; } catch (e) { return false; } })""")
    assert valid
    page.fill("input[name=name]", "Bad_Name")
    assert page.evaluate("document.querySelector('input[name=name]').validity.patternMismatch")
    for name in ["tools-a", "tools-b"]:
        apps(up).delete_namespaced_daemon_set(name, "default")


def test_a_view_user_signs_in_with_a_kubeconfig_and_gets_no_write_actions(up, browser):
    """`everynode user add` makes a view user of one namespace; signed in with that kubeconfig,
    the console shows its DaemonSets with no write actions, offers only that namespace, explains
    a refused page, and the API refuses a write posted anyway."""
    data = pathlib.Path(up["data_dir"])
    core(up).create_namespace({"metadata": {"name": "team-view"}})
    apps(up).create_namespaced_daemon_set("team-view", {
        "metadata": {"name": "watched"},
        "spec": {"selector": {"matchLabels": {"app": "watched"}}, "template": {
            "metadata": {"labels": {"app": "watched"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}}})
    out = subprocess.run([everynode_binary(), "user", "add", "watcher", "--data-dir", str(data),
                          "--namespace", "team-view", "--role", "view"], capture_output=True, text=True, check=True)
    kubeconfig = pathlib.Path(out.stdout.strip()).read_text()
    # A browser context of its own: the administrator's session stays in the other.
    context = browser.context.browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(up["url"] + "/ui/login")
        page.fill("textarea[name=kubeconfig]", kubeconfig)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/daemonsets?namespace=team-view")
        row = page.locator("#daemonsets tr[data-name=watched]")
        row.wait_for()
        assert "view only" in row.inner_text()
        assert row.locator("a.button, button").count() == 0
        assert page.locator("text=Create DaemonSet").count() == 0
        options = page.locator("select[name=namespace] option").all_inner_texts()
        assert options == ["team-view"], options
        shot(page, "view-user-list")
        page.goto(up["url"] + "/ui/daemonsets/team-view/watched")
        tabs = page.locator("nav.tabs a").all_inner_texts()
        assert "Edit" not in tabs and "Delete" not in tabs and "YAML" not in tabs, tabs
        page.goto(up["url"] + "/ui/daemonsets/team-view/watched?tab=delete")
        assert "does not allow changing DaemonSets" in page.inner_text(".error")
        # A write posted anyway is the API server's to refuse, in words.
        response = page.request.post(up["url"] + "/ui/daemonsets/team-view/watched/delete",
                                     form={"propagationPolicy": "Background"})
        assert response.status == 403
        text = response.text()
        assert "You are not allowed to do this" in text
        assert "User &quot;watcher&quot; cannot delete resource &quot;daemonsets&quot;" in text or \
            'User "watcher" cannot delete resource "daemonsets"' in text
    finally:
        context.close()
    assert apps(up).read_namespaced_daemon_set("watched", "team-view").metadata.name == "watched"


def test_rollout_controls_steer_from_the_overview(up, browser):
    """Issue 19's console controls: conditions in words with their time; pause, resume,
    partition, promote, deadline and automatic rollback as the annotations kubectl users set;
    a refused value is shown on its input and nothing is stored."""
    page = browser
    body = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "steered"},
            "spec": {"selector": {"matchLabels": {"app": "steered"}},
                     "template": {"metadata": {"labels": {"app": "steered"}},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                                      {"name": "c", "image": "busybox", "command": ["sh", "-c", "while true; do sleep 1; done"]}]}}}}
    apps(up).create_namespaced_daemon_set("default", body)
    url = up["url"] + "/ui/daemonsets/default/steered"
    page.goto(url)
    page.wait_for_selector("#conditions li[data-condition=Progressing]", timeout=60_000)
    wait_for("the rollout complete on the page", lambda: "RolloutComplete" in page.inner_text("#conditions"), timeout=60)
    assert "Available True" in page.inner_text("#conditions li[data-condition=Available]")

    def annotations():
        return apps(up).read_namespaced_daemon_set("steered", "default").metadata.annotations or {}

    page.click("#rollout-controls button[value=pause]")
    page.wait_for_url("**tab=overview**")
    assert annotations().get("everynode.dev/paused") == "true"
    assert page.locator("#rollout-controls button[value=resume]").count() == 1
    # A bad partition: the server's 422 is shown on the partition input; nothing is stored.
    page.fill("#rollout-controls input[name=partition]", "abc")
    page.click("#rollout-controls button[value=save]")
    error = page.inner_text("#rollout-controls label:has(input[name=partition]) .field-error")
    assert "must be a whole number of nodes" in error, error
    assert page.get_attribute("#rollout-controls input[name=partition]", "aria-invalid") == "true"
    assert "everynode.dev/partition" not in annotations()
    shot(page, "detail-rollout-refused")
    page.fill("#rollout-controls input[name=partition]", "2")
    page.fill("#rollout-controls input[name=deadline]", "600")
    page.check("#rollout-controls input[name=autoRollback]")
    page.click("#rollout-controls button[value=save]")
    page.wait_for_url("**tab=overview**")
    got = annotations()
    assert (got.get("everynode.dev/partition"), got.get("everynode.dev/progress-deadline-seconds"),
            got.get("everynode.dev/auto-rollback")) == ("2", "600", "true")
    shot(page, "detail-rollout-controls")
    page.click("#rollout-controls button[value=promote]")
    page.wait_for_url("**tab=overview**")
    assert "everynode.dev/partition" not in annotations()
    page.click("#rollout-controls button[value=resume]")
    page.wait_for_url("**tab=overview**")
    assert "everynode.dev/paused" not in annotations()
    apps(up).delete_namespaced_daemon_set("steered", "default")



def test_the_yaml_tab_marks_an_error_line_then_previews_before_it_updates(up, browser):
    page = browser
    body = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "texty"},
            "spec": {"selector": {"matchLabels": {"app": "texty"}},
                     "template": {"metadata": {"labels": {"app": "texty"}},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                                      {"name": "c", "image": "busybox", "command": ["sh", "-c", "while true; do sleep 1; done"]}]}}}}
    apps(up).create_namespaced_daemon_set("default", body)
    try:
        wait_for("texty on 3 nodes", lambda: (apps(up).read_namespaced_daemon_set("texty", "default").status.number_available or 0) == 3)
        page.goto(up["url"] + "/ui/daemonsets/default/texty?tab=yaml")
        page.wait_for_selector("#yaml-editor[data-editor-ready]", state="attached")
        stored = page.eval_on_selector("#yaml-editor", "e => e.value")
        # Broken YAML: the server's error names the line, and the editor marks it.
        broken = stored.replace("kind: DaemonSet", "kind DaemonSet\n  oops: [", 1)
        type_into_editor(page, broken)
        page.click("form button.primary")
        page.wait_for_selector(".cm-line.cm-error-line")
        assert "line" in page.inner_text(".error")
        # A new image: first the preview (every node restarts), then the update.
        type_into_editor(page, stored.replace("image: busybox", "image: busybox:1.37", 1))
        page.click("form button.primary")
        preview = page.wait_for_selector("#change-preview")
        assert preview.get_attribute("data-replace") == "3", preview.inner_text()
        assert apps(up).read_namespaced_daemon_set("texty", "default").spec.template.spec.containers[0].image == "busybox"
        shot(page, "detail-yaml-preview")
        page.click("form button.primary")
        page.wait_for_url("**tab=overview**")
        assert apps(up).read_namespaced_daemon_set("texty", "default").spec.template.spec.containers[0].image == "busybox:1.37"
        # The full wizard: a change made by someone else after the page was read is a conflict,
        # and nothing is saved.
        page.goto(up["url"] + "/ui/daemonsets/default/texty/wizard")
        page.click("button[data-step='1']")
        page.fill("input[name='c.0.image']", "busybox:1.38")
        page.click("button.primary[type=submit]")
        page.wait_for_selector("#change-preview")
        apps(up).patch_namespaced_daemon_set("texty", "default", {"spec": {"minReadySeconds": 2}})
        page.click("button.primary[type=submit]")
        assert "was changed by someone else" in page.wait_for_selector(".form-errors:not([hidden])").inner_text()
        assert apps(up).read_namespaced_daemon_set("texty", "default").spec.template.spec.containers[0].image == "busybox:1.37"
        # Something the wizard has no field for: the full form is not offered, the path is
        # named, and the YAML tab is the way.
        apps(up).patch_namespaced_daemon_set("texty", "default", {"spec": {"template": {"spec": {"hostIPC": True}}}})
        page.goto(up["url"] + "/ui/daemonsets/default/texty/wizard")
        assert [li.inner_text() for li in page.query_selector_all("#not-in-the-form li")] == ["spec.template.spec.hostIPC"]
        assert page.locator("form.wizard").count() == 0
        shot(page, "wizard-edit-refused")
    finally:
        apps(up).delete_namespaced_daemon_set("texty", "default")
