"""Spec §5.10, kubectl against a real server: one test per K scenario, named after it, driving the
machine's kubectl while the agent stand-in makes pods Ready."""


from agent_sim import AgentSim
from conftest import daemonset, stays
from test_daemonset_controller import apps, core, daemon_pods, node, status, wait_for


def converged(cluster, cluster_api, n, **spec):
    for i in range(n):
        core(cluster_api).create_node(node(f"node-{i}"))
    apps(cluster_api).create_namespaced_daemon_set("default", daemonset(**spec))


def test_k01_rollout_status_reports_progress_then_success(cluster, cluster_api):
    converged(cluster, cluster_api, 3)
    with AgentSim(cluster):
        wait_for(lambda: status(cluster_api) == (3, 3, 3, 3, 3), what="converged")
    # No agent now: the rollout cannot progress, so kubectl keeps waiting and says why.
    cluster.kubectl("set", "image", "ds/foo", "foo=foo/bar:2")
    stalled = cluster.kubectl("rollout", "status", "ds/foo", "--timeout=3s", check=False)
    assert stalled.returncode != 0
    assert 'Waiting for daemon set "foo" rollout to finish: 0 out of 3 new pods have been updated...' in stalled.stdout, stalled.stdout
    with AgentSim(cluster):
        done = cluster.kubectl("rollout", "status", "ds/foo", "--timeout=60s")
    assert done.returncode == 0
    assert done.stdout.strip().splitlines()[-1] == 'daemon set "foo" successfully rolled out'


def test_k02_rollout_status_on_delete_is_refused(cluster, cluster_api):
    apps(cluster_api).create_namespaced_daemon_set("default", daemonset(updateStrategy={"type": "OnDelete"}))
    out = cluster.kubectl("rollout", "status", "ds/foo", check=False)
    assert out.returncode != 0
    assert "rollout status is only available for RollingUpdate strategy type" in out.stderr


def test_k03_k04_k05_rollout_history_and_undo(cluster, cluster_api):
    converged(cluster, cluster_api, 2)
    with AgentSim(cluster):
        wait_for(lambda: status(cluster_api) == (2, 2, 2, 2, 2), what="converged")
        # K-05: a single revision has nothing to go back to.
        single = cluster.kubectl("rollout", "undo", "ds/foo", check=False)
        assert single.returncode != 0 and "no last revision to roll back to" in single.stderr
        cluster.kubectl("annotate", "ds/foo", "kubernetes.io/change-cause=update image")
        cluster.kubectl("set", "image", "ds/foo", "foo=foo/bar:2")
        wait_for(lambda: status(cluster_api) == (2, 2, 2, 2, 2) and all(p.spec.containers[0].image == "foo/bar:2" for p in daemon_pods(cluster_api)), what="updated")
        # K-03
        history = cluster.kubectl("rollout", "history", "ds/foo").stdout.splitlines()
        assert history[0].strip() == "daemonset.apps/foo"
        assert history[1].split() == ["REVISION", "CHANGE-CAUSE"]
        assert [line.split(None, 1) for line in history[2:] if line.strip()] == [["1", "<none>"], ["2", "update image"]]
        # K-04
        one = cluster.kubectl("rollout", "history", "ds/foo", "--revision=1").stdout
        assert one.startswith("daemonset.apps/foo with revision #1")
        assert "    Image:\tfoo/bar\n" in one, one
        nine = cluster.kubectl("rollout", "history", "ds/foo", "--revision=9", check=False)
        assert nine.returncode != 0 and "unable to find the specified revision" in nine.stderr
        # K-05
        missing = cluster.kubectl("rollout", "undo", "ds/foo", "--to-revision=7", check=False)
        assert missing.returncode != 0 and "unable to find specified revision 7 in history" in missing.stderr
        undone = cluster.kubectl("rollout", "undo", "ds/foo").stdout
        assert undone.strip() == "daemonset.apps/foo rolled back"
        wait_for(lambda: status(cluster_api) == (2, 2, 2, 2, 2) and all(p.spec.containers[0].image == "foo/bar" for p in daemon_pods(cluster_api)), what="rolled back")
        revisions = {r.revision for r in apps(cluster_api).list_namespaced_controller_revision("default").items}
        assert revisions == {2, 3}, "the old revision was renumbered, not recreated"
        uids = {p.metadata.uid for p in daemon_pods(cluster_api)}
        skipped = cluster.kubectl("rollout", "undo", "ds/foo", "--to-revision=3").stdout
        assert skipped.strip() == "daemonset.apps/foo skipped rollback (current template already matches revision 3)"
        stays("no pod restarted", lambda: {p.metadata.uid for p in daemon_pods(cluster_api)} == uids)


