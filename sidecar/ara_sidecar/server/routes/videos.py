"""`GET` and `HEAD /v1/videos/{key}.mp4`: the videos, from the cache."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from ara_sidecar.cache import is_key
from ara_sidecar.server.dependencies import Svc
from ara_sidecar.server.schemas import error_responses

router = APIRouter()


VIDEO_ROUTE: dict[str, Any] = {
    "tags": ["videos"],
    "response_class": FileResponse,
    "responses": {206: {"description": "a Range"}, 304: {"description": "unchanged (If-None-Match)"}}
    | error_responses(400, 404, 416),
}


@router.get("/v1/videos/{name}", **VIDEO_ROUTE)
@router.head("/v1/videos/{name}", **VIDEO_ROUTE)  # its own route: an operation id of its own
async def video(name: str, request: Request, svc: Svc) -> Response:
    """A rendered video by its key, with Range support; pinned in the cache while it is sent."""
    key = name.removesuffix(".mp4")
    if not name.endswith(".mp4") or not is_key(key):
        raise HTTPException(404, "no such video: expected /v1/videos/KEY.mp4 with a 64-digit hex key")
    headers = {"ETag": f'"{key}"', "Cache-Control": "public, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    pin = ExitStack()
    entry = await run_in_threadpool(pin.enter_context, svc.pipeline.cache.reading(key))
    if entry is None or entry.path.suffix != ".mp4":
        await run_in_threadpool(pin.close)
        raise HTTPException(404, f"no such video: {key} (not rendered, or evicted from the cache)")
    return _PinnedFile(entry.path, pin.close, media_type="video/mp4", headers=headers)


class _PinnedFile(FileResponse):
    """A file response that releases its cache pin once sent (or the client went away)."""

    def __init__(self, path: Path, release: Callable[[], None], **kwargs: Any):
        super().__init__(path, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await run_in_threadpool(self._release)
