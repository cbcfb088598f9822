"""The web UI at `/`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

INDEX_PAGE = Path(__file__).parent.with_name("static") / "index.html"  # the web UI, one self-contained file
router = APIRouter()


@router.get("/", include_in_schema=False)
async def index() -> HTMLResponse:
    """The web UI: text, persona, mode and avatar in; progress and the video out."""
    return HTMLResponse(INDEX_PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-cache"})
