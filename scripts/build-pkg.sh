#!/usr/bin/env bash
# Build the npm package into pkg/ (js/WASM_CONTRACT.md): the wasm module and its glue from
# wasm-pack, the JavaScript API and types from js/, package.json from js/package.json,
# docs/API.md as its README. Skips the wasm build when pkg/'s .wasm is newer than every
# input. Prints the .wasm size, raw and gzipped.
#
# wasm-opt (WASM_OPT, else the PATH) shrinks the module when it produces one that still
# instantiates: Debian 12's binaryen 108 does not (it turns wasm-bindgen's externref table
# into a funcref one), and then the unoptimized module is kept. npm's `binaryen` package
# has a recent one: WASM_OPT=node_modules/.bin/wasm-opt.
set -euo pipefail
cd "$(dirname "$0")/.."

wasm=pkg/edgeproof_wasm_bg.wasm
stale=yes
if [ -f "$wasm" ] && [ -f pkg/edgeproof_wasm.js ] \
  && [ -z "$(find crate/src crate/Cargo.toml Cargo.lock Cargo.toml .cargo shaders -newer "$wasm" -print -quit)" ]; then
  stale=
fi
if [ -n "$stale" ]; then
  command -v wasm-pack >/dev/null || { echo "wasm-pack is missing: cargo install wasm-pack (.ci/run does)" >&2; exit 1; }
  # --no-opt: wasm-pack would use an old wasm-opt as it is, or try to download one.
  wasm-pack build crate --release --target web --no-opt --out-dir ../pkg --out-name edgeproof_wasm -- --no-default-features
  opt=${WASM_OPT:-$(command -v wasm-opt || true)}
  if [ -n "$opt" ]; then
    tmp=$(mktemp --suffix .wasm)
    trap 'rm -f "$tmp"' EXIT
    "$opt" -O --enable-reference-types --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-multivalue --enable-mutable-globals "$wasm" -o "$tmp"
    # The glue must still instantiate the optimized module (Node, no browser needed).
    if node --input-type=module -e '
        import { readFileSync } from "node:fs";
        const { initSync } = await import(process.argv[1]);
        initSync({ module: readFileSync(process.argv[2]) });' "$PWD/pkg/edgeproof_wasm.js" "$tmp" 2>/dev/null; then
      mv "$tmp" "$wasm"
    else
      echo "build-pkg: $("$opt" --version) breaks the module (it no longer instantiates): kept unoptimized" >&2
    fi
  else
    echo "build-pkg: no wasm-opt (WASM_OPT or the PATH): kept unoptimized" >&2
  fi
  touch "$wasm" # the stamp the staleness check reads
fi

# wasm-pack's own package.json, .gitignore ('*') and README give way to ours.
rm -f pkg/.gitignore
cp js/*.js js/*.d.ts pkg/
cp js/package.json pkg/package.json
cp docs/API.md pkg/README.md

raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "pkg/: edgeproof_wasm_bg.wasm $raw bytes ($((raw / 1024)) KiB), gzipped $gz bytes ($((gz / 1024)) KiB)"
