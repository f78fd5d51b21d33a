"""CRUD and watch over the API with the official Python client: the objects everynode's own
components will use, optimistic concurrency, and watch resumption."""

import json
import threading

import kubernetes
import pytest
from kubernetes import watch

from conftest import API_ONLY, MERGE, Server, daemonset

core = kubernetes.client.CoreV1Api
apps = kubernetes.client.AppsV1Api


def node(name, labels=None):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
            "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"}}}


def pod(name, node_name=None, labels=None):
    spec = {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}
    if node_name:
        spec["nodeName"] = node_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": "x"}}, "spec": spec}


def test_daemonset_crud(api):
    a = apps(api)
    created = a.create_namespaced_daemon_set("default", daemonset())
    assert created.metadata.resource_version
    assert [d.metadata.name for d in a.list_namespaced_daemon_set("default").items] == ["foo"]
    assert [d.metadata.name for d in a.list_daemon_set_for_all_namespaces().items] == ["foo"]
    got = a.read_namespaced_daemon_set("foo", "default")
    got.spec.template.spec.containers[0].image = "foo/bar:2"
    replaced = a.replace_namespaced_daemon_set("foo", "default", got)
    assert replaced.metadata.generation == 2
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    a.delete_namespaced_daemon_set("foo", "default")
    with pytest.raises(kubernetes.client.ApiException) as err:
        a.read_namespaced_daemon_set("foo", "default")
    assert err.value.status == 404
    assert json.loads(err.value.body)["message"] == 'daemonsets.apps "foo" not found'


def test_stale_resource_version_conflicts(api):
    a = apps(api)
    a.create_namespaced_daemon_set("default", daemonset())
    first = a.read_namespaced_daemon_set("foo", "default")
    second = a.read_namespaced_daemon_set("foo", "default")
    first.metadata.labels = {"writer": "one"}
    a.replace_namespaced_daemon_set("foo", "default", first)
    second.metadata.labels = {"writer": "two"}
    with pytest.raises(kubernetes.client.ApiException) as err:
        a.replace_namespaced_daemon_set("foo", "default", second)
    assert err.value.status == 409
    status = json.loads(err.value.body)
    assert status["reason"] == "Conflict"
    assert status["message"] == ('Operation cannot be fulfilled on daemonsets.apps "foo": the object has been modified; '
                                 "please apply your changes to the latest version and try again")


def test_create_twice_is_already_exists_and_missing_namespace_is_not_found(api):
    a = apps(api)
    a.create_namespaced_daemon_set("default", daemonset())
    with pytest.raises(kubernetes.client.ApiException) as err:
        a.create_namespaced_daemon_set("default", daemonset())
    assert (err.value.status, json.loads(err.value.body)["reason"]) == (409, "AlreadyExists")
    with pytest.raises(kubernetes.client.ApiException) as err:
        a.create_namespaced_daemon_set("nowhere", daemonset())
    assert err.value.status == 404
    assert json.loads(err.value.body)["message"] == 'namespaces "nowhere" not found'


def test_generate_name_and_dry_run(api):
    c = core(api)
    body = pod("ignored")
    body["metadata"] = {"generateName": "fluentd-", "labels": {"app": "x"}}
    p = c.create_namespaced_pod("default", body)
    assert p.metadata.name.startswith("fluentd-") and len(p.metadata.name) == len("fluentd-") + 5
    assert p.status.phase == "Pending"
    dry = c.create_namespaced_pod("default", pod("dry"), dry_run="All")
    assert dry.metadata.name == "dry"
    assert [x.metadata.name for x in c.list_namespaced_pod("default").items] == [p.metadata.name]


