#!/usr/bin/env python3
"""Writes the tiny random-weight models under tests/fixtures/models/ (committed; do not regenerate
casually: the forward-pass reference logits are computed from these exact files).

Run with a venv that has torch, transformers, safetensors and gguf (e.g. /tmp/refvenv/bin/python):
    python scripts/make_tiny_models.py [OUT_DIR]

Models (fixed seeds; weights perturbed away from the default init so that norm weights, biases and
every projection matter in the logits):
  tiny-llama               LlamaForCausalLM, GQA 4/2 heads, hidden 64, ffn 128, 2 layers, vocab 320, f32
  tiny-llama.gguf          the same weights as GGUF (llama arch, F32), Q/K permuted like
                           llama.cpp convert_hf_to_gguf.py (LlamaModel.permute)
  tiny-llama3-bf16-sharded LlamaForCausalLM, bf16, llama3 rope scaling, 2+ safetensors shards + index
  tiny-qwen2               Qwen2ForCausalLM, qkv bias, untied lm_head, f32, hidden 32, 2 layers
  tiny-opt                 OPTForCausalLM, hidden 64, ffn 128, 2 layers, 4 heads, vocab 320, f16, tied
"""
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)


def perturb(model, seed):
    """Deterministic non-trivial weights: N(0, 0.1) matrices, 1 + N(0, 0.1) norm weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.1
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + noise)
            elif name.endswith("bias"):
                p.copy_(noise)
            else:
                p.copy_(noise * 1.5)
    return model


def save(model, out, dtype, **kw):
    if os.path.isdir(out):
        shutil.rmtree(out)
    model = model.to(dtype)
    model.save_pretrained(out, safe_serialization=True, **kw)
    # generation_config.json carries nothing the loader needs; keep the fixture minimal.
    gen = os.path.join(out, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)


def llama_config(**kw):
    base = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1,
                eos_token_id=2, hidden_act="silu", attention_bias=False, mlp_bias=False)
    base.update(kw)
    return LlamaConfig(**base)


def rope_theta(cfg):
    """transformers >= 5 keeps rope_theta in rope_parameters; older versions at the top level."""
    params = getattr(cfg, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))


def permute(w, n_head, n_head_kv):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute: HF 'rotate halves' rows -> adjacent pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_llama_gguf(model, cfg, path):
    import gguf
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny-llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(rope_theta(cfg))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(b + "attn_q.weight", permute(sd[p + "self_attn.q_proj.weight"], nh, nh))
        w.add_tensor(b + "attn_k.weight", permute(sd[p + "self_attn.k_proj.weight"], nh, nkv))
        w.add_tensor(b + "attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(b + "ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(b + "ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(b + "ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests/fixtures/models")
    os.makedirs(out_dir, exist_ok=True)
    print("transformers", transformers.__version__, "torch", torch.__version__)

    torch.manual_seed(0)
    cfg = llama_config()
    llama = perturb(LlamaForCausalLM(cfg).eval(), seed=1)
    save(llama, os.path.join(out_dir, "tiny-llama"), torch.float32)
    write_llama_gguf(llama, cfg, os.path.join(out_dir, "tiny-llama.gguf"))

    torch.manual_seed(0)
    cfg3 = llama_config(rope_theta=500000.0, max_position_embeddings=256, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32})
    llama3 = perturb(LlamaForCausalLM(cfg3).eval(), seed=2)
    save(llama3, os.path.join(out_dir, "tiny-llama3-bf16-sharded"), torch.bfloat16,
         max_shard_size="100KB")

    torch.manual_seed(0)
    qcfg = Qwen2Config(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                       rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
                       bos_token_id=1, eos_token_id=2, hidden_act="silu", use_sliding_window=False)
    qwen = perturb(Qwen2ForCausalLM(qcfg).eval(), seed=3)
    save(qwen, os.path.join(out_dir, "tiny-qwen2"), torch.float32)

    torch.manual_seed(0)
    ocfg = OPTConfig(vocab_size=320, hidden_size=64, ffn_dim=128, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=64,
                     do_layer_norm_before=True, enable_bias=True, activation_function="relu",
                     pad_token_id=1, bos_token_id=2, eos_token_id=2, tie_word_embeddings=True)
    opt = perturb(OPTForCausalLM(ocfg).eval(), seed=4)
    save(opt, os.path.join(out_dir, "tiny-opt"), torch.float16)

    for dirpath, _, files in sorted(os.walk(out_dir)):
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            print(f"{os.path.getsize(p):>9} {os.path.relpath(p, out_dir)}")


if __name__ == "__main__":
    main()
