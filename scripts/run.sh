#!/usr/bin/env bash
# The main job: fetch the default model (SmolLM2-135M-Instruct), build the CLI,
# and generate. `--once` runs one fixed prompt and exits (headless); otherwise
# each line typed on stdin is a chat prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
model="$(scripts/fetch-models.sh smollm2 | cut -d= -f2)"
cargo build --release -q -p edgeproof --bin edgeproof
bin=target/release/edgeproof
if [ "${1:-}" = "--once" ]; then
  exec "$bin" generate --model "$model" --chat --prompt "What is the capital of France?" --max-tokens 48
fi
echo "Type a prompt (Ctrl-D to quit)." >&2
while IFS= read -r line; do
  "$bin" generate --model "$model" --chat --prompt "$line" --max-tokens 128
done
