"""The shared cache of a cluster: the index and per-key locks in Redis, the files in a folder every
machine mounts or an S3-compatible bucket (`cluster.store`, see `blobs`), and each machine's own
`CacheStore` (`cache.dir`) as a read-through first level. Same interface as `CacheStore`.

    {ns}:cache:e:{key}     hash: suffix, kind, size, sha256, created, hits
    {ns}:cache:lru         sorted set: keys by last access
    {ns}:cache:created     sorted set: keys by creation (TTL expiry)
    {ns}:cache:bytes       the indexed files' total size
    {ns}:cache:kinds       hash: entries, bytes and hits of each kind ("video:bytes", …)
    {ns}:cache:kind:{kind} sorted set: the keys of a kind by creation
    {ns}:cache:lock:{key}  a render's lock (renewed while held; it lapses if its holder dies)
    {ns}:cache:evicting    held by the machine evicting
    <store>: <key[:2]>/<key><suffix> (a folder's under objects/)

The shared index decides what exists: a lookup asks Redis first (one round trip: the entry, its
access time and hit count), then serves the machine's local copy, copying the shared file once
(checked against the indexed SHA-256) where the machine has none. A miss takes the key's lock
in Redis, so identical renders run once across the cluster; the file is produced into the local
level, copied into the shared folder (a temporary name, then an atomic rename) and only then
indexed. Eviction, TTL, `clear` and `verify` act on the shared index and folder (and on this
machine's first level); readers never pin shared files, as they read their local copies.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

from ara_sidecar.cache.key import is_key
from ara_sidecar.cache.store import CacheBusy, CacheStore, Entry, Producer, waiting_allowed
from ara_sidecar.cluster.blobs import TEMP_PREFIX, open_blobs
from ara_sidecar.cluster.state import connect
from ara_sidecar.config import Settings
from ara_sidecar.errors import AraError

# A render's lock lapses cluster.worker_timeout_s after its holder died (it is renewed every third
# of that): the retry on another worker need not wait longer than the queue does.
STALE_TEMP_S = 3600  # `verify` deletes temporary files older than this (a writer died)
BATCH = 500

# the entry (as a flat list) after counting the hit, or nil on a miss
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
redis.call('HINCRBY', KEYS[1], 'hits', 1)
redis.call('HINCRBY', KEYS[3], redis.call('HGET', KEYS[1], 'kind') .. ':hits', 1)
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""
# drop an entry; returns its suffix (nil if it was not indexed)
_REMOVE = """
local e = redis.call('HMGET', KEYS[1], 'suffix', 'size', 'kind', 'hits')
if not e[1] then return nil end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[6] .. e[3], ARGV[1])
redis.call('DECRBY', KEYS[4], e[2])
redis.call('HINCRBY', KEYS[5], e[3] .. ':entries', -1)
redis.call('HINCRBY', KEYS[5], e[3] .. ':bytes', 0 - tonumber(e[2]))
redis.call('HINCRBY', KEYS[5], e[3] .. ':hits', 0 - tonumber(e[4] or 0))  -- (0 - x: never -0)
return e[1]
"""


class _Corrupt(Exception):
    pass


class SharedCacheStore:
    """A `CacheStore` for a cluster (see the module docstring)."""

    read_only = False

    def __init__(self, local: CacheStore, settings: Settings, clock: Callable[[], float] = time.time):
        assert settings.cluster.store is not None
        self.local = local
        self.blobs = open_blobs(settings)
        self.root = self.blobs.location
        self.max_bytes = local.max_bytes
        self.ttl_s = local.ttl_s
        self._clock = clock
        self.redis = connect(settings)
        ns = f"{settings.cluster.namespace}:cache"
        self._prefix, self._lru, self._created = f"{ns}:e:", f"{ns}:lru", f"{ns}:created"
        self._bytes, self._locks, self._evicting = f"{ns}:bytes", f"{ns}:lock:", f"{ns}:evicting"
        self._kinds, self._kind = f"{ns}:kinds", f"{ns}:kind:"
        self._lock_s = settings.cluster.worker_timeout_s
        self._touch = self.redis.register_script(_TOUCH)
        self._remove_script = self.redis.register_script(_REMOVE)

    # -- lookups ---------------------------------------------------------------------------------

    def get(self, key: str) -> Path | None:
        """The entry's (local) file, or None. Within `without_waiting` a copy still to be made
        raises CacheBusy (it would wait for the shared folder)."""
        meta = self._lookup(key)
        if meta is None:
            return None
        path = self.local.get(key)
        if path is not None:
            return path
        if not waiting_allowed():
            raise CacheBusy(f"{key} is still to be copied from the shared store")
        return self._copy_in(key, meta)

    def get_or_create(self, key: str, suffix: str, produce: Producer, kind: str = "video") -> Entry:
        """As `CacheStore.get_or_create`, once across the cluster."""
        path = self.get(key)
        if path is not None:
            return Entry(path, True)
        with self._locked(key):
            path = self.get(key)
            if path is not None:
                return Entry(path, True)
            entry = self.local.get_or_create(key, suffix, produce, kind)
            self._publish(key, entry.path, suffix, kind)
        self._evict(keep=key)
        return Entry(entry.path, False)

    @contextmanager
    def reading(
        self, key: str, produce: Producer | None = None, *, suffix: str = "", kind: str = "video"
    ) -> Iterator[Entry | None]:
        """As `CacheStore.reading`: the local copy is pinned for the block."""
        with ExitStack() as stack:
            for _ in range(2):  # the local copy may be evicted between making and pinning it
                if produce is None:
                    hit = self.get(key) is not None
                    if not hit:
                        yield None
                        return
                else:
                    hit = self.get_or_create(key, suffix, produce, kind).hit
                pinned = stack.enter_context(self.local.reading(key))
                if pinned is not None:
                    yield Entry(pinned.path, hit)
                    return
            raise AraError(f"cache entry {key} keeps vanishing from {self.local.root}")

    def get_bytes(self, key: str) -> bytes | None:
        return None if self.get(key) is None else self.local.get_bytes(key)

    def get_or_create_bytes(
        self, key: str, produce: Callable[[], bytes], *, suffix: str = ".bin", kind: str = "data"
    ) -> bytes:
        def write(path: Path) -> None:
            path.write_bytes(produce())

        for _ in range(2):
            self.get_or_create(key, suffix, write, kind)
            data = self.local.get_bytes(key)
            if data is not None:
                return data
        raise AraError(f"cache entry {key} is corrupt right after it was written")

    # -- maintenance -----------------------------------------------------------------------------

    def stats(self) -> dict:
        """As `CacheStore.stats`, for the shared store (`pinned`: this machine's local copies);
        from counters kept with the index, whatever its size."""
        by_kind: dict[str, dict[str, int]] = {}
        for field, value in self.redis.hgetall(self._kinds).items():
            kind, _, name = field.decode().rpartition(":")
            by_kind.setdefault(kind, {"entries": 0, "bytes": 0, "hits": 0})[name] = int(value)
        by_kind = {kind: row for kind, row in sorted(by_kind.items()) if row["entries"] > 0}
        oldest = self.redis.zrange(self._created, 0, 0, withscores=True)
        newest = self.redis.zrange(self._created, -1, -1, withscores=True)
        return {
            "root": self.root,
            "read_only": False,
            "shared": True,
            "entries": sum(r["entries"] for r in by_kind.values()),
            "bytes": sum(r["bytes"] for r in by_kind.values()),
            "max_bytes": self.max_bytes,
            "ttl_s": self.ttl_s,
            "hits": sum(r["hits"] for r in by_kind.values()),
            "pinned": self.local.stats()["pinned"],
            "oldest": oldest[0][1] if oldest else None,
            "newest": newest[0][1] if newest else None,
            "by_kind": by_kind,
        }

    def entries(self, kind: str) -> list[tuple[str, str, float]]:
        """(key, SHA-256, creation time) of every unexpired entry of `kind`, oldest first."""
        low = "-inf" if self.ttl_s is None else self._clock() - self.ttl_s
        rows = self.redis.zrangebyscore(self._kind + kind, low, "+inf", withscores=True)
        with self.redis.pipeline(transaction=False) as pipe:
            for key, _ in rows:
                pipe.hget(self._prefix + key.decode(), "sha256")
            digests = pipe.execute()
        return [(k.decode(), d.decode(), c) for (k, c), d in zip(rows, digests, strict=True) if d is not None]

    def clear(self, keep_kinds: Collection[str] = ()) -> int:
        """Remove every shared entry (but those of `keep_kinds`) no render is writing, and this
        machine's local copies; returns how many shared entries were removed."""
        victims = [(key, meta) for key, meta in self._all() if meta["kind"] not in keep_kinds]
        removed = sum(self._remove(key) for key, _ in victims)
        self.local.clear(keep_kinds)
        return removed

    def release_pins(self, pid: int) -> int:
        return self.local.release_pins(pid)

    def verify(self) -> dict[str, int]:
        """Check every shared file against its SHA-256 (dropping missing and corrupt entries),
        delete unindexed files and stale temporary ones, then verify this machine's local level
        (its counts prefixed `local_`)."""
        counts = dict.fromkeys(("checked", "ok", "missing", "corrupt", "orphans", "temps"), 0)
        known = set()
        for key, meta in self._all():
            counts["checked"] += 1
            actual = self.blobs.sha256(_name(key, meta["suffix"]))
            if actual == meta["sha256"]:
                counts["ok"] += 1
                known.add(_name(key, meta["suffix"]))
            elif self._remove(key):
                counts["missing" if actual is None else "corrupt"] += 1
        now = time.time()
        for name, modified in self.blobs.listing():
            base = name.rpartition("/")[2]
            if base.startswith(TEMP_PREFIX):
                if now - modified > STALE_TEMP_S:
                    self.blobs.delete(name)
                    counts["temps"] += 1
            elif name not in known:
                key = base.split(".", 1)[0]
                if is_key(key) and self._delete_unless_indexed(key, name):
                    counts["orphans"] += 1
        local = self.local.verify()
        return {**counts, **{f"local_{name}": count for name, count in local.items()}}

    # -- internals -------------------------------------------------------------------------------

    def _lookup(self, key: str) -> dict[str, str] | None:
        """The shared index entry (hit counted, access time bumped); None if absent or expired."""
        if not is_key(key):
            raise ValueError(f"not a cache key: {key!r}")
        flat = self._touch(keys=[self._prefix + key, self._lru, self._kinds], args=[self._clock(), key])
        if not flat:
            return None
        meta = {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}
        if self._expired(meta, self._clock()):
            self._remove(key)
            return None
        return meta

    def _copy_in(self, key: str, meta: dict[str, str]) -> Path | None:
        """Copy the shared file into the local level (checked); a missing or corrupt one is dropped."""

        def copy(tmp: Path) -> None:
            if self.blobs.fetch(_name(key, meta["suffix"]), tmp) != meta["sha256"]:
                raise _Corrupt(key)

        try:
            return self.local.get_or_create(key, meta["suffix"], copy, meta["kind"]).path
        except (FileNotFoundError, _Corrupt):
            self._remove(key)
            return None

    def _publish(self, key: str, path: Path, suffix: str, kind: str) -> None:
        """Copy a local file into the shared store, then index it (the key's lock is held)."""
        self.blobs.put(_name(key, suffix), path)
        size, sha256 = path.stat().st_size, _file_sha256(path)
        now = self._clock()
        fields = {"suffix": suffix, "kind": kind, "size": size, "sha256": sha256, "created": now, "hits": 0}
        with self.redis.pipeline(transaction=True) as pipe:
            # an entry still indexed (one expired, which a lookup under this lock could not drop)
            # is replaced, its counts with it
            self._remove_script(keys=self._index_keys(key), args=[key], client=pipe)
            pipe.hset(self._prefix + key, mapping=fields)
            pipe.zadd(self._lru, {key: now})
            pipe.zadd(self._created, {key: now})
            pipe.zadd(self._kind + kind, {key: now})
            pipe.incrby(self._bytes, size)
            pipe.hincrby(self._kinds, f"{kind}:entries", 1)
            pipe.hincrby(self._kinds, f"{kind}:bytes", size)
            pipe.execute()

    def _evict(self, keep: str) -> None:
        """Drop expired entries, then the least recently used until the total fits (one machine
        at a time; the others skip it meanwhile)."""
        if not self.redis.set(self._evicting, "1", nx=True, px=int(self._lock_s * 1000)):
            return
        try:
            if self.ttl_s is not None:
                expired = self.redis.zrangebyscore(self._created, 0, self._clock() - self.ttl_s)
                for key in expired:
                    if key.decode() != keep:
                        self._remove(key.decode())
            start = 0
            while int(self.redis.get(self._bytes) or 0) > self.max_bytes:
                batch = [k.decode() for k in self.redis.zrange(self._lru, start, start + 49)]
                if not batch:
                    break
                skipped = 0
                for key in batch:
                    if int(self.redis.get(self._bytes) or 0) <= self.max_bytes:
                        break
                    if key == keep or not self._remove(key):
                        skipped += 1
                start += skipped
        finally:
            self.redis.delete(self._evicting)

    def _remove(self, key: str) -> bool:
        """Unindex and delete an entry unless a render holds its lock; True if removed."""
        lock = self.redis.lock(self._locks + key, timeout=self._lock_s, blocking=False)
        if not lock.acquire():
            return False
        try:
            suffix = self._remove_script(keys=self._index_keys(key), args=[key])
            if suffix is not None:
                with suppress(OSError):
                    self.blobs.delete(_name(key, suffix.decode()))
            return suffix is not None
        finally:
            with suppress(Exception):
                lock.release()

    def _index_keys(self, key: str) -> list[str]:
        """The keys of `_REMOVE`."""
        return [self._prefix + key, self._lru, self._created, self._bytes, self._kinds, self._kind]

    def _delete_unless_indexed(self, key: str, name: str) -> bool:
        """Delete an unindexed object unless a render holds its key's lock (it is publishing it)."""
        lock = self.redis.lock(self._locks + key, timeout=self._lock_s, blocking=False)
        if not lock.acquire():
            return False
        try:
            if self.redis.exists(self._prefix + key):
                return False
            self.blobs.delete(name)
            return True
        finally:
            with suppress(Exception):
                lock.release()

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """Hold the key's lock in Redis, renewed every self._lock_s / 3 while the block runs."""
        lock = self.redis.lock(self._locks + key, timeout=self._lock_s, sleep=0.02)
        lock.acquire()
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self._lock_s / 3):
                with suppress(Exception):
                    lock.reacquire()

        renewer = threading.Thread(target=renew, name="ara-cache-lock", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            done.set()
            renewer.join()
            with suppress(Exception):
                lock.release()

    def _all(self) -> Iterator[tuple[str, dict[str, str]]]:
        """Every indexed entry, in batches."""
        keys = [k.decode() for k, _ in self.redis.zscan_iter(self._lru, count=BATCH)]
        for i in range(0, len(keys), BATCH):
            batch = keys[i : i + BATCH]
            with self.redis.pipeline(transaction=False) as pipe:
                for key in batch:
                    pipe.hgetall(self._prefix + key)
                rows = pipe.execute()
            for key, raw in zip(batch, rows, strict=True):
                if raw:
                    yield key, {k.decode(): v.decode() for k, v in raw.items()}

    def _expired(self, meta: dict[str, Any], now: float) -> bool:
        return self.ttl_s is not None and now - float(meta["created"]) > self.ttl_s


def _name(key: str, suffix: str) -> str:
    return f"{key[:2]}/{key}{suffix}"


def _file_sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256()
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
            return digest.hexdigest()
    except FileNotFoundError:
        return None
