#!/usr/bin/env bash
# FastServe FCFS vs skip-join MLFQ on the Azure code length trace (filtered as the paper filters:
# prompt <= 1024, prompt + output <= 2048), F32 SmolLM2, 2 threads, 16 sequences, 60 prompts.
set -u
cd /work/main
OUT=bench/results/2026-11-30/f32-t2-azure-code
FS=build-me/fastserve
GGUF=models/SmolLM2-135M-Instruct.F32.gguf
echo -20 > /proc/self/autogroup 2>/dev/null
run_policy() {  # policy rates...
  local policy=$1; shift
  $FS serve --model $GGUF --port 8610 --threads 2 --policy $policy --max-num-seqs 16 --served-model-name smollm2 > /tmp/az-$policy.log 2>&1 &
  local pid=$!
  until curl -sf http://127.0.0.1:8610/health >/dev/null; do sleep 1; done
  $FS bench --base-url http://127.0.0.1:8610 --model smollm2 --tokenizer $GGUF --dataset /tmp/azure_code_filtered.csv \
    --num-prompts 4 --request-rate inf --max-output-len 16 --quiet --result-json /tmp/az-warm.json >/dev/null 2>&1
  for rate in "$@"; do
    $FS bench --base-url http://127.0.0.1:8610 --model smollm2 --tokenizer $GGUF --dataset /tmp/azure_code_filtered.csv \
      --num-prompts 60 --request-rate $rate --ignore-eos --max-output-len 2048 --seed 0 --quiet \
      --label $policy --result-json $OUT/$policy-rate-$rate.json >/dev/null 2>&1
    python3 -c "
import json; j=json.load(open('$OUT/$policy-rate-$rate.json'))
print('$policy', '$rate', 'done', j['completed'], 'req/s %.3f' % j['request_throughput'], 'mean JCT %.2f p99 %.2f' % (j['mean_e2el_ms']/1e3, j['p99_e2el_ms']/1e3), 'TTFT %.2f' % (j['mean_ttft_ms']/1e3))"
  done
  kill -INT $pid; wait $pid
}
run_policy fcfs inf
SAT=$(python3 -c "import json; print('%.3f' % (0.9*json.load(open('$OUT/fcfs-rate-inf.json'))['request_throughput']))")
echo "90% of FCFS saturation: $SAT"
run_policy skip-join-mlfq inf $SAT
run_policy fcfs $SAT
echo ALLDONE
