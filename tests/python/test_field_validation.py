"""fieldValidation over raw HTTP: repeated keys in a body are refused with their paths (Strict),
returned as Warning headers (Warn) or ignored (Ignore), for JSON, YAML, merge patches and
server-side apply. Typed clients cannot send a repeated key, so these requests are built by hand."""

import json
import ssl
import urllib.request

import kubernetes

DS_PATH = "/apis/apps/v1/namespaces/default/daemonsets"

DUPLICATED_JSON = """{"apiVersion": "apps/v1", "kind": "DaemonSet",
 "metadata": {"name": "first", "name": "dup"},
 "spec": {"selector": {"matchLabels": {"app": "dup"}},
  "template": {"metadata": {"labels": {"app": "dup"}},
   "spec": {"containers": [{"name": "c", "image": "busybox:1", "image": "busybox:2"}]}}}}"""

DUPLICATED_YAML = """apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: dup
spec:
  selector:
    matchLabels: {app: dup}
  template:
    metadata:
      labels:
        app: dup
        app: dup
    spec:
      containers:
      - name: c
        image: busybox:1
"""


def send(server, method, path, body, content_type, query=""):
    req = urllib.request.Request(server.url + path + query, data=body.encode(), method=method,
                                 headers={"Content-Type": content_type, "Accept": "application/json",
                                          "Authorization": f"Bearer {server.token}"})
    ctx = ssl.create_default_context(cafile=server.ca)
    try:
        with urllib.request.urlopen(req, context=ctx) as r:
            return r.status, json.loads(r.read()), r.headers.get_all("Warning") or []
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers.get_all("Warning") or []


def daemonset_names(api):
    return [d.metadata.name for d in kubernetes.client.AppsV1Api(api).list_namespaced_daemon_set("default").items]


def test_strict_refuses_repeated_json_keys_naming_each_path(server, api):
    code, status, _ = send(server, "POST", DS_PATH, DUPLICATED_JSON, "application/json", "?fieldValidation=Strict")
    assert code == 400, status
    assert status["message"] == (
        'DaemonSet in version "v1" cannot be handled as a DaemonSet: strict decoding error: '
        'duplicate field "metadata.name", duplicate field "spec.template.spec.containers[0].image"')
    causes = {(c["reason"], c["field"]) for c in status["details"]["causes"]}
    assert ("FieldValueDuplicate", "metadata.name") in causes
    assert ("FieldValueDuplicate", "spec.template.spec.containers[0].image") in causes
    assert daemonset_names(api) == []


def test_warn_accepts_repeated_keys_keeping_the_last_and_says_so(server, api):
    code, obj, warnings = send(server, "POST", DS_PATH, DUPLICATED_JSON, "application/json")
    assert code == 201, obj
    assert obj["metadata"]["name"] == "dup"
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:2"
    # The text is quoted inside the header value, as upstream writes it (RFC 7234 warn-text).
    assert warnings == ['299 - "duplicate field \\"metadata.name\\""',
                        '299 - "duplicate field \\"spec.template.spec.containers[0].image\\""']


def test_ignore_accepts_repeated_keys_silently(server, api):
    code, obj, warnings = send(server, "POST", DS_PATH, DUPLICATED_JSON, "application/json", "?fieldValidation=Ignore")
    assert code == 201, obj
    assert warnings == []


def test_strict_refuses_repeated_yaml_keys(server, api):
    code, status, _ = send(server, "POST", DS_PATH, DUPLICATED_YAML, "application/yaml", "?fieldValidation=Strict")
    assert code == 400, status
    assert status["message"].endswith('strict decoding error: duplicate field "spec.template.metadata.labels.app"')
    assert daemonset_names(api) == []


def test_strict_refuses_repeated_keys_in_a_merge_patch(server, api):
    code, obj, _ = send(server, "POST", DS_PATH, DUPLICATED_YAML, "application/yaml")
    assert code == 201, obj
    patch = '{"metadata": {"labels": {"tier": "a", "tier": "b"}}}'
    code, status, _ = send(server, "PATCH", DS_PATH + "/dup", patch, "application/merge-patch+json",
                           "?fieldValidation=Strict")
    assert code == 400, status
    assert 'duplicate field "metadata.labels.tier"' in status["message"]
    got = kubernetes.client.AppsV1Api(api).read_namespaced_daemon_set("dup", "default")
    assert "tier" not in (got.metadata.labels or {})


def test_strict_refuses_repeated_keys_in_server_side_apply(server, api):
    code, status, _ = send(server, "PATCH", DS_PATH + "/dup", DUPLICATED_YAML, "application/apply-patch+yaml",
                           "?fieldManager=test&fieldValidation=Strict")
    assert code == 400, status
    assert 'duplicate field "spec.template.metadata.labels.app"' in status["message"]
    assert daemonset_names(api) == []
