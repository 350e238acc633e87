#!/usr/bin/env bash
# Issue 9 on the 2xH200 machine in one device call (carry .devdeps): builds fastserve with the CUDA
# backend, MPI and NCCL (scripts/device/build.sh), runs the CUDA model unit tests and the all-reduce
# benchmark (bench/cuda/nccl_allreduce_bench.cc), then scripts/device/dist_gpu_checks.py (TP=2 /
# PP=2 greedy tokens vs one GPU; batch-1 decode latency and throughput of the Llama-3-8B shape).
#   bash scripts/device/dist_gpu.sh OUTDIR [dist_gpu_checks.py options]
# NVLink multicast stays off (NCCL_NVLS_ENABLE=0) in every run.
set -uo pipefail
OUTDIR=${1:?usage: dist_gpu.sh OUTDIR [options]}
shift
mkdir -p "$OUTDIR"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$SECONDS
{
  nvidia-smi -L
  nvidia-smi topo -m 2>&1 | head -5
  command -v mpirun && mpirun --version | head -1
  ls /usr/include/nccl.h /usr/lib/x86_64-linux-gnu/libnccl.so* 2>&1 | head -3
  ls /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h 2>&1
} >"$OUTDIR/env.txt" 2>&1
set +eu
source scripts/device/build.sh fastserve nccl_allreduce_bench unit_backend_cuda >"$OUTDIR/build.log" 2>&1
rc=$?
set -uo pipefail
cmake -LA -N build-cuda 2>/dev/null | grep -E "^(MPI_C_FOUND|NCCL_LIBRARY)" >>"$OUTDIR/env.txt"
echo "build exit $rc after $((SECONDS - T0)) s" | tee -a "$OUTDIR/env.txt"
((rc == 0)) || { tail -40 "$OUTDIR/build.log"; exit 1; }
# The GPU greedy picks and decode graphs (one GPU), then the all-reduce alone (both GPUs).
CUDA_VISIBLE_DEVICES=0 build-cuda/tests/unit_backend_cuda \
  --gtest_filter='CudaModelTest.*:CudaGraphTest.*:CudaTinyModelTest.*:CudaVocabParallelTest.*:CudaArgmaxTest.*' >"$OUTDIR/unit_cuda.log" 2>&1
echo "unit_backend_cuda exit $? ($(grep -E '^\[  (PASSED|FAILED)' "$OUTDIR/unit_cuda.log" | tr '\n' ' '))"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
  OMPI_MCA_btl_vader_single_copy_mechanism=none timeout 120 \
  mpirun -np 2 --bind-to none build-cuda/bench/nccl_allreduce_bench | tee "$OUTDIR/allreduce.md"
python3 scripts/device/dist_gpu_checks.py --fastserve build-cuda/fastserve --out "$OUTDIR" "$@"
rc=$?
echo "checks exit $rc after $((SECONDS - T0)) s"
exit $rc
