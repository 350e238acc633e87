"""Distributed serving over MPI on the CPU (docs/DISTRIBUTED.md): `mpirun -np 2 fastserve ... --tp 2`
and `--pp 2` give the same greedy tokens as one rank, through `fastserve generate` and through the
server with the official openai client, on the default model (PP; its 9 heads do not split by 2)
and on random-weight models whose heads do (TP and PP); `fastserve profile` measures the ranks. Also: the errors for a wrong world size or
an indivisible model, and a rank that dies makes the others exit instead of hanging."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import time
import urllib.request

import openai
import pytest

from conftest import FIXTURES, free_port

pytestmark = pytest.mark.skipif(shutil.which("mpirun") is None,
                                reason="mpirun not found (scripts/setup.sh installs openmpi-bin)")

PROMPTS = ["The capital of France is", "Once upon a time, a little robot",
           "def fibonacci(n):"]


def mpi_env():
    env = dict(os.environ)
    # Shared-memory transport only: no network probing in containers; no CMA (ptrace) copies.
    env.update({"OMPI_MCA_btl": "self,vader", "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
                "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_ALLOW_RUN_AS_ROOT": "1",
                "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_plm_rsh_agent": "false"})
    return env


def mpirun(np_):
    return ["mpirun", "-np", str(np_), "--oversubscribe"]


@pytest.fixture(scope="module")
def random_config(tmp_path_factory):
    """A llama shape whose heads split over 2 ranks, with the default model's vocabulary (so the
    default tokenizer serves it); --load-format dummy gives it deterministic random weights."""
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 128,
              "intermediate_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2,
              "head_dim": 32, "num_hidden_layers": 4, "max_position_embeddings": 512,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "vocab_size": 49152,
              "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
              "hidden_act": "silu"}
    path = tmp_path_factory.mktemp("random_model") / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def model_args(name, default_model, random_config):
    if name == "default":
        return ["--model", default_model]
    if name == "random":
        return ["--model", random_config, "--load-format", "dummy"]
    return ["--model", str(FIXTURES / "models" / name)]


def generate(fastserve_bin, margs, layout, prompt_args, max_tokens=16):
    np_ = 1
    cmd = [fastserve_bin, "generate", *margs, "--json", "--threads", "1", "--max-tokens",
           str(max_tokens),
           "--ignore-eos", *prompt_args]
    if layout:
        np_ = layout[1]
        cmd = mpirun(np_) + cmd + [layout[0], str(layout[1])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=mpi_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    assert len(lines) == 1, "only rank 0 prints: " + proc.stdout
    return json.loads(lines[0])


@pytest.mark.parametrize("name,layout", [
    ("default", ("--pp", 2)),
    ("random", ("--tp", 2)),
    ("random", ("--pp", 2)),
    ("tiny-qwen2", ("--tp", 2)),   # q/k/v biases sliced
    ("tiny-opt", ("--tp", 2)),     # LayerNorm, ReLU, fc1/fc2 and out-proj biases (added once)
    ("tiny-llama", ("--pp", 2)),
])
def test_generate_matches_one_rank(fastserve_bin, default_model, random_config, name, layout):
    margs = model_args(name, default_model, random_config)
    prompt = ["--prompt", PROMPTS[0]] if name in ("default", "random") else ["--prompt-ids",
                                                                            "1,5,9,20"]
    one = generate(fastserve_bin, margs, None, prompt)
    dist = generate(fastserve_bin, margs, layout, prompt)
    assert dist["token_ids"] == one["token_ids"]
    # Row-parallel partial sums are added in another order: logprobs agree to float rounding.
    assert dist["logprobs"] == pytest.approx(one["logprobs"], abs=1e-3)


@pytest.mark.parametrize("name,layout", [("default", ("--pp", 2)), ("random", ("--tp", 2))])
def test_f16_kv_cache_matches_one_rank(fastserve_bin, default_model, random_config, name, layout):
    """--kv-cache-dtype f16 reaches every rank's shard: the same tokens as one rank with f16 K/V."""
    margs = model_args(name, default_model, random_config) + ["--kv-cache-dtype", "f16"]
    prompt = ["--prompt", PROMPTS[1]]
    one = generate(fastserve_bin, margs, None, prompt)
    dist = generate(fastserve_bin, margs, layout, prompt)
    assert dist["token_ids"] == one["token_ids"]
    assert dist["logprobs"] == pytest.approx(one["logprobs"], abs=1e-3)
    f32 = generate(fastserve_bin, model_args(name, default_model, random_config), layout, prompt)
    # f16 K/V rounds the cache: the logprobs move (the tokens may or may not).
    assert dist["logprobs"] != f32["logprobs"]


