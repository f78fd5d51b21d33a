#!/usr/bin/env bash
# Builds the console's YAML editor (CodeMirror 6, crates/console/editor) into
# crates/console/assets/editor.js, which the binary embeds: the console needs no network and no
# Node.js at run time, and building everynode needs neither. Run it after changing
# crates/console/editor; commit the bundle with the change.
#   --check   build into a temporary file and fail if it differs from the committed bundle
#             (the test command runs this: the bundle is what the pinned sources make).
set -euo pipefail
cd "$(dirname "$0")/../crates/console/editor"
npm ci --silent --no-audit --no-fund
if [[ "${1:-}" == "--check" ]]; then
  out=$(mktemp --suffix=.js)
  trap 'rm -f "$out"' EXIT
  npx --no-install esbuild src/editor.js --bundle --minify --format=iife --target=es2020 \
    --legal-comments=inline --log-level=warning --outfile="$out"
  if ! cmp -s "$out" ../assets/editor.js; then
    echo "crates/console/assets/editor.js is not what crates/console/editor builds:" >&2
    echo "run scripts/build-console-editor.sh and commit the result" >&2
    exit 1
  fi
  echo "console editor bundle: up to date"
else
  npm run --silent build
fi
