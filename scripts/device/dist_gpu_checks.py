#!/usr/bin/env python3
"""Issue 9's GPU checks on the 2xH200 machine (run by scripts/device/dist_gpu.sh after the build):

1. Tokens: `fastserve generate --device cuda` on one GPU, and under `mpirun -np 2` with --tp 2 and
   with --pp 2, on the tiny test models of tests/fixtures/models (Llama, Qwen2 with q/k/v biases,
   sharded BF16 Llama-3, OPT with every bias) and on a mid-size random Llama written here with
   transformers (uniform +-1/sqrt(fan_in) weights, so logits are spread and greedy choices are not
   near-ties). Greedy tokens must match one GPU's; the logprobs' largest difference is reported.
   transformers' own greedy tokens for the mid model (float32 on the GPU) are reported beside them.
2. Latency: batch-1 decode tokens/s of the Llama-3-8B shape (dummy weights made on each GPU) on one
   GPU, at TP=2 and at PP=2, `--repeats` rounds alternating; median and min of the step time.
3. Throughput at high load: `fastserve serve` of the same shape on one GPU, at PP=2 and at TP=2,
   and `fastserve bench` sending --num-prompts ShareGPT prompts (bench/data/sharegpt_200.jsonl,
   repeated) at once (rate inf, ignore_eos, outputs capped at --max-output-len); output tokens/s.

    python3 scripts/device/dist_gpu_checks.py --fastserve build-cuda/fastserve --out OUT
Writes OUT/dist_checks.json and OUT/dist_checks.md; exits 1 when a token check fails.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "models"


def mpi_env():
    env = dict(os.environ)
    env.update({"NCCL_NVLS_ENABLE": "0", "OMPI_ALLOW_RUN_AS_ROOT": "1",
                "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_btl": "self,vader",
                "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
                "OMPI_MCA_plm_rsh_agent": "false"})
    return env


def launch(fastserve, layout, args, log, timeout=600, extra_env=None):
    """Runs `fastserve generate ... --json` on one GPU (layout None) or under mpirun; returns the
    JSON rank 0 printed."""
    cmd = [fastserve, "generate", "--device", "cuda", "--json", *args]
    env = mpi_env()
    env.update(extra_env or {})
    if layout is None:
        env["CUDA_VISIBLE_DEVICES"] = "0"
    else:
        flag, n = layout
        cmd = ["mpirun", "-np", str(n), "--bind-to", "none"] + cmd + [flag, str(n)]
    t = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    log.write(f"$ {' '.join(cmd)}  ({time.time() - t:.1f} s, exit {proc.returncode})\n")
    log.write(proc.stderr[-4000:] + "\n")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if len(lines) != 1:
        raise RuntimeError(f"expected one JSON line from rank 0, got: {proc.stdout[-2000:]}")
    return json.loads(lines[0])


def make_mid_llama(path):
    """A random Llama at a size where TP splits real work: 8 layers, hidden 1024, 16 heads, 8 kv
    heads, vocab 32000; weights uniform in +-1/sqrt(fan_in), saved as BF16 safetensors."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2816,
                         num_hidden_layers=8, num_attention_heads=16, num_key_value_heads=8,
                         max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                bound = 1.0 / (p.shape[1] ** 0.5)
                p.uniform_(-bound, bound)
    model = model.to(torch.bfloat16)
    model.save_pretrained(path, safe_serialization=True)
    return model


def hf_greedy(model, prompt, n):
    import torch
    m = model.float().cuda().eval()
    ids = torch.tensor([prompt], device="cuda")
    with torch.no_grad():
        out = m.generate(ids, max_new_tokens=n, do_sample=False, min_new_tokens=n,
                         eos_token_id=None, pad_token_id=0)
    m.cpu()
    return out[0, len(prompt):].tolist()


