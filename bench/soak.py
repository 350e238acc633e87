#!/usr/bin/env python3
"""Soak and fault injection for `fastserve serve` (issue 11; docs/RELIABILITY.md "Soak").

Starts the server on the default model on a free loopback port with a tiny device KV pool (constant
offloading to the host pool), a bounded queue and small request limits, then:

1. Reference: one request at a time on the idle server, the greedy (temperature 0) output of every
   distinct (prompt, max_tokens, endpoint) the soak will send.
2. Warm-up: the first --warmup-frac of the requests (same mix), then waits until the server is idle
   and takes the RSS baseline (so the host KV pool's pages and the allocator's arenas are already in).
3. Soak: the rest, open loop (Poisson arrivals at --rate, above what the 2-core machine serves, so a
   queue builds and the queue limit answers 429). Mix: completions and chat, streaming and not, prompts
   of mixed lengths from bench/data/sharegpt_200.jsonl and a few max_tokens, greedy. --disconnect-frac
   of the clients leave at a random point (half-sent body, before the answer, after k stream events,
   a non-streaming one after a random delay; FIN or RST); slow readers open a stream with a tiny
   receive buffer and never read (closed at the end); --malformed-frac are malformed or oversized
   (bad JSON, wrong types, out-of-range values, unknown model, over-long prompt, max_tokens above the
   limit, body above --max-body-bytes, headers above --max-header-bytes, unknown route, wrong method,
   a broken request line) and must get the documented 4xx with OpenAI's error JSON.
4. After: slow readers closed, the server idle (no request running or waiting, zero KV blocks used in
   both pools, no stream open), /health ok, a normal request still served with its reference text,
   RSS compared with the baseline, then SIGTERM and exit 0, and no crash or sanitizer report in the log.

Every completed request's text, finish_reason and completion token count must equal its reference;
every rejected one must carry a proper status (429/503 with Retry-After and error JSON). A request that
runs past the server's --request-timeout-s (504 or a stream's request_timeout event, both documented) is
counted apart and may be at most --max-timed-out-frac of the admitted ones. Writes a JSON summary
(--out) and exits 1 on any violation.

    nice .venv/bin/python bench/soak.py --fastserve build/fastserve --threads 1 --num-prompts 40   # 10,000
    .venv/bin/python bench/soak.py --num-requests 300 --rate 12 --out /tmp/soak.json   # a smoke run
"""
import argparse
import asyncio
import collections
import json
import os
import pathlib
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Lines in the server log that mean a crash, a failed CHECK or a sanitizer report.
BAD_LOG = re.compile(r"AddressSanitizer|LeakSanitizer|ThreadSanitizer|UndefinedBehaviorSanitizer|runtime error:|"
                     r"FS_CHECK failed|terminate called|Segmentation fault|double free|corrupted")

