#!/usr/bin/env python3
"""Reproduces the paper's comparisons in the simulator (docs/SCHEDULING.md, "Results").

Runs `fastserve sim --sweep` per policy / setting, saves every result JSON under --out-dir, plots PNGs
into --img-dir and prints a markdown summary (sustainable rates at the normalized-latency SLO, JCT
ratios, the KV ablation, demotions, the sensitivity study).

  python3 bench/sim_sweep.py --bin build/fastserve --num-requests 3000
Needs matplotlib for the plots (skipped with a warning without it).
"""
import argparse
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
POLICIES = ["skip-join-mlfq", "mlfq", "fcfs", "vllm", "srpt", "fcfs-orca"]
SHAREGPT_RATES = [0.6, 0.9, 1.1, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 2.0]
ALPACA_RATES = [3, 5, 7, 8, 9, 10, 11, 12, 13, 14]


def sim(args, name, extra, rates):
    out = pathlib.Path(args.out_dir) / f"{name}.json"
    cmd = [args.bin, "sim", "--datasets-dir", args.datasets_dir, "--num-requests",
           str(args.num_requests), "--seed", str(args.seed), "--model-profile",
           str(ROOT / "bench/profiles/opt13b_a100.json"), "--sweep",
           ",".join(str(r) for r in rates), "--result-json", str(out), *extra]
    print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["runs"]


def vllm_policy_args(policy):
    # vLLM preempts by recompute (its default for single-sequence requests); the others swap.
    # fcfs-orca: fcfs reserving the maximum length (2048 tokens) per job, as Orca does.
    if policy == "fcfs-orca":
        return ["--policy", "fcfs", "--fcfs-reserve-tokens", "2048"]
    return ["--policy", policy] + (["--kv-policy", "recompute"] if policy == "vllm" else [])


def sustainable_rate(runs, slo):
    """Highest rate before mean normalized latency first crosses slo (linear interpolation)."""
    prev = None
    for r in runs:
        rate, lat = float(r["request_rate"]), r["mean_normalized_latency_s"]
        if lat > slo:
            if prev is None:
                return 0.0
            (r0, l0) = prev
            return r0 + (rate - r0) * (slo - l0) / (lat - l0)
        prev = (rate, lat)
    return float(runs[-1]["request_rate"])


