"""`ara-sidecar worker`: a render worker of the cluster (one per GPU or CPU slot).

It loads its models once, then takes renders from the queue one at a time, writing their progress,
chunks and outcome into the render's state in Redis and ringing the API servers' doorbell (see
`state`). It announces itself every `cluster.heartbeat_s` (device, models, what it renders), so
`GET /health/detailed` lists it; the announcement expires after `cluster.worker_timeout_s`.
The render itself is the single-machine worker's (`server.worker.render_job`), with Redis standing in
for its pipe and its cancel value.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.threading import Interrupt

from ara_sidecar.cluster.queue import ACTOR, MAX_DELIVERIES, make_broker, time_limit_ms
from ara_sidecar.cluster.state import TERMINAL, Keys, connect, decode_request, decode_state
from ara_sidecar.config import Settings
from ara_sidecar.errors import UserError
from ara_sidecar.pipeline import Pipeline
from ara_sidecar.server.worker import Job as WorkerJob
from ara_sidecar.server.worker import render_job

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

CANCEL_CHECK_S = 0.2  # how often a render asks Redis whether it was cancelled
STOP_GRACE_MS = 30_000  # on SIGTERM, a running render gets this long to finish
# An idle worker asks the queue for work at least this often (Dramatiq polls, backing off up to
# this): the most a queued render waits for an idle worker. About 100 cheap Redis commands a second
# per idle worker (the queue and Dramatiq's delay queue).
POLL_MS = 20
# Write the outcome unless the render already ended (an API server cancelled it meanwhile).
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'done' or status == 'failed' or status == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


class Tracker:
    """One delivery of a render: stands in for the worker pipe (`send`) and the cancel value
    (`value`) of `server.worker.render_job`, keeping the render's state in Redis."""

    def __init__(self, renderer: Renderer, rid: str, state: dict[str, Any]):
        self.r, self.rid, self.key = renderer, rid, renderer.keys.render(rid)
        self.fractions: dict[str, float] = state.get("fractions", {})
        self.chunks: list[dict] = state.get("chunks", [])  # kept from a delivery that died
        self.started = time.monotonic()
        self.timed_out = False
        self._cancelled = False
        self._checked = 0.0
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        """0 (the job's seq: stop) once cancelled or past `server.job_timeout_s`, else -1."""
        now = time.monotonic()
        if now - self.started > self.r.settings.server.job_timeout_s:
            self.timed_out = True
        elif not self._cancelled and now - self._checked >= CANCEL_CHECK_S:
            self._checked = now
            self._cancelled = bool(self.r.redis.hget(self.key, "cancel"))
        return 0 if self._cancelled or self.timed_out else -1

    def send(self, message: tuple) -> None:
        kind = message[0]
        with self._lock:
            if kind == "progress":
                stage, fraction = message[2:]
                self.fractions[stage] = max(fraction, self.fractions.get(stage, 0.0))
                self.r.update(self.rid, fractions=json.dumps(self.fractions), stage=stage)
            elif kind == "chunk":
                chunk = message[2]
                if all(c["index"] != chunk["index"] for c in self.chunks):
                    self.chunks.append(chunk)
                    self.r.update(self.rid, chunks=json.dumps(self.chunks))

    def finish(self, message: tuple) -> None:
        kind = message[0]
        settings = self.r.settings
        if kind == "done":
            self.r.finish(self.rid, "done", result=message[2])
        elif kind == "failed":
            self.r.finish(self.rid, "failed", error=message[2], kind=message[3])
        elif self.timed_out:
            error = f"render timed out after {settings.server.job_timeout_s:g} s (server.job_timeout_s)"
            self.r.finish(self.rid, "failed", error=error, kind="timeout")
        else:
            self.r.finish(self.rid, "cancelled")


