"""`/metrics` scraped by a real Prometheus (Debian's `prometheus`, started here with a bearer
token of a ServiceAccount bound to `system:monitoring`), and queried through Prometheus's own
HTTP API: kube-state-metrics' DaemonSet, pod and node families, upstream's request counters, and
the controllers' metrics."""

import json
import os
import pathlib
import socket
import subprocess
import urllib.parse
import urllib.request

import pytest

from conftest import REPO, chromium_path, daemonset_on_agents, kubectl_120_binary, required_tool, stop_process, wait_for

DAEMON = {
    "apiVersion": "apps/v1", "kind": "DaemonSet",
    "metadata": {"name": "exporter", "labels": {"app.kubernetes.io/name": "exporter"}},
    "spec": {"selector": {"matchLabels": {"app": "exporter"}},
             "template": {"metadata": {"labels": {"app": "exporter"}},
                          "spec": {"terminationGracePeriodSeconds": 1,
                                   "containers": [{"name": "main", "image": "busybox:1.36",
                                                   "command": ["sh", "-c", "while true; do sleep 1; done"]}]}}}}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory):
    with daemonset_on_agents(tmp_path_factory.mktemp("metrics"), DAEMON, ["--metric-resolution", "1s"]) as s:
        yield s


def service_account_token(s, namespace, name, cluster_role=None):
    s.kubectl("create", "namespace", namespace, check=False)
    s.kubectl("create", "serviceaccount", name, "-n", namespace)
    if cluster_role:
        s.kubectl("create", "clusterrolebinding", f"{namespace}-{name}", f"--clusterrole={cluster_role}", f"--serviceaccount={namespace}:{name}")
    return s.kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()


