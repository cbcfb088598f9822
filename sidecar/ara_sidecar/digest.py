"""Content digests, memoized for weight files (hashed once per path, size and mtime)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path

_memoized_only: ContextVar[bool] = ContextVar("memoized_only", default=False)


class NotMemoized(Exception):
    """`file_digest` would have to read a file, inside `memoized_only`."""


@contextmanager
def memoized_only() -> Iterator[None]:
    """Within the block `file_digest` only stats files; where it would read one, it raises
    NotMemoized (so an event loop can try work that is cheap once the digests are known)."""
    token = _memoized_only.set(True)
    try:
        yield
    finally:
        _memoized_only.reset(token)


def must_not_wait(what: str) -> None:
    """Raise NotMemoized inside `memoized_only`: `what` (a file read, a request to a server) would
    make the caller wait."""
    if _memoized_only.get():
        raise NotMemoized(what)


def file_digest(path: Path) -> str:
    """SHA-256 of a file, recomputed only when its size or mtime changes."""
    path = os.path.abspath(path)
    stat = os.stat(path)
    return _digest(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    must_not_wait(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
