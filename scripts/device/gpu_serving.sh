#!/usr/bin/env bash
# The GPU serving benchmark of issue 8 in one device call (carry .devdeps): for each shape (opt-13b,
# then llama-3-8b while the time budget allows) and each policy (fcfs, skip-join-mlfq, vllm) it starts
# `fastserve serve --device cuda --load-format dummy`, runs `fastserve bench` on a ShareGPT sample
# (bench/data/sharegpt_200.jsonl) at a few Poisson rates, and stops the server. Rates: a rate=inf run
# of --sat-prompts prompts on the first policy's server measures the saturation throughput S (req/s,
# while the batch is full); the sweep is --fractions of S, the same rates and prompts for every
# policy, with the prompt count per run cut from --num-prompts so that every policy's sweep ends
# before --deadline-s. Requests as the paper sends them: max_tokens = the trace's output length
# (capped at --max-output-len), ignore_eos, streaming, temperature 0.
#
#   bash scripts/device/gpu_serving.sh OUTDIR [options]          # on the GPU machine
#   bash scripts/device/gpu_serving.sh OUTDIR --device cpu --shapes smollm2-135m --no-build \
#     --fastserve build-gpubench/fastserve --num-prompts 6 --sat-prompts 4 --max-output-len 8 \
#     --fractions 0.5,1.1 --server-args "--threads 1"                                    # CPU smoke
#
# Options (defaults): --device cuda | --shapes opt-13b,llama-3-8b | --policies fcfs,skip-join-mlfq,vllm
#   --num-prompts 120 (at most) | --sat-prompts 48 | --max-output-len 512 | --fractions 0.5,0.9,1.1
#   --deadline-s 450 (wall seconds from the start, build included: no bench run starts that would
#   end past it, and a shape starts only if the last one's time still fits) | --no-build | --fastserve BIN | --tokenizer PATH | --dataset FILE | --seed 0
#   --server-args "..." (extra `serve` flags, e.g. "--max-num-seqs 32") | --port 8310
#   --launcher "..." (a command the server runs under, e.g. "mpirun -np 2 --bind-to none" with
#   --server-args "--tp 2": issue 9's serving run at TP=2; NCCL_NVLS_ENABLE=0 stays set)
#
# OUTDIR gets at most 6 files (the device tool returns 8): summary.md, summary.json, one PNG per
# shape, results.tar.gz (every per-run result JSON, saturation runs, server and build logs) and
# run.log (this script's output). A failed step still leaves what was measured before it.
set -euo pipefail

OUTDIR=${1:?usage: gpu_serving.sh OUTDIR [options]}
shift
DEVICE=cuda
SHAPES=opt-13b,llama-3-8b
POLICIES=fcfs,skip-join-mlfq,vllm
NUM_PROMPTS=120
SAT_PROMPTS=48
MAX_OUTPUT_LEN=512
FRACTIONS=0.5,0.9,1.1
DEADLINE_S=450
BUILD=1
FASTSERVE=build-cuda/fastserve
TOKENIZER=tests/fixtures/tokenizer/smollm2-vocab.gguf
DATASET=bench/data/sharegpt_200.jsonl
SEED=0
SERVER_ARGS=""
LAUNCHER=""
PORT=8310
while (($#)); do
  case $1 in
    --device) DEVICE=$2; shift ;;
    --shapes) SHAPES=$2; shift ;;
    --policies) POLICIES=$2; shift ;;
    --num-prompts) NUM_PROMPTS=$2; shift ;;
    --sat-prompts) SAT_PROMPTS=$2; shift ;;
    --max-output-len) MAX_OUTPUT_LEN=$2; shift ;;
    --fractions) FRACTIONS=$2; shift ;;
    --deadline-s) DEADLINE_S=$2; shift ;;
    --no-build) BUILD=0 ;;
    --fastserve) FASTSERVE=$2; shift ;;
    --tokenizer) TOKENIZER=$2; shift ;;
    --dataset) DATASET=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --server-args) SERVER_ARGS=$2; shift ;;
    --port) PORT=$2; shift ;;
    --launcher) LAUNCHER=$2; shift ;;
    *) echo "gpu_serving.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

# Multi-GPU servers (--launcher mpirun): NVLink multicast off; mpirun as root, shared memory only.
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
T0=$SECONDS
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d /tmp/gpu_serving.XXXXXX)  # raw/<shape>/*.json and logs/, tarred into OUTDIR
mkdir -p "$WORK/raw" "$WORK/logs"
exec > >(tee "$OUTDIR/run.log") 2>&1
log() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*"; }