def scrape(s, token):
    import ssl
    context = ssl.create_default_context(cafile=s.ca)
    request = urllib.request.Request(s.url + "/metrics", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, response.headers.get("Content-Type"), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def test_only_monitoring_identities_may_scrape(three_nodes):
    s = three_nodes
    nobody = service_account_token(s, "apps", "nobody")
    code, _, body = scrape(s, nobody)
    assert code == 403, body
    assert json.loads(body)["message"] == 'forbidden: User "system:serviceaccount:apps:nobody" cannot get path "/metrics"'
    watcher = service_account_token(s, "watchers", "scraper", cluster_role="system:monitoring")
    code, content_type, body = scrape(s, watcher)
    assert code == 200, body
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    # The families are there, with kube-state-metrics' label names.
    assert 'kube_daemonset_status_number_ready{namespace="default",daemonset="exporter"} 3' in body, body[:2000]
    assert 'label_app_kubernetes_io_name="exporter"' in body
    assert "# TYPE apiserver_request_total counter" in body
    assert "# TYPE kube_pod_container_status_restarts_total counter" in body
    assert 'workqueue_depth{name="daemonset"}' in body
    assert "scheduler_schedule_attempts_total" in body


class Prometheus:
    """A real Prometheus scraping the server every second."""

    def __init__(self, s, token, workdir):
        self.port = free_port()
        (workdir / "token").write_text(token)
        host = urllib.parse.urlparse(s.url).netloc
        (workdir / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
- job_name: everynode
  scheme: https
  tls_config:
    ca_file: {s.ca}
  authorization:
    credentials_file: {workdir / 'token'}
  static_configs:
  - targets: ['{host}']
""")
        self.proc = subprocess.Popen(
            [required_tool("prometheus", "PROMETHEUS", "Debian's prometheus, for the metrics tests"),
             f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=open(workdir / "prometheus.log", "ab"))

    def query(self, promql):
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except (urllib.error.URLError, ConnectionError):
            return None
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, promql):
        result = self.query(promql)
        if not result:
            return None
        return float(result[0]["value"][1])

    def stop(self):
        stop_process(self.proc)


def test_prometheus_scrapes_daemonset_state_and_request_counts(three_nodes, tmp_path):
    s = three_nodes
    token = service_account_token(s, "monitoring", "prometheus", cluster_role="system:monitoring")
    prometheus = Prometheus(s, token, tmp_path)
    try:
        wait_for("the target up", lambda: prometheus.value('up{job="everynode"}') == 1, timeout=60)
        assert prometheus.value('kube_daemonset_status_number_ready{daemonset="exporter"}') == 3
        assert prometheus.value('kube_daemonset_status_desired_number_scheduled{daemonset="exporter"}') == 3
        assert prometheus.value('sum(kube_pod_status_phase{phase="Running", namespace="default"})') == 3
        assert prometheus.value('count(kube_node_status_condition{condition="Ready", status="true"} == 1)') == 3
        # Pods joined to their DaemonSet as dashboards join them.
        assert prometheus.value('count(kube_pod_owner{owner_kind="DaemonSet", owner_name="exporter"})') == 3
        assert prometheus.value('everynode_daemonset_status_condition{daemonset="exporter", condition="Progressing", status="true"}') == 1
        assert prometheus.value('sum(everynode_daemonset_controller_pods_created_total{daemonset="exporter"})') == 3
        assert prometheus.value('everynode_daemonset_rollout_nodes_in_scope{daemonset="exporter"}') == 3
        assert prometheus.value('sum(scheduler_schedule_attempts_total)') is not None

        lists = 'sum(apiserver_request_total{verb="LIST", resource="configmaps", code="200"}) or vector(0)'
        before = prometheus.value(lists)
        for _ in range(20):
            s.kubectl("get", "configmaps", "-A")
        wait_for("the 20 lists counted", lambda: prometheus.value(lists) >= before + 20, timeout=30)
        assert prometheus.value('sum(apiserver_request_duration_seconds_count{verb="LIST", resource="configmaps"})') >= 20
        assert prometheus.value('sum(everynode_storage_commit_duration_seconds_count{operation="create"})') > 0

        # A scaled-down DaemonSet shows in Prometheus at the next scrape.
        s.kubectl("label", "node", "node-3", "exporter=no")
        s.kubectl("patch", "ds", "exporter", "--type=merge", "-p", json.dumps(
            {"spec": {"template": {"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "exporter", "operator": "NotIn", "values": ["no"]}]}]}}}}}}}))
        wait_for("desired 2 in Prometheus", lambda: prometheus.value('kube_daemonset_status_desired_number_scheduled{daemonset="exporter"}') == 2, timeout=60)
        wait_for("the rollout counted in scope", lambda: prometheus.value('everynode_daemonset_rollout_nodes_in_scope{daemonset="exporter"}') == 2, timeout=60)
    finally:
        prometheus.stop()


SPINNER = {
    "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "spinner"},
    "spec": {"selector": {"matchLabels": {"app": "spinner"}},
             "template": {"metadata": {"labels": {"app": "spinner"}},
                          "spec": {"terminationGracePeriodSeconds": 1,
                                   "nodeSelector": {"kubernetes.io/hostname": "node-1"},
                                   "containers": [{"name": "spin", "image": "busybox:1.36",
                                                   "command": ["sh", "-c", "while true; do :; done"]}]}}}}


def millicores(text):
    return int(text[:-1]) if text.endswith("m") else int(text) * 1000


def top(s, *args, kubectl=None):
    if kubectl:
        s.kubectl_path = kubectl
    try:
        result = s.kubectl("top", *args, "--no-headers", check=False)
    finally:
        s.kubectl_path = None
    return result


def test_kubectl_top_shows_a_busy_pods_cpu_and_every_nodes_use(three_nodes):
    s = three_nodes
    s.kubectl("apply", "-f", "-", input=json.dumps(SPINNER))
    try:
        def busy(kubectl=None):
            result = top(s, "pods", "-l", "app=spinner", kubectl=kubectl)
            if result.returncode != 0 or not result.stdout.strip():
                return None
            name, cpu, memory = result.stdout.split()[:3]
            return name if millicores(cpu) >= 300 else None

        pod = wait_for("the spinner's CPU in kubectl top", busy, timeout=90)
        # Per container, and with kubectl 1.20.
        containers = top(s, "pod", pod, "--containers").stdout.split()
        assert containers[:2] == [pod, "spin"], containers
        assert millicores(containers[2]) >= 300, containers
        assert wait_for("kubectl 1.20 top", lambda: busy(kubectl_120_binary()), timeout=30) == pod
        # The sleeping exporters use next to nothing.
        running = s.kubectl("get", "pods", "-l", "app=exporter", "--no-headers").stdout.count("Running")
        quiet = wait_for("every exporter in kubectl top", lambda: (lambda lines: len(lines) == running and lines)(
            [line for line in top(s, "pods", "-l", "app=exporter").stdout.split("\n") if line.strip()]))
        for line in quiet:
            assert millicores(line.split()[1]) < 300, line

        nodes = wait_for("three nodes in kubectl top", lambda: (lambda r: r.returncode == 0 and len(r.stdout.strip().splitlines()) == 3 and r.stdout)(top(s, "nodes")))
        for line in nodes.strip().splitlines():
            name, cpu, cpu_percent, memory, memory_percent = line.split()
            assert millicores(cpu) > 0 and memory.endswith("Mi") and int(memory[:-2]) > 0, line

        missing = top(s, "pod", "nosuch")
        assert missing.returncode != 0
        assert 'podmetrics.metrics.k8s.io "default/nosuch" not found' in missing.stderr, missing.stderr
    finally:
        s.kubectl("delete", "ds", "spinner", "--wait=false")


def test_metrics_api_follows_rbac(three_nodes):
    s = three_nodes
    viewer = service_account_token(s, "team", "viewer")
    s.kubectl("create", "rolebinding", "viewer-view", "--clusterrole=view", "--serviceaccount=team:viewer", "-n", "default")
    import ssl
    context = ssl.create_default_context(cafile=s.ca)

    def get(path):
        request = urllib.request.Request(s.url + path, headers={"Authorization": f"Bearer {viewer}"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    # view aggregates metrics-server's reader role: pods in its namespace, not nodes.
    code, body = get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")
    assert code == 200 and body["kind"] == "PodMetricsList", body
    code, body = get("/apis/metrics.k8s.io/v1beta1/nodes")
    assert code == 403, body
    assert body["message"] == 'nodes.metrics.k8s.io is forbidden: User "system:serviceaccount:team:viewer" cannot list resource "nodes" in API group "metrics.k8s.io" at the cluster scope'
    # The usage history is read as metrics are.
    code, body = get("/apis/usage.everynode.io/v1/namespaces/default/pods")
    assert code == 200 and body["kind"] == "PodUsageList", body
    code, body = get("/apis/usage.everynode.io/v1/nodes")
    assert code == 403 and 'cannot list resource "nodes" in API group "usage.everynode.io"' in body["message"], body


def test_kubectl_events_for_a_daemonset_lists_the_controllers_events(three_nodes):
    s = three_nodes
    out = s.kubectl("events", "--for", "daemonset/exporter").stdout
    assert "SuccessfulCreate" in out and "DaemonSet/exporter" in out, out
    # One line per event series: the three creates are three messages, not repeats.
    assert out.count("SuccessfulCreate") >= 3, out


def test_the_console_charts_a_busy_pods_cpu_and_every_nodes_use(three_nodes):
    """The usage history (`usage.everynode.io`) holds the busy pod's CPU, and the console's
    DaemonSet page draws it in Chromium; the nodes page charts every node."""
    s = three_nodes
    s.kubectl("apply", "-f", "-", input=json.dumps(SPINNER))
    try:
        def busy_history():
            r = s.kubectl("get", "--raw", "/apis/usage.everynode.io/v1/namespaces/default/pods?labelSelector=app%3Dspinner", check=False)
            items = json.loads(r.stdout)["items"] if r.returncode == 0 else []
            return items if items and items[0]["points"][-1]["cpuNanocores"] >= 300_000_000 else None

        items = wait_for("the spinner's CPU in its usage history", busy_history, timeout=90)
        pod = items[0]["metadata"]["name"]
        assert items[0]["kind"] == "PodUsage" and items[0]["nodeName"] == "node-1", items[0]
        assert items[0]["points"][-1]["memoryBytes"] > 0
        node = json.loads(s.kubectl("get", "--raw", "/apis/usage.everynode.io/v1/nodes/node-1").stdout)
        assert node["kind"] == "NodeUsage" and node["points"], node
        missing = s.kubectl("get", "--raw", "/apis/usage.everynode.io/v1/namespaces/default/pods/nosuch", check=False)
        assert 'podusage.usage.everynode.io "default/nosuch" not found' in missing.stderr, missing.stderr

        from playwright.sync_api import sync_playwright
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            try:
                page = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900}).new_page()
                page.goto(s.url + "/ui/login")
                page.fill("input[name=token]", s.token)
                page.click("button[type=submit]")
                page.wait_for_url("**/ui/daemonsets")
                page.goto(s.url + "/ui/daemonsets/default/spinner")
                page.wait_for_selector("[data-usage-chart][data-state=ready]", timeout=60_000)
                assert page.locator("[data-usage-chart] .usage-plots canvas").count() == 2, "a CPU and a memory chart"
                row = page.locator(f"[data-usage-chart] tr[data-name='{pod}']")
                assert int(row.get_attribute("data-cpu-millicores")) >= 300, row.inner_text()
                assert int(row.get_attribute("data-memory-bytes")) > 0
                shots = pathlib.Path(os.environ.get("EVERYNODE_SCREENSHOTS", REPO / "target" / "console-screenshots"))
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / "usage-daemonset.png"), full_page=True)

                page.goto(s.url + "/ui/nodes")
                page.wait_for_selector("[data-usage-chart][data-state=ready]", timeout=60_000)
                box = page.locator("[data-usage-chart]")
                assert box.get_attribute("data-series") == "3", box.inner_text()
                page.screenshot(path=str(shots / "usage-nodes.png"), full_page=True)
                for name in ("node-1", "node-2", "node-3"):
                    assert page.locator(f"[data-usage-chart] tr[data-name='{name}']").count() == 1
                page.goto(s.url + "/ui/nodes/node-1")
                page.wait_for_selector("[data-usage-chart][data-state=ready]", timeout=60_000)
                assert page.locator("[data-usage-chart]").get_attribute("data-series") == "1"
            finally:
                browser.close()
    finally:
        s.kubectl("delete", "ds", "spinner", "--wait=false")
