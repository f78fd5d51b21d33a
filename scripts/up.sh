#!/usr/bin/env bash
# Builds everynode and runs everything on this machine with the embedded store.
# Data, credentials and the kubeconfig go to ./everynode-data (override with EVERYNODE_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p everynode
exec ./target/release/everynode up --data-dir "${EVERYNODE_DATA:-everynode-data}" "$@"
