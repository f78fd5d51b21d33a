"""Fault injection with invariants: a rolling update across hollow nodes while clients write,
the API server killed with SIGKILL at a random moment and restarted on the same data directory
and port. Shared by tests/python/test_faults.py (a few trials in CI) and bench/faults.py (many,
recorded in bench/RESULTS.md).

What one trial checks, at every observation of the pods (a consistent list every ~50 ms, through
the crash):
  - no node has more live daemon pods than the strategy allows: one, or two with maxSurge;
  - no more nodes lack an available daemon pod than maxUnavailable allows (counting from the
    moment the rollout starts, when every node has one);
and after it:
  - every write acknowledged before the kill is in the store after the restart;
  - the rollout completes: every node runs one Ready pod of the new template.
"""

import json
import os
import random
import signal
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

from conftest import Server, everynode_binary, stop_process, wait_for

DS_NAME = "faulty"


class Http:
    """A small client that survives the server's death: every error is a None answer."""

    def __init__(self, server):
        self.base = server.url
        self.token = server.token
        self.ctx = ssl.create_default_context(cafile=server.ca)

    def get(self, path, patience=15):
        """A GET that waits out a slow moment (no answer within the timeout) on a loaded
        machine, for checks that must not mistake slowness for a broken rule."""
        deadline = time.monotonic() + patience
        while True:
            code, body = self.call("GET", path)
            if code is not None or time.monotonic() > deadline:
                return code, body

    def call(self, method, path, body=None, content_type="application/json", timeout=5):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")
        except (OSError, ValueError):
            return None, None


