#!/usr/bin/env bash
# Runs every test of everynode on a fresh machine: installs what the tests need, builds, checks
# formatting and lints, runs the Rust tests and the Python/kubectl tests against real servers.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# The kubectl tests need the machine's kubectl (the gcloud dispatcher, which runs 1.33 against a
# server reporting 1.33). Debian's package is 1.20 and would fail them for the wrong reason.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "error: kubectl not found; the tests need the base image's /usr/bin/kubectl (kubectl 1.33 via google-cloud-sdk)" >&2
  exit 1
fi

# kubectl 1.20 as an outside client too: Debian's package, extracted beside the repository and
# never installed over the system kubectl.
KUBECTL_120="$PWD/.cache/kubectl-1.20/usr/bin/kubectl"
if [ ! -x "$KUBECTL_120" ]; then
  log "kubectl 1.20 (Debian's kubernetes-client, extracted with dpkg -x)"
  mkdir -p .cache/kubectl-1.20
  (cd .cache && apt-get download kubernetes-client >/dev/null 2>&1 || { apt-get update -qq && apt-get download kubernetes-client; })
  dpkg -x .cache/kubernetes-client_*.deb .cache/kubectl-1.20
fi
export KUBECTL_120

# The console's browser tests drive Debian's Chromium (through Playwright, which then needs no
# browser download of its own).
if ! command -v chromium >/dev/null 2>&1; then
  log "chromium (Debian's, for the console's browser tests)"
  apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }
fi

# The clock-step fault test runs the server on a stepped wall clock through Debian's libfaketime.
if [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
  log "faketime (Debian's, for the clock-step fault test)"
  apt-get install -y -qq faketime >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq faketime; }
fi

# The CRI runtime's tests run real containerd nodes (Debian's containerd, runc and CNI plugins),
# with images built from busybox-static; the CRI client's build needs protoc; the Service
# proxy steers pods' cluster-IP traffic with nft.
cri_packages="containerd runc containernetworking-plugins busybox-static protobuf-compiler iptables nftables"
if ! command -v containerd >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 \
   || [ ! -x /usr/lib/cni/bridge ] || ! command -v busybox >/dev/null 2>&1 \
   || ! command -v protoc >/dev/null 2>&1 || ! command -v iptables >/dev/null 2>&1 \
   || ! command -v nft >/dev/null 2>&1; then
  log "containerd, runc, CNI plugins, busybox-static, protoc, nft (Debian's, for the CRI runtime)"
  # shellcheck disable=SC2086
  apt-get install -y -qq $cri_packages >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq $cri_packages; }
fi

# The metrics tests scrape the server with a real Prometheus (Debian's).
if ! command -v prometheus >/dev/null 2>&1; then
  log "prometheus (Debian's, for the metrics tests)"
  apt-get install -y -qq prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq prometheus; }
fi

# The etcd store backend is tested against a real etcd (Debian's etcd-server and etcdctl).
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  log "etcd (Debian's, for the etcd store backend)"
  apt-get install -y -qq etcd-server etcd-client >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq etcd-server etcd-client; }
fi

log "python test environment"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt

# The Node.js client of the client matrix (@kubernetes/client-node, from the npm registry).
log "node test environment"
(cd tests/node && npm ci --silent --no-audit --no-fund)
# The console's YAML editor bundle is what its pinned npm sources build.
./scripts/build-console-editor.sh --check

log "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

log "build"
cargo build --workspace

log "rust tests"
cargo test --workspace

# Every fuzz target for 30 s from the seed corpus, built unoptimised (half the build time of the
# optimised build, which scripts/fuzz.sh uses by default for longer runs).
log "fuzz targets, 30 s each"
FUZZ_BUILD=--dev scripts/fuzz.sh all 30

log "python and kubectl tests against real server processes"
EVERYNODE_BIN="$PWD/target/debug/everynode" .venv/bin/python -m pytest tests/python -q -p no:cacheprovider
