#!/usr/bin/env python3
"""Summary table and plots of a scripts/device/gpu_serving.sh run: mean and p99 JCT (end-to-end
latency) and mean normalized latency vs request rate, one line per policy, one PNG per shape.

    python3 bench/gpu_serving_plot.py RAW_DIR OUT_DIR

Reads RAW_DIR/<shape>/meta.json (saturation throughput, rates, settings), saturation.json and
<policy>-rate-<R>.json (fastserve bench result JSONs, vLLM key names); writes OUT_DIR/summary.md,
OUT_DIR/summary.json (no per-request arrays) and OUT_DIR/<shape>.png. Load = rate / the saturation
throughput measured at rate=inf (the offered fraction of what the server sustains with a full batch).
Works on partial results: a missing run is a blank cell.
"""
import glob
import json
import os
import re
import sys

ORDER = ["skip-join-mlfq", "fcfs", "vllm", "mlfq"]
STYLE = {"skip-join-mlfq": ("C0", "o"), "fcfs": ("C1", "s"), "vllm": ("C2", "^"), "mlfq": ("C3", "D")}
SCALARS = ["completed", "failed", "num_prompts", "duration", "request_throughput", "output_throughput",
           "total_input_tokens", "total_output_tokens", "mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms",
           "mean_e2el_ms", "median_e2el_ms", "p99_e2el_ms", "mean_normalized_latency_ms",
           "p99_normalized_latency_ms"]


def load_shape(shape_dir):
    meta_path = os.path.join(shape_dir, "meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    runs = {}  # policy -> {rate: scalars}
    for path in sorted(glob.glob(os.path.join(shape_dir, "*-rate-*.json"))):
        m = re.match(r"(.+)-rate-([0-9.e+-]+|inf)\.json$", os.path.basename(path))
        if not m:
            continue
        try:
            r = json.load(open(path))
        except (OSError, ValueError):
            continue
        runs.setdefault(m.group(1), {})[float(m.group(2))] = {k: r.get(k) for k in SCALARS}
    sat_path = os.path.join(shape_dir, "saturation.json")
    if os.path.exists(sat_path):
        r = json.load(open(sat_path))
        meta["saturation_run"] = {k: r.get(k) for k in SCALARS}
    return meta, runs


def fmt(x, scale=1e-3, digits=2):
    return "" if x is None else f"{x * scale:.{digits}f}"


def policies_of(runs):
    return sorted(runs, key=lambda p: (ORDER.index(p) if p in ORDER else len(ORDER), p))


def shape_markdown(shape, meta, runs):
    lines = [f"### {shape}", ""]
    sat = meta.get("saturation_req_s")
    if sat:
        sr = meta.get("saturation_run", {})
        lines.append(f"Saturation (rate=inf, {sr.get('num_prompts')} prompts, {meta.get('saturation_policy')}): "
                     f"{sat:.3f} req/s, {sr.get('output_throughput') or 0:.0f} output tok/s. "
                     f"{meta.get('num_prompts')} prompts per run, max_tokens = trace output length capped at "
                     f"{meta.get('max_output_len')}, ignore_eos, streaming; device {meta.get('device')}, "
                     f"server args `{meta.get('server_args') or '(defaults)'}`.")
        lines.append("")
    policies = policies_of(runs)
    rates = sorted({r for p in runs.values() for r in p})
    head = ["rate req/s", "load"]
    for p in policies:
        head += [f"{p} mean JCT s", f"{p} p99 JCT s"]
    if "fcfs" in runs and "skip-join-mlfq" in runs:
        head += ["fcfs / sj-mlfq mean", "fcfs / sj-mlfq p99"]
    if "vllm" in runs and "skip-join-mlfq" in runs:
        head += ["vllm / sj-mlfq mean"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rate in rates:
        row = [f"{rate:g}", f"{rate / sat:.2f}" if sat else ""]
        for p in policies:
            r = runs[p].get(rate, {})
            row += [fmt(r.get("mean_e2el_ms")), fmt(r.get("p99_e2el_ms"))]

        def ratio(a, b, key):
            x, y = runs[a].get(rate, {}).get(key), runs[b].get(rate, {}).get(key)
            return f"{x / y:.2f}x" if x and y else ""
        if "fcfs" in runs and "skip-join-mlfq" in runs:
            row += [ratio("fcfs", "skip-join-mlfq", "mean_e2el_ms"), ratio("fcfs", "skip-join-mlfq", "p99_e2el_ms")]
        if "vllm" in runs and "skip-join-mlfq" in runs:
            row += [ratio("vllm", "skip-join-mlfq", "mean_e2el_ms")]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| policy | rate | ok/sent | duration s | req/s | out tok/s | mean TTFT s | p99 TTFT s | "
              "mean TPOT ms | mean norm. latency ms/tok |", "|---|---|---|---|---|---|---|---|---|---|"]
    for p in policies:
        for rate in sorted(runs[p]):
            r = runs[p][rate]
            lines.append(f"| {p} | {rate:g} | {r.get('completed')}/{r.get('num_prompts')} | "
                         f"{fmt(r.get('duration'), 1, 1)} | {fmt(r.get('request_throughput'), 1, 2)} | "
                         f"{fmt(r.get('output_throughput'), 1, 0)} | {fmt(r.get('mean_ttft_ms'))} | "
                         f"{fmt(r.get('p99_ttft_ms'))} | {fmt(r.get('mean_tpot_ms'), 1, 1)} | "
                         f"{fmt(r.get('mean_normalized_latency_ms'), 1, 1)} |")
    lines.append("")
    return lines


def plot_shape(shape, meta, runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("mean_e2el_ms", "mean JCT (s)", 1e-3), ("p99_e2el_ms", "p99 JCT (s)", 1e-3),
              ("mean_normalized_latency_ms", "mean normalized latency (ms/token)", 1.0)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    sat = meta.get("saturation_req_s")
    for ax, (key, label, scale) in zip(axes, panels):
        for p in policies_of(runs):
            pts = sorted((rate, r[key] * scale) for rate, r in runs[p].items() if r.get(key) is not None)
            if not pts:
                continue
            color, marker = STYLE.get(p, (None, "x"))
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker=marker, color=color, label=p)
        if sat:
            ax.axvline(sat, color="gray", linestyle=":", linewidth=1, label=f"saturation {sat:.2f} req/s")
        ax.set_xlabel("request rate (req/s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{shape} ({meta.get('device', '')}): ShareGPT, {meta.get('num_prompts')} requests per point, "
                 f"output <= {meta.get('max_output_len')} tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    raw_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    md = ["# GPU serving benchmark (scripts/device/gpu_serving.sh)", "",
          "JCT = end-to-end latency (send to last token). load = rate / saturation throughput.", ""]
    summary = {}
    for shape_dir in sorted(glob.glob(os.path.join(raw_dir, "*"))):
        if not os.path.isdir(shape_dir):
            continue
        shape = os.path.basename(shape_dir)
        meta, runs = load_shape(shape_dir)
        summary[shape] = {"meta": meta, "runs": {p: {f"{k:g}": v for k, v in rs.items()} for p, rs in runs.items()}}
        md += shape_markdown(shape, meta, runs)
        if runs:
            try:
                plot_shape(shape, meta, runs, os.path.join(out_dir, f"{shape}.png"))
            except ImportError as e:
                md.append(f"(no plot: {e})\n")
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
