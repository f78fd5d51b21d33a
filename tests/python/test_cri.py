"""The CRI runtime end to end: `everynode up --runtime cri --nodes 2` runs one real containerd
per node (Debian's containerd, runc and CNI plugins), and real kubectl drives DaemonSets of
images built here from Debian's busybox-static (these machines reach no registry)."""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request

import dnslib.server
import dnslib.zoneresolver
import pytest
import yaml

from conftest import (EXAMPLES, REPO, everynode_binary, fetch_local, kubectl_binary, remove_tree, start_port_forward,
                      stays, wait_for)

sys.path.insert(0, str(REPO / "tests" / "images"))
import busybox_image  # noqa: E402

NETWORK = "10.251.0.0/16"
PAUSE = "docker.io/local/pause:1"
BUSYBOX = "docker.io/local/busybox:1"
HTTPD = "docker.io/local/httpd:1"
# `up --runtime cri` gives node i the address 127.0.0.<i+1>, as if each were a machine of its own.
NODE_IPS = {"node-1": "127.0.0.2", "node-2": "127.0.0.3"}


def require(binary, package):
    if shutil.which(binary) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{binary} is required in CI (apt-get install -y {package})")
        pytest.skip(f"{binary} not installed (apt-get install -y {package})")


class CriCluster:
    def __init__(self, data):
        self.data = data
        self.up = None
        self.agent_pids = {}

    def kubectl(self, *args, input=None, check=True):
        env = dict(os.environ, KUBECONFIG=str(self.data / "kubeconfig"), HOME=str(self.data))
        r = subprocess.run([kubectl_binary(), *args], capture_output=True, text=True, env=env, input=input, timeout=120)
        if check:
            assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
        return r

    def apply(self, obj):
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def get(self, *args):
        r = self.kubectl("get", *args, "-o", "json", check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def pods(self, selector, namespace="default"):
        args = ["pods", "-n", namespace] + (["-l", selector] if selector else [])
        return (self.get(*args) or {"items": []})["items"]

    def ctr(self, node, *args):
        sock = self.data / "cri" / node / "containerd.sock"
        return subprocess.run(["ctr", "--address", str(sock), "--namespace", "k8s.io", *args],
                              capture_output=True, text=True, timeout=60)


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


@pytest.fixture(scope="module")
def cri():
    for binary, package in [("containerd", "containerd"), ("runc", "runc"), ("ctr", "containerd")]:
        require(binary, package)
    if not pathlib.Path("/usr/lib/cni/bridge").exists():
        require("/usr/lib/cni/bridge", "containernetworking-plugins")
    require("busybox", "busybox-static")
    if os.geteuid() != 0:
        pytest.skip("containerd needs root")
    ip_forward = pathlib.Path("/proc/sys/net/ipv4/ip_forward").read_text()
    # A short path: containerd's sockets live under it (108-byte limit).
    data = pathlib.Path(tempfile.mkdtemp(prefix="en-cri-"))
    images = data / "images"
    images.mkdir()
    busybox_image.write_image(images / "pause.tar", PAUSE, ["/bin/sleep"], ["2147483647"])
    busybox_image.write_image(images / "busybox.tar", BUSYBOX)
    busybox_image.write_image(images / "httpd.tar", HTTPD, ["httpd", "-f", "-p", "8080", "-h", "/var/www"])
    cluster = CriCluster(data)
    # The nodes' cluster DNS forwards other names here: a real DNS server (dnslib's) that
    # knows one name, as a site resolver would.
    upstream = dnslib.server.DNSServer(
        dnslib.zoneresolver.ZoneResolver("example.test. 60 IN A 192.0.2.10"),
        address="127.0.0.1", port=free_udp_port(), logger=dnslib.server.DNSLogger("-request,-reply,-truncated,-recv,-send,-data"))
    upstream.start_thread()
    log = open(data / "up.log", "ab")
    cluster.up = subprocess.Popen(
        [everynode_binary(), "up", "--runtime", "cri", "--nodes", "2", "--listen", "127.0.0.1:0",
         "--data-dir", str(data), "--pod-network-cidr", NETWORK, "--pod-infra-image", PAUSE,
         "--dns-upstream", f"127.0.0.1:{upstream.server.server_address[1]}"],
        stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        first = cluster.up.stdout.readline()
        assert "listening on" in first, first
        for _ in range(2):
            line = cluster.up.stdout.readline()
            m = re.match(r"everynode agent (\S+) pid (\d+)", line)
            assert m, line
            cluster.agent_pids[m.group(1)] = int(m.group(2))
        for tar in ["pause.tar", "busybox.tar", "httpd.tar"]:
            r = subprocess.run([everynode_binary(), "image", "import", str(images / tar), "--data-dir", str(data)],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            assert r.stdout.count("imported into") == 2, r.stdout
        wait_for("two Ready nodes", lambda: len([
            n for n in (cluster.get("nodes") or {"items": []})["items"]
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]) == 2)
        yield cluster
    finally:
        cluster.up.send_signal(signal.SIGINT)
        try:
            cluster.up.wait(timeout=150)
        except subprocess.TimeoutExpired:
            cluster.up.kill()
            cluster.up.wait()
        leftover = subprocess.run(["pgrep", "-f", f"containerd --config {data}"], capture_output=True, text=True).stdout
        bridges = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout
        host_dir = data / "host"
        if host_dir.exists():
            subprocess.run(["umount", "-l", str(host_dir)], capture_output=True)
        remove_tree(data)
        upstream.stop()
        # Ctrl-C leaves nothing on the host: no containerd, bridge, cgroup, NAT chain or sysctl.
        assert leftover == "", f"containerd still running after up stopped: {leftover}"
        assert not re.search(r": en[0-9a-f]{6}-\d", bridges), bridges
        assert not list(pathlib.Path("/sys/fs/cgroup/memory").glob("everynode/node-*"))
        nat = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True).stdout
        assert "CNI-HOSTPORT" not in nat, nat
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert "everynode_proxy_" not in tables, tables
        assert pathlib.Path("/proc/sys/net/ipv4/ip_forward").read_text() == ip_forward


def httpd_daemonset(name, **spec):
    template_spec = {
        "terminationGracePeriodSeconds": 1,
        "containers": [{
            "name": "httpd",
            "image": HTTPD,
            "imagePullPolicy": "IfNotPresent",
            "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
            # Runs inside the container through the runtime's ExecSync.
            "startupProbe": {"exec": {"command": ["cat", "/var/www/index.html"]}, "periodSeconds": 1},
        }],
    }
    template_spec.update(spec)
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": template_spec}},
    }


def pod(name, node, containers, **spec):
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": containers}}
    body["spec"].update(spec)
    return body


def logs(cri, name, container=None):
    args = ["logs", name] + (["-c", container] if container else [])
    r = cri.kubectl(*args, check=False)
    return r.stdout


def test_an_image_without_a_command_runs_on_every_node_with_a_pod_ip_of_its_own(cri):
    cri.apply(httpd_daemonset("web"))
    wait_for("a Ready web pod on each node", lambda: len([p for p in cri.pods("app=web") if ready(p)]) == 2)
    pods = cri.pods("app=web")
    ips = {p["spec"]["nodeName"]: p["status"]["podIP"] for p in pods}
    assert set(ips) == {"node-1", "node-2"}
    assert len(set(ips.values())) == 2 and not set(NODE_IPS.values()) & set(ips.values()), ips
    assert ips["node-1"].startswith("10.251.1.") and ips["node-2"].startswith("10.251.2."), ips
    for p in pods:
        assert p["status"]["podIPs"] == [{"ip": p["status"]["podIP"]}]
        assert p["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
    # From the host, and from a pod on node-1 to the pod on node-2 across the two bridges.
    with urllib.request.urlopen(f"http://{ips['node-2']}:8080/index.html", timeout=5) as r:
        assert r.read() == b"hello from busybox httpd\n"
    cri.apply(pod("fetch", "node-1", [{"name": "c", "image": BUSYBOX, "command": [
        "sh", "-c", f"wget -q -O- http://{ips['node-2']}:8080/index.html; sleep 3600"]}]))
    wait_for("the fetch over the pod network", lambda: "hello from busybox httpd" in logs(cri, "fetch"))
    nodes = cri.get("nodes")["items"]
    assert sorted(n["spec"]["podCIDR"] for n in nodes) == ["10.251.1.0/24", "10.251.2.0/24"]
    assert all(n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://") for n in nodes)
    cri.kubectl("delete", "pod", "fetch", "--wait=false")


def test_host_network_pods_report_the_node_ip_and_host_ports_reach_the_pod(cri):
    cri.apply(pod("hostnet", "node-1", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}], hostNetwork=True))
    cri.apply(pod("hostport", "node-2", [{"name": "c", "image": HTTPD, "ports": [{"containerPort": 8080, "hostPort": 18080}]}]))
    wait_for("both running", lambda: all(
        (cri.get("pod", n) or {}).get("status", {}).get("phase") == "Running" for n in ["hostnet", "hostport"]))
    hostnet = cri.get("pod", "hostnet")
    assert hostnet["status"]["podIP"] == NODE_IPS["node-1"]
    hostport = cri.get("pod", "hostport")
    assert hostport["status"]["podIP"] != NODE_IPS["node-2"]

    def served():
        try:
            with urllib.request.urlopen(f"http://{NODE_IPS['node-2']}:18080/index.html", timeout=2) as r:
                return r.read() == b"hello from busybox httpd\n"
        except OSError:
            return False
    wait_for("the hostPort on the node IP", served)
    cri.kubectl("delete", "pod", "hostnet", "hostport")


def test_pull_policy_failures_are_reported_as_kubelet_does_and_stall_the_rollout(cri):
    cri.apply(pod("never", "node-1", [{"name": "c", "image": "docker.io/local/absent:1", "imagePullPolicy": "Never"}]))
    cri.apply(pod("unpullable", "node-1", [{"name": "c", "image": "docker.io/local/absent:2", "imagePullPolicy": "IfNotPresent"}]))

    def waiting(name):
        p = cri.get("pod", name) or {}
        statuses = p.get("status", {}).get("containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("waiting", {})

    wait_for("ErrImageNeverPull", lambda: waiting("never").get("reason") == "ErrImageNeverPull")
    assert waiting("never")["message"] == 'Container image "docker.io/local/absent:1" is not present with pull policy of Never'
    seen = set()

    def pull_reasons():
        seen.add(waiting("unpullable").get("reason"))
        return {"ErrImagePull", "ImagePullBackOff"} <= seen
    wait_for("ErrImagePull, then ImagePullBackOff", pull_reasons, interval=0.1)
    events = cri.kubectl("get", "events", "--field-selector", "involvedObject.name=unpullable", "-o", "json").stdout
    reasons = [e["reason"] for e in json.loads(events)["items"]]
    assert "Pulling" in reasons and "BackOff" in reasons, reasons
    cri.kubectl("delete", "pod", "never", "unpullable")

    # A DaemonSet updated to an image that cannot be pulled stops after its first node.
    cri.apply(httpd_daemonset("stall"))
    wait_for("stall Ready on both nodes", lambda: len([p for p in cri.pods("app=stall") if ready(p)]) == 2)
    cri.kubectl("set", "image", "ds/stall", "httpd=docker.io/local/absent:3")

    def stalled():
        ds = cri.get("ds", "stall")
        st = ds.get("status", {})
        return ds["metadata"]["generation"] == st.get("observedGeneration") and st.get("updatedNumberScheduled") == 1 \
            and st.get("numberUnavailable") == 1
    wait_for("the rollout to stop at one unavailable node", stalled)
    stays("the rollout stalled", lambda: cri.get("ds", "stall")["status"].get("updatedNumberScheduled") == 1, seconds=5)
    cri.kubectl("delete", "ds", "stall")


def test_a_container_over_its_memory_limit_is_oom_killed(cri):
    cri.apply(pod("oom", "node-2", [{
        "name": "c", "image": BUSYBOX, "command": ["sh", "-c", "head -c 100m /dev/zero | tail"],
        "resources": {"limits": {"memory": "32Mi"}}}]))

    def oom_killed():
        statuses = ((cri.get("pod", "oom") or {}).get("status", {}).get("containerStatuses")) or [{}]
        last = statuses[0].get("lastState", {}).get("terminated", {})
        return statuses[0].get("restartCount", 0) >= 1 and last.get("reason") == "OOMKilled" and last
    last = wait_for("OOMKilled", oom_killed)
    assert last["exitCode"] == 137
    cri.kubectl("delete", "pod", "oom")


def test_privileged_containers_see_the_hosts_devices_and_others_do_not(cri):
    count = ["sh", "-c", "ls /dev | wc -l; sleep 3600"]
    cri.apply(pod("priv", "node-1", [{"name": "c", "image": BUSYBOX, "command": count, "securityContext": {"privileged": True}}]))
    cri.apply(pod("plain", "node-1", [{"name": "c", "image": BUSYBOX, "command": count}]))
    wait_for("both counted", lambda: logs(cri, "priv").strip().isdigit() and logs(cri, "plain").strip().isdigit())
    host = len(os.listdir("/dev"))
    privileged, plain = int(logs(cri, "priv")), int(logs(cri, "plain"))
    assert privileged >= host - 5, (privileged, host)
    assert plain < 30 < host, (plain, host)
    cri.kubectl("delete", "pod", "priv", "plain")


def test_resolv_conf_and_hosts_follow_dns_policy_dns_config_and_host_aliases(cri):
    show = ["sh", "-c", "cat /etc/resolv.conf; echo ---; cat /etc/hosts; sleep 3600"]
    cri.apply(pod("dns-none", "node-2", [{"name": "c", "image": BUSYBOX, "command": show}],
                  dnsPolicy="None",
                  dnsConfig={"nameservers": ["10.9.9.9"], "searches": ["a.example", "b.example"],
                             "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]},
                  hostAliases=[{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}]))
    cri.apply(pod("dns-default", "node-2", [{"name": "c", "image": BUSYBOX, "command": show}], dnsPolicy="Default",
                  dnsConfig={"searches": ["extra.example"]}))
    wait_for("both printed", lambda: "---" in logs(cri, "dns-none") and "---" in logs(cri, "dns-default"))
    resolv, hosts = logs(cri, "dns-none").split("---\n")
    assert sorted(resolv.strip().splitlines()) == sorted(["nameserver 10.9.9.9", "search a.example b.example", "options ndots:2 edns0"])
    ip = cri.get("pod", "dns-none")["status"]["podIP"]
    assert hosts.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert f"{ip}\tdns-none\n" in hosts
    assert hosts.rstrip("\n").endswith("# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local")
    host_resolv = pathlib.Path("/etc/resolv.conf").read_text()
    resolv = logs(cri, "dns-default").split("---\n")[0]
    host_servers = [line.split()[1] for line in host_resolv.splitlines() if line.startswith("nameserver")][:3]
    assert [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver")] == host_servers
    assert "extra.example" in next(line for line in resolv.splitlines() if line.startswith("search"))
    cri.kubectl("delete", "pod", "dns-none", "dns-default")


def test_a_rolling_update_replaces_containers_and_a_killed_agent_adopts_them(cri):
    cri.apply(httpd_daemonset("roll"))
    wait_for("roll Ready on both nodes", lambda: len([p for p in cri.pods("app=roll") if ready(p)]) == 2)
    before = {p["spec"]["nodeName"]: p for p in cri.pods("app=roll")}
    # kill -9 of node-1's agent: `up` starts another, which adopts the running container.
    pid_file = cri.data / "agents" / "node-1.pid"
    old_pid = int(pid_file.read_text())

    def certificate():
        return cri.get("node", "node-1")["metadata"]["annotations"]["everynode.io/agent-certificate-sha256"]
    old_certificate = certificate()
    os.kill(old_pid, signal.SIGKILL)
    # Each agent start makes a serving certificate of its own: a new one means a new agent.
    wait_for("a new agent for node-1", lambda: certificate() != old_certificate)
    old = before["node-1"]["status"]["containerStatuses"][0]

    def same_container():
        p = next(p for p in cri.pods("app=roll") if p["spec"]["nodeName"] == "node-1")
        now = p["status"]["containerStatuses"][0]
        return ready(p) and (now["containerID"], now["state"]["running"]["startedAt"], now["restartCount"]) == \
            (old["containerID"], old["state"]["running"]["startedAt"], 0)
    stays("the adopted container keeps running as it was", same_container, seconds=5, interval=0.5)
    running = [line for line in cri.ctr("node-1", "tasks", "ls").stdout.splitlines() if "RUNNING" in line]
    container_id = old["containerID"].split("://")[1]
    assert sum(container_id in line for line in running) == 1
    # A template change replaces each node's pod, one node at a time (maxUnavailable 1).
    cri.kubectl("set", "env", "ds/roll", "VERSION=2")
    worst = []

    def updated():
        pods = cri.pods("app=roll")
        worst.append(len([p for p in pods if not ready(p) or p["metadata"].get("deletionTimestamp")]))
        ds = cri.get("ds", "roll")["status"]
        return ds.get("updatedNumberScheduled") == 2 and ds.get("numberAvailable") == 2 and \
            len([p for p in pods if not p["metadata"].get("deletionTimestamp")]) == 2
    wait_for("the rollout", updated, timeout=120, interval=0.2)
    assert max(worst) <= 1, worst
    after = {p["spec"]["nodeName"]: p["status"]["containerStatuses"][0]["containerID"] for p in cri.pods("app=roll")}
    assert all(after[n] != before[n]["status"]["containerStatuses"][0]["containerID"] for n in after)
    cri.kubectl("delete", "ds", "roll")


def test_the_hwameistor_seed_runs_with_host_network_host_pid_privileged_and_bidirectional_mounts(cri):
    """The seed's DaemonSet as a user would bring it, server fields stripped; its images are
    replaced by the local busybox and its commands by a loop, and its host paths moved under a
    shared directory (Bidirectional propagation needs a shared mount, as on systemd hosts)."""
    host = cri.data / "host"
    host.mkdir(exist_ok=True)
    subprocess.run(["mount", "--bind", str(host), str(host)], check=True)
    subprocess.run(["mount", "--make-rshared", str(host)], check=True)
    ds = yaml.safe_load((EXAMPLES / "dce-hwameistor-zh.yaml").read_text())
    ds.pop("status", None)
    meta = ds["metadata"]
    for field in ["uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink"]:
        meta.pop(field, None)
    meta["namespace"] = "hwameistor"
    spec = ds["spec"]["template"]["spec"]
    for v in spec["volumes"]:
        path = v.get("hostPath", {}).get("path", "")
        if path.startswith("/var/lib/kubelet") or path.startswith("/run/udev"):
            moved = host / path.lstrip("/")
            moved.mkdir(parents=True, exist_ok=True)
            v["hostPath"]["path"] = str(moved)
    for c in spec["containers"]:
        c["image"] = BUSYBOX
        c["command"] = ["sh", "-c", "while true; do sleep 5; done"]
        c.pop("args", None)
    cri.kubectl("create", "namespace", "hwameistor")
    cri.kubectl("create", "serviceaccount", "hwameistor-admin", "-n", "hwameistor")
    cri.kubectl("apply", "-f", "-", input=json.dumps(ds))
    wait_for("the seed's pods Ready on both nodes",
             lambda: len([p for p in cri.pods("", "hwameistor") if ready(p)]) == 2, timeout=120)
    for p in cri.pods("", "hwameistor"):
        assert p["status"]["podIP"] == NODE_IPS[p["spec"]["nodeName"]]
        assert [c["ready"] for c in p["status"]["containerStatuses"]] == [True, True]
    cri.kubectl("delete", "ds", "--all", "-n", "hwameistor")
    wait_for("the seed's pods gone", lambda: cri.pods("", "hwameistor") == [], timeout=120)


def test_the_security_context_applies_inside_the_container(cri):
    cri.apply(pod("secure", "node-2", [{
        "name": "c", "image": BUSYBOX,
        "command": ["sh", "-c", "id -u; id -g; touch /probe 2>/dev/null && echo writable || echo read-only; "
                    "grep CapEff /proc/self/status; touch /cache/ok && grep ' /cache ' /proc/mounts; sleep 3600"],
        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
        "securityContext": {"runAsUser": 65534, "runAsGroup": 65534, "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        volumes=[{"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]))
    wait_for("the container's report", lambda: "/cache" in logs(cri, "secure"))
    lines = logs(cri, "secure").splitlines()
    assert lines[:3] == ["65534", "65534", "read-only"], lines
    assert lines[3].split()[1] == "0000000000000000", lines
    # emptyDir with medium Memory is a tmpfs of its sizeLimit, writable by the container's user.
    mount = lines[4].split()
    assert mount[2] == "tmpfs" and "size=16384k" in mount[3], lines
    # runAsNonRoot against an image that runs as root: refused before it starts, as kubelet does.
    cri.apply(pod("nonroot", "node-2", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"],
                                         "securityContext": {"runAsNonRoot": True}}]))

    def refused():
        statuses = ((cri.get("pod", "nonroot") or {}).get("status", {}).get("containerStatuses")) or [{}]
        return statuses[0].get("state", {}).get("waiting", {})
    waiting = wait_for("CreateContainerConfigError", lambda: refused().get("reason") == "CreateContainerConfigError" and refused())
    uid = cri.get("pod", "nonroot")["metadata"]["uid"]
    assert waiting["message"] == f'container has runAsNonRoot and image will run as root (pod: "nonroot_default({uid})", container: c)'
    cri.kubectl("delete", "pod", "secure", "nonroot")


def test_logs_of_cri_containers_follow_kubectl_logs_options(cri):
    cri.apply(pod("talker", "node-1", [{"name": "c", "image": BUSYBOX, "command": [
        "sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done; exit 3"]}], restartPolicy="OnFailure"))

    def restarted():
        statuses = ((cri.get("pod", "talker") or {}).get("status", {}).get("containerStatuses")) or [{}]
        return statuses[0].get("restartCount", 0) >= 1
    wait_for("a restart", restarted)
    assert cri.kubectl("logs", "talker", "--tail", "2").stdout == "line-4\nline-5\n"
    previous = cri.kubectl("logs", "talker", "--previous").stdout
    assert previous.splitlines() == [f"line-{i}" for i in range(1, 6)], previous
    stamped = cri.kubectl("logs", "talker", "--previous", "--timestamps", "--limit-bytes", "200").stdout
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z line-1\n", stamped), stamped
    cri.kubectl("delete", "pod", "talker")


def test_a_pod_deleted_while_its_agent_was_down_is_removed_when_it_returns(cri):
    cri.apply(pod("gone-while-down", "node-2", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}]))
    wait_for("it runs", lambda: (cri.get("pod", "gone-while-down") or {}).get("status", {}).get("phase") == "Running")
    container_id = cri.get("pod", "gone-while-down")["status"]["containerStatuses"][0]["containerID"].split("://")[1]
    pid_file = cri.data / "agents" / "node-2.pid"

    def certificate():
        return cri.get("node", "node-2")["metadata"]["annotations"]["everynode.io/agent-certificate-sha256"]
    old_certificate = certificate()
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    # While the agent is down the pod is force-deleted from the API, as an operator would.
    cri.kubectl("delete", "pod", "gone-while-down", "--grace-period=0", "--force")
    wait_for("a new agent for node-2", lambda: certificate() != old_certificate)

    def removed():
        containers = cri.ctr("node-2", "containers", "ls", "-q").stdout.split()
        return container_id not in containers
    wait_for("the container of the deleted pod removed", removed)


def test_cri_container_logs_are_rotated_past_their_size_limit(cri):
    """containerd writes the log files; the agent rotates them past --container-log-max-size
    (10 MiB by default) and has containerd reopen them, as kubelet's log manager does."""
    cri.apply(pod("chatty", "node-1", [{"name": "c", "image": BUSYBOX, "command": [
        "sh", "-c", "head -c 12000000 /dev/zero | tr '\\0' a | fold -w 1000; echo after-the-flood; sleep 3600"]}]))
    wait_for("it runs", lambda: (cri.get("pod", "chatty") or {}).get("status", {}).get("phase") == "Running")
    uid = cri.get("pod", "chatty")["metadata"]["uid"]
    logs_dir = cri.data / "agents" / "node-1" / "logs" / f"default_chatty_{uid}" / "c"
    rotated = wait_for("a rotated log", lambda: sorted(p.name for p in logs_dir.glob("0.log.*")), timeout=60)
    assert rotated[0] == "0.log.1", rotated
    assert (logs_dir / "0.log").stat().st_size < 10 * 1024 * 1024
    cri.kubectl("delete", "pod", "chatty")


def test_kubectl_top_reads_cri_containers_through_the_runtimes_stats(cri):
    cri.apply(pod("spinner", "node-1", [{"name": "spin", "image": BUSYBOX, "command": ["sh", "-c", "while true; do :; done"]}]))

    def busy():
        r = cri.kubectl("top", "pod", "spinner", "--containers", "--no-headers", check=False)
        if r.returncode != 0:
            return None
        name, container, cpu, memory = r.stdout.split()[:4]
        cores = int(cpu[:-1]) if cpu.endswith("m") else int(cpu) * 1000
        return container == "spin" and cores >= 300 and (cores, memory)
    try:
        # The server reads the agents every 15 s and needs two readings for a rate.
        wait_for("the spinner's CPU from containerd's stats", busy, timeout=120)
    finally:
        cri.kubectl("delete", "pod", "spinner", "--wait=false")


def test_kubectl_exec_runs_through_the_runtimes_streaming_server(cri):
    cri.apply(pod("shell", "node-2", [{"name": "c", "image": BUSYBOX, "command": ["sh", "-c", "echo only-in-the-container > /tmp/marker; sleep 3600"],
                                        "env": [{"name": "GREETING", "value": "inside"}]}]))
    try:
        wait_for("the shell pod Ready", lambda: ready(cri.get("pod", "shell") or {}))
        r = cri.kubectl("exec", "shell", "--", "sh", "-c", 'echo "$GREETING $(hostname)"; echo oops >&2; exit 3', check=False)
        assert r.returncode == 3, r.stderr
        assert r.stdout == "inside shell\n", r.stdout
        assert "oops" in r.stderr and "command terminated with exit code 3" in r.stderr, r.stderr
        # Input reaches the command, and its end ends it (SPDY's FIN on the stdin stream).
        r = cri.kubectl("exec", "-i", "shell", "--", "wc", "-l", input="first line\nsecond\n")
        assert r.stdout.strip() == "2", r.stdout
        # So `kubectl cp` into the container finishes, and back out.
        source = cri.data / "to-copy.txt"
        source.write_text("copied into a container\n" * 200)
        cri.kubectl("cp", str(source), "shell:/tmp/copied.txt")
        r = cri.kubectl("exec", "shell", "--", "wc", "-l", "/tmp/copied.txt")
        assert r.stdout.split()[0] == "200", r.stdout
        back = cri.data / "copied-back.txt"
        cri.kubectl("cp", "shell:/tmp/copied.txt", str(back))
        assert back.read_text() == source.read_text()
        # The command runs in the container: it sees the container's own files.
        r = cri.kubectl("exec", "shell", "--", "cat", "/tmp/marker")
        assert r.stdout == "only-in-the-container\n", r.stdout
    finally:
        cri.kubectl("delete", "pod", "shell", "--wait=false")


def test_kubectl_attach_reaches_a_containers_stdin_through_the_runtime(cri):
    """`kubectl attach -i` goes through containerd's streaming server: a `stdin`/`stdinOnce`
    container reads the client's input and ends when it ends."""
    script = 'while read line; do echo "got $line"; done; echo stdin closed'
    cri.apply(pod("reader", "node-2", [{"name": "c", "image": BUSYBOX, "stdin": True, "stdinOnce": True,
                                         "command": ["sh", "-c", script]}], restartPolicy="Never"))
    try:
        wait_for("the reader pod Ready", lambda: ready(cri.get("pod", "reader") or {}))
        r = cri.kubectl("attach", "-i", "reader", "-c", "c", input="hello\nworld\n")
        assert "got hello\ngot world\nstdin closed\n" in r.stdout, (r.stdout, r.stderr)
        wait_for("the reader Succeeded", lambda: (cri.get("pod", "reader") or {}).get("status", {}).get("phase") == "Succeeded")
    finally:
        cri.kubectl("delete", "pod", "reader", "--wait=false")


def test_kubectl_port_forward_reaches_a_server_on_the_pods_own_localhost(cri):
    """The agent dials inside the pod's network namespace, so a server bound to the pod's
    127.0.0.1 (unreachable from the node) is reached, as kubelet's runtimes reach it."""
    script = "mkdir -p /www && echo served-from-the-pod > /www/index.html && httpd -f -p 127.0.0.1:8081 -h /www"
    cri.apply(pod("forwarded", "node-2", [{"name": "c", "image": BUSYBOX, "command": ["sh", "-c", script]}]))
    proc = None
    try:
        wait_for("the forwarded pod Ready", lambda: ready(cri.get("pod", "forwarded") or {}))
        proc, local = start_port_forward(cri.data / "kubeconfig", cri.data, kubectl_binary(), "pod/forwarded", 8081)
        assert fetch_local(local, "index.html") == b"served-from-the-pod\n"
        assert fetch_local(local, "index.html") == b"served-from-the-pod\n", "a second connection"
    finally:
        if proc:
            proc.kill()
            proc.wait()
        cri.kubectl("delete", "pod", "forwarded", "--wait=false")


def node_name_server(name):
    """A DaemonSet whose pods answer HTTP on port 8080 (named `http`) with their node's name."""
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {
                     "terminationGracePeriodSeconds": 1,
                     "containers": [{
                         "name": "httpd", "image": HTTPD, "imagePullPolicy": "IfNotPresent",
                         "command": ["sh", "-c", "mkdir -p /tmp/www && echo $NODE > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"],
                         "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                         "ports": [{"name": "http", "containerPort": 8080}],
                         "readinessProbe": {"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1},
                     }]}}},
    }


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.read().decode().strip()
    except OSError as e:
        return f"error: {e}"


