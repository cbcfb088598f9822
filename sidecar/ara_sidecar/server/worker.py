"""The render worker: a separate process that owns the models and renders one job at a time.

The server talks to it over a duplex pipe. Parent → worker: `Job`s, or None to stop.
Worker → parent, as tuples:

    ("ready", pid, device)                   models loaded; waiting for jobs
    ("progress", seq, stage, fraction)       a pipeline stage advanced (throttled)
    ("chunk", seq, chunk)                    a chunk's video is ready (ChunkVideo.describe()); for a
                                             speech job, a chunk's speech is in the cache (see speech.py)
    ("done", seq, result)                    result: the `RenderResult` fields as plain values
    ("failed", seq, message, kind)           kind: "user" (the request was at fault: UserError),
                                             "storage" (the cache cannot be written), "internal"
    ("cancelled", seq)

A job is cancelled by writing its `seq` into the shared `cancel` value: the progress callback
sees it and raises `Cancelled`, which stops the render at the next frame or sentence.
The "spawn" start method keeps this portable to Windows and macOS.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized

from ara_sidecar.cache import CacheUnwritable
from ara_sidecar.config import Settings
from ara_sidecar.errors import Cancelled, UserError
from ara_sidecar.pipeline import ChunkVideo, Pipeline, RenderRequest
from ara_sidecar.server.speech import SpeechRequest, speak

log = logging.getLogger(__name__)

PROGRESS_STEP = 0.02  # smallest progress change worth a message


@dataclass(frozen=True)
class Job:
    seq: int  # unique per render, across worker restarts
    request: RenderRequest | SpeechRequest  # a video, or speech only (speech.speak)


def start_worker(settings: Settings) -> tuple[BaseProcess, Connection, Synchronized]:
    """Spawn a worker; returns the process, the parent's end of the pipe and the cancel value."""
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe(duplex=True)
    cancel = ctx.Value("q", -1, lock=False)
    process = ctx.Process(
        target=run_worker, args=(settings, child_end, cancel), name="ara-render-worker", daemon=True
    )
    process.start()
    child_end.close()
    return process, parent_end, cancel


def run_worker(settings: Settings, conn: Connection, cancel: Synchronized) -> None:
    """The worker's main loop: load the models once, then render jobs until told to stop
    (None) or the parent goes away (the pipe closes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent stops us
    pipeline = Pipeline(settings)
    pipeline.load()
    conn.send(("ready", os.getpid(), pipeline.device))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        conn.send(render_job(pipeline, job, conn, cancel))


def render_job(pipeline: Pipeline, job: Job, conn: Connection, cancel: Synchronized) -> tuple:
    """Render `job`, reporting progress and chunks through `conn.send` and stopping when
    `cancel.value` is its seq; returns the final message ("done", "failed" or "cancelled").
    The cluster's worker passes stand-ins for the pipe and the value (`cluster.worker.Tracker`)."""
    sent: dict[str, float] = {}
    lock = threading.Lock()  # speech reports progress from its own thread: one sender at a time

    def progress(stage: str, fraction: float) -> None:
        if cancel.value == job.seq:
            raise Cancelled(f"job {job.seq} cancelled")
        with lock:
            last = sent.get(stage)
            if last is None or fraction - last >= PROGRESS_STEP or (fraction >= 1.0 > last):
                sent[stage] = fraction
                conn.send(("progress", job.seq, stage, fraction))

    def chunk_ready(chunk: ChunkVideo) -> None:
        with lock:
            conn.send(("chunk", job.seq, chunk.describe()))

    def speech_ready(chunk: dict) -> None:
        with lock:
            conn.send(("chunk", job.seq, chunk))

    try:
        if isinstance(job.request, SpeechRequest):
            return ("done", job.seq, speak(pipeline, job.request, progress, speech_ready))
        result = pipeline.render(job.request, progress=progress, on_chunk=chunk_ready)
    except Cancelled:
        return ("cancelled", job.seq)
    except UserError as exc:
        return ("failed", job.seq, str(exc), "storage" if isinstance(exc, CacheUnwritable) else "user")
    except Exception as exc:
        log.error("render %s failed:\n%s", job.seq, traceback.format_exc())
        return ("failed", job.seq, f"render failed: {type(exc).__name__}: {exc}", "internal")
    return (
        "done",
        job.seq,
        {
            "key": result.key,
            "cached": result.cached,
            "persona": result.persona,
            "mode": result.mode,
            "speech_s": result.speech_s,
            "duration_s": result.duration_s,
            "frames": result.frames,
            "timings": result.timings,
            "wall_s": result.wall_s,
            "chunks": result.chunks,
        },
    )