def plot_sweep(args, title, results, metric, ylabel, fname, log=True):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", fname, file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, runs in results.items():
        ax.plot([float(r["request_rate"]) for r in runs], [r[metric] for r in runs], marker="o",
                label=label)
    if metric == "mean_normalized_latency_s":
        ax.axhline(args.slo, color="gray", ls="--", lw=1, label=f"SLO {args.slo} s/token")
    ax.set_xlabel("request rate (req/s)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(pathlib.Path(args.img_dir) / fname, dpi=110)
    plt.close(fig)


def policy_sweep(args, trace, rates, tag, extra=()):
    results = {p: sim(args, f"{tag}_{p}", ["--trace", trace, *vllm_policy_args(p), *extra], rates)
               for p in POLICIES}
    title = f"{tag}: OPT-13B / A100 (sim)"
    plot_sweep(args, title, results, "mean_normalized_latency_s", "mean normalized latency (s/token)",
               f"sim_{tag}_norm_latency.png")
    plot_sweep(args, title, results, "mean_e2el_ms", "mean JCT (ms)", f"sim_{tag}_mean_jct.png")
    plot_sweep(args, title, results, "p99_e2el_ms", "p99 JCT (ms)", f"sim_{tag}_p99_jct.png")
    print(f"\n### {tag}\n")
    print("| policy | sustainable rate @ {} s/token | vs vllm | vs fcfs |".format(args.slo))
    print("| --- | ---: | ---: | ---: |")
    sr = {p: sustainable_rate(results[p], args.slo) for p in POLICIES}
    for p in POLICIES:
        vs_v = sr[p] / sr["vllm"] if sr["vllm"] else float("inf")
        vs_f = sr[p] / sr["fcfs"] if sr["fcfs"] else float("inf")
        print(f"| {p} | {sr[p]:.2f} | {vs_v:.2f}x | {vs_f:.2f}x |")
    print("\n| rate | " + " | ".join(f"{p} mean/p99 JCT s, norm s/tok" for p in POLICIES) + " |")
    print("| --- |" + " ---: |" * len(POLICIES))
    for i, rate in enumerate(rates):
        cells = []
        for p in POLICIES:
            r = results[p][i]
            cells.append(f"{r['mean_e2el_ms']/1e3:.1f} / {r['p99_e2el_ms']/1e3:.1f}, "
                         f"{r['mean_normalized_latency_s']:.3f}")
        print(f"| {rate} | " + " | ".join(cells) + " |")
    return results


def kv_ablation(args):
    rates = [1.0, 1.2, 1.3, 1.4, 1.5, 1.6]
    results = {kv: sim(args, f"kv_{kv}", ["--trace", "sharegpt", "--kv-policy", kv], rates)
               for kv in ["proactive", "reactive", "recompute"]}
    plot_sweep(args, "KV policy ablation, skip-join MLFQ, ShareGPT", results,
               "mean_e2el_ms", "mean JCT (ms)", "sim_kv_ablation.png")
    print("\n### KV-policy ablation (skip-join MLFQ, ShareGPT)\n")
    print("| rate | " + " | ".join(f"{k} mean/p99 JCT s, swapped GB, drops" for k in results) + " |")
    print("| --- |" + " ---: |" * len(results))
    for i, rate in enumerate(rates):
        cells = [f"{r[i]['mean_e2el_ms']/1e3:.1f} / {r[i]['p99_e2el_ms']/1e3:.1f}, "
                 f"{r[i]['swapped_bytes']/1e9:.0f}, {r[i]['num_drops']}" for r in results.values()]
        print(f"| {rate} | " + " | ".join(cells) + " |")


def sensitivity(args, rate):
    studies = {
        "q1_ms": ("--q1-ms", [2, 5, 10, 20, 50, 100]),
        "ratio": ("--ratio", [1.5, 2, 4, 8]),
        "num_queues": ("--num-queues", [2, 4, 8, 16, 32]),
        "starvation_s": ("--starvation-s", [1, 3, 10, 30]),
        "starvation_multiple": ("--starvation-multiple", [0, 10, 50, 200]),
    }
    print(f"\n### Sensitivity (skip-join MLFQ, ShareGPT, rate {rate})\n")
    print("| parameter | value | mean JCT s | p99 JCT s | mean norm s/tok | demotions | promotions |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = {}
    for name, (flag, values) in studies.items():
        rows[name] = []
        for v in values:
            r = sim(args, f"sens_{name}_{v}", ["--trace", "sharegpt", flag, str(v)], [rate])[0]
            rows[name].append((v, r))
            print(f"| {name} | {v} | {r['mean_e2el_ms']/1e3:.2f} | {r['p99_e2el_ms']/1e3:.1f} | "
                  f"{r['mean_normalized_latency_s']:.3f} | {r['num_demotions']} | "
                  f"{r['num_promotions']} |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3))
        for ax, (name, pts) in zip(axes, rows.items()):
            ax.plot([str(v) for v, _ in pts], [r["mean_e2el_ms"] / 1e3 for _, r in pts], "o-",
                    label="mean")
            ax.plot([str(v) for v, _ in pts], [r["p99_e2el_ms"] / 1e3 for _, r in pts], "s--",
                    label="p99")
            ax.set_xlabel(name)
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("JCT (s)")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(pathlib.Path(args.img_dir) / "sim_sensitivity.png", dpi=110)
        plt.close(fig)
    except ImportError:
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "build" / "fastserve"))
    ap.add_argument("--datasets-dir", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results" / "sim"))
    ap.add_argument("--img-dir", default=str(ROOT / "docs" / "img"))
    ap.add_argument("--num-requests", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slo", type=float, default=0.3)
    ap.add_argument("--only", default="all", help="sharegpt,alpaca,gamma,kv,sens or all")
    args = ap.parse_args()
    pathlib.Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.img_dir).mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    run = lambda key: "all" in only or key in only  # noqa: E731
    if run("sharegpt"):
        sg = policy_sweep(args, "sharegpt", SHAREGPT_RATES, "sharegpt")
        print("\n### Demotions, skip-join vs plain MLFQ (ShareGPT)\n")
        print("| rate | skip-join demotions | mlfq demotions |")
        print("| --- | ---: | ---: |")
        for a, b in zip(sg["skip-join-mlfq"], sg["mlfq"]):
            print(f"| {a['request_rate']} | {a['num_demotions']} | {b['num_demotions']} |")
    if run("alpaca"):
        policy_sweep(args, "alpaca", ALPACA_RATES, "alpaca")
    if run("gamma"):
        for cv in (2, 4):
            policy_sweep(args, "sharegpt", SHAREGPT_RATES, f"sharegpt_gamma_cv{cv}",
                         ["--arrival", "gamma", "--cv", str(cv)])
    if run("kv"):
        kv_ablation(args)
    if run("sens"):
        sensitivity(args, 1.4)


if __name__ == "__main__":
    main()
