"""Benchmark: a cache hit against the cold render it replaces, in one process.

    .venv/bin/python bench/cache.py [--hits 2000]

Renders a fixed ~10 s reply into an empty temporary cache (cold: the full pipeline, models
already loaded), then asks for the same reply again and again through the Python API
(`Pipeline.render` without an output path: text check, persona, key over every input with
memoized model digests, index lookup, file check). Target (issue 4): a hit ≤ 1 ms and
≥ 1000× faster than the cold render.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from render import REPLY, machine_line

from ara_sidecar.config import load_settings
from ara_sidecar.pipeline import Pipeline, RenderRequest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=2000, help="cache hits to time")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = Pipeline(load_settings({**os.environ, "ARA_CACHE_DIR": tmp}))
        pipeline.load()
        request = RenderRequest(text=REPLY)
        start = time.perf_counter()
        cold = pipeline.render(request)
        cold_s = time.perf_counter() - start
        assert not cold.cached
        size_kb = cold.path.stat().st_size // 1024
        print(f"cold render: {cold_s:.3f} s for {cold.speech_s:.2f} s of speech ({size_kb} KB)")

        hits = []
        for _ in range(args.hits):
            start = time.perf_counter()
            result = pipeline.render(request)
            hits.append(time.perf_counter() - start)
            assert result.cached
        hits.sort()
        p50, p99 = statistics.median(hits), hits[int(len(hits) * 0.99)]
        print(f"cache hit ({args.hits}×): p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms (target ≤ 1 ms)")
        print(f"speed-up: {cold_s / p50:,.0f}× (target ≥ 1000×)")


if __name__ == "__main__":
    from record import recorded

    with recorded("cache"):
        main()
