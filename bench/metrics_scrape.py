#!/usr/bin/env python3
"""`/metrics` at scale (issue 21: at 10,000 hollow nodes a scrape takes at most 1 s and 50 MB
extra memory).

    .venv/bin/python bench/metrics_scrape.py [--nodes 10000] [--binary target/release/everynode]

Starts `everynode server` and one hollow agent of `--nodes` nodes (Leases every 400 s, so the
heartbeat does not compete with what is measured) and a DaemonSet on every node, waits for every
pod to be available, then scrapes `/metrics` ten times in a row, as Prometheus does, with the
administrator's token. Prints each scrape's time and size, the median, and the server's resident
memory before the scrapes and the highest sampled while scraping (`VmRSS` every 10 ms), for
bench/RESULTS.md.
"""

import argparse
import os
import pathlib
import ssl
import statistics
import sys
import tempfile
import time
import urllib.request

import kubernetes

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))
from conftest import Server, remove_tree, retrying, start_hollow_fleet, stop_process, wait_for  # noqa: E402


def memory_kib(pid, field):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--binary", default=str(REPO / "target" / "release" / "everynode"))
    args = parser.parse_args()
    os.environ["EVERYNODE_BIN"] = args.binary
    n = args.nodes
    data = pathlib.Path(tempfile.mkdtemp(prefix="everynode-metrics-scrape-"))
    server = Server(data, extra_args=["--node-monitor-grace-period", "600"]).start()
    agents = start_hollow_fleet(server, args.binary, n, open(data / "agents.log", "ab"))
    try:
        client = server.client()
        core = kubernetes.client.CoreV1Api(client)
        apps = kubernetes.client.AppsV1Api(client)
        wait_for(f"{n} nodes", lambda: len(retrying(core.list_node).items) == n, timeout=1200)
        retrying(apps.create_namespaced_daemon_set, "default", {
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "scraped"},
            "spec": {"selector": {"matchLabels": {"app": "scraped"}},
                     "template": {"metadata": {"labels": {"app": "scraped"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
        wait_for("every pod available",
                 lambda: (retrying(apps.read_namespaced_daemon_set, "scraped", "default").status.number_available or 0) == n,
                 timeout=1200)
        pid = server.proc.pid
        time.sleep(5)
        # The same sampling over an idle window first: what the server's memory does anyway
        # (heartbeats, the fleet's status writes) is not the scrapes' cost.
        idle_start = memory_kib(pid, "VmRSS")
        idle_samples, deadline = [], time.monotonic() + 5
        while time.monotonic() < deadline:
            idle_samples.append(memory_kib(pid, "VmRSS"))
            time.sleep(0.01)
        rss_before = memory_kib(pid, "VmRSS")
        # Resident memory sampled every 10 ms while scraping: the scrapes' extra memory is the
        # highest sample less the level before.
        import threading
        samples, scraping = [], threading.Event()
        scraping.set()

        def sample():
            while scraping.is_set():
                samples.append(memory_kib(pid, "VmRSS"))
                time.sleep(0.01)
        sampler = threading.Thread(target=sample)
        sampler.start()
        context = ssl.create_default_context(cafile=server.ca)
        times, sizes = [], []
        for _ in range(10):
            request = urllib.request.Request(server.url + "/metrics", headers={"Authorization": f"Bearer {server.token}"})
            start = time.monotonic()
            with urllib.request.urlopen(request, context=context, timeout=120) as response:
                body = response.read()
            times.append(time.monotonic() - start)
            sizes.append(len(body))
        scraping.clear()
        sampler.join()
        rss_after = memory_kib(pid, "VmRSS")
        lines = body.count(b"\n")
        print(f"nodes={n} scrapes={len(times)} size={statistics.median(sizes) / 1e6:.1f} MB lines={lines}")
        print("scrape seconds: " + " ".join(f"{t:.3f}" for t in times))
        print(f"median {statistics.median(times):.3f} s, max {max(times):.3f} s")
        print(f"idle 5 s before: RSS {idle_start / 1024:.0f} MiB, highest {max(idle_samples) / 1024:.0f} MiB "
              f"(+{(max(idle_samples) - idle_start) / 1024:.0f} MiB)")
        print(f"server RSS before {rss_before / 1024:.0f} MiB, highest while scraping "
              f"{max(samples) / 1024:.0f} MiB (+{(max(samples) - rss_before) / 1024:.0f} MiB), "
              f"after {rss_after / 1024:.0f} MiB")
    finally:
        stop_process(agents)
        server.kill()
        remove_tree(data)


if __name__ == "__main__":
    main()
