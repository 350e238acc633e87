#!/usr/bin/env bash
# Issue 10 on the 4-GPU (or 8-GPU) machine, one device call per mode (carry .devdeps). Builds
# fastserve with CUDA, MPI and NCCL (scripts/device/build.sh, which also sets the environment the
# binary runs in), then:
#   checks  [scale_checks.py options]: tokens across layouts, batch-1 decode latency and throughput
#           vs TP (scripts/device/scale_checks.py);
#   serving [SHAPE TP NUM_PROMPTS FRACTIONS DEVICE_BLOCKS HOST_BLOCKS MAX_SEQS]: profiles the
#           deployment (`fastserve profile --tp`), then the ShareGPT serving benchmark on it
#           (scripts/device/gpu_serving.sh: skip-join-mlfq, fcfs, vllm at FRACTIONS of the
#           saturation rate) with the profile as the server's cost model and a device KV pool of
#           DEVICE_BLOCKS (small enough that jobs' KV goes to the host pool). The simulator runs
#           afterwards on any machine: bench/sim_vs_real_replay.py.
#   bash scripts/device/scale_gpu.sh OUTDIR checks --token-layouts llama-3-70b:tp4,tp2 ...
#   bash scripts/device/scale_gpu.sh OUTDIR serving llama-3-70b 4 160 0.6,0.9,1.2 1024 4096 32
# OUTDIR: env.txt, the mode's summary files, logs.tar.gz (every log and result JSON). NVLink
# multicast stays off (NCCL_NVLS_ENABLE=0) in every run.
set -uo pipefail
OUTDIR=${1:?usage: scale_gpu.sh OUTDIR checks|serving [args]}
MODE=${2:?usage: scale_gpu.sh OUTDIR checks|serving [args]}
shift 2
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 \
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
  OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_plm_rsh_agent=false
LOGS=/tmp/scale_gpu_logs
mkdir -p "$LOGS" /tmp/scale_checks
T0=$SECONDS
pack() { tar -C /tmp -czf "$OUTDIR/logs.tar.gz" scale_gpu_logs scale_checks 2>/dev/null || true; }
trap pack EXIT
{
  nvidia-smi -L
  nvidia-smi topo -m 2>&1 | head -6
  free -g | head -2
} >"$OUTDIR/env.txt" 2>&1
set +eu
source scripts/device/build.sh fastserve >"$LOGS/build.log" 2>&1  # a no-op when built; sets the env
rc=$?
set -uo pipefail
echo "build exit $rc after $((SECONDS - T0)) s" | tee -a "$OUTDIR/env.txt"
((rc == 0)) || { tail -40 "$LOGS/build.log"; exit 1; }
case $MODE in
  checks)
    python3 scripts/device/scale_checks.py --fastserve build-cuda/fastserve --out "$OUTDIR" "$@"
    rc=$?
    ;;
  serving)
    SHAPE=${1:-llama-3-70b} TP=${2:-4} NUM=${3:-160} FRACTIONS=${4:-0.6,0.9,1.2}
    DEVICE_BLOCKS=${5:-1024} HOST_BLOCKS=${6:-4096} MAX_SEQS=${7:-32}
    tok=tests/fixtures/tokenizer/smollm2-vocab.gguf
    t=$SECONDS
    timeout 240 build-cuda/fastserve profile --device cuda --load-format dummy --model "$SHAPE" \
      --tokenizer "$tok" --tp "$TP" --prefill-lengths 16,64,256,512,1024,2048 \
      --batch-sizes 1,2,4,8,16,32,64 --contexts 128,1024 --repeat 3 -o "$OUTDIR/profile.json" \
      >"$LOGS/profile.log" 2>&1
    echo "profile exit $? after $((SECONDS - t)) s" | tee -a "$OUTDIR/env.txt"
    tail -25 "$LOGS/profile.log"
    [[ -s $OUTDIR/profile.json ]] || exit 1
    cp "$OUTDIR/profile.json" /tmp/scale_checks/
    # Deadline: the call's 600 s less what is spent (build, profile) and a margin to pack results
    # (SCALE_DEADLINE_S: seconds from this script's start, when the call did other work first).
    bash scripts/device/gpu_serving.sh "$OUTDIR/serving" --no-build --shapes "$SHAPE" \
      --policies skip-join-mlfq,fcfs,vllm --launcher "mpirun -np $TP --bind-to none" \
      --server-args "--tp $TP --max-num-seqs $MAX_SEQS --device-kv-blocks $DEVICE_BLOCKS --host-kv-blocks $HOST_BLOCKS --cost-model $OUTDIR/profile.json" \
      --num-prompts "$NUM" --sat-prompts 96 --fractions "$FRACTIONS" --max-output-len 512 \
      --deadline-s $((${SCALE_DEADLINE_S:-560} - (SECONDS - T0)))
    rc=$?
    ;;
  *)
    echo "scale_gpu.sh: unknown mode $MODE (checks | serving)" >&2
    exit 2
    ;;
esac
echo "$MODE exit $rc after $((SECONDS - T0)) s"
exit $rc
