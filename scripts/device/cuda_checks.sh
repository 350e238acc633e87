#!/usr/bin/env bash
# The CUDA model runtime's checks, run ON THE GPU MACHINE in one call (device tool, carry .devdeps):
# build, unit tests (kernels vs CPU references, models vs transformers fixtures, executor swaps,
# default model vs CPU when models/ has it), compute-sanitizer memcheck of the test run, the
# comparison against transformers on the same GPU, and the Llama-3-8B-shape benchmark.
#   bash scripts/device/cuda_checks.sh [OUT_DIR] [steps: build,unit,memcheck,hf,bench]
OUT=${1:-${OUT:-/tmp/cuda_checks}}
STEPS=${2:-build,unit,memcheck,hf,bench}
mkdir -p "$OUT"
has() { [[ ",$STEPS," == *",$1,"* ]]; }
rc=0
if has build; then
  source scripts/device/build.sh unit_backend_cuda model_bench cuda_logits >"$OUT/build.log" 2>&1 ||
    { tail -40 "$OUT/build.log"; exit 1; }
  grep -E "warning|error" "$OUT/build.log" | head -20
fi
T=build-cuda/tests/unit_backend_cuda
if has unit; then
  timeout 240 $T --gtest_filter='*Cuda*' >"$OUT/unit.log" 2>&1 || rc=1
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |\] (max|smollm)|Failure|error|Expected|Which is|actual|got" "$OUT/unit.log" | head -60
  grep -E "chunk .* max|smollm2 cuda" "$OUT/unit.log" | head -40
fi
if has memcheck; then
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 $T \
    --gtest_filter='CudaNorm*:*CudaRope*:*CudaAttention*:CudaArgmax*:*CudaTinyModelTest*/0:*CudaTinyModelTest*/3:*CudaTinyModelTest*/4:CudaRagged*:CudaModelTest*:CudaExecutor*' \
    >"$OUT/memcheck.log" 2>&1
  echo "memcheck exit $?"; tail -4 "$OUT/memcheck.log"
fi
if has hf; then
  PYTHONUNBUFFERED=1 timeout 240 python3 scripts/device/cuda_vs_transformers.py "$OUT" 2>&1 |
    grep -v Warning | tail -8 | tee "$OUT/hf.log" || rc=1
fi
if has bench; then
  timeout 240 build-cuda/bench/model_bench 2>&1 | tee "$OUT/bench.log" || rc=1
fi
exit $rc
