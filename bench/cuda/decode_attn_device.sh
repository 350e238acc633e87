#!/usr/bin/env bash
# Issue 8, decode attention: checks and A/B benchmarks ON THE GPU MACHINE in one call (device tool,
# carry .devdeps). Logs under OUT (few files: the device tool returns at most 8).
#   bash bench/cuda/decode_attn_device.sh OUT [steps: build,unit,memcheck,hf,kernel,model,swap]
# build:    scripts/device/build.sh unit_backend_cuda model_bench cuda_logits decode_attn_bench
# unit:     every CUDA unit test (kernels incl. CudaDecodeAttentionTest, models, executor)
# memcheck: compute-sanitizer over the attention tests
# hf:       logits vs transformers on the same GPU (scripts/device/cuda_vs_transformers.py)
# kernel:   decode_attn_bench (tensor-core vs register kernel per batch and split length)
# model:    model_bench for each of KERNELS (default "tensor-core register"), in that order
# swap:     model_bench --swap-mib 128 (default kernel)
# Env: BATCHES (1,16,64,256), SPLITS (0,64,128,256,512), KERNELS, PREFILL (2048).
OUT=${1:-${OUT:-/tmp/decode_attn}}
STEPS=${2:-build,unit,memcheck,hf,kernel,model}
BATCHES=${BATCHES:-1,16,64,256}
mkdir -p "$OUT"
has() { [[ ",$STEPS," == *",$1,"* ]]; }
rc=0
if has build; then
  source scripts/device/build.sh unit_backend_cuda model_bench cuda_logits decode_attn_bench \
    >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  grep -E "warning|error" "$OUT/build.log" | head -20
  echo "built at $SECONDS s"
fi
T=build-cuda/tests/unit_backend_cuda
if has unit; then
  timeout 300 $T --gtest_filter='*Cuda*' >"$OUT/unit.log" 2>&1 || rc=1
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|Expected|Which is|actual|worst|kernel [0-9]" \
    "$OUT/unit.log" | head -40
  echo "unit done at $SECONDS s"
fi
if has memcheck; then
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 $T \
    --gtest_filter='*CudaDecodeAttention*:*CudaAttention*' >"$OUT/memcheck.log" 2>&1
  echo "memcheck exit $?"; tail -3 "$OUT/memcheck.log"
fi
if has hf; then
  PYTHONUNBUFFERED=1 timeout 240 python3 scripts/device/cuda_vs_transformers.py "$OUT" 2>&1 |
    grep -v Warning | tail -8 | tee "$OUT/hf.log" || rc=1
  echo "hf done at $SECONDS s"
fi
if has kernel; then
  timeout 200 build-cuda/bench/decode_attn_bench --batches "$BATCHES" \
    --split-lens "${SPLITS:-0,64,128,256,512}" 2>&1 | tee "$OUT/kernel.log" || rc=1
  echo "kernel bench done at $SECONDS s"
fi
if has model; then
  for k in ${KERNELS:-tensor-core register}; do
    timeout 200 build-cuda/bench/model_bench --decode-kernel "$k" --batches "$BATCHES" \
      --context 512 --steps 32 --prefill "${PREFILL:-2048}" 2>&1 | tee -a "$OUT/model.log" |
      grep -E "^device|^\| [0-9]+ \| 512 \||^measured" || rc=1
  done
  grep -E "attention" "$OUT/model.log"
  echo "model bench done at $SECONDS s"
fi
if has swap; then
  timeout 200 build-cuda/bench/model_bench --batches "$BATCHES" --swap-mib 128 --prefill 512 \
    2>&1 | tee "$OUT/swap.log" | grep -A8 "swap engine" || rc=1
  echo "swap bench done at $SECONDS s"
fi
exit $rc
