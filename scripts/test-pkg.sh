#!/usr/bin/env bash
# The npm package's tests: builds pkg/ (scripts/build-pkg.sh), installs the test tools
# (pkg-tests/package-lock.json), makes the fixture models with the native CLI, and runs
# pkg-tests/web/ with Node's test runner: headless Chromium (WebGPU on SwiftShader) through
# playwright-core, Node, the CLI, and a Vite app built against the packed package.
# Needs target/release/edgeproof (cargo build --release -p edgeproof --bin edgeproof),
# Debian's chromium, Node.js >= 20.19 (Vite 7) and npm. Screenshots and receipts: target/pkg-tests/.
# Extra arguments go to node --test (e.g. --test-name-pattern=cache); a first argument --full
# runs pkg-tests/web/full/ (check-full: the demo page with the real models) instead.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x target/release/edgeproof ] || {
  echo "target/release/edgeproof is missing: cargo build --release -p edgeproof --bin edgeproof" >&2
  exit 1
}
# Chromium, wasm-pack, npm and the test tools (pkg-tests/package-lock.json), where missing.
scripts/install-deps.sh run
scripts/build-pkg.sh

fixtures=$(mktemp -d)
trap 'rm -rf "$fixtures"' EXIT
node pkg-tests/web/fixtures.mjs "$fixtures" >/dev/null
export EDGEPROOF_PKG_FIXTURES="$fixtures"

mkdir -p target/pkg-tests
start=$SECONDS
# --full: the check-full tier (the demo with SmolLM2 and Gemma 3) instead of the fast one.
files=(pkg-tests/web/*.test.mjs)
if [ "${1:-}" = "--full" ]; then
  shift
  files=(pkg-tests/web/full/*.test.mjs)
fi
node --test --test-reporter=spec "$@" "${files[@]}"
echo "package tests: $((SECONDS - start)) s"
