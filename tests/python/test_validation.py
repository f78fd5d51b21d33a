"""Spec §1.3: one test per DaemonSet validation rule, named after its scenario, asserting the 422
and the field path the official Python client receives from a real server."""

import copy
import json

import kubernetes
import pytest

from conftest import MERGE, daemonset


def create_status(api, body):
    """POSTs a DaemonSet and returns (HTTP status, decoded Status or None).

    The body goes through the client's REST layer as plain JSON, so bodies the typed models
    would refuse client-side (a missing selector) still reach the server."""
    method, url, headers, data, _ = api.param_serialize(
        "POST", "/apis/apps/v1/namespaces/{namespace}/daemonsets",
        path_params={"namespace": "default"},
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body, auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=data)
    response.read()
    if response.status == 201:
        return 201, None
    return response.status, json.loads(response.data)


def assert_invalid(api, body, field, message_part):
    code, status = create_status(api, body)
    assert code == 422, status
    assert status["reason"] == "Invalid"
    assert status["details"]["kind"] == "DaemonSet"
    messages = [c["message"] for c in status["details"]["causes"] if c["field"] == field]
    assert messages, status["details"]["causes"]
    assert any(message_part in m for m in messages), messages
    return status


def with_template_spec(**fields):
    ds = daemonset()
    ds["spec"]["template"]["spec"].update(fields)
    return ds


def test_s003_selector_template_mismatch_rejected(api):
    ds = daemonset()
    ds["spec"]["selector"] = {"matchLabels": {"app": "a"}}
    ds["spec"]["template"]["metadata"]["labels"] = {"app": "b"}
    status = assert_invalid(api, ds, "spec.template.metadata.labels", "`selector` does not match template `labels`")
    assert status["message"].startswith('DaemonSet.apps "foo" is invalid: spec.template.metadata.labels: Invalid value')


def test_s004_missing_selector_rejected(api):
    ds = daemonset()
    del ds["spec"]["selector"]
    assert_invalid(api, ds, "spec.template.metadata.labels", "`selector` does not match template `labels`")


def test_s005_empty_selector_rejected(api):
    ds = daemonset()
    ds["spec"]["selector"] = {}
    assert_invalid(api, ds, "spec.selector", "empty selector is invalid for daemonset")


@pytest.mark.parametrize("policy", ["OnFailure", "Never"])
def test_s006_restart_policy_must_be_always(api, policy):
    assert_invalid(api, with_template_spec(restartPolicy=policy), "spec.template.spec.restartPolicy",
                   f'Unsupported value: "{policy}": supported values: "Always"')


def test_s006_omitted_restart_policy_defaults_to_always(api):
    assert create_status(api, daemonset())[0] == 201


def test_s007_active_deadline_seconds_forbidden(api):
    assert_invalid(api, with_template_spec(activeDeadlineSeconds=10), "spec.template.spec.activeDeadlineSeconds",
                   "Forbidden: activeDeadlineSeconds in DaemonSet is not Supported")


def test_s008_min_ready_seconds_negative(api):
    assert_invalid(api, daemonset(minReadySeconds=-1), "spec.minReadySeconds", "must be greater than or equal to 0")


def test_s008_revision_history_limit_negative_and_zero(api):
    assert_invalid(api, daemonset(revisionHistoryLimit=-1), "spec.revisionHistoryLimit", "must be greater than or equal to 0")
    assert create_status(api, daemonset(name="zero", revisionHistoryLimit=0))[0] == 201


