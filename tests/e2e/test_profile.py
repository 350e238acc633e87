"""`fastserve profile` writes a cost model that `fastserve sim` reads."""
import json
import subprocess

from conftest import ROOT


def test_profile_writes_a_cost_model_the_simulator_reads(fastserve_bin, default_model, tmp_path):
    profile = tmp_path / "profile.json"
    subprocess.run([fastserve_bin, "profile", "--model", default_model, "--prefill-lengths", "8,32",
                    "--batch-sizes", "1,2", "--contexts", "16,64", "--repeat", "1", "-o", str(profile)],
                   check=True, capture_output=True, timeout=300)
    spec = json.loads(profile.read_text())
    assert [p[0] for p in spec["prefill"]] == [8, 32]
    assert all(p[1] > 0 for p in spec["prefill"])
    assert len(spec["decode"]) == 4 and spec["kv_bytes_per_token"] == 30 * 2 * 3 * 64 * 4
    trace = tmp_path / "trace.csv"
    trace.write_text("prompt_tokens,output_tokens\n" + "".join(f"{8 + i},{4 + i % 5}\n" for i in range(40)))
    result = tmp_path / "sim.json"
    subprocess.run([fastserve_bin, "sim", "--model-profile", str(profile), "--trace", str(trace),
                    "--num-requests", "40", "--rate", "2", "--result-json", str(result)],
                   check=True, capture_output=True, timeout=300)
    metrics = json.loads(result.read_text())
    assert metrics["completed"] == 40
