#!/usr/bin/env python3
"""Pod start latency on the CRI runtime, against upstream's pod startup SLO (p99 <= 5 s,
image present, from creation to running as observed through a watch).

    .venv/bin/python bench/cri_start.py [--pods 100] [--rate 10] [--binary target/release/everynode]

Starts `everynode up --runtime cri --nodes 2` on a fresh data directory, imports the busybox
images every node needs, then creates `--pods` pods (alternating nodes, `--rate` per second),
each with one container that sleeps, and times each from its create request to the watch event
that shows it Running with its container started. Prints the figures for bench/RESULTS.md.
"""

import argparse
import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import kubernetes

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "images"))
import busybox_image  # noqa: E402

PAUSE = "docker.io/local/pause:1"
BUSYBOX = "docker.io/local/busybox:1"


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0, help="pod creates per second")
    parser.add_argument("--binary", default=str(REPO / "target" / "release" / "everynode"))
    args = parser.parse_args()

    data = pathlib.Path(tempfile.mkdtemp(prefix="en-crib-"))
    for name, entry, cmd in [("pause", ["/bin/sleep"], ["2147483647"]), ("busybox", None, None)]:
        busybox_image.write_image(data / f"{name}.tar", PAUSE if name == "pause" else BUSYBOX, entry, cmd)
    up = subprocess.Popen([args.binary, "up", "--runtime", "cri", "--nodes", "2", "--listen", "127.0.0.1:0",
                           "--data-dir", str(data), "--pod-network-cidr", "10.253.0.0/16", "--pod-infra-image", PAUSE],
                          stdout=subprocess.PIPE, stderr=open(data / "up.log", "ab"), text=True)
    try:
        assert "listening on" in up.stdout.readline()
        for _ in range(2):
            assert re.match(r"everynode agent", up.stdout.readline())
        for name in ["pause", "busybox"]:
            subprocess.run([args.binary, "image", "import", str(data / f"{name}.tar"), "--data-dir", str(data)],
                           check=True, capture_output=True)
        client = kubernetes.config.new_client_from_config(config_file=str(data / "kubeconfig"))
        core = kubernetes.client.CoreV1Api(client)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            nodes = core.list_node().items
            if len(nodes) == 2 and all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions) for n in nodes):
                break
            time.sleep(0.2)

        created, running = {}, {}
        done = threading.Event()

        def watch():
            w = kubernetes.watch.Watch()
            for event in w.stream(core.list_namespaced_pod, "default", label_selector="bench=cri-start", timeout_seconds=600):
                pod = event["object"]
                statuses = pod.status.container_statuses or []
                if pod.status.phase == "Running" and statuses and statuses[0].state.running and pod.metadata.name not in running:
                    running[pod.metadata.name] = time.monotonic()
                    if len(running) == args.pods:
                        done.set()
                        w.stop()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        time.sleep(1)
        started = time.monotonic()
        for i in range(args.pods):
            name = f"start-{i:04d}"
            body = {"metadata": {"name": name, "labels": {"bench": "cri-start"}},
                    "spec": {"nodeName": f"node-{1 + i % 2}", "terminationGracePeriodSeconds": 0,
                             "containers": [{"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never",
                                             "command": ["sleep", "3600"]}]}}
            created[name] = time.monotonic()
            core.create_namespaced_pod("default", body)
            pause = started + (i + 1) / args.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        done.wait(timeout=600)
        latencies = [running[n] - created[n] for n in created if n in running]
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        print(json.dumps({
            "commit": commit,
            "pods": args.pods,
            "rate_per_s": args.rate,
            "started": len(latencies),
            "p50_s": round(percentile(latencies, 50), 3),
            "p90_s": round(percentile(latencies, 90), 3),
            "p99_s": round(percentile(latencies, 99), 3),
            "max_s": round(max(latencies), 3),
            "mean_s": round(statistics.mean(latencies), 3),
        }))
        core.delete_collection_namespaced_pod("default", label_selector="bench=cri-start", grace_period_seconds=0)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=300)
        except subprocess.TimeoutExpired:
            up.kill()
        subprocess.run(["rm", "-rf", str(data)])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