def test_nodes_pods_binding_and_field_selectors(api):
    c = core(api)
    for n in ("node-0", "node-1"):
        c.create_node(node(n, {"color": "blue"} if n == "node-1" else {}))
    assert [n.metadata.name for n in c.list_node(label_selector="color=blue").items] == ["node-1"]
    c.create_namespaced_pod("default", pod("a"))
    c.create_namespaced_pod("default", pod("b", node_name="node-1"))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "a"}, "target": {"apiVersion": "v1", "kind": "Node", "name": "node-0"}}
    c.create_namespaced_pod_binding("a", "default", binding, _preload_content=False)
    on0 = c.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-0").items
    assert [p.metadata.name for p in on0] == ["a"]
    assert any(cond.type == "PodScheduled" and cond.status == "True" for cond in on0[0].status.conditions)
    with pytest.raises(kubernetes.client.ApiException) as err:
        c.create_namespaced_pod_binding("a", "default", binding, _preload_content=False)
    assert err.value.status == 409
    status = c.patch_namespaced_pod_status("b", "default", {"status": {"phase": "Running"}}, _content_type=MERGE)
    assert status.status.phase == "Running"
    assert [p.metadata.name for p in c.list_namespaced_pod("default", field_selector="status.phase=Running").items] == ["b"]
    with pytest.raises(kubernetes.client.ApiException) as err:
        c.list_namespaced_pod("default", field_selector="spec.bogus=1")
    assert err.value.status == 400


def test_graceful_pod_deletion(api):
    c = core(api)
    c.create_node(node("node-0"))
    c.create_namespaced_pod("default", pod("bound", node_name="node-0"))
    c.create_namespaced_pod("default", pod("unbound"))
    c.delete_namespaced_pod("unbound", "default")
    pending = c.delete_namespaced_pod("bound", "default")
    assert pending.metadata.deletion_timestamp is not None
    assert pending.metadata.deletion_grace_period_seconds == 30
    names = [p.metadata.name for p in c.list_namespaced_pod("default").items]
    assert names == ["bound"], "a bound pod waits for its node to confirm"
    c.delete_namespaced_pod("bound", "default", grace_period_seconds=0)
    assert c.list_namespaced_pod("default").items == []


def test_orphan_and_foreground_deletion_add_finalizers(api):
    a = apps(api)
    a.create_namespaced_daemon_set("default", daemonset("orphaned"))
    a.create_namespaced_daemon_set("default", daemonset("foreground"))
    a.delete_namespaced_daemon_set("orphaned", "default", propagation_policy="Orphan")
    a.delete_namespaced_daemon_set("foreground", "default", propagation_policy="Foreground")
    o = a.read_namespaced_daemon_set("orphaned", "default")
    f = a.read_namespaced_daemon_set("foreground", "default")
    assert o.metadata.finalizers == ["orphan"] and o.metadata.deletion_timestamp
    assert f.metadata.finalizers == ["foregroundDeletion"] and f.metadata.deletion_timestamp
    # What the garbage collector does when it is done: remove the finalizer; the object goes.
    a.patch_namespaced_daemon_set("orphaned", "default", {"metadata": {"finalizers": None}}, _content_type=MERGE)
    assert [d.metadata.name for d in a.list_namespaced_daemon_set("default").items] == ["foreground"]


