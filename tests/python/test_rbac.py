"""Users, roles and RBAC with real credentials and real clients: users made by `everynode user
add`, kubectl 1.33 and 1.20 and the Python client acting as them, a static token file, client
certificates signed by the cluster CA and by another CA."""

import base64
import datetime
import json
import os
import stat
import subprocess
import textwrap

import kubernetes
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import Agent, REPO, Server, everynode_binary, kubectl_120_binary, unmount_under, wait_for

LOG_TAILER = (REPO / "examples" / "log-tailer.yaml").read_text().replace("namespace: kube-system", "namespace: a")


def user_add(server, name, *args):
    out = subprocess.run([everynode_binary(), "user", "add", name, "--data-dir", str(server.data_dir), *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def as_user(server, kubeconfig, *args, check=False, kubectl=None, input=None):
    env = dict(os.environ, KUBECONFIG=kubeconfig, HOME=str(server.data_dir / "home"))
    return subprocess.run([kubectl or "kubectl", *args], capture_output=True, text=True, env=env, timeout=120,
                          check=check, input=input)


@pytest.fixture(scope="module")
def rbac(tmp_path_factory):
    """A server with its controllers and one process-runtime agent; namespaces `a` and `b`; the
    log tailer running in `a`; users `viewer`, `editor` and `boss` (view, edit, admin in `a`)."""
    data = tmp_path_factory.mktemp("rbac")
    s = Server(data, ["--store", "memory"]).start()
    agent = Agent(s, "node-1").start()
    try:
        s.kubectl("create", "namespace", "a")
        s.kubectl("create", "namespace", "b")
        s.kubectl("apply", "-f", "-", input=LOG_TAILER)
        s.users = {
            "viewer": user_add(s, "viewer", "--namespace", "a", "--role", "view"),
            "editor": user_add(s, "editor", "--namespace", "a", "--role", "edit"),
            "boss": user_add(s, "boss", "--namespace", "a", "--role", "admin"),
        }
        wait_for("the log tailer Running", lambda: "Running" in s.kubectl("get", "pods", "-n", "a").stdout)
        yield s
    finally:
        agent.stop()
        s.kill()
        unmount_under(data)


def test_user_kubeconfigs_are_private_and_name_the_user(rbac):
    path = rbac.users["viewer"]
    assert path == str(rbac.data_dir / "users" / "viewer.kubeconfig")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    who = as_user(rbac, path, "auth", "whoami", "-o", "json", check=True)
    info = json.loads(who.stdout)["status"]["userInfo"]
    assert info["username"] == "viewer" and info["groups"] == ["system:authenticated"]
    listed = subprocess.run([everynode_binary(), "user", "list", "--data-dir", str(rbac.data_dir)],
                            capture_output=True, text=True, check=True).stdout
    assert "viewer" in listed and "ClusterRole/view in a" in listed


@pytest.mark.parametrize("version", ["1.33", "1.20"])
def test_a_viewer_reads_its_namespace_and_nothing_else(rbac, version):
    kubectl = kubectl_120_binary() if version == "1.20" else None
    kc = rbac.users["viewer"]
    run = lambda *a: as_user(rbac, kc, *a, kubectl=kubectl)
    assert "log-tailer" in run("get", "ds", "-n", "a").stdout
    pod = run("get", "pods", "-n", "a", "-o", "name").stdout.split()[0]
    logs = run("logs", "-n", "a", pod)
    assert logs.returncode == 0 and "log-tailer on node-1" in logs.stdout, logs.stderr
    denied = run("delete", "ds", "log-tailer", "-n", "a")
    assert denied.returncode != 0
    assert ('daemonsets.apps "log-tailer" is forbidden: User "viewer" cannot delete resource "daemonsets" '
            'in API group "apps" in the namespace "a"') in denied.stderr
    patch = run("patch", "ds", "log-tailer", "-n", "a", "-p", '{"metadata":{"labels":{"x":"y"}}}')
    assert patch.returncode != 0 and "cannot patch resource" in patch.stderr
    create = run("create", "configmap", "c", "-n", "a", "--from-literal=k=v")
    assert create.returncode != 0 and "cannot create resource \"configmaps\"" in create.stderr
    assert "cannot list resource \"secrets\"" in run("get", "secrets", "-n", "a").stderr
    other = run("get", "ds", "-n", "b")
    assert other.returncode != 0
    assert ('daemonsets.apps is forbidden: User "viewer" cannot list resource "daemonsets" in API group '
            '"apps" in the namespace "b"') in other.stderr
    assert "at the cluster scope" in run("get", "nodes").stderr
    assert run("auth", "can-i", "create", "daemonsets", "-n", "a").stdout.strip() == "no"
    assert run("auth", "can-i", "watch", "daemonsets", "-n", "a").stdout.strip() == "yes"


def test_a_viewer_watches_with_the_python_client_and_gets_403_bodies(rbac):
    client = kubernetes.config.new_client_from_config(config_file=rbac.users["viewer"])
    try:
        apps = kubernetes.client.AppsV1Api(client)
        events = kubernetes.watch.Watch().stream(apps.list_namespaced_daemon_set, "a", timeout_seconds=1)
        assert any(e["object"].metadata.name == "log-tailer" for e in events)
        with pytest.raises(kubernetes.client.exceptions.ApiException) as denied:
            apps.delete_namespaced_daemon_set("log-tailer", "a")
        assert denied.value.status == 403
        body = json.loads(denied.value.body)
        assert body["reason"] == "Forbidden"
        assert body["details"] == {"name": "log-tailer", "group": "apps", "kind": "daemonsets"}
    finally:
        client.close()


def test_an_editor_creates_a_daemonset_and_rolls_it_back(rbac):
    kc = rbac.users["editor"]
    ds = textwrap.dedent("""\
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {name: sleeper, namespace: a}
        spec:
          selector: {matchLabels: {app: sleeper}}
          template:
            metadata: {labels: {app: sleeper}}
            spec:
              terminationGracePeriodSeconds: 1
              containers: [{name: s, image: busybox:1.36, command: [sleep, "3600"]}]
        """)
    assert as_user(rbac, kc, "apply", "-f", "-", input=ds).returncode == 0
    as_user(rbac, kc, "set", "image", "ds/sleeper", "s=busybox:1.37", "-n", "a", check=True)
    wait_for("two revisions", lambda: len(json.loads(as_user(rbac, kc, "get", "controllerrevisions", "-n", "a", "-o", "json").stdout)["items"]) >= 3)
    undo = as_user(rbac, kc, "rollout", "undo", "ds/sleeper", "-n", "a")
    assert undo.returncode == 0, undo.stderr
    image = as_user(rbac, kc, "get", "ds", "sleeper", "-n", "a", "-o", "jsonpath={.spec.template.spec.containers[0].image}").stdout
    assert image == "busybox:1.36"
    # Edit grants no RBAC writes.
    bind = as_user(rbac, kc, "create", "rolebinding", "x", "--clusterrole=view", "--user=eve", "-n", "a")
    assert bind.returncode != 0 and "cannot create resource \"rolebindings\"" in bind.stderr
    as_user(rbac, kc, "delete", "ds", "sleeper", "-n", "a", check=True)


def test_an_admin_binds_in_its_namespace_but_cannot_escalate(rbac):
    kc = rbac.users["boss"]
    assert as_user(rbac, kc, "create", "rolebinding", "dave-edit", "--clusterrole=edit", "--user=dave", "-n", "a").returncode == 0
    assert as_user(rbac, kc, "create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", "a").returncode == 0
    crb = as_user(rbac, kc, "create", "clusterrolebinding", "dave-all", "--clusterrole=cluster-admin", "--user=dave")
    assert ('clusterrolebindings.rbac.authorization.k8s.io is forbidden: User "boss" cannot create resource '
            '"clusterrolebindings" in API group "rbac.authorization.k8s.io" at the cluster scope') in crb.stderr
    role = as_user(rbac, kc, "create", "role", "everything", "--verb=*", "--resource=*", "-n", "a")
    assert role.returncode != 0
    assert ('roles.rbac.authorization.k8s.io "everything" is forbidden: user "boss" (groups=["system:authenticated"]) '
            'is attempting to grant RBAC permissions not currently held:\n{APIGroups:[""], Resources:["*"], Verbs:["*"]}') in role.stderr
    escalate = as_user(rbac, kc, "create", "rolebinding", "dave-root", "--clusterrole=cluster-admin", "--user=dave", "-n", "a")
    assert "is attempting to grant RBAC permissions not currently held" in escalate.stderr
    # Within `a` only.
    assert as_user(rbac, kc, "create", "rolebinding", "x", "--clusterrole=view", "--user=dave", "-n", "b").returncode != 0


def test_rbac_objects_with_unknown_verbs_or_malformed_rules_are_422(rbac):
    bad = textwrap.dedent("""\
        apiVersion: rbac.authorization.k8s.io/v1
        kind: Role
        metadata: {name: bad, namespace: a}
        rules:
        - apiGroups: [""]
          resources: [pods]
          verbs: [gets]
        - verbs: [get]
          resources: [pods]
        """)
    out = rbac.kubectl("create", "-f", "-", input=bad, check=False)
    assert out.returncode != 0
    assert 'The Role "bad" is invalid' in out.stderr
    assert 'rules[0].verbs[0]: Unsupported value: "gets"' in out.stderr
    assert "rules[1].apiGroups: Required value: resource rules must supply at least one api group" in out.stderr
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "bad"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "x"},
               "subjects": [{"kind": "ServiceAccount", "name": "robot"}]}
    out = rbac.kubectl("create", "-f", "-", input=json.dumps(binding), check=False)
    assert 'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"' in out.stderr
    assert "subjects[0].namespace: Required value" in out.stderr


