"""Keep a benchmark's raw output: `with recorded("cache"): main()` writes what the run printed,
with the machine, the command line and the date, to bench/results/NAME-YYYY-MM-DD.json (a
second run the same day replaces it), so that the README's figures can be checked."""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


class _Tee(io.TextIOBase):
    def __init__(self, stream):
        self.stream, self.lines, self._part = stream, [], ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        self._part += text
        *done, self._part = self._part.split("\n")
        self.lines.extend(done)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def recorded(name: str) -> Iterator[None]:
    """Print as usual and keep the output (also when the run fails, marked so; not for --help
    or a usage error, which end with SystemExit)."""
    tee, started = _Tee(sys.stdout), time.time()
    try:
        with contextlib.redirect_stdout(tee):
            yield
    except SystemExit:
        raise
    except BaseException:
        _write(name, tee, started, completed=False)
        raise
    _write(name, tee, started, completed=True)


def _write(name: str, tee: _Tee, started: float, *, completed: bool) -> None:
    RESULTS.mkdir(exist_ok=True)
    record = {
        "bench": name,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "argv": sys.argv[1:],
        "machine": machine(),
        "wall_s": round(time.time() - started, 1),
        "completed": completed,
        "output": tee.lines + ([tee._part] if tee._part else []),
    }
    path = RESULTS / f"{name}-{time.strftime('%Y-%m-%d', time.localtime(started))}.json"
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
