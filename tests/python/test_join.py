"""Nodes that join with a bootstrap token, CertificateSigningRequests with real kubectl, and the
controllers' own identities: `everynode token create`, `everynode agent --join`, the approver
and signer, `kubectl certificate approve|deny`, and the audit log showing who wrote what."""

import base64
import json
import os
import re
import stat
import subprocess
import time

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import Server, everynode_binary, kubectl_120_binary, remove_tree, stop_process, wait_for


def token_create(server, *args):
    out = subprocess.run([everynode_binary(), "token", "create", "--data-dir", str(server.data_dir), *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    ca_hash = re.search(r"--ca-cert-hash (sha256:[0-9a-f]{64})", out.stderr).group(1)
    assert f"everynode agent --join {server.url} --token {token}" in out.stderr
    return token, ca_hash


def join(server, name, token, ca_hash, state_dir, url=None):
    log = open(server.data_dir / f"join-{name}.log", "ab")
    return subprocess.Popen(
        [everynode_binary(), "agent", "--join", url or server.url, "--token", token, "--ca-cert-hash", ca_hash,
         "--name", name, "--state-dir", str(state_dir), "--listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=log)


def curl_status(url, token=None, method="GET", ca=None):
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, "--cacert", ca, url]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout


def csrs(server):
    return json.loads(server.kubectl("get", "csr", "-o", "json").stdout)["items"]


def audit(server):
    with open(server.data_dir / "audit.log") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def joinable(tmp_path_factory):
    data = tmp_path_factory.mktemp("join")
    s = Server(data, ["--store", "memory"]).start()
    s.agents = []
    try:
        yield s
    finally:
        for proc in s.agents:
            stop_process(proc)
        s.kill()
        remove_tree(data)


def test_a_node_joins_with_a_bootstrap_token_and_gets_its_own_identity(joinable):
    s = joinable
    token, ca_hash = token_create(s, "--ttl", "1h", "--description", "rack 4")
    state = s.data_dir / "joined-1"
    proc = join(s, "joined-1", token, ca_hash, state)
    s.agents.append(proc)
    wait_for("the joined node Ready", lambda: "True" in s.kubectl(
        "get", "node", "joined-1", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False).stdout)
    # The request: asked by the token's user, approved by the approver, issued by the signer.
    [csr] = [c for c in csrs(s) if c["spec"]["username"] == f"system:bootstrap:{token.split('.')[0]}"]
    assert csr["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
    assert "system:bootstrappers" in csr["spec"]["groups"]
    conditions = {c["type"]: c for c in csr["status"]["conditions"]}
    assert conditions["Approved"]["reason"] == "AutoApproved"
    printed = s.kubectl("get", "csr", csr["metadata"]["name"]).stdout
    assert "Approved,Issued" in printed and "system:bootstrap:" in printed
    # The credential: the node's own, private, and only the node's.
    kubeconfig = state / "kubeconfig"
    assert stat.S_IMODE(os.stat(kubeconfig).st_mode) == 0o600
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:joined-1"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    env = {"KUBECONFIG": str(kubeconfig)}
    whoami = json.loads(s.kubectl("auth", "whoami", "-o", "json", env=env).stdout)["status"]["userInfo"]
    assert whoami["username"] == "system:node:joined-1"
    s.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "other"}}))
    other = s.kubectl("label", "node", "other", "x=y", env=env, check=False)
    assert other.returncode != 0
    assert ('nodes "other" is forbidden: User "system:node:joined-1" cannot patch resource "nodes" in API group "" '
            "at the cluster scope: node 'joined-1' cannot modify node 'other'") in other.stderr
    assert s.kubectl("label", "node", "joined-1", "pool=joined", env=env, check=False).returncode == 0
    # It runs pods like any node.
    s.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "sleeper"},
        "spec": {"selector": {"matchLabels": {"app": "sleeper"}},
                 "template": {"metadata": {"labels": {"app": "sleeper"}},
                              "spec": {"nodeSelector": {"pool": "joined"}, "terminationGracePeriodSeconds": 1,
                                       "containers": [{"name": "s", "image": "busybox", "command": ["sleep", "3600"]}]}}}}))
    wait_for("the daemon Running on the joined node", lambda: "Running" in s.kubectl(
        "get", "pods", "-l", "app=sleeper", "--field-selector", "spec.nodeName=joined-1", check=False).stdout)
    # A restarted agent keeps its credential and spends nothing: the token is gone, yet it comes back.
    stop_process(proc)
    subprocess.run([everynode_binary(), "token", "delete", token, "--data-dir", str(s.data_dir)], check=True,
                   capture_output=True)
    again = join(s, "joined-1", token, ca_hash, state)
    s.agents.append(again)
    wait_for("the restarted agent's heartbeat", lambda: again.poll() is None and "joined-1" in s.kubectl(
        "get", "lease", "-n", "kube-node-lease", check=False).stdout)
    time.sleep(2)
    assert again.poll() is None, (s.data_dir / "join-joined-1.log").read_text()[-2000:]
    assert len([c for c in csrs(s) if "system:bootstrap:" in c["spec"]["username"]]) == 1


