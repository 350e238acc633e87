#!/usr/bin/env python3
"""Writes a Hugging Face folder (config.json, generation_config.json, tokenizer files, model.safetensors)
with the weights of a GGUF file, for peers that load HF checkpoints (vLLM).

transformers' GGUF loader dequantizes every tensor with gguf-py's reference dequantization (the same
as scripts/dequantize_gguf.py) and undoes llama.cpp's Q/K row permutation (convert_hf_to_gguf.py's
LlamaModel.permute), so the folder holds exactly the GGUF's weights in HF layout. The weights are
stored in --dtype (float32 by default: bit-exact; float16/bfloat16 round once, as dequantize_gguf.py's
f16/bf16 copies do).

Check (--verify): last-position logits of a few prompts from the HF folder against transformers on
the GGUF itself (the reference our e2e tests match), and greedy tokens; optionally against
`fastserve generate` on a GGUF copy (--fastserve BIN --fastserve-model F32.gguf).

    /tmp/refvenv/bin/python scripts/gguf_to_hf.py models/SmolLM2-135M-Instruct.Q4_1.gguf \
        models/SmolLM2-135M-Instruct-hf-f32 --dtype float32 --verify
"""
import argparse
import json
import os
import subprocess

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--fastserve", help="fastserve binary: compare its greedy tokens too")
    ap.add_argument("--fastserve-model", help="GGUF for fastserve (the same weights, e.g. the F32 copy)")
    args = ap.parse_args()
    d, f = os.path.split(os.path.abspath(args.gguf))
    dtype = getattr(torch, args.dtype)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf"): copy its (dequantized,
    # un-permuted) state dict into a plain model built from the same config.
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all("lm_head" in m for m in missing), (missing, unexpected)
    plain.tie_weights()
    plain.to(dtype).save_pretrained(args.out, safe_serialization=True)
    tok.save_pretrained(args.out)
    cfg_path = os.path.join(args.out, "config.json")
    with open(cfg_path) as fh:
        cfg = json.load(fh)
    cfg["torch_dtype"] = args.dtype
    cfg["dtype"] = args.dtype
    with open(cfg_path, "w") as fh:
        json.dump(cfg, fh, indent=2)
    print(f"wrote {args.out} ({args.dtype})")
    if not args.verify:
        return
    ref = model
    hf = AutoModelForCausalLM.from_pretrained(args.out, dtype=torch.float32).eval()
    hf_tok = AutoTokenizer.from_pretrained(args.out)
    worst = 0.0
    for p in PROMPTS:
        ids = tok(p, return_tensors="pt").input_ids
        ids2 = hf_tok(p, return_tensors="pt").input_ids
        assert torch.equal(ids, ids2), f"tokenizers differ on {p!r}: {ids} vs {ids2}"
        with torch.no_grad():
            a = ref(ids).logits[0, -1]
            b = hf(ids).logits[0, -1]
            g_ref = ref.generate(ids, max_new_tokens=32, do_sample=False)[0, ids.shape[1]:].tolist()
            g_hf = hf.generate(ids, max_new_tokens=32, do_sample=False)[0, ids.shape[1]:].tolist()
        diff = (a - b).abs().max().item()
        worst = max(worst, diff)
        print(f"{p!r}: max |logit diff| {diff:.3g}, greedy 32 equal: {g_ref == g_hf}")
        if args.fastserve:
            out = subprocess.run([args.fastserve, "generate", "--model", args.fastserve_model, "--prompt", p,
                                  "--max-tokens", "32", "--temperature", "0", "--ignore-eos", "--json"],
                                 capture_output=True, text=True, check=True).stdout
            fs = json.loads(out.strip().splitlines()[-1])
            fs_ids = fs.get("token_ids") or fs.get("tokens")
            print(f"   fastserve greedy 32 equal to HF folder's: {fs_ids == g_hf}"
                  + ("" if fs_ids == g_hf else f"\n   fs {fs_ids}\n   hf {g_hf}"))
    tol = 1e-4 if args.dtype == "float32" else 5e-1
    print(f"worst max |logit diff| {worst:.3g} (tolerance {tol})")
    assert worst <= tol


if __name__ == "__main__":
    main()
