#!/usr/bin/env bash
# Runs every test of everynode on a fresh machine: installs what the tests need, builds, checks
# formatting and lints, runs the Rust tests and the Python/kubectl tests against real servers.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

if ! command -v kubectl >/dev/null 2>&1; then
  log "installing kubectl (Debian kubernetes-client)"
  apt-get update -qq && apt-get install -y -qq kubernetes-client >/dev/null
fi

log "python test environment"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt

log "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

log "build"
cargo build --workspace

log "rust tests"
cargo test --workspace

log "python and kubectl tests against real server processes"
EVERYNODE_BIN="$PWD/target/debug/everynode" .venv/bin/python -m pytest tests/python -q -p no:cacheprovider
