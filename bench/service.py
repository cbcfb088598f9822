"""Benchmark: the HTTP service on loopback against its bare framework and the in-process pipeline.

    .venv/bin/python bench/service.py [--requests 2000] [--threads 4] [--seconds 5] [--renders 5]

Starts `ara-sidecar serve` (a temporary cache, no token) and measures, with a new TCP connection
per request (http.client): `GET /health` (the bare-endpoint baseline), then `POST /v1/render`
of a reply already rendered (a cache hit): p50 and p99 (targets ≤ 2 ms and ≤ 10 ms), and the
cache-hit throughput of a few client threads. Last, cold renders of ~10 s replies through the
API against the same texts rendered in this process into a cache of its own (both store their
chunks, speech and video as they go), both with warm models, alternating: the API's overhead
(target ≤ 5 %).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from render import REPLY, machine_line

from ara_sidecar.config import load_settings
from ara_sidecar.pipeline import Pipeline, RenderRequest
from ara_sidecar.text import split_sentences

HOST = "127.0.0.1"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def call(port: int, method: str, path: str, body: dict | None = None, timeout: float = 300) -> tuple:
    """One request on a new connection: (status, parsed JSON body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, data, {"Content-Type": "application/json"} if data else {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def latencies(request: Callable[[], tuple], n: int) -> list[float]:
    """Seconds per request, sorted, after a short warm-up."""
    for _ in range(min(100, n)):
        request()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        status, _ = request()
        times.append(time.perf_counter() - start)
        assert status == 200, status
    return sorted(times)


def percentiles(times: list[float]) -> str:
    return f"p50 {statistics.median(times) * 1e3:.3f} ms, p99 {times[int(len(times) * 0.99)] * 1e3:.3f} ms"


def throughput(request: Callable[[], tuple], threads: int, seconds: float) -> float:
    """Requests per second answered to `threads` clients, each one request at a time."""
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def client(i: int) -> None:
        while time.perf_counter() < deadline:
            assert request()[0] == 200
            counts[i] += 1

    pool = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


NAMES = ("Anna", "Bert", "Cleo", "Dirk", "Emil", "Fran", "Gwen", "Hugo", "Inge", "Jens")


def variant(i: int) -> str:
    """REPLY addressed to a name in every sentence: a ~10 s reply no cache holds, not even per sentence."""
    return " ".join(f"{s[:-1]}, {NAMES[i % len(NAMES)]}{s[-1]}" for s in split_sentences(REPLY))


def start_server(cache_dir: Path, log_path: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ARA_SERVER_TOKEN"}
    env["ARA_CACHE_DIR"] = str(cache_dir)
    sidecar = Path(sys.executable).with_name("ara-sidecar")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(sidecar), "serve", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if call(port, "GET", "/health/detailed", timeout=5)[1]["worker"]["ready"]:
                return proc, port
        except (OSError, KeyError):
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the server did not start:\n{log_path.read_text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per endpoint")
    parser.add_argument("--threads", type=int, default=4, help="client threads for the throughput")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the throughput run")
    parser.add_argument("--renders", type=int, default=5, help="cold renders per side (median)")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp) / "cache", Path(tmp) / "server.log")
        try:
            health = lambda: call(port, "GET", "/health")  # noqa: E731
            hit = lambda: call(port, "POST", "/v1/render", {"text": REPLY})  # noqa: E731
            first = hit()[1]
            assert first["cached"] is False, first
            times = latencies(health, args.requests)
            print(f"GET /health (bare endpoint), {args.requests}×: {percentiles(times)}")
            times = latencies(hit, args.requests)
            assert hit()[1]["cached"] is True
            print(
                f"POST /v1/render cache hit, {args.requests}×: {percentiles(times)} "
                "(targets p50 ≤ 2 ms, p99 ≤ 10 ms)"
            )
            rate = throughput(hit, args.threads, args.seconds)
            print(f"cache-hit throughput, {args.threads} client threads: {rate:,.0f} req/s")

            pipeline = Pipeline(load_settings({**os.environ, "ARA_CACHE_DIR": str(Path(tmp) / "local")}))
            pipeline.load()
            out = Path(tmp) / "local.mp4"
            pipeline.render(RenderRequest(text=REPLY), out, use_cache=False)  # warm, like the worker
            api, local = [], []
            for i in range(args.renders):
                for side in (0, 1) if i % 2 else (1, 0):  # alternate which goes first
                    start = time.perf_counter()
                    if side:
                        status, body = call(port, "POST", "/v1/render", {"text": variant(i)})
                        assert status == 200 and body["cached"] is False, body
                    else:  # reporting its chunks as the worker does (the first chunk's video then goes first)
                        request = RenderRequest(text=variant(i))
                        result = pipeline.render(request, out, on_chunk=lambda chunk: None)
                        assert not result.cached
                    (api if side else local).append(time.perf_counter() - start)
                print(
                    f"cold render {i + 1} ({result.speech_s:.2f} s of speech): "
                    f"API {api[-1]:.3f} s, in-process {local[-1]:.3f} s"
                )
            over = statistics.median(api) / statistics.median(local) - 1
            print(
                f"cold render medians: API {statistics.median(api):.3f} s, in-process "
                f"{statistics.median(local):.3f} s → API overhead {over * 100:+.1f} % (target ≤ 5 %)"
            )
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    from record import recorded

    with recorded("service"):
        main()
