"""Spec §1.1, §1.4: defaults and the generation / templateGeneration / observedGeneration rules, over the API."""

import kubernetes

from conftest import MERGE, daemonset

TG = "deprecated.daemonset.template.generation"


def test_s001_defaults_on_create(api):
    apps = kubernetes.client.AppsV1Api(api)
    ds = apps.create_namespaced_daemon_set("default", daemonset())
    assert ds.spec.update_strategy.type == "RollingUpdate"
    assert ds.spec.update_strategy.rolling_update.max_unavailable == 1
    assert ds.spec.update_strategy.rolling_update.max_surge == 0
    assert ds.spec.revision_history_limit == 10
    assert ds.spec.min_ready_seconds in (0, None)
    assert ds.metadata.generation == 1
    assert ds.metadata.annotations[TG] == "1"
    assert ds.status.number_ready == 0 and ds.status.desired_number_scheduled == 0
    pod = ds.spec.template.spec
    assert (pod.restart_policy, pod.dns_policy, pod.termination_grace_period_seconds, pod.scheduler_name) == (
        "Always", "ClusterFirst", 30, "default-scheduler")
    assert ds.metadata.uid and ds.metadata.creation_timestamp


def test_s002_on_delete_keeps_no_rolling_update(api):
    apps = kubernetes.client.AppsV1Api(api)
    ds = apps.create_namespaced_daemon_set("default", daemonset(updateStrategy={"type": "OnDelete"}))
    assert ds.spec.update_strategy.type == "OnDelete"
    assert ds.spec.update_strategy.rolling_update is None


def test_s014_generation_and_template_generation(api):
    apps = kubernetes.client.AppsV1Api(api)
    apps.create_namespaced_daemon_set("default", daemonset())
    image = apps.patch_namespaced_daemon_set("foo", "default", {"spec": {"template": {"spec": {"containers": [{"name": "foo", "image": "foo/bar:2"}]}}}}, _content_type=MERGE)
    assert (image.metadata.generation, image.metadata.annotations[TG]) == (2, "2")
    mrs = apps.patch_namespaced_daemon_set("foo", "default", {"spec": {"minReadySeconds": 5}}, _content_type=MERGE)
    assert (mrs.metadata.generation, mrs.metadata.annotations[TG]) == (3, "2")
    labels = apps.patch_namespaced_daemon_set("foo", "default", {"metadata": {"labels": {"x": "y"}}}, _content_type=MERGE)
    assert labels.metadata.generation == 3
    body = apps.api_client.sanitize_for_serialization(labels)
    same = apps.replace_namespaced_daemon_set("foo", "default", body)
    assert same.metadata.generation == 3
    assert same.metadata.resource_version == labels.metadata.resource_version, "an identical PUT writes nothing"


def test_s015_template_generation_settable_only_at_create(api):
    apps = kubernetes.client.AppsV1Api(api)
    ds = daemonset()
    ds["metadata"]["annotations"] = {TG: "999"}
    created = apps.create_namespaced_daemon_set("default", ds)
    assert created.metadata.annotations[TG] == "999"
    kept = apps.patch_namespaced_daemon_set("foo", "default", {"metadata": {"annotations": {TG: "5"}}}, _content_type=MERGE)
    assert kept.metadata.annotations[TG] == "999"
    bumped = apps.patch_namespaced_daemon_set("foo", "default", {"spec": {"template": {"metadata": {"labels": {"name": "simple-daemon", "type": "production", "v": "2"}}}}}, _content_type=MERGE)
    assert bumped.metadata.annotations[TG] == "1000"


def test_s016_status_ignored_on_main_resource_spec_ignored_on_status(api):
    apps = kubernetes.client.AppsV1Api(api)
    apps.create_namespaced_daemon_set("default", daemonset())
    main = apps.patch_namespaced_daemon_set("foo", "default", {"status": {"numberReady": 7}}, _content_type=MERGE)
    assert main.status.number_ready == 0
    status = apps.patch_namespaced_daemon_set_status("foo", "default", {"spec": {"minReadySeconds": 99}, "status": {"numberReady": 3, "observedGeneration": 1}}, _content_type=MERGE)
    assert status.status.number_ready == 3
    assert status.spec.min_ready_seconds in (0, None)
    assert status.metadata.generation == 1
