"""End-to-end: `fastserve sim` on a small trace writes a vllm-bench-style result JSON."""
import json
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROFILE = ROOT / "bench" / "profiles" / "opt13b_a100.json"
VLLM_KEYS = [
    "completed", "duration", "total_input_tokens", "total_output_tokens", "request_throughput",
    "output_throughput", "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms",
    "mean_itl_ms", "mean_e2el_ms", "median_e2el_ms", "p99_e2el_ms",
]
OUR_KEYS = [
    "mean_normalized_latency_s", "num_preemptions", "num_demotions", "num_promotions",
    "swapped_bytes", "request_goodput", "policy", "kv_policy",
]


@pytest.fixture()
def trace(tmp_path):
    # Every request generates 20 tokens, so conservation is checkable whatever gets sampled.
    path = tmp_path / "trace.csv"
    rows = ["prompt_tokens,output_tokens"] + [f"{p},20" for p in (5, 50, 300, 900)]
    path.write_text("\n".join(rows) + "\n")
    return path


def run_sim(fastserve_bin, tmp_path, trace, *args):
    out = tmp_path / "result.json"
    cmd = [fastserve_bin, "sim", "--trace", str(trace), "--model-profile", str(PROFILE),
           "--num-requests", "200", "--result-json", str(out), "--check-integrity", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("policy", ["skip-join-mlfq", "mlfq", "fcfs", "vllm", "srpt"])
def test_sim_reports_vllm_keys_and_conserves_jobs(fastserve_bin, tmp_path, trace, policy):
    r = run_sim(fastserve_bin, tmp_path, trace, "--policy", policy, "--rate", "20",
                "--device-mem", "2")
    for key in VLLM_KEYS + OUR_KEYS:
        assert key in r, key
    assert r["completed"] == 200
    assert r["total_output_tokens"] == 200 * 20
    assert r["mean_e2el_ms"] >= r["mean_ttft_ms"] > 0
    if policy == "fcfs":
        assert r["num_preemptions"] == 0


def test_sim_preemption_hysteresis_flag(fastserve_bin, tmp_path, trace):
    """Under overload the hysteresis (default on) preempts less than plain least-attained service;
    both serve every job."""
    on = run_sim(fastserve_bin, tmp_path, trace, "--rate", "inf", "--device-mem", "2")
    off = run_sim(fastserve_bin, tmp_path, trace, "--rate", "inf", "--device-mem", "2",
                  "--no-preemption-hysteresis")
    assert on["completed"] == off["completed"] == 200
    assert on["num_preemptions"] < off["num_preemptions"]


def test_sim_sweep_writes_one_run_per_rate(fastserve_bin, tmp_path, trace):
    r = run_sim(fastserve_bin, tmp_path, trace, "--sweep", "1,4,inf", "--arrival", "gamma",
                "--cv", "2", "--kv-policy", "reactive")
    assert [run["request_rate"] for run in r["runs"]] == [1, 4, "inf"]
    assert all(run["completed"] == 200 for run in r["runs"])


def test_sim_rejects_unknown_policy(fastserve_bin, tmp_path, trace):
    proc = subprocess.run([fastserve_bin, "sim", "--trace", str(trace), "--model-profile",
                           str(PROFILE), "--policy", "lifo"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "unknown policy" in proc.stderr


def test_sim_replays_a_bench_result_exactly(fastserve_bin, tmp_path):
    # A bench result's requests at its send times: the long request arriving first, under FCFS with
    # one batch slot, delays the short one by its whole service; the lengths and the send times
    # must both be the file's.
    bench = {"input_lens": [400, 10, 10], "target_output_lens": [300, 5, 7],
             "send_times": [10.0, 10.5, 60.0], "output_lens": [300, 5, 7]}
    replay = tmp_path / "bench.json"
    replay.write_text(json.dumps(bench))
    out = tmp_path / "sim.json"
    cmd = [fastserve_bin, "sim", "--replay", str(replay), "--model-profile", str(PROFILE),
           "--policy", "fcfs", "--max-batch-seqs", "1", "--result-json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    r = r["runs"][0] if "runs" in r else r
    assert r["completed"] == 3
    assert r["num_generated_tokens"] == 312
    assert r["total_input_tokens"] == 420
    # Request 2 waits for request 1's 300 tokens; request 3 (50 s later) and request 1 start at
    # once: two TTFTs of one prefill, one of seconds.
    assert r["median_ttft_ms"] < 500
    assert r["p99_ttft_ms"] > 2000
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"input_lens": [1]}))
    proc = subprocess.run([fastserve_bin, "sim", "--replay", str(bad), "--model-profile",
                           str(PROFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "bad.json" in proc.stderr and "target_output_lens" in proc.stderr
