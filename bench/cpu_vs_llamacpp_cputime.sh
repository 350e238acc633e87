#!/usr/bin/env bash
# One-thread CPU seconds (user+sys) of FastServe vs llama.cpp on the same GGUF files, for a machine
# too loaded for wall-clock numbers (docs/BENCHMARKS.md, "Update 2026-11-29 10:05"). On a box without
# SMT, a one-thread run's CPU time is what it takes uncontended, up to cache/memory interference.
#   MODELS="a.gguf b.gguf" FASTSERVE=build/fastserve bash bench/cpu_vs_llamacpp_cputime.sh
# Prints per model and round the CPU seconds of: generate with 1 id + 1 token (base), 512 ids + 1
# token, 512 ids + 129 tokens; llama-bench -p 1 -n 0 (base), -p 512 -n 0, -p 0 -n 128, and
# -p 0 -n 1 / -n 128 at depth 512 (-d 512: decode at context 512-640, the same as ours).
# FASTSERVE_CPU_KERNELS=avx2 (passed through) runs our AVX2 tiles instead of AVX-512 VNNI.
# FASTSERVE_ARGS adds flags to every generate, e.g. "--kv-cache-dtype f16" (llama.cpp's KV cache
# is f16 by default; ours is f32 unless asked).
set -u
cd "$(dirname "$0")/.."
FASTSERVE=${FASTSERVE:-build/fastserve}
read -r -a FS_ARGS <<< "${FASTSERVE_ARGS:-}"
LLAMA_BIN=${LLAMA_BIN:-/tmp/llama-build/bin}
PROMPT_IDS=$(seq -s, 100 611)
cpu() { /usr/bin/time -f "%U %S" -o /tmp/cputime.$$ "$@" > /dev/null 2>&1; awk '{print $1+$2}' /tmp/cputime.$$; }
for r in $(seq 1 "${ROUNDS:-2}"); do
for M in ${MODELS:-models/SmolLM2-135M-Instruct.Q4_1.gguf}; do
  f1=$(cpu "$FASTSERVE" generate --model "$M" --threads 1 --prompt-ids 1 --max-tokens 1 --json "${FS_ARGS[@]}")
  f2=$(cpu "$FASTSERVE" generate --model "$M" --threads 1 --prompt-ids "$PROMPT_IDS" --max-tokens 1 --json "${FS_ARGS[@]}")
  f3=$(cpu "$FASTSERVE" generate --model "$M" --threads 1 --prompt-ids "$PROMPT_IDS" --max-tokens 129 --ignore-eos --json "${FS_ARGS[@]}")
  l1=$(cpu "$LLAMA_BIN/llama-bench" -m "$M" -t 1 -p 1 -n 0 -r 1 --no-warmup)
  l2=$(cpu "$LLAMA_BIN/llama-bench" -m "$M" -t 1 -p 512 -n 0 -r 1 --no-warmup)
  l3=$(cpu "$LLAMA_BIN/llama-bench" -m "$M" -t 1 -p 0 -n 128 -r 1 --no-warmup)
  l4=$(cpu "$LLAMA_BIN/llama-bench" -m "$M" -t 1 -p 0 -n 1 -d 512 -r 1 --no-warmup)
  l5=$(cpu "$LLAMA_BIN/llama-bench" -m "$M" -t 1 -p 0 -n 128 -d 512 -r 1 --no-warmup)
  awk -v r="$r" -v m="$(basename "$M")" -v f1="$f1" -v f2="$f2" -v f3="$f3" -v l1="$l1" -v l2="$l2" -v l3="$l3" -v l4="$l4" -v l5="$l5" 'BEGIN {
    printf "round %s %s: prefill512 fastserve %.0f tok/s llama.cpp %.0f | decode fastserve %.1f (ctx 512-640) llama.cpp %.1f (-d 512, ctx 512-640), tg128 %.1f (ctx 0-128)\n",
      r, m, 511 / (f2 - f1), 512 / (l2 - l1), 128 / (f3 - f2), 127 / (l5 - l4), 128 / (l3 - l1) }'
done
done
rm -f /tmp/cputime.$$
