"""The API server's job table in cluster mode: jobs and renders live in Redis, workers elsewhere.

`ClusterJobManager` keeps `JobManager`'s model (a `Job` follows a shared `Render`; routes wait on
`Job.changes`) and replaces its local worker: a new render is written to Redis and queued
(Dramatiq); identical requests through any API server join the render queued or running for
their key; a listener thread hears the workers' doorbell (pub/sub), reads the render's state and
applies it on the event loop. Jobs are loaded from Redis when this server does not know them (a
job made by another API server, or before a restart), so any API server answers for any job.
The routes use the async forms (`asubmit`, `aget`, `acancel`, `astats`): their Redis part runs in
the thread pool, their part on the loop after it (`_enter`/`_adopt`, `_load`/`_adopt_loaded`…).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from typing import Any, NamedTuple

from ara_sidecar.cluster.queue import enqueue, make_broker
from ara_sidecar.cluster.state import TERMINAL, Keys, connect, decode_state, encode_request
from ara_sidecar.config import Settings
from ara_sidecar.pipeline import RenderRequest
from ara_sidecar.server.jobs import Job, JobManager, QueueFull, Render
from ara_sidecar.server.speech import SpeechRequest

log = logging.getLogger(__name__)

RESYNC_S = 5.0  # the followed renders are read again this often (a missed doorbell costs no more)
LISTEN_POLL_S = 0.5
HIT_JOB_TTL_S = 3600  # a cache hit's job is kept this long (a small record; hits can be many)


class Entered(NamedTuple):
    """A job entered in Redis: its id and time, its render's id (None: a cache hit) and the
    state of the render it joined (None: a new render, queued)."""

    job_id: str
    created: float
    rid: str | None
    state: dict[str, Any] | None


class Loaded(NamedTuple):
    """A job read from Redis: its record, its render's state, or for a hit its video's result."""

    job: dict[str, str]
    state: dict[str, Any] | None
    result: dict[str, Any] | None


class ClusterJobManager(JobManager):
    """Jobs whose renders run on the cluster's workers. Use from the event loop only."""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.keys = Keys(settings)
        self.redis = connect(settings)
        self.broker = make_broker(settings, self.keys)
        self._followed: dict[str, Render] = {}  # rid -> unfinished render with jobs here
        self._join_or_create = self.redis.register_script(_JOIN_OR_CREATE)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._listen, name="ara-cluster-listener", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop listening; the renders go on in the cluster (another API server may follow them)."""
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)

    # -- requests: the routes use the async forms, whose Redis part runs in a thread (the event
    # loop never waits for Redis); the sync forms wait for it on the caller's thread

    async def asubmit(self, *args: Any, **kwargs: Any) -> Job:
        """`submit`, its Redis part in a thread."""
        entered = await asyncio.to_thread(self._enter, *args, **kwargs)
        return self._adopt(entered, *args, **kwargs)

    def submit(
        self,
        key: str,
        request: RenderRequest | SpeechRequest,
        mode_reason: str,
        chunk_count: int,
        cached: dict[str, Any] | None = None,
    ) -> Job:
        entered = self._enter(key, request, mode_reason, chunk_count, cached)
        return self._adopt(entered, key, request, mode_reason, chunk_count, cached)

    async def acancel(self, job: Job) -> None:
        if self._cancel_here(job):
            active = job.render.status not in TERMINAL
            self._cancelled(job.render, await asyncio.to_thread(self._cancel_there, job, active))

    def cancel(self, job: Job) -> None:
        """Cancel `job` (made here or by any API server); the render stops, on whichever worker
        runs it, if no other job waits for it."""
        if self._cancel_here(job):
            self._cancelled(job.render, self._cancel_there(job, job.render.status not in TERMINAL))

    async def aget(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is not None or not _is_job_id(job_id):
            return job
        return self._adopt_loaded(job_id, await asyncio.to_thread(self._load, job_id))

    def get(self, job_id: str) -> Job | None:
        """The job, from memory or else from Redis (made by another API server, or before a restart)."""
        job = self.jobs.get(job_id)
        if job is not None or not _is_job_id(job_id):
            return job
        return self._adopt_loaded(job_id, self._load(job_id))

    async def astats(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.stats)

    def rendered(self, key: str) -> dict[str, Any] | None:
        data = self.redis.get(self.keys.result(key))
        return None if data is None else json.loads(data)

    def stats(self) -> dict[str, Any]:
        workers = self.workers()
        pending = self.redis.hlen(self.keys.queue_messages())  # queued or being rendered
        running = sum(w.get("busy") is not None for w in workers)
        first = workers[0] if workers else {}
        return {
            "queue": {"queued": max(0, pending - running), "running": running, "size": self.queue_size},
            "worker": {
                "ready": bool(workers),
                "pid": None,
                "device": first.get("device"),
                "uptime_s": round(time.time() - first["since"], 1) if first else None,
                "restarts": 0,
            },
            "workers": workers,
        }

    def workers(self) -> list[dict[str, Any]]:
        """The workers that announced themselves within `cluster.worker_timeout_s`, by id."""
        now = time.time()
        ids = self.redis.zrangebyscore(
            self.keys.workers, now - self.settings.cluster.worker_timeout_s, "+inf"
        )
        if not ids:
            return []
        found = self.redis.mget([self.keys.worker(i.decode()) for i in ids])
        workers = [json.loads(data) for data in found if data is not None]
        for worker in workers:
            worker["last_seen_s"] = round(max(0.0, now - worker.pop("last_seen")), 2)
        return sorted(workers, key=lambda w: w["id"])

    def retry_after(self) -> int:
        return max(1, min(60, round(self._avg_render_s)))

    # -- Redis --------------------------------------------------------------------------------

    def _enter(
        self,
        key: str,
        request: RenderRequest | SpeechRequest,
        mode_reason: str,
        chunk_count: int,
        cached: dict[str, Any] | None = None,
    ) -> Entered:
        """In Redis (any thread): the job's record, and its render joined or made and queued.
        Raises QueueFull when `server.queue_size` renders are queued or running in the cluster."""
        job_id, now = uuid.uuid4().hex, time.time()
        rid, state = None, None
        if cached is not None:  # a hit: only a small job record (from the result of its video)
            names = json.dumps({"mode": cached["mode"], "persona": cached["persona"]})
            record = {"key": key, "hit": names, "chunk_count": str(chunk_count)}
            ttl = min(self.keys.ttl_s, HIT_JOB_TTL_S)
        else:
            rid, state = self._join_or_queue(key, request, chunk_count)
            record, ttl = {"rid": rid}, self.keys.ttl_s
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(
                self.keys.job(job_id), mapping={**record, "mode_reason": mode_reason, "created": repr(now)}
            )
            pipe.expire(self.keys.job(job_id), ttl)
            if rid is not None:
                pipe.sadd(self.keys.render_jobs(rid), job_id)
                pipe.expire(self.keys.render_jobs(rid), self.keys.ttl_s)
            pipe.execute()
        return Entered(job_id, now, rid, state)

    def _adopt(
        self,
        entered: Entered,
        key: str,
        request: RenderRequest | SpeechRequest,
        mode_reason: str,
        chunk_count: int,
        cached: dict[str, Any] | None = None,
    ) -> Job:
        """On the loop: the job entered in Redis, following its render here."""
        if entered.rid is None:
            assert cached is not None
            render = Render(0, key, request, chunk_count, status="done", chunks=cached.get("chunks", []))
            render.result = cached
        else:
            new = {"key": key, "chunk_count": chunk_count, "status": "queued"}
            render = self._follow(entered.rid, entered.state or new, request)
        job = Job(entered.job_id, render, mode_reason, created=entered.created)
        if render.status in TERMINAL:
            job.finished = entered.created
        render.jobs.append(job)
        self.jobs[job.id] = job
        self._forget_old_jobs()
        return job

    def _join_or_queue(
        self, key: str, request: RenderRequest | SpeechRequest, chunk_count: int
    ) -> tuple[str, dict[str, Any] | None]:
        """The render of `key` queued or running anywhere (joined: its id and state), else a new
        one, queued (its id, None): one atomic step in Redis (a script), then the queue."""
        rid, now = uuid.uuid4().hex, time.time()
        fields = {
            "key": key,
            "request": encode_request(request),
            "chunk_count": str(chunk_count),
            "status": "queued",
            "fractions": "{}",
            "chunks": "[]",
            "deliveries": "0",
            "created": repr(now),
        }
        keys = [self.keys.active(key), self.keys.queue_messages(), self.keys.render(rid)]
        args = [rid, self.queue_size, self.keys.ttl_s, self.keys.render(""), *_flat(fields)]
        outcome, found = self._join_or_create(keys=keys, args=args)
        if outcome == b"full":
            raise QueueFull(self.queue_size, self.retry_after())
        if outcome == b"join":
            return found.decode(), self._state(found.decode())
        enqueue(self.broker, self.keys, rid)
        return rid, None

    def _state(self, rid: str) -> dict[str, Any]:
        """A render's state (any thread); an expired one (a day later) as an honest failure."""
        state = decode_state(self.redis.hgetall(self.keys.render(rid)))
        if "key" in state:
            return state
        return {
            "key": "0" * 64,
            "status": "failed",
            "error": "the render's state expired",
            "error_kind": "internal",
            "chunk_count": 0,
        }

    def _follow(
        self, rid: str, state: dict[str, Any], request: RenderRequest | SpeechRequest | None
    ) -> Render:
        """On the loop: the local `Render` of `rid` (made from `state` if this server does not
        follow it yet), followed until it ends."""
        render = self._followed.get(rid)
        if render is not None:
            return render
        render = Render(0, state["key"], request, state.get("chunk_count", 0), ref=rid)  # type: ignore[arg-type]
        self._apply(render, state)
        if render.status not in TERMINAL:
            self._followed[rid] = render
            if self._loop is not None:  # read it once more: it may have changed since `state`
                self._loop.run_in_executor(None, self._read, rid, None)
        return render

    def _load(self, job_id: str) -> Loaded | None:
        """In Redis (any thread): a job this server does not know, and its render's state."""
        raw = self.redis.hgetall(self.keys.job(job_id))
        if not raw:
            return None
        data = {k.decode(): v.decode() for k, v in raw.items()}
        if "hit" in data:
            result = self.rendered(data["key"])
            return None if result is None else Loaded(data, None, result)
        return Loaded(data, self._state(data["rid"]), None)

    def _adopt_loaded(self, job_id: str, loaded: Loaded | None) -> Job | None:
        """On the loop: the job read by `_load`."""
        if loaded is None:
            return None
        known = self.jobs.get(job_id)  # loaded meanwhile by another request
        if known is not None:
            return known
        data = loaded.job
        if loaded.result is not None:
            result = {**loaded.result, "cached": True, "timings": {}, **json.loads(data["hit"])}
            render = Render(0, data["key"], None, int(data["chunk_count"]), status="done")  # type: ignore[arg-type]
            render.chunks, render.result = result.get("chunks", []), result
        else:
            assert loaded.state is not None
            render = self._follow(data["rid"], loaded.state, None)
        finished = float(data["finished"]) if "finished" in data else None
        job = Job(job_id, render, data["mode_reason"], created=float(data["created"]), finished=finished)
        job.cancelled = data.get("cancelled") == "1"
        if job.finished is None and render.status in TERMINAL:
            job.finished = time.time()
        if job.finished is None:
            render.jobs.append(job)
        self.jobs[job_id] = job
        self._forget_old_jobs()
        return job

    def _cancel_here(self, job: Job) -> bool:
        """On the loop: mark `job` cancelled; False if it had already finished."""
        if job.finished is not None:
            return False
        job.cancelled, job.finished = True, time.time()
        if job in job.render.jobs:
            job.render.jobs.remove(job)
        job.notify()
        return True

    def _cancel_there(self, job: Job, active: bool) -> str | dict[str, Any]:
        """In Redis (any thread): the job cancelled, and its render too if no other job (on any
        API server) waits for it. Returns "waiting" (others wait, or it had ended), "cancelled",
        or the render's state if it ended meanwhile."""
        rid = job.render.ref
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.job(job.id), mapping={"cancelled": "1", "finished": repr(job.finished)})
            pipe.srem(self.keys.render_jobs(rid), job.id)
            pipe.scard(self.keys.render_jobs(rid))
            waiting = pipe.execute()[-1]
        outcome: str | dict[str, Any] = "waiting"
        if waiting == 0 and active:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(self.keys.render(rid), "cancel", "1")
                pipe.eval(_CANCEL, 1, self.keys.render(rid), repr(time.time()))
                pipe.eval(_DELETE_IF, 1, self.keys.active(job.render.key), rid)
                outcome = "cancelled" if pipe.execute()[1] else self._state(rid)
        self.redis.publish(self.keys.events, f"{rid} {job.id}")
        return outcome

    def _cancelled(self, render: Render, outcome: str | dict[str, Any]) -> None:
        """On the loop: the render as `_cancel_there` left it."""
        if outcome == "cancelled" and render.status not in TERMINAL:
            self._finish(render, "cancelled")
            self._followed.pop(render.ref, None)
        elif isinstance(outcome, dict):  # it ended meanwhile: as it ended
            self._apply(render, outcome)

    def _apply(self, render: Render, state: dict[str, Any]) -> None:
        """Bring `render` up to the state read from Redis, telling its jobs."""
        fractions = state.get("fractions") or {}
        render.fractions = {s: float(f) for s, f in fractions.items()}
        render.stage = state.get("stage") or render.stage
        render.chunks = state.get("chunks") or render.chunks
        status = state.get("status", "queued")
        if status == "running" and render.started is None:
            render.started = time.monotonic()
        if status in TERMINAL and render.status not in TERMINAL:
            if status == "done" and render.started is not None:
                self._avg_render_s = 0.8 * self._avg_render_s + 0.2 * (time.monotonic() - render.started)
            self._finish(
                render,
                status,
                result=state.get("result"),
                error=state.get("error"),
                kind=state.get("error_kind"),
            )
            self._followed.pop(render.ref, None)
            return
        if render.status not in TERMINAL:
            render.status = status
        self._changed(render)

    def _on_state(self, rid: str, state: dict[str, Any], job_id: str | None, cancelled: bool) -> None:
        """On the loop: apply a render's state read by the listener (and a job cancelled elsewhere)."""
        render = self._followed.get(rid)
        if render is not None and state:
            self._apply(render, state)
        job = self.jobs.get(job_id) if job_id else None
        if job is not None and cancelled and job.finished is None:
            job.cancelled, job.finished = True, time.time()
            if job in job.render.jobs:
                job.render.jobs.remove(job)
            job.notify()

    # -- listener thread --------------------------------------------------------------------

    def _listen(self) -> None:
        """Hear the doorbell; read the state of each followed render it names and post it to the
        loop. After (re)subscribing, and every RESYNC_S, every followed render is read again."""
        import redis

        while not self._stopping.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.keys.events)
                resynced = 0.0
                while not self._stopping.is_set():
                    if time.monotonic() - resynced > RESYNC_S:
                        resynced = time.monotonic()
                        for rid in list(self._followed):
                            self._read(rid, None)
                    message = pubsub.get_message(timeout=LISTEN_POLL_S)
                    if message is None:
                        continue
                    rid, _, job_id = message["data"].decode().partition(" ")
                    if rid in self._followed or job_id in self.jobs:
                        self._read(rid, None if job_id == "-" else job_id)
            except redis.RedisError as exc:
                log.warning("lost the cluster's event channel (%s); reconnecting", exc)
                self._stopping.wait(1.0)
            finally:
                pubsub.close()

    def _read(self, rid: str, job_id: str | None) -> None:
        state = decode_state(self.redis.hgetall(self.keys.render(rid))) if rid in self._followed else {}
        cancelled = job_id is not None and self.redis.hget(self.keys.job(job_id), "cancelled") == b"1"
        self._post(self._on_state, rid, state, job_id, cancelled)


# KEYS: the video's active-render key, the queue's messages, the new render's hash; ARGV: the new
# render's id, server.queue_size, the TTL, the render hashes' prefix, the new render's fields.
# Joins the active render unless it ended without a video (or expired); else makes the new one,
# unless the queue is full. (Standalone Redis or Sentinel: it reads the active render's hash.)
_JOIN_OR_CREATE = """
local active = redis.call('GET', KEYS[1])
if active then
  local status = redis.call('HGET', ARGV[4] .. active, 'status')
  if status and status ~= 'failed' and status ~= 'cancelled' then return {'join', active} end
end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[2]) then return {'full', ''} end
redis.call('HSET', KEYS[3], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return {'new', ARGV[1]}
"""
_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'ended', ARGV[1])
  return 1
end
return 0
"""
_DELETE_IF = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def _flat(fields: dict[str, str]) -> list[str]:
    return [x for pair in fields.items() for x in pair]


def _is_job_id(job_id: str) -> bool:
    return len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)
