"""The content-addressed file store behind every cache (see the package docstring for the design)."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import BinaryIO, NamedTuple
from urllib.parse import quote

from filelock import FileLock, Timeout

from ara_sidecar.cache.key import is_key
from ara_sidecar.errors import AraError, UserError

log = logging.getLogger(__name__)

Producer = Callable[[Path], None]

_SUFFIX = re.compile(r"(\.[A-Za-z0-9_-]{1,16}){0,3}")
_TEMP_PREFIX = ".tmp-"
_BUSY_TIMEOUT_S = 60  # how long an index access waits for another writer
_waiting: ContextVar[bool] = ContextVar("waiting", default=True)  # see without_waiting
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}  # a read-only mount, or no permission to write
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    suffix TEXT NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created REAL NOT NULL,
    last_access REAL NOT NULL,
    hits INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_lru ON entries (last_access);
CREATE TABLE IF NOT EXISTS pins (token TEXT PRIMARY KEY, key TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS pins_key ON pins (key);
"""
_TOUCH = "UPDATE entries SET last_access = ?, hits = hits + 1 WHERE key = ?"
_UNPINNED = "NOT EXISTS (SELECT 1 FROM pins WHERE pins.key = entries.key)"
_LRU = f"SELECT key, suffix, size FROM entries WHERE key != ? AND {_UNPINNED} ORDER BY last_access, created"


class CacheUnwritable(UserError):
    """Nothing can be stored in the cache: its disk is full, or its folder is read-only. What it
    holds is still served (a hit only skips its bookkeeping: access time, hit count, pin)."""


class CacheBusy(Exception):
    """Another thread or process is writing the index (`get` within `without_waiting`)."""


@contextmanager
def without_waiting() -> Iterator[None]:
    """Within the block `CacheStore.get` raises CacheBusy rather than wait for the index (so an
    event loop can try a lookup and, where it would wait, make it in a thread instead)."""
    token = _waiting.set(False)
    try:
        yield
    finally:
        _waiting.reset(token)


def waiting_allowed() -> bool:
    """False within `without_waiting` (for stores layered on this one, such as the cluster's)."""
    return _waiting.get()


class Entry(NamedTuple):
    """A cached file and whether it was already there (False: this call produced it)."""

    path: Path
    hit: bool


