"""Scaling out: API servers and render workers on several machines, sharing one Redis.

Off unless `cluster.url` (`ARA_CLUSTER_URL`) names a Redis server; then `ara-sidecar serve` runs
no worker of its own and `ara-sidecar worker` processes (one per GPU or CPU slot) render. Nothing
here is imported on a single machine: redis and dramatiq are the `cluster` extra
(`pip install 'ara-avatar[cluster]'`).

Why Dramatiq, on its Redis broker, as the queue:

- A worker loads its models once and renders in its own (long-lived) process; Dramatiq runs
  actors in threads of a process we start ourselves, after the models are loaded. RQ forks a
  child per job (the models would be reloaded, or forked after loading: CUDA forbids that).
- A message is acknowledged only after the render ends. A worker that dies stops heartbeating;
  its unacknowledged message goes back to the queue once `cluster.worker_timeout_s` has passed
  (the broker's `heartbeat_timeout`), and another worker takes it. Celery's Redis transport
  redelivers after a visibility timeout that must exceed the longest render (hours of delay
  after a crash), and is a much heavier dependency; arq is asyncio-only (our renders are CPU or
  GPU bound, in threads) and re-runs jobs on its own schedule.
- Progress and cancellation are ours, not the queue's: the state of each render is a Redis hash
  the worker updates, and a pub/sub "doorbell" tells the API servers to read it (see `jobs`);
  cancellation is a field the worker's progress callback reads (the pipeline already stops
  cooperatively). Deliveries are counted in the same hash, so a render is retried once after its
  worker died, then fails with a clear error (Dramatiq's own retries are off).

Modules: `state` (Redis connection, key names, the render state), `queue` (the broker and the
render actor), `worker` (`ara-sidecar worker`), `jobs` (the API servers' job table),
`cache` (the shared cache: index and locks in Redis, files in `cluster.store`), `blobs` (that
store: a shared folder, or an S3-compatible bucket), `cli` (the `worker` command's arguments).
"""

from __future__ import annotations

EXTRA_HINT = "pip install 'ara-avatar[cluster]'"
