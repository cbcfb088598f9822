"""`GET /v1/cache/stats` and `DELETE /v1/cache`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ara_sidecar.server.dependencies import Svc
from ara_sidecar.server.public import public_stats
from ara_sidecar.server.schemas import ClearQuery, error_responses
from ara_sidecar.server.uploads import UPLOAD_KINDS

router = APIRouter()


@router.get("/v1/cache/stats", tags=["cache"], responses=error_responses())
def cache_stats(svc: Svc) -> dict:
    return public_stats(svc.pipeline.cache.stats())


@router.delete("/v1/cache", tags=["cache"], responses=error_responses(507))
def cache_clear(svc: Svc, query: Annotated[ClearQuery, Query()]) -> dict[str, int]:
    """Remove every cache entry that is not being read (renders; uploads only when asked)."""
    return {"removed": svc.pipeline.cache.clear(keep_kinds=() if query.uploads else UPLOAD_KINDS)}
