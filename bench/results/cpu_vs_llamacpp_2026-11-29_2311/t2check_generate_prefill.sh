#!/usr/bin/env bash
# 2 threads, wall clock, alternating: FastServe generate (--kv-cache-dtype f16 and f32) vs llama-bench pp512 and tg128 at depth 512.
cd /work/main
IDS=$(seq -s, 100 611)
for r in 1 2 3; do
for m in models/SmolLM2-135M-Instruct.Q4_1.gguf models/SmolLM2-135M-Instruct.Q8_0.gguf /tmp/SmolLM2-135M-Instruct.F16.gguf; do
  b=$(basename $m .gguf); b=${b##*.}
  for kv in f16 f32; do
    build-me/fastserve generate --model $m --threads 2 --kv-cache-dtype $kv --prompt-ids $IDS --max-tokens 128 --ignore-eos --json 2>/dev/null |
      python3 -c "import json,sys; t=json.load(sys.stdin)['timings']; print('r$r $b fs_$kv prefill %.1f decode %.1f' % (t['prefill_tokens_per_s'], t['decode_tokens_per_s']))"
  done
  pp=$(/tmp/llama-build/bin/llama-bench -m $m -t 2 -p 512 -n 0 -r 1 -o csv 2>/dev/null | tail -1 | awk -F, '{print $(NF-1)}' | tr -d '"')
  tg=$(/tmp/llama-build/bin/llama-bench -m $m -t 2 -p 0 -n 128 -d 512 -r 1 -o csv 2>/dev/null | tail -1 | awk -F, '{print $(NF-1)}' | tr -d '"')
  echo "r$r $b llama prefill $pp decode $tg load $(cut -d' ' -f1 /proc/loadavg)"
done; done
