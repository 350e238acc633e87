#!/usr/bin/env bash
# Run ON THE GPU MACHINE (device tool, carry: [".devdeps"]): builds and runs the KV swap engine's
# tests and benchmark, then a --device cuda smoke of `generate` and `serve` on a dummy Llama-3-8B.
# Logs under $OUT (the device tool's output folder) or ./swap_checks_out.
#   bash scripts/device/swap_checks.sh [--no-serve]
set -uo pipefail
OUT=${OUT:-swap_checks_out}
mkdir -p "$OUT"
source scripts/device/build.sh unit_backend_cuda swap_bench fastserve >"$OUT/build.log" 2>&1
for f in build-cuda/tests/unit_backend_cuda build-cuda/bench/swap_bench build-cuda/fastserve; do
  [[ -x $f ]] || { tail -40 "$OUT/build.log"; echo "swap_checks: $f was not built"; exit 1; }
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/gpu.txt" 2>&1
./build-cuda/tests/unit_backend_cuda 2>&1 | tee "$OUT/unit_backend_cuda.log" | grep -E "PASSED|FAILED|Failure" | head -20
./build-cuda/bench/swap_bench 2>&1 | tee "$OUT/swap_bench.log"
./build-cuda/fastserve generate --device cuda --load-format dummy --model llama-3-8b --prompt "Hello" \
  --max-tokens 32 --ignore-eos --json 2>&1 | tee "$OUT/generate_cuda.log" | tail -2
[[ ${1:-} == --no-serve ]] && exit 0
./build-cuda/fastserve serve --device cuda --load-format dummy --model llama-3-8b --port 8123 \
  >"$OUT/serve.log" 2>&1 &
pid=$!
for _ in $(seq 120); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8123/health')" 2>/dev/null && break
  sleep 1
done
python3 - <<'PY' 2>&1 | tee "$OUT/serve_completion.json"
import json, urllib.request
req = urllib.request.Request("http://127.0.0.1:8123/v1/completions",
    data=json.dumps({"model": "llama-3-8b", "prompt": "Hello", "max_tokens": 16}).encode(),
    headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=60).read().decode())
PY
kill "$pid"
wait "$pid"
tail -3 "$OUT/serve.log"