def test_node_ports_reach_the_daemon_on_the_node_or_any_node(cri):
    """A NodePort Service over a DaemonSet: with externalTrafficPolicy Local each node's port
    answers from that node's pod; with Cluster, from either."""
    cri.apply(node_name_server("whoami"))
    cri.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "whoami"},
               "spec": {"type": "NodePort", "externalTrafficPolicy": "Local", "selector": {"app": "whoami"},
                        "ports": [{"port": 80, "targetPort": "http", "nodePort": 30080}]}})
    wait_for("a ready endpoint per node", lambda: len([
        e for s in cri.get("endpointslices", "-l", "kubernetes.io/service-name=whoami")["items"]
        for e in s.get("endpoints") or [] if e["conditions"].get("ready")]) == 2)
    for node, ip in NODE_IPS.items():
        wait_for(f"{node}'s node port", lambda: fetch(f"http://{ip}:30080/index.html") == node)
        answers = {fetch(f"http://{ip}:30080/index.html") for _ in range(6)}
        assert answers == {node}, answers
    cri.kubectl("patch", "svc", "whoami", "-p", json.dumps({"spec": {"externalTrafficPolicy": "Cluster"}}))
    wait_for("node-1's port answering from both nodes", lambda: {
        fetch(f"http://{NODE_IPS['node-1']}:30080/index.html") for _ in range(4)} == set(NODE_IPS))
    cri.kubectl("delete", "svc", "whoami")
    wait_for("the node port closed", lambda: fetch(f"http://{NODE_IPS['node-1']}:30080/index.html").startswith("error"))
    cri.kubectl("delete", "ds", "whoami")


