"""`kubectl exec`, `attach` and `cp` into process-runtime pods through the API server's
WebSocket relay (v5.channel.k8s.io, as kubectl 1.33 speaks it): the container's environment and
working directory, stdin, exit codes, a TTY with its size, both directions of `cp`, and
upstream's errors; the same through kubectl 1.20's SPDY/3.1; and `kubectl port-forward` to a
server listening on the pod's localhost, with 1.33 (SPDY tunnelled in a WebSocket) and 1.20
(SPDY on the upgraded connection)."""

import json
import os
import pty
import signal
import subprocess

import pytest

from conftest import (Agent, Server, fetch_local, kubectl_120_binary, kubectl_binary, read_until, remove_tree,
                      start_port_forward, wait_for)

SLEEPER = {
    "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "sleeper"},
    "spec": {"selector": {"matchLabels": {"app": "sleeper"}},
             "template": {"metadata": {"labels": {"app": "sleeper"}},
                          "spec": {"terminationGracePeriodSeconds": 1,
                                   "containers": [
                                       {"name": "main", "image": "busybox:1.36", "workingDir": "/tmp",
                                        "env": [{"name": "GREETING", "value": "hello from the container"}],
                                        "command": ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done"]},
                                       {"name": "side", "image": "busybox:1.36",
                                        "command": ["sh", "-c", "while true; do sleep 1; done"]}]}}}}


@pytest.fixture(scope="module")
def one_node(tmp_path_factory):
    data = tmp_path_factory.mktemp("exec")
    s = Server(data, ["--store", "memory"]).start()
    agent = Agent(s, "node-1").start()
    try:
        s.kubectl("apply", "-f", "-", input=json.dumps(SLEEPER))
        wait_for("the sleeper Running", lambda: s.kubectl("get", "pods", "-l", "app=sleeper", "--no-headers").stdout.count("Running") == 1)
        s.pod = s.kubectl("get", "pods", "-l", "app=sleeper", "-o", "jsonpath={.items[0].metadata.name}").stdout
        yield s
    finally:
        agent.stop()
        s.kill()
        remove_tree(data)


def test_exec_runs_in_the_containers_environment_with_its_exit_code(one_node):
    s = one_node
    r = s.kubectl("exec", s.pod, "-c", "main", "--", "sh", "-c", 'echo "$GREETING"; pwd; echo to-stderr >&2')
    assert r.stdout == "hello from the container\n/tmp\n"
    assert "to-stderr" in r.stderr
    r = s.kubectl("exec", s.pod, "-c", "main", "--", "sh", "-c", "exit 3", check=False)
    assert r.returncode == 3, r.stderr
    assert "command terminated with exit code 3" in r.stderr
    # The second container by name; its environment lacks the first's variable.
    r = s.kubectl("exec", s.pod, "-c", "side", "--", "sh", "-c", 'echo "[$GREETING]"')
    assert r.stdout == "[]\n"


def test_stdin_reaches_the_command_and_its_end_ends_it(one_node):
    s = one_node
    r = s.kubectl("exec", "-i", s.pod, "-c", "main", "--", "sh", "-c", "wc -l", input="one\ntwo\nthree\n")
    assert r.stdout.strip() == "3"


@pytest.mark.parametrize("client", ["1.33", "1.20"])
def test_cp_copies_both_ways(one_node, tmp_path, client):
    """1.33 over WebSocket v5, 1.20 over SPDY: both end the pod's `tar` input."""
    s = one_node
    source = tmp_path / "in.txt"
    source.write_text("copied content\n" * 1000)
    target = tmp_path / "in-the-pod.txt"
    s.kubectl_path = kubectl_binary() if client == "1.33" else kubectl_120_binary()
    try:
        s.kubectl("cp", str(source), f"{s.pod}:{target}", "-c", "main")
        assert target.read_text() == source.read_text()
        back = tmp_path / "back.txt"
        s.kubectl("cp", f"{s.pod}:{target}", str(back), "-c", "main")
        assert back.read_text() == source.read_text()
    finally:
        s.kubectl_path = None


@pytest.mark.parametrize("client", ["1.33", "1.20"])
def test_an_interactive_terminal_has_the_clients_size_and_exit_code(one_node, client):
    s = one_node
    binary = kubectl_binary() if client == "1.33" else kubectl_120_binary()
    import fcntl
    import struct
    import termios
    pid, fd = pty.fork()
    if pid == 0:
        # The terminal has its size before kubectl starts and reads it.
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        env = dict(os.environ, KUBECONFIG=s.kubeconfig, HOME=str(s.data_dir / "home"))
        os.execve(binary, [binary, "exec", "-it", s.pod, "-c", "main", "--", "sh"], env)
    try:
        os.write(fd, b"echo $((6*7)); stty size; tty\n")
        out = read_until(fd, b"/dev/pts/")
        assert b"42" in out, out
        assert b"33 101" in out, out
        os.write(fd, b"exit 2\n")
        read_until(fd, b"never", timeout=10)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 2
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_attach_streams_the_containers_output(one_node):
    s = one_node
    env = dict(os.environ, KUBECONFIG=s.kubeconfig, HOME=str(s.data_dir / "home"))
    proc = subprocess.Popen([kubectl_binary(), "attach", s.pod, "-c", "main"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out = read_until(proc.stdout.fileno(), b"tick", timeout=30)
        # New lines only: attach starts at the end of the output.
        out += read_until(proc.stdout.fileno(), b"\n", timeout=10)
        assert b"tick" in out, out
    finally:
        proc.kill()
        proc.wait()


def reader_pod(name, once):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": "node-1", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox:1.36", "stdin": True, "stdinOnce": once,
                                     "command": ["sh", "-c", 'while read line; do echo "got $line"; done; echo stdin closed']}]}}


