#!/usr/bin/env python3
"""CUDA runtime vs transformers on the same GPU (run ON THE GPU MACHINE after the build).

Makes two random-weight models with transformers, saved as bf16 safetensors:
  llama-gqa  LlamaForCausalLM, 8 heads / 2 KV heads (GQA), head_dim 64, llama3 rope scaling, tied
             embeddings, 4 layers, hidden 512, vocab 2048
  qwen2      Qwen2ForCausalLM, q/k/v biases, 8 / 2 heads, untied head, 4 layers, hidden 512
runs build-cuda/bench/cuda_logits on each (a 150-token prompt: 3 prefill tiles over 10 KV blocks,
then 24 greedy decode steps), and compares with transformers on the same weights on the GPU:
  - f32 reference (bf16 weights upcast): logits of every prompt position and of every decode step;
  - greedy tokens against transformers' greedy in f32 and in bf16.
Prints a table and writes the numbers to OUT/cuda_vs_transformers.json.
  python3 scripts/device/cuda_vs_transformers.py OUT_DIR
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "build-cuda", "bench", "cuda_logits")
PROMPT_LEN, GREEDY = 150, 24


def perturb(model, seed):
    """Weights large enough that every part matters: N(0, 0.05) matrices, 1 + N(0, 0.1) norms."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.05 * noise)
    return model


def make_models(tmp):
    common = dict(vocab_size=2048, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096,
                  rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
    llama = LlamaConfig(**common, tie_word_embeddings=True, rope_theta=500000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 256})
    qwen = Qwen2Config(**common, tie_word_embeddings=False, rope_theta=1000000.0)
    out = {}
    for name, cfg, cls, seed in [("llama-gqa", llama, LlamaForCausalLM, 1),
                                 ("qwen2", qwen, Qwen2ForCausalLM, 2)]:
        torch.manual_seed(seed)
        model = perturb(cls(cfg), seed).to(torch.bfloat16)
        path = os.path.join(tmp, name)
        model.save_pretrained(path, safe_serialization=True)
        out[name] = path
    return out


def hf_greedy(model, ids, n):
    seq = list(ids)
    for _ in range(n):
        with torch.no_grad():
            logits = model(torch.tensor([seq], device="cuda")).logits[0, -1]
        seq.append(int(torch.argmax(logits)))
    return seq[len(ids):]


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 2048, (PROMPT_LEN,), generator=g).tolist()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in make_models(tmp).items():
            ours_path = os.path.join(tmp, name + ".json")
            subprocess.run([TOOL, path, ",".join(map(str, ids)), str(GREEDY), ours_path], check=True)
            ours = json.load(open(ours_path))
            vocab = ours["vocab"]
            cls = LlamaForCausalLM if name.startswith("llama") else Qwen2ForCausalLM
            ref32 = cls.from_pretrained(path, dtype=torch.float32).cuda().eval()
            ref16 = cls.from_pretrained(path, dtype=torch.bfloat16).cuda().eval()
            # Our greedy path fed back: logits of the prompt and of every decode step, in one pass.
            seq = ids + ours["greedy"][:-1]
            with torch.no_grad():
                full = ref32(torch.tensor([seq], device="cuda")).logits[0].float().cpu()
            got_prompt = torch.tensor(ours["prompt_logits"]).view(PROMPT_LEN, vocab)
            got_decode = torch.tensor(ours["decode_logits"]).view(GREEDY - 1, vocab)
            ref_prompt, ref_decode = full[:PROMPT_LEN], full[PROMPT_LEN:]
            sigma = float(ref_prompt.std())
            r = {
                "logit_sigma": sigma,
                "prompt_max_abs_err": float((got_prompt - ref_prompt).abs().max()),
                "prompt_rms_err": float((got_prompt - ref_prompt).pow(2).mean().sqrt()),
                "decode_max_abs_err": float((got_decode - ref_decode).abs().max()),
                "prompt_top1_agree": float((got_prompt.argmax(-1) == ref_prompt.argmax(-1)).float().mean()),
                "decode_top1_agree": float((got_decode.argmax(-1) == ref_decode.argmax(-1)).float().mean()),
                "greedy_ours": ours["greedy"],
                "greedy_hf_f32": hf_greedy(ref32, ids, GREEDY),
                "greedy_hf_bf16": hf_greedy(ref16, ids, GREEDY),
            }
            with torch.no_grad():
                b16 = ref16(torch.tensor([seq], device="cuda")).logits[0].float().cpu()
            r["hf_bf16_prompt_max_abs_err"] = float((b16[:PROMPT_LEN] - ref_prompt).abs().max())
            # Where our greedy first leaves transformers' f32 greedy, how far apart the two tokens'
            # f32 logits are (the sequences agree up to there, so `full` is that step's logits).
            d = next((i for i, (a, b) in enumerate(zip(ours["greedy"], r["greedy_hf_f32"]))
                      if a != b), None)
            r["first_divergence"] = d
            if d is not None:
                row = full[PROMPT_LEN - 1 + d]
                r["divergence_f32_gap"] = float(row[r["greedy_hf_f32"][d]] - row[ours["greedy"][d]])
            results[name] = r
    print("| model | logit sigma | prompt max abs err (rms) | decode max abs err | top-1 agree "
          "prompt / decode | transformers bf16 max abs err | greedy = HF f32 | greedy = HF bf16 | "
          "first divergence from HF f32 (f32 logit gap there) |")
    print("|---|---|---|---|---|---|---|---|---|")
    ok = True
    for name, r in results.items():
        same32 = r["greedy_ours"] == r["greedy_hf_f32"]
        same16 = r["greedy_ours"] == r["greedy_hf_bf16"]
        print(f"| {name} | {r['logit_sigma']:.3f} | {r['prompt_max_abs_err']:.4f} "
              f"({r['prompt_rms_err']:.4f}) | {r['decode_max_abs_err']:.4f} | "
              f"{r['prompt_top1_agree']:.3f} / {r['decode_top1_agree']:.3f} | "
              f"{r['hf_bf16_prompt_max_abs_err']:.4f} | {same32} | {same16} | "
              f"{r['first_divergence']} ({r.get('divergence_f32_gap', 0):.4f}) |")
        # Pass: logits within transformers' own bf16 error, greedy equal to f32's until a near-tie
        # (the two tokens' f32 logits closer than our max error).
        near_tie = same32 or r["divergence_f32_gap"] < r["decode_max_abs_err"]
        ok = ok and near_tie and r["prompt_max_abs_err"] <= r["hf_bf16_prompt_max_abs_err"]
    os.makedirs(out_dir, exist_ok=True)
    json.dump(results, open(os.path.join(out_dir, "cuda_vs_transformers.json"), "w"), indent=1)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
