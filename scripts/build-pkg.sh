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

# build DIR CARGO_ARGS...: the wasm module and its glue into DIR, unless DIR's .wasm is newer
# than every input.
build() {
  local dir=$1 wasm=$1/edgeproof_wasm_bg.wasm
  shift
  if [ -f "$wasm" ] && [ -f "$dir/edgeproof_wasm.js" ] \
    && [ -z "$(find crate/src crate/Cargo.toml Cargo.lock Cargo.toml .cargo shaders scripts/build-pkg.sh -newer "$wasm" -print -quit)" ]; then
    return
  fi
  command -v wasm-pack >/dev/null || { echo "wasm-pack is missing: cargo install wasm-pack (.ci/run does)" >&2; exit 1; }
  # --no-opt: wasm-pack would use an old wasm-opt as it is, or try to download one.
  wasm-pack build crate --release --target web --no-opt --out-dir "$PWD/$dir" --out-name edgeproof_wasm -- "$@"
  rm -f "$dir/.gitignore" "$dir/package.json" "$dir/README.md"
  opt=${WASM_OPT:-$(command -v wasm-opt || true)}
  if [ -n "$opt" ]; then
    tmp=$(mktemp --suffix .wasm)
    "$opt" -O --enable-reference-types --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-multivalue --enable-mutable-globals --enable-threads --enable-simd "$wasm" -o "$tmp"
    # The glue must still instantiate the optimized module (Node, no browser needed).
    if node --input-type=module -e '
        import { readFileSync } from "node:fs";
        const { initSync } = await import(process.argv[1]);
        initSync({ module: readFileSync(process.argv[2]) });' "$PWD/$dir/edgeproof_wasm.js" "$tmp" 2>/dev/null; then
      mv "$tmp" "$wasm"
    else
      rm -f "$tmp"
      echo "build-pkg: $("$opt" --version) breaks $wasm (it no longer instantiates): kept unoptimized" >&2
    fi
  else
    echo "build-pkg: no wasm-opt (WASM_OPT or the PATH): kept unoptimized" >&2
  fi
  touch "$wasm" # the stamp the staleness check reads
}

# One thread: every browser, Node, and pages that are not cross-origin isolated.
build pkg --no-default-features

# Threads (pkg/mt/, loaded by the worker where the page is cross-origin isolated): shared memory
# needs std built with atomics, i.e. -Z build-std, which the stable toolchain allows with
# RUSTC_BOOTSTRAP=1 (rust-src: scripts/install-deps.sh). Its own target folder: other flags.
RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$PWD/target/wasm-threads" \
  RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+simd128 -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296 -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base" \
  build pkg/mt --no-default-features --features threads -Z build-std=std,panic_abort
# Our JavaScript API over each module; package.json and the README are ours.
cp js/*.js js/*.d.ts pkg/
cp js/*.js js/*.d.ts pkg/mt/
cp js/package.json pkg/package.json
cp docs/API.md pkg/README.md

for wasm in pkg/edgeproof_wasm_bg.wasm pkg/mt/edgeproof_wasm_bg.wasm; do
  raw=$(stat -c %s "$wasm")
  gz=$(gzip -9 -c "$wasm" | wc -c)
  echo "$wasm: $raw bytes ($((raw / 1024)) KiB), gzipped $gz bytes ($((gz / 1024)) KiB)"
done
