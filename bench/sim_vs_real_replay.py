#!/usr/bin/env python3
"""How closely the simulator predicts a real deployment (issue 10): for every real run of a
scripts/device/gpu_serving.sh sweep (raw/<shape>/<policy>-rate-<R>.json, `fastserve bench` result
JSONs), `fastserve sim --replay` simulates exactly those requests at their send times with the
deployment's profile (`fastserve profile` of the same layout), the same policy, batch limits and
KV pools; prints real vs simulated mean / p99 JCT and mean TTFT, and sim / real.

    python3 bench/sim_vs_real_replay.py --raw RAW_DIR/llama-3-70b --profile profile.json \\
      --device-blocks 1024 --host-blocks 4096 --max-seqs 32 [--fastserve build/fastserve] [--json OUT]
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True, help="folder of <policy>-rate-<R>.json bench results")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--device-blocks", type=int, required=True)
    ap.add_argument("--host-blocks", type=int, required=True)
    ap.add_argument("--max-seqs", type=int, required=True)
    ap.add_argument("--max-tokens", type=int, default=2048, help="serve's --max-num-batched-tokens")
    ap.add_argument("--fastserve", default=os.path.join(ROOT, "build", "fastserve"))
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args()
    prof = json.load(open(a.profile))
    block_bytes = prof["kv_bytes_per_token"] * prof["block_size_tokens"]
    rows = []
    for path in sorted(glob.glob(os.path.join(a.raw, "*-rate-*.json"))):
        m = re.fullmatch(r"(.+)-rate-([0-9.]+)\.json", os.path.basename(path))
        if not m:
            continue
        policy, rate = m.group(1), float(m.group(2))
        real = json.load(open(path))
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            cmd = [a.fastserve, "sim", "--replay", path, "--policy", policy, "--model-profile",
                   a.profile, "--max-batch-seqs", str(a.max_seqs), "--max-batch-tokens",
                   str(a.max_tokens), "--device-mem", f"{a.device_blocks * block_bytes / 1e9:.9f}",
                   "--host-mem", f"{a.host_blocks * block_bytes / 1e9:.9f}", "--result-json",
                   out.name]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                sys.exit(f"{' '.join(cmd)}: {proc.stderr}")
            sim = json.load(open(out.name))
        sim = sim["runs"][0] if "runs" in sim else sim
        row = {"policy": policy, "rate": rate, "requests": real["completed"]}
        for k in ("mean_e2el_ms", "p99_e2el_ms", "mean_ttft_ms", "mean_tpot_ms"):
            row[f"real_{k}"] = real[k]
            row[f"sim_{k}"] = sim[k]
        row["sim_num_preemptions"] = sim.get("num_preemptions")
        row["sim_swapped_bytes"] = sim.get("swapped_bytes")
        rows.append(row)
    if not rows:
        sys.exit(f"no <policy>-rate-<R>.json in {a.raw}")
    print("| policy | rate req/s | requests | real mean / p99 JCT s | sim mean / p99 JCT s | "
          "sim / real mean JCT | sim / real p99 | real / sim mean TTFT ms | real / sim TPOT ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['policy']} | {r['rate']:g} | {r['requests']} | "
              f"{r['real_mean_e2el_ms'] / 1e3:.2f} / {r['real_p99_e2el_ms'] / 1e3:.2f} | "
              f"{r['sim_mean_e2el_ms'] / 1e3:.2f} / {r['sim_p99_e2el_ms'] / 1e3:.2f} | "
              f"{r['sim_mean_e2el_ms'] / r['real_mean_e2el_ms']:.3f} | "
              f"{r['sim_p99_e2el_ms'] / r['real_p99_e2el_ms']:.3f} | "
              f"{r['real_mean_ttft_ms']:.0f} / {r['sim_mean_ttft_ms']:.0f} | "
              f"{r['real_mean_tpot_ms']:.1f} / {r['sim_mean_tpot_ms']:.1f} |")
    errs = [abs(r["sim_mean_e2el_ms"] / r["real_mean_e2el_ms"] - 1) for r in rows]
    print(f"\nmean JCT error |sim / real - 1|: median {statistics.median(errs):.1%}, "
          f"max {max(errs):.1%} over {len(rows)} runs")
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
