"""The render queue: a Dramatiq broker on the cluster's Redis, and its one message, "render RID"."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ara_sidecar.cluster import EXTRA_HINT
from ara_sidecar.cluster.state import Keys, require_cluster
from ara_sidecar.config import Settings
from ara_sidecar.errors import UserError

if TYPE_CHECKING:
    from dramatiq.brokers.redis import RedisBroker

ACTOR = "ara_render"
MAX_DELIVERIES = 2  # a render whose worker died is retried once (on another worker), then fails
# Share of broker commands that also look for dead workers and requeue their messages (of a
# million): each worker polls dozens of times a second (see worker.POLL_MS), so a dead one is
# noticed within a second of cluster.worker_timeout_s. The check is two sorted-set range queries
# when nobody died.
MAINTENANCE_CHANCE = 10_000


def make_broker(settings: Settings, keys: Keys) -> RedisBroker:
    """The broker on `cluster.url`, keys under `cluster.namespace`, the render queue declared."""
    try:
        from dramatiq.brokers.redis import RedisBroker
    except ImportError:
        raise UserError(f"the cluster needs the dramatiq package: {EXTRA_HINT}") from None
    broker = RedisBroker(
        url=require_cluster(settings),
        namespace=keys.ns,
        heartbeat_timeout=int(settings.cluster.worker_timeout_s * 1000),
        maintenance_chance=MAINTENANCE_CHANCE,
    )
    broker.declare_queue(keys.queue)
    return broker


def enqueue(broker: RedisBroker, keys: Keys, rid: str) -> None:
    """Queue the render `rid` (its state is already in Redis)."""
    from dramatiq import Message

    broker.enqueue(Message(queue_name=keys.queue, actor_name=ACTOR, args=(rid,), kwargs={}, options={}))


def time_limit_ms(settings: Settings) -> int:
    """Dramatiq's hard time limit: well past `server.job_timeout_s`, which the worker enforces
    itself, cooperatively (Dramatiq's limit interrupts the thread wherever it is)."""
    return int((settings.server.job_timeout_s * 2 + 60) * 1000)
