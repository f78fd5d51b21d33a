"""The README's kubectl tour, run as written: its code block, in a fresh directory holding the
repository's `scripts/` and `examples/`, with the debug build standing in for the release build
(`EVERYNODE_BIN`, which `scripts/up.sh` honours)."""

import os
import pathlib
import re
import shutil
import socket
import subprocess

import pytest

from conftest import REPO, everynode_binary, kubectl_binary, unmount_under


def tour_block():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## A short kubectl tour", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the tour's code block"
    return match.group(1)


def port_free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_the_readme_tour_runs_as_written(tmp_path):
    block = tour_block()
    assert "./scripts/up.sh" in block and "examples/log-tailer.yaml" in block
    if not port_free(6443):
        pytest.fail("the tour listens on 127.0.0.1:6443, which something else holds")
    for name in ["scripts", "examples"]:
        (tmp_path / name).symlink_to(REPO / name)
    kubectl_dir = pathlib.Path(kubectl_binary()).parent
    env = dict(os.environ, EVERYNODE_BIN=everynode_binary(), HOME=str(tmp_path),
               PATH=f"{kubectl_dir}:{os.environ['PATH']}")
    env.pop("KUBECONFIG", None)
    # The harness around the literal block: stop on the first failure, and stop `up` (the
    # tour's background job) with Ctrl-C at the end, waiting for it.
    script = "set -euo pipefail\ntrap 'kill -INT $(jobs -p) 2>/dev/null; wait' EXIT\n" + block
    demo_log = pathlib.Path("/tmp/everynode-demo-log")
    existed = demo_log.exists()
    try:
        result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    finally:
        # Whatever an agent left mounted (pods' tmpfs volumes) goes with the test.
        unmount_under(tmp_path)
        if not existed:
            shutil.rmtree(demo_log, ignore_errors=True)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    out = result.stdout
    assert re.search(r"node-1\s+Ready", out) and re.search(r"node-3\s+Ready", out), out
    assert 'daemon set "log-tailer" successfully rolled out' in out, out
    assert "log-tailer on node-" in out, out
    assert 'node_up{node="node-1"} 1' in out, out
    assert "rolled back" in out, out
