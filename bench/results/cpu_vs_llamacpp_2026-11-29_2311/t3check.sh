#!/usr/bin/env bash
# 2 threads, wall clock, alternating. Prefill 512: fastserve profile best of 3 vs llama-bench mean of 3.
# Decode at context 512-640: fastserve generate vs llama-bench tg128 at depth 512.
cd /work/main
IDS=$(seq -s, 100 611)
for r in 1 2 3; do
for m in models/SmolLM2-135M-Instruct.Q4_1.gguf models/SmolLM2-135M-Instruct.Q8_0.gguf /tmp/SmolLM2-135M-Instruct.F16.gguf; do
  b=$(basename $m .gguf); b=${b##*.}
  for kv in f16 f32; do
    pf=$(build-me/fastserve profile --model $m --threads 2 --kv-cache-dtype $kv --prefill-lengths 512 --batch-sizes 1,2 --contexts 128,160 --repeat 3 -o /tmp/prof.json 2>&1 | grep "prefill   512" | sed 's/.*(\([0-9.]*\) tok\/s).*/\1/')
    dec=$(build-me/fastserve generate --model $m --threads 2 --kv-cache-dtype $kv --prompt-ids $IDS --max-tokens 128 --ignore-eos --json 2>/dev/null |
      python3 -c "import json,sys; t=json.load(sys.stdin)['timings']; print('%.1f' % t['decode_tokens_per_s'])")
    echo "r$r $b fs_$kv prefill $pf decode $dec"
  done
  pp=$(/tmp/llama-build/bin/llama-bench -m $m -t 2 -p 512 -n 0 -r 3 -o csv 2>/dev/null | tail -1 | awk -F, '{print $(NF-1)}' | tr -d '"')
  tg=$(/tmp/llama-build/bin/llama-bench -m $m -t 2 -p 0 -n 128 -d 512 -r 1 -o csv 2>/dev/null | tail -1 | awk -F, '{print $(NF-1)}' | tr -d '"')
  echo "r$r $b llama prefill $pp decode $tg load $(cut -d' ' -f1 /proc/loadavg)"
done; done