SERVER_PID=""
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
# summary.md, summary.json, PNGs and results.tar.gz from what is measured so far (after every run, so
# a run killed from outside still leaves results).
summarize() {
  python3 bench/gpu_serving_plot.py "$WORK/raw" "$OUTDIR" >>"$WORK/logs/plot.log" 2>&1 ||
    log "gpu_serving_plot.py failed: $(tail -1 "$WORK/logs/plot.log")"
  tar -C "$WORK" -czf "$OUTDIR/results.tar.gz" raw logs || true
}
finalize() {
  local rc=$?
  set +e
  stop_server
  log "summarizing (exit status so far $rc)"
  summarize
  log "done: $(cd "$OUTDIR" && ls | tr '\n' ' ')"
  rm -rf "$WORK"
  exit $rc
}
trap finalize EXIT
trap 'exit 130' INT TERM

if ((BUILD)); then
  log "building fastserve (CUDA)"
  set +eu
  source scripts/device/build.sh fastserve >"$WORK/logs/build.log" 2>&1
  build_rc=$?
  set -euo pipefail
  ((build_rc == 0)) && [[ -x $FASTSERVE ]] || { tail -30 "$WORK/logs/build.log"; exit 1; }
  log "built"
fi
[[ $DEVICE == cuda ]] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
  >"$WORK/logs/gpu.txt" 2>&1 && log "GPU: $(cat "$WORK/logs/gpu.txt")"
[[ -x $FASTSERVE ]] || { echo "no fastserve binary at $FASTSERVE"; exit 1; }

# start_server SHAPE POLICY: serves on $PORT, waits for /health, sends one short warm-up request.
start_server() {
  local shape=$1 policy=$2 t=$SECONDS
  # shellcheck disable=SC2086  # SERVER_ARGS is a word list on purpose
  # shellcheck disable=SC2086  # the launcher is words
  $LAUNCHER "$FASTSERVE" serve --device "$DEVICE" --load-format dummy --model "$shape" --tokenizer "$TOKENIZER" \
    --served-model-name "$shape" --port "$PORT" --policy "$policy" $SERVER_ARGS \
    >"$WORK/logs/serve-$shape-$policy.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$WORK/logs/serve-$shape-$policy.log"; return 1; }
    python3 - "$PORT" <<'PY' 2>/dev/null && break
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2)
PY
    sleep 1
  done
  python3 - "$PORT" "$shape" <<'PY'
import json, sys, urllib.request
body = {"model": sys.argv[2], "prompt": "Hello, my name is", "max_tokens": 8, "ignore_eos": True}
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/completions", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=120).read()
PY
  log "server $shape/$policy up in $((SECONDS - t)) s (pid $SERVER_PID)"
}

# bench_run FILE RATE NUM TIMEOUT_S LABEL: one `fastserve bench` run, its result JSON in FILE.
bench_run() {
  local file=$1 rate=$2 num=$3 limit=$4 label=$5 t=$SECONDS
  timeout "$limit" "$FASTSERVE" bench --base-url "http://127.0.0.1:$PORT" --dataset "$DATASET" \
    --tokenizer "$TOKENIZER" --num-prompts "$num" --request-rate "$rate" --max-output-len "$MAX_OUTPUT_LEN" \
    --ignore-eos --seed "$SEED" --label "$label" --quiet --result-json "$file" \
    >>"$WORK/logs/bench.log" 2>&1 || { log "bench $label rate $rate failed or timed out (${limit} s)"; return 1; }
  # The server's counters after the run (cumulative per server: preemptions, KV bytes swapped).
  python3 - "$PORT" >"${file%.json}.metrics.txt" 2>/dev/null <<'PY' || true
import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode())
PY
  python3 - "$file" "$((SECONDS - t))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"        {r['completed']}/{r['num_prompts']} ok in {r['duration']:.1f} s (wall {sys.argv[2]} s): "
      f"{r['request_throughput']:.2f} req/s, {r['output_throughput']:.0f} tok/s, "
      f"JCT mean {r['mean_e2el_ms'] / 1e3:.2f} s p99 {r['p99_e2el_ms'] / 1e3:.2f} s, "
      f"TTFT mean {r['mean_ttft_ms'] / 1e3:.2f} s")
PY
}

