#!/usr/bin/env bash
# The heavy tier: everything in scripts/test.sh, then the tests marked
# #[ignore = "check-full ..."] natively and in wasm32 (Gemma past 600 positions, ...),
# then perplexity of both models, exact against f32, on two texts, and the speed
# benchmarks (the language models, MiniLM's embeddings). Run before resolving an issue; record the results in docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test.sh

eval "$(scripts/fetch-models.sh smollm2 gemma3 gpl3 | sed 's/^/export EDGEPROOF_PATH_/')"
export EDGEPROOF_SMOLLM2="$EDGEPROOF_PATH_smollm2" EDGEPROOF_GEMMA3="$EDGEPROOF_PATH_gemma3" EDGEPROOF_GPL3="$EDGEPROOF_PATH_gpl3"

echo "== check-full tests"
cargo test --release --workspace -- --ignored
scripts/test-wasm.sh --include-ignored

echo "== perplexity at ctx 256, exact and f32 (llama.cpp on GPL v3: SmolLM2 20.86, Gemma 3 16.42)"
cargo build --release -p edgeproof --bin edgeproof
for m in "$EDGEPROOF_SMOLLM2" "$EDGEPROOF_GEMMA3"; do
  for text in "$EDGEPROOF_GPL3" /usr/share/common-licenses/GFDL-1.3; do
    echo "-- $m on $text"
    target/release/edgeproof ppl --model "$m" --text "$text" --ctx 256 --numerics exact
  done
done

echo "== speed (CPU, both numerics; then a 128-token receipt and its verification)"
for m in "$EDGEPROOF_SMOLLM2" "$EDGEPROOF_GEMMA3"; do
  target/release/edgeproof bench --model "$m" --receipt 128
done
echo "== receipt sizes (SmolLM2, 8 and 512 tokens; 128 above): docs/RECEIPT.md, Sizes"
for n in 8 512; do
  target/release/edgeproof bench --model "$EDGEPROOF_SMOLLM2" --prefill 1 --decode 1 --receipt "$n"
done
echo "== embeddings (MiniLM, 64 sentences at batch 1 and 32: CPU, then the first GPU adapter)"
minilm=$(scripts/fetch-models.sh minilm | cut -d= -f2)
target/release/edgeproof bench --model "$minilm" --texts crate/tests/data/minilm/sentences.txt
target/release/edgeproof bench --model "$minilm" --texts crate/tests/data/minilm/sentences.txt --backend gpu
echo "== speed (WebGPU: the first adapter wgpu finds; lavapipe on a machine without a GPU)"
for m in "$EDGEPROOF_SMOLLM2" "$EDGEPROOF_GEMMA3"; do
  target/release/edgeproof bench --model "$m" --backend gpu --prefill 16 --decode 4 --profile
done
echo "== the demo page with SmolLM2 (two-turn chat) and Gemma 3 (completion), receipts verified"
scripts/test-pkg.sh --full
echo "== speed (WebGPU in headless Chromium: SmolLM2, both matmul layouts, and the CPU path in the page)"
scripts/test-browser.sh --include-ignored bench --nocapture
