#!/usr/bin/env python3
"""Issue 10's scaling checks on a 4- (or 8-) GPU machine, run by scripts/device/scale_gpu.sh after
the build. Dummy bf16 weights made on each GPU: every element is a function of its place in the
whole model (CudaModel::dummy), so every TP x PP layout runs the same model and tokens compare.

Layouts are written 1, tp4, pp2, tp2pp2, ... (tp x pp ranks under mpirun, one GPU a rank).

  tokens:     greedy tokens (40-token prompt, 24 new) of each --token-layouts layout of a shape
              vs its first layout; the logprobs' largest difference and the first differing step.
  latency:    batch-1 decode ms/token (128-token prompt, --latency-tokens new), --repeats rounds
              alternating over the layouts; median and min.
  throughput: `fastserve serve` + `fastserve bench`, --num-prompts ShareGPT prompts at once (rate
              inf, ignore_eos, outputs capped at --max-output-len), output tokens/s per layout.

    python3 scripts/device/scale_checks.py --out OUT --phases tokens,latency,throughput \\
      --token-layouts llama-3-8b:1,tp4,tp2pp2,pp4 --token-layouts llama-3-70b:tp4,tp2,tp2pp2,pp4 \\
      --latency-layouts llama-3-70b:tp2,tp4 --throughput-layouts llama-3-70b:tp2,tp4
Writes OUT/scale_checks.json and OUT/scale_checks.md after every phase; exits 1 when tokens differ.
"""
import argparse
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENIZER = str(ROOT / "tests/fixtures/tokenizer/smollm2-vocab.gguf")
WORK = pathlib.Path("/tmp/scale_checks")


def mpi_env():
    env = dict(os.environ)
    env.update({"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                "NVSHMEM_DISABLE_NVLS": "1", "OMPI_ALLOW_RUN_AS_ROOT": "1",
                "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_btl": "self,vader",
                "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
                "OMPI_MCA_plm_rsh_agent": "false"})
    return env


def parse_layout(name):
    """'tp2pp2' -> (2, 2); '1' -> (1, 1)."""
    if name == "1":
        return 1, 1
    m = re.fullmatch(r"(?:tp(\d+))?(?:pp(\d+))?", name)
    if not m or not (m.group(1) or m.group(2)):
        raise ValueError(f"bad layout '{name}' (1, tp4, pp2, tp2pp2, ...)")
    return int(m.group(1) or 1), int(m.group(2) or 1)


def wrap(cmd, layout):
    """cmd under mpirun for a multi-rank layout (and its --tp/--pp flags); the env for it."""
    tp, pp = parse_layout(layout)
    env = mpi_env()
    if tp * pp == 1:
        env["CUDA_VISIBLE_DEVICES"] = "0"
        return cmd, env
    return (["mpirun", "-np", str(tp * pp), "--bind-to", "none"] + cmd +
            ["--tp", str(tp), "--pp", str(pp)]), env


def generate(fastserve, shape, layout, prompt, max_tokens, log, timeout=400):
    cmd = [fastserve, "generate", "--device", "cuda", "--json", "--load-format", "dummy",
           "--model", shape, "--tokenizer", TOKENIZER, "--prompt-ids",
           ",".join(map(str, prompt)), "--max-tokens", str(max_tokens), "--ignore-eos"]
    cmd, env = wrap(cmd, layout)
    t = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.time() - t
    log.write(f"$ {' '.join(cmd)}  ({wall:.1f} s, exit {proc.returncode})\n{proc.stderr[-3000:]}\n")
    log.flush()
    if proc.returncode != 0:
        raise RuntimeError(f"{shape} {layout}: exit {proc.returncode}: {proc.stderr[-1500:]}")
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if len(lines) != 1:
        raise RuntimeError(f"{shape} {layout}: expected one JSON line, got {proc.stdout[-1000:]}")
    r = json.loads(lines[0])
    r["wall_s"] = wall
    return r


def split_spec(spec):
    shape, layouts = spec.split(":", 1)
    return shape, layouts.split(",")


