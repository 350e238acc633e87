#!/usr/bin/env bash
# Side-by-side serving benchmark: FastServe (per policy), vLLM CPU and llama.cpp's server on the same
# weights, the same thread count and the same requests, one system at a time. For each system: start
# the server, wait for /health, warm it up, run `fastserve bench` (an idle run at concurrency 1, then
# the rate sweep) per dataset, stop the server. Peers come from bench/setup_peers.sh.
#
#   bash bench/compare.sh                                 # defaults below
#   SYSTEMS="fs-sjmlfq fs-fcfs" DATASETS=sharegpt RATES_sharegpt=0.5,1,inf bash bench/compare.sh
#   bash bench/plot.py bench/results/<date>/<tag>         # plots and the summary table
#
# Systems: fs-sjmlfq, fs-fcfs, fs-vllm (fastserve serve --policy skip-join-mlfq|fcfs|vllm), vllm-cpu
# (python -m vllm.entrypoints.openai.api_server), llamacpp (llama-server).
# WEIGHTS=f32: FastServe and llama.cpp load models/SmolLM2-135M-Instruct.F32.gguf, vLLM the HF folder
#   models/SmolLM2-135M-Instruct-hf-f32 (scripts/gguf_to_hf.py: the same numbers, HF layout), dtype float32.
# WEIGHTS=q4_1: the released Q4_1 GGUF for FastServe and llama.cpp (vLLM: GGUF loading, if it works).
#
# Same for every system: THREADS kernel threads (FastServe --threads, llama.cpp -t/-tb, vLLM
# VLLM_CPU_OMP_THREADS_BIND=0-(THREADS-1)), MAX_SEQS sequences in a batch (FastServe --max-num-seqs,
# vLLM --max-num-seqs, llama.cpp -np slots), MAX_LEN tokens of context per sequence, temperature 0,
# streaming, ignore_eos, max_tokens = the trace's output length capped at MAX_OUTPUT_LEN.
# Priority: on the shared dev machine other users' builds keep the load at 10-17, and a 2-thread server
# that gets a fraction of two cores loses 10-100x to its fork-join barriers. The kernel groups tasks
# by session (sched_autogroup), so `nice` alone does not lift a process above another session's; as
# root the script re-runs itself in its own session and sets that session's autogroup nice to PRIO
# (default -20), so servers and client get the cores while they run. Same for every system.
set -uo pipefail
PRIO=${PRIO:--20}
if [[ -z ${COMPARE_SESSION:-} && $(id -u) == 0 && -w /proc/self/autogroup && $PRIO != off ]]; then
  export COMPARE_SESSION=1
  exec setsid --wait bash "$0" "$@"
fi
[[ -n ${COMPARE_SESSION:-} ]] && echo "$PRIO" > /proc/self/autogroup
cd "$(dirname "$0")/.."
ROOT=$PWD
FASTSERVE=${FASTSERVE:-$ROOT/build-peers/fastserve}
VENV=${VENV:-$ROOT/.venv-bench}
LLAMA_SERVER=${LLAMA_SERVER:-/tmp/llama-build/bin/llama-server}
WEIGHTS=${WEIGHTS:-f32}
SYSTEMS=${SYSTEMS:-"fs-sjmlfq fs-fcfs fs-vllm vllm-cpu llamacpp"}
DATASETS=${DATASETS:-"sharegpt alpaca"}
THREADS=${THREADS:-2}
MAX_SEQS=${MAX_SEQS:-16}
MAX_LEN=${MAX_LEN:-2048}
NUM_PROMPTS=${NUM_PROMPTS:-60}
IDLE_PROMPTS=${IDLE_PROMPTS:-6}
MAX_OUTPUT_LEN=${MAX_OUTPUT_LEN:-256}
RATES_sharegpt=${RATES_sharegpt:-0.25,0.5,1,inf}
RATES_alpaca=${RATES_alpaca:-1,2,4,inf}
SEED=${SEED:-0}
PORT=${PORT:-8600}
NICE=${NICE:-0}
TAG=${TAG:-$WEIGHTS-t$THREADS}
OUT=${OUT:-$ROOT/bench/results/$(date -u +%F)/$TAG}
mkdir -p "$OUT/raw" "$OUT/logs"

case "$WEIGHTS" in
  f32) GGUF=$ROOT/models/SmolLM2-135M-Instruct.F32.gguf; HF=$ROOT/models/SmolLM2-135M-Instruct-hf-f32
       VLLM_MODEL=$HF; VLLM_DTYPE=float32 ;;
  q4_1) GGUF=$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf; VLLM_MODEL=$GGUF; VLLM_DTYPE=float32
        HF=$ROOT/models/SmolLM2-135M-Instruct-hf-f32 ;;  # vLLM reads the GGUF; tokenizer from the folder
  *) echo "WEIGHTS must be f32 or q4_1" >&2; exit 2 ;;
esac
NAME=smollm2
N=nice
[[ $(id -u) == 0 ]] || NICE=0

log() { echo "[compare $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/compare.log"; }

