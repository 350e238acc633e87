#!/usr/bin/env bash
# PP=2 on the CPU with and without several batches in flight, under a saturating load
# (docs/DISTRIBUTED.md "Throughput"): rounds of, alternately for each configuration,
#   mpirun -np 2 fastserve serve --pp 2 --threads 1 --pp-micro-batches M --max-num-seqs S
#   fastserve bench --dataset sharegpt --num-prompts N --request-rate inf --max-output-len T
# Prints one line per run (output tokens/s, duration, load average before and after).
# usage: bench/pp_pipeline.sh [BUILD_DIR=build] [ROUNDS=3] [OUT_DIR=/tmp/pp_pipeline] [N=32] [T=32]
# CONFIGS (environment): the M:S[:SPLIT] triples, default "2:16 1:16" (16 = serve's default
# --max-num-seqs; SPLIT = --pp-layer-split balanced|even, default balanced), e.g.
# CONFIGS="2:16:balanced 2:16:even" compares the stage splits.
set -euo pipefail
BIN=${1:-build}/fastserve
ROUNDS=${2:-3}
OUT=${3:-/tmp/pp_pipeline}
N=${4:-32}
T=${5:-32}
CONFIGS=${CONFIGS:-2:16 1:16}
mkdir -p "$OUT"
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none \
  OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  OMPI_MCA_plm_rsh_agent=false
PORT=$((20000 + RANDOM % 20000))
for r in $(seq "$ROUNDS"); do
  for config in $CONFIGS; do
    IFS=: read -r mb seqs split <<<"$config"
    split=${split:-balanced}
    name="mb$mb-s$seqs-$split-r$r"
    mpirun -np 2 --oversubscribe "$BIN" serve --pp 2 --threads 1 --pp-micro-batches "$mb" \
      --max-num-seqs "$seqs" --pp-layer-split "$split" --port "$PORT" >"$OUT/serve-$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 240); do
      curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
      sleep 0.5
    done
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    "$BIN" bench --base-url "http://127.0.0.1:$PORT" --dataset sharegpt --num-prompts "$N" \
      --request-rate inf --max-output-len "$T" --ignore-eos --seed 0 --quiet \
      --result-json "$OUT/$name.json" >"$OUT/bench-$name.txt" 2>&1
    in_flight=$(curl -s "http://127.0.0.1:$PORT/metrics" | grep '^fastserve:batches_in_flight_max' |
      awk '{print $2}')
    load_after=$(cut -d' ' -f1-3 /proc/loadavg)
    kill -TERM "$pid"
    wait "$pid" || true
    python3 - "$OUT/$name.json" "$mb" "$seqs" "$r" "$load_before" "$load_after" "$in_flight" \
      "$split" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"round {sys.argv[4]} micro-batches {sys.argv[2]} max-num-seqs {sys.argv[3]} "
      f"{sys.argv[8]} split: "
      f"{d['output_throughput']:.1f} output tok/s, {d['total_token_throughput']:.1f} total tok/s, "
      f"{d['duration']:.1f} s, {d['completed']}/{d['num_prompts']} done, mean TTFT "
      f"{d['mean_ttft_ms'] / 1000:.1f} s, mean TPOT {d['mean_tpot_ms']:.0f} ms, batches in flight "
      f"max {sys.argv[7]}, load {sys.argv[5]} -> {sys.argv[6]}")
PY
    PORT=$((PORT + 1))
  done
done