def test_a_wrong_ca_hash_sends_no_token(joinable):
    s = joinable
    token, ca_hash = token_create(s)
    before = len(csrs(s))
    wrong = "sha256:" + ("0" * 64)
    proc = join(s, "impostor", token, wrong, s.data_dir / "impostor")
    assert proc.wait(timeout=60) != 0
    log = (s.data_dir / "join-impostor.log").read_text()
    assert f"not the {wrong} given with --ca-cert-hash; the token was not sent" in log
    assert len(csrs(s)) == before
    assert not (s.data_dir / "impostor" / "kubeconfig").exists()
    # Nothing in the audit log came from the token: discovery was anonymous.
    user = f"system:bootstrap:{token.split('.')[0]}"
    assert not [e for e in audit(s) if e["user"].get("username", "") == user]
    assert any(e["user"].get("username", "") == "system:anonymous" and "cluster-info" in e["requestURI"] for e in audit(s))


def test_bootstrap_tokens_ask_for_certificates_and_nothing_else(joinable):
    s = joinable
    token, _ = token_create(s, "--ttl", "1h")
    base = s.url
    ca = s.ca
    assert curl_status(f"{base}/api/v1/namespaces/default/pods", token, ca=ca) == "403"
    assert curl_status(f"{base}/api/v1/secrets", token, ca=ca) == "403"
    assert curl_status(f"{base}/apis/certificates.k8s.io/v1/certificatesigningrequests", token, ca=ca) == "200"
    # Anonymous callers read cluster-info and nothing else there.
    assert curl_status(f"{base}/api/v1/namespaces/kube-public/configmaps/cluster-info", ca=ca) == "200"
    assert curl_status(f"{base}/api/v1/namespaces/kube-public/configmaps/cluster-info", method="DELETE", ca=ca) == "403"
    assert curl_status(f"{base}/api/v1/namespaces/kube-public/configmaps", ca=ca) == "401"
    # A wrong secret, an expired token and a deleted one are 401.
    token_id, secret = token.split(".")
    assert curl_status(f"{base}/api/v1/namespaces/default/pods", f"{token_id}.{'a' * 16}", ca=ca) == "401"
    short, _ = token_create(s, "--ttl", "1s")
    time.sleep(2)
    assert curl_status(f"{base}/apis/certificates.k8s.io/v1/certificatesigningrequests", short, ca=ca) == "401"
    listed = subprocess.run([everynode_binary(), "token", "list", "--data-dir", str(s.data_dir)],
                            capture_output=True, text=True, check=True).stdout
    assert token_id in listed and "system:bootstrappers:everynode:default-node-token" in listed
    subprocess.run([everynode_binary(), "token", "delete", token_id, "--data-dir", str(s.data_dir)], check=True,
                   capture_output=True)
    assert curl_status(f"{base}/apis/certificates.k8s.io/v1/certificatesigningrequests", token, ca=ca) == "401"


def request_pem(common_name, organization):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return csr.public_bytes(serialization.Encoding.PEM), key_pem


def csr_object(name, pem, signer="kubernetes.io/kube-apiserver-client", usages=("client auth",), **spec):
    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
            "spec": {"request": base64.b64encode(pem).decode(), "signerName": signer, "usages": list(usages), **spec}}