class Server:
    """`fastserve serve` on one rank, or under mpirun with a layout."""

    def __init__(self, fastserve_bin, margs, layout, log_path, extra_env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = pathlib.Path(log_path)
        self.layout = layout
        cmd = [fastserve_bin, "serve", *margs, "--port", str(self.port), "--threads", "1"]
        if "--device-kv-blocks" not in margs:
            cmd += ["--device-kv-blocks", "256", "--host-kv-blocks", "256"]
        if layout:
            cmd = mpirun(layout[1]) + cmd + [layout[0], str(layout[1])]
        env = mpi_env()
        env.update(extra_env or {})
        self._log_file = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("server did not come up: " + self.log.read_text())
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0,
                                    timeout=120)
        self.model = self.client.models.list().data[0].id

    def rank_pid(self, rank):
        import re
        pids = re.findall(rf"rank {rank} \(pid (\d+)\)", self.log.read_text())
        assert pids, self.log.read_text()
        return int(pids[0])

    def stop(self, timeout=60):
        """SIGTERM to the server (rank 0: it stops serving, then tells the other ranks to exit;
        mpirun's own exit code is 1 whenever it is signalled), then the exit code."""
        if self.proc.poll() is None:
            if self.layout:
                os.kill(self.rank_pid(0), signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._log_file.close()
        return rc


def sampled(server):
    """A seeded sampled completion: its logits row goes to rank 0 (greedy rows are picked where
    the logits are, and a pipeline's last stage sends only the picks)."""
    r = server.client.completions.create(model=server.model, prompt=PROMPTS[1], max_tokens=12,
                                         temperature=0.8, seed=7)
    return r.choices[0].text


def completions(server):
    """Greedy text of every prompt (completions API), of one streamed chat, of a greedy request
    with top logprobs (rows, not picks) and of a seeded sampled one."""
    out = []
    for p in PROMPTS:
        r = server.client.completions.create(model=server.model, prompt=p, max_tokens=16,
                                             temperature=0)
        out.append(r.choices[0].text)
    stream = server.client.chat.completions.create(
        model=server.model, messages=[{"role": "user", "content": "What is 2+2?"}],
        max_tokens=16, temperature=0, stream=True)
    out.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
    r = server.client.completions.create(model=server.model, prompt=PROMPTS[2], max_tokens=8,
                                         temperature=0, logprobs=2)
    out.append(r.choices[0].text)
    out.append(sampled(server))
    return out


@pytest.mark.parametrize("name,layout", [
    ("default", ("--pp", 2)),
    ("random", ("--tp", 2)),
    ("random", ("--pp", 2)),
])
def test_server_matches_one_rank(fastserve_bin, default_model, random_config, tmp_path, name,
                                 layout):
    margs = model_args(name, default_model, random_config)
    one = Server(fastserve_bin, margs, None, tmp_path / "one.log")
    try:
        expected = completions(one)
    finally:
        assert one.stop() == 0
    dist = Server(fastserve_bin, margs, layout, tmp_path / "dist.log")
    try:
        got = completions(dist)
        # Several requests at once: batches of several sequences with their own block tables.
        import concurrent.futures
        # Greedy and sampled requests in one batch: the last stage sends picks and rows.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(dist.client.completions.create, model=dist.model, prompt=p,
                                   max_tokens=16, temperature=0) for p in PROMPTS]
            sampled_future = pool.submit(sampled, dist)
            concurrent_texts = [f.result().choices[0].text for f in futures]
            concurrent_sampled = sampled_future.result()
    finally:
        rc = dist.stop()
    log = dist.log.read_text()
    assert rc == 0, log
    assert got == expected
    assert concurrent_texts == expected[:len(PROMPTS)]
    assert concurrent_sampled == expected[-1]
    assert "rank 1 (pid" in log  # both ranks loaded their shard
    if name == "default" and layout[0] == "--pp":
        # Balanced stages: the last stage's LM head (tied, 49152 x 576) costs ~8 of its layers.
        assert "layers [19, 30)" in log, log


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_quantized_tp_on_the_default_model(fastserve_bin, default_model, prompt):
    """Q4_1 row-parallel O/down slices (6 and 16 blocks of 32 per rank) at TP=3, the only TP the
    default model's 9 heads / 3 kv heads allow: same greedy tokens. Logprobs differ by up to ~0.3:
    the partial sums are added in another order, and the decode kernels re-quantize activations to
    8 bits per block, which turns rounding-level differences into a few quantization steps (one rank
    with the scalar vs AVX2 kernels differs as much). On F32 weights TP=3 matches to 1e-5."""
    margs = ["--model", default_model]
    one = generate(fastserve_bin, margs, None, ["--prompt", prompt], max_tokens=12)
    dist = generate(fastserve_bin, margs, ("--tp", 3), ["--prompt", prompt], max_tokens=12)
    assert dist["token_ids"] == one["token_ids"]
    assert dist["logprobs"] == pytest.approx(one["logprobs"], abs=0.5)


