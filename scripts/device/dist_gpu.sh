#!/usr/bin/env bash
# Issue 9 on the 2xH200 machine in one device call (carry .devdeps): builds fastserve with the CUDA
# backend, MPI and NCCL (scripts/device/build.sh), then runs scripts/device/dist_gpu_checks.py
# (TP=2 / PP=2 greedy tokens vs one GPU; batch-1 decode latency of the Llama-3-8B shape).
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
source scripts/device/build.sh fastserve >"$OUTDIR/build.log" 2>&1
rc=$?
set -uo pipefail
cmake -LA -N build-cuda 2>/dev/null | grep -E "^(MPI_C_FOUND|NCCL_LIBRARY)" >>"$OUTDIR/env.txt"
echo "build exit $rc after $((SECONDS - T0)) s" | tee -a "$OUTDIR/env.txt"
((rc == 0)) || { tail -40 "$OUTDIR/build.log"; exit 1; }
python3 scripts/device/dist_gpu_checks.py --fastserve build-cuda/fastserve --out "$OUTDIR" "$@"
rc=$?
echo "checks exit $rc after $((SECONDS - T0)) s"
exit $rc