@pytest.mark.parametrize("version", ["1.33", "1.20"])
def test_kubectl_certificate_approve_issues_a_user_certificate(joinable, version):
    s = joinable
    s.kubectl_path = kubectl_120_binary() if version == "1.20" else None
    try:
        name = f"alice-{version.replace('.', '')}"
        pem, key_pem = request_pem("alice", "team-a")
        s.kubectl("create", "-f", "-", input=json.dumps(csr_object(name, pem, expirationSeconds=3600)))
        assert "Pending" in s.kubectl("get", "csr", name).stdout
        s.kubectl("certificate", "approve", name)
        wait_for("alice's certificate", lambda: json.loads(
            s.kubectl("get", "csr", name, "-o", "json").stdout).get("status", {}).get("certificate"))
        csr = json.loads(s.kubectl("get", "csr", name, "-o", "json").stdout)
        assert csr["spec"]["username"] == "everynode-admin"
        cert = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert 3600 <= lifetime.total_seconds() <= 3600 + 300, lifetime
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
        # The certificate authenticates alice, in her group.
        kc = s.data_dir / f"{name}.kubeconfig"
        kc.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": s.url, "certificate-authority": s.ca}}],
            "users": [{"name": "alice", "user": {"client-certificate-data": csr["status"]["certificate"],
                                                 "client-key-data": base64.b64encode(key_pem).decode()}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "alice"}}]}))
        denied = s.kubectl("get", "pods", env={"KUBECONFIG": str(kc)}, check=False)
        assert 'User "alice" cannot list resource "pods"' in denied.stderr
        # A denied request is never signed; approval cannot be taken back.
        other = f"mallory-{version.replace('.', '')}"
        pem, _ = request_pem("mallory", "system:masters")
        s.kubectl("create", "-f", "-", input=json.dumps(csr_object(other, pem)))
        s.kubectl("certificate", "deny", other)
        time.sleep(1)
        denied_csr = json.loads(s.kubectl("get", "csr", other, "-o", "json").stdout)
        assert not denied_csr["status"].get("certificate")
        assert "Denied" in s.kubectl("get", "csr", other).stdout
    finally:
        s.kubectl_path = None


def test_certificate_requests_are_validated_and_the_approval_is_the_approvers(joinable):
    s = joinable
    pem, _ = request_pem("bob", "b")
    bad = csr_object("bad", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                     usages=["client auth", "flying"], expirationSeconds=60)
    out = s.kubectl("create", "-f", "-", input=json.dumps(bad), check=False)
    assert out.returncode != 0
    assert 'The CertificateSigningRequest "bad" is invalid' in out.stderr
    assert "spec.request: Invalid value: []byte{0x2d, 0x2d" in out.stderr
    assert "PEM block type must be CERTIFICATE REQUEST" in out.stderr
    assert 'spec.usages[1]: Unsupported value: "flying"' in out.stderr
    assert "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds" in out.stderr
    # A client cannot send itself a certificate, or an approval, through the main resource.
    sneaky = csr_object("sneaky", pem)
    sneaky["status"] = {"certificate": base64.b64encode(b"x").decode(),
                        "conditions": [{"type": "Approved", "status": "True"}]}
    sneaky["spec"]["username"] = "system:admin"
    s.kubectl("create", "-f", "-", input=json.dumps(sneaky))
    created = json.loads(s.kubectl("get", "csr", "sneaky", "-o", "json").stdout)
    assert created["spec"]["username"] == "everynode-admin"
    assert not created.get("status", {}).get("conditions")
    # Approved and Denied together are refused by the approval subresource.
    approve_and_deny = dict(created, status={"conditions": [{"type": "Approved", "status": "True"},
                                                            {"type": "Denied", "status": "True"}]})
    out = s.kubectl("replace", "--raw", "/apis/certificates.k8s.io/v1/certificatesigningrequests/sneaky/approval",
                    "-f", "-", input=json.dumps(approve_and_deny), check=False)
    assert out.returncode != 0 and "Approved and Denied conditions are mutually exclusive" in out.stderr


def test_controllers_act_as_their_own_least_privileged_identities(joinable):
    s = joinable
    wait_for("the sleeper's pods created", lambda: "sleeper" in s.kubectl("get", "pods", check=False).stdout)
    entries = audit(s)
    writers = {e["user"].get("username", "") for e in entries
               if e["verb"] in ("create", "patch", "update", "delete") and e.get("objectRef", {}).get("resource") == "pods"}
    assert "system:serviceaccount:kube-system:daemon-set-controller" in writers
    binders = {e["user"].get("username", "") for e in entries if e.get("objectRef", {}).get("subresource") == "binding"}
    assert binders <= {"system:kube-scheduler", "system:serviceaccount:kube-system:daemon-set-controller"}
    controllers = ("system:kube-", "system:serviceaccount:kube-system:")
    refused = [(e["user"].get("username", ""), e["verb"], e.get("objectRef")) for e in entries
               if e["user"].get("username", "").startswith(controllers) and e["responseStatus"]["code"] == 403]
    assert not refused, refused

    def may(user, verb, resource, group=""):
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": user, "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                                                    "system:authenticated"],
                           "resourceAttributes": {"verb": verb, "resource": resource, "group": group}}}
        out = s.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review))
        return json.loads(out.stdout)["status"].get("allowed", False)

    ds = "system:serviceaccount:kube-system:daemon-set-controller"
    assert may(ds, "create", "pods") and may(ds, "update", "daemonsets/status", "apps")
    assert not may(ds, "delete", "nodes") and not may(ds, "get", "secrets")
    podgc = "system:serviceaccount:kube-system:pod-garbage-collector"
    assert may(podgc, "delete", "pods") and not may(podgc, "create", "pods")
