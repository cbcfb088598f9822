"""Cache keys: SHA-256 over a canonical encoding of everything that changes a render's output."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

# Bump whenever a change to the code (not to its inputs) changes what is rendered or stored:
# every existing entry then misses.
PIPELINE_VERSION = 1

_KEY = re.compile(r"[0-9a-f]{64}")


def cache_key(parts: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of `parts` plus `PIPELINE_VERSION`, independent of dict order.

    Values may be None, bool, str, numbers (1 and 1.0 encode alike; NaN and infinities are
    rejected), paths (by their text: hash file contents with `digest.file_digest`), lists and
    tuples (alike), mappings with str keys, dataclass instances and pydantic models (as their
    fields). Anything else raises TypeError, naming where in `parts` it sits.
    """
    try:
        payload = {"pipeline_version": PIPELINE_VERSION, "parts": _canonical(parts)}
    except _Unencodable as exc:
        raise exc.kind(f"parts{''.join(reversed(exc.path))}: {exc.problem}") from None
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def derived_key(kind: str, *parts: str | float | None) -> str:
    """A key of `kind` made of other keys and plain values (texts, pauses) in order, as their
    `repr`s: cheaper than `cache_key`, of which planning a request would need a dozen."""
    text = "\x1f".join([f"v{PIPELINE_VERSION}", kind, *map(repr, parts)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_key(value: object) -> bool:
    """Whether `value` is a cache key (64 lower-case hex digits), and so safe in a file name."""
    return isinstance(value, str) and _KEY.fullmatch(value) is not None


class _Unencodable(Exception):
    """A value that cannot be part of a key; `path` grows (innermost first) as it propagates,
    so the success path pays nothing for error messages."""

    def __init__(self, kind: type[Exception], problem: str):
        super().__init__(problem)
        self.kind, self.problem, self.path = kind, problem, []


def _canonical(value: Any) -> Any:
    """`value` as plain JSON types, with equal inputs mapped to equal outputs (common types first)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict):
        return _mapping(value)
    if isinstance(value, (list, tuple)):
        out = []
        for i, item in enumerate(value):
            try:
                out.append(_canonical(item))
            except _Unencodable as exc:
                exc.path.append(f"[{i}]")
                raise
        return out
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, numbers.Integral):  # numpy integers and the like
        return int(value)
    if isinstance(value, numbers.Real):
        return _number(float(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _mapping({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, BaseModel):
        return _mapping(value.model_dump())
    if isinstance(value, Mapping):
        return _mapping(value)
    raise _Unencodable(TypeError, f"a {type(value).__name__} cannot be part of a cache key")


def _number(value: float) -> int | float:
    if not math.isfinite(value):
        raise _Unencodable(ValueError, f"{value} cannot be part of a cache key")
    return int(value) if value.is_integer() else value


def _mapping(value: Mapping) -> dict:
    out = {}
    for name, item in value.items():
        if not isinstance(name, str):
            raise _Unencodable(TypeError, f"mapping key {name!r} is not a str")
        try:
            out[name] = _canonical(item)
        except _Unencodable as exc:
            exc.path.append(f"[{name!r}]")
            raise
    return out
