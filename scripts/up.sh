#!/usr/bin/env bash
# Builds everynode and runs everything on this machine with the embedded store.
# Data, credentials and the kubeconfig go to ./everynode-data (override with EVERYNODE_DATA).
# The build needs protoc (the CRI client is generated from upstream's proto); `--runtime cri`
# needs containerd, runc and the CNI plugins, `--ha` etcd. They come from Debian's packages,
# installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: $* not installed; run: sudo apt-get install -y $*" >&2
    exit 1
  fi
  apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$@"; }
}

command -v protoc >/dev/null 2>&1 || install protobuf-compiler
case " $* " in
  *" --runtime cri "*|*" --runtime=cri "*)
    if ! command -v containerd >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 \
       || [ ! -x /usr/lib/cni/bridge ] || ! command -v nft >/dev/null 2>&1; then
      install containerd runc containernetworking-plugins iptables nftables
    fi
    ;;
esac
case " $* " in
  *" --ha "*)
    command -v etcd >/dev/null 2>&1 || install etcd-server
    ;;
esac
# The data directory: --data-dir if given, else EVERYNODE_DATA, else ./everynode-data.
data_dir=()
case " $* " in
  *" --data-dir "*|*" --data-dir="*) ;;
  *) data_dir=(--data-dir "${EVERYNODE_DATA:-everynode-data}") ;;
esac
# EVERYNODE_BIN: a binary already built (the README tour's test uses the debug build).
if [ -n "${EVERYNODE_BIN:-}" ]; then
  exec "$EVERYNODE_BIN" up "${data_dir[@]}" "$@"
fi
cargo build --release -p everynode
exec ./target/release/everynode up "${data_dir[@]}" "$@"
