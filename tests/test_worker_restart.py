"""The server's worker supervision: a worker that dies while loading its models is replaced, and
the renders queued meanwhile wait for the next one (a bounded number of times, then fail clearly)."""

from __future__ import annotations

import asyncio
import multiprocessing

import worker_doubles

from ara_sidecar.pipeline import RenderRequest
from ara_sidecar.server import jobs as jobs_module
from ara_sidecar.server.jobs import START_ATTEMPTS, JobManager


def fake_workers(monkeypatch, failures: int) -> list[str]:
    """`start_worker` spawns a worker that dies while loading `failures` times, then a working one.
    Returns the names of the workers started, in order."""
    started: list[str] = []

    def start_worker(settings):
        ctx = multiprocessing.get_context("spawn")
        target = worker_doubles.dies_while_loading if len(started) < failures else worker_doubles.renders
        started.append(target.__name__)
        parent_end, child_end = ctx.Pipe(duplex=True)
        cancel = ctx.Value("q", -1, lock=False)
        process = ctx.Process(target=target, args=(None, child_end, cancel), daemon=True)
        process.start()
        child_end.close()
        return process, parent_end, cancel

    monkeypatch.setattr(jobs_module, "start_worker", start_worker)
    monkeypatch.setattr(jobs_module, "RESTART_DELAY_S", 0.05)
    return started


def run_jobs(settings, tmp_path, count: int) -> list:
    """Start a job manager, queue `count` renders before its worker is ready, wait for them."""
    cfg = settings.with_overrides(**{"cache.dir": str(tmp_path)})

    async def main() -> list:
        manager = JobManager(cfg)
        manager.start()
        try:
            jobs = [
                manager.submit(f"{i:064x}", RenderRequest(text=f"line {i}"), "requested", 1)
                for i in range(count)
            ]
            await asyncio.wait_for(asyncio.gather(*(job.wait() for job in jobs)), 60)
            return [(job.status, job.render.error, job.render.error_kind) for job in jobs]
        finally:
            await manager.stop()

    return asyncio.run(main())


def test_renders_queued_while_a_worker_dies_loading_run_on_the_next_worker(settings, tmp_path, monkeypatch):
    started = fake_workers(monkeypatch, failures=START_ATTEMPTS - 1)
    outcome = run_jobs(settings, tmp_path, 3)
    assert outcome == [("done", None, None)] * 3
    assert started == ["dies_while_loading"] * (START_ATTEMPTS - 1) + ["renders"]


def test_queued_renders_fail_clearly_after_a_bounded_number_of_failed_starts(settings, tmp_path, monkeypatch):
    started = fake_workers(monkeypatch, failures=100)
    outcome = run_jobs(settings, tmp_path, 2)
    message = f"render worker failed to start {START_ATTEMPTS} times in a row (last exit code 3)"
    for status, error, kind in outcome:
        assert status == "failed" and kind == "worker" and message in error
    assert len(started) >= START_ATTEMPTS
