#!/usr/bin/env python3
"""Output-length spread of the simulator's length traces, before and after the paper's filter
(prompt <= 1024, prompt + output <= 2048, both >= 1; src/sim/trace.h), as `fastserve sim --trace`
sees them. Least-attained-service scheduling (MLFQ) beats FCFS on mean JCT only when job sizes are
heavy-tailed (CV well above 1); docs/SCHEDULING.md "Heavier-tailed traces".

  python3 bench/trace_cv.py [--datasets-dir ../shared/datasets]
"""
import argparse
import csv
import pathlib
import statistics

TRACES = {"sharegpt": "sharegpt_vllm_opt_lengths.csv", "azure_code": "azure_code_lengths.csv",
          "azure_conv": "azure_conv_lengths.csv", "mooncake": "mooncake_conversation_lengths.csv"}


def describe(xs):
    xs = sorted(xs)
    mean = statistics.fmean(xs)
    pct = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
    return mean, statistics.pstdev(xs) / mean, pct(0.5), pct(0.99)


def main():
    ap = argparse.ArgumentParser()
    root = pathlib.Path(__file__).resolve().parents[1]
    ap.add_argument("--datasets-dir", default=str(root.parent / "shared" / "datasets"))
    args = ap.parse_args()
    print("| trace | rows kept / all | output mean / median / p99 | output CV (kept) | "
          "output CV (all) | prompt mean (kept) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, file in TRACES.items():
        with open(pathlib.Path(args.datasets_dir) / file, newline="") as f:
            rows = [(int(r["prompt_tokens"]), int(r["output_tokens"])) for r in csv.DictReader(f)]
        kept = [(p, o) for p, o in rows if p >= 1 and o >= 1 and p <= 1024 and p + o <= 2048]
        mean, cv, med, p99 = describe([o for _, o in kept])
        _, cv_all, _, _ = describe([o for p, o in rows if o >= 1])
        print(f"| {name} | {len(kept):,} / {len(rows):,} | {mean:.0f} / {med} / {p99} | {cv:.2f} | "
              f"{cv_all:.2f} | {statistics.fmean(p for p, _ in kept):.0f} |")


if __name__ == "__main__":
    main()