def test_a_pod_reaches_the_daemon_through_its_cluster_ip(cri):
    """From a pod, a Service's cluster IP reaches a ready endpoint; internalTrafficPolicy Local
    keeps the traffic on the pod's node, Cluster spreads it, and ClientIP affinity keeps a
    client on one endpoint."""
    cri.apply(node_name_server("peer"))
    cri.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "peer"},
               "spec": {"selector": {"app": "peer"}, "internalTrafficPolicy": "Local",
                        "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}})
    cluster_ip = cri.get("svc", "peer")["spec"]["clusterIP"]
    wait_for("a ready endpoint per node", lambda: len([
        e for s in cri.get("endpointslices", "-l", "kubernetes.io/service-name=peer")["items"]
        for e in s.get("endpoints") or [] if e["conditions"].get("ready")]) == 2)
    cri.apply(pod("client", "node-2", [{"name": "c", "image": BUSYBOX, "command": [
        # busybox-static's wget crashes on -T, and on a URL without a port (it looks the port
        # up in NSS, which a static binary cannot load).
        "sh", "-c", f"while true; do wget -q -O- http://{cluster_ip}:80/index.html; sleep 0.2; done"]}]))
    wait_for("answers through the cluster IP", lambda: logs(cri, "client").split().count("node-2") >= 5)
    assert set(logs(cri, "client").split()) == {"node-2"}, logs(cri, "client")

    def recent():
        return set(logs(cri, "client").split()[-10:])

    # Cluster: connections take turns over both nodes' pods.
    cri.kubectl("patch", "svc", "peer", "-p", json.dumps({"spec": {"internalTrafficPolicy": "Cluster"}}))
    wait_for("answers from both nodes", lambda: recent() == {"node-1", "node-2"})
    # ClientIP affinity: this pod keeps one endpoint.
    cri.kubectl("patch", "svc", "peer", "-p", json.dumps({"spec": {"sessionAffinity": "ClientIP"}}))
    wait_for("one endpoint for this client", lambda: len(recent()) == 1)
    stays("the client's endpoint", lambda: len(recent()) == 1, seconds=3, interval=0.5)
    cri.kubectl("delete", "pod", "client", "--wait=false")
    cri.kubectl("delete", "svc", "peer")
    cri.kubectl("delete", "ds", "peer")


def test_pods_resolve_services_and_other_names_through_their_nodes_dns(cri):
    """ClusterFirst pods ask their node's cluster DNS: a headless Service's name is one A
    record per ready pod (a pod turned unready leaves it), a ClusterIP Service's its address,
    SRV names the ports, and other names are forwarded to the node's resolvers."""
    cri.apply(node_name_server("named"))
    cri.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "named"},
               "spec": {"clusterIP": "None", "selector": {"app": "named"},
                        "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}})
    cri.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "named-vip"},
               "spec": {"selector": {"app": "named"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}})
    wait_for("a Ready pod per node", lambda: len([p for p in cri.pods("app=named") if ready(p)]) == 2)
    ips = {p["spec"]["nodeName"]: p["status"]["podIP"] for p in cri.pods("app=named")}
    cri.apply(pod("asker", "node-1", [{"name": "c", "image": BUSYBOX, "command": ["sleep", "3600"]}]))
    wait_for("the asker running", lambda: (cri.get("pod", "asker") or {}).get("status", {}).get("phase") == "Running")

    def ask(*args):
        return cri.kubectl("exec", "asker", "--", "nslookup", *args, check=False).stdout

    resolv = cri.kubectl("exec", "asker", "--", "cat", "/etc/resolv.conf").stdout.splitlines()
    assert "nameserver 10.251.1.1" in resolv, resolv
    assert any(line.startswith("search default.svc.cluster.local svc.cluster.local cluster.local")
               for line in resolv), resolv
    assert "options ndots:5" in resolv, resolv
    wait_for("both pods in the headless name", lambda: all(ip in ask("named.default.svc.cluster.local") for ip in ips.values()))
    vip = cri.get("svc", "named-vip")["spec"]["clusterIP"]
    assert vip in ask("named-vip.default.svc.cluster.local")
    srv = ask("-type=srv", "_web._tcp.named-vip.default.svc.cluster.local")
    assert "named-vip.default.svc.cluster.local" in srv and "80" in srv, srv
    assert "192.0.2.10" in ask("example.test"), "forwarded to the node's resolver"
    absent = cri.kubectl("exec", "asker", "--", "nslookup", "absent.default.svc.cluster.local", check=False)
    assert absent.returncode != 0 and "NXDOMAIN" in absent.stdout + absent.stderr, absent

    # node-2's pod turns unready: it leaves the name.
    [other] = [p["metadata"]["name"] for p in cri.pods("app=named") if p["spec"]["nodeName"] == "node-2"]
    cri.kubectl("exec", other, "--", "rm", "/tmp/www/index.html")
    wait_for("only node-1's pod in the name", lambda: ips["node-2"] not in ask("named.default.svc.cluster.local")
             and ips["node-1"] in ask("named.default.svc.cluster.local"))
    cri.kubectl("delete", "pod", "asker", "--wait=false")
    cri.kubectl("delete", "svc", "named", "named-vip")
    cri.kubectl("delete", "ds", "named")
