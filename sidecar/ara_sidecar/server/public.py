"""What the server shows over HTTP: every error response is the documented `{"error": "…"}` JSON,
whoever made it (a route, Starlette's router, a file response's Range check, CORS), and no
message names a path on the server's disk. Paths are for the local CLI; over HTTP a file is named
by its last component (`…/name`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ara_sidecar.config import Settings, project_root

# URL paths of this API: shown as they are (they are the client's, not the disk's)
API_PREFIXES = ("/v1/", "/health", "/docs", "/openapi.json", "/redoc")
# OpenAI-compatible routes: their errors take OpenAI's shape, and its 400 for invalid requests
OPENAI_PATHS = ("/v1/audio/", "/v1/models")
OPENAI_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "rate_limit_error"}
_PATH_CHARS = r"""[^\s'"`<>|]*"""
# An absolute path: /a/b (two segments at least, so "a / b" and "/2" stay), C:\… or \\server\…;
# not inside a word or a URL ("and/or", "text/plain", "http://host/x").
_ABSOLUTE = r"""(?<![\w.~/\\:-])(?:/(?=[^\s/'"`<>|]+/)|[A-Za-z]:[\\/]|\\\\)""" + _PATH_CHARS
_TRAILING = ".,:;!?)]}"


class PathRedactor:
    """Replaces each file system path in a message by `…/` and its last component. Paths under
    `roots` (which may hold spaces, like "C:\\Users\\Jane Doe") are found by their root, others
    by their shape."""

    def __init__(self, roots: Iterable[str | os.PathLike] = ()):
        known = sorted({str(r) for r in roots if len(str(r)) > 1}, key=len, reverse=True)
        alternatives = [re.escape(root) + r"(?:[\\/]" + _PATH_CHARS + ")?" for root in known]
        self._pattern = re.compile("|".join([*alternatives, _ABSOLUTE]))

    def __call__(self, message: str) -> str:
        return self._pattern.sub(self._replace, message)

    @staticmethod
    def _replace(match: re.Match) -> str:
        path = match.group()
        if path.startswith(API_PREFIXES):
            return path
        stripped = path.rstrip(_TRAILING)
        name = re.split(r"[\\/]", stripped.rstrip("\\/"))[-1]
        return f"…/{name}{path[len(stripped) :]}"


def server_roots(settings: Settings) -> list[Path]:
    """The folders whose paths the server must not show: its cache, project, models, personas and
    output folders, the user's home, the temporary folder, the Python installation, the cwd."""
    folders = [settings.cache.dir, settings.models_dir, settings.personas_dir, settings.output_dir]
    if settings.user_personas_dir is not None:
        folders.append(settings.user_personas_dir)
    roots = [settings.path(Path(folder)) for folder in folders]
    roots += [project_root(), Path.home(), Path(tempfile.gettempdir()), Path.cwd()]
    roots += [Path(sys.prefix), Path(sys.base_prefix)]
    resolved = []
    for root in roots:
        resolved.append(root)
        with contextlib.suppress(OSError):
            resolved.append(root.resolve())
    return resolved


def public_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """Cache statistics without the cache's folder."""
    return {k: v for k, v in stats.items() if k != "root"}


class JSONErrors:
    """ASGI middleware: an error response (status ≥ 400) whose body is not `{"error": …}` JSON
    becomes that (its text, else the status phrase, as the message), and the message loses any
    server path. Other headers (Content-Range, Retry-After, Allow, CORS…) are kept."""

    def __init__(self, app: ASGIApp, redact: PathRedactor):
        self.app = app
        self.redact = redact

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body: list[bytes] = []
        openai = scope["path"].startswith(OPENAI_PATHS)

        async def send_json_errors(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held until the whole body is known
            elif start is not None and message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._send_error(start, b"".join(body), send, openai)
            else:
                await send(message)

        await self.app(scope, receive, send_json_errors)

    async def _send_error(self, start: Message, body: bytes, send: Send, openai: bool = False) -> None:
        status, raw = start["status"], start.get("headers", [])
        headers = [(k, v) for k, v in raw if k.lower() not in (b"content-type", b"content-length")]
        payload = self._payload(status, body, {k.lower(): v for k, v in raw})
        if openai:
            status, payload = openai_error(status, payload)
            start = {**start, "status": status}
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": data, "more_body": False})

    def _payload(self, status: int, body: bytes, headers: dict[bytes, bytes]) -> dict[str, Any]:
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("error"), str) and payload["error"]:
            return {**payload, "error": self.redact(payload["error"])}
        if isinstance(payload, dict) and "detail" in payload:
            detail = payload["detail"]
            message = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
        else:
            message = body.decode("utf-8", "replace").strip()
        if not message:
            message = _default_message(status, headers)
        return {"error": self.redact(message)}


def _default_message(status: int, headers: dict[bytes, bytes]) -> str:
    content_range = headers.get(b"content-range", b"").decode("latin-1")
    if status == 416 and content_range.startswith("bytes */"):
        size = content_range.removeprefix("bytes */")
        return f"range not satisfiable: the file has {size} bytes (Content-Range: {content_range})"
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return f"error {status}"


def openai_error(status: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """An `{"error": message, param?, code?, detail?}` body in OpenAI's shape, with OpenAI's status
    (400 for a request that is invalid, where the rest of this API answers 422)."""
    status = 400 if status == 422 else status
    param = payload.get("param")
    detail = payload.get("detail")
    if param is None and isinstance(detail, list) and detail and isinstance(detail[0], dict):
        param = ".".join(str(part) for part in detail[0].get("loc", ())[1:]) or None
    code = payload.get("code")
    if code is None and status == 401:
        code = "invalid_api_key"
    kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return status, {"error": {"message": payload["error"], "type": kind, "param": param, "code": code}}