class Renderer:
    """The actor's body: renders one queued render (by id) with the loaded pipeline."""

    def __init__(self, settings: Settings, pipeline: Pipeline, client: redis.Redis, worker_id: str):
        self.settings, self.pipeline, self.redis = settings, pipeline, client
        self.keys = Keys(settings)
        self.worker_id = worker_id
        self.busy: str | None = None
        self.renders = 0
        self._finish = client.register_script(_FINISH)

    def __call__(self, rid: str) -> None:
        key = self.keys.render(rid)
        deliveries = self.redis.hincrby(key, "deliveries", 1)
        state = decode_state(self.redis.hgetall(key))
        if "key" not in state:  # expired: only the delivery count was just written
            self.redis.delete(key)
            return
        if state.get("status") in TERMINAL:
            return  # cancelled before it started
        if state.get("cancel"):
            self.finish(rid, "cancelled")
            return
        if deliveries > MAX_DELIVERIES:
            error = (
                f"render worker died while rendering this, {deliveries - 1} times (last on "
                f"{state.get('worker', 'a worker')}); not retried again: see the workers' logs"
            )
            self.finish(rid, "failed", error=error, kind="worker")
            return
        try:
            request = decode_request(state["request"], self.pipeline.cache)
        except UserError as exc:
            self.finish(rid, "failed", error=str(exc), kind="user")
            return
        self.busy = rid
        try:
            self.update(rid, status="running", worker=self.worker_id, started=repr(time.time()))
            tracker = Tracker(self, rid, state)
            tracker.finish(render_job(self.pipeline, WorkerJob(0, request), tracker, tracker))
        except Interrupt as exc:  # Dramatiq's hard time limit interrupted it
            error = (
                f"render interrupted ({type(exc).__name__}): it ran far past server.job_timeout_s "
                f"({self.settings.server.job_timeout_s:g} s) without reaching a point where it could stop"
            )
            with suppress(Exception):
                self.finish(rid, "failed", error=error, kind="timeout")
            raise
        finally:
            self.busy = None
            self.renders += 1

    def update(self, rid: str, **fields: str) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.render(rid), mapping=fields)
            pipe.publish(self.keys.events, f"{rid} -")
            pipe.execute()

    def finish(self, rid: str, status: str, *, result=None, error=None, kind=None) -> None:
        """Write the outcome (unless the render already ended), free its key for new renders,
        remember a result, ring the doorbell."""
        key = self.keys.render(rid)
        fields = {"status": status, "ended": repr(time.time())}
        if result is not None:
            fields["result"] = json.dumps(result)
        if error is not None:
            fields.update(error=error, error_kind=kind or "internal")
        video = (self.redis.hget(key, "key") or b"").decode()
        written = self._finish(keys=[key], args=[x for kv in fields.items() for x in kv])
        with self.redis.pipeline(transaction=False) as pipe:
            if written and result is not None and video:
                pipe.set(self.keys.result(video), json.dumps(result), ex=self.keys.ttl_s)
            pipe.publish(self.keys.events, f"{rid} -")
            pipe.execute()
        if video:  # only if it still names this render: a new one may have started since
            self.redis.eval(_DELETE_IF, 1, self.keys.active(video), rid)


_DELETE_IF = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def announce(client: redis.Redis, keys: Keys, settings: Settings, info: dict[str, Any]) -> None:
    """Publish this worker's announcement (it expires unless renewed)."""
    now = time.time()
    ttl = max(1, round(settings.cluster.worker_timeout_s))
    with client.pipeline(transaction=False) as pipe:
        pipe.set(keys.worker(info["id"]), json.dumps({**info, "last_seen": now}), ex=ttl)
        pipe.zadd(keys.workers, {info["id"]: now})
        pipe.zremrangebyscore(keys.workers, 0, now - ttl)
        pipe.execute()


def run_worker(cfg: Settings, device: str, name: str | None) -> int:
    """Load the models, then render from the queue until SIGTERM or SIGINT."""
    client = connect(cfg)
    keys = Keys(cfg)
    pipeline = Pipeline(cfg)
    pipeline.load()
    worker_id = f"{name or socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    renderer = Renderer(cfg, pipeline, client, worker_id)
    broker = make_broker(cfg, keys)
    dramatiq.actor(
        renderer,
        broker=broker,
        actor_name=ACTOR,
        queue_name=keys.queue,
        max_retries=0,
        time_limit=time_limit_ms(cfg),
    )
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=POLL_MS)
    worker.queue_prefetch = 1  # take a render only when idle: the others go to idle workers
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    models = {stage: getattr(pipeline, stage).name for stage in ("tts", "voice", "lipsync")}
    since = time.time()
    worker.start()
    label = device if device.startswith("cuda:") else pipeline.device
    print(f"Ara render worker {worker_id} on {label}, queue {keys.ns}:{keys.queue}", flush=True)
    try:
        while not stop.is_set():
            info = {
                "id": worker_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "device": label,
                "models": models,
                "busy": renderer.busy,
                "queue_depth": int(renderer.busy is not None),
                "renders": renderer.renders,
                "since": since,
            }
            try:
                announce(client, keys, cfg, info)
            except Exception as exc:  # Redis away for a moment: keep rendering, announce later
                log.warning("could not announce the worker: %s", exc)
            stop.wait(cfg.cluster.heartbeat_s)
    finally:
        worker.stop(timeout=STOP_GRACE_MS)
        client.delete(keys.worker(worker_id))
        client.zrem(keys.workers, worker_id)
    return 0
