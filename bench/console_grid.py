#!/usr/bin/env python3
"""The console's placement grid at scale in Chromium (issue 20: 10,000 nodes render in under
1 s and update live).

    .venv/bin/python bench/console_grid.py [--nodes 10000] [--binary target/release/everynode]

Starts `everynode server` and one hollow agent of `--nodes` nodes (Leases every 100 s, so the
heartbeat does not compete with what is measured), a DaemonSet pinned by node affinity to half of
them, and Debian's Chromium through Playwright. Measures, five times each:
- the placement tab: from navigation start to the grid holding every node's cell (the server
  rendering it, the transfer, the browser parsing and laying it out), with its size;
- the reason filter: from choosing a reason to the count shown;
- a live update: from the API write that changes one node's placement to the grid showing it.
Prints the figures for bench/RESULTS.md.
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import kubernetes

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))
from conftest import Server, remove_tree, retrying, start_hollow_fleet, stop_process, wait_for  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--binary", default=str(REPO / "target" / "release" / "everynode"))
    args = parser.parse_args()
    os.environ["EVERYNODE_BIN"] = args.binary
    from playwright.sync_api import sync_playwright

    n = args.nodes
    data = pathlib.Path(tempfile.mkdtemp(prefix="everynode-console-grid-"))
    server = Server(data, extra_args=["--node-monitor-grace-period", "600"]).start()
    agents = start_hollow_fleet(server, args.binary, n, open(data / "agents.log", "ab"))
    try:
        client = server.client()
        core = kubernetes.client.CoreV1Api(client)
        apps = kubernetes.client.AppsV1Api(client)
        wait_for(f"{n} nodes", lambda: len(core.list_node().items) == n, timeout=900)
        names = sorted(x.metadata.name for x in retrying(core.list_node).items)
        pinned = names[: n // 2]

        def affinity(values):
            return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": values}]}]}}}

        retrying(apps.create_namespaced_daemon_set, "default", {
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "grid"},
            "spec": {"selector": {"matchLabels": {"app": "grid"}},
                     "template": {"metadata": {"labels": {"app": "grid"}},
                                  "spec": {"affinity": affinity(pinned),
                                           "containers": [{"name": "c", "image": "busybox"}]}}}})
        wait_for("the pinned pods available",
                 lambda: (apps.read_namespaced_daemon_set("grid", "default").status.number_available or 0) == len(pinned),
                 timeout=900)
        loads, filters, updates, size = [], [], [], 0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900}).new_page()
            page.goto(server.url + "/ui/login")
            page.fill("input[name=token]", server.token)
            page.click("button[type=submit]")
            page.wait_for_url("**/ui/daemonsets")
            url = server.url + "/ui/daemonsets/default/grid?tab=placement"
            for i in range(5):
                page.goto(url, wait_until="commit")
                page.wait_for_function(f"document.querySelectorAll('#placement-grid i.c').length === {n}", timeout=60_000)
                load = page.evaluate("() => { document.querySelector('#placement-grid i.c:last-child').getBoundingClientRect(); return performance.now(); }")
                # The script has wired the filters (it runs once the document is parsed).
                page.wait_for_function("document.getElementById('placement-shown').textContent !== ''")
                # Layout done: reading a cell's position forced it.
                loads.append(load)
                size = page.evaluate("() => performance.getEntriesByType('navigation')[0].transferSize")
                took = page.evaluate("""() => {
                    const select = document.getElementById('placement-reason');
                    const started = performance.now();
                    select.value = 'NodeAffinityMismatch';
                    select.dispatchEvent(new Event('change'));
                    document.getElementById('placement-shown').getBoundingClientRect();
                    return performance.now() - started;
                }""")
                filters.append(took)
                shown = page.inner_text("#placement-shown")
                assert shown == f"{n - len(pinned) - i} nodes shown", shown
                # Live: pin one more node; time until its cell has left the filtered group.
                target = names[len(pinned) + i]
                page.evaluate("() => { window.__updates = document.getElementById('placement-live').dataset.updates || '0'; }")
                started = time.monotonic()
                retrying(apps.patch_namespaced_daemon_set, "grid", "default", {"spec": {"template": {"spec": {
                    "affinity": affinity(pinned + names[len(pinned): len(pinned) + i + 1])}}}})
                page.wait_for_function(
                    f"!document.querySelector('#placement-grid section[data-group=NodeAffinityMismatch] i.c[title=\"{target}\"]')",
                    timeout=60_000)
                updates.append((time.monotonic() - started) * 1000)
            browser.close()
        ms = lambda xs: f"median {statistics.median(xs):.0f} ms, slowest {max(xs):.0f} ms of {len(xs)}"
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        print(f"### console placement grid, {n} hollow nodes, commit {commit}, {os.cpu_count()} cores\n")
        print(f"Command: `.venv/bin/python bench/console_grid.py --nodes {n} --binary {args.binary}`\n")
        print("| measure | result |\n|---|---|")
        print(f"| placement tab, navigation start → every cell laid out | {ms(loads)}; page {size / 1024:.0f} KB |")
        print(f"| reason filter applied | {ms(filters)} |")
        print(f"| live update: API write → the grid shows it | {ms(updates)} (the grid gathers changes for 1 s) |")
        client.close()
    finally:
        stop_process(agents)
        server.kill()
        remove_tree(data)


if __name__ == "__main__":
    main()