def test_removing_a_user_ends_its_token_at_once(rbac, tmp_path):
    kc = user_add(rbac, "temp", "--namespace", "a", "--role", "view")
    kept = tmp_path / "temp.kubeconfig"
    kept.write_text(open(kc).read())
    assert as_user(rbac, str(kept), "get", "ds", "-n", "a").returncode == 0
    subprocess.run([everynode_binary(), "user", "remove", "temp", "--data-dir", str(rbac.data_dir)], check=True,
                   capture_output=True)
    assert not os.path.exists(kc)
    gone = as_user(rbac, str(kept), "get", "ds", "-n", "a")
    assert gone.returncode != 0 and "Unauthorized" in gone.stderr
    assert "everynode-user-temp" not in rbac.kubectl("get", "rolebindings", "-n", "a", "-o", "name").stdout
    # Other users are unaffected.
    assert as_user(rbac, rbac.users["viewer"], "get", "ds", "-n", "a").returncode == 0


def test_bad_credentials_are_401(rbac):
    config = yaml.safe_load(open(rbac.users["viewer"]))
    token = config["users"][0]["user"]["token"]
    token_id, secret = token.split(".")
    for bad in ["nonsense", f"{token_id}.{'x' * len(secret)}", "abcdef.0123456789abcdef"]:
        r = subprocess.run(["curl", "-sk", "-H", f"Authorization: Bearer {bad}", f"{rbac.url}/api/v1/namespaces/a/pods"],
                           capture_output=True, text=True)
        status = json.loads(r.stdout)
        assert status["code"] == 401 and status["message"] == "Unauthorized", status
    anonymous = json.loads(subprocess.run(["curl", "-sk", f"{rbac.url}/api/v1/pods"], capture_output=True, text=True).stdout)
    assert anonymous["code"] == 401
    assert subprocess.run(["curl", "-sk", f"{rbac.url}/version"], capture_output=True, text=True).stdout.count("gitVersion") == 1