IFS=, read -ra shape_list <<<"$SHAPES"
IFS=, read -ra policy_list <<<"$POLICIES"
prev_shape_s=0
meta_get() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
for shape in "${shape_list[@]}"; do
  elapsed=$((SECONDS - T0))
  # The next shape is estimated to take as long as the last one.
  if ((prev_shape_s > 0 && elapsed + prev_shape_s > DEADLINE_S)); then
    log "skipping $shape: ${elapsed} s spent + ~${prev_shape_s} s estimated > deadline ${DEADLINE_S} s"
    continue
  fi
  shape_t0=$SECONDS
  raw=$WORK/raw/$shape
  mkdir -p "$raw"
  rates=""
  for policy in "${policy_list[@]}"; do
    server_t0=$SECONDS
    start_server "$shape" "$policy" || { log "server $shape/$policy did not start"; exit 1; }
    if [[ -z $rates ]]; then
      log "$shape: saturation run, rate=inf, $SAT_PROMPTS prompts ($policy)"
      bench_run "$raw/saturation.json" inf "$SAT_PROMPTS" 300 "$policy-saturation" || exit 1
      # Plan: S = the throughput while the batch is full (completions before the last max_num_seqs
      # requests, all sent at t=0), rates = FRACTIONS x S, and the prompt count per run cut so the
      # policies' sweeps fit before the deadline (a run takes ~N / min(rate, S) + the last job's time).
      python3 - "$raw/saturation.json" "$raw/meta.json" "$FRACTIONS" "$shape" "$policy" "$NUM_PROMPTS" \
        "$MAX_OUTPUT_LEN" "$DEVICE" "$SERVER_ARGS" "${#policy_list[@]}" \
        "$((DEADLINE_S - (SECONDS - T0)))" "$((SECONDS - server_t0))" <<'PY'
import json, re, sys
(sat_path, meta_path, fractions, shape, policy, num, max_out, device, server_args, num_policies,
 time_left_s, server_s) = sys.argv[1:]
r = json.load(open(sat_path))
m = re.search(r"--max-num-seqs[ =](\d+)", server_args)
max_num_seqs = int(m.group(1)) if m else 16  # the server's default
done = sorted(t + e for t, e, ok in zip(r["send_times"], r["e2els"], r["output_lens"]) if ok > 0)
k = len(done) - min(max_num_seqs, len(done) // 3)
# The plain throughput (all N over the whole run) is low by the last batch's drain; with N close to
# max_num_seqs the full-batch estimate is the lower one: take the larger.
s = max(r["request_throughput"], k / done[k - 1] if k >= 1 and done[k - 1] > 0 else 0.0)
fr = [float(f) for f in fractions.split(",")]
rates = [float(f"{s * f:.2g}") for f in fr]  # two significant digits
tail_s = done[-1] - done[k - 1] if k >= 1 else 0.0  # the last batch draining
per_prompt_s = sum(1 / min(x, s) for x in rates)
# Runs of all policies + server restarts + a summary after each policy must fit in time_left_s.
budget_s = float(time_left_s) - 10 - (int(num_policies) - 1) * (float(server_s) + 5)
fit = int((budget_s / int(num_policies) - len(rates) * (tail_s + 3)) / per_prompt_s)
n = max(min(int(num), fit), min(int(num), 24))
json.dump({"shape": shape, "saturation_policy": policy, "saturation_req_s": round(s, 4),
           "saturation_plain_req_s": round(r["request_throughput"], 4), "fractions": fractions, "rates": rates,
           "num_prompts": n, "num_prompts_asked": int(num), "max_output_len": int(max_out),
           "max_num_seqs": max_num_seqs, "device": device, "server_args": server_args,
           "est_run_s": {f"{x:g}": round(n / min(x, s) + tail_s, 1) for x in rates}},
          open(meta_path, "w"), indent=1)
PY
      rates=$(python3 -c "import json, sys; print(','.join(f'{x:g}' for x in json.load(open(sys.argv[1]))['rates']))" "$raw/meta.json")
      num=$(meta_get "$raw/meta.json" num_prompts)
      log "$shape: saturation $(meta_get "$raw/meta.json" saturation_req_s) req/s (full batch; plain" \
        "$(meta_get "$raw/meta.json" saturation_plain_req_s)) -> rates $rates, $num prompts per run," \
        "est. s per run $(meta_get "$raw/meta.json" est_run_s)"
    fi
    IFS=, read -ra rate_list <<<"$rates"
    for rate in "${rate_list[@]}"; do
      sat=$(meta_get "$raw/meta.json" saturation_req_s)
      read -r expect_s limit < <(python3 -c "n, r, s = $num, $rate, $sat; e = n / min(r, s) + 10
print(int(e), int(max(30, min(3 * e + 60, $DEADLINE_S + 30 - $((SECONDS - T0))))))")
      if ((SECONDS - T0 + expect_s > DEADLINE_S)); then
        log "skipping $shape $policy rate $rate: ~${expect_s} s would end past the ${DEADLINE_S} s deadline"
        continue
      fi
      log "$shape $policy rate $rate ($num prompts, ~${expect_s} s, timeout ${limit} s)"
      bench_run "$raw/$policy-rate-$rate.json" "$rate" "$num" "$limit" "$policy" || true
      tar -C "$WORK" -czf "$OUTDIR/results.tar.gz" raw logs || true
    done
    stop_server
  done
  prev_shape_s=$((SECONDS - shape_t0))
  log "$shape finished in ${prev_shape_s} s"
  summarize
done