def test_controller_revisions_events_leases(api):
    a, c = apps(api), core(api)
    rev = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "foo-abc", "labels": {"name": "simple-daemon"}},
           "data": {"spec": {"template": {"$patch": "replace"}}}, "revision": 1}
    a.create_namespaced_controller_revision("default", rev)
    listed = a.list_namespaced_controller_revision("default", label_selector="name=simple-daemon").items
    assert [(r.metadata.name, r.revision) for r in listed] == [("foo-abc", 1)]
    assert listed[0].data == {"spec": {"template": {"$patch": "replace"}}}
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "foo.1"},
             "involvedObject": {"kind": "DaemonSet", "namespace": "default", "name": "foo", "uid": "u-1"},
             "reason": "SuccessfulCreate", "message": "Created pod: foo-abcde", "type": "Normal", "source": {"component": "daemonset-controller"}}
    c.create_namespaced_event("default", event)
    sel = "involvedObject.name=foo,involvedObject.namespace=default,involvedObject.kind=DaemonSet,involvedObject.uid=u-1"
    assert [e.reason for e in c.list_namespaced_event("default", field_selector=sel).items] == ["SuccessfulCreate"]
    assert c.list_namespaced_event("default", field_selector="involvedObject.name=bar").items == []
    coord = kubernetes.client.CoordinationV1Api(api)
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-0"},
             "spec": {"holderIdentity": "node-0", "leaseDurationSeconds": 40}}
    coord.create_namespaced_lease("kube-node-lease", lease)
    renewed = coord.patch_namespaced_lease("node-0", "kube-node-lease", {"spec": {"renewTime": "2026-11-25T00:00:00.000000Z"}}, _content_type=MERGE)
    assert renewed.spec.holder_identity == "node-0" and renewed.spec.renew_time is not None


def test_one_event_two_views(server, api):
    """An Event written through events.k8s.io/v1 (as kube-rs's and client-go's recorders write
    them) is the core/v1 Event `kubectl get events` and `kubectl events` read, and back: one
    object, one resourceVersion, fields renamed as upstream converts them."""
    c, ev1 = core(api), kubernetes.client.EventsV1Api(api)
    w = watch.Watch()
    start = c.list_namespaced_event("default").metadata.resource_version
    created = ev1.create_namespaced_event("default", {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "agent.1"},
        "eventTime": "2026-12-01T00:00:00.000000Z", "reportingController": "example.com/agent",
        "reportingInstance": "agent-node-1", "action": "Started", "reason": "Started", "type": "Normal",
        "regarding": {"kind": "DaemonSet", "namespace": "default", "name": "exporter", "apiVersion": "apps/v1"},
        "note": "agent started"})
    seen = c.read_namespaced_event("agent.1", "default")
    assert seen.metadata.resource_version == created.metadata.resource_version
    assert seen.metadata.uid == created.metadata.uid
    assert (seen.message, seen.reporting_component, seen.involved_object.name) == ("agent started", "example.com/agent", "exporter")
    listed = c.list_namespaced_event("default", field_selector="involvedObject.name=exporter,reportingComponent=example.com/agent").items
    assert [e.metadata.name for e in listed] == ["agent.1"]
    out = server.kubectl("events", "--for", "daemonset/exporter").stdout
    assert "agent started" in out and "Started" in out, out

    # A repeat through the old API bumps the count the new API shows as deprecatedCount.
    seen.count, seen.message = 2, "agent started again"
    c.replace_namespaced_event("agent.1", "default", seen)
    again = ev1.read_namespaced_event("agent.1", "default")
    assert (again.note, again.deprecated_count) == ("agent started again", 2)
    # Patched through the new API (a series, as the recorder does), read through the old one.
    ev1.patch_namespaced_event("agent.1", "default", {"series": {"count": 3, "lastObservedTime": "2026-12-01T00:05:00.000000Z"}})
    assert c.read_namespaced_event("agent.1", "default").series.count == 3

    # Each API watches its own view of the same changes.
    old = [(e["type"], e["object"].message) for e in w.stream(c.list_namespaced_event, "default", resource_version=start, timeout_seconds=2)]
    new = [(e["type"], e["object"].note) for e in watch.Watch().stream(ev1.list_namespaced_event, "default", resource_version=start, timeout_seconds=2)]
    assert old == new == [("ADDED", "agent started"), ("MODIFIED", "agent started again"), ("MODIFIED", "agent started again")], (old, new)

    # A core Event is listed, and deleted, through the new API.
    c.create_namespaced_event("default", {"metadata": {"name": "core.1"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
                                          "reason": "Pulled", "message": "pulled", "type": "Normal", "source": {"component": "kubelet"}})
    # It has no eventTime, sent as null as upstream does (which this client's model refuses).
    got = json.loads(ev1.read_namespaced_event("core.1", "default", _preload_content=False).data)
    assert (got["note"], got["regarding"]["kind"], got["deprecatedSource"]["component"]) == ("pulled", "Pod", "kubelet")
    assert "eventTime" in got and got["eventTime"] is None
    listed = json.loads(ev1.list_namespaced_event("default", _preload_content=False).data)
    assert sorted(e["metadata"]["name"] for e in listed["items"]) == ["agent.1", "core.1"]
    ev1.delete_namespaced_event("core.1", "default")
    assert [e.metadata.name for e in c.list_namespaced_event("default").items] == ["agent.1"]


def test_pagination(api):
    c = core(api)
    for i in range(7):
        c.create_namespaced_config_map("default", {"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}})
    seen, token = [], None
    while True:
        page = c.list_namespaced_config_map("default", limit=3, _continue=token)
        assert len(page.items) <= 3
        seen += [x.metadata.name for x in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == [f"cm-{i}" for i in range(7)]


def test_watch_resumed_from_resource_version_loses_and_duplicates_nothing(api):
    a = apps(api)
    start_rv = a.list_namespaced_daemon_set("default").metadata.resource_version
    names = [f"ds-{i}" for i in range(6)]
    for n in names[:3]:
        a.create_namespaced_daemon_set("default", daemonset(n))
    # First watch: read three events, remember the last resourceVersion, disconnect.
    w = watch.Watch()
    first = []
    for ev in w.stream(a.list_namespaced_daemon_set, "default", resource_version=start_rv, timeout_seconds=5):
        first.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.resource_version))
        if len(first) == 3:
            w.stop()
    last_rv = first[-1][2]
    # Writes while disconnected.
    for n in names[3:]:
        a.create_namespaced_daemon_set("default", daemonset(n))
    a.delete_namespaced_daemon_set("ds-0", "default")
    w2 = watch.Watch()
    second = []
    for ev in w2.stream(a.list_namespaced_daemon_set, "default", resource_version=last_rv, timeout_seconds=5):
        second.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.resource_version))
        if len(second) == 4:
            w2.stop()
    assert [(t, n) for t, n, _ in first] == [("ADDED", n) for n in names[:3]]
    assert [(t, n) for t, n, _ in second] == [("ADDED", "ds-3"), ("ADDED", "ds-4"), ("ADDED", "ds-5"), ("DELETED", "ds-0")]
    rvs = [int(rv) for _, _, rv in first + second]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs), "strictly increasing: nothing repeated"


