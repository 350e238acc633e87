#!/usr/bin/env python3
"""Reproduces the paper's comparisons in the simulator (docs/SCHEDULING.md, "Results").

Runs `fastserve sim --sweep` per policy / setting and seed, one simulation at a time (nice -n 5),
keeps every result JSON under --out-dir/raw (git-ignored), writes the key metrics of every point to
--out-dir/runs_<only>.csv (the figures the docs cite), plots PNGs into --img-dir and prints a
markdown summary (also --out-dir/tables_<only>.md): sustainable rates at the normalized-latency
SLO, JCT at ~90% of fcfs's saturation rate, the KV ablations, demotions, the sensitivity study,
the heavier-tailed traces. Every point is run with each of --seeds (sampling and arrivals); tables
give the median and, in parentheses, min-max.

  python3 bench/sim_sweep.py --bin build-sim/fastserve --num-requests 3000 --seeds 0,1,2
  python3 bench/sim_sweep.py ... --only traces --reuse    # tables/plots again from raw/
Needs matplotlib for the plots (skipped with a warning without it).
"""
import argparse
import csv
import json
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
POLICIES = ["skip-join-mlfq", "mlfq", "fcfs", "vllm", "srpt", "fcfs-orca"]
MEM_POLICIES = ["skip-join-mlfq", "mlfq", "fcfs", "vllm", "srpt"]
SHAREGPT_RATES = [0.6, 0.9, 1.1, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 2.0]
ALPACA_RATES = [3, 5, 7, 8, 9, 10, 11, 12, 13, 14]
MEM256_RATES = [1.4, 1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.4]
# Heavier-tailed traces: rates as fractions of fcfs's saturation rate (its throughput with every
# request at t = 0), so one grid fits every trace and batch limit.
TRACE_FRACTIONS = [0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.7, 2.0]
CSV_KEYS = ["request_rate", "mean_e2el_ms", "median_e2el_ms", "p99_e2el_ms", "mean_ttft_ms",
            "mean_normalized_latency_s", "p99_normalized_latency_s", "request_throughput",
            "num_demotions", "num_promotions", "num_preemptions", "num_drops", "swapped_bytes",
            "busy_fraction", "mean_batch_size", "duration", "sim_wall_s"]

MD = []  # the markdown summary, also printed
ROWS = []  # one per simulated point: experiment, seed, CSV_KEYS


def out(line=""):
    print(line, flush=True)
    MD.append(line)


def sim(args, name, extra, rates, seed):
    raw = pathlib.Path(args.out_dir) / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    path = raw / f"{name}_s{seed}.json"
    cmd = [args.bin, "sim", "--datasets-dir", args.datasets_dir, "--num-requests",
           str(args.num_requests), "--seed", str(seed), "--model-profile",
           str(ROOT / "bench/profiles/opt13b_a100.json"), "--sweep",
           ",".join(str(r) for r in rates), "--result-json", str(path), *extra]
    if not (args.reuse and path.exists()):
        print("$ nice -n 5 fastserve", " ".join(cmd[1:]), file=sys.stderr, flush=True)
        subprocess.run(["nice", "-n", "5", *cmd], check=True, stdout=subprocess.DEVNULL)
    runs = json.loads(path.read_text())["runs"]
    for r in runs:
        ROWS.append([name, seed, *[round(r[k], 4) if isinstance(r.get(k), float) else r.get(k, "")
                                   for k in CSV_KEYS]])
    return runs


def sim_seeds(args, name, extra, rates):
    """{seed: runs} for every seed."""
    return {s: sim(args, name, extra, rates, s) for s in args.seed_list}


def policy_args(policy):
    # vLLM preempts by recompute (its default for single-sequence requests); the others swap.
    # fcfs-orca: fcfs reserving the maximum length (2048 tokens) per job, as Orca does.
    if policy == "fcfs-orca":
        return ["--policy", "fcfs", "--fcfs-reserve-tokens", "2048"]
    return ["--policy", policy] + (["--kv-policy", "recompute"] if policy == "vllm" else [])


def sustainable_rate(runs, slo):
    """Highest rate before mean normalized latency first crosses slo (linear interpolation);
    the last rate of the sweep (a lower bound) when it never crosses."""
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


