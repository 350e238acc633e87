"""End-to-end: `fastserve bench` against a real `fastserve serve` on the default model."""
import json
import pathlib
import re
import subprocess

import pytest
import requests

SAMPLE = str(pathlib.Path(__file__).resolve().parents[2] / "bench" / "data" / "sharegpt_200.jsonl")
VLLM_KEYS = [
    "duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
    "request_throughput", "output_throughput", "total_token_throughput", "request_goodput",
    "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p90_ttft_ms", "p99_ttft_ms",
    "percentiles_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms", "mean_itl_ms",
    "median_itl_ms", "p99_itl_ms", "mean_e2el_ms", "median_e2el_ms", "p90_e2el_ms", "p99_e2el_ms",
    "input_lens", "output_lens", "ttfts", "itls", "errors", "request_rate", "burstiness",
    "max_concurrency", "model_id",
]
OUR_KEYS = [
    "e2els", "send_times", "target_output_lens", "mean_normalized_latency_ms", "p95_normalized_latency_ms",
    "mean_normalized_latency_s", "slo_attainment", "usage_reported",
]


def counters(server):
    text = requests.get(server.url + "/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        m = re.match(r"^fastserve:(\w+_total)\{[^}]*\} (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def run_bench(fastserve_bin, server, *args, timeout=60):
    cmd = [fastserve_bin, "bench", "--base-url", server.url, "--quiet", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_bench_matches_server_usage(fastserve_bin, server, tmp_path):
    out = tmp_path / "result.json"
    before = counters(server)
    # The committed ShareGPT sample: ../shared/datasets is not there on every machine (CI clones).
    proc = run_bench(fastserve_bin, server, "--dataset", SAMPLE,
                     "--num-prompts", "8", "--max-output-len", "8", "--ignore-eos",
                     "--request-rate", "20", "--max-concurrency", "4", "--seed", "3",
                     "--goodput", "ttft:60000", "e2el:60000", "--slo", "60000:60000",
                     "--slo", "0.001:0.001", "--result-json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Serving Benchmark Result" in proc.stdout
    after = counters(server)
    r = json.loads(out.read_text())
    for key in VLLM_KEYS + OUR_KEYS:
        assert key in r, key
    assert r["completed"] == 8 and r["failed"] == 0, r["errors"]
    assert r["usage_reported"] is True
    # Token counts are the usage the server reported (its counters moved by the same amounts).
    assert r["total_output_tokens"] == after["generation_tokens_total"] - before["generation_tokens_total"]
    assert r["total_input_tokens"] == after["prompt_tokens_total"] - before["prompt_tokens_total"]
    assert r["total_output_tokens"] == sum(r["output_lens"])
    # ignore_eos: every request generated exactly its max_tokens (the reference length, capped).
    assert r["output_lens"] == r["target_output_lens"]
    assert all(1 <= n <= 8 for n in r["output_lens"])
    assert r["max_concurrent_requests"] <= 4
    # Requests go out in arrival order; each sender thread stamps its own send time, so two released
    # together by the concurrency cap may stamp a few milliseconds out of order.
    assert all(b >= a - 0.02 for a, b in zip(r["send_times"], r["send_times"][1:])), r["send_times"]
    for ttft, e2el, itl, n in zip(r["ttfts"], r["e2els"], r["itls"], r["output_lens"]):
        assert 0 < ttft <= e2el
        assert len(itl) <= n - 1
        assert ttft + sum(itl) <= e2el + 1e-6
    assert r["mean_ttft_ms"] <= r["mean_e2el_ms"]
    assert r["p99_e2el_ms"] >= r["median_e2el_ms"] > 0
    assert r["duration"] > 0
    assert abs(r["request_throughput"] - 8 / r["duration"]) < 1e-6
    assert r["request_goodput"] == pytest.approx(r["request_throughput"])
    assert [a["attainment"] for a in r["slo_attainment"]] == [1.0, 0.0]
    assert r["p95_normalized_latency_ms"] >= r["mean_normalized_latency_ms"] * 0.5 > 0


def test_bench_chat_sweep_on_a_length_trace(fastserve_bin, server, tmp_path):
    trace = tmp_path / "tiny_lengths.csv"
    trace.write_text("prompt_tokens,output_tokens\n16,4\n40,6\n")
    result_dir = tmp_path / "sweep"
    proc = run_bench(fastserve_bin, server, "--endpoint", "chat", "--dataset", str(trace),
                     "--num-prompts", "4", "--ignore-eos", "--request-rates", "10,inf",
                     "--burstiness", "0.5", "--result-dir", str(result_dir), "--label", "t")
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in result_dir.iterdir())
    assert files == ["t-rate-10.json", "t-rate-inf.json"]
    for name, rate in (("t-rate-10.json", 10), ("t-rate-inf.json", "inf")):
        r = json.loads((result_dir / name).read_text())
        assert r["request_rate"] == rate and r["endpoint_type"] == "openai-chat"
        assert r["completed"] == 4, r["errors"]
        assert all(n in (4, 6) for n in r["output_lens"])
        assert r["output_lens"] == r["target_output_lens"]


def test_bench_reports_an_unreachable_server(fastserve_bin, tmp_path):
    proc = subprocess.run([fastserve_bin, "bench", "--base-url", "http://127.0.0.1:9",
                           "--dataset", "random", "--num-prompts", "2", "--quiet"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "127.0.0.1:9" in proc.stderr
    # With --model it goes ahead; every request fails, the JSON says why, the exit code is 1.
    out = tmp_path / "r.json"
    proc = subprocess.run([fastserve_bin, "bench", "--base-url", "http://127.0.0.1:9", "--model", "m",
                           "--dataset", "random", "--num-prompts", "2", "--quiet",
                           "--result-json", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    r = json.loads(out.read_text())
    assert r["completed"] == 0 and r["failed"] == 2
    assert all(e for e in r["errors"])
