#!/usr/bin/env python3
"""Holds N concurrent streaming requests open against `fastserve serve` (issue 6: >= 1000 on the 2-core
machine without a thread per connection) and reports what that costs the server.

It starts the server (or uses --url/--pid), opens N chat-completion streams with ignore_eos and a long
max_tokens (so they stay open while the engine works through them), waits until every stream has its
first SSE chunk (the role chunk the server sends on submission) and /metrics counts them all
(running + waiting and http_streams_open), samples the server's threads and RSS from /proc/PID/status,
holds for --hold-s counting the token chunks that arrive, then closes every client and waits until the
server has aborted all of them (no request running or waiting, zero KV blocks in both pools).

    .venv/bin/python bench/open_streams.py --fastserve build/fastserve --streams 1000
"""
import argparse
import asyncio
import json
import os
import pathlib
import re
import resource
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]


def proc_status(pid):
    out = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Threads", "VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def metrics(url):
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^fastserve:(\w+)\{[^}]*\} (\S+)$", line)
        if m and "le=" not in line and "queue_level" not in line:
            out[m.group(1)] = float(m.group(2))
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stream:
    def __init__(self):
        self.status = None
        self.num_events = 0  # "data: {" events received (the first is the role chunk)
        self.writer = None
        self.error = None


async def open_stream(host, port, path, body, stream, connect_limit):
    async with connect_limit:
        reader, writer = await asyncio.open_connection(host, port)
    stream.writer = writer
    writer.write((f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    stream.status = int(head.split()[1])
    tail = b""
    while True:
        data = await reader.read(65536)
        if not data:
            return
        data = tail + data
        stream.num_events += data.count(b"data: {")
        tail = data[-6:]
        stream.num_events -= tail.count(b"data: {")  # counted again with the next read


async def run(args, url, pid):
    host, port = url.split("//")[1].split(":")
    port = int(port)
    model = json.load(urllib.request.urlopen(url + "/v1/models", timeout=30))["data"][0]["id"]
    before = proc_status(pid)
    request = {"model": model, "max_tokens": args.max_tokens, "temperature": 0, "ignore_eos": True, "stream": True}
    if args.token_prompt:
        # A model without a tokenizer: token ids in, and logprobs so that every token makes a chunk.
        path = "/v1/completions"
        request.update(prompt=[1, 5, 9, 13], logprobs=0)
    else:
        path = "/v1/chat/completions"  # the role chunk arrives as soon as the request is submitted
        request.update(messages=[{"role": "user", "content": "Tell me a long story."}])
    body = json.dumps(request).encode()
    streams = [Stream() for _ in range(args.streams)]
    connect_limit = asyncio.Semaphore(256)
    started = time.time()
    tasks = [asyncio.create_task(open_stream(host, port, path, body, s, connect_limit)) for s in streams]

    def num_open():
        # Chat: the role chunk comes on submission. Token prompts: the 200 headers do (the first token
        # chunk waits for the scheduler to reach the job).
        if args.token_prompt:
            return sum(1 for s in streams if s.status == 200)
        return sum(1 for s in streams if s.num_events >= 1)

    deadline = started + args.open_timeout_s
    while num_open() < args.streams and time.time() < deadline:
        await asyncio.sleep(0.05)
    opened_s = time.time() - started
    opened = num_open()
    m = await asyncio.to_thread(metrics, url)
    during = proc_status(pid)
    in_engine = m["num_requests_running"] + m["num_requests_waiting"]
    report = {
        "streams": args.streams, "max_tokens": args.max_tokens,
        "streams_open": opened, "open_all_s": round(opened_s, 2),
        "streams_with_first_chunk": sum(1 for s in streams if s.num_events >= 1),
        "metrics_running": m["num_requests_running"], "metrics_waiting": m["num_requests_waiting"],
        "metrics_http_streams_open": m.get("http_streams_open"),
        "metrics_http_connections_open": m.get("http_connections_open"),
        "server_threads_idle": before["Threads"], "server_threads_open": during["Threads"],
        "server_rss_idle_mib": round(before["VmRSS"] / 1024, 1),
        "server_rss_open_mib": round(during["VmRSS"] / 1024, 1),
        "status_counts": {str(k): sum(1 for s in streams if s.status == k) for k in {s.status for s in streams}},
    }
    events_before = sum(s.num_events for s in streams)
    await asyncio.sleep(args.hold_s)
    m2 = await asyncio.to_thread(metrics, url)
    report["still_open_after_hold"] = sum(1 for t in tasks if not t.done())
    report["metrics_streams_open_after_hold"] = m2.get("http_streams_open")
    report["token_chunks_per_s_during_hold"] = round((sum(s.num_events for s in streams) - events_before)
                                                     / args.hold_s, 1)
    report["server_threads_after_hold"] = proc_status(pid)["Threads"]
    # Close every client; the server must notice and abort all of them.
    closed = time.time()
    for s in streams:
        if s.writer:
            s.writer.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    while True:
        m3 = await asyncio.to_thread(metrics, url)
        idle = (m3["num_requests_running"] == 0 and m3["num_requests_waiting"] == 0
                and m3["device_kv_blocks_used"] == 0 and m3["host_kv_blocks_used"] == 0
                and m3.get("http_streams_open", 0) == 0)
        if idle or time.time() - closed > 120:
            break
        await asyncio.sleep(0.2)
    report["all_aborted_and_freed_s"] = round(time.time() - closed, 2) if idle else None
    if not idle:
        report["metrics_after_close"] = {k: v for k, v in m3.items() if "total" not in k and "bucket" not in k}
    report["server_rss_after_close_mib"] = round(proc_status(pid)["VmRSS"] / 1024, 1)
    report["ok"] = bool(opened == args.streams and in_engine >= args.streams and idle)
    return report


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fastserve", default=os.environ.get("FASTSERVE_BIN", str(ROOT / "build" / "fastserve")))
    p.add_argument("--model", default=str(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--url", help="use a running server (then give --pid)")
    p.add_argument("--pid", type=int)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--hold-s", type=float, default=10)
    p.add_argument("--token-prompt", action="store_true",
                   help="completions with a token-id prompt (models without a tokenizer, e.g. "
                        "tests/fixtures/models/tiny-llama.gguf); default: chat")
    p.add_argument("--open-timeout-s", type=float, default=120)
    p.add_argument("--server-args", default="--threads 2",
                   help="extra `fastserve serve` arguments (default: %(default)s)")
    p.add_argument("--json", help="also write the report here")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.streams + 256)), hard))

    server = None
    if args.url:
        url, pid = args.url.rstrip("/"), args.pid
    else:
        port = free_port()
        cmd = [args.fastserve, "serve", "--model", args.model, "--port", str(port), *args.server_args.split()]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url, pid = f"http://127.0.0.1:{port}", server.pid
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    sys.exit(f"server exited: {' '.join(cmd)}")
                time.sleep(0.2)
        print(f"server: {' '.join(cmd)}", file=sys.stderr)
    try:
        report = asyncio.run(run(args, url, pid))
    finally:
        if server:
            server.terminate()
            report_rc = server.wait(timeout=60)
    if server:
        report["server_exit_code"] = report_rc
    print(json.dumps(report, indent=1))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
