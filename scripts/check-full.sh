#!/usr/bin/env bash
# The heavy tier: everything in scripts/test.sh, then the tests marked
# #[ignore = "check-full ..."] (Gemma past 600 positions, ...), then perplexity of
# both models on the GPL v3 text. Run before resolving an issue; record results in docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test.sh

eval "$(scripts/fetch-models.sh smollm2 gemma3 gpl3 | sed 's/^/export EDGEPROOF_PATH_/')"
export EDGEPROOF_SMOLLM2="$EDGEPROOF_PATH_smollm2" EDGEPROOF_GEMMA3="$EDGEPROOF_PATH_gemma3" EDGEPROOF_GPL3="$EDGEPROOF_PATH_gpl3"

echo "== check-full tests"
cargo test --release --workspace -- --ignored

echo "== perplexity, ctx 256, GPL v3 (llama.cpp: SmolLM2 20.86, Gemma 3 16.42)"
cargo build --release -p edgeproof --bin edgeproof
for m in "$EDGEPROOF_SMOLLM2" "$EDGEPROOF_GEMMA3"; do
  target/release/edgeproof ppl --model "$m" --text "$EDGEPROOF_GPL3" --ctx 256
done
