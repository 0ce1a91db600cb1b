#!/usr/bin/env bash
# The WebGPU backend in headless Chromium (Dawn and Tint on SwiftShader) against the CPU
# reference, bit for bit: pkg-tests/browser through `wasm-pack test --headless --chrome`.
# Starts a CORS file server for the model files, runs the tests, stops the server.
# Extra arguments go to the test runner (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in chromium chromedriver; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install chromium chromium-driver" >&2; exit 1; }
done
models=$(dirname "$(scripts/fetch-models.sh smollm2 | sed -n 's/^smollm2=//p')")
# MiniLM's directory lands beside it (all-MiniLM-L6-v2/).
scripts/fetch-models.sh minilm >/dev/null

# The URL is compiled into the tests, so a fixed port keeps the build cached between runs.
port=${EDGEPROOF_MODELS_PORT:-8719}
url_file=$(mktemp)
python3 scripts/serve-models.py "$models" "$port" >"$url_file" &
server=$!
trap 'kill "$server" 2>/dev/null; rm -f "$url_file"' EXIT
for _ in $(seq 50); do
  [ -s "$url_file" ] && break
  kill -0 "$server" 2>/dev/null || { echo "the model server did not start (port $port in use? set EDGEPROOF_MODELS_PORT)" >&2; exit 1; }
  sleep 0.1
done
[ -s "$url_file" ] || { echo "the model server did not start on port $port" >&2; exit 1; }
export EDGEPROOF_MODELS_URL
EDGEPROOF_MODELS_URL=$(head -n1 "$url_file")

# SwiftShader runs the kernels on the CPU: minutes, not the runner's default 20 s.
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-1800}
start=$SECONDS
if command -v wasm-pack >/dev/null; then
  wasm-pack test --headless --chrome --chromedriver "$(command -v chromedriver)" --release pkg-tests/browser -- "$@"
else
  # What wasm-pack runs, without its 10-minute install: wasm-bindgen's runner (which
  # .ci/run installs at Cargo.lock's version) drives Chromium when CHROMEDRIVER is set.
  command -v wasm-bindgen-test-runner >/dev/null || {
    echo "neither wasm-pack nor wasm-bindgen-test-runner: cargo install wasm-pack (or wasm-bindgen-cli)" >&2
    exit 1
  }
  CHROMEDRIVER=$(command -v chromedriver) CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    cargo test --release -p edgeproof-browser-tests --target wasm32-unknown-unknown -- "$@"
fi
echo "browser tests: $((SECONDS - start)) s"
