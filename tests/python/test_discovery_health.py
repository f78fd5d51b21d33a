"""Discovery with trailing slashes and the health endpoints as upstream serves them, against a
real server; and `everynode up` stopping quietly, without colour codes in its log."""

import os
import pathlib
import re
import signal
import subprocess

import pytest
import requests

from conftest import everynode_binary


def get(server, path, token=True):
    headers = {"Authorization": f"Bearer {server.token}"} if token else {}
    return requests.get(server.url + path, headers=headers, verify=server.ca, timeout=30)


@pytest.mark.parametrize("path,kind", [
    ("/version/", None),
    ("/api/", "APIVersions"),
    ("/apis/", "APIGroupList"),
    ("/api/v1/", "APIResourceList"),
    ("/apis/apps/", None),
    ("/apis/apps/v1/", "APIResourceList"),
])
def test_discovery_answers_with_a_trailing_slash(server, path, kind):
    with_slash = get(server, path)
    without = get(server, path.rstrip("/"))
    assert with_slash.status_code == 200, with_slash.text
    assert with_slash.json() == without.json()
    if kind:
        assert with_slash.json()["kind"] == kind


def test_health_endpoints_list_their_checks_when_asked(server):
    assert get(server, "/readyz", token=False).text == "ok"
    verbose = get(server, "/readyz?verbose", token=False)
    assert verbose.status_code == 200
    lines = verbose.text.splitlines()
    assert lines[-1] == "readyz check passed"
    assert {"[+]ping ok", "[+]etcd ok", "[+]informer-sync ok"} <= set(lines), lines
    livez = get(server, "/livez?verbose&exclude=etcd", token=False).text.splitlines()
    assert "[+]etcd excluded: ok" in livez and livez[-1] == "livez check passed", livez
    assert get(server, "/healthz?verbose", token=False).text.splitlines()[-1] == "healthz check passed"
    # Anonymous callers get what upstream's system:public-info-viewer grants: the bare paths.
    assert get(server, "/readyz/ping").text == "ok"
    anonymous = get(server, "/readyz/ping", token=False)
    assert anonymous.status_code == 403
    assert anonymous.json()["message"] == 'forbidden: User "system:anonymous" cannot get path "/readyz/ping"'
    assert get(server, "/livez/etcd").text == "ok"
    assert get(server, "/readyz/nope").status_code == 404


def test_up_stops_quietly_and_logs_without_colour(tmp_data_dir):
    data = pathlib.Path(tmp_data_dir) / "cluster"
    log = pathlib.Path(tmp_data_dir) / "up.log"
    up = subprocess.Popen([everynode_binary(), "up", "--nodes", "1", "--listen", "127.0.0.1:0", "--data-dir", str(data)],
                          stdout=subprocess.PIPE, stderr=open(log, "ab"), text=True)
    try:
        assert "listening on" in up.stdout.readline()
        assert up.stdout.readline().startswith("everynode agent node-1 pid ")
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=90) == 0
    finally:
        if up.poll() is None:
            up.kill()
    text = log.read_text()
    assert "\x1b[" not in text, "colour codes in a log file"
    assert not re.search(r"\b(ERROR|WARN)\b", text), text
    agent_log = (data / "agents" / "node-1.log").read_text()
    assert "\x1b[" not in agent_log
    assert os.path.exists(data / "kubeconfig")
