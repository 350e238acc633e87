"""A small run of the soak harness (bench/soak.py, issue 11): the same checks as the 10,000-request soak of
docs/RELIABILITY.md on 120 requests, so CI exercises the harness and the server under disconnects, slow
readers, malformed and oversized requests and a tiny device KV pool."""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_small_soak(fastserve_bin, tmp_path):
    out = tmp_path / "soak.json"
    cmd = [sys.executable, str(ROOT / "bench" / "soak.py"), "--fastserve", fastserve_bin, "--quiet",
           "--num-requests", "120", "--rate", "20", "--num-prompts", "3", "--max-prompt-chars", "96",
           "--max-tokens", "1,4,8", "--slow-reader-every", "40", "--slow-reader-tokens", "100",
           "--device-kv-blocks", "10", "--host-kv-blocks", "32", "--max-queued-requests", "8", "--fill-requests", "4",
           "--warmup-frac", "0.1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.exists(), proc.stdout + proc.stderr
    summary = json.loads(out.read_text())
    assert proc.returncode == 0, json.dumps({k: summary.get(k) for k in ("checks", "violations", "bad_log_lines")},
                                            indent=1)
    assert summary["ok"] and summary["num_violations"] == 0
    outcomes = summary["outcomes"]
    # Every kind of traffic happened: completions checked against the reference, clients that left,
    # rejected malformed requests and the slow readers.
    assert outcomes.get("completed", 0) >= 10, outcomes
    assert sum(v for k, v in outcomes.items() if k.startswith("left_")) >= 10, outcomes
    assert outcomes.get("malformed_rejected", 0) >= 1, outcomes
    assert outcomes.get("slow_reader", 0) == 3, outcomes
    m = summary["metrics_after"]
    assert m["device_kv_blocks_used"] == 0 and m["host_kv_blocks_used"] == 0, m
    assert m["kv_bytes_swapped_out_total"] > 0, m  # the tiny device pool made it offload
