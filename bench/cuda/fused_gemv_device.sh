#!/usr/bin/env bash
# Issue 8, decode at batch 1: the fused decode GEMVs (RMSNorm / SwiGLU in the GEMV prologue,
# kernels.h launch_gemv_rmsnorm / launch_gemv_silu_mul) checked and A/B-timed ON THE GPU MACHINE in
# one call (device tool, carry .devdeps). Logs under OUT (the device tool returns at most 8 files).
#   bash bench/cuda/fused_gemv_device.sh OUT [steps: build,unit,model,hf,memcheck]
# unit:     every CUDA unit test (CudaGemvTest.FusedNormAndActivationMatchTheSeparateKernels too)
# model:    model_bench for each of CONFIGS (--fused-gemv masks, default "0 5"; 0 = before),
#           ROUNDS times alternated (same machine: the spread between machines is 3-5%, so
#           before/after are compared within one call)
# hf:       logits vs transformers on the same GPU (scripts/device/cuda_vs_transformers.py)
# memcheck: compute-sanitizer over the GEMV tests
# Env: BATCHES (1,16,64,256), ROUNDS (3), PREFILL (0: no prefill benchmark).
OUT=${1:-${OUT:-/tmp/fused_gemv}}
STEPS=${2:-build,unit,model,hf,memcheck}
BATCHES=${BATCHES:-1,16,64,256}
mkdir -p "$OUT"
has() { [[ ",$STEPS," == *",$1,"* ]]; }
rc=0
if has build; then
  source scripts/device/build.sh unit_backend_cuda model_bench cuda_logits \
    >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  grep -E "warning|error" "$OUT/build.log" | head -20
  echo "built at $SECONDS s"
fi
T=build-cuda/tests/unit_backend_cuda
if has unit; then
  timeout 200 $T --gtest_filter='*Cuda*' >"$OUT/unit.log" 2>&1 || rc=1
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|Expected|Which is|worst" "$OUT/unit.log" | head -30
  echo "unit done at $SECONDS s"
fi
if has model; then
  for r in $(seq "${ROUNDS:-3}"); do
    for f in ${CONFIGS:-0 5}; do  # --fused-gemv masks; 0 = before
      echo "round $r fused-gemv $f" >>"$OUT/model.log"
      timeout 90 build-cuda/bench/model_bench --fused-gemv $f --batches "$BATCHES" --context 512 \
        --steps 32 --prefill "${PREFILL:-0}" 2>&1 | tee -a "$OUT/model.log" |
        grep -E "^\| [0-9]+ \| 512 \|" | sed "s/^/r$r f$f /" || rc=1
    done
  done
  echo "model bench done at $SECONDS s"
fi
if has hf; then
  PYTHONUNBUFFERED=1 timeout 200 python3 scripts/device/cuda_vs_transformers.py "$OUT" 2>&1 |
    grep -v Warning | tail -8 | tee "$OUT/hf.log" || rc=1
  echo "hf done at $SECONDS s"
fi
if has memcheck; then
  timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 $T \
    --gtest_filter='CudaGemvTest*' >"$OUT/memcheck.log" 2>&1
  echo "memcheck exit $?"; tail -3 "$OUT/memcheck.log"
fi
exit $rc