class CacheStore:
    """Files keyed by `cache_key`, under `root`, shared safely by threads and processes.

    max_bytes: total size kept; least recently used entries are evicted after each insert.
    ttl_s: entries older than this (since creation) are dropped; None keeps them.
    pin_s: how long a `reading` pin protects an entry if its holder dies without releasing it.
    clock: the time source (seconds since the epoch), injectable for tests.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        ttl_s: float | None = None,
        pin_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive or None, not {ttl_s}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._pin_s = pin_s
        self._clock = clock
        self._objects = self.root / "objects"
        self._locks = self.root / "locks"
        self._index = self.root / "index.sqlite3"
        self._local = threading.local()
        self.read_only = False  # opened read-only: lookups only, no bookkeeping, writes refused
        self._unreleased: set[str] = set()  # pins whose release could not be written (see _unpin)
        self._unreleased_lock = threading.Lock()
        self._warned = False  # about bookkeeping that cannot be written (logged once)
        try:
            self._objects.mkdir(parents=True, exist_ok=True)
            self._locks.mkdir(exist_ok=True)
            with self._lock("index"):
                conn = self._conn()
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            if self._problem(exc) != "read-only" or not self._index.is_file():
                raise UserError(f"cannot open the cache at {self.root}: {exc}") from exc
            self._open_read_only(exc)

    # -- lookups ---------------------------------------------------------------------------------

    def get(self, key: str) -> Path | None:
        """The entry's file, or None if it is absent, expired, missing or of the wrong size (a bad
        entry is dropped). Not pinned: use `reading` to serve the file by path. Within
        `without_waiting` it raises CacheBusy rather than wait while another writer holds the index."""
        _check_key(key)
        if _waiting.get():
            return self._lookup(key, None)[0]
        conn = self._conn()
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            return self._lookup(key, None)[0]
        except sqlite3.OperationalError as exc:
            if _sqlite_code(exc) == sqlite3.SQLITE_BUSY:  # or an extended BUSY code
                raise CacheBusy(f"the cache index at {self._index} is being written") from exc
            raise
        finally:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_S * 1000}")

    def get_or_create(self, key: str, suffix: str, produce: Producer, kind: str = "video") -> Entry:
        """The entry's file; on a miss `produce(tmp_path)` writes it first, once across all threads
        and processes asking for `key` at the same time (the others wait and get the hit).

        If `produce` raises, nothing is stored and the exception propagates; a full disk raises
        UserError. Not pinned: use `reading` to serve the file by path.
        """
        entry, _ = self._obtain(key, produce, suffix, kind, None)
        assert entry is not None
        return entry

    @contextmanager
    def reading(
        self, key: str, produce: Producer | None = None, *, suffix: str = "", kind: str = "video"
    ) -> Iterator[Entry | None]:
        """Pin the entry for the block: eviction, TTL expiry and `clear` leave its file alone.
        Yields None on a miss, or with `produce` creates the entry first, as `get_or_create`."""
        token = f"{os.getpid()}-{uuid.uuid4().hex}"  # the reader's pid first: see release_pins
        entry, pinned = self._obtain(key, produce, suffix, kind, token)
        try:
            yield entry
        finally:
            if pinned:
                self._unpin(token)

    def get_bytes(self, key: str) -> bytes | None:
        """A small entry's content, checksum-verified; None on a miss (a corrupt entry is dropped)."""
        with self.reading(key) as entry:
            return None if entry is None else self._read_intact(key, entry.path)

    def get_or_create_bytes(
        self, key: str, produce: Callable[[], bytes], *, suffix: str = ".bin", kind: str = "data"
    ) -> bytes:
        """A small entry's content (checksum-verified), made by `produce()` on a miss; for stage
        artefacts such as an avatar analysis or synthesized audio."""

        def write(path: Path) -> None:
            path.write_bytes(produce())

        for _ in range(2):  # a corrupt entry is dropped and produced once more
            with self.reading(key, write, suffix=suffix, kind=kind) as entry:
                assert entry is not None
                data = self._read_intact(key, entry.path)
            if data is not None:
                return data
        raise AraError(f"cache entry {key} under {self.root} is corrupt right after it was written")

    # -- maintenance -----------------------------------------------------------------------------

    def stats(self) -> dict:
        """Entry count, bytes and hits, in total and by kind; limits; oldest and newest creation
        times (seconds since the epoch); how many entries are pinned."""
        conn = self._conn()
        rows = conn.execute(
            "SELECT kind, COUNT(*), SUM(size), SUM(hits), MIN(created), MAX(created)"
            " FROM entries GROUP BY kind ORDER BY kind"
        ).fetchall()
        pinned = conn.execute(
            "SELECT COUNT(DISTINCT key) FROM pins WHERE expires > ?", (self._clock(),)
        ).fetchone()[0]
        return {
            "root": str(self.root),
            "read_only": self.read_only,
            "entries": sum(r[1] for r in rows),
            "bytes": sum(r[2] for r in rows),
            "max_bytes": self.max_bytes,
            "ttl_s": self.ttl_s,
            "hits": sum(r[3] for r in rows),
            "pinned": pinned,
            "oldest": min((r[4] for r in rows), default=None),
            "newest": max((r[5] for r in rows), default=None),
            "by_kind": {r[0]: {"entries": r[1], "bytes": r[2], "hits": r[3]} for r in rows},
        }

    def entries(self, kind: str) -> list[tuple[str, str, float]]:
        """(key, SHA-256 of the file, creation time) of every unexpired entry of `kind`, oldest first."""
        query = "SELECT key, sha256, created FROM entries WHERE kind = ? ORDER BY created"
        now = self._clock()
        rows = self._conn().execute(query, (kind,))
        return [(key, sha256, created) for key, sha256, created in rows if not self._expired(created, now)]

    def clear(self, keep_kinds: Collection[str] = ()) -> int:
        """Remove every entry not pinned by a reader, except those of `keep_kinds`; returns how
        many were removed."""
        kept = ",".join("?" * len(keep_kinds))
        with self._storing("clear it"), self._write() as conn:
            conn.execute("DELETE FROM pins WHERE expires <= ?", (self._clock(),))
            query = f"SELECT key, suffix FROM entries WHERE {_UNPINNED} AND kind NOT IN ({kept})"
            rows = conn.execute(query, tuple(keep_kinds)).fetchall()
            return sum(self._remove(conn, key, suffix) for key, suffix in rows)

    def release_pins(self, pid: int) -> int:
        """Drop the pins held by process `pid`, which died while reading (a killed render
        worker): its entries can be evicted and cleared again at once, not when the pins expire."""
        with self._storing("release pins"), self._write() as conn:
            return conn.execute("DELETE FROM pins WHERE token LIKE ?", (f"{pid}-%",)).rowcount

    def verify(self) -> dict[str, int]:
        """Recompute every checksum; drop corrupt and missing entries, delete files the index does
        not know, temporary files and lock files no live render holds. Returns the counts."""
        rows = self._conn().execute("SELECT key, suffix, sha256 FROM entries").fetchall()
        bad: dict[str, tuple[str, str]] = {}  # key -> (sha256 as checked, "missing" | "corrupt")
        for key, suffix, sha256 in rows:
            actual = _file_sha256(self._path(key, suffix))
            if actual != sha256:
                bad[key] = (sha256, "missing" if actual is None else "corrupt")
        counts = dict.fromkeys(("missing", "corrupt", "orphans", "temps", "locks"), 0)
        counts.update(checked=len(rows), ok=len(rows) - len(bad))
        # no insert can run meanwhile, so unindexed files are orphans
        with self._storing("verify it"), self._write() as conn:
            conn.execute("DELETE FROM pins WHERE expires <= ?", (self._clock(),))
            for key, (sha256, problem) in bad.items():
                row = conn.execute(
                    "SELECT suffix FROM entries WHERE key = ? AND sha256 = ?", (key, sha256)
                ).fetchone()
                if row is not None and self._remove(conn, key, row[0]):
                    counts[problem] += 1
            known = {key + suffix for key, suffix in conn.execute("SELECT key, suffix FROM entries")}
            for path in self._objects.glob("*/*"):
                if path.name.startswith(_TEMP_PREFIX):
                    counts["temps"] += self._remove_stale(path, path.name[len(_TEMP_PREFIX) :][:64])
                elif path.name not in known:
                    path.unlink(missing_ok=True)
                    counts["orphans"] += 1
        for path in self._locks.glob("*.lock"):
            counts["locks"] += self._remove_stale(None, path.stem)
        return counts

    # -- internals -------------------------------------------------------------------------------

    def _obtain(
        self, key: str, produce: Producer | None, suffix: str, kind: str, token: str | None
    ) -> tuple[Entry | None, bool]:
        """The entry (None on a miss without `produce`) and whether it is pinned under `token`."""
        _check_key(key)
        path, pinned = self._lookup(key, token)
        if path is not None:
            return Entry(path, True), pinned
        if produce is None:
            return None, False
        if not _SUFFIX.fullmatch(suffix):
            raise ValueError(f"bad cache file suffix {suffix!r}")
        with self._storing("store anything new"), self._lock(key):
            path, pinned = self._lookup(key, token)
            if path is not None:
                return Entry(path, True), pinned
            path = self._produce(key, suffix, kind, produce, token)
        try:
            self._evict(keep=key)
        except BaseException:
            if token is not None:
                self._unpin(token)
            raise
        return Entry(path, False), token is not None

    def _lookup(self, key: str, token: str | None) -> tuple[Path | None, bool]:
        """The entry's file if it is indexed, unexpired and of its recorded size, after bumping its
        access time and hit count (and pinning it under `token`); a bad entry is dropped. Also
        whether it is pinned: a hit is served without its bookkeeping (and so unpinned) where that
        cannot be written (disk full, read-only folder)."""
        conn = self._conn()
        row = conn.execute("SELECT suffix, size, created FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None, False
        path = self._path(key, row[0])
        now = self._clock()
        if not _intact(path, row[1]) or self._expired(row[2], now):
            self._drop_bad(key)
            return None, False
        if self.read_only:
            return path, False
        try:
            if token is None:
                conn.execute(_TOUCH, (now, key))
                return path, False
            with self._write() as conn:
                if conn.execute(_TOUCH, (now, key)).rowcount == 0:  # evicted since the check
                    return None, False
                conn.execute("INSERT INTO pins VALUES (?, ?, ?)", (token, key, now + self._pin_s))
            return path, True
        except sqlite3.OperationalError as exc:
            # a hit is served whatever keeps its bookkeeping from being written (a full disk, a
            # read-only folder, an I/O error), but waits for (or, see get, reports) a busy index
            if _sqlite_code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            self._warn_once(exc, "hits are served without their bookkeeping (access time, hits, pins)")
            return path, False

    def _produce(self, key: str, suffix: str, kind: str, produce: Producer, token: str | None) -> Path:
        """Run `produce` on a temporary file, then move it into place and index it in one index
        transaction. Called with the key's lock held."""
        final = self._path(key, suffix)
        tmp: Path | None = None
        renaming = False
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            for stale in final.parent.glob(f"{_TEMP_PREFIX}{key}-*"):  # left by a killed render
                stale.unlink(missing_ok=True)
            fd, name = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{key}-", suffix=suffix, dir=final.parent)
            os.close(fd)
            tmp = Path(name)
            produce(tmp)
            with open(tmp, "r+b") as f:
                sha256 = _sha256(f)
                size = f.tell()
                os.fsync(f.fileno())
            now = self._clock()
            with self._write() as conn:
                renaming = True
                os.replace(tmp, final)
                conn.execute(
                    "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                    (key, suffix, kind, size, sha256, now, now),
                )
                if token is not None:
                    conn.execute("INSERT INTO pins VALUES (?, ?, ?)", (token, key, now + self._pin_s))
        except BaseException as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            if renaming:  # no row names it, and the key's lock is held: nobody else can use it
                with suppress(OSError):
                    final.unlink(missing_ok=True)
            problem = self._problem(exc)
            if problem is not None:
                raise self._unwritable_error(problem, exc, "store anything new") from exc
            raise
        return final

    def _drop_bad(self, key: str) -> None:
        """Remove the entry if, checked again under the index lock, its file is missing or of the
        wrong size, or it expired and nobody pins it."""
        if self.read_only:
            return
        now = self._clock()
        with self._bookkeeping("a bad entry stays indexed (it is never served)"), self._write() as conn:
            row = conn.execute("SELECT suffix, size, created FROM entries WHERE key = ?", (key,)).fetchone()
            if row is None:
                return
            if _intact(self._path(key, row[0]), row[1]):
                pinned = conn.execute("SELECT 1 FROM pins WHERE key = ? AND expires > ?", (key, now))
                if not self._expired(row[2], now) or pinned.fetchone():
                    return
            self._remove(conn, key, row[0])

    def _evict(self, keep: str) -> None:
        """Drop expired entries, then least recently used ones until the total fits `max_bytes`.
        Pinned entries and `keep` (the entry just made) are spared."""
        now = self._clock()
        with self._bookkeeping("nothing is evicted"), self._write() as conn:
            conn.execute("DELETE FROM pins WHERE expires <= ?", (now,))
            total = conn.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
            victims = []
            if self.ttl_s is not None:
                victims = conn.execute(
                    f"SELECT key, suffix, size FROM entries WHERE created < ? AND key != ? AND {_UNPINNED}",
                    (now - self.ttl_s, keep),
                ).fetchall()
            excess = total - self.max_bytes - sum(size for _, _, size in victims)
            if excess > 0:
                expired = {key for key, _, _ in victims}
                for key, suffix, size in conn.execute(_LRU, (keep,)):
                    if excess <= 0:
                        break
                    if key not in expired:
                        victims.append((key, suffix, size))
                        excess -= size
            for key, suffix, _ in victims:
                self._remove(conn, key, suffix)

    def _remove(self, conn: sqlite3.Connection, key: str, suffix: str) -> bool:
        """Delete an entry's file and row, inside an index transaction. False (entry kept) where
        the file cannot be deleted, as on Windows while another process has it open."""
        try:
            self._path(key, suffix).unlink(missing_ok=True)
        except PermissionError:
            return False
        conn.execute("DELETE FROM entries WHERE key = ?", (key,))
        return True

    def _remove_stale(self, path: Path | None, key: str) -> int:
        """Delete `path` (a temporary file) unless a render of `key` holds its lock; the lock file
        goes too. Returns 1 if the lock was free."""
        if not is_key(key):
            return 0
        try:
            with self._lock(key, timeout=0):
                if path is not None:
                    path.unlink(missing_ok=True)
        except Timeout:
            return 0
        return 1

    def _expired(self, created: float, now: float) -> bool:
        return self.ttl_s is not None and now - created > self.ttl_s

    def _path(self, key: str, suffix: str) -> Path:
        return Path(os.path.join(self._objects, key[:2], key + suffix))  # faster than Path's "/"

    def _read_intact(self, key: str, path: Path) -> bytes | None:
        """`path`'s content if it matches the indexed checksum; else the entry is dropped."""
        data = path.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        conn = self._conn()
        if conn.execute("SELECT 1 FROM entries WHERE key = ? AND sha256 = ?", (key, sha256)).fetchone():
            return data
        if self.read_only:
            return None
        # check again: the entry may have been replaced meanwhile
        with self._bookkeeping("a corrupt entry stays indexed"), self._write() as conn:
            row = conn.execute("SELECT suffix, sha256 FROM entries WHERE key = ?", (key,)).fetchone()
            if row is not None and _file_sha256(self._path(key, row[0])) != row[1]:
                self._remove(conn, key, row[0])
        return None

    @contextmanager
    def _lock(self, name: str, timeout: float = -1) -> Iterator[None]:
        """Hold `locks/<name>.lock`. Its file is deleted before release, so only held locks leave
        files; a waiter that locked the deleted file notices and locks the new one."""
        lock = FileLock(self._locks / f"{name}.lock", timeout=timeout)
        with lock:
            try:
                yield
            finally:
                with suppress(OSError):
                    os.unlink(lock.lock_file)

    def _unpin(self, token: str) -> None:
        """Release a `reading` pin. Where that cannot be written (disk full), it is retried by the
        next index write of this store, and expires anyway: it never masks the reader's own error."""
        try:
            self._conn().execute("DELETE FROM pins WHERE token = ?", (token,))
        except sqlite3.Error as exc:
            with self._unreleased_lock:
                self._unreleased.add(token)
            self._warn_once(exc, "pins are released later")

    def _release_unreleased(self, conn: sqlite3.Connection) -> None:
        with self._unreleased_lock:
            tokens = [*self._unreleased]
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("DELETE FROM pins WHERE token = ?", [(token,) for token in tokens])
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return
        with self._unreleased_lock:
            self._unreleased.difference_update(tokens)

    @contextmanager
    def _storing(self, action: str) -> Iterator[None]:
        """Raise CacheUnwritable, naming the folder and what failed (`action`), where the block
        cannot write because the disk is full or the folder read-only."""
        if self.read_only:
            raise self._unwritable_error("read-only", None, action)
        try:
            yield
        except CacheUnwritable:
            raise
        except (OSError, sqlite3.Error) as exc:
            problem = self._problem(exc)
            if problem is None:
                raise
            raise self._unwritable_error(problem, exc, action) from exc

    @contextmanager
    def _bookkeeping(self, consequence: str) -> Iterator[None]:
        """Skip the block's index write where the disk is full or the folder read-only (logged once)."""
        try:
            yield
        except (OSError, sqlite3.Error) as exc:
            if self._problem(exc) is None:
                raise
            self._warn_once(exc, consequence)

    def _problem(self, exc: BaseException) -> str | None:
        """ "full" or "read-only" where `exc` says the cache cannot be written, else None. No
        permission counts only for a path in the cache (a producer may fail to read its input)."""
        if isinstance(exc, sqlite3.Error):
            code, text = _sqlite_code(exc), str(exc)
            if code == sqlite3.SQLITE_FULL or "disk is full" in text:
                return "full"
            if code == sqlite3.SQLITE_READONLY or "readonly database" in text:
                return "read-only"
            return None
        if not isinstance(exc, OSError):
            return None
        if exc.errno in _DISK_FULL:
            return "full"
        if exc.errno == errno.EROFS:
            return "read-only"
        if exc.errno in _READ_ONLY:
            root = os.path.abspath(self.root)
            for name in (exc.filename, exc.filename2):
                if name is not None and _within(os.path.abspath(os.fsdecode(name)), root):
                    return "read-only"
        return None

    def _unwritable_error(self, problem: str, exc: BaseException | None, action: str) -> CacheUnwritable:
        reason = "opened read-only" if exc is None else str(exc)
        if isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        if problem == "full":
            return CacheUnwritable(
                f"cache disk full at {self.root}: {reason}; free some space or lower the cache size limit"
            )
        return CacheUnwritable(
            f"the cache folder {self.root} is read-only ({reason}): cannot {action} (what it holds is "
            "still served); make it writable, or set cache.dir to another folder"
        )

    def _warn_once(self, exc: BaseException, consequence: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("the cache at %s cannot be written (%s): %s", self.root, exc, consequence)

    def _open_read_only(self, exc: BaseException) -> None:
        """Serve a read-only cache (a read-only mount, no write permission): lookups only."""
        self.read_only = True
        self._local = threading.local()
        try:
            self._conn().execute("SELECT 1 FROM entries LIMIT 1").fetchall()
        except sqlite3.Error as error:
            raise UserError(f"cannot open the cache at {self.root}: {exc}; read-only: {error}") from exc
        log.warning(
            "the cache at %s is read-only (%s): serving what it holds, storing nothing", self.root, exc
        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """An index write transaction: it waits for, then excludes, every other writer."""
        conn = self._conn()
        if self._unreleased:
            self._release_unreleased(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _conn(self) -> sqlite3.Connection:
        """This thread's index connection (a new one after a fork)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            if self.read_only:
                conn = self._connect_read_only()
            else:
                conn = sqlite3.connect(self._index, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
                conn.execute("PRAGMA synchronous=NORMAL")
            local.conn, local.pid = conn, os.getpid()
        return local.conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """A read-only index connection: one that sees other writers (mode=ro) where SQLite can
        share the index's WAL, else the file as it stands (immutable: nobody can write it either)."""
        uri = f"file:{quote(os.path.abspath(self._index))}"
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute("SELECT 1 FROM entries LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError as exc:
            if _sqlite_code(exc) != sqlite3.SQLITE_CANTOPEN:
                raise
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)


def _check_key(key: str) -> None:
    if not is_key(key):
        raise ValueError(f"not a cache key: {key!r}")


def _intact(path: Path, size: int) -> bool:
    """The cheap check of the hot path: the file exists with its recorded size."""
    try:
        return os.stat(path).st_size == size
    except FileNotFoundError:
        return False


def _sha256(f: BinaryIO) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def _file_sha256(path: Path) -> str | None:
    """SHA-256 of a file's content, None if it is missing. Not memoized (unlike `digest.file_digest`,
    which is for weight files): cache files are hashed to catch changes that keep size and mtime."""
    try:
        with open(path, "rb") as f:
            return _sha256(f)
    except FileNotFoundError:
        return None


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _sqlite_code(exc: sqlite3.Error) -> int | None:
    """The primary result code of an SQLite error (SQLITE_BUSY for SQLITE_BUSY_SNAPSHOT, …)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF
