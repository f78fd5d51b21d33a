"""`everynode bench` at 100 hollow nodes as a smoke test: every stage completes and the report has
every figure. Never asserts speed (speed is recorded in bench/RESULTS.md, not tested)."""

import subprocess
import tempfile

import pytest

from conftest import everynode_binary, required_tool


@pytest.mark.parametrize("store", ["embedded", "etcd"])
def test_bench_100_hollow_nodes_completes_every_stage(store):
    """On etcd, the bench starts its own member, measures the floor on it, and stops it."""
    if store == "etcd":
        required_tool("etcd", "ETCD", "Debian's etcd-server")
    with tempfile.TemporaryDirectory(prefix="everynode-bench-") as work:
        result = subprocess.run([everynode_binary(), "bench", "--nodes", "100", "--stage-timeout", "300", "--data-dir", work,
                                 "--store", store], capture_output=True, text=True, timeout=900)
        leftover = subprocess.run(["pgrep", "-f", f"etcd --name bench --data-dir {work}"], capture_output=True, text=True)
        assert leftover.stdout == "", "the bench's etcd member was stopped"
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.stdout
    for row in ("| 100 hollow nodes Ready |", "| DaemonSet create → all pods Ready |", "| rolling update, maxUnavailable 10% |",
                "| rolling update, maxSurge 10% |", "| mutating API latency during: rolling update, maxSurge 10% |",
                "| server peak RSS", "| hollow fleet RSS", "| CPU over the",
                "| EndpointSlices of a Service over the pods, after: rolling update, maxSurge 10% | converged"):
        assert row in report, report
    assert "× the floor" in report
    assert ("etcd store (floor: etcd alone, 64 clients)" in report) == (store == "etcd"), report
    # Progress went to stderr, the report alone to stdout.
    assert "nodes Ready: 100/100" in result.stderr
