"""The cluster's shared state in Redis: the connection, key names, and renders and jobs.

    {ns}:render:{rid}         hash: key, request (JSON), chunk_count, status, stage, fractions,
                              chunks, result, error, error_kind, cancel, deliveries, worker, created
    {ns}:render:{rid}:jobs    set: the ids of the jobs still waiting for the render
    {ns}:job:{id}             hash: rid, mode_reason, created, finished, cancelled; for a cache
                              hit instead of rid: key, hit (its mode and persona), chunk_count
                              (kept an hour: the result is under {ns}:result:{key})
    {ns}:active:{key}         the rid of the queued or running render of the video `key`
    {ns}:result:{key}         the finished render's result (JSON): repeated requests are answered at once
    {ns}:worker:{id}          a worker's announcement (JSON), expiring after cluster.worker_timeout_s
    {ns}:workers              sorted set: worker ids by the time of their last announcement
    {ns}:events               pub/sub channel: "{rid} {job id or -}" whenever a render or job changed

Every key but the channel expires after `cluster.job_ttl_hours` (workers' sooner).
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ara_sidecar.cache import CacheStore, is_key
from ara_sidecar.cluster import EXTRA_HINT
from ara_sidecar.config import Settings
from ara_sidecar.errors import UserError
from ara_sidecar.pipeline import RenderRequest
from ara_sidecar.server.speech import SpeechRequest

if TYPE_CHECKING:
    import redis

TERMINAL = ("done", "failed", "cancelled")
CACHED = "cache:"  # a request's file that is a cache entry, by key
SOCKET_TIMEOUT_S = 10.0


def require_cluster(settings: Settings) -> str:
    """`cluster.url` and `cluster.store`, checked; returns the URL."""
    cfg = settings.cluster
    if not cfg.url:
        raise UserError("no cluster configured: set cluster.url (ARA_CLUSTER_URL) to a Redis URL")
    if cfg.store is None:
        raise UserError(
            "cluster.url is set but cluster.store is not: name the folder every machine shares "
            "(ARA_CLUSTER_STORE) so that any API server can serve any worker's videos"
        )
    return cfg.url


def connect(settings: Settings) -> redis.Redis:
    """A Redis client (a thread-safe connection pool) for `cluster.url`."""
    try:
        import redis
    except ImportError:
        raise UserError(f"the cluster needs the redis package: {EXTRA_HINT}") from None
    client = redis.Redis.from_url(
        require_cluster(settings),
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=30,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise UserError(f"cannot reach the cluster's Redis at {settings.cluster.url}: {exc}") from None
    return client


class Keys:
    """Key names under the namespace `ns`."""

    def __init__(self, settings: Settings):
        self.ns = settings.cluster.namespace
        self.ttl_s = int(settings.cluster.job_ttl_hours * 3600)
        self.events = f"{self.ns}:events"
        self.workers = f"{self.ns}:workers"  # sorted set: worker ids by last announcement
        self.queue = "renders"  # the Dramatiq queue (its keys are under the namespace too)

    def render(self, rid: str) -> str:
        return f"{self.ns}:render:{rid}"

    def render_jobs(self, rid: str) -> str:
        return f"{self.ns}:render:{rid}:jobs"

    def job(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}"

    def active(self, key: str) -> str:
        return f"{self.ns}:active:{key}"

    def result(self, key: str) -> str:
        return f"{self.ns}:result:{key}"

    def worker(self, worker_id: str) -> str:
        return f"{self.ns}:worker:{worker_id}"

    def queue_messages(self) -> str:
        """Dramatiq's hash of the queue's messages, queued or being rendered."""
        return f"{self.ns}:{self.queue}.msgs"


def decode_state(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """A render hash as plain values (JSON fields parsed)."""
    state: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
    for name in ("fractions", "chunks", "result", "request"):
        if name in state:
            state[name] = json.loads(state[name])
    for name in ("chunk_count", "deliveries"):
        if name in state:
            state[name] = int(state[name])
    return state


# -- requests as JSON (never pickle: whoever can write to Redis must not run code in a worker)


def encode_request(request: RenderRequest | SpeechRequest) -> str:
    if isinstance(request, SpeechRequest):
        return json.dumps({"speech": _plain(request.render), "speed": request.speed})
    return json.dumps({"render": _plain(request)})


def decode_request(data: dict[str, Any], cache: CacheStore) -> RenderRequest | SpeechRequest:
    """The request; an upload (a path in the API server's cache) is found in `cache`."""
    if "speech" in data:
        return SpeechRequest(_render_request(data["speech"], cache), speed=float(data["speed"]))
    return _render_request(data["render"], cache)


def _plain(request: RenderRequest) -> dict[str, Any]:
    """Plain values; a file in the cache (an upload) by its key, as each machine has its own copy."""
    out = asdict(request)
    for name, value in out.items():
        if isinstance(value, Path):
            stem = value.name.split(".", 1)[0]
            out[name] = (
                CACHED + stem if is_key(stem) and value.parent.parent.name == "objects" else str(value)
            )
    return out


def _render_request(data: dict[str, Any], cache: CacheStore) -> RenderRequest:
    known = {f.name for f in fields(RenderRequest)}
    values = {k: v for k, v in data.items() if k in known}
    for name in ("audio_path", "avatar_path"):
        value = values.get(name)
        if value is None:
            continue
        if value.startswith(CACHED):
            path = cache.get(value[len(CACHED) :])
            if path is None:
                raise UserError("the uploaded file is no longer in the cache: upload it again")
            values[name] = path
        else:
            values[name] = Path(value)
    return RenderRequest(**values)
