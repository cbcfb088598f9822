"""Running a real `ara-sidecar serve` subprocess for the HTTP tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sidecar() -> str:
    return str(Path(sys.executable).with_name("ara-sidecar"))


def wait_until(check, timeout_s: float, why=lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s\n{why()}")


def worker(base: str, token: str) -> dict:
    r = httpx.get(f"{base}/health/detailed", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return r.json()["worker"]


@contextmanager
def running_server(tmp: Path, token: str, env: dict[str, str]) -> Iterator[str]:
    """Serve on a free loopback port with a cache under `tmp` and the `ARA_…` variables `env`;
    yields the base URL once the worker is ready. On exit: SIGTERM, then checks that the server
    shut down cleanly and took its worker with it."""
    port = free_port()
    env = {**os.environ, "ARA_CACHE_DIR": str(tmp / "cache"), **env}
    env.pop("ARA_SERVER_TOKEN", None)
    log_path = tmp / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sidecar(), "serve", "--port", str(port), "--token", token],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: worker(base, token)["ready"], 90, lambda: log_path.read_text())
        yield base
        pid = worker(base, token)["pid"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    # uvicorn re-raises the signal once it has shut down cleanly
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in log_path.read_text()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # the worker went with it
    raise AssertionError(f"the render worker {pid} outlived the server")