@pytest.mark.parametrize("client", ["1.33", "1.20"])
def test_attach_passes_input_to_a_container_with_stdin_once(one_node, client):
    """`kubectl attach -i` to a container with `stdin: true, stdinOnce: true`: its input reaches
    the container, and the end of it closes the container's stdin, so the container ends and so
    does kubectl."""
    s = one_node
    name = f"reader-once-{client.replace('.', '')}"
    s.kubectl("apply", "-f", "-", input=json.dumps(reader_pod(name, True)))
    s.kubectl_path = kubectl_binary() if client == "1.33" else kubectl_120_binary()
    try:
        s.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s")
        r = s.kubectl("attach", "-i", name, "-c", "c", input="hello\nworld\n")
        assert "got hello\ngot world\nstdin closed\n" in r.stdout, (r.stdout, r.stderr)
        wait_for("the reader Succeeded", lambda: s.kubectl("get", "pod", name, "-o", "jsonpath={.status.phase}").stdout == "Succeeded")
    finally:
        s.kubectl_path = None
        s.kubectl("delete", "pod", name, "--wait=false")


def test_attach_stdin_stays_open_between_clients_without_stdin_once(one_node):
    s = one_node
    s.kubectl("apply", "-f", "-", input=json.dumps(reader_pod("reader-open", False)))
    env = dict(os.environ, KUBECONFIG=s.kubeconfig, HOME=str(s.data_dir / "home"))
    try:
        s.kubectl("wait", "--for=condition=Ready", "pod/reader-open", "--timeout=60s")
        for word in ("one", "two"):
            proc = subprocess.Popen([kubectl_binary(), "attach", "-i", "reader-open", "-c", "c"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            try:
                # Lines written until the container answers: the first may reach the FIFO
                # before the session is open.
                out = b""
                for _ in range(20):
                    proc.stdin.write(f"{word}\n".encode())
                    proc.stdin.flush()
                    out += read_until(proc.stdout.fileno(), f"got {word}".encode(), timeout=1)
                    if f"got {word}".encode() in out:
                        break
                assert f"got {word}".encode() in out, out
            finally:
                proc.kill()
                proc.wait()
        # Both clients left; the container still reads its open stdin.
        assert s.kubectl("get", "pod", "reader-open", "-o", "jsonpath={.status.phase}").stdout == "Running"
        assert "stdin closed" not in s.kubectl("logs", "reader-open").stdout
    finally:
        s.kubectl("delete", "pod", "reader-open", "--wait=false")


def test_errors_are_upstreams(one_node):
    s = one_node
    r = s.kubectl("exec", "nosuch", "--", "ls", check=False)
    assert r.returncode == 1 and 'pods "nosuch" not found' in r.stderr, r.stderr
    r = s.kubectl("exec", s.pod, "-c", "nosuch", "--", "ls", check=False)
    assert r.returncode == 1 and f"container nosuch is not valid for pod {s.pod}" in r.stderr, r.stderr
    r = s.kubectl("exec", s.pod, "-c", "main", "--", "no-such-command", check=False)
    assert r.returncode == 127, r.stderr
    # A completed pod.
    done = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "done"},
            "spec": {"nodeName": "node-1", "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}
    s.kubectl("apply", "-f", "-", input=json.dumps(done))
    wait_for("the pod Succeeded", lambda: s.kubectl("get", "pod", "done", "-o", "jsonpath={.status.phase}").stdout == "Succeeded")
    r = s.kubectl("exec", "done", "--", "ls", check=False)
    assert "cannot exec into a container in a completed pod; current phase is Succeeded" in r.stderr, r.stderr
    # Without the right, a viewer is refused as upstream words it.
    s.kubectl("create", "serviceaccount", "viewer")
    s.kubectl("create", "rolebinding", "viewer", "--clusterrole=view", "--serviceaccount=default:viewer")
    token = s.kubectl("create", "token", "viewer").stdout.strip()
    r = s.kubectl("exec", f"--token={token}", s.pod, "-c", "main", "--", "ls", check=False)
    assert f'pods "{s.pod}" is forbidden: User "system:serviceaccount:default:viewer" cannot create resource "pods/exec" in API group "" in the namespace "default"' in r.stderr, r.stderr


@pytest.fixture
def kubectl_120(one_node):
    s = one_node
    s.kubectl_path = kubectl_120_binary()
    try:
        yield s
    finally:
        s.kubectl_path = None


def test_kubectl_120_execs_over_spdy(kubectl_120):
    s = kubectl_120
    r = s.kubectl("exec", s.pod, "-c", "main", "--", "sh", "-c", 'echo "$GREETING"; echo to-stderr >&2')
    assert r.stdout == "hello from the container\n"
    assert "to-stderr" in r.stderr
    r = s.kubectl("exec", s.pod, "-c", "main", "--", "sh", "-c", "exit 3", check=False)
    assert r.returncode == 3, r.stderr
    r = s.kubectl("exec", "-i", s.pod, "-c", "main", "--", "sh", "-c", "wc -l", input="one\ntwo\nthree\n")
    assert r.stdout.strip() == "3", "stdin reaches the command and its end ends it"


def unused_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def web_pod(one_node, tmp_path_factory):
    """A pod serving files over HTTP on 127.0.0.1 only: reached through the pod's localhost."""
    s = one_node
    root = tmp_path_factory.mktemp("web")
    (root / "hello.txt").write_text("hello through the tunnel\n")
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    port = unused_port()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
           "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 1, "containers": [
               {"name": "http", "image": "python:3",
                "command": ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]}]}}
    s.kubectl("apply", "-f", "-", input=json.dumps(pod))
    wait_for("the web pod Running", lambda: s.kubectl("get", "pod", "web", "-o", "jsonpath={.status.phase}").stdout == "Running")
    yield port, root
    s.kubectl("delete", "pod", "web", "--wait=false")