def tokens(fastserve, specs, log, results):
    ok = True
    prompt = [(1 + 37 * i * i + 11 * i) % 32000 + 3 for i in range(40)]
    for spec in specs:
        shape, layouts = split_spec(spec)
        ref_layout, ref = layouts[0], None
        for layout in layouts:
            row = {"shape": shape, "layout": layout, "reference": ref_layout}
            try:
                r = generate(fastserve, shape, layout, prompt, 24, log)
                row["token_ids"] = r["token_ids"]
                row["wall_s"] = round(r["wall_s"], 1)
                if ref is None:
                    ref = r
                else:
                    row["tokens_equal"] = r["token_ids"] == ref["token_ids"]
                    row["first_difference"] = next(
                        (i for i, (a, b) in enumerate(zip(r["token_ids"], ref["token_ids"]))
                         if a != b), None)
                    # logprobs compared up to the first differing token (after it, other contexts)
                    n = row["first_difference"] if row["first_difference"] is not None else 24
                    row["max_logprob_diff"] = max(
                        (abs(a - b) for a, b in zip(r["logprobs"][:n + 1], ref["logprobs"][:n + 1])),
                        default=0.0)
                    ok &= row["tokens_equal"]
            except Exception as e:  # noqa: BLE001 -- reported; the check fails
                row["error"] = str(e)[-1200:]
                ok = False
                if ref is None:
                    break
            results["tokens"].append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "token_ids"}), flush=True)
    return ok


def latency(fastserve, specs, log, results, repeats, new_tokens):
    prompt = [100 + i for i in range(128)]
    for spec in specs:
        shape, layouts = split_spec(spec)
        runs = {l: [] for l in layouts}
        for rep in range(repeats):
            for layout in layouts:
                try:
                    r = generate(fastserve, shape, layout, prompt, new_tokens, log)
                    ms = 1e3 / r["timings"]["decode_tokens_per_s"]
                    runs[layout].append(ms)
                    print(f"{shape} round {rep + 1} {layout}: {ms:.3f} ms/token", flush=True)
                except Exception as e:  # noqa: BLE001
                    results.setdefault("errors", []).append(f"latency {shape} {layout}: {e}"[-800:])
                    print(f"{shape} round {rep + 1} {layout}: FAILED {str(e)[-300:]}", flush=True)
        results["latency"].append({"shape": shape, "ms_per_token": runs})


def wait_health(server, port, limit_s=300):
    t = time.time()
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"server exited {server.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return time.time() - t
        except Exception:  # noqa: BLE001
            if time.time() - t > limit_s:
                raise RuntimeError(f"server did not come up in {limit_s} s")
            time.sleep(1)


def throughput(fastserve, specs, log, results, max_num_seqs, max_output_len, num_prompts, port=8330,
               tokenizer=TOKENIZER, server_args=()):
    """Appends a row per layout to results["throughput"] (also used by dist_gpu_checks.py);
    server_args: more `serve` flags."""
    WORK.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        shape, layouts = split_spec(spec)
        for layout in layouts:
            cmd = [fastserve, "serve", "--device", "cuda", "--load-format", "dummy", "--model",
                   shape, "--tokenizer", tokenizer, "--served-model-name", shape, "--port",
                   str(port), "--max-num-seqs", str(max_num_seqs), *server_args]
            cmd, env = wrap(cmd, layout)
            tag = f"{shape}-{layout}"
            server_log = open(WORK / f"serve-{tag}.log", "w")
            server = subprocess.Popen(cmd, stdout=server_log, stderr=subprocess.STDOUT, env=env)
            row = {"shape": shape, "layout": layout, "max_num_seqs": max_num_seqs,
                   "server_args": " ".join(server_args),
                   "num_prompts": num_prompts, "max_output_len": max_output_len}
            try:
                row["startup_s"] = round(wait_health(server, port), 1)
                out = WORK / f"bench-{tag}.json"
                bench = [fastserve, "bench", "--base-url", f"http://127.0.0.1:{port}", "--dataset",
                         str(ROOT / "bench/data/sharegpt_200.jsonl"), "--tokenizer", tokenizer,
                         "--num-prompts", str(num_prompts), "--request-rate", "inf",
                         "--max-output-len", str(max_output_len), "--ignore-eos", "--seed", "0",
                         "--quiet", "--num-warmups", "4", "--result-json", str(out)]
                proc = subprocess.run(bench, capture_output=True, text=True, timeout=400)
                log.write(f"$ {' '.join(bench)} (exit {proc.returncode})\n{proc.stdout[-2000:]}\n"
                          f"{proc.stderr[-2000:]}\n")
                if proc.returncode != 0:
                    raise RuntimeError(f"bench exited {proc.returncode}: {proc.stderr[-800:]}")
                r = json.load(open(out))
                row.update({k: r.get(k) for k in ("completed", "duration", "request_throughput",
                                                   "output_throughput", "mean_e2el_ms",
                                                   "mean_ttft_ms", "mean_tpot_ms")})
            except Exception as e:  # noqa: BLE001
                row["error"] = str(e)[-800:]
            finally:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
                server_log.close()
            results["throughput"].append(row)
            print(json.dumps(row), flush=True)


