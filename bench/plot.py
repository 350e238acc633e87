#!/usr/bin/env python3
"""Plots and summarizes a bench/compare.sh run: mean and p99 JCT vs request rate, TTFT and TPOT CDFs,
one line per system/policy, per dataset; a markdown table and summary.json (no per-request arrays
except the few the CDFs need) next to the raw results.

    python bench/plot.py bench/results/<date>/<tag> [--img-dir docs/img] [--prefix serving-f32]

Reads <dir>/raw/<dataset>/<system>-rate-<R>.json (fastserve bench sweep files, vLLM key names) and
<dir>/raw/<dataset>-<system>-idle.json (one request at a time). The SLO for "throughput at the SLO"
is the issue's: mean normalized latency (E2E latency / output tokens) <= 5x that of a request on an
idle server; the idle reference is the fastest system's idle mean normalized latency, so every system
is held to the same absolute bound (the per-system bound is in summary.json too).
"""
import argparse
import glob
import json
import math
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["fs-sjmlfq", "fs-fcfs", "fs-vllm", "vllm-cpu", "llamacpp"]
NAMES = {"fs-sjmlfq": "FastServe skip-join MLFQ", "fs-fcfs": "FastServe FCFS",
         "fs-vllm": "FastServe vLLM-policy", "vllm-cpu": "vLLM CPU", "llamacpp": "llama.cpp server"}
STYLE = {"fs-sjmlfq": ("C0", "o", "-"), "fs-fcfs": ("C1", "s", "-"), "fs-vllm": ("C2", "^", "-"),
         "vllm-cpu": ("C3", "D", "--"), "llamacpp": ("C4", "v", "--")}
SLO_SCALE = 5.0


def rate_value(r):
    return math.inf if r in ("inf", None) or (isinstance(r, float) and math.isinf(r)) else float(r)


def per_request_tpot(j):
    out = []
    for ttft, e2el, n in zip(j.get("ttfts", []), j.get("e2els", []), j.get("output_lens", [])):
        if n and n > 1 and e2el > 0:
            out.append((e2el - ttft) / (n - 1) * 1000)
    return out


def norm_latency_ms(j):
    return [e2el / n * 1000 for e2el, n in zip(j.get("e2els", []), j.get("output_lens", [])) if n and e2el > 0]


