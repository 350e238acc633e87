#!/usr/bin/env python3
"""transformers on the GPU at the Llama-3-8B shape (random bf16 weights): decode tokens/s at
several batch sizes, for the peer table of docs/BENCHMARKS.md (scripts/device/peers.sh).

Two ways, each timed with N and 1 new tokens so that the prompt's prefill cancels out:
  - "generate": plain batched model.generate (dynamic KV cache, sdpa attention, greedy), every
    sequence a prompt of --context random tokens; decode tokens/s = B * (N - 1) / (t_N - t_1);
  - "generate_batch": transformers' continuous batching (model.generate_batch, paged KV cache),
    where the installed version has it; the same subtraction.
EOS is never produced on purpose (random weights; min_new_tokens = max_new_tokens).

    python3 hf_decode_bench.py [--batches 1,16,64,256] [--context 512] [--new 33] [--json OUT]
"""
import argparse
import json
import time

import torch
import transformers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM


def llama3_8b():
    return LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5,
                       bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)


def sync_time(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--new", type=int, default=33)
    ap.add_argument("--modes", default="generate,generate_batch")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name()}", flush=True)
    torch.manual_seed(0)
    t0 = time.time()
    with torch.device("cuda"):
        model = LlamaForCausalLM._from_config(llama3_8b(), dtype=torch.bfloat16,
                                              attn_implementation="sdpa")
    model.eval()
    print(f"random Llama-3-8B-shape model on the GPU in {time.time() - t0:.1f} s", flush=True)
    results = []

    def gen_config(n):
        return GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                eos_token_id=2, pad_token_id=0)

    for mode in args.modes.split(","):
        if mode == "generate_batch" and not hasattr(model, "generate_batch"):
            print("generate_batch: not in this transformers version", flush=True)
            continue
        for b in batches:
            ids = torch.randint(3, 128000, (b, args.context), device="cuda")
            try:
                if mode == "generate":
                    mask = torch.ones_like(ids)

                    def run(n):
                        with torch.inference_mode():
                            return model.generate(input_ids=ids, attention_mask=mask,
                                                  generation_config=gen_config(n))
                    run(2)  # warm-up
                    t1, _ = sync_time(lambda: run(1))
                    tn, out = sync_time(lambda: run(args.new))
                    got = out.shape[1] - args.context
                else:
                    prompts = ids.tolist()

                    def run(n):  # no inference_mode: its worker thread updates its tensors
                        return model.generate_batch(inputs=prompts, generation_config=gen_config(n),
                                                    progress_bar=False)
                    run(2)  # warm-up (also captures its graphs, where it uses them)
                    t1, _ = sync_time(lambda: run(1))
                    tn, out = sync_time(lambda: run(args.new))
                    got = min(len(r.generated_tokens) for r in out.values())
                if got < args.new:
                    raise RuntimeError(f"only {got} of {args.new} tokens generated")
                decode_s = tn - t1
                row = dict(mode=mode, batch=b, context=args.context, new_tokens=args.new,
                           generated_min=got, t_new_s=tn, t_1_s=t1,
                           decode_step_ms=1e3 * decode_s / (args.new - 1),
                           decode_tok_s=b * (args.new - 1) / decode_s,
                           total_tok_s=b * args.new / tn)
                print(json.dumps(row), flush=True)
                results.append(row)
            except Exception as e:  # report and go on: one mode failing must not hide the others
                print(f"{mode} batch {b}: {type(e).__name__}: {str(e)[:300]}", flush=True)
                torch.cuda.empty_cache()
    print("\n| mode | batch | decode step ms | decode tokens/s | tokens/s incl. prefill |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['batch']} | {r['decode_step_ms']:.2f} | {r['decode_tok_s']:.0f} "
              f"| {r['total_tok_s']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