def swapped_bytes(server):
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = 0
    for line in text.splitlines():
        if "kv_bytes_swapped_out_total" in line and not line.startswith("#"):
            out += float(line.split()[-1])
    return out


@pytest.mark.parametrize("layout", [("--tp", 2), ("--pp", 2)])
def test_kv_swaps_run_on_every_rank(fastserve_bin, random_config, tmp_path, layout):
    """A device pool too small for the concurrent requests: the scheduler offloads and uploads KV
    blocks; every rank moves its part of them, so the text still equals one rank's."""
    import concurrent.futures
    margs = ["--model", random_config, "--load-format", "dummy"]
    prompts = [f"Story number {i}: once upon a time there was a" for i in range(6)]

    def run(server):
        with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
            futures = [pool.submit(server.client.completions.create, model=server.model, prompt=p,
                                   max_tokens=40, temperature=0) for p in prompts]
            return [f.result().choices[0].text for f in futures]

    extra = ["--device-kv-blocks", "12", "--host-kv-blocks", "64", "--kv-block-size", "8"]
    one = Server(fastserve_bin, margs + extra, None, tmp_path / "one.log")
    try:
        expected = run(one)
    finally:
        one.stop()
    dist = Server(fastserve_bin, margs + extra, layout, tmp_path / "dist.log")
    try:
        got = run(dist)
        swapped = swapped_bytes(dist)
    finally:
        rc = dist.stop()
    assert rc == 0, dist.log.read_text()
    assert swapped > 0, "the test needs KV offloads; make the device pool smaller"
    assert got == expected


def metric(server, name):
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("fastserve:" + name + "{"):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name} in /metrics:\n{text}")


