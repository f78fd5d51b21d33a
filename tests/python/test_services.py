"""Services get cluster IPs and node ports as upstream's allocators give them: from the
server's ranges, refused with upstream's messages when taken or out of range, kept by an apply
that leaves them out, and given back when the Service goes."""

import ipaddress
import json
import os
import pathlib

import kubernetes
import kubernetes.watch
import pytest

from conftest import API_ONLY, Server, wait_for


@pytest.fixture
def small_ranges(tmp_data_dir):
    s = Server(tmp_data_dir, [*API_ONLY, "--service-cluster-ip-range", "10.100.0.0/24",
                              "--service-node-port-range", "30100-30110"]).start()
    yield s
    s.kill()


def service(name, spec):
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})


def test_cluster_ips_and_node_ports_come_from_the_ranges_and_are_held_once(small_ranges):
    s = small_ranges
    s.kubectl("apply", "-f", "-", input=service("web", {"type": "NodePort", "selector": {"app": "web"},
                                                        "ports": [{"port": 80, "targetPort": 8080}]}))
    svc = json.loads(s.kubectl("get", "svc", "web", "-o", "json").stdout)
    ip = svc["spec"]["clusterIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.100.0.0/24")
    assert svc["spec"]["clusterIPs"] == [ip] and svc["spec"]["ipFamilies"] == ["IPv4"]
    node_port = svc["spec"]["ports"][0]["nodePort"]
    assert 30100 <= node_port <= 30110
    row = s.kubectl("get", "svc", "web", "--no-headers").stdout.split()
    assert row[1:5] == ["NodePort", ip, "<none>", f"80:{node_port}/TCP"], row

    # An apply that leaves them out keeps them; an unchanged one changes nothing.
    rv = svc["metadata"]["resourceVersion"]
    s.kubectl("apply", "-f", "-", input=service("web", {"type": "NodePort", "selector": {"app": "web"},
                                                        "ports": [{"port": 80, "targetPort": 8080}]}))
    again = json.loads(s.kubectl("get", "svc", "web", "-o", "json").stdout)
    assert (again["spec"]["clusterIP"], again["spec"]["ports"][0]["nodePort"]) == (ip, node_port)
    assert again["metadata"]["resourceVersion"] == rv

    # Taken, or outside the ranges: upstream's 422s.
    r = s.kubectl("create", "service", "clusterip", "db", f"--clusterip={ip}", "--tcp=5432:5432", check=False)
    assert f'Service "db" is invalid: spec.clusterIPs: Invalid value: []string{{"{ip}"}}: failed to allocate IP {ip}: provided IP is already allocated' in r.stderr, r.stderr
    r = s.kubectl("create", "service", "clusterip", "db", "--clusterip=10.101.0.5", "--tcp=5432:5432", check=False)
    assert "failed to allocate IP 10.101.0.5: the provided IP (10.101.0.5) is not in the valid range. The range of valid IPs is 10.100.0.0/24" in r.stderr, r.stderr
    r = s.kubectl("create", "service", "nodeport", "db", "--tcp=5432:5432", f"--node-port={node_port}", check=False)
    assert f"spec.ports[0].nodePort: Invalid value: {node_port}: provided port is already allocated" in r.stderr, r.stderr
    r = s.kubectl("create", "service", "nodeport", "db", "--tcp=5432:5432", "--node-port=31000", check=False)
    assert "spec.ports[0].nodePort: Invalid value: 31000: provided port is not in the valid range. The range of valid ports is 30100-30110" in r.stderr, r.stderr
    # A dry run shows an address and keeps nothing.
    dry = json.loads(s.kubectl("create", "service", "clusterip", "dry", "--tcp=80:80", "--dry-run=server", "-o", "json").stdout)
    assert dry["spec"]["clusterIP"].startswith("10.100.0.")

    # Deleted: the address and the port may be taken again.
    s.kubectl("delete", "svc", "web")
    s.kubectl("create", "service", "nodeport", "db", "--tcp=5432:5432", f"--node-port={node_port}")
    s.kubectl("create", "service", "clusterip", "db2", f"--clusterip={ip}", "--tcp=5432:5432")
    # Back to ClusterIP: the node port is given back.
    s.kubectl("patch", "svc", "db", "-p", json.dumps({"spec": {"type": "ClusterIP"}}))
    assert "nodePort" not in json.loads(s.kubectl("get", "svc", "db", "-o", "json").stdout)["spec"]["ports"][0]
    s.kubectl("create", "service", "nodeport", "db3", "--tcp=80:80", f"--node-port={node_port}")
    # The address may not change.
    r = s.kubectl("patch", "svc", "db2", "-p", json.dumps({"spec": {"clusterIP": "10.100.0.200", "clusterIPs": ["10.100.0.200"]}}), check=False)
    assert 'spec.clusterIPs[0]: Invalid value: "10.100.0.200": may not change once set' in r.stderr, r.stderr