def token_checks(fastserve, work, log, results):
    mid = work / "mid-llama"
    t = time.time()
    model = make_mid_llama(mid)
    print(f"mid-llama written in {time.time() - t:.1f} s", flush=True)
    models = [("tiny-llama", FIXTURES / "tiny-llama", 320),
              ("tiny-qwen2 (q/k/v biases)", FIXTURES / "tiny-qwen2", 256),
              ("tiny-llama3-bf16-sharded", FIXTURES / "tiny-llama3-bf16-sharded", 320),
              ("tiny-opt (biases, learned positions)", FIXTURES / "tiny-opt", 320),
              ("mid-llama (random, 8 layers, 1024 hidden)", mid, 32000)]
    ok = True
    for name, path, vocab in models:
        # 7: decode-only kernels; 40: the prefill kernels (> kMaxDecodeNew new tokens)
        for plen in ((7, 40) if name.startswith("mid") else (40,)):
            prompt = [(1 + 37 * i * i + 11 * i) % (vocab - 3) + 3 for i in range(plen)]
            args = ["--model", str(path), "--prompt-ids", ",".join(map(str, prompt)),
                    "--max-tokens", "24", "--ignore-eos"]
            row = {"model": name, "prompt_len": plen}
            try:
                one = launch(fastserve, None, args, log)
                row["one_gpu"] = one["token_ids"]
                for label, layout in (("tp2", ("--tp", 2)), ("pp2", ("--pp", 2))):
                    r = launch(fastserve, layout, args, log)
                    if label == "tp2":
                        r_tp2 = r
                    same = r["token_ids"] == one["token_ids"]
                    diff = max((abs(a - b) for a, b in zip(r["logprobs"], one["logprobs"])),
                               default=0.0)
                    row[label] = {"tokens_equal": same, "max_logprob_diff": diff,
                                  "token_ids": r["token_ids"]}
                    ok &= same
                if name.startswith("mid"):
                    # The all-reduce kernels (FASTSERVE_TP_FUSED_ALLREDUCE=0) against the
                    # default (decode GEMVs send their outputs, the kernel sums): the same sums, so the
                    # same logprobs bit for bit.
                    other = launch(fastserve, ("--tp", 2), args, log,
                                   extra_env={"FASTSERVE_TP_FUSED_ALLREDUCE": "0"})
                    same = (other["token_ids"] == row["tp2"]["token_ids"] and
                            other["logprobs"] == r_tp2["logprobs"])
                    row["tp2_all_reduce_kernels_identical"] = same
                    ok &= same
                    # Sampled on the host from whole logits rows: the vocab-parallel head's
                    # gathered rows against the whole head's, same seed.
                    sargs = args + ["--temperature", "0.8", "--seed", "7"]
                    split = launch(fastserve, ("--tp", 2), sargs, log)
                    whole = launch(fastserve, ("--tp", 2), sargs, log,
                                   extra_env={"FASTSERVE_TP_LM_HEAD": "whole"})
                    same = split["token_ids"] == whole["token_ids"]
                    diff = max((abs(a - b) for a, b in zip(split["logprobs"], whole["logprobs"])),
                               default=0.0)
                    row["tp2_sampled_split_vs_whole_head"] = {"tokens_equal": same,
                                                              "max_logprob_diff": diff}
                    ok &= same
                    row["transformers_f32"] = hf_greedy(model, prompt, 24)
                    row["transformers_equal"] = row["transformers_f32"] == one["token_ids"]
            except Exception as e:  # noqa: BLE001 -- reported, and the check fails
                row["error"] = str(e)[-1500:]
                ok = False
            results["tokens"].append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "one_gpu"})[:400], flush=True)
    return ok


def latency(fastserve, log, results, repeats, tokenizer, all_layouts=False):
    prompt = ",".join(str(100 + i) for i in range(128))
    args = ["--load-format", "dummy", "--model", "llama-3-8b", "--tokenizer", tokenizer,
            "--prompt-ids", prompt, "--max-tokens", "384", "--ignore-eos"]
    layouts = [("one GPU", None, None), ("TP=2", ("--tp", 2), None),
               ("TP=2, all-reduce kernels (not in the GEMVs)", ("--tp", 2),
                {"FASTSERVE_TP_FUSED_ALLREDUCE": "0"})]
    if all_layouts:
        layouts += [("TP=2, whole LM head", ("--tp", 2), {"FASTSERVE_TP_LM_HEAD": "whole"}),
                    ("TP=2, NCCL all-reduce only", ("--tp", 2), {"FASTSERVE_TP_ALLREDUCE": "nccl"})]
    runs = {label: [] for label, _, _ in layouts}
    for rep in range(repeats):
        for label, layout, extra_env in layouts:
            try:
                r = launch(fastserve, layout, args, log, extra_env=extra_env)
                ms = 1e3 / r["timings"]["decode_tokens_per_s"]
                runs[label].append(ms)
                print(f"round {rep + 1}: {label}: {ms:.3f} ms/token", flush=True)
            except Exception as e:  # noqa: BLE001
                results.setdefault("latency_errors", []).append(f"{label}: {str(e)[-800:]}")
                print(f"round {rep + 1}: {label}: FAILED {str(e)[-300:]}", flush=True)
    results["latency_ms_per_token"] = runs