@pytest.mark.parametrize("micro_batches", [2, 1, 3])
def test_pp_keeps_several_batches_in_flight(fastserve_bin, default_model, tmp_path,
                                            micro_batches):
    """PP=2 with several concurrent requests: rank 0 runs stage 0 of batch k + 1 while rank 1 runs
    batch k, so both stages are busy at once (the engine had 2 batches in flight), and the texts
    still equal one rank's. --pp-micro-batches 1 turns pipelining off: one batch at a time; 3
    keeps a batch more in flight than there are stages."""
    import concurrent.futures
    margs = ["--model", default_model]
    prompts = [f"Story number {i}: once upon a time there was a" for i in range(6)]

    def run(server):
        with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
            futures = [pool.submit(server.client.completions.create, model=server.model, prompt=p,
                                   max_tokens=24, temperature=0) for p in prompts]
            return [f.result().choices[0].text for f in futures]

    one = Server(fastserve_bin, margs, None, tmp_path / "one.log")
    try:
        expected = run(one)
    finally:
        assert one.stop() == 0
    dist = Server(fastserve_bin, margs + ["--pp-micro-batches", str(micro_batches)], ("--pp", 2),
                  tmp_path / "dist.log")
    try:
        got = run(dist)
        depth = metric(dist, "pipeline_depth")
        in_flight = metric(dist, "batches_in_flight_max")
    finally:
        rc = dist.stop()
    assert rc == 0, dist.log.read_text()
    assert got == expected
    assert depth == micro_batches
    assert in_flight == micro_batches


