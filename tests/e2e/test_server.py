"""`fastserve serve` end to end with the official `openai` client: outputs equal `fastserve generate`
greedy, stop strings, lengths, seeds, logprobs, usage, every error status, concurrency with early
disconnects, auth and graceful shutdown, the `priority` field (docs/SERVER.md)."""
import json
import re
import subprocess
import threading
import time

import requests
import openai
import pytest

from conftest import ServerProcess

PROMPT = "The capital of France is"
CHAT = "What is the capital of France?"


def generate(fastserve_bin, model, prompt, max_tokens, *args):
    proc = subprocess.run([fastserve_bin, "generate", "--model", model, "--json", "--threads", "2",
                           "--prompt", prompt, "--max-tokens", str(max_tokens), *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def expected_text(server, ref):
    """generate's text: like the server's (and OpenAI's), it leaves out the end-of-sequence token."""
    return ref["text"]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def model_id(client):
    return client.models.list().data[0].id


def metrics(server):
    text = requests.get(server.url + "/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        m = re.match(r"^fastserve:(\w+)\{[^}]*\} (\S+)$", line)
        if m and "le=" not in line and "queue_level" not in line:
            out[m.group(1)] = float(m.group(2))
    return out


def assert_serving(client, model_id):
    r = client.completions.create(model=model_id, prompt="Hi", max_tokens=2, temperature=0)
    assert r.usage.completion_tokens >= 1


def test_health_models_and_metrics(server, client, model_id):
    assert requests.get(server.url + "/health", timeout=10).status_code == 200
    models = client.models.list().data
    assert len(models) == 1 and models[0].id == model_id and models[0].object == "model"
    m = metrics(server)
    for name in ("num_requests_running", "num_requests_waiting", "prompt_tokens_total",
                 "generation_tokens_total", "num_preemptions_total", "device_kv_blocks_used",
                 "device_kv_blocks_total", "host_kv_blocks_used", "host_kv_blocks_total",
                 "kv_bytes_swapped_out_total", "kv_bytes_swapped_in_total"):
        assert name in m, name
    assert m["device_kv_blocks_total"] == 512


def test_completion_greedy_matches_generate(fastserve_bin, default_model, server, client, model_id):
    ref = generate(fastserve_bin, default_model, PROMPT, 12)
    ref["text"] = expected_text(server, ref)
    r = client.completions.create(model=model_id, prompt=PROMPT, max_tokens=12, temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert r.choices[0].text == ref["text"]
    assert r.choices[0].finish_reason == ref["finish_reason"] == "length"
    assert r.usage.prompt_tokens == len(ref["prompt_token_ids"])
    assert r.usage.completion_tokens == len(ref["token_ids"])
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    chunks = list(client.completions.create(model=model_id, prompt=PROMPT, max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == ref["text"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 12 and chunks[-1].choices == []
    # One chunk per token (as vLLM streams), also where a token's text is empty.
    assert len([c for c in chunks if c.choices and c.choices[0].finish_reason is None]) == 12

    # The same prompt as token ids.
    r = client.completions.create(model=model_id, prompt=ref["prompt_token_ids"], max_tokens=12, temperature=0)
    assert r.choices[0].text == ref["text"]


def test_chat_greedy_matches_generate(fastserve_bin, default_model, server, client, model_id):
    ref = generate(fastserve_bin, default_model, CHAT, 12, "--chat")
    ref["text"] = expected_text(server, ref)
    messages = [{"role": "user", "content": CHAT}]
    r = client.chat.completions.create(model=model_id, messages=messages, max_tokens=12, temperature=0)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == ref["text"]
    assert r.usage.prompt_tokens == len(ref["prompt_token_ids"])
    assert r.usage.completion_tokens == len(ref["token_ids"])

    chunks = list(client.chat.completions.create(model=model_id, messages=messages, max_tokens=12,
                                                 temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ref["text"]
    assert chunks[-1].choices[0].finish_reason == ref["finish_reason"]
    # max_completion_tokens is the newer name of max_tokens.
    r = client.chat.completions.create(model=model_id, messages=messages, max_completion_tokens=12, temperature=0)
    assert r.choices[0].message.content == ref["text"]


def test_stop_string_ends_before_the_match(client, model_id):
    full = client.completions.create(model=model_id, prompt=PROMPT, max_tokens=12, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    word = full.split()[2]  # a word in the middle, possibly spanning tokens
    cut = full.index(word)
    for stream in (False, True):
        r = client.completions.create(model=model_id, prompt=PROMPT, max_tokens=12, temperature=0,
                                      stop=["@@never@@", word], stream=stream)
        if stream:
            chunks = list(r)
            text = "".join(c.choices[0].text for c in chunks)
            reason = chunks[-1].choices[0].finish_reason
        else:
            text, reason = r.choices[0].text, r.choices[0].finish_reason
        assert text == full[:cut]
        assert reason == "stop"


def test_max_tokens_gives_length(client, model_id):
    r = client.completions.create(model=model_id, prompt="Once upon a time", max_tokens=5, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5


def test_request_log_line_has_the_queue_path(server, client, model_id):
    """One structured line per finished request: id, tokens in/out, TTFT, JCT, reason, queue path."""
    import re
    import time
    r = client.completions.create(model=model_id, prompt="Log line check: one two", max_tokens=3,
                                  temperature=0, extra_body={"ignore_eos": True})
    pattern = re.compile(re.escape(r.id) + r".*: \d+ prompt \+ 3 output tokens, ttft [0-9.]+ s, "
                         r"jct [0-9.]+ s, length, queue L\d+ -> L\d+ \(\d+ demotions, \d+ promotions, "
                         r"\d+ preemptions\)")
    deadline = time.time() + 10
    while time.time() < deadline:
        if pattern.search(server.log.read_text()):
            return
        time.sleep(0.2)
    raise AssertionError("no request log line for " + r.id)


def test_seed_reproducible(client, model_id):
    def run(seed):
        return client.completions.create(model=model_id, prompt="Once upon a time", max_tokens=10,
                                         temperature=1.0, seed=seed,
                                         extra_body={"ignore_eos": True}).choices[0].text
    a, b = run(1234), run(1234)
    assert a == b
    others = {run(s) for s in (1, 2, 3)}
    assert len(others | {a}) > 1


def test_n_choices(client, model_id):
    """n choices: choice i samples with seed + i (the same text as a single request with that seed);
    greedy choices are equal; streams tag chunks with their index; usage sums the completions."""
    def single(seed):
        return client.completions.create(model=model_id, prompt="Once upon a time", max_tokens=8,
                                         temperature=1.0, seed=seed,
                                         extra_body={"ignore_eos": True}).choices[0].text
    r = client.completions.create(model=model_id, prompt="Once upon a time", max_tokens=8,
                                  temperature=1.0, seed=77, n=3, extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert [c.text for c in r.choices] == [single(77), single(78), single(79)]
    assert all(c.finish_reason == "length" for c in r.choices)
    assert r.usage.completion_tokens == 24
    chunks = list(client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Say hi"}], max_tokens=6, temperature=0,
        n=2, stream=True, stream_options={"include_usage": True}))
    texts, reasons = {0: "", 1: ""}, {}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
            if ch.finish_reason:
                reasons[ch.index] = ch.finish_reason
    assert texts[0] == texts[1] and texts[0]
    assert set(reasons) == {0, 1}
    assert chunks[-1].usage.completion_tokens > 0 and chunks[-1].usage.completion_tokens % 2 == 0
    greedy = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Say hi"}], max_tokens=6, temperature=0, n=1)
    assert greedy.choices[0].message.content == texts[0]


def test_logprobs_shape(client, model_id):
    r = client.completions.create(model=model_id, prompt=PROMPT, max_tokens=4, temperature=0, logprobs=2,
                                  extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 4
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert chosen <= 0 and 1 <= len(top) <= 2
        assert max(top.values()) >= chosen - 1e-4
    assert lp.text_offset[0] == 0

    r = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": CHAT}],
                                       max_tokens=4, temperature=0, logprobs=True, top_logprobs=3,
                                       extra_body={"ignore_eos": True})
    content = r.choices[0].logprobs.content
    assert len(content) == 4
    for item in content:
        assert item.logprob <= 0 and len(item.top_logprobs) == 3
        assert item.top_logprobs[0].logprob >= item.logprob - 1e-4

    chunks = list(client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": CHAT}],
                                                 max_tokens=4, temperature=0, logprobs=True, top_logprobs=1,
                                                 stream=True, extra_body={"ignore_eos": True}))
    streamed = [i for c in chunks if c.choices and c.choices[0].logprobs for i in c.choices[0].logprobs.content]
    assert len(streamed) == 4


def test_usage_matches_tokenize(server, client, model_id):
    tok = requests.post(server.url + "/tokenize", json={"prompt": PROMPT}, timeout=10).json()
    r = client.completions.create(model=model_id, prompt=PROMPT, max_tokens=3, temperature=0)
    assert r.usage.prompt_tokens == tok["count"] == len(tok["tokens"])
    detok = requests.post(server.url + "/detokenize", json={"tokens": tok["tokens"]}, timeout=10).json()
    assert detok["prompt"] == PROMPT


def assert_error(response, status, param=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param, body


@pytest.mark.parametrize("body,param", [
    ({"prompt": "x", "max_tokens": "5"}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "temperature": 9}, "temperature"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": "x", "logprobs": 50}, "logprobs"),
    ({"prompt": "x", "n": 0}, "n"),
    ({"prompt": "x", "stop": 3}, "stop"),
    ({"prompt": "x", "echo": True}, "echo"),
    ({"prompt": {"x": 1}}, "prompt"),
    ({"prompt": [1, 999999999]}, None),
    ({"prompt": ""}, None),
    ({"prompt": "x", "max_tokens": 100000}, "prompt"),
    ({"prompt": "x", "priority": 1.5}, "priority"),
    ({"prompt": "x", "priority": 2 ** 31}, "priority"),
])
def test_bad_completion_requests_get_400(server, client, model_id, body, param):
    r = requests.post(server.url + "/v1/completions", json=body, timeout=30)
    assert_error(r, 400, param)
    assert_serving(client, model_id)


def test_error_statuses(server, client, model_id):
    url = server.url
    assert_error(requests.post(url + "/v1/completions", data=b"{not json", timeout=30,
                               headers={"Content-Type": "application/json"}), 400)
    assert_error(requests.post(url + "/v1/chat/completions", json={"messages": "hi"}, timeout=30), 400, "messages")
    assert_error(requests.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": 5}]},
                            timeout=30), 400, "messages")
    assert_error(requests.get(url + "/v1/nothing-here", timeout=10), 404)
    assert_error(requests.get(url + "/v1/completions", timeout=10), 405)
    assert_error(requests.post(url + "/health", timeout=10), 405)
    json_type = {"Content-Type": "application/json"}
    assert_error(requests.post(url + "/v1/completions", data=b"x" * (2 << 20), headers=json_type, timeout=30), 413)
    # A body under the limit but nested deeper than the server takes: 400, not a crash.
    deep = b'{"messages":[{"role":"user","content":"hi","x":' + b"[" * 200000 + b"]" * 200000 + b"}]}"
    assert_error(requests.post(url + "/v1/chat/completions", data=deep, headers=json_type, timeout=30), 400)
    big = json.dumps({"prompt": "Hi", "max_tokens": 1, "padding": "x" * 100000}).encode()
    assert requests.post(url + "/v1/completions", data=big, headers=json_type, timeout=60).status_code == 200
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "hi " * 9000}],
                                       max_tokens=4)
    assert "context" in e.value.message
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=model_id, prompt="x", max_tokens=2, temperature=-1)
    assert requests.get(url + "/health", timeout=10).status_code == 200
    assert_serving(client, model_id)


def stream_one(base_url, i, results, close_early):
    c = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=300)
    try:
        stream = c.completions.create(model=c.models.list().data[0].id, prompt=f"Story number {i}:",
                                      max_tokens=6 + i % 8, temperature=0, stream=True,
                                      extra_body={"ignore_eos": True})
        text, reason = "", None
        for chunk in stream:
            if close_early:
                stream.close()
                results[i] = ("closed", None)
                return
            if chunk.choices:
                text += chunk.choices[0].text
                reason = chunk.choices[0].finish_reason or reason
        results[i] = (text, reason)
    except Exception as e:  # noqa: BLE001 - reported by the assertion below
        results[i] = ("error", repr(e))


def test_concurrent_streams_with_early_disconnects(server, client, model_id):
    results = {}
    threads = [threading.Thread(target=stream_one, args=(server.url + "/v1", i, results, i % 3 == 0))
               for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert len(results) == 20, results
    for i, (text, reason) in results.items():
        if i % 3 == 0:
            assert text == "closed", (i, text, reason)
        else:
            assert reason == "length" and text, (i, text, reason)
    # Aborted and finished jobs free their KV blocks.
    deadline = time.time() + 60
    while time.time() < deadline:
        m = metrics(server)
        if m["num_requests_running"] == 0 and m["num_requests_waiting"] == 0 and m["device_kv_blocks_used"] == 0:
            break
        time.sleep(0.5)
    assert m["num_requests_running"] == 0 and m["device_kv_blocks_used"] == 0, m
    assert m["host_kv_blocks_used"] == 0, m
    assert_serving(client, model_id)


def test_api_key_queue_limit_and_graceful_stop(fastserve_bin, default_model, tmp_path):
    s = ServerProcess(fastserve_bin, default_model, tmp_path / "auth.log", "--threads", "2",
                      "--device-kv-blocks", "64", "--host-kv-blocks", "64", "--api-key", "sekret",
                      "--max-queued-requests", "1")
    try:
        body = {"prompt": "Hi", "max_tokens": 2}
        assert_error(requests.post(s.url + "/v1/completions", json=body, timeout=30), 401)
        assert_error(requests.post(s.url + "/v1/completions", json=body, timeout=30,
                                headers={"Authorization": "Bearer wrong"}), 401)
        assert requests.get(s.url + "/health", timeout=10).status_code == 200
        good = openai.OpenAI(base_url=s.url + "/v1", api_key="sekret", max_retries=0, timeout=120)
        model = good.models.list().data[0].id
        assert good.completions.create(model=model, prompt="Hi", max_tokens=2).usage.completion_tokens >= 1

        # One request in flight fills the queue: the next gets 429 with Retry-After.
        stream = good.completions.create(model=model, prompt="Once upon a time", max_tokens=200, stream=True,
                                         extra_body={"ignore_eos": True})
        next(iter(stream))
        r = requests.post(s.url + "/v1/completions", json=body, timeout=30,
                       headers={"Authorization": "Bearer sekret"})
        assert_error(r, 429)
        assert r.headers.get("retry-after")
        # SIGTERM with the stream open: the stream ends, the process exits 0.
        s.proc.terminate()
        rest = list(stream)
        assert rest and rest[-1].choices[0].finish_reason == "abort"
    finally:
        rc = s.stop()
    assert rc == 0, (tmp_path / "auth.log").read_text()


def test_priority_is_validated(server, client, model_id):
    for bad in ("high", True, -2 ** 31 - 1):
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model=model_id, prompt="x", max_tokens=1, extra_body={"priority": bad})
        assert e.value.body["param"] == "priority", e.value.body
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "x"}],
                                           max_tokens=1, extra_body={"priority": bad})
        assert e.value.body["param"] == "priority", e.value.body
    r = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "x"}],
                                       max_tokens=1, extra_body={"priority": -1})
    assert r.choices[0].finish_reason in ("length", "stop")


