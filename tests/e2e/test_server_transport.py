"""The event-driven HTTP transport of `fastserve serve` and its limits (docs/SERVER.md, issues 6 and 11):
200 concurrent streams with a third of the clients leaving midway, disconnects of non-streaming requests,
slowloris clients, keep-alive idle timeouts, 429/503 with Retry-After, body/header/prompt/max_tokens
limits and the per-request timeout. Real server process, official `openai` client and raw sockets."""
import json
import re
import socket
import subprocess
import threading
import time

import openai
import pytest
import requests

from conftest import TIMEOUT_SCALE, ServerProcess

PROMPTS = ["Story number 1:", "The capital of France is", "Once upon a time", "List three colors:"]
LENGTHS = [1, 2, 4, 7, 11, 16]


def metrics(server):
    text = requests.get(server.url + "/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        m = re.match(r"^fastserve:(\w+)\{[^}]*\} (\S+)$", line)
        if m and "le=" not in line and "queue_level" not in line:
            out[m.group(1)] = float(m.group(2))
    return out


def wait_idle(server, timeout=60):
    """Waits until no request runs or waits and no KV block is in use; returns the last metrics."""
    deadline = time.time() + timeout
    while True:
        m = metrics(server)
        if (m["num_requests_running"] == 0 and m["num_requests_waiting"] == 0 and m["device_kv_blocks_used"] == 0
                and m["host_kv_blocks_used"] == 0) or time.time() > deadline:
            return m
        time.sleep(0.2)


