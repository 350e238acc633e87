#!/usr/bin/env bash
# Chunked prefill on vs off (issue 6): the same workload of long prompts (1-1.8k tokens) arriving
# among decoding streams, served with --max-num-batched-tokens at each of BUDGETS (a budget >= the
# longest prompt means no chunking), REPEATS times, the configurations interleaved so machine noise
# hits each alike. One server per run: start, wait for /health, warm up, `fastserve bench`, stop.
# Results: $OUT/budget-<B>-rep-<R>.json (vLLM keys) and the table of bench/chunked_prefill_table.py.
#
#   bash bench/chunked_prefill.sh                   # BUDGETS="256 512 2048" REPEATS=2 RATE=0.5
#   .venv/bin/python bench/chunked_prefill_table.py bench/results/<date>/chunked-prefill
#
# As root the script runs in its own session with autogroup nice PRIO (default -20), like
# bench/compare.sh: on the shared 2-core machine other sessions' builds would otherwise take most of
# the cores from the server.
set -uo pipefail
PRIO=${PRIO:--20}
if [[ -z ${CHUNK_SESSION:-} && $(id -u) == 0 && -w /proc/self/autogroup && $PRIO != off ]]; then
  export CHUNK_SESSION=1
  exec setsid --wait bash "$0" "$@"
fi
[[ -n ${CHUNK_SESSION:-} ]] && echo "$PRIO" > /proc/self/autogroup
cd "$(dirname "$0")/.."
ROOT=$PWD
FASTSERVE=${FASTSERVE:-$ROOT/build/fastserve}
MODEL=${MODEL:-default}
BUDGETS=${BUDGETS:-"256 512 2048"}
REPEATS=${REPEATS:-2}
REP_OFFSET=${REP_OFFSET:-0}  # first repeat is numbered REP_OFFSET + 1 (adding runs to a folder)
RATE=${RATE:-0.5}
NUM_PROMPTS=${NUM_PROMPTS:-30}
DATASET=${DATASET:-$ROOT/bench/data/chunked_prefill_mix.csv}
THREADS=${THREADS:-2}
MAX_SEQS=${MAX_SEQS:-16}
POLICY=${POLICY:-skip-join-mlfq}
SEED=${SEED:-0}
PORT=${PORT:-8491}
OUT=${OUT:-$ROOT/bench/results/$(date -u +%F)/chunked-prefill}
mkdir -p "$OUT/logs"

log() { echo "[chunked $(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log"; }

SERVER_PID=
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=
}
trap stop_server EXIT

log "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); autogroup: $(cat /proc/self/autogroup 2>/dev/null)"
log "fastserve $(git -C "$ROOT" rev-parse --short HEAD); budgets $BUDGETS; repeats $REPEATS; rate $RATE; $NUM_PROMPTS prompts of $DATASET"
for rep in $(seq $((REP_OFFSET + 1)) $((REP_OFFSET + REPEATS))); do
  for budget in $BUDGETS; do
    name=budget-$budget-rep-$rep
    "$FASTSERVE" serve --model "$MODEL" --port "$PORT" --threads "$THREADS" --policy "$POLICY" \
      --max-num-seqs "$MAX_SEQS" --max-num-batched-tokens "$budget" >"$OUT/logs/$name.log" 2>&1 &
    SERVER_PID=$!
    deadline=$((SECONDS + 120))
    until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; do
      if ((SECONDS > deadline)) || ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "$name: server not healthy"; stop_server; exit 1
      fi
      sleep 0.5
    done
    "$FASTSERVE" bench --base-url "http://127.0.0.1:$PORT" --dataset "$DATASET" --num-prompts 4 \
      --request-rate inf --max-output-len 8 --ignore-eos --seed 99 --quiet >/dev/null 2>&1
    log "$name: load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$FASTSERVE" bench --base-url "http://127.0.0.1:$PORT" --dataset "$DATASET" \
      --num-prompts "$NUM_PROMPTS" --request-rate "$RATE" --seed "$SEED" --ignore-eos --quiet \
      --label "$name" --result-json "$OUT/$name.json" >>"$OUT/logs/$name.bench.log" 2>&1 ||
      log "$name: bench failed"
    log "$name: done; load $(cut -d' ' -f1-3 /proc/loadavg)"
    stop_server
  done
done