def load(run_dir):
    runs = {}  # (dataset, system) -> {rate: json}
    for path in glob.glob(os.path.join(run_dir, "raw", "*", "*-rate-*.json")):
        ds = os.path.basename(os.path.dirname(path))
        m = re.match(r"(.+)-rate-(.+)\.json$", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            runs.setdefault((ds, m.group(1)), {})[rate_value(m.group(2))] = json.load(f)
    idle = {}
    for path in glob.glob(os.path.join(run_dir, "raw", "*-idle.json")):
        m = re.match(r"([a-z0-9_]+)-(.+)-idle\.json$", os.path.basename(path))
        if m:
            with open(path) as f:
                idle[(m.group(1), m.group(2))] = json.load(f)
    return runs, idle


def systems_of(keys):
    found = {s for _, s in keys}
    return [s for s in ORDER if s in found] + sorted(found - set(ORDER))


def slo_throughput(points, slo_ms):
    """Highest request throughput with mean normalized latency <= slo_ms, interpolating linearly
    (in achieved throughput) between the last finite rate inside the SLO and the first outside."""
    pts = sorted((r, j) for r, j in points.items() if not math.isinf(r))
    best, prev = 0.0, None
    for _, j in pts:
        nl, tp = j["mean_normalized_latency_ms"], j["request_throughput"]
        if nl <= slo_ms:
            best = max(best, tp)
            prev = (nl, tp)
        else:
            if prev is not None and nl > prev[0]:
                best = max(best, prev[1] + (tp - prev[1]) * (slo_ms - prev[0]) / (nl - prev[0]))
            break
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--img-dir", default="docs/img")
    ap.add_argument("--prefix", default=None, help="PNG name prefix (default: serving-<dir name>)")
    ap.add_argument("--cdf-rate", default=None, help="rate for the CDFs (default: highest finite rate)")
    args = ap.parse_args()
    prefix = args.prefix or "serving-" + os.path.basename(os.path.normpath(args.run_dir))
    runs, idle = load(args.run_dir)
    os.makedirs(args.img_dir, exist_ok=True)
    summary = {"run_dir": args.run_dir, "datasets": {}}
    for ds in sorted({d for d, _ in runs}):
        syss = [s for s in systems_of(runs) if (ds, s) in runs]
        idle_nl = {s: idle[(ds, s)]["mean_normalized_latency_ms"] for s in syss if (ds, s) in idle}
        ref = min(idle_nl.values()) if idle_nl else None
        slo = ref * SLO_SCALE if ref else None
        dsum = {"idle_reference_normalized_latency_ms": ref, "slo_mean_normalized_latency_ms": slo,
                "systems": {}}
        # --- JCT vs rate ---
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        for s in syss:
            pts = sorted((r, j) for r, j in runs[(ds, s)].items() if not math.isinf(r))
            if not pts:
                continue
            c, mk, ls = STYLE.get(s, (None, "x", ":"))
            xs = [r for r, _ in pts]
            axes[0].plot(xs, [j["mean_e2el_ms"] / 1000 for _, j in pts], color=c, marker=mk, ls=ls, label=NAMES.get(s, s))
            axes[1].plot(xs, [j["p99_e2el_ms"] / 1000 for _, j in pts], color=c, marker=mk, ls=ls, label=NAMES.get(s, s))
            axes[2].plot(xs, [j["mean_normalized_latency_ms"] for _, j in pts], color=c, marker=mk, ls=ls,
                         label=NAMES.get(s, s))
        axes[0].set_ylabel("mean JCT (s)")
        axes[1].set_ylabel("p99 JCT (s)")
        axes[2].set_ylabel("mean normalized latency (ms/token)")
        if slo:
            axes[2].axhline(slo, color="gray", ls=":", label=f"SLO {slo:.0f} ms/token")
        for ax in axes:
            ax.set_xlabel("request rate (req/s)")
            ax.grid(alpha=0.3)
            ax.set_yscale("log")
        axes[2].legend(fontsize=8)
        fig.suptitle(f"{ds}: JCT vs request rate ({os.path.basename(os.path.normpath(args.run_dir))})")
        fig.tight_layout()
        fig.savefig(os.path.join(args.img_dir, f"{prefix}-{ds}-jct.png"), dpi=110)
        plt.close(fig)
        # --- CDFs at one rate ---
        finite = sorted({r for s in syss for r in runs[(ds, s)] if not math.isinf(r)})
        cdf_rate = rate_value(args.cdf_rate) if args.cdf_rate else (finite[-1] if finite else None)
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for s in syss:
            j = runs[(ds, s)].get(cdf_rate)
            if j is None:
                continue
            c, _, ls = STYLE.get(s, (None, "x", ":"))
            for ax, vals in ((axes[0], [t * 1000 for t in j.get("ttfts", []) if t > 0]), (axes[1], per_request_tpot(j))):
                vals = sorted(vals)
                if vals:
                    ax.plot(vals, [(i + 1) / len(vals) for i in range(len(vals))], color=c, ls=ls, label=NAMES.get(s, s))
        axes[0].set_xlabel("TTFT (ms)")
        axes[1].set_xlabel("TPOT (ms)")
        for ax in axes:
            ax.set_ylabel("fraction of requests")
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=8)
        fig.suptitle(f"{ds}: TTFT and TPOT CDFs at {cdf_rate} req/s")
        fig.tight_layout()
        fig.savefig(os.path.join(args.img_dir, f"{prefix}-{ds}-cdf.png"), dpi=110)
        plt.close(fig)
        # --- table ---
        print(f"\n### {ds}\n")
        if ref:
            print(f"Idle reference (fastest system, one request at a time): {ref:.1f} ms/token; "
                  f"SLO = {SLO_SCALE:g}x = {slo:.0f} ms/token mean normalized latency.\n")
        print("| system | rate (req/s) | done | req/s | out tok/s | mean JCT (s) | p99 JCT (s) | mean TTFT (ms) | "
              "p99 TTFT (ms) | mean TPOT (ms) | mean norm. lat. (ms/tok) | p95 norm. lat. |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in syss:
            srows = []
            for r, j in sorted(runs[(ds, s)].items()):
                row = {k: j.get(k) for k in (
                    "completed", "failed", "duration", "request_throughput", "output_throughput",
                    "total_input_tokens", "total_output_tokens", "mean_e2el_ms", "median_e2el_ms", "p99_e2el_ms",
                    "mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p99_tpot_ms", "mean_itl_ms",
                    "mean_normalized_latency_ms", "p95_normalized_latency_ms")}
                row["request_rate"] = "inf" if math.isinf(r) else r
                srows.append(row)
                print(f"| {NAMES.get(s, s)} | {row['request_rate']} | {j['completed']}/{j['num_prompts']} | "
                      f"{j['request_throughput']:.3f} | {j['output_throughput']:.1f} | {j['mean_e2el_ms'] / 1000:.1f} | "
                      f"{j['p99_e2el_ms'] / 1000:.1f} | {j['mean_ttft_ms']:.0f} | {j['p99_ttft_ms']:.0f} | "
                      f"{j['mean_tpot_ms']:.1f} | {j['mean_normalized_latency_ms']:.1f} | "
                      f"{j['p95_normalized_latency_ms']:.1f} |")
            sat = runs[(ds, s)].get(math.inf)
            dsum["systems"][s] = {
                "runs": srows,
                "idle_mean_normalized_latency_ms": idle_nl.get(s),
                "idle_mean_tpot_ms": idle[(ds, s)]["mean_tpot_ms"] if (ds, s) in idle else None,
                "saturation_request_throughput": sat["request_throughput"] if sat else None,
                "saturation_output_throughput": sat["output_throughput"] if sat else None,
                "throughput_at_slo": slo_throughput(runs[(ds, s)], slo) if slo else None,
                "throughput_at_own_slo": slo_throughput(runs[(ds, s)], idle_nl[s] * SLO_SCALE) if s in idle_nl else None,
                "cdf_rate": cdf_rate,
                "cdf_ttfts_s": runs[(ds, s)][cdf_rate].get("ttfts") if cdf_rate in runs[(ds, s)] else None,
                "cdf_tpots_ms": per_request_tpot(runs[(ds, s)][cdf_rate]) if cdf_rate in runs[(ds, s)] else None,
            }
        print("\n| system | idle norm. lat. (ms/tok) | idle TPOT (ms) | saturation req/s | saturation out tok/s | "
              "req/s at the SLO (common) | req/s at own 5x idle |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        fmt = lambda v, p=2: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
        for s in syss:
            d = dsum["systems"][s]
            print(f"| {NAMES.get(s, s)} | {fmt(d['idle_mean_normalized_latency_ms'], 1)} | {fmt(d['idle_mean_tpot_ms'], 1)} | "
                  f"{fmt(d['saturation_request_throughput'], 3)} | {fmt(d['saturation_output_throughput'], 1)} | "
                  f"{fmt(d['throughput_at_slo'], 3)} | {fmt(d['throughput_at_own_slo'], 3)} |")
        summary["datasets"][ds] = dsum
    with open(os.path.join(args.run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\nwrote {os.path.join(args.run_dir, 'summary.json')} and {args.img_dir}/{prefix}-*.png")


if __name__ == "__main__":
    main()
