"""Content digests, memoized for weight files (hashed once per path, size and mtime)."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path


def file_digest(path: Path) -> str:
    """SHA-256 of a file, recomputed only when its size or mtime changes."""
    path = os.path.abspath(path)
    stat = os.stat(path)
    return _digest(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
