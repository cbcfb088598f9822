"""Per-stage wall-clock accounting that stages running in different threads can share."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Timings:
    """Seconds spent per stage. Each stage is timed by one thread at a time."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def start(self, stage: str) -> None:
        self._started[stage] = time.perf_counter()

    def stop(self, stage: str) -> None:
        elapsed = time.perf_counter() - self._started.pop(stage)
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        self.start(stage)
        try:
            yield
        finally:
            self.stop(stage)

    def timed_iter(self, stage: str, items: Iterator) -> Iterator:
        """Pass `items` through, counting the time spent producing each one."""
        while True:
            with self.measure(stage):
                try:
                    item = next(items)
                except StopIteration:
                    return
            yield item