def test_k06_rollout_restart_replaces_every_pod(cluster, cluster_api):
    converged(cluster, cluster_api, 2)
    with AgentSim(cluster):
        wait_for(lambda: status(cluster_api) == (2, 2, 2, 2, 2), what="converged")
        before = apps(cluster_api).read_namespaced_daemon_set("foo", "default")
        uids = {p.metadata.uid for p in daemon_pods(cluster_api)}
        out = cluster.kubectl("rollout", "restart", "ds/foo").stdout
        assert out.strip() == "daemonset.apps/foo restarted"
        after = apps(cluster_api).read_namespaced_daemon_set("foo", "default")
        assert after.metadata.generation == before.metadata.generation + 1
        assert "kubectl.kubernetes.io/restartedAt" in (after.spec.template.metadata.annotations or {})
        wait_for(lambda: status(cluster_api) == (2, 2, 2, 2, 2) and len(daemon_pods(cluster_api)) == 2
                 and not uids & {p.metadata.uid for p in daemon_pods(cluster_api)}, what="every pod replaced")
        assert len(apps(cluster_api).list_namespaced_controller_revision("default").items) == 2


def test_k07_rollout_pause_and_resume_are_not_supported(cluster, cluster_api):
    apps(cluster_api).create_namespaced_daemon_set("default", daemonset())
    paused = cluster.kubectl("rollout", "pause", "ds/foo", check=False)
    assert paused.returncode != 0 and "pausing is not supported" in paused.stderr
    resumed = cluster.kubectl("rollout", "resume", "ds/foo", check=False)
    assert resumed.returncode != 0 and "resuming is not supported" in resumed.stderr


def test_k08_get_ds_columns(cluster, cluster_api):
    converged(cluster, cluster_api, 2)
    with AgentSim(cluster):
        wait_for(lambda: status(cluster_api) == (2, 2, 2, 2, 2), what="converged")
        plain = cluster.kubectl("get", "ds").stdout.splitlines()
        assert plain[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE", "SELECTOR", "AGE"]
        assert plain[1].split()[:7] == ["foo", "2", "2", "2", "2", "2", "<none>"]
        wide = cluster.kubectl("get", "ds", "-o", "wide").stdout.splitlines()
        assert wide[0].split()[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
        assert wide[1].split()[-3:-1] == ["foo", "foo/bar"]


def test_k09_delete_cascade_orphan_then_recreate_adopts_without_restart(cluster, cluster_api):
    converged(cluster, cluster_api, 2)
    c = core(cluster_api)
    with AgentSim(cluster):
        wait_for(lambda: status(cluster_api) == (2, 2, 2, 2, 2), what="converged")
        uids = {p.metadata.uid for p in daemon_pods(cluster_api)}
        out = cluster.kubectl("delete", "ds", "foo", "--cascade=orphan").stdout
        assert out.strip() == 'daemonset.apps "foo" deleted'
        pods = c.list_namespaced_pod("default").items
        assert {p.metadata.uid for p in pods} == uids and all(not p.metadata.owner_references for p in pods)
        revisions = apps(cluster_api).list_namespaced_controller_revision("default").items
        assert len(revisions) == 1 and not revisions[0].metadata.owner_references
        apps(cluster_api).create_namespaced_daemon_set("default", daemonset())
        wait_for(lambda: {p.metadata.uid for p in daemon_pods(cluster_api)} == uids, what="adopted")
        wait_for(lambda: status(cluster_api) == (2, 2, 2, 2, 2), what="status after adoption")
        stays("no pod restarted", lambda: {p.metadata.uid for p in c.list_namespaced_pod("default").items} == uids)
        revisions = apps(cluster_api).list_namespaced_controller_revision("default").items
        assert [r.metadata.owner_references[0].name for r in revisions] == ["foo"]