def write_md(results, out):
    lines = ["# Issue 10 scaling checks (dummy bf16 weights, one GPU a rank)", ""]
    if results["tokens"]:
        lines += ["## Greedy tokens vs the first layout of each shape (40-token prompt, 24 tokens)",
                  "", "| shape | layout | vs | tokens equal | first difference | max logprob diff "
                  "(to it) | wall s |", "|---|---|---|---|---|---|---|"]
        for r in results["tokens"]:
            if "error" in r:
                lines.append(f"| {r['shape']} | {r['layout']} | | ERROR: {r['error'][:300]} | | | |")
            elif "tokens_equal" not in r:
                lines.append(f"| {r['shape']} | {r['layout']} | (reference) | | | | {r['wall_s']} |")
            else:
                lines.append(f"| {r['shape']} | {r['layout']} | {r['reference']} | "
                             f"{r['tokens_equal']} | {r['first_difference']} | "
                             f"{r['max_logprob_diff']:.2e} | {r['wall_s']} |")
    for lat in results["latency"]:
        lines += ["", f"## Batch-1 decode, {lat['shape']} (128-token prompt)", "",
                  "| layout | ms/token median | min | runs | vs first layout (median) |",
                  "|---|---|---|---|---|"]
        runs = lat["ms_per_token"]
        base = next((statistics.median(v) for v in runs.values() if v), None)
        for layout, ms in runs.items():
            if ms:
                med = statistics.median(ms)
                lines.append(f"| {layout} | {med:.3f} | {min(ms):.3f} | "
                             f"{', '.join(f'{x:.3f}' for x in ms)} | {med / base:.3f}x |")
    if results["throughput"]:
        lines += ["", "## Throughput: serve + bench, ShareGPT prompts all at once (rate inf)", "",
                  "| shape | layout | max-num-seqs | prompts | completed | duration s | output tok/s "
                  "| vs first layout | mean TPOT ms | startup s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        base = {}
        for r in results["throughput"]:
            if "error" in r:
                lines.append(f"| {r['shape']} | {r['layout']} | | | ERROR: {r['error'][:300]} |")
                continue
            b = base.setdefault(r["shape"], r["output_throughput"])
            lines.append(f"| {r['shape']} | {r['layout']} | {r['max_num_seqs']} | "
                         f"{r['num_prompts']} | {r['completed']} | {r['duration']:.1f} | "
                         f"{r['output_throughput']:.0f} | {r['output_throughput'] / b:.2f}x | "
                         f"{r['mean_tpot_ms']:.2f} | {r.get('startup_s')} |")
    for e in results.get("errors", []):
        lines.append(f"\nerror: {e}")
    (out / "scale_checks.md").write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fastserve", default=str(ROOT / "build-cuda" / "fastserve"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--phases", default="tokens,latency,throughput")
    ap.add_argument("--token-layouts", action="append", default=[])
    ap.add_argument("--latency-layouts", action="append", default=[])
    ap.add_argument("--throughput-layouts", action="append", default=[])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--latency-tokens", type=int, default=256)
    ap.add_argument("--max-num-seqs", type=int, default=128)
    ap.add_argument("--max-output-len", type=int, default=256)
    ap.add_argument("--num-prompts", type=int, default=500)
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    results = {"tokens": [], "latency": [], "throughput": []}
    phases = a.phases.split(",")
    ok = True
    with open(out / "scale_checks.log", "w") as log:
        def save():
            (out / "scale_checks.json").write_text(json.dumps(results, indent=1))
            write_md(results, out)
        if "tokens" in phases:
            ok = tokens(a.fastserve, a.token_layouts, log, results)
            save()
        if "latency" in phases:
            latency(a.fastserve, a.latency_layouts, log, results, a.repeats, a.latency_tokens)
            save()
        if "throughput" in phases:
            throughput(a.fastserve, a.throughput_layouts, log, results, a.max_num_seqs,
                       a.max_output_len, a.num_prompts)
            save()
    print((out / "scale_checks.md").read_text())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
