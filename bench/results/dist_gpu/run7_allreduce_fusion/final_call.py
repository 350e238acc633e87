# One device call on the 2x H200 machine (after scripts/device/build.sh fastserve): batch-1 decode
# latency (one GPU, TP=2 with the GEMVs sending their outputs, TP=2 with the all-reduce kernel
# sending), then serve + bench throughput of the Llama-3-8B shape, 3000 ShareGPT prompts at once:
# one GPU, PP=2 with 2 and 3 batches in flight, TP=2.
#   python3 bench/results/dist_gpu/run7_allreduce_fusion/final_call.py   ($OUT set)
import json, os, statistics, sys
sys.path.insert(0, "scripts/device")
import dist_gpu_checks as d
import scale_checks as sc
out = os.environ["OUT"]
prompt = ",".join(str(100 + i) for i in range(128))
args = ["--load-format", "dummy", "--model", "llama-3-8b", "--tokenizer",
        "tests/fixtures/tokenizer/smollm2-vocab.gguf", "--prompt-ids", prompt, "--max-tokens", "384",
        "--ignore-eos"]
layouts = [("one GPU", None, {}), ("TP=2", ("--tp", 2), {}),
           ("TP=2, all-reduce kernel sends", ("--tp", 2), {"FASTSERVE_TP_FUSED_ALLREDUCE": "0"})]
runs = {l: [] for l, _, _ in layouts}
log = open("/tmp/final.log", "w")
for rep in range(3):
    for label, layout, env in layouts:
        r = d.launch("build-cuda/fastserve", layout, args, log, extra_env=env)
        runs[label].append(1e3 / r["timings"]["decode_tokens_per_s"])
base = statistics.median(runs["one GPU"])
lines = ["| layout | ms/token median | min | runs | vs one GPU |", "|---|---|---|---|---|"]
for l, v in runs.items():
    lines.append(f"| {l} | {statistics.median(v):.3f} | {min(v):.3f} | "
                 f"{', '.join(f'{x:.3f}' for x in v)} | {statistics.median(v) / base:.3f}x |")
print("\n".join(lines), flush=True)
open(f"{out}/latency.md", "w").write("\n".join(lines) + "\n")
res = {"throughput": []}
for layout, seqs, extra in [("1", 256, ()), ("pp2", 256, ()), ("pp2", 256, ("--pp-micro-batches", "3")),
                            ("pp2", 384, ("--pp-micro-batches", "3")), ("tp2", 256, ())]:
    sc.throughput("build-cuda/fastserve", [f"llama-3-8b:{layout}"], log, res, seqs, 256, 3000,
                  server_args=extra)
    json.dump(res, open(f"{out}/throughput.json", "w"), indent=1)
