#!/usr/bin/env bash
# Runs one libFuzzer target (or `all`) for SECONDS each, from a seed corpus made of the
# repository's own test manifests. A crash fails the run and leaves its input in
# fuzz/artifacts/TARGET/; `cargo fuzz run -s none TARGET FILE` replays it. Found crashes become
# regression tests next to the code they broke.
#
#   scripts/fuzz.sh TARGET SECONDS
#   FUZZ_BUILD=--dev scripts/fuzz.sh all 30    # what CI runs: an unoptimised build, built faster
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ne 2 ]; then
  echo "usage: scripts/fuzz.sh TARGET|all SECONDS" >&2
  exit 2
fi
target=$1 seconds=$2

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install --locked cargo-fuzz --version 0.13.2
fi

# No sanitizer (`-s none`): AddressSanitizer needs a nightly compiler, and this toolchain is
# stable. Rust without `unsafe` (forbidden in the workspace) has no memory errors for it to find;
# what is looked for is panics, aborts, timeouts and memory blow-ups, which need no sanitizer.
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
"$PY" fuzz/seeds.py

if [ "$target" = all ]; then
  targets=$(cargo fuzz list --fuzz-dir fuzz)
else
  targets=$target
fi
cargo fuzz build -s none ${FUZZ_BUILD:-} --fuzz-dir fuzz
status=0
for t in $targets; do
  echo "== fuzz $t for ${seconds}s"
  # -rss_limit_mb: an input that makes the code take 2 GiB is a finding, as the 2 KB patch that
  # took the server to 3 GB was. -timeout: one input taking 10 s is a finding too.
  if ! cargo fuzz run -s none ${FUZZ_BUILD:-} --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      2> >(tee "fuzz/last-$t.log" | grep -E "^(stat::number_of_executed_units|==|INFO: Done|SUMMARY|.*panicked|thread)" >&2); then
    echo "fuzz target $t failed; its input is in fuzz/artifacts/$t/ and the log in fuzz/last-$t.log" >&2
    status=1
  fi
done
exit $status