def spread(values, fmt="{:.1f}"):
    """'median (min-max)' over seeds; just the value for one seed."""
    med = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def metric(by_seed, i, key, scale=1.0):
    return [runs[i][key] * scale for runs in by_seed.values()]


def plot_sweep(args, title, results, key, ylabel, fname, log=True, scale=1.0):
    """results: {label: {seed: runs}}; median line, min-max band."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", fname, file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, by_seed in results.items():
        runs0 = next(iter(by_seed.values()))
        xs = [float(r["request_rate"]) for r in runs0]
        vals = [metric(by_seed, i, key, scale) for i in range(len(xs))]
        line, = ax.plot(xs, [statistics.median(v) for v in vals], marker="o", label=label)
        if len(by_seed) > 1:
            ax.fill_between(xs, [min(v) for v in vals], [max(v) for v in vals],
                            color=line.get_color(), alpha=0.15, lw=0)
    if key == "mean_normalized_latency_s":
        ax.axhline(args.slo, color="gray", ls="--", lw=1, label=f"SLO {args.slo} s/token")
    ax.set_xlabel("request rate (req/s)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    n = len(args.seed_list)
    seeds = f", median of {n} seeds (band: min-max)" if n > 1 else ""
    ax.set_title(title + seeds, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(pathlib.Path(args.img_dir) / fname, dpi=110)
    plt.close(fig)


def fcfs_saturation(args, tag, trace_args):
    """fcfs throughput with every request at t = 0, median over seeds (req/s)."""
    by_seed = sim_seeds(args, f"{tag}_fcfs_inf", [*trace_args, "--policy", "fcfs"], ["inf"])
    thr = [runs[0]["request_throughput"] for runs in by_seed.values()]
    jobs = [runs[0]["mean_batch_size"] for runs in by_seed.values()]
    out(f"\nfcfs saturation ({tag}, `--rate inf --policy fcfs`): {spread(thr, '{:.2f}')} req/s, "
        f"{spread(jobs, '{:.1f}')} jobs per iteration")
    return statistics.median(thr)


def jct_at(args, tag, trace_args, policies, rate, label, base="fcfs"):
    """Every policy at one rate (3 seeds): mean / p99 JCT and the ratios the paper quotes."""
    res = {p: sim_seeds(args, f"{tag}_at90_{p}", [*trace_args, *policy_args(p)], [rate])
           for p in policies}
    out(f"\nAt {label} ({rate} req/s), median (min-max) over seeds:\n")
    out(f"| policy | mean JCT s | p99 JCT s | mean norm s/tok | {base} / this, mean JCT | "
        f"{base} / this, p99 JCT | this / srpt, mean JCT |")
    out("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p in policies:
        mean = metric(res[p], 0, "mean_e2el_ms", 1e-3)
        p99 = metric(res[p], 0, "p99_e2el_ms", 1e-3)
        norm = metric(res[p], 0, "mean_normalized_latency_s")
        f_mean = [a / b for a, b in zip(metric(res[base], 0, "mean_e2el_ms", 1e-3), mean)]
        f_p99 = [a / b for a, b in zip(metric(res[base], 0, "p99_e2el_ms", 1e-3), p99)]
        vs_srpt = [b / a for a, b in zip(metric(res["srpt"], 0, "mean_e2el_ms", 1e-3), mean)]
        out(f"| {p} | {spread(mean)} | {spread(p99)} | {spread(norm, '{:.3f}')} | "
            f"{spread(f_mean, '{:.2f}')}x | {spread(f_p99, '{:.2f}')}x | "
            f"{spread(vs_srpt, '{:.2f}')}x |")
    return res


def policy_sweep(args, tag, trace_args, rates, policies=POLICIES, at90=None):
    results = {p: sim_seeds(args, f"{tag}_{p}", [*trace_args, *policy_args(p)], rates)
               for p in policies}
    title = f"{tag}: OPT-13B / A100 (sim)"
    plot_sweep(args, title, results, "mean_normalized_latency_s",
               "mean normalized latency (s/token)", f"sim_{tag}_norm_latency.png")
    plot_sweep(args, title, results, "mean_e2el_ms", "mean JCT (s)", f"sim_{tag}_mean_jct.png",
               scale=1e-3)
    plot_sweep(args, title, results, "p99_e2el_ms", "p99 JCT (s)", f"sim_{tag}_p99_jct.png",
               scale=1e-3)
    out(f"\n### {tag}\n")
    out(f"Sustainable rate @ {args.slo} s/token (per seed; ratios per seed, same requests and "
        "arrivals), median (min-max):\n")
    bases = [b for b in ("vllm", "fcfs", "fcfs-orca") if b in policies]
    out("| policy | sustainable rate req/s | " + " | ".join(f"vs {b}" for b in bases) + " |")
    out("| --- | ---: |" + " ---: |" * len(bases))
    sr = {p: [sustainable_rate(runs, args.slo) for runs in results[p].values()] for p in policies}
    last = float(rates[-1])
    for p in policies:
        cell = spread(sr[p], "{:.2f}")
        if max(sr[p]) >= last:
            cell = f"≥ {cell}" if min(sr[p]) >= last else f"{cell} (≥ {last} on some seeds)"
        ratios = []
        for base in bases:
            if base in sr and all(sr[base]):
                ratios.append(spread([a / b for a, b in zip(sr[p], sr[base])], "{:.2f}") + "x")
            else:
                ratios.append("")
        out(f"| {p} | {cell} | " + " | ".join(ratios) + " |")
    out(f"\nMean / p99 JCT s, mean normalized latency s/token: median over seeds; (min-max) of "
        "the mean JCT:\n")
    out("| rate | " + " | ".join(policies) + " |")
    out("| --- |" + " ---: |" * len(policies))
    for i, rate in enumerate(rates):
        cells = []
        for p in policies:
            mean = metric(results[p], i, "mean_e2el_ms", 1e-3)
            p99 = statistics.median(metric(results[p], i, "p99_e2el_ms", 1e-3))
            norm = statistics.median(metric(results[p], i, "mean_normalized_latency_s"))
            cells.append(f"{spread(mean)} / {p99:.0f}, {norm:.3f}")
        out(f"| {rate} | " + " | ".join(cells) + " |")
    if at90 is not None:
        jct_at(args, tag, trace_args, [p for p in policies if p != "fcfs-orca"], at90,
               "~90% of fcfs's saturation rate")
    return results


def kv_ablation(args, tag, trace_args, rates):
    results = {kv: sim_seeds(args, f"{tag}_{kv}", [*trace_args, "--kv-policy", kv], rates)
               for kv in ["proactive", "reactive", "recompute"]}
    plot_sweep(args, f"KV policy ablation, skip-join MLFQ ({tag})", results, "mean_e2el_ms",
               "mean JCT (s)", f"sim_{tag}.png", scale=1e-3)
    out(f"\n### KV-policy ablation (skip-join MLFQ, {tag})\n")
    out("Mean JCT s median (min-max) / p99 JCT s, norm s/tok, swapped GB, jobs dropped "
        "(medians):\n")
    out("| rate | " + " | ".join(results) + " |")
    out("| --- |" + " ---: |" * len(results))
    for i, rate in enumerate(rates):
        cells = []
        for by_seed in results.values():
            med = lambda k, s=1.0: statistics.median(metric(by_seed, i, k, s))  # noqa: E731
            cells.append(f"{spread(metric(by_seed, i, 'mean_e2el_ms', 1e-3))} / "
                         f"{med('p99_e2el_ms', 1e-3):.0f}, {med('mean_normalized_latency_s'):.3f}, "
                         f"{med('swapped_bytes', 1e-9):.0f} GB, {med('num_drops'):.0f}")
        out(f"| {rate} | " + " | ".join(cells) + " |")


def sensitivity(args, rate):
    studies = {
        "q1_ms": ("--q1-ms", [2, 5, 10, 20, 50, 100]),
        "ratio": ("--ratio", [1.5, 2, 4, 8]),
        "num_queues": ("--num-queues", [2, 4, 8, 16, 32]),
        "starvation_s": ("--starvation-s", [1, 3, 10, 30]),
        "starvation_multiple": ("--starvation-multiple", [0, 10, 50, 200]),
        "starvation_max_s": ("--starvation-max-s", [0, 30, 60, 120]),
    }
    out(f"\n### Sensitivity (skip-join MLFQ, ShareGPT, rate {rate})\n")
    out("Median (min-max) over seeds; demotions and promotions are medians.\n")
    out("| parameter | value | mean JCT s | p99 JCT s | mean norm s/tok | demotions | promotions |")
    out("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = {}
    for name, (flag, values) in studies.items():
        rows[name] = []
        for v in values:
            by_seed = sim_seeds(args, f"sens_{name}_{v}", ["--trace", "sharegpt", flag, str(v)],
                                [rate])
            rows[name].append((v, by_seed))
            out(f"| {name} | {v} | {spread(metric(by_seed, 0, 'mean_e2el_ms', 1e-3), '{:.2f}')} | "
                f"{spread(metric(by_seed, 0, 'p99_e2el_ms', 1e-3))} | "
                f"{spread(metric(by_seed, 0, 'mean_normalized_latency_s'), '{:.3f}')} | "
                f"{statistics.median(metric(by_seed, 0, 'num_demotions')):.0f} | "
                f"{statistics.median(metric(by_seed, 0, 'num_promotions')):.0f} |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(rows), figsize=(3.0 * len(rows), 3))
        for ax, (name, pts) in zip(axes, rows.items()):
            for key, style, label in (("mean_e2el_ms", "o-", "mean"),
                                      ("p99_e2el_ms", "s--", "p99")):
                vals = [metric(b, 0, key, 1e-3) for _, b in pts]
                ax.errorbar([str(v) for v, _ in pts], [statistics.median(x) for x in vals],
                            yerr=[[statistics.median(x) - min(x) for x in vals],
                                  [max(x) - statistics.median(x) for x in vals]],
                            fmt=style, capsize=2, label=label)
            ax.set_xlabel(name)
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel(f"JCT (s) at {rate} req/s")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(pathlib.Path(args.img_dir) / "sim_sensitivity.png", dpi=110)
        plt.close(fig)
    except ImportError:
        pass


def defaults_check(args):
    """The settings the rate-1.4 sensitivity study favours on p99, over whole sweeps of every
    workload (skip-join MLFQ)."""
    variants = {"default": [], "num_queues 8": ["--num-queues", "8"], "ratio 4": ["--ratio", "4"],
                "ratio 8": ["--ratio", "8"]}
    workloads = [("sharegpt", ["--trace", "sharegpt"], SHAREGPT_RATES),
                 ("sharegpt_256seq", ["--trace", "sharegpt", "--max-batch-seqs", "256"],
                  MEM256_RATES),
                 ("alpaca", ["--trace", "alpaca"], ALPACA_RATES)]
    for trace in args.traces.split(","):  # the rates of the trace study (run it first)
        tag = f"{trace}_16seq"
        runs = json.loads((pathlib.Path(args.out_dir) / "raw" / f"{tag}_fcfs_s{args.seed_list[0]}"
                           ".json").read_text())["runs"]
        workloads.append((tag, ["--trace", trace, "--max-batch-seqs", "16"],
                          [r["request_rate"] for r in runs]))
    for tag, base, rates in workloads:
        res = {}
        for v, extra in variants.items():
            name = (f"{tag}_skip-join-mlfq" if not extra
                    else f"defaults_{tag}_{'_'.join(extra[-2:])}")
            res[v] = sim_seeds(args, name, [*base, "--policy", "skip-join-mlfq", *extra], rates)
        out(f"\n### MLFQ settings over a sweep (skip-join MLFQ, {tag})\n")
        out("Sustainable rate req/s; per rate mean / p99 JCT s, norm s/tok (medians over seeds):\n")
        out("| setting | sustainable rate | " + " | ".join(str(r) for r in rates) + " |")
        out("| --- | ---: |" + " ---: |" * len(rates))
        for v, by_seed in res.items():
            sr = [sustainable_rate(runs, args.slo) for runs in by_seed.values()]
            cells = []
            for i in range(len(rates)):
                med = lambda k, sc=1.0: statistics.median(metric(by_seed, i, k, sc))  # noqa: E731
                cells.append(f"{med('mean_e2el_ms', 1e-3):.1f} / {med('p99_e2el_ms', 1e-3):.0f}, "
                             f"{med('mean_normalized_latency_s'):.3f}")
            out(f"| {v} | {spread(sr, '{:.2f}')} | " + " | ".join(cells) + " |")


def hysteresis_study(args):
    """Skip-join MLFQ without and with the preemption hysteresis (`--no-preemption-hysteresis` /
    `--preemption-hysteresis`, which `fastserve sim` must expose), fcfs for reference, on the grids
    of the main tables plus fcfs's 90% point (docs/SCHEDULING.md "Preemption hysteresis")."""
    workloads = []
    for tag, trace_args, grid in (("sharegpt", ["--trace", "sharegpt"], SHAREGPT_RATES),
                                  ("alpaca", ["--trace", "alpaca"], ALPACA_RATES),
                                  ("sharegpt_256seq", ["--trace", "sharegpt", "--max-batch-seqs",
                                                       "256"], MEM256_RATES)):
        sat = fcfs_saturation(args, tag, trace_args)
        workloads.append((tag, trace_args, sat, sorted(set(grid) | {round(0.9 * sat, 2)})))
    for trace in args.traces.split(","):
        for seqs in args.trace_seqs.split(","):
            tag = f"{trace}_{seqs}seq"
            trace_args = ["--trace", trace, "--max-batch-seqs", seqs]
            sat = fcfs_saturation(args, tag, trace_args)
            workloads.append((tag, trace_args, sat, [round(f * sat, 3) for f in TRACE_FRACTIONS]))
    variants = {"off": ["--policy", "skip-join-mlfq", "--no-preemption-hysteresis"],
                "on": ["--policy", "skip-join-mlfq", "--preemption-hysteresis"],
                "fcfs": ["--policy", "fcfs"]}
    names = {"off": "skip-join-mlfq", "on": "skip-join-mlfq-hyst", "fcfs": "fcfs"}
    summary = []
    for tag, trace_args, sat, rates in workloads:
        res = {v: sim_seeds(args, f"{tag}_{names[v]}", [*trace_args, *extra], rates)
               for v, extra in variants.items()}
        out(f"\n### Preemption hysteresis, {tag} (fcfs saturation {sat:.2f} req/s)\n")
        out("Per rate, median over seeds: throughput req/s, mean JCT s, mean norm s/tok, "
            "preemptions, GB swapped; on / off mean JCT per seed (median (min-max)):\n")
        out("| rate | off | on | on / off, mean JCT | fcfs |")
        out("| --- | --- | --- | ---: | --- |")
        below = []  # on/off mean-JCT ratios (per seed) at rates <= 0.9 x fcfs's saturation
        for i, rate in enumerate(rates):
            cells = []
            for v in variants:
                med = lambda k, sc=1.0: statistics.median(metric(res[v], i, k, sc))  # noqa: E731
                cells.append(f"{med('request_throughput'):.2f}, {med('mean_e2el_ms', 1e-3):.1f} s, "
                             f"{med('mean_normalized_latency_s'):.3f}, "
                             f"{med('num_preemptions'):.0f}, {med('swapped_bytes', 1e-9):.0f} GB")
            ratio = [a / b for a, b in zip(metric(res["on"], i, "mean_e2el_ms"),
                                           metric(res["off"], i, "mean_e2el_ms"))]
            if rate <= 0.9 * sat + 1e-9:
                below.append((rate, ratio))
            out(f"| {rate} | {cells[0]} | {cells[1]} | {spread(ratio, '{:.3f}')} | {cells[2]} |")
        sr = {v: [sustainable_rate(runs, args.slo) for runs in res[v].values()] for v in variants}
        worst_rate, worst = max(below, key=lambda rr: statistics.median(rr[1]))
        i12 = min(range(len(rates)), key=lambda k: abs(rates[k] - 1.2 * sat))
        i90 = min(range(len(rates)), key=lambda k: abs(rates[k] - 0.9 * sat))
        summary.append((tag, sr, worst_rate, worst, i90, i12, rates, res))

    def two(res, key, i, fmt, sc=1.0):
        return (f"{spread(metric(res['off'], i, key, sc), fmt)} → "
                f"{spread(metric(res['on'], i, key, sc), fmt)}")

    out("\n### Preemption hysteresis: summary below saturation (median (min-max) over seeds)\n")
    out("| workload | sustainable rate off → on (fcfs) | at ~0.9x fcfs sat.: mean JCT s off → on "
        "| p99 JCT s | mean norm s/tok | largest on/off mean JCT at ≤ 0.9x (rate) |")
    out("| --- | --- | --- | --- | --- | --- |")
    for tag, sr, worst_rate, worst, i90, i12, rates, res in summary:
        out(f"| {tag} | {spread(sr['off'], '{:.2f}')} → {spread(sr['on'], '{:.2f}')} "
            f"({spread(sr['fcfs'], '{:.2f}')}) | {rates[i90]}: "
            f"{two(res, 'mean_e2el_ms', i90, '{:.2f}', 1e-3)} "
            f"| {two(res, 'p99_e2el_ms', i90, '{:.1f}', 1e-3)} "
            f"| {two(res, 'mean_normalized_latency_s', i90, '{:.3f}')} "
            f"| {spread(worst, '{:.3f}')} ({worst_rate}) |")
    out("\n### Preemption hysteresis: summary at ~1.2x fcfs's saturation (median (min-max))\n")
    out("| workload | rate | req/s off → on (fcfs) | preemptions off → on | GB swapped off → on "
        "| mean JCT s off → on | mean TTFT s off → on |")
    out("| --- | ---: | --- | --- | --- | --- | --- |")
    for tag, sr, worst_rate, worst, i90, i12, rates, res in summary:
        out(f"| {tag} | {rates[i12]} | {two(res, 'request_throughput', i12, '{:.2f}')} "
            f"({spread(metric(res['fcfs'], i12, 'request_throughput'), '{:.2f}')}) "
            f"| {two(res, 'num_preemptions', i12, '{:.0f}')} "
            f"| {two(res, 'swapped_bytes', i12, '{:.0f}', 1e-9)} "
            f"| {two(res, 'mean_e2el_ms', i12, '{:.1f}', 1e-3)} "
            f"| {two(res, 'mean_ttft_ms', i12, '{:.1f}', 1e-3)} |")