def daemon_set(image, max_surge, max_unavailable):
    labels = {"app": DS_NAME}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": DS_NAME},
            "spec": {"selector": {"matchLabels": labels},
                     "updateStrategy": {"type": "RollingUpdate",
                                        "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "main", "image": image}]}}}}


def ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def live(pod):
    return (not pod["metadata"].get("deletionTimestamp")
            and (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded"))


def image_of(pod):
    return pod["spec"]["containers"][0]["image"]


class Observer(threading.Thread):
    """Lists the DaemonSet's pods over and over and records every invariant violation."""

    def __init__(self, http, nodes, max_surge, max_unavailable):
        super().__init__(daemon=True)
        self.http = http
        self.nodes = nodes
        self.per_node = 2 if max_surge else 1
        # Both zero is refused by validation; one is what the controller then allows.
        self.budget = max_unavailable or (0 if max_surge else 1)
        self.stop = threading.Event()
        self.observations = 0
        self.violations = []

    def run(self):
        while not self.stop.is_set():
            code, body = self.http.call("GET", f"/api/v1/namespaces/default/pods?labelSelector=app%3D{DS_NAME}", timeout=2)
            if code == 200:
                self.check(body["items"], body["metadata"].get("resourceVersion"))
            time.sleep(0.05)

    def check(self, pods, rv):
        self.observations += 1
        by_node = {n: [] for n in self.nodes}
        for p in pods:
            if live(p) and p["spec"].get("nodeName") in by_node:
                by_node[p["spec"]["nodeName"]].append(p)
        for node, on_node in by_node.items():
            if len(on_node) > self.per_node:
                self.violations.append(f"rv {rv}: {len(on_node)} live pods on {node}")
        unavailable = sum(1 for on_node in by_node.values() if not any(ready(p) for p in on_node))
        if unavailable > self.budget:
            self.violations.append(f"rv {rv}: {unavailable} nodes without an available pod (budget {self.budget})")


class Writer(threading.Thread):
    """Creates ConfigMaps one after another and records each acknowledged one."""

    def __init__(self, http, index):
        super().__init__(daemon=True)
        self.http = http
        self.index = index
        self.stop = threading.Event()
        self.acked = {}

    def run(self):
        i = 0
        while not self.stop.is_set():
            name = f"w{self.index}-{i}"
            code, body = self.http.call("POST", "/api/v1/namespaces/default/configmaps",
                                        {"metadata": {"name": name}, "data": {"i": str(i)}})
            if code == 201:
                self.acked[name] = int(body["metadata"]["resourceVersion"])
                i += 1
            elif code == 409:  # created, but the answer was lost in the crash
                i += 1
            else:
                time.sleep(0.05)


def start_hollow_agents(server, count, env=None):
    log = open(server.data_dir / "agents.log", "ab")
    return subprocess.Popen(
        [everynode_binary(), "agent", "--kubeconfig", server.kubeconfig, "--runtime", "hollow",
         "--hollow-nodes", str(count), "--name", "hollow", "--listen", "127.0.0.1:0", "--hollow-start-delay-ms", "300",
         "--node-lease-duration-seconds", "40", "--node-status-update-frequency", "2"],
        stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ, **env) if env else None)


def rollout_with_a_kill(data_dir, nodes=6, max_surge=0, max_unavailable=1, seed=None):
    """One trial. Returns a dict of what was observed; raises only when the set-up fails."""
    rng = random.Random(seed)
    server = Server(data_dir).start()
    port = server.url.rsplit(":", 1)[1]
    agents = start_hollow_agents(server, nodes)
    observer = None
    writers = []
    try:
        http = Http(server)
        node_names = [f"hollow-{i:05}" for i in range(1, nodes + 1)]

        def all_nodes_ready():
            code, body = http.call("GET", "/api/v1/nodes")
            return code == 200 and sum(1 for n in body["items"] if ready({"status": n.get("status")})) == nodes

        wait_for(f"{nodes} Ready nodes", all_nodes_ready, timeout=60)
        code, body = http.call("POST", "/apis/apps/v1/namespaces/default/daemonsets",
                               daemon_set("agent:1", max_surge, max_unavailable))
        assert code == 201, body

        def rolled_out(image):
            code, body = http.call("GET", f"/api/v1/namespaces/default/pods?labelSelector=app%3D{DS_NAME}")
            if code != 200:
                return False
            current = [p for p in body["items"] if live(p)]
            return (sorted(p["spec"].get("nodeName") or "" for p in current) == sorted(node_names)
                    and all(ready(p) and image_of(p) == image for p in current)
                    and len(body["items"]) == nodes)

        wait_for("the first version on every node", lambda: rolled_out("agent:1"), timeout=60)
        observer = Observer(http, node_names, max_surge, max_unavailable)
        observer.start()
        writers = [Writer(http, i) for i in range(2)]
        for w in writers:
            w.start()
        code, body = http.call("PATCH", f"/apis/apps/v1/namespaces/default/daemonsets/{DS_NAME}",
                               {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "agent:2"}]}}}},
                               content_type="application/merge-patch+json")
        assert code == 200, body
        # The kill lands somewhere in the rollout: a node's worth of pods takes ~0.3-1 s.
        time.sleep(rng.uniform(0.0, 0.4 * nodes))
        killed_at = time.monotonic()
        server.kill(signal.SIGKILL)
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(10)
        acked = {k: v for w in writers for k, v in w.acked.items()}
        server.start(listen=f"127.0.0.1:{port}")
        restarted_in = time.monotonic() - killed_at
        code, body = http.call("GET", "/api/v1/namespaces/default/configmaps")
        assert code == 200, body
        stored = {cm["metadata"]["name"] for cm in body["items"]}
        lost = sorted(set(acked) - stored)
        wait_for("the rollout to complete after the restart", lambda: rolled_out("agent:2"), timeout=120)
        observer.stop.set()
        observer.join(10)
        return {"acknowledged": len(acked), "lost": lost, "observations": observer.observations,
                "violations": observer.violations, "restart_seconds": round(restarted_in, 2)}
    finally:
        if observer:
            observer.stop.set()
        for w in writers:
            w.stop.set()
        stop_process(agents, timeout=30)
        server.kill()