def test_watch_with_label_selector_sees_objects_leave(api):
    c = core(api)
    c.create_namespaced_config_map("default", {"metadata": {"name": "cm", "labels": {"tier": "web"}}})
    events = []
    done = threading.Event()

    def follow():
        w = watch.Watch()
        for ev in w.stream(c.list_namespaced_config_map, "default", label_selector="tier=web", timeout_seconds=10):
            events.append((ev["type"], ev["object"].metadata.name))
            if len(events) == 2:
                w.stop()
        done.set()

    t = threading.Thread(target=follow)
    t.start()
    # The initial ADDED arrives first; then relabel so the object leaves the selection.
    for _ in range(100):
        if events:
            break
        done.wait(0.05)
    c.patch_namespaced_config_map("cm", "default", {"metadata": {"labels": {"tier": "db"}}}, _content_type=MERGE)
    t.join(15)
    assert events == [("ADDED", "cm"), ("DELETED", "cm")]


def test_compacted_watch_gets_410(tmp_data_dir):
    server = Server(tmp_data_dir, ["--watch-history", "20", *API_ONLY]).start()
    try:
        client = server.client()
        c = core(client)
        first = c.create_namespaced_config_map("default", {"metadata": {"name": "cm-first"}})
        for i in range(40):
            c.create_namespaced_config_map("default", {"metadata": {"name": f"cm-{i}"}})
        with pytest.raises(kubernetes.client.ApiException) as err:
            for _ in watch.Watch().stream(c.list_namespaced_config_map, "default", resource_version=first.metadata.resource_version, timeout_seconds=5):
                pass
        assert err.value.status == 410
        assert "too old resource version" in str(err.value.reason)
        client.close()
    finally:
        server.kill()