def finish_order(url, model, long_priority, short_priority, state_checks=None):
    """One batch slot, FCFS order (vllm): a long streamed request runs, then a short one arrives.
    Returns the names in the order they finished."""
    c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
    order, lock = [], threading.Lock()
    stream = c.completions.create(model=model, prompt="Write a long story.", max_tokens=160, temperature=0,
                                  stream=True, extra_body={"ignore_eos": True, "priority": long_priority})
    chunks = iter(stream)
    next(chunks)  # the long request is running

    def short():
        # 24 tokens: either order has a margin of many iterations over client-side delays.
        r = c.completions.create(model=model, prompt="Hi", max_tokens=24, temperature=0,
                                 extra_body={"ignore_eos": True, "priority": short_priority})
        assert r.usage.completion_tokens == 24
        with lock:
            order.append("short")

    t = threading.Thread(target=short)
    t.start()
    if state_checks:
        state_checks()
    reason = None
    for chunk in chunks:
        if chunk.choices:
            reason = chunk.choices[0].finish_reason or reason
    with lock:
        order.append("long")
    t.join(timeout=300)
    assert reason == "length"
    return order


def test_lower_priority_value_runs_first(fastserve_bin, default_model, tmp_path):
    s = ServerProcess(fastserve_bin, default_model, tmp_path / "prio.log", "--threads", "1",
                      "--policy", "vllm", "--max-num-seqs", "1", "--device-kv-blocks", "64",
                      "--host-kv-blocks", "64")
    try:
        model = requests.get(s.url + "/v1/models", timeout=10).json()["data"][0]["id"]

        def state_shows_priorities():
            # The live job list shows each job's priority.
            deadline, seen = time.time() + 20, set()
            while time.time() < deadline and not {3, -1} <= seen:
                state = requests.get(s.url + "/v1/scheduler/state", timeout=10).json()
                seen |= {j["priority"] for q in state.get("queues", []) for j in q["jobs"]}
                time.sleep(0.05)
            assert {3, -1} <= seen, seen

        # Equal priorities: the short request waits for the long one (one slot, arrival order).
        assert finish_order(s.url, model, 0, 0) == ["long", "short"]
        # A lower value takes the slot from the running request and finishes first.
        assert finish_order(s.url, model, 3, -1, state_shows_priorities) == ["short", "long"]
    finally:
        s.stop()
