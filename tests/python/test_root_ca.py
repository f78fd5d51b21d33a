"""The root-CA publisher: every namespace has a `kube-root-ca.crt` ConfigMap holding the cluster
CA, recreated when deleted and put back when edited, as upstream's controller keeps it."""

import pathlib

import kubernetes

from conftest import wait_for

DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
               "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")


def test_every_namespace_gets_the_cluster_ca_and_keeps_it(cluster):
    server = cluster
    core = kubernetes.client.CoreV1Api(server.client())
    ca = pathlib.Path(server.ca).read_text()

    def published(ns):
        try:
            cm = core.read_namespaced_config_map("kube-root-ca.crt", ns)
        except kubernetes.client.exceptions.ApiException:
            return None
        return cm if cm.data == {"ca.crt": ca} else None

    for ns in ["default", "kube-system"]:
        cm = wait_for(f"the root CA in {ns}", lambda: published(ns))
        assert cm.metadata.annotations["kubernetes.io/description"] == DESCRIPTION
    core.create_namespace({"metadata": {"name": "team-a"}})
    wait_for("the root CA in a new namespace", lambda: published("team-a"))
    core.delete_namespaced_config_map("kube-root-ca.crt", "team-a")
    wait_for("the root CA recreated", lambda: published("team-a"))
    core.patch_namespaced_config_map("kube-root-ca.crt", "team-a", {"data": {"ca.crt": "tampered"}})
    wait_for("the root CA put back", lambda: published("team-a"))
