"""A real `redis-server` for the cluster tests, and the `ARA_…` variables that point the sidecar at it."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from server_helpers import free_port

# Short enough for the tests: a dead worker's render is requeued within seconds.
FAST = {"ARA_CLUSTER_HEARTBEAT_S": "0.5", "ARA_CLUSTER_WORKER_TIMEOUT_S": "3"}


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """Debian's redis-server on a free loopback port, its files in `folder`; yields its URL.
    Skips (with the reason) where redis-server is not installed (`apt-get install redis-server`)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server): the cluster tests need it")
    redis = pytest.importorskip(
        "redis", reason="the cluster extra is not installed (pip install '.[cluster]')"
    )
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    args += ["--save", "", "--appendonly", "no", "--logfile", str(folder / "redis.log")]
    proc = subprocess.Popen(args)
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "redis.log").read_text()
                    raise RuntimeError(f"redis-server did not start: {log}") from exc
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def cluster_env(url: str, store: Path | str, namespace: str = "ara") -> dict[str, str]:
    return {
        "ARA_CLUSTER_URL": url,
        "ARA_CLUSTER_STORE": str(store),
        "ARA_CLUSTER_NAMESPACE": namespace,
        **FAST,
    }
