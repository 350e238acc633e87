#!/usr/bin/env bash
# Peers on the same GPU, run ON THE GPU MACHINE (device tool, carry .devdeps): decode tokens/s at
# several batch sizes after a prompt of CONTEXT tokens, for
#   - FastServe (build-cuda/bench/model_bench --model GGUF: eager and CUDA-graph steps),
#   - llama.cpp's CUDA build (llama-batched-bench; the llama.cpp vendored in the
#     llama-cpp-python 0.3.36 sdist, trimmed into .devdeps/peers/llama.cpp.tar.xz by
#     make_llamacpp_tarball.sh on the dev machine, built here for
#     sm_90 with flash attention and its CUDA graphs on by default),
#     both on the SAME random bf16 Llama-3-8B GGUF written by make_random_gguf.py (gguf-py of that
#     llama.cpp),
#   - transformers on random weights of the same shape (hf_decode_bench.py: plain batched generate
#     and continuous batching, generate_batch).
# Steps run in order; `build` and `gguf` start the llama.cpp build and the GGUF writer in the
# background (they finish into $W/*.done, which later steps wait for), so several calls can share
# them while the machine stays warm.
#   bash scripts/device/peers.sh OUT_DIR [steps: build,gguf,fastserve,llamacpp,hf]
# Env: BATCHES (1,16,64,256), CONTEXT (512), NEW (32 decode steps), W (/tmp/peers).
OUT=${1:-${OUT:-/tmp/peers_out}}
STEPS=${2:-build,gguf,fastserve,llamacpp,hf}
BATCHES=${BATCHES:-1,16,64,256}
CONTEXT=${CONTEXT:-512}
NEW=${NEW:-32}
W=${W:-/tmp/peers}
GGUF=$W/llama3-8b-bf16.gguf
LCPP=$W/llama.cpp
mkdir -p "$OUT" "$W"
has() { [[ ",$STEPS," == *",$1,"* ]]; }
wait_for() {  # wait_for NAME SECONDS: until $W/NAME.done exists (or NAME.failed / timeout)
  for ((i = 0; i < $2; ++i)); do
    [[ -e $W/$1.done ]] && return 0
    [[ -e $W/$1.failed ]] && { echo "$1 failed"; return 1; }
    sleep 1
  done
  echo "$1 not done after $2 s"
  return 1
}
rc=0
[[ -d $LCPP ]] || tar xJf .devdeps/peers/llama.cpp.tar.xz -C "$W"
if has build; then
  if [[ ! -e $W/llamacpp.done ]]; then
    (cmake -S "$LCPP" -B "$LCPP/build" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF &&
      cmake --build "$LCPP/build" -j16 --target llama-batched-bench &&
      touch "$W/llamacpp.done" || touch "$W/llamacpp.failed") >"$OUT/llamacpp_build.log" 2>&1 &
  fi
fi
if has gguf && [[ ! -e $W/gguf.done ]]; then
  (PYTHONPATH=$LCPP/gguf-py python3 scripts/device/make_random_gguf.py "$GGUF" &&
    touch "$W/gguf.done" || touch "$W/gguf.failed") >"$OUT/gguf.log" 2>&1 &
fi
if has build; then
  source scripts/device/build.sh model_bench ${EXTRA_TARGETS:-} >"$OUT/build.log" 2>&1 ||
    { tail -30 "$OUT/build.log"; exit 1; }
  grep -E "warning|error" "$OUT/build.log" | head -20
  echo "fastserve built at $SECONDS s"
fi
if has fastserve; then
  wait_for gguf 300 || { cat "$OUT/gguf.log"; exit 1; }
  cat "$OUT/gguf.log"
  timeout 300 build-cuda/bench/model_bench --model "$GGUF" --batches "$BATCHES" \
    --context "$CONTEXT" --steps "$NEW" --prefill 2048 2>&1 | tee "$OUT/fastserve.log" || rc=1
  echo "fastserve done at $SECONDS s"
fi
if has llamacpp; then
  wait_for llamacpp 480 || { tail -20 "$OUT/llamacpp_build.log"; exit 1; }
  wait_for gguf 300 || exit 1
  max_b=$(tr , '\n' <<<"$BATCHES" | sort -n | tail -1)
  timeout 300 "$LCPP/build/bin/llama-batched-bench" -m "$GGUF" -ngl 99 -fa on \
    -c $((max_b * (CONTEXT + NEW))) -b 2048 -ub 512 -npp "$CONTEXT" -ntg "$NEW" -npl "$BATCHES" \
    2>&1 | tee "$OUT/llamacpp.log" | grep -E "^\||error|failed|CUDA" || rc=1
  echo "llama.cpp done at $SECONDS s"
fi
if has hf; then
  PYTHONUNBUFFERED=1 timeout 420 python3 scripts/device/hf_decode_bench.py --batches "$BATCHES" \
    --context "$CONTEXT" --new $((NEW + 1)) --json "$OUT/hf.json" 2>&1 | grep -v Warning |
    tee "$OUT/hf.log" || rc=1
  echo "transformers done at $SECONDS s"
fi
exit $rc
