"""A stand-in for node agents, for controller tests before the real agent exists: pods bound to
a node become Running and Ready, and pods marked for deletion are confirmed (deleted with grace
0), which is what spec §3.4 says an agent owes the controller. Pods on nodes listed in `hold`
are left alone (a node that is down)."""

import datetime
import threading

import kubernetes
import urllib3
from kubernetes import watch


class AgentSim:
    def __init__(self, server, hold=()):
        self.client = server.client()
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.hold = set(hold)
        self.stop_event = threading.Event()
        self.errors = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(10)
        self.client.close()
        # A failing stand-in would otherwise show up only as a test timing out.
        if self.errors and exc[0] is None:
            raise AssertionError(f"the agent stand-in failed: {self.errors[0]!r}")

    def handle(self, pod):
        node = pod.spec.node_name
        if not node or node in self.hold:
            return
        name, ns = pod.metadata.name, pod.metadata.namespace
        try:
            if pod.metadata.deletion_timestamp:
                self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
                return
            ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
            if not ready:
                now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                status = {"status": {"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.0.0.1", "startTime": now,
                                     "conditions": [{"type": t, "status": "True", "lastTransitionTime": now} for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
                                     "containerStatuses": [{"name": c.name, "image": c.image, "imageID": "", "ready": True, "restartCount": 0, "started": True,
                                                            "state": {"running": {"startedAt": now}}} for c in pod.spec.containers]}}
                self.core.patch_namespaced_pod_status(name, ns, status, _content_type="application/merge-patch+json")
        except kubernetes.client.ApiException as e:
            if e.status not in (404, 409):
                raise

    def run(self):
        while not self.stop_event.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(self.core.list_pod_for_all_namespaces, timeout_seconds=2):
                    if self.stop_event.is_set():
                        w.stop()
                        break
                    if ev["type"] != "DELETED":
                        self.handle(ev["object"])
            except kubernetes.client.ApiException as e:
                if e.status != 410:  # an expired watch just starts again
                    self.errors.append(e)
                    return
            except urllib3.exceptions.HTTPError as e:  # connection trouble
                if self.stop_event.is_set():
                    return
                self.errors.append(e)
                return
