#!/usr/bin/env bash
# Install what a fresh machine lacks (Debian, as root; nothing already there is touched).
#   scripts/install-deps.sh run    what scripts/run.sh needs: the wasm32 target, rust-src, wasm-pack,
#                                   binaryen, Node.js and npm, Chromium, playwright-core
#   scripts/install-deps.sh test   also rustfmt, Mesa's lavapipe (the native GPU tests),
#                                   chromedriver and wasm-bindgen's test runner (.ci/run)
#   scripts/install-deps.sh bench  run's, and wllama for scripts/bench-peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-test}

command -v cargo >/dev/null || { echo "no Rust toolchain: install rustup (https://rustup.rs) first" >&2; exit 1; }
if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
  rustup target add wasm32-unknown-unknown
fi
# The standard library's source: the threaded wasm build rebuilds std with atomics (build-pkg.sh).
rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src

apt=()
command -v node >/dev/null || apt+=(nodejs)
command -v npm >/dev/null || apt+=(npm)
python3 -m pip --version >/dev/null 2>&1 || apt+=(python3-pip)
command -v chromium >/dev/null || apt+=(chromium)
command -v wasm-opt >/dev/null || apt+=(binaryen)
if [ "$mode" = test ]; then
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || apt+=(mesa-vulkan-drivers)
  command -v chromedriver >/dev/null || apt+=(chromium-driver)
fi
if [ ${#apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${apt[*]} (Debian: sudo apt-get install ${apt[*]})" >&2
    exit 1
  fi
  apt-get update -qq && apt-get install -y -qq "${apt[@]}"
fi

command -v wasm-pack >/dev/null || cargo install wasm-pack
if [ "$mode" = test ]; then
  # wasm-bindgen's test runner at exactly the version in Cargo.lock (the wasm32 tests under Node).
  wbg=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print }' Cargo.lock)
  if ! wasm-bindgen-test-runner --version 2>/dev/null | grep -qF "$wbg"; then
    cargo install wasm-bindgen-cli --version "$wbg"
  fi
fi

# A folder's npm packages (its package-lock.json), reinstalled when the lock file changes.
npm_deps() {
  if [ ! -f "$1/node_modules/.package-lock.json" ] || [ "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]; then
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}
npm_deps pkg-tests # playwright-core and vite
if [ "$mode" = bench ]; then npm_deps bench; fi # wllama
