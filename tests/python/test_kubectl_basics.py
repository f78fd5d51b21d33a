"""The kubectl commands the foundation promises, with real kubectl and the written kubeconfig.
(Full kubectl compatibility — tables, apply, patch types — is tested separately.)"""

import yaml

DS = """apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: fluentd
  namespace: kube-system
spec:
  selector:
    matchLabels: {name: fluentd}
  template:
    metadata:
      labels: {name: fluentd}
    spec:
      containers:
      - name: fluentd
        image: fluentd:v1.16
"""


def test_kubectl_get_namespaces(server):
    out = server.kubectl("get", "ns").stdout
    lines = out.strip().splitlines()
    assert lines[0].split()[0] == "NAME"
    assert {line.split()[0] for line in lines[1:]} == {"default", "kube-system", "kube-public", "kube-node-lease"}


def test_kubectl_version_reports_1_33(server):
    out = server.kubectl("version").stdout
    assert "Server Version: v1.33.0-everynode" in out


def test_kubectl_get_yaml_and_delete_daemonset(server):
    server.kubectl("create", "-f", "-", "--validate=false", input=DS)
    listed = server.kubectl("get", "ds", "-A").stdout
    assert "kube-system" in listed and "fluentd" in listed
    obj = yaml.safe_load(server.kubectl("get", "ds", "fluentd", "-n", "kube-system", "-o", "yaml").stdout)
    assert obj["kind"] == "DaemonSet" and obj["metadata"]["generation"] == 1
    assert obj["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1
    out = server.kubectl("delete", "ds", "fluentd", "-n", "kube-system").stdout
    assert out.strip() == 'daemonset.apps "fluentd" deleted'
    gone = server.kubectl("get", "ds", "fluentd", "-n", "kube-system", check=False)
    assert gone.returncode == 1
    assert 'Error from server (NotFound): daemonsets.apps "fluentd" not found' in gone.stderr


def test_kubectl_delete_missing_daemonset(server):
    result = server.kubectl("delete", "ds", "nope", check=False)
    assert result.returncode == 1
    assert 'Error from server (NotFound): daemonsets.apps "nope" not found' in result.stderr
