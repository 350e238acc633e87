import subprocess

from conftest import FIXTURES


def run(fastserve_bin, *args, env=None):
    return subprocess.run([fastserve_bin, "inspect", *args], capture_output=True, text=True, env=env)


def test_inspect_default_model(fastserve_bin, default_model):
    proc = run(fastserve_bin, "--model", default_model)
    assert proc.returncode == 0, proc.stderr
    assert "num_layers                30" in proc.stdout
    assert "hidden_size               576" in proc.stdout
    assert "style=interleaved" in proc.stdout


def test_inspect_hf_folder_with_tensors(fastserve_bin):
    proc = run(fastserve_bin, "--model", str(FIXTURES / "models" / "tiny-opt"), "--tensors")
    assert proc.returncode == 0, proc.stderr
    assert "model.decoder.embed_positions.weight" in proc.stdout
    assert "[66, 64]" in proc.stdout


def test_inspect_missing_model_fails_clearly(fastserve_bin):
    proc = run(fastserve_bin, "--model", "/nonexistent/model.gguf")
    assert proc.returncode == 1
    assert "/nonexistent/model.gguf" in proc.stderr
