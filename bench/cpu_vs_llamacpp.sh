#!/usr/bin/env bash
# FastServe's CPU model runtime side by side with llama.cpp on the same GGUF files and thread counts:
# prefill tok/s (512-token prompt) and decode tok/s at batch 1, 8 and 32 independent sequences.
# The two systems run alternately (A, B, A, B, ...) for ROUNDS rounds so that load from other
# processes on a shared machine hits both alike; the table gives min and median over the rounds.
#
#   bash bench/llamacpp_build.sh     # once: builds llama-bench / llama-batched-bench in /tmp/llama-build
#   bash bench/cpu_vs_llamacpp.sh    # MODELS="a.gguf b.gguf" THREADS="2 1" ROUNDS=3 OUT_DIR=/tmp/x
#
# What each number is:
#   FastServe prefill   `fastserve profile --prefill-lengths 512` (best of --repeat 3 forwards per round)
#   FastServe decode    `fastserve profile --batch-sizes 1,8,32 --contexts 128,160`: one decode step of B
#                       sequences at context 128 (best of 3 per round), B / step time
#   FastServe gen b1    `fastserve generate --json`: 512 prompt ids, 128 greedy tokens, decode tok/s
#   llama.cpp prefill   `llama-bench -p 512` (pp512, mean of -r 3)
#   llama.cpp decode b1 `llama-bench -n 128` (tg128, mean of -r 3)
#   llama.cpp b8/b32    `llama-batched-bench -npp 128 -ntg 32 -npl 1,8,32` S_TG (B sequences, each
#                       its own 128-token prompt, then 32 steps: context 128-160)
# Q8_0 / F16 models: python scripts/dequantize_gguf.py models/X.Q4_1.gguf /tmp/X.Q8_0.gguf q8_0 (or f16).
set -euo pipefail
cd "$(dirname "$0")/.."
FASTSERVE=${FASTSERVE:-build/fastserve}
LLAMA_BIN=${LLAMA_BIN:-/tmp/llama-build/bin}
MODELS=${MODELS:-"models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/SmolLM2-135M-Instruct.Q8_0.gguf /tmp/SmolLM2-135M-Instruct.F16.gguf"}
THREADS=${THREADS:-"2 1"}
ROUNDS=${ROUNDS:-3}
OUT_DIR=${OUT_DIR:-/tmp/cpu_vs_llamacpp}
PY=${PY:-python3}
mkdir -p "$OUT_DIR"
RAW="$OUT_DIR/raw.jsonl"
[[ -n "${SUMMARY_ONLY:-}" ]] || : > "$RAW"  # SUMMARY_ONLY=1: print the table of an earlier run
PROMPT_IDS=$(seq -s, 100 611)  # 512 token ids

record() {  # system model threads round metric value
  printf '{"system":"%s","model":"%s","threads":%s,"round":%s,"metric":"%s","value":%s,"load":"%s"}\n' \
    "$1" "$(basename "$2")" "$3" "$4" "$5" "$6" "$(cut -d' ' -f1 /proc/loadavg)" >> "$RAW"
}

run_fastserve() {  # model threads round
  local m=$1 t=$2 r=$3 log="$OUT_DIR/fs_profile.log"
  # profile wants two contexts for its cost-model fit; only the context-128 timings are used,
  # read from its log.
  "$FASTSERVE" profile --model "$m" --threads "$t" -o "$OUT_DIR/fs.json" --prefill-lengths 512 \
    --batch-sizes 1,8,32 --contexts 128,160 --repeat 3 >"$log" 2>&1 || true
  cat "$log" >> "$OUT_DIR/fastserve.log"
  "$PY" - "$log" <<'PYEOF' | while read -r k v; do record fastserve "$m" "$t" "$r" "$k" "$v"; done
import re, sys
for line in open(sys.argv[1]):
    if m := re.search(r"prefill\s+(\d+) tokens:\s+([\d.]+) ms", line):
        print(f"prefill{m[1]}", int(m[1]) / (float(m[2]) / 1e3))
    elif m := re.search(r"decode batch\s+(\d+) context\s+128:\s+([\d.]+) ms", line):
        print(f"decode_b{m[1]}", int(m[1]) / (float(m[2]) / 1e3))
PYEOF
  "$FASTSERVE" generate --model "$m" --threads "$t" --prompt-ids "$PROMPT_IDS" --max-tokens 128 \
    --ignore-eos --json 2>>"$OUT_DIR/fastserve.log" |
    "$PY" -c 'import json,sys; t=json.load(sys.stdin)["timings"]; print("gen_decode_b1", t["decode_tokens_per_s"]); print("gen_prefill512", t["prefill_tokens_per_s"])' |
    while read -r k v; do record fastserve "$m" "$t" "$r" "$k" "$v"; done
}