@pytest.mark.parametrize("client", ["1.33", "1.20"])
def test_port_forward_reaches_a_server_on_the_pods_localhost(one_node, web_pod, client):
    s = one_node
    port, root = web_pod
    wait_for("the pod's server listening", lambda: subprocess.run(
        ["python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)"]).returncode == 0)
    binary = kubectl_binary() if client == "1.33" else kubectl_120_binary()
    proc, local = start_port_forward(s.kubeconfig, s.data_dir / "home", binary, "pod/web", port)
    try:
        # Several connections over one kubectl connection, each its own pair of streams.
        assert fetch_local(local, "hello.txt") == b"hello through the tunnel\n"
        assert fetch_local(local, "hello.txt") == b"hello through the tunnel\n"
        assert fetch_local(local, "big.bin") == (root / "big.bin").read_bytes()
        assert proc.poll() is None, "kubectl keeps forwarding"
    finally:
        proc.kill()
        proc.wait()


def test_port_forward_to_a_closed_port_reports_the_error(one_node, web_pod):
    s = one_node
    closed = unused_port()
    proc, local = start_port_forward(s.kubeconfig, s.data_dir / "home", kubectl_binary(), "pod/web", closed)
    try:
        with pytest.raises(Exception):
            fetch_local(local, "")
        proc.wait(timeout=30)
        err = proc.stderr.read().decode()
        assert f"error forwarding port {closed} to pod default/web" in err, err
        assert "connection refused" in err.lower(), err
    finally:
        proc.kill()
        proc.wait()
