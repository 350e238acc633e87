#!/usr/bin/env python3
"""Writes a Llama-architecture GGUF with random BF16 weights, for peer comparisons in which
llama.cpp and FastServe load the same file (scripts/device/peers.sh).

Matrices are uniform in +-1/sqrt(fan_in) (the init of cuda::CudaModel::dummy), norm weights 1 in
F32. The vocabulary is a SentencePiece-style ("llama") list of placeholder pieces: <unk>, <s>,
</s>, the 256 byte pieces <0x00>..<0xFF>, then "▁t<i>"; enough for llama.cpp to load the model and
for benchmarks that feed token ids, not text.

To write 16 GB fast, every matrix is a view into one of two pools of random values (one per
fan-in), at a different offset per tensor.

    PYTHONPATH=<llama.cpp>/gguf-py python3 make_random_gguf.py OUT.gguf [--shape llama3-8b|tiny]
"""
import argparse
import time

import numpy as np

import gguf

SHAPES = {
    # name: vocab, hidden, ffn, layers, heads, kv_heads, context, rope theta
    "llama3-8b": (128256, 4096, 14336, 32, 32, 8, 8192, 500000.0),
    "tiny": (512, 64, 128, 2, 4, 2, 2048, 10000.0),
}


def bf16_pool(rng, n, scale):
    f = (rng.random(n, dtype=np.float32) * 2.0 - 1.0) * np.float32(scale)
    return (f.view(np.uint32) >> 16).astype(np.uint16)  # truncation to bf16


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--shape", default="llama3-8b", choices=sorted(SHAPES))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    vocab, hidden, ffn, layers, heads, kv_heads, ctx, theta = SHAPES[args.shape]
    head_dim = hidden // heads
    t0 = time.time()
    rng = np.random.default_rng(args.seed)
    big = max(vocab * hidden, ffn * hidden) + (1 << 16)
    pool_hidden = bf16_pool(rng, big, 1.0 / np.sqrt(hidden))  # fan-in = hidden
    pool_ffn = bf16_pool(rng, hidden * ffn + (1 << 16), 1.0 / np.sqrt(ffn))  # ffn_down
    counter = [0]

    def mat(rows, cols, pool):
        n = rows * cols
        counter[0] += 1
        off = (counter[0] * 7919) % (pool.size - n + 1)
        return pool[off:off + n].reshape(rows, cols)

    w = gguf.GGUFWriter(args.out, "llama")
    w.add_name(f"random-{args.shape}-bf16")
    w.add_context_length(ctx)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581t{i}" for i in range(vocab - len(tokens))]
    types = ([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] +
             [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (vocab - 259))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(vocab)])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    bf16 = gguf.GGMLQuantizationType.BF16
    ones = np.ones(hidden, dtype=np.float32)
    w.add_tensor("token_embd.weight", mat(vocab, hidden, pool_hidden), raw_dtype=bf16)
    for i in range(layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones)
        w.add_tensor(p + "attn_q.weight", mat(heads * head_dim, hidden, pool_hidden), raw_dtype=bf16)
        w.add_tensor(p + "attn_k.weight", mat(kv_heads * head_dim, hidden, pool_hidden),
                     raw_dtype=bf16)
        w.add_tensor(p + "attn_v.weight", mat(kv_heads * head_dim, hidden, pool_hidden),
                     raw_dtype=bf16)
        w.add_tensor(p + "attn_output.weight", mat(hidden, heads * head_dim, pool_hidden),
                     raw_dtype=bf16)
        w.add_tensor(p + "ffn_norm.weight", ones)
        w.add_tensor(p + "ffn_gate.weight", mat(ffn, hidden, pool_hidden), raw_dtype=bf16)
        w.add_tensor(p + "ffn_up.weight", mat(ffn, hidden, pool_hidden), raw_dtype=bf16)
        w.add_tensor(p + "ffn_down.weight", mat(hidden, ffn, pool_ffn), raw_dtype=bf16)
    w.add_tensor("output_norm.weight", ones)
    w.add_tensor("output.weight", mat(vocab, hidden, pool_hidden), raw_dtype=bf16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.out} ({args.shape}, bf16) in {time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
