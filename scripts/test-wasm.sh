#!/usr/bin/env bash
# Exact-mode parity in wasm32: runs crate/tests/exact_golden.rs compiled to
# wasm32-unknown-unknown under Node (wasm-bindgen-test-runner), against the same
# golden tokens the native run checks, and the pinned MiniLM vectors (crate/tests/embed_golden.rs). Extra arguments go to the test runner
# (e.g. --include-ignored for the Gemma 3 run past 600 positions). First the
# library's wasm_bindgen_test unit tests (the simd128 matmul kernels against the
# portable loops, crate/src/backend/exact/batched.rs and rowdot.rs; the receipt test vectors, hashes and signatures,
# crate/src/receipt/mod.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/fetch-models.sh smollm2 gemma3 minilm | sed 's/^/export EDGEPROOF_PATH_/')"
export EDGEPROOF_SMOLLM2="$EDGEPROOF_PATH_smollm2" EDGEPROOF_GEMMA3="$EDGEPROOF_PATH_gemma3" EDGEPROOF_MINILM="$EDGEPROOF_PATH_minilm"
command -v wasm-bindgen-test-runner >/dev/null || {
  echo "wasm-bindgen-test-runner is missing: .ci/run installs it (cargo install wasm-bindgen-cli --version <Cargo.lock's wasm-bindgen>)" >&2
  exit 1
}
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-3600}
cargo test --release -p edgeproof --no-default-features --target wasm32-unknown-unknown --lib
cargo test --release -p edgeproof --no-default-features --target wasm32-unknown-unknown --test exact_golden -- "$@"
cargo test --release -p edgeproof --no-default-features --target wasm32-unknown-unknown --test embed_golden
