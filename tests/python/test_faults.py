"""Fault injection as tests (issue 15): the server killed with SIGKILL in the middle of a rolling
update, with and without surge; the data directory's filesystem full; the wall clock stepped; an
agent cut off from the server by its own network namespace. A few trials here; bench/faults.py
runs many and records them."""

import os
import pathlib
import shutil
import subprocess

import pytest

import kubernetes

from conftest import API_ONLY, FAST_LIFECYCLE, Server, everynode_binary, stays, stop_process, wait_for
from faults import DS_NAME, Http, daemon_set, image_of, live, ready, rollout_with_a_kill, start_hollow_agents


@pytest.mark.parametrize("max_surge,max_unavailable", [(0, 1), (1, 0)], ids=["unavailable-1", "surge-1"])
def test_server_killed_during_a_rolling_update(tmp_data_dir, max_surge, max_unavailable):
    result = rollout_with_a_kill(tmp_data_dir, nodes=6, max_surge=max_surge, max_unavailable=max_unavailable, seed=7)
    assert result["lost"] == [], f"acknowledged writes lost: {result['lost'][:10]}"
    assert result["violations"] == [], result["violations"][:10]
    assert result["observations"] > 10, result
    assert result["acknowledged"] > 0, result


LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def faked_clock(offset_file):
    """Environment that puts a process on a wall clock offset by what `offset_file` says
    (`+3600`, `-3600`), read afresh at every call: the machine's clock stepped, for that process.
    Monotonic time stays real, as it does when an administrator or NTP steps the clock."""
    if not os.path.exists(LIBFAKETIME):
        if os.environ.get("CI") == "true":
            pytest.fail("libfaketime is required in CI (scripts/test.sh installs Debian's faketime)")
        pytest.skip("libfaketime not installed")
    return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": str(offset_file),
            "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def test_wall_clock_stepped_forward_and_back(tmp_data_dir):
    """The wall clock of the server and the agents jumps an hour forward, then two hours back.
    Timeouts and grace periods run on monotonic time, so nothing may happen: every node stays
    Ready, every daemon pod stays (same uid, no restart), the DaemonSet stays fully available,
    writes go on; and a rolling update afterwards completes."""
    offset = pathlib.Path(tmp_data_dir) / "clock-offset"
    offset.write_text("+0\n")
    env = faked_clock(offset)
    server = Server(tmp_data_dir, env=env).start()
    agents = start_hollow_agents(server, 3, env=env)
    http = Http(server)
    try:
        names = [f"hollow-{i:05}" for i in (1, 2, 3)]

        def pods():
            code, body = http.get(f"/api/v1/namespaces/default/pods?labelSelector=app%3D{DS_NAME}")
            assert code == 200, body
            return body["items"]

        def steady():
            items = pods()
            return (sorted(p["spec"].get("nodeName") or "" for p in items) == names
                    and all(ready(p) and live(p) for p in items) and items)

        def all_nodes_ready():
            code, body = http.get("/api/v1/nodes")
            return code == 200 and sum(1 for n in body["items"] if ready({"status": n.get("status")})) == 3

        wait_for("3 Ready nodes", all_nodes_ready, timeout=60)
        code, body = http.call("POST", "/apis/apps/v1/namespaces/default/daemonsets", daemon_set("agent:1", 0, 1))
        assert code == 201, body
        before = {p["metadata"]["uid"] for p in wait_for("a Ready pod on every node", steady, timeout=60)}

        def unchanged():
            code, ds = http.get(f"/apis/apps/v1/namespaces/default/daemonsets/{DS_NAME}")
            return (steady() and {p["metadata"]["uid"] for p in pods()} == before
                    and all_nodes_ready() and code == 200 and ds["status"].get("numberAvailable") == 3)

        for step, name in (("+3600", "forward"), ("-3600", "back")):
            offset.write_text(step + "\n")
            code, _ = http.call("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"after-stepping-{name}"}})
            assert code == 201, f"a write after stepping the clock {step} s"
            # Longer than the lease duration the agents were started with is not needed: a wall
            # step that mattered would show at the next lease renewal or controller pass.
            stays(f"the cluster unchanged after stepping the clock {step} s", unchanged, seconds=8, interval=0.5)
        code, body = http.call("PATCH", f"/apis/apps/v1/namespaces/default/daemonsets/{DS_NAME}",
                               {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "agent:2"}]}}}},
                               content_type="application/merge-patch+json")
        assert code == 200, body
        wait_for("the rolling update after the steps", lambda: (s := steady()) and all(image_of(p) == "agent:2" for p in s), timeout=90)
    finally:
        stop_process(agents, timeout=30)
        server.kill()