def assert_error(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def greedy_tokens(fastserve_bin, model, prompt, max_tokens):
    """`fastserve generate` greedy token ids (the single-sequence reference)."""
    proc = subprocess.run([fastserve_bin, "generate", "--model", model, "--json", "--threads", "2", "--ignore-eos",
                           "--prompt", prompt, "--max-tokens", str(max_tokens)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])["token_ids"]


def raw_request(port, data, timeout=10):
    """Sends bytes on a fresh connection; returns everything read until the server closes or times out."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except socket.timeout:
            pass
        return out


def closed_within(sock, seconds):
    """True when the peer closes `sock` (recv returns b"" or resets) within `seconds`."""
    sock.settimeout(seconds)
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


# --------------------------------------------------------------------------------------------------------------
# 200 concurrent streams, a third of the clients leaving midway.

def test_200_concurrent_streams_with_a_third_disconnecting(fastserve_bin, default_model, tmp_path):
    tokens = {p: greedy_tokens(fastserve_bin, default_model, p, max(LENGTHS)) for p in PROMPTS}
    s = ServerProcess(fastserve_bin, default_model, tmp_path / "streams.log", "--threads", "2",
                      "--max-num-seqs", "64", "--device-kv-blocks", "512", "--host-kv-blocks", "512")
    try:
        # The greedy text of the first n tokens, decoded as the server decodes a finished stream.
        refs = {(p, n): requests.post(s.url + "/detokenize", json={"tokens": tokens[p][:n]}, timeout=30).json()["prompt"]
                for p in PROMPTS for n in LENGTHS}
        n = 200
        results = {}
        start = threading.Barrier(n)

        def one(i):
            leaves = i % 3 == 0
            prompt, max_tokens = PROMPTS[i % len(PROMPTS)], max(LENGTHS) if leaves else LENGTHS[i % len(LENGTHS)]
            c = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0, timeout=900)
            try:
                start.wait(timeout=60)
                stream = c.completions.create(model="SmolLM2-135M-Instruct.Q4_1", prompt=prompt,
                                              max_tokens=max_tokens, temperature=0, stream=True,
                                              stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
                text, reason, usage = "", None, None
                for chunk in stream:
                    usage = chunk.usage or usage
                    if chunk.choices:
                        text += chunk.choices[0].text
                        reason = chunk.choices[0].finish_reason or reason
                    if leaves and text:
                        stream.close()  # midway: tokens were received, more are due
                        results[i] = ("left", None, prompt, max_tokens)
                        return
                assert usage.completion_tokens == max_tokens, usage
                results[i] = (text, reason, prompt, max_tokens)
            except Exception as e:  # noqa: BLE001 - reported by the assertions below
                results[i] = ("error", repr(e), prompt, max_tokens)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=1200)  # minutes when other jobs load the 2 cores; ~1 min when idle
        assert len(results) == n, sorted(set(range(n)) - set(results))
        num_left = 0
        for i, (text, reason, prompt, max_tokens) in sorted(results.items()):
            if text == "left":
                num_left += 1
                continue
            assert reason == "length", (i, text, reason)
            assert text == refs[(prompt, max_tokens)], (i, prompt, max_tokens, text, refs[(prompt, max_tokens)])
        assert num_left == len(range(0, n, 3)), num_left
        m = wait_idle(s)
        assert m["num_requests_running"] == 0 and m["num_requests_waiting"] == 0, m
        assert m["device_kv_blocks_used"] == 0 and m["host_kv_blocks_used"] == 0, m
        assert m["http_streams_open"] == 0, m
        # The server noticed the clients that left and aborted their jobs (some may have finished first).
        log = (tmp_path / "streams.log").read_text()
        assert log.count("the client went away") + log.count("aborted by the client") >= num_left // 2, num_left
    finally:
        assert s.stop() == 0


# --------------------------------------------------------------------------------------------------------------
# Limits and timeouts on one server.

@pytest.fixture(scope="module")
def limited(fastserve_bin, default_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("limited") / "server.log"
    s = ServerProcess(fastserve_bin, default_model, log, "--threads", "2", "--device-kv-blocks", "256",
                      "--host-kv-blocks", "256", "--max-body-bytes", "65536", "--max-header-bytes", "4096",
                      "--max-prompt-tokens", "64", "--max-output-tokens", "40", "--header-timeout-s", "2",
                      "--keep-alive-timeout-s", "2", "--max-queued-requests", "4")
    yield s
    assert s.stop() == 0


def test_slowloris_headers_are_cut_off_while_others_are_served(limited):
    slow = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
    started = time.time()
    header = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Padding: "
    closed = False
    sent = 0
    for byte in header + b"a" * 200:
        try:
            slow.sendall(bytes([byte]))
            sent += 1
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        # Normal clients are served meanwhile.
        if sent % 10 == 0:
            assert requests.get(limited.url + "/health", timeout=5).status_code == 200
        if closed_within(slow, 0.1):
            closed = True
            break
    elapsed = time.time() - started
    slow.close()
    assert closed, "the slow client was never closed"
    assert 1.5 < elapsed < 6 * TIMEOUT_SCALE, elapsed  # --header-timeout-s 2
    assert sent < len(header) + 200


def test_idle_keep_alive_connection_is_closed(limited):
    s = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    response = s.recv(65536)
    assert response.startswith(b"HTTP/1.1 200") and b"keep-alive" in response.lower()
    started = time.time()
    assert closed_within(s, 6 * TIMEOUT_SCALE)
    assert 1.5 < time.time() - started < 4 * TIMEOUT_SCALE  # --keep-alive-timeout-s 2
    s.close()


def test_a_connection_without_any_request_is_closed(limited):
    s = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
    started = time.time()
    assert closed_within(s, 6 * TIMEOUT_SCALE)
    assert time.time() - started < 4 * TIMEOUT_SCALE
    s.close()


def test_size_and_token_limits(limited):
    url = limited.url
    json_type = {"Content-Type": "application/json"}
    assert_error(requests.post(url + "/v1/completions", data=b"x" * 100000, headers=json_type, timeout=30), 413)
    big_header = {"X-Big": "y" * 8000, **json_type}
    r = requests.post(url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 1}, headers=big_header,
                      timeout=30)
    assert_error(r, 431)
    e = assert_error(requests.post(url + "/v1/completions", json={"prompt": "hello " * 200, "max_tokens": 1},
                                   timeout=30), 400)
    assert e["param"] == "prompt" and "--max-prompt-tokens" in e["message"]
    e = assert_error(requests.post(url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 41}, timeout=30), 400)
    assert e["param"] == "max_tokens"
    # Chat without max_tokens: the default is capped by --max-output-tokens, not refused.
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
    r = client.chat.completions.create(model="SmolLM2-135M-Instruct.Q4_1",
                                       messages=[{"role": "user", "content": "Say hi"}], temperature=0,
                                       extra_body={"ignore_eos": True})
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 40
    assert requests.get(url + "/health", timeout=10).status_code == 200


def test_non_streaming_client_that_leaves_frees_its_job(limited):
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0, "ignore_eos": True})
    s = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
    s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
    time.sleep(0.05)  # the request is read and running (40 tokens take >= 0.18 s even on an idle machine)
    s.close()
    started = time.time()
    m = wait_idle(limited, timeout=20 * TIMEOUT_SCALE)
    assert m["num_requests_running"] == 0 and m["device_kv_blocks_used"] == 0, m
    assert time.time() - started < 2.5 * TIMEOUT_SCALE  # well before its 40 tokens (~0.1 s each)
    assert "the client went away" in limited.log.read_text()


def test_queue_limit_gives_429_with_retry_after(limited):
    body = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    statuses, retry_after = [], []

    def one():
        r = requests.post(limited.url + "/v1/completions", json=body, timeout=60)
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert_error(r, 429)
            retry_after.append(r.headers.get("Retry-After"))

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(200) >= 4 and statuses.count(429) >= 1, statuses
    assert set(statuses) <= {200, 429}, statuses
    assert all(v == "1" for v in retry_after), retry_after
    assert requests.post(limited.url + "/v1/completions", json=body, timeout=60).status_code == 200


def test_connection_limit_gives_503_with_retry_after(fastserve_bin, default_model, tmp_path):
    s = ServerProcess(fastserve_bin, default_model, tmp_path / "conn.log", "--threads", "2", "--max-connections", "4",
                      "--header-timeout-s", "30")
    try:
        idle = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in range(4)]
        time.sleep(0.3)
        response = raw_request(s.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 503"), response
        assert b"Retry-After: 1" in response
        assert b'"error"' in response
        for c in idle:
            c.close()
        time.sleep(0.3)
        assert requests.get(s.url + "/health", timeout=10).status_code == 200
        assert metrics(s)["http_connections_rejected_total"] >= 1
    finally:
        assert s.stop() == 0


def test_request_timeout_ends_streaming_and_non_streaming_requests(fastserve_bin, default_model, tmp_path):
    s = ServerProcess(fastserve_bin, default_model, tmp_path / "timeout.log", "--threads", "2",
                      "--request-timeout-s", "1")
    try:
        body = {"prompt": "Once upon a time", "max_tokens": 500, "temperature": 0, "ignore_eos": True}
        started = time.time()
        e = assert_error(requests.post(s.url + "/v1/completions", json=body, timeout=60), 504)
        assert e["code"] == "request_timeout"
        assert 0.9 < time.time() - started < 10 * TIMEOUT_SCALE
        with requests.post(s.url + "/v1/completions", json={**body, "stream": True}, stream=True, timeout=60) as r:
            assert r.status_code == 200
            events = [line for line in r.iter_lines() if line]
        assert events[-1] == b"data: [DONE]"
        assert json.loads(events[-2][len(b"data: "):])["error"]["code"] == "request_timeout"
        m = wait_idle(s)
        assert m["device_kv_blocks_used"] == 0 and m["num_requests_running"] == 0, m
    finally:
        assert s.stop() == 0
