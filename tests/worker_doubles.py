"""Stand-ins for the render worker process (`server.worker.run_worker`), for supervisor tests:
spawned like the real one, with the same arguments and pipe protocol, but no models."""

from __future__ import annotations

import os
import sys


def dies_while_loading(settings, conn, cancel) -> None:
    """A worker killed (or out of memory) before it said it was ready."""
    sys.exit(3)


def renders(settings, conn, cancel) -> None:
    """A worker that is ready at once and answers every job with a result."""
    conn.send(("ready", os.getpid(), "cpu"))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        result = {"key": "0" * 64, "cached": False, "persona": "ara", "mode": "cockpit", "speech_s": 1.0}
        conn.send(("done", job.seq, {**result, "duration_s": 1.0, "timings": {}, "chunks": []}))