@pytest.mark.parametrize("layout", [("--tp", 2), ("--pp", 2)])
def test_profile_measures_the_distributed_executor(fastserve_bin, random_config, tmp_path, layout):
    """`fastserve profile --tp 2` / `--pp 2` times forwards and swaps through the ranks, as the
    server runs them, and writes a cost model that `fastserve sim` reads."""
    profile = tmp_path / "profile.json"
    cmd = mpirun(2) + [fastserve_bin, "profile", "--model", random_config, "--load-format", "dummy",
                       "--threads", "1", layout[0], str(layout[1]), "--prefill-lengths", "8,128,480",
                       "--batch-sizes", "1,4", "--contexts", "16,128", "--repeat", "3", "-o",
                       str(profile)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=mpi_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    spec = json.loads(profile.read_text())
    assert "x 2 ranks" in spec["name"] and f"{layout[0][2:]} 2" in spec["name"], spec["name"]
    assert [p[0] for p in spec["prefill"]] == [8, 128, 480]
    times = [p[1] for p in spec["prefill"]]
    assert times[0] > 0 and times == sorted(times), times
    assert len(spec["decode"]) == 4 and all(d[2] > 0 for d in spec["decode"])
    # One rank's share of a token's K/V (4 layers x K, V x 2 kv heads x 32 x f32 in all): TP halves
    # the kv heads, PP keeps the layers of rank 0's stage (whole layers, not all of them).
    full, per_layer = 4 * 2 * 2 * 32 * 4, 2 * 2 * 32 * 4
    kv = spec["kv_bytes_per_token"]
    assert kv == full // 2 if layout[0] == "--tp" else (0 < kv < full and kv % per_layer == 0), kv
    assert spec["swap_bandwidth_bytes_per_s"] > 0
    trace = tmp_path / "trace.csv"
    trace.write_text("prompt_tokens,output_tokens\n" +
                     "".join(f"{8 + i},{4 + i % 5}\n" for i in range(40)))
    result = tmp_path / "sim.json"
    subprocess.run([fastserve_bin, "sim", "--model-profile", str(profile), "--trace", str(trace),
                    "--num-requests", "40", "--rate", "2", "--result-json", str(result)],
                   check=True, capture_output=True, timeout=300)
    assert json.loads(result.read_text())["completed"] == 40


def test_without_mpirun_the_ranks_are_spawned(fastserve_bin, default_model):
    """`fastserve generate --pp 2` outside mpirun re-runs itself as `mpirun -np 2` (one host):
    rank 0 prints one rank's tokens."""
    margs = model_args("default", default_model, None)
    one = generate(fastserve_bin, margs, None, ["--prompt", PROMPTS[0]])
    env = {k: v for k, v in mpi_env().items() if not k.startswith("OMPI_MCA_btl")}
    proc = subprocess.run([fastserve_bin, "generate", *margs, "--json", "--threads", "1",
                           "--max-tokens", "16", "--ignore-eos", "--prompt", PROMPTS[0], "--pp",
                           "2"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "starting 2 ranks: mpirun -np 2" in proc.stderr
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    assert len(lines) == 1, proc.stdout
    assert json.loads(lines[0])["token_ids"] == one["token_ids"]


def test_too_many_micro_batches_is_a_clear_error(fastserve_bin, random_config):
    cmd = mpirun(2) + [fastserve_bin, "generate", "--model", random_config, "--load-format",
                       "dummy", "--prompt", "hi", "--pp", "2", "--pp-micro-batches", "5",
                       "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=mpi_env())
    assert proc.returncode != 0
    assert "--pp-micro-batches 5: must be between 1 and 2 x --pp (4)" in proc.stderr


def test_wrong_world_size_is_a_clear_error(fastserve_bin, random_config):
    cmd = mpirun(2) + [fastserve_bin, "generate", "--model", random_config, "--load-format",
                       "dummy", "--prompt", "hi", "--tp", "3", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=mpi_env())
    assert proc.returncode != 0
    assert "--tp 3 x --pp 1 = 3 ranks, but MPI started 2 (run under mpirun -np 3)" in proc.stderr


def test_indivisible_heads_is_a_clear_error(fastserve_bin, default_model):
    cmd = mpirun(2) + [fastserve_bin, "generate", "--model", default_model, "--prompt", "hi",
                       "--tp", "2", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=mpi_env())
    assert proc.returncode != 0
    assert "the model's 9 attention heads do not split evenly over 2 ranks" in proc.stderr


def test_dead_rank_stops_the_others(fastserve_bin, random_config, tmp_path):
    server = Server(fastserve_bin, ["--model", random_config, "--load-format", "dummy"],
                    ("--pp", 2), tmp_path / "dist.log", {"FASTSERVE_DIST_TIMEOUT_S": "5"})
    try:
        os.kill(server.rank_pid(1), signal.SIGKILL)
        try:  # the request fails (or the connection drops); the point is what happens next
            server.client.completions.create(model=server.model, prompt="hi", max_tokens=8,
                                             temperature=0, timeout=30)
        except Exception:
            pass
        rc = server.proc.wait(timeout=60)  # exits instead of hanging
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.stop()
    assert rc != 0
    log = server.log.read_text()
    assert "rank 1" in log and ("exited on signal" in log or "peer rank died" in log), log


def test_hung_rank_times_out_with_a_clear_error(fastserve_bin, random_config, tmp_path):
    """A stopped (SIGSTOP) worker is not a death mpirun notices: rank 0's next collective gives up
    after FASTSERVE_DIST_TIMEOUT_S and the job ends with the message."""
    server = Server(fastserve_bin, ["--model", random_config, "--load-format", "dummy"],
                    ("--pp", 2), tmp_path / "dist.log", {"FASTSERVE_DIST_TIMEOUT_S": "3"})
    worker = server.rank_pid(1)
    try:
        os.kill(worker, signal.SIGSTOP)
        try:
            server.client.completions.create(model=server.model, prompt="hi", max_tokens=8,
                                             temperature=0, timeout=60)
        except Exception:
            pass
        rc = server.proc.wait(timeout=60)
    finally:
        try:
            os.kill(worker, signal.SIGCONT)
        except ProcessLookupError:
            pass
        if server.proc.poll() is None:
            server.proc.kill()
        server.stop()
    assert rc != 0
    log = server.log.read_text()
    assert "rank 0: " in log and "did not complete within 3 s" in log and "peer rank died or hangs" \
        in log, log
