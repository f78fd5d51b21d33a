"""Services get cluster IPs and node ports as upstream's allocators give them: from the
server's ranges, refused with upstream's messages when taken or out of range, kept by an apply
that leaves them out, and given back when the Service goes."""

import ipaddress
import json

import kubernetes
import pytest

from conftest import API_ONLY, Server


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
    row = s.kubectl("get", "endpoints", "web", "--no-headers").stdout.split()
    assert row[:2] == ["web", "10.88.0.1:8080"], row
