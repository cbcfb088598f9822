"""The job table of the server process: a bounded queue of renders, one worker process running
them, progress for pollers and event streams, cancellation, timeouts and worker supervision.

A `Render` is one piece of work for the worker, identified by its cache key; a `Job` is one
client's request. Jobs asking for the same video while it is queued or running share one
render (and one queue slot). Every state change happens on the event loop; a supervisor
thread owns the worker process, forwards its messages to the loop and restarts it when it dies.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from ara_sidecar.cache import open_cache
from ara_sidecar.config import Settings
from ara_sidecar.errors import AraError
from ara_sidecar.pipeline import PROGRESS_STAGES, RenderRequest
from ara_sidecar.server.speech import SpeechRequest
from ara_sidecar.server.worker import Job as WorkerJob
from ara_sidecar.server.worker import start_worker

log = logging.getLogger(__name__)

KEEP_JOBS = 1000  # finished jobs are forgotten, oldest first, beyond this many
KEEP_RESULTS = 10_000  # the newest results, remembered to answer repeated requests at once
CANCEL_GRACE_S = 10.0  # an abandoned render gets this long to stop before its worker is killed
RESTART_DELAY_S = 2.0  # pause before restarting a worker that died while loading its models
START_ATTEMPTS = 3  # workers that die while loading before the queued renders fail (each waits
#                     for the next worker until then)
STOP_TIMEOUT_S = 5.0  # on shutdown, a worker still busy after this long is killed
# Overall progress: each stage's fraction times its weight (the stages overlap, each is monotonic).
STAGE_WEIGHTS = dict(zip(PROGRESS_STAGES, (0.05, 0.25, 0.70), strict=True))


def open_jobs(settings: Settings) -> JobManager:
    """The job table for `settings`: with `cluster.url`, one whose renders run on the cluster's
    workers (ara_sidecar.cluster.jobs); else one that runs its own worker process."""
    if settings.cluster.url:
        from ara_sidecar.cluster.jobs import ClusterJobManager

        return ClusterJobManager(settings)
    return JobManager(settings)


class QueueFull(Exception):
    """The queue holds `server.queue_size` renders; `retry_after` is a guess in seconds."""

    def __init__(self, size: int, retry_after: int):
        super().__init__(f"the render queue is full ({size} renders); try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class Render:
    """One render in the worker, shared by every job that asked for the same video."""

    seq: int
    key: str
    request: RenderRequest | SpeechRequest
    chunk_count: int  # chunks the video (or speech) is made of
    jobs: list[Job] = field(default_factory=list)
    status: str = "queued"  # queued | running | done | failed | cancelled
    stage: str | None = None
    fractions: dict[str, float] = field(default_factory=dict)
    chunks: list[dict[str, Any]] = field(default_factory=list)  # ready chunk videos, in order
    result: dict[str, Any] | None = None
    error: str | None = None
    error_kind: str | None = None  # user | storage | timeout | worker | internal
    started: float | None = None  # time.monotonic()
    ended: float | None = None
    ref: str | None = None  # its id in the cluster's shared state (cluster mode only)

    @property
    def progress(self) -> float:
        if self.status == "done":
            return 1.0
        return round(sum(STAGE_WEIGHTS[s] * f for s, f in self.fractions.items()), 4)


@dataclass(eq=False)
class Job:
    """One client's request, following a `Render` until it ends or this job is cancelled."""

    id: str
    render: Render
    mode_reason: str
    created: float = field(default_factory=time.time)
    finished: float | None = None
    cancelled: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def status(self) -> str:
        return "cancelled" if self.cancelled else self.render.status

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changes(self, keepalive_s: float) -> AsyncIterator[bool]:
        """Yields True at once and after each change until the job has finished (no change is
        missed while the caller handles one), and False whenever `keepalive_s` passes quietly."""
        event, done = self._changed, self.finished is not None
        yield True
        while not done:
            try:
                await asyncio.wait_for(event.wait(), keepalive_s)
            except asyncio.TimeoutError:
                yield False
                continue
            event, done = self._changed, self.finished is not None
            yield True

    async def wait(self) -> None:
        async for _ in self.changes(keepalive_s=60):
            pass