def trace_study(args, trace, seqs):
    """A length trace at one batch limit: fcfs saturation, a sweep over fractions of it, every
    policy at 90% of it."""
    tag = f"{trace}_{seqs}seq"
    trace_args = ["--trace", trace, "--max-batch-seqs", str(seqs)]
    sat = fcfs_saturation(args, tag, trace_args)
    rates = [round(f * sat, 3) for f in TRACE_FRACTIONS]
    out(f"\nRates: {', '.join(str(f) for f in TRACE_FRACTIONS)} x that "
        f"({', '.join(map(str, rates))}).")
    res = policy_sweep(args, tag, trace_args, rates, POLICIES)
    i90 = TRACE_FRACTIONS.index(0.9)
    out(f"\nAt ~90% of fcfs's saturation ({rates[i90]} req/s): see the {TRACE_FRACTIONS[i90]} row; "
        "ratios over seeds:\n")
    out("| policy | fcfs / this, mean JCT | fcfs / this, p99 JCT | vllm / this, mean JCT | "
        "this / srpt, mean JCT |")
    out("| --- | ---: | ---: | ---: | ---: |")
    for p in POLICIES:
        mean = metric(res[p], i90, "mean_e2el_ms")
        p99 = metric(res[p], i90, "p99_e2el_ms")
        ratio = lambda a, b: spread([x / y for x, y in zip(a, b)], "{:.2f}") + "x"  # noqa: E731
        out(f"| {p} | {ratio(metric(res['fcfs'], i90, 'mean_e2el_ms'), mean)} | "
            f"{ratio(metric(res['fcfs'], i90, 'p99_e2el_ms'), p99)} | "
            f"{ratio(metric(res['vllm'], i90, 'mean_e2el_ms'), mean)} | "
            f"{ratio(mean, metric(res['srpt'], i90, 'mean_e2el_ms'))} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "build" / "fastserve"))
    ap.add_argument("--datasets-dir", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results" / "sim"))
    ap.add_argument("--img-dir", default=str(ROOT / "docs" / "img"))
    ap.add_argument("--num-requests", type=int, default=3000)
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated; every point runs each")
    ap.add_argument("--slo", type=float, default=0.3)
    ap.add_argument("--reuse", action="store_true",
                    help="reuse result JSONs already in --out-dir/raw (same options assumed)")
    ap.add_argument("--only", default="all",
                    help="sharegpt,alpaca,gamma,orca,kv,sens,mem256,kv256,traces or all; "
                         "defaults; hysteresis")
    ap.add_argument("--traces", default="azure_code,azure_conv,mooncake")
    ap.add_argument("--trace-seqs", default="16,256", help="batch limits for --only traces")
    args = ap.parse_args()
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    pathlib.Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.img_dir).mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    run = lambda key: "all" in only or key in only  # noqa: E731
    out(f"<!-- python3 bench/sim_sweep.py --num-requests {args.num_requests} --seeds {args.seeds} "
        f"--only {args.only} -->")
    if run("sharegpt"):
        sg_args = ["--trace", "sharegpt"]
        sat = fcfs_saturation(args, "sharegpt", sg_args)
        sg = policy_sweep(args, "sharegpt", sg_args, SHAREGPT_RATES, at90=round(0.9 * sat, 2))
        out("\n### Demotions, skip-join vs plain MLFQ (ShareGPT), medians\n")
        out("| rate | skip-join demotions | mlfq demotions |")
        out("| --- | ---: | ---: |")
        for i, rate in enumerate(SHAREGPT_RATES):
            sj = statistics.median(metric(sg["skip-join-mlfq"], i, "num_demotions"))
            ml = statistics.median(metric(sg["mlfq"], i, "num_demotions"))
            out(f"| {rate} | {sj:.0f} | {ml:.0f} |")
    if run("alpaca"):
        al_args = ["--trace", "alpaca"]
        sat = fcfs_saturation(args, "alpaca", al_args)
        policy_sweep(args, "alpaca", al_args, ALPACA_RATES, at90=round(0.9 * sat, 2))
    if run("gamma"):
        for cv in (2, 4):
            policy_sweep(args, f"sharegpt_gamma_cv{cv}",
                         ["--trace", "sharegpt", "--arrival", "gamma", "--cv", str(cv)],
                         SHAREGPT_RATES)
    if run("orca"):
        # Orca-style fcfs (maximum-length reservation) on a finer grid around its knee.
        sg_args = ["--trace", "sharegpt"]
        by_seed = sim_seeds(args, "orca_fcfs-orca_inf", [*sg_args, *policy_args("fcfs-orca")],
                            ["inf"])
        thr = [runs[0]["request_throughput"] for runs in by_seed.values()]
        jobs = [runs[0]["mean_batch_size"] for runs in by_seed.values()]
        out(f"\nfcfs-orca saturation (`--rate inf`): {spread(thr, '{:.3f}')} req/s, "
            f"{spread(jobs, '{:.2f}')} jobs per iteration")
        orca_policies = ["skip-join-mlfq", "srpt", "fcfs-orca"]
        policy_sweep(args, "orca", sg_args, [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0],
                     orca_policies)
        jct_at(args, "orca", sg_args, orca_policies, round(0.9 * statistics.median(thr), 2),
               "~90% of fcfs-orca's saturation rate", base="fcfs-orca")
    if "defaults" in only:  # not part of "all": reuses the sharegpt / mem256 skip-join runs
        defaults_check(args)
    if run("kv"):
        kv_ablation(args, "kv_ablation", ["--trace", "sharegpt"], [1.0, 1.2, 1.3, 1.4, 1.5, 1.6])
    if run("sens"):
        sensitivity(args, 1.4)
    if run("mem256"):
        m_args = ["--trace", "sharegpt", "--max-batch-seqs", "256"]
        sat = fcfs_saturation(args, "sharegpt_256seq", m_args)
        policy_sweep(args, "sharegpt_256seq", m_args, MEM256_RATES, MEM_POLICIES,
                     at90=round(0.9 * sat, 2))
    if run("kv256"):
        kv_ablation(args, "kv_ablation_256seq", ["--trace", "sharegpt", "--max-batch-seqs", "256"],
                    [2.0, 2.2, 2.4, 2.6, 2.8, 3.0])
    if "hysteresis" in only:  # not part of "all": needs a `fastserve sim` with the flag
        hysteresis_study(args)
    if run("traces"):
        for trace in args.traces.split(","):
            for seqs in args.trace_seqs.split(","):
                trace_study(args, trace, int(seqs))
    suffix = args.only.replace(",", "_")
    (pathlib.Path(args.out_dir) / f"tables_{suffix}.md").write_text("\n".join(MD) + "\n")
    with open(pathlib.Path(args.out_dir) / f"runs_{suffix}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["experiment", "seed", *CSV_KEYS])
        w.writerows(ROWS)


if __name__ == "__main__":
    main()