SERVER_PID=
start_server() {  # $1 = system
  local sys=$1 logf=$OUT/logs/$1.log
  case "$sys" in
    fs-sjmlfq|fs-fcfs|fs-vllm)
      local policy=${sys#fs-}; [[ $policy == sjmlfq ]] && policy=skip-join-mlfq
      nice -n "$NICE" "$FASTSERVE" serve --model "$GGUF" --port "$PORT" --threads "$THREADS" \
        --policy "$policy" --max-num-seqs "$MAX_SEQS" --served-model-name "$NAME" >"$logf" 2>&1 &
      ;;
    vllm-cpu)
      local preload="" iomp
      iomp=$(ls "$VENV"/lib/libiomp5.so 2>/dev/null | head -1)
      [[ -f /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 ]] && preload=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
      [[ -n $iomp ]] && preload="$preload${preload:+:}$iomp"
      local extra=()
      [[ $WEIGHTS == q4_1 ]] && extra=(--tokenizer "$HF")
      LD_PRELOAD=$preload VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2} \
        VLLM_CPU_OMP_THREADS_BIND=0-$((THREADS - 1)) OMP_NUM_THREADS=$THREADS HF_HUB_OFFLINE=1 \
        VLLM_NO_USAGE_STATS=1 TRANSFORMERS_OFFLINE=1 \
        nice -n "$NICE" "$VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$VLLM_MODEL" \
        "${extra[@]}" --dtype "$VLLM_DTYPE" --port "$PORT" --served-model-name "$NAME" \
        --max-model-len "$MAX_LEN" --max-num-seqs "$MAX_SEQS" \
        ${VLLM_EXTRA_ARGS:-} >"$logf" 2>&1 &
      ;;
    llamacpp)
      # -c is the total context split over the -np slots: MAX_LEN per slot.
      nice -n "$NICE" "$LLAMA_SERVER" -m "$GGUF" --port "$PORT" -t "$THREADS" -tb "$THREADS" \
        -np "$MAX_SEQS" -c $((MAX_LEN * MAX_SEQS)) -cb --alias "$NAME" --no-webui \
        ${LLAMA_EXTRA_ARGS:-} >"$logf" 2>&1 &
      ;;
    *) echo "unknown system $sys" >&2; return 2 ;;
  esac
  SERVER_PID=$!
  local deadline=$((SECONDS + ${STARTUP_TIMEOUT_S:-900}))
  until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 &&
        curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then log "$sys exited during startup (see $logf)"; return 1; fi
    if ((SECONDS > deadline)); then log "$sys not healthy in time"; stop_server; return 1; fi
    sleep 2
  done
}

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -INT "$SERVER_PID" 2>/dev/null
  for _ in $(seq 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 1; done
  kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
  # vLLM's engine core and worker are children of the API server: wait for the port to close.
  for _ in $(seq 30); do curl -s "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 || break; sleep 1; done
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=
}
trap stop_server EXIT

bench() {  # bench LABEL DATASET extra args...
  local label=$1 ds=$2; shift 2
  nice -n "$NICE" "$FASTSERVE" bench --base-url "http://127.0.0.1:$PORT" --model "$NAME" \
    --tokenizer "$GGUF" --dataset "$ds" --ignore-eos --max-output-len "$MAX_OUTPUT_LEN" --seed "$SEED" \
    --label "$label" --quiet "$@"
}

log "autogroup: $(cat /proc/self/autogroup 2>/dev/null)"
log "weights=$WEIGHTS threads=$THREADS max_seqs=$MAX_SEQS prompts=$NUM_PROMPTS max_output=$MAX_OUTPUT_LEN systems=[$SYSTEMS] datasets=[$DATASETS] fastserve=$(cat /tmp/fs-head/.commit 2>/dev/null || echo ?)"
for sys in $SYSTEMS; do
  log "$sys: starting"
  t0=$SECONDS
  if ! start_server "$sys"; then continue; fi
  log "$sys: healthy after $((SECONDS - t0)) s; load $(cut -d' ' -f1-3 /proc/loadavg)"
  # Warm-up (compilation caches, first-touch of weights and KV): 4 short requests, not recorded.
  bench warmup sharegpt --num-prompts 4 --request-rate inf --max-output-len 16 \
    --result-json "$OUT/raw/warmup-$sys.json" >/dev/null 2>&1
  for ds in $DATASETS; do
    rates_var=RATES_$ds
    # Idle reference: one request at a time (the SLO's "request on an idle server").
    bench "$sys" "$ds" --num-prompts "$IDLE_PROMPTS" --request-rate inf --max-concurrency 1 \
      --result-json "$OUT/raw/$ds-$sys-idle.json" >>"$OUT/logs/bench-$sys.log" 2>&1
    log "$sys $ds idle done; load $(cut -d' ' -f1-3 /proc/loadavg)"
    bench "$sys" "$ds" --num-prompts "$NUM_PROMPTS" --request-rates "${!rates_var}" \
      --result-dir "$OUT/raw/$ds" --result-json "$OUT/raw/$ds-$sys-sweep.json" \
      >>"$OUT/logs/bench-$sys.log" 2>&1 || log "$sys $ds sweep failed (see logs/bench-$sys.log)"
    log "$sys $ds sweep done; load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
  stop_server
done
log "done: $OUT"
