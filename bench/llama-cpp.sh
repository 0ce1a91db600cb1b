#!/usr/bin/env bash
# Build llama.cpp's llama-bench from a registry package: the llama-cpp-python 0.3.36 sdist
# from PyPI carries llama.cpp's tree in vendor/llama.cpp; cmake comes as a PyPI wheel.
# Built for this CPU (GGML_NATIVE: -march=native, so AVX-512 and VNNI where the CPU has them;
# GGML_AVX512=OFF only matters without GGML_NATIVE), less AMX: on a CPU with AMX,
# -march=native compiles ggml's AMX kernels into its plain matmul path, where they run
# without the tile configuration (and, unasked, without Linux's grant of the tile state) and
# fault (SIGILL); the -U flags compile them out. Cached in $EDGEPROOF_CACHE/llama-cpp; prints
# the path of llama-bench.
set -euo pipefail
cache="${EDGEPROOF_CACHE:-$HOME/.cache/edgeproof}/llama-cpp"
bin="$cache/build/bin/llama-bench"
mkdir -p "$cache"
noamx="-U__AMX_TILE__ -U__AMX_INT8__ -U__AMX_BF16__ -U__AMX_FP16__"
# A build made with other flags (an older script's, with the AMX kernels) is built again.
stamp="$cache/build/edgeproof-flags"
if [ ! -x "$bin" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$noamx" ]; then
  PY="${PYTHON:-python3}"
  "$PY" -m pip download --quiet --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$cache" >&2
  src="$cache/llama_cpp_python-0.3.36"
  [ -d "$src" ] || tar xzf "$cache"/llama_cpp_python-0.3.36.tar.gz -C "$cache"
  command -v cmake >/dev/null || "$PY" -m pip install --quiet cmake >&2
  cmake -S "$src/vendor/llama.cpp" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DGGML_NATIVE=ON -DGGML_AVX512=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DCMAKE_C_FLAGS="$noamx" -DCMAKE_CXX_FLAGS="$noamx" >&2
  cmake --build "$cache/build" --target llama-bench -j "$(nproc)" >&2
  echo "$noamx" > "$stamp"
fi
echo "$bin"
