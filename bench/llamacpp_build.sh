#!/usr/bin/env bash
# Builds llama.cpp's CPU benchmarks (llama-bench, llama-batched-bench) for bench/cpu_vs_llamacpp.sh.
# llama.cpp is not part of this repo: we take the copy vendored in the llama-cpp-python 0.3.36 sdist
# (the same llama.cpp the reference scripts use), build it outside the tree, and point the
# comparison script at it with LLAMA_BIN.
#
#   bash bench/llamacpp_build.sh            # -> /tmp/llama-build/bin/llama-bench, llama-batched-bench
#   SRC_DIR=/tmp/lcp2 BUILD_DIR=/tmp/llama-build JOBS=2 bash bench/llamacpp_build.sh
#
# ~20-30 min on the 2-core dev machine (ggml-cpu and the common library dominate).
set -euo pipefail
VERSION=${VERSION:-0.3.36}
SRC_DIR=${SRC_DIR:-/tmp/lcp2}
BUILD_DIR=${BUILD_DIR:-/tmp/llama-build}
JOBS=${JOBS:-2}
PY=${PY:-python3}

mkdir -p "$SRC_DIR"
SDIST="$SRC_DIR/llama_cpp_python-$VERSION.tar.gz"
if [[ ! -f "$SDIST" ]]; then
  "$PY" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$SRC_DIR"
fi
LLAMA_SRC="$SRC_DIR/llama_cpp_python-$VERSION/vendor/llama.cpp"
if [[ ! -f "$LLAMA_SRC/CMakeLists.txt" ]]; then
  # The vocab test models are not needed; skipping them saves ~250 MB.
  tar xzf "$SDIST" -C "$SRC_DIR" --exclude='*/vendor/llama.cpp/models/*' \
    "llama_cpp_python-$VERSION/vendor/llama.cpp"
fi
cmake -S "$LLAMA_SRC" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
  -DGGML_OPENMP=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF
nice cmake --build "$BUILD_DIR" -j"$JOBS" --target llama-bench llama-batched-bench
ls -la "$BUILD_DIR/bin/llama-bench" "$BUILD_DIR/bin/llama-batched-bench"
