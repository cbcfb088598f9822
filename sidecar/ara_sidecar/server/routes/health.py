"""`GET /health` (no token needed) and `GET /health/detailed`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from ara_sidecar import encode
from ara_sidecar.pipeline import Pipeline
from ara_sidecar.server.dependencies import Svc
from ara_sidecar.server.public import public_stats
from ara_sidecar.server.schemas import error_responses

open_router = APIRouter()  # no token needed
router = APIRouter()


@open_router.get("/health", tags=["health"])
async def health() -> dict[str, str]:
    """Liveness: answers at once, whatever the worker is doing."""
    return {"status": "ok"}


@router.get("/health/detailed", tags=["health"], responses=error_responses())
async def health_detailed(svc: Svc) -> dict[str, Any]:
    """Device, backends, queue, worker, cache, and how text is cut into chunks (so that a client
    that pre-renders a streaming reply cuts it the same way)."""
    jobs = await svc.jobs.astats()
    loaded = jobs["worker"]["ready"]
    backends = await run_in_threadpool(_backends, svc.pipeline, loaded)
    for backend in backends.values():
        backend["detail"] = svc.redact(backend["detail"])
    cache = await run_in_threadpool(svc.pipeline.cache.stats)
    return {
        "status": "ok" if loaded else "starting",
        "device": jobs["worker"]["device"],  # None until the worker has loaded its models
        "backends": backends,
        **jobs,
        "cache": public_stats(cache),
        "chunking": svc.settings.chunking.model_dump(),
    }


def _backends(pipeline: Pipeline, loaded: bool) -> dict[str, dict]:
    out = {}
    for stage in ("tts", "voice", "lipsync"):
        backend = getattr(pipeline, stage)
        readiness = type(backend).readiness(pipeline.settings)
        out[stage] = {
            "name": backend.name,
            "ready": readiness.ready,
            "detail": readiness.detail,
            "loaded": loaded,  # the worker loads every stage's models before it takes jobs
        }
    name = pipeline.encoder.name
    out["encoder"] = {"name": name, "ready": True, "detail": encode.REGISTRY.summary(name), "loaded": loaded}
    return out
