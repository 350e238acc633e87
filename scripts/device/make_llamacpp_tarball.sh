#!/usr/bin/env bash
# Run HERE (the dev machine): trims the llama.cpp vendored in the llama-cpp-python sdist into
# .devdeps/peers/llama.cpp.tar.xz (~4 MB: no models, docs, tests, examples, server/UI or non-CUDA
# GPU backends), which scripts/device/peers.sh builds on the GPU machine.
# Usage: bash scripts/device/make_llamacpp_tarball.sh [SDIST.tar.gz]
#        (default /tmp/lcp/llama_cpp_python-0.3.36.tar.gz)
set -euo pipefail
cd "$(dirname "$0")/../.."
SDIST=${1:-/tmp/lcp/llama_cpp_python-0.3.36.tar.gz}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
tar xzf "$SDIST" -C "$TMP" --wildcards '*/vendor/llama.cpp/*' --exclude='*/vendor/llama.cpp/models/*' \
  --exclude='*/.git/*'
cd "$TMP"/*/vendor
mkdir -p "$OLDPWD/.devdeps/peers"
ex=()
for d in docs tests examples media benches conversion tools/ui tools/server .github \
  ggml/src/ggml-{opencl,sycl,vulkan,hexagon,metal,et,webgpu,openvino,cann}; do
  ex+=(--exclude="llama.cpp/$d")
done
tar cJf "$OLDPWD/.devdeps/peers/llama.cpp.tar.xz" "${ex[@]}" llama.cpp
ls -la "$OLDPWD/.devdeps/peers/llama.cpp.tar.xz"
