"""Table of bench/chunked_prefill.sh results: per run, and min / median per budget over repeats.

usage: python bench/chunked_prefill_table.py RESULT_DIR [--markdown]
ITL percentiles are over every gap between text chunks of every request; a decode stall (a long
prefill in the same iteration) shows as a large gap. "stalls > 100 ms" counts such gaps.
"""
import json
import statistics
import sys
from pathlib import Path


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def row(path):
    r = json.loads(path.read_text())
    gaps = [g * 1000 for itls in r["itls"] for g in itls]
    ttft = [t * 1000 for t, o in zip(r["ttfts"], r["output_lens"]) if o > 0]
    long_ttft = [t * 1000 for t, n in zip(r["ttfts"], r["input_lens"]) if n >= 1000]
    short_e2el = [e for e, n in zip(r["e2els"], r["input_lens"]) if n < 1000]
    return {
        "completed": r["completed"],
        "duration_s": r["duration"],
        "itl_p50_ms": percentile(gaps, 50),
        "itl_p99_ms": percentile(gaps, 99),
        "itl_max_ms": max(gaps),
        "stalls_over_100ms": sum(g > 100 for g in gaps),
        "ttft_mean_ms": statistics.mean(ttft),
        "ttft_p99_ms": percentile(ttft, 99),
        "long_ttft_mean_ms": statistics.mean(long_ttft) if long_ttft else float("nan"),
        "jct_mean_s": statistics.mean(r["e2els"]),
        "short_jct_mean_s": statistics.mean(short_e2el) if short_e2el else float("nan"),
        "out_tok_s": r["output_throughput"],
    }


COLS = ["itl_p50_ms", "itl_p99_ms", "itl_max_ms", "stalls_over_100ms", "ttft_mean_ms",
        "ttft_p99_ms", "long_ttft_mean_ms", "jct_mean_s", "short_jct_mean_s", "out_tok_s"]


def main():
    d = Path(sys.argv[1])
    runs = {}
    for p in sorted(d.glob("budget-*-rep-*.json")):
        budget = int(p.stem.split("-")[1])
        runs.setdefault(budget, []).append((p.stem, row(p)))
    print("| run | done | " + " | ".join(COLS) + " |")
    print("|---|---:|" + "---:|" * len(COLS))
    for budget in sorted(runs):
        for name, r in runs[budget]:
            print(f"| {name} | {r['completed']} | " + " | ".join(f"{r[c]:.1f}" for c in COLS) + " |")
    print()
    print("| budget | stat | " + " | ".join(COLS) + " |")
    print("|---:|---|" + "---:|" * len(COLS))
    summary = {}
    for budget in sorted(runs):
        rs = [r for _, r in runs[budget]]
        for stat, fn in (("min", min), ("median", statistics.median)):
            vals = {c: fn(r[c] for r in rs) for c in COLS}
            summary.setdefault(str(budget), {})[stat] = vals
            print(f"| {budget} | {stat} | " + " | ".join(f"{vals[c]:.1f}" for c in COLS) + " |")
    (d / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