def client_certificate(ca_cert_pem, ca_key_pem, common_name, organization):
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    names += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organization]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name(names))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def cert_kubeconfig(server, path, cert_pem, key_pem):
    b64 = lambda b: base64.b64encode(b).decode()
    config = yaml.safe_load(open(server.kubeconfig))
    config["users"] = [{"name": "cert", "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}]
    config["contexts"][0]["context"]["user"] = "cert"
    path.write_text(yaml.safe_dump(config))
    os.chmod(path, 0o600)
    return str(path)


def test_client_certificates_of_the_cluster_ca_authenticate_others_do_not(rbac, tmp_path):
    pki = rbac.data_dir / "pki"
    cert, key = client_certificate((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes(), "carol", ["team-a", "ops"])
    rbac.kubectl("create", "clusterrolebinding", "ops-view", "--clusterrole=view", "--group=ops")
    kc = cert_kubeconfig(rbac, tmp_path / "carol", cert, key)
    info = json.loads(as_user(rbac, kc, "auth", "whoami", "-o", "json", check=True).stdout)["status"]["userInfo"]
    assert info["username"] == "carol"
    assert info["groups"] == ["team-a", "ops", "system:authenticated"]
    assert as_user(rbac, kc, "get", "ds", "-n", "b").returncode == 0
    # The same subject from a CA of its own: 401, not a handshake failure.
    other_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    other_ca = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(other_key.public_key()).serial_number(1)
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(other_key, hashes.SHA256()))
    forged, forged_key = client_certificate(
        other_ca.public_bytes(serialization.Encoding.PEM),
        other_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        "carol", ["system:masters"])
    bad = as_user(rbac, cert_kubeconfig(rbac, tmp_path / "forged", forged, forged_key), "get", "ds", "-n", "a")
    assert bad.returncode != 0
    assert "Unauthorized" in bad.stderr


def test_access_reviews_answer_for_any_subject(rbac):
    client = rbac.client()
    try:
        authz = kubernetes.client.AuthorizationV1Api(client)
        review = {"spec": {"user": "viewer", "resourceAttributes": {"namespace": "a", "verb": "list", "group": "apps", "resource": "daemonsets"}}}
        status = authz.create_subject_access_review(review).status
        assert status.allowed is True
        assert status.reason == 'RBAC: allowed by RoleBinding "everynode-user-viewer-view/a" of ClusterRole "view" to User "viewer"'
        review["spec"]["resourceAttributes"]["namespace"] = "b"
        assert authz.create_subject_access_review(review).status.allowed is False
        with pytest.raises(kubernetes.client.exceptions.ApiException) as invalid:
            authz.create_subject_access_review({"spec": {"resourceAttributes": {"verb": "get"}}})
        assert invalid.value.status == 422
        message = json.loads(invalid.value.body)["message"]
        assert message == ('SubjectAccessReview.authorization.k8s.io "" is invalid: spec.user: Invalid value: "": '
                           'at least one of user or group must be specified')
    finally:
        client.close()
    rules = as_user(rbac, rbac.users["viewer"], "auth", "can-i", "--list", "-n", "a", check=True).stdout
    assert "daemonsets.apps" in rules and "[get list watch]" in rules
    assert "secrets" not in rules


def test_static_token_file(tmp_data_dir):
    tokens = os.path.join(tmp_data_dir, "tokens.csv")
    with open(tokens, "w") as f:
        f.write('# token,user,uid,"groups"\ns3cret-token,erin,uid-42,"auditors,system:masters"\n')
    s = Server(tmp_data_dir, ["--store", "memory", "--token-auth-file", tokens]).start()
    try:
        r = subprocess.run(["curl", "-sk", "-X", "POST", "-H", "Authorization: Bearer s3cret-token", "-H", "Content-Type: application/json",
                            "-d", '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}',
                            f"{s.url}/apis/authentication.k8s.io/v1/selfsubjectreviews"], capture_output=True, text=True)
        info = json.loads(r.stdout)["status"]["userInfo"]
        assert info == {"username": "erin", "uid": "uid-42", "groups": ["auditors", "system:masters", "system:authenticated"]}
    finally:
        s.kill()


def test_an_agent_acts_only_for_its_own_node(tmp_path):
    """Two agents with node identities (client certificates of the cluster CA for
    system:node:<name>): each runs its pods, and each may touch only its own node, its own pods
    and the Secrets its pods use."""
    data = tmp_path / "nodes"
    data.mkdir()
    s = Server(data, ["--store", "memory"]).start()
    pki = data / "pki"
    kubeconfigs = {}
    for n in ("node-1", "node-2"):
        cert, key = client_certificate((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes(),
                                       f"system:node:{n}", ["system:nodes"])
        kubeconfigs[n] = cert_kubeconfig(s, tmp_path / f"{n}.kubeconfig", cert, key)
    agents = [Agent(s, n, kubeconfig=kubeconfigs[n]).start() for n in kubeconfigs]
    try:
        s.kubectl("create", "secret", "generic", "used", "--from-literal=k=v", "-n", "default")
        s.kubectl("create", "secret", "generic", "unused", "--from-literal=k=v", "-n", "default")
        ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "reader", "namespace": "default"},
              "spec": {"selector": {"matchLabels": {"app": "reader"}}, "template": {
                  "metadata": {"labels": {"app": "reader"}},
                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                      "name": "r", "image": "busybox:1.36", "command": ["sh", "-c", "echo $SECRET; exec sleep 3600"],
                      "env": [{"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "used", "key": "k"}}}]}]}}}}
        s.kubectl("apply", "-f", "-", input=json.dumps(ds))

        def pods_by_node():
            pods = json.loads(s.kubectl("get", "pods", "-o", "json").stdout)["items"]
            running = {p["spec"].get("nodeName"): p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"}
            return running if len(running) == 2 else None

        pods = wait_for("a Running pod on each node", pods_by_node)
        n1 = kubeconfigs["node-1"]
        info = json.loads(as_user(s, n1, "auth", "whoami", "-o", "json", check=True).stdout)["status"]["userInfo"]
        assert info["username"] == "system:node:node-1"
        refused = {
            "patch another node": as_user(s, n1, "label", "node", "node-2", "x=y"),
            "delete another node's pod": as_user(s, n1, "delete", "pod", pods["node-2"], "--wait=false"),
            "read a Secret its pods do not use": as_user(s, n1, "get", "secret", "unused"),
            "list Secrets": as_user(s, n1, "get", "secrets"),
            "create a namespace": as_user(s, n1, "create", "namespace", "x"),
        }
        for what, result in refused.items():
            assert result.returncode != 0 and "Forbidden" in result.stderr, (what, result.stderr)
        assert "node 'node-1' cannot modify node 'node-2'" in refused["patch another node"].stderr
        assert "no relationship found between node 'node-1' and this object" in refused["read a Secret its pods do not use"].stderr
        allowed = {
            "patch its own node": as_user(s, n1, "label", "node", "node-1", "x=y"),
            "read the Secret its pod uses": as_user(s, n1, "get", "secret", "used"),
            "delete its own pod": as_user(s, n1, "delete", "pod", pods["node-1"], "--wait=false"),
        }
        for what, result in allowed.items():
            assert result.returncode == 0, (what, result.stderr)
        # NodeRestriction: only mirror pods, and only bound to itself.
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sneaky", "namespace": "default"},
               "spec": {"nodeName": "node-2", "containers": [{"name": "c", "image": "busybox:1.36"}]}}
        sneaky = as_user(s, n1, "create", "-f", "-", input=json.dumps(pod))
        assert "can only create mirror pods" in sneaky.stderr
        # The agents themselves were never refused anything.
        for n in kubeconfigs:
            assert "Forbidden" not in (data / f"agent-{n}.log").read_text()
    finally:
        for a in agents:
            a.stop()
        s.kill()
        unmount_under(data)


def curl_json(url, token, method="GET", body=None):
    args = ["curl", "-sk", "-X", method, "-H", f"Authorization: Bearer {token}", url]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


def test_a_pod_uses_its_mounted_token_with_what_its_account_is_allowed(rbac):
    rbac.kubectl("create", "serviceaccount", "robot", "-n", "a")
    talker = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "talker", "namespace": "a"},
              "spec": {"selector": {"matchLabels": {"app": "talker"}}, "template": {
                  "metadata": {"labels": {"app": "talker"}},
                  "spec": {"serviceAccountName": "robot", "terminationGracePeriodSeconds": 1, "containers": [{
                      "name": "t", "image": "busybox:1.36", "command": ["sh", "-c",
                          "d=/var/run/secrets/kubernetes.io/serviceaccount; cat $d/token; echo; cat $d/namespace; echo; "
                          "grep -c 'BEGIN CERTIFICATE' $d/ca.crt; exec sleep 3600"]}]}}}}
    quiet = json.loads(json.dumps(talker).replace("talker", "quiet"))
    quiet["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    rbac.kubectl("apply", "-f", "-", input=json.dumps(talker))
    rbac.kubectl("apply", "-f", "-", input=json.dumps(quiet))

    def talker_logs():
        pods = json.loads(rbac.kubectl("get", "pods", "-n", "a", "-l", "app=talker", "-o", "json").stdout)["items"]
        if not pods:
            return None
        out = rbac.kubectl("logs", "-n", "a", pods[0]["metadata"]["name"], check=False).stdout.split()
        return (pods[0], out) if len(out) >= 3 else None

    pod, (token, namespace, certificates) = wait_for("the talker's log", talker_logs)
    assert namespace == "a" and certificates == "1"
    volume = [v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(volume) == 1
    quiet_pod = wait_for("the quiet pod", lambda: json.loads(rbac.kubectl("get", "pods", "-n", "a", "-l", "app=quiet", "-o", "json").stdout)["items"])
    assert not any(v["name"].startswith("kube-api-access-") for v in quiet_pod[0]["spec"].get("volumes", []))
    pods_url = f"{rbac.url}/api/v1/namespaces/a/pods"
    denied = curl_json(pods_url, token)
    assert denied["code"] == 403
    assert denied["message"] == ('pods is forbidden: User "system:serviceaccount:a:robot" cannot list resource "pods" '
                                 'in API group "" in the namespace "a"')
    rbac.kubectl("create", "rolebinding", "robot-view", "--clusterrole=view", "--serviceaccount=a:robot", "-n", "a")
    assert curl_json(pods_url, token)["kind"] == "PodList"
    who = curl_json(f"{rbac.url}/apis/authentication.k8s.io/v1/selfsubjectreviews", token, "POST",
                    {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})["status"]["userInfo"]
    assert who["username"] == "system:serviceaccount:a:robot"
    assert who["groups"] == ["system:serviceaccounts", "system:serviceaccounts:a", "system:authenticated"]
    assert who["extra"]["authentication.kubernetes.io/pod-name"] == [pod["metadata"]["name"]]
    # The token is bound to the pod: gone with it.
    rbac.kubectl("delete", "ds", "talker", "quiet", "-n", "a")
    wait_for("the talker's token to stop working", lambda: curl_json(pods_url, token).get("code") == 401)


def test_token_requests_and_tokens_that_must_fail(rbac):
    rbac.kubectl("create", "serviceaccount", "temp", "-n", "b")
    token = rbac.kubectl("create", "token", "temp", "-n", "b", "--duration=15m").stdout.strip()
    url = f"{rbac.url}/api/v1/namespaces/b/configmaps"
    assert curl_json(url, token)["code"] == 403
    header, claims, signature = token.split(".")
    forged = f"{header}.{claims}.{signature[:-4]}AAAA"
    assert curl_json(url, forged)["code"] == 401
    short = subprocess.run(["kubectl", "create", "token", "temp", "-n", "b", "--duration=5m"], capture_output=True,
                           text=True, env=dict(os.environ, KUBECONFIG=rbac.kubeconfig))
    assert "spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes" in short.stderr
    rbac.kubectl("delete", "serviceaccount", "temp", "-n", "b")
    assert curl_json(url, token)["code"] == 401
    missing = subprocess.run(["kubectl", "create", "token", "nobody", "-n", "b"], capture_output=True, text=True,
                             env=dict(os.environ, KUBECONFIG=rbac.kubeconfig))
    assert 'serviceaccounts "nobody" not found' in missing.stderr


def test_the_audit_log_records_who_did_what_and_never_bodies(rbac):
    kc = rbac.users["viewer"]
    as_user(rbac, kc, "delete", "configmap", "kube-root-ca.crt", "-n", "a")
    subprocess.run(["curl", "-sk", "-H", "Authorization: Bearer nonsense", f"{rbac.url}/api/v1/pods"], capture_output=True)
    rbac.kubectl("create", "secret", "generic", "audited", "--from-literal=password=hunter2", "-n", "b")
    log = rbac.data_dir / "audit.log"

    def events():
        return [json.loads(line) for line in log.read_text().splitlines()]

    def refused():
        return [e for e in events() if e["user"].get("username") == "viewer" and e["verb"] == "delete"]

    e = wait_for("the viewer's refused delete in the audit log", refused)[-1]
    assert e["apiVersion"] == "audit.k8s.io/v1" and e["level"] == "Metadata"
    assert e["objectRef"] == {"resource": "configmaps", "namespace": "a", "name": "kube-root-ca.crt", "apiVersion": "v1"}
    assert e["responseStatus"]["code"] == 403
    assert e["user"]["groups"] == ["system:authenticated"]
    assert e["sourceIPs"] == ["127.0.0.1"] and e["userAgent"].startswith("kubectl")
    assert "everynode.io/latency" in e["annotations"]
    assert any(ev["responseStatus"]["code"] == 401 and ev["user"] == {} for ev in events())
    wait_for("the secret's create", lambda: any(ev["verb"] == "create" and ev.get("objectRef", {}).get("name") is None
                                               and ev.get("objectRef", {}).get("resource") == "secrets" for ev in events()))
    assert "hunter2" not in log.read_text() and "aHVudGVyMg" not in log.read_text()
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600


def test_one_user_cannot_hold_every_watch(tmp_data_dir):
    """Watches per user are limited (`--max-watches-per-user`): past it a 429 with Retry-After,
    while other users and the administrator still watch; a closed watch gives its slot back."""
    import requests
    tokens = os.path.join(tmp_data_dir, "tokens.csv")
    with open(tokens, "w") as f:
        f.write("greedy-token,greedy,u1\nother-token,other,u2\n")
    s = Server(tmp_data_dir, ["--store", "memory", "--token-auth-file", tokens, "--max-watches-per-user", "3"]).start()
    try:
        for user in ("greedy", "other"):
            s.kubectl("create", "clusterrolebinding", f"{user}-view", "--clusterrole=view", f"--user={user}")
        url = f"{s.url}/api/v1/namespaces/default/configmaps?watch=true"

        def watch(token):
            return requests.get(url, headers={"Authorization": f"Bearer {token}"}, verify=False, stream=True, timeout=10)

        held = [watch("greedy-token") for _ in range(3)]
        assert all(r.status_code == 200 for r in held)
        refused = watch("greedy-token")
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        assert refused.json()["message"].startswith('Too many watches: user "greedy" has 3 open')
        assert watch("other-token").status_code == 200
        assert watch(s.token).status_code == 200
        held.pop().close()
        wait_for("a slot given back", lambda: watch("greedy-token").status_code == 200)
    finally:
        s.kill()


def test_a_users_big_list_arrives_whole_through_the_fair_lane(rbac):
    """Lists of over 100 objects by users other than system:masters take seats and are written in
    slices (crate::fairness); every client still gets the whole list."""
    items = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"big-{i}", "namespace": "a"},
              "data": {"payload": "x" * 600}} for i in range(300)]
    rbac.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    kc = rbac.users["viewer"]
    for kubectl in (None, kubectl_120_binary()):
        table = as_user(rbac, kc, "get", "configmaps", "-n", "a", "--no-headers", kubectl=kubectl, check=True)
        assert len([line for line in table.stdout.splitlines() if line.startswith("big-")]) == 300
    whole = json.loads(as_user(rbac, kc, "get", "configmaps", "-n", "a", "-o", "json", check=True).stdout)
    assert len([i for i in whole["items"] if i["metadata"]["name"].startswith("big-")]) == 300
    client = kubernetes.config.new_client_from_config(config_file=kc)
    try:
        listed = kubernetes.client.CoreV1Api(client).list_namespaced_config_map("a")
        big = [c for c in listed.items if c.metadata.name.startswith("big-")]
        assert len(big) == 300 and all(c.data["payload"] == "x" * 600 for c in big)
    finally:
        client.close()