def test_headless_services_and_invalid_specs(server):
    s = server
    s.kubectl("apply", "-f", "-", input=service("peers", {"clusterIP": "None", "selector": {"app": "x"}}))
    svc = json.loads(s.kubectl("get", "svc", "peers", "-o", "json").stdout)
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["clusterIPs"] == ["None"]
    api = kubernetes.client.CoreV1Api(s.client())
    with pytest.raises(kubernetes.client.ApiException) as e:
        api.create_namespaced_service("default", {"metadata": {"name": "bad"}, "spec": {
            "type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}})
    assert e.value.status == 422
    body = json.loads(e.value.body)
    assert body["details"]["causes"][0]["field"] == "spec.clusterIPs[0]", body
    assert "may not be set to 'None' for LoadBalancer or NodePort services" in body["message"], body


def test_allocations_survive_a_restart(tmp_data_dir):
    s = Server(tmp_data_dir, API_ONLY).start()
    try:
        s.kubectl("create", "service", "nodeport", "web", "--tcp=80:80", "--node-port=30080")
        ip = s.kubectl("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
        s.kill()
        s.start()
        r = s.kubectl("create", "service", "clusterip", "db", f"--clusterip={ip}", "--tcp=80:80", check=False)
        assert "provided IP is already allocated" in r.stderr, r.stderr
        r = s.kubectl("create", "service", "nodeport", "db", "--tcp=80:80", "--node-port=30080", check=False)
        assert "provided port is already allocated" in r.stderr, r.stderr
    finally:
        s.kill()


def test_endpoints_and_endpointslices_are_served_and_printed_as_upstream(server):
    """The objects Prometheus's Kubernetes discovery lists: stored, listed by the Python client
    and printed by kubectl with upstream's columns (the controllers that fill them come next)."""
    s = server
    api = s.client()
    slices = kubernetes.client.DiscoveryV1Api(api)
    slices.create_namespaced_endpoint_slice("default", {
        "metadata": {"name": "web-abc12", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [f"10.88.0.{i}"], "conditions": {"ready": True}, "nodeName": f"node-{i}"} for i in range(1, 6)]})
    listed = slices.list_namespaced_endpoint_slice("default", label_selector="kubernetes.io/service-name=web").items
    assert [(e.metadata.name, len(e.endpoints), e.ports[0].port) for e in listed] == [("web-abc12", 5, 8080)]
    row = s.kubectl("get", "endpointslices", "web-abc12", "--no-headers").stdout.split(None, 4)
    assert row[:4] == ["web-abc12", "IPv4", "8080", "10.88.0.1,10.88.0.2,10.88.0.3"], row
    assert row[4].startswith("+ 2 more..."), row
    kubernetes.client.CoreV1Api(api).create_namespaced_endpoints("default", {
        "metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.88.0.1"}], "ports": [{"port": 8080}]}]})
    got = s.kubectl("get", "endpoints", "web", "--no-headers")
    row = got.stdout.split()
    assert row[:2] == ["web", "10.88.0.1:8080"], row
    # kubectl 1.33 passes on upstream's deprecation warning.
    assert "Warning: v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice" in got.stderr, got.stderr


