"""Content-hash cache: a repeated request is answered from disk, safely across threads and processes.

Layout under the cache directory:

    objects/<key[:2]>/<key><suffix>   one file per entry (an MP4, an .npy of audio, a pickle, …)
    index.sqlite3                     SQLite in WAL mode: key, suffix, kind, size, sha256, created,
                                      last_access, hits; plus pins (readers' leases)
    locks/<key>.lock                  per-key render locks (a file exists only while held)

Keys (`cache_key`) are SHA-256 digests of a canonical encoding of every input that changes the
output, plus `PIPELINE_VERSION`; `derived_key` combines such keys with plain values cheaply;
`is_key` lets only such digests become file names.

Why a served file is always complete and current:

- A file is written to a temporary name in its final directory, fsynced, and moved into place
  with an atomic `os.replace`; the index row is inserted in the same index transaction, after the
  rename. A process killed before that leaves only an unindexed temporary file, which is never
  served and is deleted by the next render of that key or by `verify`.
- A lookup trusts a row only if the file exists with the recorded size; otherwise (and, for small
  stage artefacts, on a checksum mismatch) the entry is dropped and counts as a miss. `verify`
  recomputes every checksum.
- Index changes run in SQLite write transactions (`BEGIN IMMEDIATE`), which serialize writers
  across threads and processes; files are renamed in and deleted only inside them.
- Renders of one key hold its `filelock`, and the index is checked again once it is held, so
  concurrent identical requests render once and the waiters get the finished entry.
- `reading` pins an entry with a lease row in the index; eviction, TTL expiry and `clear` skip
  pinned entries, so a file served by path is not deleted mid-read (on POSIX an open file would
  survive deletion, on Windows the path itself must stay). A lease left by a killed process
  expires after `pin_s`, or at once when `release_pins` names it (the server does so for a dead
  render worker).
- Eviction (after each insert) drops expired entries, then the least recently used ones until the
  total fits `max_bytes`; pinned entries and the one just inserted may keep it above the limit
  until the next insert.

The index relies on POSIX/Windows file locking, so the directory must be on a local filesystem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ara_sidecar.cache.key import PIPELINE_VERSION, cache_key, derived_key, is_key
from ara_sidecar.cache.store import CacheStore, CacheUnwritable, Entry, Producer

if TYPE_CHECKING:
    from ara_sidecar.config import Settings

__all__ = [
    "PIPELINE_VERSION",
    "CacheStore",
    "CacheUnwritable",
    "Entry",
    "Producer",
    "cache_key",
    "derived_key",
    "is_key",
    "open_cache",
]


def open_cache(settings: Settings) -> CacheStore:
    """The cache the settings describe (`cache.dir`, `cache.max_mb`, `cache.ttl_hours`); in a
    cluster (`cluster.url`), the shared cache with `cache.dir` as this machine's first level
    (ara_sidecar.cluster.cache: same interface)."""
    cfg = settings.cache
    store = CacheStore(
        settings.path(cfg.dir),
        max_bytes=int(cfg.max_mb * 2**20),
        ttl_s=None if cfg.ttl_hours is None else cfg.ttl_hours * 3600,
    )
    if settings.cluster.url:
        from ara_sidecar.cluster.cache import SharedCacheStore

        return SharedCacheStore(store, settings)  # type: ignore[return-value]
    return store