@pytest.mark.parametrize("value", [0, "0%"])
def test_s009_max_unavailable_and_max_surge_both_zero(api, value):
    ds = daemonset(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": value, "maxSurge": value}})
    assert_invalid(api, ds, "spec.updateStrategy.rollingUpdate.maxUnavailable", "Required value: cannot be 0 when maxSurge is 0")


def test_s010_max_surge_alone_rejected_because_of_defaulting(api):
    ds = daemonset(updateStrategy={"rollingUpdate": {"maxSurge": 1}})
    assert_invalid(api, ds, "spec.updateStrategy.rollingUpdate.maxSurge", "Invalid value: 1: may not be set when maxUnavailable is non-zero")
    ok = daemonset(name="surge", updateStrategy={"rollingUpdate": {"maxSurge": "20%", "maxUnavailable": 0}})
    assert create_status(api, ok)[0] == 201


@pytest.mark.parametrize("value,message", [
    ("150%", "must not be greater than 100%"),
    ("abc", "a valid percent string must be a numeric string followed by an ending '%'"),
    (-1, "must be greater than or equal to 0"),
])
def test_s011_bad_int_or_percent_values(api, value, message):
    ds = daemonset(updateStrategy={"rollingUpdate": {"maxUnavailable": value}})
    assert_invalid(api, ds, "spec.updateStrategy.rollingUpdate.maxUnavailable", message)


def test_s011_hundred_percent_accepted(api):
    ds = daemonset(updateStrategy={"rollingUpdate": {"maxUnavailable": "100%"}})
    assert create_status(api, ds)[0] == 201


def test_s012_unknown_strategy_type(api):
    assert_invalid(api, daemonset(updateStrategy={"type": "Foo"}), "spec.updateStrategy",
                   'Unsupported value: "Foo": supported values: "RollingUpdate", "OnDelete"')


def test_rule1_selector_syntax(api):
    ds = daemonset()
    ds["spec"]["selector"]["matchExpressions"] = [{"key": "name", "operator": "In"}]
    assert_invalid(api, ds, "spec.selector.matchExpressions[0].values", "must be specified when `operator` is 'In' or 'NotIn'")


def test_rule4_pod_template_is_validated(api):
    ds = daemonset()
    ds["spec"]["template"]["spec"]["containers"] = [{"name": "Bad_Name"}]
    code, status = create_status(api, ds)
    assert code == 422
    fields = {c["field"] for c in status["details"]["causes"]}
    assert {"spec.template.spec.containers[0].name", "spec.template.spec.containers[0].image"} <= fields


def test_s013_selector_immutable(api):
    apps = kubernetes.client.AppsV1Api(api)
    created = apps.create_namespaced_daemon_set("default", daemonset())
    body = apps.api_client.sanitize_for_serialization(created)
    for selector in ({"matchLabels": {"name": "simple-daemon"}}, {"matchLabels": {"name": "other", "type": "production"}}):
        changed = copy.deepcopy(body)
        changed["spec"]["selector"] = selector
        with pytest.raises(kubernetes.client.ApiException) as err:
            apps.replace_namespaced_daemon_set("foo", "default", changed)
        assert err.value.status == 422
        causes = json.loads(err.value.body)["details"]["causes"]
        assert any(c["field"] == "spec.selector" and "field is immutable" in c["message"] for c in causes), causes


def test_s017_collision_count_may_not_decrease(api):
    apps = kubernetes.client.AppsV1Api(api)
    apps.create_namespaced_daemon_set("default", daemonset())
    status = {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0, "collisionCount": 2}
    apps.patch_namespaced_daemon_set_status("foo", "default", {"status": status}, _content_type=MERGE)
    with pytest.raises(kubernetes.client.ApiException) as err:
        apps.patch_namespaced_daemon_set_status("foo", "default", {"status": dict(status, collisionCount=1)}, _content_type=MERGE)
    assert err.value.status == 422
    assert "status.collisionCount: Invalid value: 1: cannot be decremented" in json.loads(err.value.body)["message"]
    with pytest.raises(kubernetes.client.ApiException) as err:
        apps.patch_namespaced_daemon_set_status("foo", "default", {"status": dict(status, numberReady=-1)}, _content_type=MERGE)
    assert err.value.status == 422


def test_s018_controller_revision_data_immutable(api):
    apps = kubernetes.client.AppsV1Api(api)
    rev = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "foo-1"}, "data": {"spec": {"x": 1}}, "revision": 1}
    apps.create_namespaced_controller_revision("default", rev)
    with pytest.raises(kubernetes.client.ApiException) as err:
        apps.patch_namespaced_controller_revision("foo-1", "default", {"data": {"spec": {"x": 2}}}, _content_type=MERGE)
    assert err.value.status == 422
    assert json.loads(err.value.body)["details"]["causes"][0]["field"] == "data"
    renumbered = apps.patch_namespaced_controller_revision("foo-1", "default", {"revision": 5, "metadata": {"labels": {"a": "b"}}}, _content_type=MERGE)
    assert renumbered.revision == 5