def test_unauthenticated_requests_are_refused(server):
    import urllib.request
    import ssl
    ctx = ssl.create_default_context(cafile=server.ca)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url + "/api/v1/namespaces", context=ctx)
    assert err.value.code == 401
    assert json.loads(err.value.read())["reason"] == "Unauthorized"
    with urllib.request.urlopen(server.url + "/version", context=ctx) as r:
        assert json.loads(r.read())["minor"] == "33"


def test_namespace_deletion_deletes_contents(api):
    c = core(api)
    c.create_namespace({"metadata": {"name": "scratch"}})
    c.create_namespaced_config_map("scratch", {"metadata": {"name": "cm"}})
    apps(api).create_namespaced_daemon_set("scratch", daemonset())
    c.delete_namespace("scratch")
    w = watch.Watch()
    for ev in w.stream(c.list_namespace, timeout_seconds=10):
        if ev["type"] == "DELETED" and ev["object"].metadata.name == "scratch":
            w.stop()
    assert c.list_namespaced_config_map("scratch").items == []
    assert apps(api).list_namespaced_daemon_set("scratch").items == []
    with pytest.raises(kubernetes.client.ApiException) as err:
        c.delete_namespace("default")
    assert err.value.status == 403


def test_bookmarks_cover_everything_before_them_and_resume_cleanly(tmp_data_dir):
    server = Server(tmp_data_dir, ["--bookmark-interval-seconds", "1", *API_ONLY]).start()
    try:
        client = server.client()
        c = core(client)
        start = c.list_namespaced_config_map("default").metadata.resource_version
        for i in range(5):
            c.create_namespaced_config_map("default", {"metadata": {"name": f"before-{i}"}})
        seen, bookmark = [], None
        w = watch.Watch()
        for ev in w.stream(c.list_namespaced_config_map, "default", resource_version=start, allow_watch_bookmarks=True, timeout_seconds=10):
            if ev["type"] == "BOOKMARK":
                bookmark = int(ev["raw_object"]["metadata"]["resourceVersion"])
                w.stop()
            else:
                seen.append(int(ev["object"].metadata.resource_version))
        assert len(seen) == 5 and bookmark is not None
        assert bookmark >= max(seen), "a bookmark is never behind what was delivered before it"
        for i in range(3):
            c.create_namespaced_config_map("default", {"metadata": {"name": f"after-{i}"}})
        resumed = []
        w2 = watch.Watch()
        for ev in w2.stream(c.list_namespaced_config_map, "default", resource_version=str(bookmark), timeout_seconds=10):
            resumed.append(ev["object"].metadata.name)
            if len(resumed) == 3:
                w2.stop()
        assert resumed == ["after-0", "after-1", "after-2"]
        client.close()
    finally:
        server.kill()


def test_delete_collection_and_dry_run_writes(api):
    c = core(api)
    for i, tier in enumerate(["web", "web", "db"]):
        c.create_namespaced_config_map("default", {"metadata": {"name": f"cm-{i}", "labels": {"tier": tier}}})
    c.delete_namespaced_config_map("cm-2", "default", dry_run="All")
    c.patch_namespaced_config_map("cm-2", "default", {"data": {"x": "y"}}, dry_run="All", _content_type=MERGE)
    still = c.read_namespaced_config_map("cm-2", "default")
    assert still.data is None, "dry-run writes change nothing"
    c.delete_collection_namespaced_config_map("default", label_selector="tier=web")
    assert [x.metadata.name for x in c.list_namespaced_config_map("default").items] == ["cm-2"]