class JobManager:
    """Jobs, their renders, the queue and the worker. Use from the event loop only."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.queue_size = settings.server.queue_size
        self.timeout_s = settings.server.job_timeout_s
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._active: dict[str, Render] = {}  # key -> queued or running render
        self._results: OrderedDict[str, dict[str, Any]] = OrderedDict()  # key -> the worker's result
        self._queue: deque[Render] = deque()
        self._inflight: Render | None = None  # what the worker is doing (maybe abandoned)
        self._seq = 0
        self._avg_render_s = 5.0
        self.worker: dict[str, Any] = {"ready": False, "pid": None, "device": None, "since": None}
        self.restarts = 0
        self._failed_starts = 0  # workers in a row that died before they were ready
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._cancel: Synchronized | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticker: asyncio.Task | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._supervise, name="ara-worker-supervisor", daemon=True)
        self._thread.start()
        self._ticker = self._loop.create_task(self._tick())

    async def stop(self) -> None:
        """Fail what is left, stop the worker (killing it if it does not stop in time)."""
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.cancel()
        for render in [*self._active.values()]:
            self._finish(render, "failed", error="the server is shutting down", kind="worker")
        if self._inflight is not None and self._cancel is not None:
            self._cancel.value = self._inflight.seq
        self._send(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, STOP_TIMEOUT_S)
        if self._process is not None and self._process.is_alive():
            self._process.kill()

    # -- requests ---------------------------------------------------------------------------

    def submit(
        self,
        key: str,
        request: RenderRequest | SpeechRequest,
        mode_reason: str,
        chunk_count: int,
        cached: dict[str, Any] | None = None,
    ) -> Job:
        """A new job for the video `key` (made of `chunk_count` chunks); it joins an identical
        queued or running render. With `cached` (a result, see `rendered`) it is done at once,
        without the worker. Raises QueueFull when `queue_size` distinct renders are waiting or running."""
        render = self._active.get(key)
        if cached is not None:
            chunks = cached.get("chunks", [])
            render = Render(0, key, request, chunk_count, status="done", chunks=chunks, result=cached)
        elif render is None:
            if len(self._active) >= self.queue_size:
                raise QueueFull(self.queue_size, self.retry_after())
            self._seq += 1
            render = self._active[key] = Render(self._seq, key, request, chunk_count)
            self._queue.append(render)
        job = Job(uuid.uuid4().hex, render, mode_reason)
        if cached is not None:
            job.finished = job.created
        render.jobs.append(job)
        self.jobs[job.id] = job
        self._forget_old_jobs()
        self._dispatch()
        return job

    def cancel(self, job: Job) -> None:
        """Cancel `job`; its render stops if no other job waits for it."""
        if job.finished is not None:
            return
        job.cancelled, job.finished = True, time.time()
        render = job.render
        render.jobs.remove(job)
        job.notify()
        if not render.jobs:
            self._finish(render, "cancelled")
            if render is self._inflight and self._cancel is not None:
                self._cancel.value = render.seq

    def get(self, job_id: str) -> Job | None:
        """The job `job_id`, if it is known (and not forgotten)."""
        return self.jobs.get(job_id)

    # The routes call these: a job table that asks a remote service (the cluster's Redis) does so
    # off the event loop; this one answers at once.

    async def asubmit(self, *args: Any, **kwargs: Any) -> Job:
        return self.submit(*args, **kwargs)

    async def acancel(self, job: Job) -> None:
        self.cancel(job)

    async def aget(self, job_id: str) -> Job | None:
        return self.get(job_id)

    async def astats(self) -> dict[str, Any]:
        return self.stats()

    def rendered(self, key: str) -> dict[str, Any] | None:
        """The worker's last result for the render `key` (its `key` is the video's: the worker's
        device may change it). A dict lookup: safe from any thread."""
        return self._results.get(key)

    def retry_after(self) -> int:
        """Seconds until a queue slot is likely free."""
        return max(1, min(60, math.ceil(self._avg_render_s)))

    def stats(self) -> dict[str, Any]:
        queued = sum(r.status == "queued" for r in self._queue)
        running = self._inflight is not None and self._inflight.status == "running"
        since = self.worker["since"]
        return {
            "queue": {"queued": queued, "running": int(running), "size": self.queue_size},
            "worker": {
                "ready": self.worker["ready"],
                "pid": self.worker["pid"],
                "device": self.worker["device"],
                "uptime_s": round(time.monotonic() - since, 1) if since else None,
                "restarts": self.restarts,
            },
        }

    # -- state changes (event loop) ---------------------------------------------------------

    def _dispatch(self) -> None:
        """Send the next queued render to the worker if it is idle."""
        if not self.worker["ready"] or self._inflight is not None or not self._queue:
            return
        render = self._queue.popleft()
        render.status, render.started = "running", time.monotonic()
        self._inflight = render
        if not self._send(WorkerJob(render.seq, render.request)):
            return  # the worker is gone; _on_death fails the render
        self._changed(render)

    def _send(self, message: Any) -> bool:
        try:
            self._conn.send(message)
            return True
        except (AttributeError, OSError):  # not started yet, or the worker just died
            return False

    def _on_message(self, message: tuple) -> None:
        kind, *args = message
        if kind == "ready":
            pid, device = args
            self._failed_starts = 0
            self.worker.update(ready=True, pid=pid, device=device, since=time.monotonic())
            self._dispatch()
            return
        render = self._inflight
        if render is None or render.seq != args[0]:
            return
        if kind == "progress":
            if render.status == "running":
                stage, fraction = args[1:]
                render.fractions[stage] = max(fraction, render.fractions.get(stage, 0.0))
                render.stage = max(render.fractions, key=PROGRESS_STAGES.index)
                self._changed(render)
            return
        if kind == "chunk":
            if render.status == "running":
                render.chunks.append(args[1])
                self._changed(render)
            return
        self._inflight = None
        if render.status == "running":
            if kind == "done":
                self._avg_render_s = 0.8 * self._avg_render_s + 0.2 * (time.monotonic() - render.started)
                self._finish(render, "done", result=args[1])
            elif kind == "failed":
                self._finish(render, "failed", error=args[1], kind=args[2])
            else:
                self._finish(render, "cancelled")
        self._dispatch()

    def _attach(self, process: BaseProcess, conn: Connection, cancel: Synchronized) -> None:
        self._process, self._conn, self._cancel = process, conn, cancel

    def _on_death(self, exitcode: int | None, was_ready: bool) -> None:
        self._conn.close()
        self.worker.update(ready=False, pid=None, since=None)
        self.restarts += 1
        render, self._inflight = self._inflight, None
        if render is not None and render.status == "running":
            message = f"render worker died (exit code {exitcode}); restarted"
            self._finish(render, "failed", error=message, kind="worker")
        if was_ready:
            return
        # It died while loading its models: the queued renders wait for the next worker (one that
        # was killed, or ran out of memory once, may well start), but not forever.
        self._failed_starts += 1
        if self._failed_starts < START_ATTEMPTS:
            log.warning(
                "render worker died while loading (exit code %s, attempt %d of %d); %d queued renders "
                "wait for the next one",
                exitcode,
                self._failed_starts,
                START_ATTEMPTS,
                len(self._queue),
            )
            return
        message = (
            f"render worker failed to start {self._failed_starts} times in a row (last exit code "
            f"{exitcode}); see the server log"
        )
        for queued in [*self._queue]:
            self._finish(queued, "failed", error=message, kind="worker")

    def _finish(self, render: Render, status: str, *, result=None, error=None, kind=None) -> None:
        render.status, render.result, render.error, render.error_kind = status, result, error, kind
        render.ended = time.monotonic()
        if status == "done":
            self._results[render.key] = result
            self._results.move_to_end(render.key)
            if len(self._results) > KEEP_RESULTS:
                self._results.popitem(last=False)
        if self._active.get(render.key) is render:
            del self._active[render.key]
        if render in self._queue:
            self._queue.remove(render)
        now = time.time()
        for job in render.jobs:
            job.finished = now
        self._changed(render)

    def _changed(self, render: Render) -> None:
        for job in render.jobs:
            job.notify()

    def _forget_old_jobs(self) -> None:
        excess = len(self.jobs) - KEEP_JOBS
        if excess <= 0:
            return
        finished = (i for i, job in self.jobs.items() if job.finished is not None)
        for job_id in list(itertools.islice(finished, excess)):  # mostly the first few: O(1)
            del self.jobs[job_id]

    async def _tick(self) -> None:
        """Enforce the job timeout; kill a worker that does not stop an abandoned render."""
        while True:
            await asyncio.sleep(0.5)
            render, now = self._inflight, time.monotonic()
            if render is None:
                continue
            if render.status == "running" and now - render.started > self.timeout_s:
                message = f"render timed out after {self.timeout_s:g} s (server.job_timeout_s)"
                self._finish(render, "failed", error=message, kind="timeout")
                self._cancel.value = render.seq
            elif render.status != "running" and now - render.ended > CANCEL_GRACE_S:
                log.warning("render worker did not stop render %s; killing it", render.seq)
                self._process.kill()
                render.ended = math.inf  # kill once; _on_death follows

    # -- supervisor thread ------------------------------------------------------------------

    def _supervise(self) -> None:
        """Start the worker, forward its messages to the loop, restart it when it dies. The loop
        learns of each worker (`_attach`) and of its death in order, through `_post`."""
        while not self._stopping.is_set():
            process, conn, cancel = start_worker(self.settings)
            self._post(self._attach, process, conn, cancel)
            ready = False
            while True:
                if conn in wait([conn, process.sentinel]):
                    try:
                        message = conn.recv()
                    except (EOFError, OSError):
                        break
                    ready = ready or message[0] == "ready"
                    self._post(self._on_message, message)
                elif not process.is_alive():
                    break
            process.join()
            if not self._stopping.is_set():
                log.warning("render worker %s exited with code %s", process.pid, process.exitcode)
            self._release_pins(process.pid)
            self._post(self._on_death, process.exitcode, ready)
            if not ready:
                self._stopping.wait(RESTART_DELAY_S)

    def _release_pins(self, pid: int | None) -> None:
        """Unpin the cache entries a dead worker was reading (the chunks of its last render)."""
        if pid is None or not self.settings.cache.enabled:
            return
        try:
            released = open_cache(self.settings).release_pins(pid)
        except (AraError, OSError, sqlite3.Error) as e:  # never stop the supervisor: pins expire anyway
            log.warning("could not release the dead worker's cache pins: %s", e)
            return
        if released:
            log.info("released %d cache pins of the dead worker %s", released, pid)

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        if self._stopping.is_set():
            return
        with suppress(RuntimeError):  # the loop is closed: the server is shutting down
            self._loop.call_soon_threadsafe(callback, *args)
