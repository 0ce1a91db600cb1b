#!/usr/bin/env bash
# The main job: fetch the default model (SmolLM2-135M-Instruct), build the CLI,
# and generate with a receipt, then verify the receipt by re-execution.
# `--once` runs one fixed prompt and exits (headless; non-zero if the receipt
# does not verify); otherwise each line typed on stdin is a chat prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$(scripts/fetch-models.sh smollm2 | cut -d= -f2)"
cargo build --release -q -p edgeproof --bin edgeproof
bin=target/release/edgeproof
receipt="${TMPDIR:-/tmp}/edgeproof-receipt.json"
ask() {
  "$bin" generate --model "$model" --chat --prompt "$1" --max-tokens "$2" --receipt "$receipt"
  "$bin" verify "$receipt" --model "$model"
}
if [ "${1:-}" = "--once" ]; then
  ask "What is the capital of France? Answer in one sentence." 48
  exit
fi
echo "Type a prompt (Ctrl-D to quit)." >&2
while IFS= read -r line; do
  ask "$line" 128
done
