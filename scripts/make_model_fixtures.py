#!/usr/bin/env python3
"""Reference logits and greedy tokens from transformers (the independent reference) for the forward-
pass tests. Rerun whenever src/model/ or src/backend/cpu/ changes what the forward pass computes:

    /tmp/refvenv/bin/python scripts/make_model_fixtures.py      # venv from requirements-reference.txt

Writes tests/fixtures/logits/<name>.json (and <name>.<i>.f32 raw little-endian logits for big
vocabularies). transformers computes in float32 here: bf16/f16 checkpoints are upcast, and the GGUF
file is dequantized to f32 by transformers' GGUF loader, so the reference sees exactly the weight
values our kernels read.
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "logits")
DEFAULT_GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

TINY_PROMPTS = [[1, 17, 250, 3, 99, 42, 7, 30, 12], [1, 5], [1, 88, 88, 88, 88, 19, 200, 201, 202, 5,
                                                             64, 64, 1, 2, 3, 4, 5, 6, 7, 8, 9]]
SMOL_PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
]


def greedy(model, ids, n):
    """Plain argmax decoding of n tokens, EOS included (generate()'s logits processors would
    suppress EOS under min_new_tokens)."""
    out, past = [], None
    cur = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(n):
            res = model(cur, past_key_values=past, use_cache=True)
            past = res.past_key_values
            nxt = int(res.logits[0, -1].argmax())
            out.append(nxt)
            cur = torch.tensor([[nxt]])
    return out


def all_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def tiny(name, path, gguf_file=None):
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kw).eval()
    cases = []
    for ids in TINY_PROMPTS:
        logits = all_logits(model, ids)
        cases.append({"prompt_ids": ids, "logits": np.round(logits, 6).tolist(),
                      "greedy_16": greedy(model, ids, 16)})
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump({"model": os.path.relpath(os.path.join(path, gguf_file or ""), ROOT).rstrip("/"),
                   "reference": "transformers float32", "cases": cases}, f)
    print(name, "ok")


def smollm2(gguf=DEFAULT_GGUF, name="smollm2-q4_1"):
    """Last-position logits, argmax at every position and 64 greedy tokens of SMOL_PROMPTS. The Q8_0
    variant runs the same prompt ids on models/SmolLM2-135M-Instruct.Q8_0.gguf (made by
    scripts/make_llamacpp_fixtures.sh or scripts/setup.sh)."""
    d, f = os.path.split(gguf)
    tok = AutoTokenizer.from_pretrained(os.path.dirname(DEFAULT_GGUF), gguf_file=os.path.basename(DEFAULT_GGUF))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    cases = []
    for i, text in enumerate(SMOL_PROMPTS):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        logits = all_logits(model, ids)
        raw = os.path.join(OUT, f"{name}.{i}.f32")
        logits[-1].astype("<f4").tofile(raw)
        cases.append({"text": text, "prompt_ids": ids, "last_logits_file": os.path.basename(raw),
                      "argmax_all": [int(a) for a in logits.argmax(axis=1)],
                      "greedy_64": greedy(model, ids, 64)})
    with open(os.path.join(OUT, name + ".json"), "w") as fp:
        json.dump({"model": os.path.relpath(gguf, ROOT),
                   "reference": "transformers float32 (GGUF dequantized by transformers)",
                   "cases": cases}, fp, indent=1)
    print(name, "ok")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    which = sys.argv[1:] or ["tiny", "smollm2"]
    if "tiny" in which:
        tiny("tiny-llama", os.path.join(MODELS, "tiny-llama"))
        tiny("tiny-llama-gguf", MODELS, "tiny-llama.gguf")
        tiny("tiny-llama3-bf16-sharded", os.path.join(MODELS, "tiny-llama3-bf16-sharded"))
        tiny("tiny-qwen2", os.path.join(MODELS, "tiny-qwen2"))
        tiny("tiny-opt", os.path.join(MODELS, "tiny-opt"))
    if "smollm2" in which:
        smollm2()
    if "smollm2-q8_0" in which:
        smollm2(os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q8_0.gguf"), "smollm2-q8_0")
