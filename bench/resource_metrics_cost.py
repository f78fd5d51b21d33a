#!/usr/bin/env python3
"""The API server's cost of gathering resource metrics from every agent (issue 21: at 10,000
nodes, once a minute, at most 5 % of a core).

    .venv/bin/python bench/resource_metrics_cost.py [--agents 40] [--seconds 60] [--binary B]

A hollow fleet cannot show this cost: its nodes share one endpoint, which the server reads once.
So this starts `--agents` real agents (process runtime, no pods, each its own endpoint and
certificate) and measures the server's CPU time over `--seconds` twice: with
`--metric-resolution 1s` (every agent read every second) and with `--metric-resolution 1h` (no
read in the window). The difference over the reads made is the cost of one read, which is then
scaled to 10,000 agents read once a minute.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))
from conftest import Server, remove_tree, stop_process, wait_for  # noqa: E402


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(binary, agents, seconds, resolution):
    data = pathlib.Path(tempfile.mkdtemp(prefix="everynode-rm-cost-"))
    server = Server(data, ["--metric-resolution", resolution]).start()
    procs = []
    try:
        log = open(data / "agents.log", "ab")
        for i in range(agents):
            state = data / "agents" / f"node-{i}"
            state.mkdir(parents=True)
            procs.append(subprocess.Popen([binary, "agent", "--kubeconfig", str(server.kubeconfig), "--name", f"node-{i}",
                                           "--state-dir", str(state), "--listen", "127.0.0.1:0"],
                                          stdout=subprocess.DEVNULL, stderr=log))
        wait_for(f"{agents} nodes", lambda: server.kubectl("get", "nodes", "--no-headers", check=False).stdout.count(" Ready") == agents,
                 timeout=300)
        time.sleep(20)
        before, started = cpu_seconds(server.proc.pid), time.monotonic()
        time.sleep(seconds)
        return cpu_seconds(server.proc.pid) - before, time.monotonic() - started
    finally:
        for p in procs:
            stop_process(p)
        server.kill()
        remove_tree(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=40)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--binary", default=str(REPO / "target" / "release" / "everynode"))
    args = parser.parse_args()
    os.environ["EVERYNODE_BIN"] = args.binary
    on, on_wall = measure(args.binary, args.agents, args.seconds, "1s")
    off, off_wall = measure(args.binary, args.agents, args.seconds, "1h")
    reads = args.agents * on_wall
    per_read = max(on - off * on_wall / off_wall, 0.0) / reads
    at_scale = per_read * 10_000 / 60
    print(f"agents={args.agents} window={args.seconds} s")
    print(f"server CPU, reading every agent every second: {on:.2f} s in {on_wall:.0f} s")
    print(f"server CPU, reading none: {off:.2f} s in {off_wall:.0f} s")
    print(f"per read: {per_read * 1e3:.3f} ms of CPU over {reads:.0f} reads")
    print(f"10,000 agents once a minute: {100 * at_scale:.2f} % of a core")


if __name__ == "__main__":
    main()
