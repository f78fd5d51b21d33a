#!/usr/bin/env python3
"""Writes an OCI image-layout archive of Debian's busybox-static, for machines that reach no
registry: `everynode image import` loads it into each node's containerd.

    busybox_image.py OUT.tar --name docker.io/local/busybox:1 [--entrypoint CMD ...] [--cmd ARG ...]

The root file system is /bin/busybox with a link per applet, /etc/passwd and /etc/group (root
and nobody), and empty /proc /sys /dev /tmp /var/www. The same script makes the sandbox
("pause") image: `--name docker.io/local/pause:1 --entrypoint /bin/sleep --cmd 2147483647`.
"""

import argparse
import hashlib
import io
import json
import subprocess
import tarfile
import time

BUSYBOX = "/bin/busybox"


def _add_file(tar, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar, name, mode=0o755):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = 0
    tar.addfile(info)


def layer_tar():
    """The root file system as an uncompressed tar."""
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        # The root's own entry (0755), as image builders write it.
        _add_dir(tar, "./")
        for d in ["bin", "etc", "proc", "sys", "dev", "root", "var", "var/www"]:
            _add_dir(tar, d)
        _add_dir(tar, "tmp", 0o1777)
        with open(BUSYBOX, "rb") as f:
            _add_file(tar, "bin/busybox", f.read(), 0o755)
        for applet in applets:
            if applet == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            info.mode = 0o777
            info.mtime = 0
            tar.addfile(info)
        _add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        _add_file(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        _add_file(tar, "var/www/index.html", b"hello from busybox httpd\n")
    return out.getvalue()


def _blob(tar, data):
    digest = hashlib.sha256(data).hexdigest()
    _add_file(tar, f"blobs/sha256/{digest}", data)
    return f"sha256:{digest}", len(data)


def write_image(path, name, entrypoint=None, cmd=None, user=None):
    layer = layer_tar()
    layer_digest, layer_size = None, None
    config = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(0)),
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": entrypoint or None,
            "Cmd": cmd or (None if entrypoint else ["/bin/sh"]),
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    if user:
        config["config"]["User"] = user
    repo, _, tag = name.rpartition(":")
    if not repo or "/" in tag:
        repo, tag = name, "latest"
    with tarfile.open(path, "w") as tar:
        layer_digest, layer_size = _blob(tar, layer)
        config_digest, config_size = _blob(tar, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
        }
        manifest_digest, manifest_size = _blob(tar, json.dumps(manifest).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {"io.containerd.image.name": f"{repo}:{tag}", "org.opencontainers.image.ref.name": tag},
            }],
        }
        _add_file(tar, "index.json", json.dumps(index).encode())
        _add_file(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--name", required=True, help="full reference, e.g. docker.io/local/busybox:1")
    parser.add_argument("--entrypoint", nargs="*")
    parser.add_argument("--cmd", nargs="*")
    parser.add_argument("--user")
    args = parser.parse_args()
    write_image(args.out, args.name, args.entrypoint, args.cmd, args.user)


if __name__ == "__main__":
    main()
