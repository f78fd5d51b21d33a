"""An acknowledged write survives kill -9: several clients write continuously, the server is
killed with SIGKILL and restarted on the same data directory."""

import threading
import time

import kubernetes

from conftest import API_ONLY, MERGE, Server, wait_for


def writer(server, index, acked, stop):
    client = server.client()
    core = kubernetes.client.CoreV1Api(client)
    i = 0
    try:
        while not stop.is_set():
            name = f"w{index}-{i}"
            cm = core.create_namespaced_config_map("default", {"metadata": {"name": name}, "data": {"v": "0"}})
            acked[name] = int(cm.metadata.resource_version)
            updated = core.patch_namespaced_config_map(name, "default", {"data": {"v": "1"}}, _content_type=MERGE)
            acked[name] = int(updated.metadata.resource_version)
            i += 1
    except Exception:  # the server died under us: everything acknowledged so far is in `acked`
        pass
    finally:
        client.close()


def test_acknowledged_writes_survive_sigkill(tmp_data_dir):
    server = Server(tmp_data_dir, API_ONLY).start()
    acked_per_writer = [dict() for _ in range(4)]
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(server, i, acked_per_writer[i], stop)) for i in range(4)]
    for t in threads:
        t.start()
    # Kill once the writers are well under way, with requests in flight.
    wait_for("acknowledged writes", lambda: sum(len(d) for d in acked_per_writer) > 40, timeout=60, interval=0.05)
    server.kill()  # SIGKILL while the writers are mid-request
    stop.set()
    for t in threads:
        t.join(30)
    acked = {k: v for d in acked_per_writer for k, v in d.items()}
    assert len(acked) > 20, "the writers made progress before the kill"

    server.start()
    try:
        client = server.client()
        core = kubernetes.client.CoreV1Api(client)
        stored = {cm.metadata.name: cm for cm in core.list_namespaced_config_map("default").items}
        missing = sorted(set(acked) - set(stored))
        assert missing == [], f"acknowledged but lost: {missing[:10]}"
        for name, rv in acked.items():
            assert int(stored[name].metadata.resource_version) >= rv, name
        newest = max(acked.values())
        after = core.create_namespaced_config_map("default", {"metadata": {"name": "after-restart"}})
        assert int(after.metadata.resource_version) > newest, "resourceVersions keep increasing across the crash"
        client.close()
    finally:
        server.kill()
