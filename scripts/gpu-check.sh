#!/usr/bin/env bash
# Speed on a lent GPU machine, in one prepared run (docs/GPU.md, "On a lent GPU"). The model
# files do not travel there (a device call carries at most 64 MiB), so it runs random-weight
# models of the real models' shapes, made on the device by `edgeproof tiny --like` from the
# real files' headers; bits do not depend on the weights' values, nor does speed.
#
#   scripts/gpu-check.sh prepare   # here: a stripped release binary and the two headers
#                                  # in target/gpu-check/ (carry that path to the device)
#   scripts/gpu-check.sh run       # there: decode and prefill tok/s, dispatches per step,
#                                  # and a 128-token receipt's generation against its
#                                  # verification, both shapes; tables to $OUT/gpu-check.md
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/gpu-check
models="${EDGEPROOF_MODELS:-$HOME/.cache/edgeproof}"
names=(SmolLM2-135M-Instruct.Q4_1 gemma-3-270m-q4_k_m)

case "${1:-}" in
prepare)
  cargo build --release -p edgeproof
  mkdir -p "$dir"
  strip -o "$dir/edgeproof" target/release/edgeproof
  for n in "${names[@]}"; do
    f="$models/$n.gguf"
    [ -f "$f" ] || { echo "missing $f: run scripts/fetch-models.sh" >&2; exit 1; }
    offset=$("$dir/edgeproof" info --model "$f" | sed -n '1s/.*data at \([0-9]*\).*/\1/p')
    [ -n "$offset" ] || { echo "could not read the header size of $f" >&2; exit 1; }
    head -c "$offset" "$f" >"$dir/$n.header"
  done
  du -sh "$dir"
  ;;
run)
  bin="$dir/edgeproof"
  [ -x "$bin" ] || { echo "no $bin: run 'scripts/gpu-check.sh prepare' here and carry $dir" >&2; exit 1; }
  out="${OUT:-$dir}"
  mkdir -p "$out"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  {
    echo "## $(date -u +%F), $(git rev-parse --short HEAD 2>/dev/null || echo '?'): scripts/gpu-check.sh run"
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
    for n in "${names[@]}"; do
      "$bin" tiny --like "$dir/$n.header" --out "$tmp/$n.gguf" >/dev/null
      echo
      echo "### $n (random weights, real shapes)"
      "$bin" bench --model "$tmp/$n.gguf" --backend gpu --prefill "${PREFILL:-64}" --decode "${DECODE:-128}" \
        --profile --receipt "${RECEIPT:-128}"
    done
  } 2>&1 | grep -v XDG_RUNTIME_DIR | tee "$out/gpu-check.md"
  ;;
*)
  echo "usage: scripts/gpu-check.sh prepare|run" >&2
  exit 2
  ;;
esac
