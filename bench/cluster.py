"""Benchmark: the cluster (#23) on one machine: one API server, one then two render workers, a real
redis-server and a shared folder, all on loopback.

    .venv/bin/python bench/cluster.py [--renders 12] [--jobs 30] [--hits 2000] [--threads 1] [--pin]

- Throughput of distinct renders (short replies no cache holds), all queued at once, with one
  worker and then two (target on a 2-core machine when CPU-bound: ≈ 1.8×). Each worker is one
  CPU slot: `--threads` threads for Piper, the encoder and the numeric libraries; a render still
  overlaps its speech and its video in two threads, so `--pin` (Linux) pins each worker to a core
  of its own, making it exactly one slot.
- The queue's overhead per job, one job at a time on an idle worker: from the API server writing
  the render to a worker starting it, plus from the worker's finish to the client's event stream
  hearing of it (target ≤ 20 ms). The POST /v1/jobs round trip is shown beside it.
- Cache-hit latency through the shared index: `get` of a rendered video in this process (Redis
  round trip + the local first level), p50 and p99 (target p50 ≤ 2 ms); and the whole
  POST /v1/render of a rendered reply through the API server.
Raw output: bench/results/cluster-YYYY-MM-DD.json.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from render import REPLY, machine_line
from service import HOST, call, free_port

SIDECAR = Path(sys.executable).with_name("ara-sidecar")


def start(args: list[str], env: dict[str, str], log: Path, cpu: int | None = None) -> subprocess.Popen:
    """`ara-sidecar ARGS`, logging to `log`; with `cpu`, pinned to that one core (Linux)."""
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(SIDECAR), *args], stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=pin
        )


def wait_for(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def workers(port: int) -> int:
    return len(call(port, "GET", "/health/detailed")[1]["workers"])


def run_jobs(port: int, texts: list[str]) -> float:
    """Queue every text at once; seconds until the last is done."""
    start_s = time.perf_counter()
    ids = []
    for text in texts:
        status, body = call(port, "POST", "/v1/jobs", {"text": text})
        assert status == 202, body
        ids.append(body["job_id"])
    pending = set(ids)
    while pending:
        for job_id in list(pending):
            status = call(port, "GET", f"/v1/jobs/{job_id}")[1]["status"]
            assert status in ("queued", "running", "done"), status
            if status == "done":
                pending.discard(job_id)
        time.sleep(0.02)
    return time.perf_counter() - start_s


def texts(tag: str, n: int) -> list[str]:
    return [f"Reply {tag} {i}, made for this run only. Nobody has heard it before." for i in range(n)]


def wait_done_events(port: int, job_id: str) -> float:
    """Follow the job's event stream; time.time() when the finished job arrives."""
    conn = http.client.HTTPConnection(HOST, port, timeout=300)
    try:
        conn.request("GET", f"/v1/jobs/{job_id}/events")
        response = conn.getresponse()
        while True:
            line = response.readline()
            if not line:
                raise SystemExit("the event stream ended early")
            if line.startswith(b"data:") and b'"status":"done"' in line:
                return time.time()
    finally:
        conn.close()


