"""`fastserve generate` on the default model and on float copies of it, against transformers'
reference (tests/fixtures/logits/smollm2-q4_1.json, from scripts/make_model_fixtures.py)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURES, ROOT

REF = json.loads((FIXTURES / "logits" / "smollm2-q4_1.json").read_text())


def generate(fastserve_bin, model, *args, check=True):
    cmd = [fastserve_bin, "generate", "--model", model, "--json", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])
    return proc


def ids_arg(ids):
    return ",".join(str(i) for i in ids)


@pytest.fixture(scope="session")
def float_copies(tmp_path_factory, default_model):
    """The default model's weights dequantized by gguf-py into F32, F16 and BF16 GGUF files."""
    out = {}
    d = tmp_path_factory.mktemp("float-models")
    for kind in ("f32", "f16", "bf16"):
        path = d / f"smollm2-{kind}.gguf"
        subprocess.run([sys.executable, str(ROOT / "scripts" / "dequantize_gguf.py"), default_model,
                        str(path), kind], check=True, timeout=600)
        out[kind] = str(path)
    return out


def test_text_prompt_generates_text_and_timings(fastserve_bin, default_model):
    j = generate(fastserve_bin, default_model, "--prompt", "The capital of France is",
                 "--max-tokens", "8")
    assert j["prompt_token_ids"] == REF["cases"][0]["prompt_ids"]  # same ids as HF's tokenizer
    assert len(j["token_ids"]) == 8 and j["finish_reason"] == "length"
    assert "Paris" in j["text"]
    assert j["timings"]["decode_tokens_per_s"] > 0


def test_quantized_model_agrees_with_transformers_on_top1(fastserve_bin, default_model, tmp_path):
    # Q4_1 weights with 8-bit activations (as llama.cpp): the first token (argmax of the prompt's
    # logits) must equal transformers' on the same dequantized weights.
    for i, case in enumerate(REF["cases"]):
        logits_path = tmp_path / f"{i}.f32"
        j = generate(fastserve_bin, default_model, "--prompt-ids", ids_arg(case["prompt_ids"]),
                     "--max-tokens", "1", "--logits-out", str(logits_path))
        ref = np.fromfile(FIXTURES / "logits" / case["last_logits_file"], dtype="<f4")
        got = np.fromfile(logits_path, dtype="<f4")
        assert j["token_ids"][0] == int(ref.argmax()) == int(got.argmax())


def test_f32_copy_matches_transformers_logits_and_greedy_tokens(fastserve_bin, float_copies, tmp_path):
    for i, case in enumerate(REF["cases"]):
        logits_path = tmp_path / f"{i}.f32"
        j = generate(fastserve_bin, float_copies["f32"], "--prompt-ids", ids_arg(case["prompt_ids"]),
                     "--max-tokens", "64", "--ignore-eos", "--logits-out", str(logits_path))
        ref = np.fromfile(FIXTURES / "logits" / case["last_logits_file"], dtype="<f4")
        got = np.fromfile(logits_path, dtype="<f4")
        assert np.abs(got - ref).max() < 1e-3
        assert j["token_ids"] == case["greedy_64"]


@pytest.mark.parametrize("kind", ["f16", "bf16"])
def test_half_precision_copies_give_the_same_greedy_tokens(fastserve_bin, float_copies, kind):
    # The same prompt, 64 greedy tokens, F32 vs F16 / BF16 weights of the same model.
    case = REF["cases"][0]
    f32 = generate(fastserve_bin, float_copies["f32"], "--prompt-ids", ids_arg(case["prompt_ids"]),
                   "--max-tokens", "64", "--ignore-eos")
    half = generate(fastserve_bin, float_copies[kind], "--prompt-ids", ids_arg(case["prompt_ids"]),
                    "--max-tokens", "64", "--ignore-eos")
    assert half["token_ids"] == f32["token_ids"]


def test_chunked_prefill_gives_the_same_tokens(fastserve_bin, default_model):
    ids = ids_arg(REF["cases"][1]["prompt_ids"])
    whole = generate(fastserve_bin, default_model, "--prompt-ids", ids, "--max-tokens", "16")
    chunked = generate(fastserve_bin, default_model, "--prompt-ids", ids, "--max-tokens", "16",
                       "--prefill-chunk", "7")
    assert chunked["token_ids"] == whole["token_ids"]


def test_f16_kv_cache_generates_and_chunked_prefill_agrees(fastserve_bin, default_model):
    # --kv-cache-dtype f16 (docs/KERNELS.md "Attention"): K/V rounded to f16, so the tokens may
    # differ from f32's; the first greedy token (transformers' top-1, checked with f32 above) and
    # chunked vs whole prefill over the f16 cache must agree.
    case = REF["cases"][1]
    ids = ids_arg(case["prompt_ids"])
    whole = generate(fastserve_bin, default_model, "--prompt-ids", ids, "--max-tokens", "16",
                     "--ignore-eos", "--kv-cache-dtype", "f16")
    chunked = generate(fastserve_bin, default_model, "--prompt-ids", ids, "--max-tokens", "16",
                       "--ignore-eos", "--kv-cache-dtype", "f16", "--prefill-chunk", "7")
    assert len(whole["token_ids"]) == 16
    assert chunked["token_ids"] == whole["token_ids"]
    f32 = generate(fastserve_bin, default_model, "--prompt-ids", ids, "--max-tokens", "1",
                   "--kv-cache-dtype", "f32")
    assert whole["token_ids"][0] == f32["token_ids"][0]
    bad = generate(fastserve_bin, default_model, "--prompt-ids", ids, "--kv-cache-dtype", "f8",
                   check=False)
    assert bad.returncode != 0 and "--kv-cache-dtype" in bad.stderr


def test_seeded_sampling_is_reproducible(fastserve_bin, default_model):
    args = ["--prompt", "Once upon a time", "--max-tokens", "16", "--temperature", "0.8"]
    a = generate(fastserve_bin, default_model, *args, "--seed", "42")
    b = generate(fastserve_bin, default_model, *args, "--seed", "42")
    c = generate(fastserve_bin, default_model, *args, "--seed", "43")
    assert a["token_ids"] == b["token_ids"]
    assert a["token_ids"] != c["token_ids"]


def test_chat_prompt_stops_at_end_of_turn(fastserve_bin, default_model):
    j = generate(fastserve_bin, default_model, "--prompt", "Say hello.", "--chat", "--max-tokens", "200")
    assert j["prompt_token_ids"][0] == 1  # <|im_start|> of the ChatML template
    if j["finish_reason"] == "stop":
        assert j["token_ids"][-1] == 2  # <|im_end|>


def test_bad_inputs_fail_with_a_clear_message(fastserve_bin, default_model, tmp_path):
    proc = generate(fastserve_bin, default_model, "--prompt-ids", "1,99999999", check=False)
    assert proc.returncode != 0 and "99999999" in proc.stderr
    proc = generate(fastserve_bin, default_model, "--prompt-ids", "1,x", check=False)
    assert proc.returncode != 0 and "token ids" in proc.stderr
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(open(default_model, "rb").read(1 << 20))
    proc = generate(fastserve_bin, str(truncated), "--prompt", "hi", check=False)
    assert proc.returncode != 0 and str(truncated) in proc.stderr
    proc = generate(fastserve_bin, str(tmp_path / "missing.gguf"), "--prompt", "hi", check=False)
    assert proc.returncode != 0 and "missing.gguf" in proc.stderr
