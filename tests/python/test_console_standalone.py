"""`everynode console --kubeconfig`: the web console on its own, for the cluster a kubeconfig
names, with users signing in by their own token. Plain HTTP to the console (loopback only), HTTPS
from the console to the API server through a kube::Client."""

import subprocess
import urllib.parse

import requests
import yaml

from conftest import API_ONLY, Server, everynode_binary


def start_console(kubeconfig, listen="127.0.0.1:0"):
    proc = subprocess.Popen([everynode_binary(), "console", "--kubeconfig", kubeconfig, "--listen", listen],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    return proc, line


def sign_in(base, token):
    """Signs in and returns the session cookie header (the cookie is Secure, which browsers
    send to loopback over HTTP and requests does not, so it is carried by hand)."""
    r = requests.post(f"{base}/ui/login", data={"token": token}, allow_redirects=False, timeout=30)
    assert r.status_code == 303, (r.status_code, r.text[:500])
    cookie = r.headers["set-cookie"].split(";")[0]
    return {"Cookie": cookie}


def test_console_serves_another_clusters_api_with_the_users_token(tmp_data_dir):
    server = Server(tmp_data_dir, API_ONLY).start()
    proc, line = start_console(server.kubeconfig)
    try:
        assert "everynode console listening on http://127.0.0.1:" in line, line + proc.stderr.read()
        base = line.split("listening on ")[1].split("/ui")[0]
        assert server.url in line, "it names the cluster it serves"
        # A token the API server refuses is refused at sign-in.
        bad = requests.post(f"{base}/ui/login", data={"token": "not-a-token"}, allow_redirects=False, timeout=30)
        assert bad.status_code == 401 and "did not accept that token" in bad.text
        # Without a session, pages send the user to sign in.
        r = requests.get(f"{base}/ui/daemonsets", allow_redirects=False, timeout=30)
        assert r.status_code in (302, 303, 307) and r.headers["location"] == "/ui/login"
        cookie = sign_in(base, server.token)
        manifest = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "collector"},
                    "spec": {"selector": {"matchLabels": {"app": "collector"}},
                             "template": {"metadata": {"labels": {"app": "collector"}},
                                          "spec": {"nodeSelector": {"disk": "ssd"},
                                                   "containers": [{"name": "c", "image": "collector:1.2"}]}}}}
        server.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
        listed = requests.get(f"{base}/ui/daemonsets?namespace=default", headers=cookie, timeout=30)
        assert listed.status_code == 200
        assert 'data-name="collector"' in listed.text and "collector:1.2" in listed.text and "disk=ssd" in listed.text
        detail = requests.get(f"{base}/ui/daemonsets/default/collector", headers=cookie, timeout=30)
        assert detail.status_code == 200 and "DaemonSet collector" in detail.text
        for tab in ("placement", "revisions", "events", "metadata", "edit", "yaml"):
            page = requests.get(f"{base}/ui/daemonsets/default/collector?tab={tab}", headers=cookie, timeout=30)
            assert page.status_code == 200, (tab, page.text[:500])
        assert "image: collector:1.2" in requests.get(
            f"{base}/ui/daemonsets/default/collector?tab=yaml", headers=cookie, timeout=30).text
        # A write from the console is an API request as the user: redeploy sets restartedAt.
        r = requests.post(f"{base}/ui/daemonsets/default/collector/redeploy", headers=cookie,
                          allow_redirects=False, timeout=30)
        assert r.status_code == 303, r.text[:500]
        annotations = server.kubectl("get", "ds", "collector", "-o",
                                     "jsonpath={.spec.template.metadata.annotations}").stdout
        assert "kubectl.kubernetes.io/restartedAt" in annotations
        assert requests.get(f"{base}/ui/nodes", headers=cookie, timeout=30).status_code == 200
        namespaces = requests.get(f"{base}/ui/namespaces", headers=cookie, timeout=30)
        assert 'data-namespace="kube-system"' in namespaces.text
        missing = requests.get(f"{base}/ui/daemonsets/default/{urllib.parse.quote('nope')}", headers=cookie, timeout=30)
        assert missing.status_code == 404 and "not found" in missing.text
    finally:
        proc.kill()
        proc.wait()
        server.kill()


def test_console_refuses_a_non_loopback_address(tmp_data_dir):
    server = Server(tmp_data_dir, API_ONLY).start()
    try:
        proc = subprocess.run([everynode_binary(), "console", "--kubeconfig", server.kubeconfig, "--listen", "0.0.0.0:0"],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0
        assert "listens on loopback only" in proc.stderr
    finally:
        server.kill()
