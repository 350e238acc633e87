#!/usr/bin/env bash
# Does the dashboard cost the engine anything? Runs `fastserve bench` against one `fastserve serve`
# alternately without and with a client polling GET /v1/scheduler/state at 10 Hz (5x the page's
# rate), ROUNDS times each after one warm-up run, and prints output tokens/s per run
# (docs/BENCHMARKS.md, "Dashboard cost").
# Usage: bench/dashboard_cost.sh FASTSERVE_BIN MODEL [ROUNDS] [THREADS] [OUT_DIR]
set -euo pipefail
BIN=$1 MODEL=$2 ROUNDS=${3:-3} THREADS=${4:-8} OUT=${5:-/tmp/dashboard_cost}
PORT=${PORT:-8731} NUM_PROMPTS=${NUM_PROMPTS:-64}
mkdir -p "$OUT"
"$BIN" serve --model "$MODEL" --port "$PORT" --threads "$THREADS" >"$OUT/server.log" 2>&1 &
SERVER=$!
POLLER=""
trap 'kill $SERVER ${POLLER} 2>/dev/null || true' EXIT
python3 - "$PORT" "$SERVER" <<'PY'
import os, sys, time, urllib.request
for _ in range(600):
    os.kill(int(sys.argv[2]), 0)  # the server died: stop waiting
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1); sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit("server did not come up")
PY

bench() {  # label seed
  "$BIN" bench --port "$PORT" --dataset random --random-input-len 128 --random-output-len 128 \
    --ignore-eos --num-prompts "$NUM_PROMPTS" --max-concurrency 16 --tokenizer none --seed "$2" --quiet \
    --result-json "$OUT/$1.json" >/dev/null
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]:<14} output tok/s {r['output_throughput']:8.1f}  mean TPOT ms {r['mean_tpot_ms']:7.2f}\")" "$OUT/$1.json" "$1"
}

bench warmup 0 >/dev/null
for r in $(seq 1 "$ROUNDS"); do
  bench "off_$r" "$r"
  python3 - "$PORT" "$OUT/polls_$r.txt" <<'PY' &
import sys, time, urllib.request
url, n, bad = f"http://127.0.0.1:{sys.argv[1]}/v1/scheduler/state", 0, 0
try:
    while True:
        t = time.time()
        try:
            urllib.request.urlopen(url, timeout=2).read(); n += 1
        except OSError:
            bad += 1
        open(sys.argv[2], "w").write(f"{n} {bad}\n")
        time.sleep(max(0.0, 0.1 - (time.time() - t)))
except KeyboardInterrupt:
    pass
PY
  POLLER=$!
  bench "polled_$r" "$r"
  kill "$POLLER"; wait "$POLLER" 2>/dev/null || true
  POLLER=""
  echo "               polls: $(cat "$OUT/polls_$r.txt")"
done