def mount_small_filesystem(image, mount_point, size_mb):
    """A loop-mounted ext4 filesystem of `size_mb`: a disk that fills up. Needs root, as CI has."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the disk-full test needs root to loop-mount a filesystem")
        pytest.skip("not root")
    subprocess.run(["truncate", "-s", f"{size_mb}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    mount_point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount_point)], check=True)


def test_data_directory_full_refuses_writes_clearly_and_recovers(tmp_path):
    """The data directory's filesystem fills up: writes are refused with a 5xx Status that says
    why, nothing acknowledged is lost, reads go on, and writes succeed again once space returns,
    across a restart too."""
    data = tmp_path / "data"
    mount_small_filesystem(tmp_path / "disk.img", data, 48)
    server = Server(data, API_ONLY)
    try:
        server.start()
        # Room to give back later.
        filler = data / "filler"
        subprocess.run(["fallocate", "-l", "8M", str(filler)], check=True)
        http = Http(server)
        value = "x" * 200_000
        acked, refusal = [], None
        for i in range(400):
            code, body = http.call("POST", "/api/v1/namespaces/default/configmaps",
                                   {"metadata": {"name": f"big-{i}"}, "data": {"v": value}}, timeout=30)
            if code == 201:
                acked.append(f"big-{i}")
                continue
            refusal = (code, body)
            break
        assert refusal, "the filesystem never filled up"
        code, body = refusal
        assert code is not None and code >= 500, refusal
        assert body["kind"] == "Status" and "space" in body["message"].lower(), body
        assert len(acked) > 10, acked

        def names():
            code, body = http.call("GET", "/api/v1/namespaces/default/configmaps", timeout=30)
            assert code == 200, body
            return {cm["metadata"]["name"] for cm in body["items"]}

        assert set(acked) <= names(), "an acknowledged write was lost when the disk filled"
        filler.unlink()
        code, body = wait_for("a write to succeed once space returns", lambda: (
            r := http.call("POST", "/api/v1/namespaces/default/configmaps",
                           {"metadata": {"name": "after-space-returned"}, "data": {"v": "small"}}, timeout=30)
        )[0] == 201 and r, timeout=60, interval=1)
        server.kill()
        server.start(listen=server.url.split("//")[1])
        after = names()
        assert set(acked) | {"after-space-returned"} <= after, "lost across the restart"
    finally:
        server.kill()
        subprocess.run(["umount", str(data)], check=False)


class NetworkNamespace:
    """A network namespace joined to the host by a veth pair: a host of its own, whose cable
    can be pulled (`cut`) and plugged back (`reconnect`)."""

    def __init__(self, tag):
        self.name = f"en-{tag}"
        self.host_if, self.ns_if = f"veh{tag}", f"vea{tag}"
        octet = 16 + tag % 200
        self.host_ip, self.ns_ip = f"10.231.{octet}.1", f"10.231.{octet}.2"

    def __enter__(self):
        def ip(*args):
            subprocess.run(["ip", *args], check=True, capture_output=True)

        ip("netns", "add", self.name)
        try:
            ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            ip("link", "set", self.ns_if, "netns", self.name)
            ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            ip("link", "set", self.host_if, "up")
            ip("-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
            ip("-n", self.name, "link", "set", self.ns_if, "up")
            ip("-n", self.name, "link", "set", "lo", "up")
        except subprocess.CalledProcessError:
            self.__exit__()
            raise
        return self

    def cut(self):
        subprocess.run(["ip", "link", "set", self.host_if, "down"], check=True)

    def reconnect(self):
        subprocess.run(["ip", "link", "set", self.host_if, "up"], check=True)

    def __exit__(self, *exc):
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def test_agent_cut_off_by_the_network_keeps_its_pods_and_rejoins_without_a_duplicate(tmp_data_dir):
    """The agent runs in a network namespace of its own and its link to the server goes down:
    the node goes Unknown within the grace period while its container keeps running; when the
    link comes back the node is Ready again with the same pod, not restarted, and never a
    second one."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        if os.environ.get("CI") == "true":
            pytest.fail("the network fault test needs root and iproute2")
        pytest.skip("needs root and iproute2")
    with NetworkNamespace(os.getpid() % 10000) as netns:
        server = Server(tmp_data_dir, ["--tls-san", netns.host_ip, *FAST_LIFECYCLE]).start(listen=f"{netns.host_ip}:0")
        state = pathlib.Path(tmp_data_dir) / "agents" / "cut"
        state.mkdir(parents=True)
        agent = subprocess.Popen(
            ["ip", "netns", "exec", netns.name, everynode_binary(), "agent", "--kubeconfig", server.kubeconfig,
             "--name", "cut", "--node-ip", netns.ns_ip, "--listen", f"{netns.ns_ip}:0", "--state-dir", str(state),
             "--node-lease-duration-seconds", "4", "--node-status-update-frequency", "1"],
            stdout=subprocess.DEVNULL, stderr=open(pathlib.Path(tmp_data_dir) / "agent-cut.log", "ab"))
        client = server.client()
        try:
            core = kubernetes.client.CoreV1Api(client)
            apps = kubernetes.client.AppsV1Api(client)

            def node_ready():
                n = core.read_node("cut")
                return next(c.status for c in n.status.conditions if c.type == "Ready")

            wait_for("the cut-off node Ready", lambda: node_ready() == "True", timeout=60)
            apps.create_namespaced_daemon_set("default", {
                "metadata": {"name": "survivor"},
                "spec": {"selector": {"matchLabels": {"app": "survivor"}},
                         "template": {"metadata": {"labels": {"app": "survivor"}},
                                      "spec": {"containers": [{"name": "main", "image": "busybox",
                                                               "command": ["sh", "-c", "while true; do sleep 1; done"]}]}}}})

            def pod_ready(p):
                return any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))

            def container_pid(uid):
                pid_file = state / "containers" / uid / "main" / "pid"
                return int(pid_file.read_text()) if pid_file.exists() else None

            before = wait_for("the daemon pod running", lambda: (p := running_pod_obj(core)) and pod_ready(p) and p, timeout=60)
            uid = before.metadata.uid
            pid = container_pid(uid)
            assert pid and os.path.exists(f"/proc/{pid}"), "the container's process"

            netns.cut()
            wait_for("the node Unknown within the grace period", lambda: node_ready() == "Unknown", timeout=30)
            pods = core.list_namespaced_pod("default", label_selector="app=survivor").items
            assert [p.metadata.uid for p in pods] == [uid], "the daemon pod stays"
            assert os.path.exists(f"/proc/{pid}"), "the container keeps running while its node is cut off"

            netns.reconnect()
            wait_for("the node Ready again", lambda: node_ready() == "True", timeout=60)
            after = wait_for("the same pod Ready again", lambda: (p := running_pod_obj(core)) and pod_ready(p) and p, timeout=60)
            assert after.metadata.uid == uid, "no second pod"
            assert after.status.container_statuses[0].restart_count == 0, "not restarted"
            assert container_pid(uid) == pid and os.path.exists(f"/proc/{pid}"), "the same process"
            stays("one daemon pod, the same one", lambda: [
                p.metadata.uid for p in core.list_namespaced_pod("default", label_selector="app=survivor").items] == [uid],
                seconds=3, interval=0.5)
        finally:
            client.close()
            stop_process(agent)
            server.kill()


def running_pod_obj(core):
    pods = core.list_namespaced_pod("default", label_selector="app=survivor").items
    assert len(pods) <= 1, "never two daemon pods on the node"
    return pods[0] if pods else None