def daemon_with_named_port(name, flags):
    """A DaemonSet whose pods serve a port named `http` and are Ready while their node's flag
    file exists."""
    container = {"name": "main", "image": "busybox", "command": ["sh", "-c", "while true; do sleep 1; done"],
                 "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                 "ports": [{"name": "http", "containerPort": 8080}],
                 "readinessProbe": {"exec": {"command": ["sh", "-c", f"test -f {flags}/$NODE"]},
                                    "periodSeconds": 1, "failureThreshold": 1}}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]}}}}


def test_endpoints_and_slices_follow_a_daemonsets_pods(nodes, tmp_path):
    """Upstream's endpoints and EndpointSlice controllers: one endpoint per node's pod, named
    ports resolved, readiness followed, a Prometheus-style list and watch of the slices, and
    everything gone with the Service."""
    s = nodes
    flags = str(tmp_path)
    for n in ("node-1", "node-2", "node-3"):
        pathlib.Path(flags, n).touch()
    s.kubectl("apply", "-f", "-", input=json.dumps(daemon_with_named_port("agent", flags)))
    s.kubectl("apply", "-f", "-", input=service("agent", {
        "selector": {"app": "agent"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}))
    s.kubectl("apply", "-f", "-", input=service("agent-peers", {"clusterIP": "None", "selector": {"app": "agent"}}))
    client = s.client()
    discovery = kubernetes.client.DiscoveryV1Api(client)
    core = kubernetes.client.CoreV1Api(client)

    def slices(svc):
        return discovery.list_namespaced_endpoint_slice(
            "default", label_selector=f"kubernetes.io/service-name={svc}").items

    def ready_nodes(svc):
        return sorted(e.node_name for sl in slices(svc) for e in sl.endpoints or [] if e.conditions.ready)

    every = ["node-1", "node-2", "node-3"]
    wait_for("a ready endpoint per node", lambda: ready_nodes("agent") == every and ready_nodes("agent-peers") == every)
    [web] = slices("agent")
    assert web.metadata.labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert web.metadata.owner_references[0].kind == "Service" and web.metadata.owner_references[0].name == "agent"
    assert web.metadata.generate_name == "agent-" and web.address_type == "IPv4"
    assert [(p.name, p.port, p.protocol) for p in web.ports] == [("web", 8080, "TCP")], web.ports
    pods = {p.metadata.name: p for p in core.list_namespaced_pod("default", label_selector="app=agent").items}
    for e in web.endpoints:
        pod = pods[e.target_ref.name]
        assert e.addresses == [pod.status.pod_ip] and e.node_name == pod.spec.node_name
        assert (e.conditions.serving, e.conditions.terminating) == (True, False)
    [peers] = slices("agent-peers")
    assert peers.metadata.labels["service.kubernetes.io/headless"] == ""
    assert peers.ports in (None, []), peers.ports
    row = s.kubectl("get", "endpointslices", web.metadata.name, "--no-headers").stdout.split()
    assert row[1:3] == ["IPv4", "8080"], row

    # The Endpoints object lists the same pods with the port resolved.
    ep = json.loads(s.kubectl("get", "endpoints", "agent", "-o", "json").stdout)
    [subset] = ep["subsets"]
    assert sorted(a["nodeName"] for a in subset["addresses"]) == every
    assert subset["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
    assert "endpoints.kubernetes.io/last-change-trigger-time" in ep["metadata"]["annotations"]

    # Prometheus's discovery lists, then watches; a pod turning unready shows in the watch.
    listed = discovery.list_endpoint_slice_for_all_namespaces(label_selector="kubernetes.io/service-name=agent")
    watch = kubernetes.watch.Watch()
    os.remove(os.path.join(flags, "node-2"))
    seen = None
    for event in watch.stream(discovery.list_endpoint_slice_for_all_namespaces,
                              label_selector="kubernetes.io/service-name=agent",
                              resource_version=listed.metadata.resource_version, timeout_seconds=60):
        conditions = {e.node_name: e.conditions.ready for e in event["object"].endpoints or []}
        if conditions.get("node-2") is False:
            seen = event
            break
    watch.stop()
    assert seen is not None and seen["type"] == "MODIFIED", "the watch never showed node-2 unready"
    assert ready_nodes("agent") == ["node-1", "node-3"]
    wait_for("node-2 in notReadyAddresses", lambda: [a["nodeName"] for a in json.loads(
        s.kubectl("get", "endpoints", "agent", "-o", "json").stdout)["subsets"][0].get("notReadyAddresses", [])] == ["node-2"])

    # The Service goes: its Endpoints are deleted and its slices collected with it.
    s.kubectl("delete", "svc", "agent")
    wait_for("the Endpoints gone", lambda: "NotFound" in s.kubectl("get", "endpoints", "agent", check=False).stderr)
    wait_for("the slices collected", lambda: slices("agent") == [])
    client.close()


@pytest.fixture
def endpoint_controllers(tmp_data_dir):
    s = Server(tmp_data_dir, [a for a in API_ONLY if a != "--no-endpoints-controllers"]).start()
    yield s
    s.kill()


def test_endpoints_written_by_hand_are_mirrored_to_slices(endpoint_controllers):
    """A Service without a selector takes Endpoints written by hand; the mirroring controller
    keeps one slice per subset, and removes it when the Service gains a selector."""
    s = endpoint_controllers
    s.kubectl("apply", "-f", "-", input=service("db", {"ports": [{"name": "pg", "port": 5432}]}))
    client = s.client()
    core = kubernetes.client.CoreV1Api(client)
    discovery = kubernetes.client.DiscoveryV1Api(client)
    core.create_namespaced_endpoints("default", {
        "metadata": {"name": "db", "labels": {"team": "data"}},
        "subsets": [{"addresses": [{"ip": "192.168.10.5"}], "notReadyAddresses": [{"ip": "192.168.10.6"}],
                     "ports": [{"name": "pg", "port": 5432}]}]})

    def mirrored():
        return discovery.list_namespaced_endpoint_slice(
            "default", label_selector="kubernetes.io/service-name=db").items

    [sl] = wait_for("a mirrored slice", mirrored)
    assert sl.metadata.labels == {"team": "data", "kubernetes.io/service-name": "db",
                                  "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}
    assert sl.metadata.owner_references[0].kind == "Endpoints"
    assert sorted((e.addresses[0], e.conditions.ready) for e in sl.endpoints) == [
        ("192.168.10.5", True), ("192.168.10.6", False)]
    # Edited by hand: the slice follows, under the same name.
    core.patch_namespaced_endpoints("db", "default", {"subsets": [
        {"addresses": [{"ip": "192.168.10.7"}], "ports": [{"name": "pg", "port": 5432}]}]})
    wait_for("the slice to follow", lambda: [e.addresses[0] for sl2 in mirrored() for e in sl2.endpoints] == ["192.168.10.7"])
    assert [x.metadata.name for x in mirrored()] == [sl.metadata.name]
    # The endpoints controller leaves hand-written Endpoints of a Service without a selector alone.
    assert core.read_namespaced_endpoints("db", "default").subsets[0].addresses[0].ip == "192.168.10.7"
    # With a selector the Service's endpoints are the controllers' own: the mirror goes.
    s.kubectl("patch", "svc", "db", "-p", json.dumps({"spec": {"selector": {"app": "db"}}}))
    wait_for("the mirrored slice gone", lambda: not any(
        x.metadata.labels.get("endpointslice.kubernetes.io/managed-by") == "endpointslicemirroring-controller.k8s.io"
        for x in mirrored()))
    client.close()