MALFORMED_KINDS = ["bad_json", "not_object", "wrong_type", "out_of_range", "unknown_model", "long_prompt",
                   "big_max_tokens", "oversized_body", "oversized_header", "empty_messages", "unknown_route",
                   "wrong_method", "bad_request_line"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fastserve", default=os.environ.get("FASTSERVE_BIN", str(ROOT / "build" / "fastserve")))
    p.add_argument("--model", default=str(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--num-requests", type=int, default=10000)
    p.add_argument("--rate", type=float, default=6.0, help="Poisson arrival rate, requests/s (above capacity)")
    p.add_argument("--num-prompts", type=int, default=50, help="distinct prompts (ShareGPT, cut to mixed lengths)")
    p.add_argument("--max-tokens", default="1,8,32,64", help="max_tokens values, comma-separated")
    p.add_argument("--max-prompt-chars", type=int, default=1400, help="longest prompt cut (24..1400 characters)")
    p.add_argument("--disconnect-frac", type=float, default=0.3)
    p.add_argument("--malformed-frac", type=float, default=0.05)
    p.add_argument("--slow-reader-every", type=int, default=500, help="one slow reader per this many requests")
    p.add_argument("--slow-reader-tokens", type=int, default=200)
    p.add_argument("--warmup-frac", type=float, default=0.05)
    p.add_argument("--fill-requests", type=int, default=None,
                   help="concurrent long requests that start the warm-up (default --max-queued-requests)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device-kv-blocks", type=int, default=48)
    p.add_argument("--host-kv-blocks", type=int, default=256)
    p.add_argument("--max-num-seqs", type=int, default=16)
    p.add_argument("--max-queued-requests", type=int, default=48)
    p.add_argument("--max-prompt-tokens", type=int, default=512)
    p.add_argument("--max-output-tokens", type=int, default=256)
    p.add_argument("--max-body-bytes", type=int, default=65536)
    p.add_argument("--max-header-bytes", type=int, default=8192)
    p.add_argument("--write-timeout-s", type=float, default=20)
    p.add_argument("--rss-tolerance-mib", type=float, default=32,
                   help="RSS after the soak may exceed the baseline by this much plus 10%%")
    p.add_argument("--request-timeout-s", type=float, default=900, help="client side, per request")
    p.add_argument("--max-timed-out-frac", type=float, default=0.05,
                   help="requests past the server's --request-timeout-s (504 / timeout event, documented) "
                        "may be at most this fraction of those admitted; more fails the run")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--server-arg", action="append", default=[], help="extra `serve` argument (repeatable)")
    p.add_argument("--log", default=None, help="server log (default: next to --out)")
    p.add_argument("--out", default="soak_summary.json")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------------------------------
# Server process, /proc and /metrics.

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    out = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "VmSwap", "Threads"):
            out[key] = int(value.split()[0])  # kB, or a count
    return out


def http_get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def metrics(url):
    out = {}
    for line in http_get(url + "/metrics")[1].splitlines():
        m = re.match(r"^fastserve:(\w+)\{[^}]*\} (\S+)$", line)
        if m and "le=" not in line and "queue_level" not in line:
            out[m.group(1)] = float(m.group(2))
    return out


class Server:
    def __init__(self, args, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        cmd = [args.fastserve, "serve", "--model", args.model, "--host", "127.0.0.1", "--port", str(self.port),
               "--threads", str(args.threads), "--device-kv-blocks", str(args.device_kv_blocks),
               "--host-kv-blocks", str(args.host_kv_blocks), "--max-num-seqs", str(args.max_num_seqs),
               "--max-queued-requests", str(args.max_queued_requests),
               "--max-prompt-tokens", str(args.max_prompt_tokens),
               "--max-output-tokens", str(args.max_output_tokens), "--max-body-bytes", str(args.max_body_bytes),
               "--max-header-bytes", str(args.max_header_bytes), "--write-timeout-s", str(args.write_timeout_s),
               *args.server_arg]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited at startup:\n" + pathlib.Path(log_path).read_text())
            try:
                if http_get(self.url + "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("server did not come up:\n" + pathlib.Path(log_path).read_text())
            time.sleep(0.2)
        self.model_name = json.loads(http_get(self.url + "/v1/models")[1])["data"][0]["id"]

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._log.close()
        return rc


# ----------------------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 client over asyncio streams: full control over when a client stops reading, leaves
# (FIN or RST), sends half a body or a broken request line.

class Conn:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @staticmethod
    async def open(port, rcvbuf=None):
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: a small window
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
        return Conn(reader, writer)

    async def send(self, data):
        self.writer.write(data)
        await self.writer.drain()

    async def read_head(self):
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        return status, headers

    async def body_chunks(self, headers):
        """Yields the body's bytes as they arrive (chunked, Content-Length or until EOF)."""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    return
                data = await self.reader.readexactly(size)
                await self.reader.readexactly(2)
                yield data
        elif "content-length" in headers:
            n = int(headers["content-length"])
            if n:
                yield await self.reader.readexactly(n)
        else:
            while data := await self.reader.read(65536):
                yield data

    async def read_body(self, headers):
        return b"".join([c async for c in self.body_chunks(headers)])

    def close(self, reset=False):
        try:
            if reset:
                self.writer.transport.abort()  # RST
            else:
                self.writer.close()  # FIN
        except Exception:  # noqa: BLE001 - already closed
            pass


def http_request(method, path, body=b"", extra_headers=""):
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra_headers}\r\n").encode() + body


def is_error_json(body):
    try:
        e = json.loads(body)["error"]
        return set(e) == {"message", "type", "param", "code"} and isinstance(e["message"], str) and e["message"]
    except Exception:  # noqa: BLE001 - not the shape
        return False


# ----------------------------------------------------------------------------------------------------------
# The workload.

def load_prompts(n, max_chars, rng):
    """n distinct prompts of mixed lengths: ShareGPT prompts cut to a length drawn from a skewed set."""
    rows = [json.loads(line)["prompt"] for line in (ROOT / "bench" / "data" / "sharegpt_200.jsonl").open()]
    rows = [r for r in rows if r.strip()]
    budgets = [24, 48, 96, 200, 400, 800, 1400]  # characters; ~4 per token, so ~6 to ~350 tokens
    weights = [5, 5, 4, 3, 2, 1, 1]
    budgets, weights = [b for b in budgets if b <= max_chars], weights[:len([b for b in budgets if b <= max_chars])]
    prompts = []
    for i in range(n):
        text = rows[i % len(rows)]
        cut = rng.choices(budgets, weights)[0]
        p = text[:cut].strip()
        if i >= len(rows):
            p = f"({i}) {p}"
        if p not in prompts:
            prompts.append(p)
    return prompts


def gen_body(endpoint, prompt, max_tokens, model, stream, include_usage):
    body = {"model": model, "max_tokens": max_tokens, "temperature": 0}
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def path_of(endpoint):
    return "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"


def make_plan(args, prompts, max_tokens_list, rng):
    """The soak's requests, in arrival order: dicts with kind normal | malformed | slow."""
    plan = []
    for i in range(args.num_requests):
        if args.slow_reader_every > 0 and i % args.slow_reader_every == args.slow_reader_every // 2:
            plan.append({"kind": "slow", "prompt": rng.randrange(len(prompts))})
            continue
        if rng.random() < args.malformed_frac:
            plan.append({"kind": "malformed", "what": MALFORMED_KINDS[rng.randrange(len(MALFORMED_KINDS))]})
            continue
        r = {"kind": "normal", "endpoint": rng.choice(["completions", "chat"]),
             "prompt": rng.randrange(len(prompts)), "max_tokens": rng.choice(max_tokens_list),
             "stream": rng.random() < 0.6, "include_usage": rng.random() < 0.5, "leave": None,
             "reset": rng.random() < 0.5}
        if rng.random() < args.disconnect_frac:
            if r["stream"]:
                point = rng.choices(["half_body", "before_head", "after_events"], [1, 2, 7])[0]
                r["leave"] = (point, rng.randint(0, r["max_tokens"]) if point == "after_events"
                              else rng.uniform(0, 0.5))
            else:
                point = rng.choices(["half_body", "after_delay"], [1, 4])[0]
                r["leave"] = (point, rng.uniform(0, 2.0))
        plan.append(r)
    return plan


class Soak:
    def __init__(self, args, server, prompts):
        self.args, self.server, self.prompts = args, server, prompts
        self.port = server.port
        self.model = server.model_name
        self.refs = {}  # (endpoint, prompt index, max_tokens) -> {"text", "finish_reason", "completion_tokens"}
        self.outcomes = collections.Counter()
        self.statuses = collections.Counter()
        self.malformed = collections.Counter()
        self.violations = []
        self.violation_kinds = collections.Counter()
        self.slow = []  # open Conns of the slow readers
        self.latencies = []
        self.rss = []  # VmRSS samples, kB
        self.max_blocks = {"device": 0, "host": 0}  # the most KV blocks seen in use (sampled)

    def violate(self, what, spec, detail):
        self.outcomes["violation"] += 1
        self.violation_kinds[what] += 1
        if not self.args.quiet:
            print(f"VIOLATION {what}: {spec} {str(detail)[:300]}", file=sys.stderr, flush=True)
        self.violations.append({"what": what, "request": {k: v for k, v in spec.items()}, "detail": str(detail)[:500]})

    # -- one request of each kind -------------------------------------------------------------------------

    async def generate(self, endpoint, prompt_idx, max_tokens, stream=False, include_usage=False, leave=None,
                       reset=False):
        """Sends one generation; returns ("completed", status, result), ("rejected", status, headers/body),
        ("left", ...), or ("error", status, detail)."""
        body = gen_body(endpoint, self.prompts[prompt_idx], max_tokens, self.model, stream, include_usage)
        data = http_request("POST", path_of(endpoint), body)
        conn = await Conn.open(self.port)
        try:
            if leave and leave[0] == "half_body":
                await conn.send(data[:len(data) - len(body) // 2 - 1])
                await asyncio.sleep(leave[1])
                conn.close(reset)
                return "left", None, "half_body"
            await conn.send(data)
            if leave and leave[0] == "before_head":
                await asyncio.sleep(leave[1])
                conn.close(reset)
                return "left", None, "before_head"
            if leave and leave[0] == "after_delay":
                try:
                    status, headers = await asyncio.wait_for(conn.read_head(), leave[1])
                except asyncio.TimeoutError:
                    conn.close(reset)
                    return "left", None, "after_delay"
            else:
                status, headers = await conn.read_head()
            if status != 200:
                return "rejected", status, (headers, await conn.read_body(headers))
            if not stream:
                payload = json.loads(await conn.read_body(headers))
                choice = payload["choices"][0]
                text = choice["message"]["content"] if endpoint == "chat" else choice["text"]
                return "completed", 200, {"text": text, "finish_reason": choice["finish_reason"],
                                          "completion_tokens": payload["usage"]["completion_tokens"]}
            text, reason, usage, num_events, buf = "", None, None, 0, b""
            async for chunk in conn.body_chunks(headers):
                buf += chunk
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    if not event.startswith(b"data: "):
                        return "error", 200, f"not an SSE data event: {event[:200]!r}"
                    if event == b"data: [DONE]":
                        continue
                    obj = json.loads(event[6:])
                    if "error" in obj:
                        if obj["error"].get("code") == "request_timeout" and is_error_json(event[6:]):
                            return "timed_out", 200, obj  # documented: a stream past --request-timeout-s
                        return "error", 200, f"error event: {obj}"
                    if obj.get("usage"):
                        usage = obj["usage"]
                    for c in obj.get("choices", []):
                        piece = c["delta"].get("content") if endpoint == "chat" else c["text"]
                        text += piece or ""
                        reason = c.get("finish_reason") or reason
                    num_events += 1
                    if leave and leave[0] == "after_events" and num_events > leave[1]:
                        conn.close(reset)
                        return "left", None, "after_events"
            if include_usage and usage is None:
                return "error", 200, "include_usage without a usage chunk"
            return "completed", 200, {"text": text, "finish_reason": reason,
                                      "completion_tokens": usage["completion_tokens"] if usage else None}
        finally:
            conn.close()

    async def run_normal(self, spec):
        key = (spec["endpoint"], spec["prompt"], spec["max_tokens"])
        started = time.time()
        try:
            outcome, status, result = await asyncio.wait_for(
                self.generate(*key, stream=spec["stream"], include_usage=spec["include_usage"], leave=spec["leave"],
                              reset=spec["reset"]), self.args.request_timeout_s)
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as e:
            self.statuses["conn_error"] += 1
            return self.violate("connection error", spec, repr(e))
        except asyncio.TimeoutError:
            self.statuses["client_timeout"] += 1
            return self.violate("client timeout", spec, self.args.request_timeout_s)
        self.statuses[status if status is not None else "left"] += 1
        if outcome == "left":
            self.outcomes["left_" + result] += 1
        elif outcome == "completed":
            ref = self.refs[key]
            got = dict(result)
            if not spec["stream"] or spec["include_usage"]:
                same = got == ref
            else:
                same = got["text"] == ref["text"] and got["finish_reason"] == ref["finish_reason"]
            if not same:
                return self.violate("text differs from the greedy reference", spec, {"got": got, "ref": ref})
            self.outcomes["completed"] += 1
            self.latencies.append(time.time() - started)
        elif outcome == "timed_out":
            self.outcomes["timed_out_stream"] += 1
        elif outcome == "rejected":
            headers, body = result
            if status in (429, 503) and headers.get("retry-after") == "1" and is_error_json(body):
                self.outcomes[f"rejected_{status}"] += 1
            elif status == 504 and is_error_json(body) and json.loads(body)["error"]["code"] == "request_timeout":
                self.outcomes["timed_out_504"] += 1  # documented: ran past --request-timeout-s
            else:
                self.violate(f"improper rejection {status}", spec, (headers, body[:300]))
        else:
            self.violate("bad response", spec, (status, result))

    async def run_malformed(self, spec):
        what = spec["what"]
        a = self.args
        ok = {"prompt": "Hello", "max_tokens": 4, "temperature": 0}
        chat = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}
        expect, data = 400, None
        if what == "bad_json":
            data = http_request("POST", "/v1/completions", b'{"prompt": "Hello", "max_tokens": ')
        elif what == "not_object":
            data = http_request("POST", "/v1/chat/completions", b'[1, 2, 3]')
        elif what == "wrong_type":
            data = http_request("POST", "/v1/completions", json.dumps({**ok, "max_tokens": "four"}).encode())
        elif what == "out_of_range":
            data = http_request("POST", "/v1/chat/completions", json.dumps({**chat, "temperature": 7}).encode())
        elif what == "unknown_model":
            expect = 404
            data = http_request("POST", "/v1/completions", json.dumps({**ok, "model": "gpt-9"}).encode())
        elif what == "long_prompt":
            prompt = "hello world " * a.max_prompt_tokens
            data = http_request("POST", "/v1/completions", json.dumps({**ok, "prompt": prompt}).encode())
        elif what == "big_max_tokens":
            data = http_request("POST", "/v1/chat/completions",
                                json.dumps({**chat, "max_tokens": a.max_output_tokens + 1}).encode())
        elif what == "oversized_body":
            expect = 413
            data = http_request("POST", "/v1/completions",
                                json.dumps({**ok, "prompt": "x" * (a.max_body_bytes + 1000)}).encode())
        elif what == "oversized_header":
            expect = 431
            data = http_request("POST", "/v1/completions", json.dumps(ok).encode(),
                                f"X-Padding: {'p' * (a.max_header_bytes + 100)}\r\n")
        elif what == "empty_messages":
            data = http_request("POST", "/v1/chat/completions", json.dumps({**chat, "messages": []}).encode())
        elif what == "unknown_route":
            expect = 404
            data = http_request("POST", "/v1/embeddings", json.dumps(ok).encode())
        elif what == "wrong_method":
            expect = 405
            data = http_request("GET", "/v1/completions")
        elif what == "bad_request_line":
            data = b"BLAH /v1/completions HTTP/9.9 what\r\n\r\n"
        try:
            conn = await Conn.open(self.port)
            try:
                await conn.send(data)
                status, headers = await conn.read_head()
                body = await conn.read_body(headers)
            finally:
                conn.close()
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as e:
            self.statuses["conn_error"] += 1
            return self.violate(f"malformed {what}: connection error", spec, repr(e))
        self.statuses[status] += 1
        if status == expect and is_error_json(body):
            self.outcomes["malformed_rejected"] += 1
            self.malformed[what] += 1
        elif status in (429, 503) and headers.get("retry-after") == "1" and is_error_json(body):
            self.outcomes[f"rejected_{status}"] += 1  # the queue was full before validation got to it
        else:
            self.violate(f"malformed {what}: expected {expect}", spec, (status, body[:300]))

    async def run_slow(self, spec):
        """A stream that is never read, through a tiny receive window; kept open until the end."""
        body = json.dumps({"model": self.model, "prompt": self.prompts[spec["prompt"]], "stream": True,
                           "max_tokens": self.args.slow_reader_tokens, "temperature": 0,
                           "ignore_eos": True}).encode()
        try:
            conn = await Conn.open(self.port, rcvbuf=2048)
            await conn.send(http_request("POST", "/v1/completions", body))
        except (ConnectionError, OSError) as e:
            return self.violate("slow reader could not send", spec, repr(e))
        self.slow.append(conn)
        self.outcomes["slow_reader"] += 1

    async def run(self, spec):
        try:
            if spec["kind"] == "normal":
                await self.run_normal(spec)
            elif spec["kind"] == "malformed":
                await self.run_malformed(spec)
            else:
                await self.run_slow(spec)
        except Exception as e:  # noqa: BLE001 - a harness or protocol surprise is a violation too
            self.violate("exception", spec, repr(e))

    # -- phases -------------------------------------------------------------------------------------------

    async def reference(self, keys):
        for key in sorted(keys):
            outcome, status, result = await self.generate(*key)
            if outcome != "completed":
                raise RuntimeError(f"reference {key}: {outcome} {status} {result}")
            self.refs[key] = result

    async def fire(self, plan, rate, rng, log_every):
        tasks = []
        t0 = time.time()
        next_at = t0
        for i, spec in enumerate(plan):
            next_at += rng.expovariate(rate)
            delay = next_at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.run(spec)))
            if log_every and (i + 1) % log_every == 0:
                done = sum(t.done() for t in tasks)
                self.log(f"  sent {i + 1}/{len(plan)} ({done} done) in {time.time() - t0:.0f} s; "
                         f"{dict(self.outcomes)}")
        await asyncio.gather(*tasks)
        return time.time() - t0

    async def monitor(self, stop):
        """Samples the most KV blocks in use (every 0.25 s) and VmRSS (every 1 s) until `stop` is set."""
        url, pid, i = self.server.url, self.server.proc.pid, 0
        while not stop.is_set():
            try:
                m = await asyncio.to_thread(metrics, url)
                self.max_blocks["device"] = max(self.max_blocks["device"], int(m["device_kv_blocks_used"]))
                self.max_blocks["host"] = max(self.max_blocks["host"], int(m["host_kv_blocks_used"]))
                if i % 4 == 0:
                    self.rss.append(proc_status(pid)["VmRSS"])
            except OSError:
                return
            i += 1
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except asyncio.TimeoutError:
                pass

    async def fill_pools(self, n, max_tokens):
        """n concurrent streams of the longest prompts (ignore_eos): enough KV demand that the device pool
        overflows into the host pool; their text is not checked, only that each ends properly."""
        longest = sorted(range(len(self.prompts)), key=lambda i: -len(self.prompts[i]))
        async def one(i):
            body = json.dumps({"model": self.model, "prompt": self.prompts[longest[i % len(longest)]],
                               "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}).encode()
            conn = await Conn.open(self.port)
            try:
                await conn.send(http_request("POST", "/v1/completions", body))
                status, headers = await conn.read_head()
                body = await conn.read_body(headers)
            finally:
                conn.close()
            if status == 200 and json.loads(body)["usage"]["completion_tokens"] == max_tokens:
                self.outcomes["fill_completed"] += 1
            elif status == 429 and headers.get("retry-after") == "1" and is_error_json(body):
                self.outcomes["fill_rejected_429"] += 1
            else:
                self.violate("fill request", {"i": i}, (status, body[:300]))
        await asyncio.gather(*(one(i) for i in range(n)))

    def log(self, msg):
        if not self.args.quiet:
            print(msg, flush=True)


async def wait_idle(url, timeout):
    """Waits until nothing runs or waits, no KV block is used and no stream is open; returns the metrics."""
    deadline = time.time() + timeout
    while True:
        m = await asyncio.to_thread(metrics, url)
        idle = (m["num_requests_running"] == 0 and m["num_requests_waiting"] == 0 and m["device_kv_blocks_used"] == 0
                and m["host_kv_blocks_used"] == 0 and m.get("http_streams_open", 0) == 0)
        if idle or time.time() > deadline:
            return m, idle
        await asyncio.sleep(0.5)


async def slow_reader_fates(conns):
    """For each slow reader: did the server close it (write timeout) before we did?"""
    closed_by_server = 0
    for c in conns:
        try:
            # Drain what it buffered; EOF within a moment means the server had dropped it.
            while True:
                data = await asyncio.wait_for(c.reader.read(1 << 20), 0.5)
                if not data:
                    closed_by_server += 1
                    break
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        c.close(reset=True)
    return closed_by_server


async def main_async(args):
    rng = random.Random(args.seed)
    out_path = pathlib.Path(args.out)
    log_path = pathlib.Path(args.log) if args.log else out_path.with_suffix(".server.log")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    prompts = load_prompts(args.num_prompts, args.max_prompt_chars, rng)
    max_tokens_list = [int(x) for x in args.max_tokens.split(",")]
    plan = make_plan(args, prompts, max_tokens_list, rng)
    summary = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "config": {k: v for k, v in vars(args).items()}}
    server = await asyncio.to_thread(Server, args, log_path)
    summary["server_cmd"] = " ".join(server.cmd)
    soak = Soak(args, server, prompts)
    pid = server.proc.pid
    kv = json.loads(http_get(server.url + "/v1/scheduler/state")[1])["kv"]
    block_bytes, total_blocks = kv["block_bytes"], {p: kv[p]["total_blocks"] for p in ("device", "host")}
    rss = {"after_start_kB": proc_status(pid)["VmRSS"]}
    checks = {}
    try:
        keys = {(s["endpoint"], s["prompt"], s["max_tokens"]) for s in plan if s["kind"] == "normal"}
        t = time.time()
        await soak.reference(keys)
        summary["reference"] = {"num": len(keys), "seconds": round(time.time() - t, 1)}
        soak.log(f"soak: {len(keys)} references in {time.time() - t:.0f} s; server pid {pid} on {server.url}")

        stop_monitor = asyncio.Event()
        monitor = asyncio.create_task(soak.monitor(stop_monitor))
        t = time.time()
        num_fill = args.max_queued_requests if args.fill_requests is None else args.fill_requests
        await soak.fill_pools(num_fill, max(max_tokens_list))
        num_warmup = int(len(plan) * args.warmup_frac)
        log_every = max(100, len(plan) // 20)
        warm_s = await soak.fire(plan[:num_warmup], args.rate, rng, log_every) + time.time() - t
        m, idle = await wait_idle(server.url, 120)
        # The KV pools are calloc'd and their pages resident once touched; blocks are reused last-freed
        # first, so the pages touched are those of the most blocks ever in use at once. RSS may still grow
        # by the blocks never used so far (at most; the sampled maximum undercounts the true one).
        rss["baseline_kB"] = proc_status(pid)["VmRSS"]
        rss["max_kv_blocks_used_at_baseline"] = dict(soak.max_blocks)
        untouched_kB = sum(total_blocks[p] - soak.max_blocks[p] for p in total_blocks) * block_bytes // 1024
        rss["kv_pages_maybe_untouched_at_baseline_kB"] = untouched_kB
        soak.log(f"soak: fill + warm-up of {num_warmup} in {warm_s:.0f} s; idle={idle}; RSS baseline "
                 f"{rss['baseline_kB'] / 1024:.0f} MiB; most KV blocks in use {soak.max_blocks} of {total_blocks}")
        main_s = await soak.fire(plan[num_warmup:], args.rate, rng, log_every)
        summary["duration_s"] = {"warmup": round(warm_s, 1), "main": round(main_s, 1)}
        soak.log(f"soak: main phase of {len(plan) - num_warmup} in {main_s:.0f} s")

        # After: close the slow readers, wait for idle, check health, a normal request, memory, metrics.
        server_alive = server.proc.poll() is None
        m_before_close = await asyncio.to_thread(metrics, server.url)
        closed_by_server = await slow_reader_fates(soak.slow)
        summary["slow_readers"] = {"num": len(soak.slow), "closed_by_server_first": closed_by_server,
                                   "streams_open_before_closing": m_before_close.get("http_streams_open")}
        m, idle = await wait_idle(server.url, 180)
        stop_monitor.set()
        await monitor
        st = proc_status(pid)
        rss["after_kB"] = st["VmRSS"]
        rss["peak_kB"] = st["VmHWM"]
        rss["swap_kB"] = st["VmSwap"]
        rss["threads"] = st["Threads"]
        rss["max_sampled_kB"] = max(soak.rss, default=0)
        rss["max_kv_blocks_used"] = dict(soak.max_blocks)
        rss["limit_kB"] = int(rss["baseline_kB"] * 1.10 + args.rss_tolerance_mib * 1024 + untouched_kB)
        summary["rss"] = rss
        summary["metrics_after"] = {k: m[k] for k in sorted(m)}
        checks["server_alive"] = server_alive
        checks["idle_zero_kv_blocks"] = idle
        checks["health_ok"] = (await asyncio.to_thread(http_get, server.url + "/health"))[0] == 200
        key = sorted(soak.refs)[0]
        outcome, status, result = await soak.generate(*key)
        checks["normal_request_served"] = outcome == "completed" and result == soak.refs[key]
        checks["rss_near_baseline"] = rss["after_kB"] <= rss["limit_kB"]
        o = soak.outcomes
        timed_out = o["timed_out_504"] + o["timed_out_stream"]
        admitted = timed_out + o["completed"] + sum(v for k, v in o.items() if k.startswith("left_"))
        checks["few_timed_out"] = timed_out <= args.max_timed_out_frac * max(1, admitted)
        checks["kv_swapped"] = m["kv_bytes_swapped_out_total"] > 0
    finally:
        rc = server.stop()
    log_text = log_path.read_text(errors="replace")
    bad = [line for line in log_text.splitlines() if BAD_LOG.search(line)]
    checks["clean_exit"] = rc == 0
    checks["log_clean"] = not bad
    summary["checks"] = checks
    summary["exit_code"] = rc
    summary["bad_log_lines"] = bad[:20]
    summary["log_counts"] = {"client_went_away": log_text.count("the client went away"),
                             "aborted": log_text.count("aborted"),
                             "request_lines": log_text.count(" I request ")}
    summary["outcomes"] = dict(sorted(soak.outcomes.items()))
    summary["statuses"] = {str(k): v for k, v in sorted(soak.statuses.items(), key=lambda kv: str(kv[0]))}
    summary["malformed"] = dict(sorted(soak.malformed.items()))
    lat = sorted(soak.latencies)
    if lat:
        summary["completed_latency_s"] = {"p50": round(lat[len(lat) // 2], 3),
                                          "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3)}
    summary["num_violations"] = len(soak.violations)
    summary["violation_kinds"] = dict(soak.violation_kinds)
    summary["violations"] = soak.violations[:20]
    summary["ok"] = not soak.violations and all(checks.values())
    out_path.write_text(json.dumps(summary, indent=2) + "\n")
    soak.log(json.dumps({k: summary[k] for k in ("outcomes", "statuses", "checks", "rss", "num_violations", "ok")},
                        indent=1))
    return 0 if summary["ok"] else 1


def main(argv=None):
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
