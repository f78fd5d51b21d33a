"""The manifests of tests/examples (copied from the design repository) over the API, as its README requires. They are sent as
users' files are: the raw YAML, with Content-Type application/yaml."""

import copy
import json
import ssl
import urllib.request

import kubernetes
import pytest
import yaml

from conftest import EXAMPLES


def post_yaml(server, path, text, query=""):
    req = urllib.request.Request(server.url + path + query, data=text.encode(), method="POST",
                                 headers={"Content-Type": "application/yaml", "Accept": "application/json",
                                          "Authorization": f"Bearer {server.token}"})
    ctx = ssl.create_default_context(cafile=server.ca)
    try:
        with urllib.request.urlopen(req, context=ctx) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def daemonsets_everywhere(api):
    return kubernetes.client.AppsV1Api(api).list_daemon_set_for_all_namespaces().items


def test_exported_manifest_is_refused_then_accepted_without_server_fields(server, api):
    text = (EXAMPLES / "dce-hwameistor-zh.yaml").read_text()
    kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": "hwameistor"}})
    code, status = post_yaml(server, "/apis/apps/v1/namespaces/hwameistor/daemonsets", text)
    assert code == 500, status
    assert status["message"] == "resourceVersion should not be set on objects to be created"
    assert daemonsets_everywhere(api) == []
    obj = yaml.safe_load(text)
    for field in ("uid", "resourceVersion", "creationTimestamp", "generation"):
        obj["metadata"].pop(field)
    obj.pop("status")
    created = kubernetes.client.AppsV1Api(api).create_namespaced_daemon_set("hwameistor", obj)
    assert created.metadata.generation == 1
    assert created.spec.update_strategy.rolling_update.max_surge == 0
    assert [v.host_path.type for v in created.spec.template.spec.volumes][:2] == ["Directory", "Directory"]


def test_translated_manifest_is_a_yaml_error_with_line_and_column(server, api):
    text = (EXAMPLES / "dce-hwameistor-en.yaml").read_text()
    code, status = post_yaml(server, "/apis/apps/v1/namespaces/default/daemonsets", text)
    assert code == 400, status
    assert status["reason"] == "BadRequest"
    assert "error converting YAML to JSON: yaml: line " in status["message"] and ", column " in status["message"], status["message"]
    assert daemonsets_everywhere(api) == []


def test_fields_one_level_too_high_are_named_under_strict_validation(server, api):
    text = (EXAMPLES / "k8s-docs-fluentd.yaml").read_text()
    code, status = post_yaml(server, "/apis/apps/v1/namespaces/kube-system/daemonsets", text, "?fieldValidation=Strict")
    assert code == 400, status
    message = status["message"]
    assert message.startswith('DaemonSet in version "v1" cannot be handled as a DaemonSet: strict decoding error: ')
    for field in ("spec.template.tolerations", "spec.template.containers", "spec.template.volumes",
                  "spec.template.priorityClassName", "spec.template.terminationGracePeriodSeconds"):
        assert f'unknown field "{field}"' in message, message
    fields = {c["field"] for c in status["details"]["causes"]}
    assert "spec.template.spec.containers" in fields, "the template left with no containers is reported too"
    assert daemonsets_everywhere(api) == []


def test_fields_one_level_too_high_without_strict_still_create_nothing(server, api):
    text = (EXAMPLES / "k8s-docs-fluentd.yaml").read_text()
    code, status = post_yaml(server, "/apis/apps/v1/namespaces/kube-system/daemonsets", text)
    assert code == 422, status
    assert any(c["field"] == "spec.template.spec.containers" for c in status["details"]["causes"])
    assert daemonsets_everywhere(api) == []


def test_manifest_with_lost_indentation_is_a_yaml_error_with_line_and_column(server, api):
    text = (EXAMPLES / "cka-fluentd-es-demo.yaml").read_text()
    code, status = post_yaml(server, "/apis/apps/v1/namespaces/default/daemonsets", text)
    assert code == 400, status
    assert "line " in status["message"] and "column " in status["message"], status["message"]
    assert daemonsets_everywhere(api) == []


def test_corrected_docs_example_is_accepted(api):
    obj = yaml.safe_load((EXAMPLES / "k8s-docs-fluentd.yaml").read_text())
    template = obj["spec"]["template"]
    spec = {k: template.pop(k) for k in ("tolerations", "containers", "volumes", "terminationGracePeriodSeconds")}
    template.pop("priorityClassName")
    template["spec"] = spec
    created = kubernetes.client.AppsV1Api(api).create_namespaced_daemon_set("kube-system", copy.deepcopy(obj))
    assert created.metadata.name == "fluentd-elasticsearch"