def throughput(fastserve, log, results, tokenizer, max_num_seqs, max_output_len, num_prompts):
    """serve + bench of the Llama-3-8B shape on one GPU, at PP=2 and at TP=2 (scale_checks.py's)."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    import scale_checks  # noqa: E402 -- a sibling script
    rows = {"throughput": []}
    scale_checks.throughput(fastserve, ["llama-3-8b:1,pp2,tp2"], log, rows, max_num_seqs,
                            max_output_len, num_prompts, port=8320, tokenizer=tokenizer)
    names = {"1": "one GPU", "pp2": "PP=2", "tp2": "TP=2"}
    for r in rows["throughput"]:
        r["layout"] = names[r["layout"]]
    results["throughput"] = rows["throughput"]


def write_md(results, out):
    lines = ["# Issue 9 GPU checks (2x H200)", ""]
    lines += ["## Greedy tokens: TP=2 and PP=2 vs one GPU (24 tokens, bf16 weights)", "",
              "| model | prompt | TP=2 tokens equal | TP=2 max logprob diff | PP=2 tokens equal | "
              "PP=2 max logprob diff | transformers f32 equal |", "|---|---|---|---|---|---|---|"]
    for r in results["tokens"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['prompt_len']} | ERROR: {r['error'][:200]} |")
            continue
        tp, pp = r["tp2"], r["pp2"]
        lines.append(f"| {r['model']} | {r['prompt_len']} | {tp['tokens_equal']} | "
                     f"{tp['max_logprob_diff']:.2e} | {pp['tokens_equal']} | "
                     f"{pp['max_logprob_diff']:.2e} | {r.get('transformers_equal', '')} |")
    sampled = [r for r in results["tokens"] if "tp2_sampled_split_vs_whole_head" in r]
    if sampled:
        lines += ["", "TP=2 sampled (temperature 0.8, seed 7): vocab-parallel LM head vs whole head:"]
        for r in sampled:
            c = r["tp2_sampled_split_vs_whole_head"]
            lines.append(f"- {r['model']}, prompt {r['prompt_len']}: tokens equal "
                         f"{c['tokens_equal']}, max logprob diff {c['max_logprob_diff']:.2e}")
    forms = [r for r in results["tokens"] if "tp2_all_reduce_kernels_identical" in r]
    if forms:
        lines += ["", "TP=2: the all-reduce kernels (FASTSERVE_TP_FUSED_ALLREDUCE=0) against the "
                  "default (the decode GEMVs send their outputs), tokens and logprobs "
                  "identical:"]
        lines += [f"- {r['model']}, prompt {r['prompt_len']}: "
                  f"{r['tp2_all_reduce_kernels_identical']}" for r in forms]
    runs = results.get("latency_ms_per_token")
    if runs:
        lines += ["", "## Batch-1 decode, Llama-3-8B shape (dummy bf16 weights), 128-token prompt, "
                  "384 tokens", "", "| layout | ms/token median | min | runs | vs one GPU (median) |",
                  "|---|---|---|---|---|"]
        base = statistics.median(runs["one GPU"]) if runs.get("one GPU") else None
        for label, ms in runs.items():
            if not ms:
                continue
            med = statistics.median(ms)
            ratio = f"{med / base:.3f}x" if base else ""
            lines.append(f"| {label} | {med:.3f} | {min(ms):.3f} | "
                         f"{', '.join(f'{x:.3f}' for x in ms)} | {ratio} |")
    rows = results.get("throughput")
    if rows:
        lines += ["", f"## Throughput at high load: serve + bench, {rows[0].get('num_prompts')} "
                  "ShareGPT prompts at once, Llama-3-8B shape", "",
                  "| layout | max-num-seqs | completed | duration s | "
                  "output tok/s | vs one GPU | mean JCT s | mean TPOT ms |",
                  "|---|---|---|---|---|---|---|---|"]
        base = next((r.get("output_throughput") for r in rows if r["layout"] == "one GPU"), None)
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['layout']} | {r['max_num_seqs']} | ERROR: {r['error'][:200]} |")
                continue
            ratio = f"{r['output_throughput'] / base:.2f}x" if base else ""
            lines.append(f"| {r['layout']} | {r['max_num_seqs']} | {r['completed']} | "
                         f"{r['duration']:.1f} | {r['output_throughput']:.0f} | {ratio} | "
                         f"{r['mean_e2el_ms'] / 1e3:.2f} | {r['mean_tpot_ms']:.2f} |")
    (out / "dist_checks.md").write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fastserve", default=str(ROOT / "build-cuda" / "fastserve"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-tokens", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--latency-all", action="store_true",
                    help="also TP=2 with the whole LM head and with NCCL only")
    ap.add_argument("--max-num-seqs", type=int, default=128)
    ap.add_argument("--max-output-len", type=int, default=256)
    ap.add_argument("--num-prompts", type=int, default=1000)
    ap.add_argument("--tokenizer", default=str(ROOT / "tests/fixtures/tokenizer/smollm2-vocab.gguf"))
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path("/tmp/dist_gpu_checks")
    work.mkdir(parents=True, exist_ok=True)
    results = {"tokens": []}
    ok = True
    with open(out / "dist_checks.log", "w") as log:
        def save():  # after every phase: a run cut short keeps what it measured
            (out / "dist_checks.json").write_text(json.dumps(results, indent=1))
            write_md(results, out)
        if not a.skip_tokens:
            ok = token_checks(a.fastserve, work, log, results)
            save()
        if not a.skip_latency:
            latency(a.fastserve, log, results, a.repeats, a.tokenizer, a.latency_all)
            save()
        if not a.skip_throughput:
            throughput(a.fastserve, log, results, a.tokenizer, a.max_num_seqs, a.max_output_len,
                       a.num_prompts)
            save()
    print((out / "dist_checks.md").read_text())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
