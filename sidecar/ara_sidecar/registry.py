"""A tiny lazy registry: each stage maps backend names to `module:Class` strings, so a
heavy backend (torch, onnxruntime, …) is imported only when it is selected."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Generic, TypeVar

from ara_sidecar.errors import BackendUnavailable, UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Readiness:
    """Whether a backend can run now, and why not (or what it will use)."""

    ready: bool
    detail: str


@dataclass(frozen=True)
class _Entry:
    target: str  # "package.module:ClassName"
    packages: tuple[str, ...]  # pip names needed, for the error message
    summary: str


class Registry(Generic[T]):
    def __init__(self, stage: str):
        self.stage = stage
        self._entries: dict[str, _Entry] = {}

    def add(self, name: str, target: str, *, packages: tuple[str, ...] = (), summary: str = "") -> None:
        self._entries[name] = _Entry(target, packages, summary)

    def names(self) -> list[str]:
        return list(self._entries)

    def summary(self, name: str) -> str:
        return self._entries[name].summary

    def load(self, name: str) -> type[T]:
        """Import and return the backend class registered as `name`."""
        entry = self._entries.get(name)
        if entry is None:
            raise UserError(f"unknown {self.stage} backend {name!r}; available: {', '.join(self._entries)}")
        module_name, _, attr = entry.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            hint = f" (pip install {' '.join(entry.packages)})" if entry.packages else ""
            raise BackendUnavailable(
                f"{self.stage} backend {name!r} needs the Python package {exc.name!r}, "
                f"which is not installed{hint}"
            ) from None
        return getattr(module, attr)