run_llamacpp() {  # model threads round
  local m=$1 t=$2 r=$3
  "$LLAMA_BIN/llama-bench" -m "$m" -t "$t" -p 512 -n 128 -r 3 -o json 2>>"$OUT_DIR/llama.log" |
    "$PY" -c '
import json, sys
for e in json.load(sys.stdin):
    print("prefill512" if e["n_prompt"] else "decode_b1", e["avg_ts"])' |
    while read -r k v; do record llamacpp "$m" "$t" "$r" "$k" "$v"; done
  "$LLAMA_BIN/llama-batched-bench" -m "$m" -t "$t" -tb "$t" -c 8192 -b 2048 -ub 512 -npp 128 -ntg 32 \
    -npl 1,8,32 --output-format jsonl 2>&1 | grep '^{' |
    "$PY" -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    print("batched_b%d" % e["pl"], e["speed_tg"])' |
    while read -r k v; do record llamacpp "$m" "$t" "$r" "$k" "$v"; done
}

[[ -n "${SUMMARY_ONLY:-}" ]] && ROUNDS=0
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(date -u +%FT%TZ)"
for r in $(seq 1 "$ROUNDS"); do
  for m in $MODELS; do
    for t in $THREADS; do
      echo "round $r  $(basename "$m")  threads $t  load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
      if (( r % 2 )); then run_fastserve "$m" "$t" "$r"; run_llamacpp "$m" "$t" "$r"
      else run_llamacpp "$m" "$t" "$r"; run_fastserve "$m" "$t" "$r"; fi
    done
  done
done

"$PY" - "$RAW" <<'PYEOF'
import json, statistics, sys
from collections import defaultdict
v = defaultdict(list); loads = []
for line in open(sys.argv[1]):
    e = json.loads(line); v[(e["system"], e["model"], e["threads"], e["metric"])].append(e["value"])
    loads.append(float(e["load"]))
rows = [("prefill 512", "prefill512", "prefill512"), ("decode b1", "decode_b1", "decode_b1"),
        ("decode b1 (generate)", "gen_decode_b1", "decode_b1"), ("decode b8", "decode_b8", "batched_b8"),
        ("decode b32", "decode_b32", "batched_b32")]
models = sorted({k[1] for k in v}); threads = sorted({k[2] for k in v}, reverse=True)
fmt = lambda xs: f"{min(xs):.1f} / {statistics.median(xs):.1f}" if xs else "-"
print(f"load average (1 min) during the runs: min {min(loads):.2f}, median {statistics.median(loads):.2f}, max {max(loads):.2f}")
print("| model | threads | metric | FastServe tok/s min / median | llama.cpp tok/s min / median | ratio (median) |")
print("|---|---:|---|---:|---:|---:|")
for m in models:
    for t in threads:
        for label, fk, lk in rows:
            a, b = v.get(("fastserve", m, t, fk), []), v.get(("llamacpp", m, t, lk), [])
            ratio = f"{statistics.median(a) / statistics.median(b):.2f}x" if a and b else "-"
            print(f"| {m} | {t} | {label} | {fmt(a)} | {fmt(b)} | {ratio} |")
PYEOF
