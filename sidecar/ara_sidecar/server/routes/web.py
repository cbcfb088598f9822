"""The web UI at `/`, and `/embed.js`: the `<ara-avatar>` element for other sites' pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

STATIC = Path(__file__).parent.with_name("static")
INDEX_PAGE = STATIC / "index.html"  # the web UI, one self-contained file
EMBED_SCRIPT = STATIC / "embed.js"
router = APIRouter()


@router.get("/", include_in_schema=False)
async def index() -> HTMLResponse:
    """The web UI: text, persona, mode and avatar in; progress and the video out."""
    return HTMLResponse(INDEX_PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-cache"})


@router.get("/embed.js", include_in_schema=False)
async def embed_script() -> Response:
    """The `<ara-avatar>` custom element (see static/embed.js); any page may load it."""
    headers = {"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}
    return Response(EMBED_SCRIPT.read_bytes(), media_type="text/javascript; charset=utf-8", headers=headers)
