#!/usr/bin/env bash
# llama.cpp's logits on the same GGUF files as the transformers fixtures: a second numerics
# reference for the quantized paths (tests/unit/engine/model_numerics_test.cc, docs/KERNELS.md).
#
#   bash scripts/make_llamacpp_fixtures.sh
#
# Builds llama.cpp (bench/llamacpp_build.sh: the copy vendored in llama-cpp-python 0.3.36) if
# $LLAMA_BUILD/bin/libllama.so is missing, compiles scripts/llamacpp_logits.cc against it with g++,
# and for each model runs the prompts of tests/fixtures/logits/smollm2-q4_1.json (same token ids):
#   tests/fixtures/logits/<name>.llamacpp.json      argmax at every prompt position, 32 greedy tokens,
#                                                   and the top-1 margin of each
#   tests/fixtures/logits/<name>.llamacpp.<i>.f32   last-position logits, float32 little-endian
# Models: the default Q4_1 file, and models/SmolLM2-135M-Instruct.Q8_0.gguf, which is made first
# if missing (scripts/dequantize_gguf.py q8_0: gguf-py's reference quantizer, needs $REF_PY with gguf).
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_SRC=${LLAMA_SRC:-/tmp/lcp2/llama_cpp_python-0.3.36/vendor/llama.cpp}
LLAMA_BUILD=${LLAMA_BUILD:-/tmp/llama-build}
REF_PY=${REF_PY:-/tmp/refvenv/bin/python}
TOOL=$LLAMA_BUILD/llamacpp_logits
Q8=models/SmolLM2-135M-Instruct.Q8_0.gguf

if [[ ! -f "$LLAMA_BUILD/bin/libllama.so" ]]; then
  SRC_DIR=$(dirname "$(dirname "$(dirname "$LLAMA_SRC")")") BUILD_DIR=$LLAMA_BUILD bash bench/llamacpp_build.sh
fi
g++ -O2 -std=c++17 -Wall -Wextra -I"$LLAMA_SRC/include" -I"$LLAMA_SRC/ggml/include" \
  scripts/llamacpp_logits.cc -o "$TOOL" -L"$LLAMA_BUILD/bin" -lllama -lggml -lggml-base \
  -Wl,-rpath,"$LLAMA_BUILD/bin"
if [[ ! -f "$Q8" ]]; then
  "$REF_PY" scripts/dequantize_gguf.py models/SmolLM2-135M-Instruct.Q4_1.gguf "$Q8" q8_0
fi

for spec in "smollm2-q4_1:models/SmolLM2-135M-Instruct.Q4_1.gguf" "smollm2-q8_0:$Q8"; do
  TOOL=$TOOL NAME=${spec%%:*} MODEL=${spec#*:} python3 - <<'PY'
import json, os, subprocess
name, model, tool = os.environ["NAME"], os.environ["MODEL"], os.environ["TOOL"]
d = "tests/fixtures/logits/"
prompts = json.load(open(d + "smollm2-q4_1.json"))["cases"]
cases = []
for i, c in enumerate(prompts):
    raw = f"{name}.llamacpp.{i}.f32"
    ids = ",".join(map(str, c["prompt_ids"]))
    r = json.loads(subprocess.check_output([tool, model, d + raw, "32", ids]))
    cases.append({"text": c["text"], "prompt_ids": c["prompt_ids"], "last_logits_file": raw,
                  "argmax_all": r["argmax_all"], "margin_all": r["margin_all"],
                  "greedy_32": r["greedy"], "greedy_margin": r["greedy_margin"]})
    print(name, i, "top1", r["greedy"][0], "greedy", r["greedy"][:8])
json.dump({"model": model,
           "reference": "llama.cpp (vendored in llama-cpp-python 0.3.36), CPU, 2 threads, f32 KV cache, "
                        "no flash attention; prompt in one batch, greedy tokens one at a time",
           "cases": cases}, open(d + name + ".llamacpp.json", "w"), indent=1)
PY
done
