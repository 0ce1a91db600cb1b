#!/usr/bin/env bash
# The test command (what CI runs): fetch what the tests need, check the wasm32
# build, run every test of the fast tier. See README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test

eval "$(scripts/fetch-models.sh smollm2 gemma3 minilm gpl3 | sed 's/^/export EDGEPROOF_PATH_/')"
export EDGEPROOF_SMOLLM2="$EDGEPROOF_PATH_smollm2" EDGEPROOF_GEMMA3="$EDGEPROOF_PATH_gemma3" EDGEPROOF_GPL3="$EDGEPROOF_PATH_gpl3"
export EDGEPROOF_MINILM="$EDGEPROOF_PATH_minilm"

echo "== formatting"
cargo fmt --all --check

echo "== wasm32 build of the library"
cargo build --release -p edgeproof --lib --no-default-features --target wasm32-unknown-unknown

echo "== native tests"
cargo test --release --workspace

echo "== wasm32 tests under Node (exact-mode golden tokens)"
scripts/test-wasm.sh

echo "== WebGPU in headless Chromium (SwiftShader) against the CPU reference"
scripts/test-browser.sh

echo "== the npm package and the demo page in headless Chromium, under Node, against the CLI"
cargo build --release -p edgeproof --bin edgeproof
scripts/test-pkg.sh
