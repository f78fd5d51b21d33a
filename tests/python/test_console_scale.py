"""The console's placement grid at scale, in real Chromium: 2,000 hollow nodes, a DaemonSet pinned by node affinity to 100 of them. The grid has a cell for every
node, the reason filter narrows it to the 1,900 left out, and it follows a change live. (How fast
10,000 nodes render is measured in bench/, not asserted here.)"""

import pathlib
import tempfile
import time

import kubernetes
import pytest

from conftest import Server, everynode_binary, remove_tree, retrying, start_hollow_fleet, stop_process, wait_for
from test_console import SHOTS, chromium_path

NODES = 2000
PINNED = 100


@pytest.fixture(scope="module")
def fleet():
    """An everynode server (the console is mounted at /ui) and one hollow agent process serving
    2,000 nodes. The agent renews each Lease every 100 s rather than 10 s, and the server allows
    for it: 200 renewals a second would keep both cores of a CI machine busy with a debug build,
    and the grid is what is tested here, not the heartbeat."""
    data = pathlib.Path(tempfile.mkdtemp(prefix="everynode-console-scale-"))
    server = Server(data, extra_args=["--node-monitor-grace-period", "600"]).start()
    log = open(data / "agents.log", "ab")
    agents = start_hollow_fleet(server, everynode_binary(), NODES, log)
    try:
        client = server.client()
        core = kubernetes.client.CoreV1Api(client)
        wait_for(f"{NODES} nodes", lambda: len(core.list_node().items) == NODES, timeout=300)
        yield {"url": server.url, "token": server.token, "client": client}
        client.close()
    finally:
        stop_process(agents)
        server.kill()
        log.close()
        remove_tree(data)


def test_the_placement_grid_of_2000_nodes_renders_filters_and_follows(fleet):
    from playwright.sync_api import sync_playwright
    apps = kubernetes.client.AppsV1Api(fleet["client"])
    core = kubernetes.client.CoreV1Api(fleet["client"])
    names = sorted(n.metadata.name for n in retrying(core.list_node).items)
    pinned = names[:PINNED]
    retrying(apps.create_namespaced_daemon_set, "default", {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "pinned"},
        "spec": {"selector": {"matchLabels": {"app": "pinned"}},
                 "template": {"metadata": {"labels": {"app": "pinned"}},
                              "spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                                  "nodeSelectorTerms": [{"matchExpressions": [
                                      {"key": "kubernetes.io/hostname", "operator": "In", "values": pinned}]}]}}},
                                  "containers": [{"name": "c", "image": "busybox"}]}}}})
    wait_for("the pinned pods available",
             lambda: (apps.read_namespaced_daemon_set("pinned", "default").status.number_available or 0) == PINNED,
             timeout=180)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900}).new_page()
        page.goto(fleet["url"] + "/ui/login")
        page.fill("input[name=token]", fleet["token"])
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/daemonsets")
        page.goto(fleet["url"] + "/ui/daemonsets/default/pinned?tab=placement")
        assert page.locator("#placement-grid i.c").count() == NODES
        assert page.locator("#placement-grid section[data-group=Running] i.c").count() == PINNED
        assert page.inner_text("#placement-shown") == f"{NODES} nodes shown"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "placement-2000.png"), full_page=False)
        page.select_option("#placement-reason", "NodeAffinityMismatch")
        assert page.inner_text("#placement-shown") == f"{NODES - PINNED} nodes shown"
        assert page.is_hidden("#placement-grid section[data-group=Running]")
        page.fill("#placement-node", names[-1])
        assert page.inner_text("#placement-shown") == "1 node shown"
        # Live: one more node pinned; its cell leaves the filtered group without a reload.
        page.fill("#placement-node", "")
        retrying(apps.patch_namespaced_daemon_set, "pinned", "default", {"spec": {"template": {"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": pinned + [names[-1]]}]}]}}}}}}})
        page.wait_for_function(f"document.getElementById('placement-shown').textContent === '{NODES - PINNED - 1} nodes shown'",
                               timeout=60_000)
        assert page.locator("#placement-grid i.c").count() == NODES
        browser.close()
    retrying(apps.delete_namespaced_daemon_set, "pinned", "default")
