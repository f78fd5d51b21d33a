#!/usr/bin/env bash
# Builds the console's bundled front-end code from crates/console/editor (pinned npm sources):
# the YAML editor (CodeMirror 6) into crates/console/assets/editor.js and the usage charts
# (uPlot) into crates/console/assets/charts.js, which the binary embeds: the console needs no
# network and no Node.js at run time, and building everynode needs neither. Run it after
# changing crates/console/editor; commit the bundles with the change.
#   --check   build into temporary files and fail if they differ from the committed bundles
#             (the test command runs this: the bundles are what the pinned sources make).
set -euo pipefail
cd "$(dirname "$0")/../crates/console/editor"
npm ci --silent --no-audit --no-fund

# bundle SOURCE OUT [esbuild options]
bundle() {
  local source=$1 out=$2
  shift 2
  npx --no-install esbuild "$source" --bundle --minify --format=iife --target=es2020 \
    --legal-comments=inline --log-level=warning --outfile="$out" "$@"
}

build_all() {
  local dir=$1
  bundle src/editor.js "$dir/editor.js"
  bundle src/charts.js "$dir/charts.js" --loader:.css=text
}

if [[ "${1:-}" == "--check" ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  build_all "$out"
  for name in editor.js charts.js; do
    if ! cmp -s "$out/$name" "../assets/$name"; then
      echo "crates/console/assets/$name is not what crates/console/editor builds:" >&2
      echo "run scripts/build-console-editor.sh and commit the result" >&2
      exit 1
    fi
  done
  echo "console bundles: up to date"
else
  build_all ../assets
fi