def redis_cost(client, port: int, text: str) -> tuple[int, int, float]:
    """Commands Redis runs for one render through the API, watched with MONITOR: from clients,
    and inside Lua scripts; without Dramatiq's polling (its "fetch" dispatches and their calls)."""
    seen: list[dict] = []
    stop = threading.Event()

    def watch() -> None:
        with client.monitor() as monitor:
            while not stop.is_set():  # the workers' polls keep commands coming
                seen.append(monitor.next_command())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.5)
    status, body = call(port, "POST", "/v1/render", {"text": text})
    assert status == 200, body
    time.sleep(0.2)
    stop.set()
    watcher.join(10)
    top = inner = 0
    polling = False
    for event in seen:
        if event["client_type"] == "lua":
            inner += not polling
            continue
        polling = event["command"].startswith("EVALSHA") and " fetch " in event["command"]
        top += not polling and not event["command"].startswith("MONITOR")
    return top, inner, body["duration_s"]


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def pct(values: list[float], scale: float = 1e3) -> str:
    values = sorted(values)
    p50, p99 = statistics.median(values), values[int(len(values) * 0.99)]
    return f"p50 {p50 * scale:.2f} ms, p99 {p99 * scale:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=12, help="distinct renders per throughput run")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (a CPU slot)")
    parser.add_argument("--jobs", type=int, default=30, help="jobs timed one by one for the queue overhead")
    parser.add_argument("--hits", type=int, default=2000, help="cache hits timed through the shared index")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin each worker to a core of its own (Linux): a worker is then exactly one CPU slot",
    )
    args = parser.parse_args()
    if args.pin and not hasattr(os, "sched_setaffinity"):
        parser.error("--pin needs Linux (os.sched_setaffinity)")
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    import redis

    from ara_sidecar.cache import open_cache
    from ara_sidecar.config import load_settings

    print(machine_line())
    run = uuid.uuid4().hex[:6]
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rport = free_port()
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(rport),
                    "--bind",
                    HOST,
                    "--save",
                    "",
                    "--dir",
                    tmp_name,
                    "--appendonly",
                    "no",
                    "--logfile",
                    str(tmp / "redis.log"),
                ]
            )
        )
        client = redis.Redis(port=rport)
        wait_for(client.ping, 20, "redis-server")
        env = {k: v for k, v in os.environ.items() if k != "ARA_SERVER_TOKEN"}
        env.update(ARA_CLUSTER_URL=f"redis://{HOST}:{rport}/0", ARA_CLUSTER_STORE=str(tmp / "shared"))

        def machine(name: str) -> dict[str, str]:
            return {**env, "ARA_CACHE_DIR": str(tmp / name)}

        def worker_env(name: str) -> dict[str, str]:
            n = str(args.threads)
            limits = {"ARA_PIPER_THREADS": n, "ARA_ENCODER_THREADS": n, "OMP_NUM_THREADS": n}
            return {**machine(name), **limits, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}

        def start_worker(number: int) -> subprocess.Popen:
            """Worker wNUMBER (on core NUMBER - 1 with --pin)."""
            name = f"w{number}"
            cpu = number - 1 if args.pin else None
            command = ["worker", "--device", "cpu", "--name", name]
            return start(command, worker_env(name), tmp / f"{name}.log", cpu)

        try:
            port = free_port()
            procs.append(start(["serve", "--port", str(port)], machine("api"), tmp / "api.log"))
            procs.append(start_worker(1))
            wait_for(lambda: workers(port) == 1, 120, "the first worker")
            run_jobs(port, texts(f"warm {run}", 1))

            shared_before = _tree_bytes(tmp / "shared")
            one = run_jobs(port, texts(f"one {run}", args.renders))
            shared_per_render = (_tree_bytes(tmp / "shared") - shared_before) / args.renders
            procs.append(start_worker(2))
            wait_for(lambda: workers(port) == 2, 120, "the second worker")
            run_jobs(port, texts(f"warm2 {run}", 2))
            two = run_jobs(port, texts(f"two {run}", args.renders))
            print(
                f"throughput, {args.renders} distinct renders queued at once ({args.threads} thread/worker"
                f"{', each worker pinned to a core of its own' if args.pin else ''}):"
            )
            print(f"  1 worker : {args.renders / one:.3f} renders/s ({one:.2f} s)")
            print(
                f"  2 workers: {args.renders / two:.3f} renders/s ({two:.2f} s); "
                f"×{one / two:.2f} (target ≈ 1.8×)"
            )

            print(f"shared store: {shared_per_render / 1024:.0f} KiB written per render (short replies)")
            top, inner, speech_s = redis_cost(client, port, f"{REPLY} ({run})")
            print(
                f"Redis per render of a {speech_s:.1f} s reply (MONITOR; Dramatiq's idle polls left out): "
                f"{top} commands from clients, {inner} more inside scripts"
            )

            overhead, pickup, notify, posts = [], [], [], []
            for i in range(args.jobs):
                time.sleep(0.3)  # the workers idle, as between a chat's replies
                t0 = time.perf_counter()
                status, body = call(port, "POST", "/v1/jobs", {"text": f"Short one {run} {i}."})
                posts.append(time.perf_counter() - t0)
                heard = wait_done_events(port, body["job_id"])
                rid = client.hget(f"ara:job:{body['job_id']}", "rid").decode()
                created, started, ended = (
                    float(x) for x in client.hmget(f"ara:render:{rid}", "created", "started", "ended")
                )
                pickup.append(started - created)
                notify.append(heard - ended)
                overhead.append(started - created + heard - ended)
            print(
                f"queue overhead per job ({args.jobs} jobs, one at a time): {pct(overhead)} (target ≤ 20 ms)"
            )
            print(
                f"  queued → a worker starts it: {pct(pickup)}; its end → the client's event: {pct(notify)}"
            )
            print(f"  POST /v1/jobs round trip: {pct(posts)}")

            settings = load_settings(machine("bench"))
            cache = open_cache(settings)
            _, done = call(port, "POST", "/v1/render", {"text": f"Short one {run} 0."})
            key = done["key"]
            assert cache.get(key) is not None  # the first copy into this "machine"'s local level
            hits = []
            for _ in range(args.hits):
                t0 = time.perf_counter()
                assert cache.get(key) is not None
                hits.append(time.perf_counter() - t0)
            print(f"cache hit through the shared index ({args.hits}×): {pct(hits)} (target p50 ≤ 2 ms)")
            http_hits = []
            for _ in range(min(500, args.hits)):
                t0 = time.perf_counter()
                status, body = call(port, "POST", "/v1/render", {"text": f"Short one {run} 0."})
                http_hits.append(time.perf_counter() - t0)
                assert status == 200 and body["cached"], body
            print(f"  the same hit as POST /v1/render through the API server: {pct(http_hits)}")
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(40)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    from record import recorded

    with recorded("cluster" + ("-pinned" if "--pin" in sys.argv else "")):
        main()
