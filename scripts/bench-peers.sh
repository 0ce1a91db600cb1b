#!/usr/bin/env bash
# Speed against the peers, one command, not in CI: in headless Chromium, edgeproof's npm package
# (wasm CPU; WebGPU with --webgpu) against wllama (llama.cpp in wasm; npm @wllama/wllama) with
# 1 and 2 threads on a cross-origin-isolated page; natively, `edgeproof bench` against
# llama.cpp's llama-bench (built from PyPI's llama-cpp-python sdist) — the same files
# (SmolLM2-135M Q4_1, Gemma 3 270M Q4_K_M), a prompt of about 128 tokens then 128 greedy
# tokens, medians of 3 runs, interleaved. Prints the tables and adds them, with the machine and
# versions, as the newest section of docs/BENCHMARKS.md (and target/bench-peers/report.md).
# Extra arguments go to bench/peers.mjs (--runs N, --tokens N, --webgpu).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh bench >&2
eval "$(scripts/fetch-models.sh smollm2 gemma3 | sed 's/^/export M_/')"
scripts/build-pkg.sh >&2
cargo build --release -q -p edgeproof --bin edgeproof
llama_bench=$(bench/llama-cpp.sh)

out=target/bench-peers
mkdir -p "$out"
echo "== in Chromium (this takes a while)" >&2
node bench/peers.mjs --models "$(dirname "$M_smollm2")" --out "$out/browser.json" "$@" > "$out/browser.md"
echo "== native" >&2
node bench/native.mjs --edgeproof target/release/edgeproof --llama-bench "$llama_bench" "$M_smollm2" "$M_gemma3" > "$out/native.md"

{
  echo "## $(date -u +%F), against the peers (\`scripts/bench-peers.sh${*:+ $*}\`)"
  echo
  echo "**Machine:** $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; $(chromium --version 2>/dev/null);"
  echo "edgeproof $(git rev-parse --short HEAD); wllama $(node -p "require('./bench/node_modules/@wllama/wllama/package.json').version");"
  echo "llama.cpp from llama-cpp-python 0.3.36, built for this CPU (-march=native; AMX off)$(grep -qw avx512_vnni /proc/cpuinfo && echo ', so with AVX-512 VNNI')."
  echo "Medians; ratios measured in the same run."
  echo
  echo "In Chromium (prompt of about 128 tokens, then 128 greedy tokens; wllama ignores end-of-generation):"
  echo
  cat "$out/browser.md"
  echo
  echo "Native (llama-bench -p 128 -n 128 against edgeproof bench --prefill 128 --decode 128):"
  echo
  cat "$out/native.md"
} > "$out/report.md"
cat "$out/report.md"
# The newest section first, after the page's introduction.
python3 - "$out/report.md" docs/BENCHMARKS.md <<'PY'
import sys
report, path = open(sys.argv[1]).read(), sys.argv[2]
doc = open(path).read()
at = doc.index("\n## ") + 1
open(path, "w").write(doc[:at] + report + "\n" + doc[at:])
PY
