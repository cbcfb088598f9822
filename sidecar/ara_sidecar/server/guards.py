"""What stands between a request and the routes: the bearer token, request body limits, and
error responses as `{"error": "message"}` (no request a client makes yields a bare 500)."""

from __future__ import annotations

import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from ara_sidecar.cache import CacheUnwritable
from ara_sidecar.errors import UserError
from ara_sidecar.server.jobs import QueueFull

log = logging.getLogger(__name__)

JSON_BODY_LIMIT = 2**20  # bytes of a JSON request body
UPLOAD_PATHS = ("/v1/avatars", "/v1/audio")  # bodies up to server.max_upload_mb
# GET without a token: nothing secret (Open WebUI asks for the voices and models without its key)
OPEN_PATHS = (
    "/health",
    "/",
    "/embed.js",
    "/docs",
    "/docs/oauth2-redirect",
    "/openapi.json",
    "/v1/audio/voices",
    "/v1/audio/models",
)


class BearerAuth:
    """Every request but GETs of `OPEN_PATHS` needs `Authorization: Bearer TOKEN`."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            response = JSONResponse(
                {"error": "missing or wrong token: send the header Authorization: Bearer TOKEN"},
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        if scope["method"] in ("GET", "HEAD") and scope["path"] in OPEN_PATHS:
            return True
        scheme, _, credentials = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and secrets.compare_digest(credentials.strip(), self.token)


class _TooLarge(HTTPException):
    def __init__(self, limit: int, setting: str):
        super().__init__(413, f"request body is over the limit of {limit / 2**20:g} MiB{setting}")


class BodyLimit:
    """Rejects a request body over its limit: at once by its Content-Length, else while it is read."""

    def __init__(self, app: ASGIApp, upload_bytes: int):
        self.app = app
        self.upload_bytes = upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["path"] in UPLOAD_PATHS
        limit = self.upload_bytes if upload else JSON_BODY_LIMIT
        too_large = _TooLarge(limit, " (server.max_upload_mb)" if upload else "")
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > limit:
            await JSONResponse({"error": too_large.detail}, 413)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large
            return message

        await self.app(scope, limited_receive, send)


def _validation_message(errors: list[dict]) -> str:
    problems = []
    for error in errors:
        where = ".".join(str(part) for part in error["loc"][1:]) or "body"
        if error["type"] == "json_invalid":
            problems.append(f"invalid JSON: {error.get('ctx', {}).get('error', error['msg'])}")
        else:
            problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def add_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI or Starlette could not parse the body: a 422 like bad JSON
            why = exc.__cause__ or exc.detail
            return JSONResponse({"error": f"unreadable request body (UTF-8 JSON, or multipart): {why}"}, 422)
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [{k: v for k, v in e.items() if k not in ("input", "ctx", "url")} for e in exc.errors()]
        body = {"error": _validation_message(exc.errors()), "detail": jsonable_encoder(errors)}
        return JSONResponse(body, 422)

    async def user_error(request: Request, exc: UserError) -> Response:
        return JSONResponse({"error": str(exc)}, 422)

    async def cache_unwritable(request: Request, exc: CacheUnwritable) -> Response:
        return JSONResponse({"error": str(exc)}, 507)  # Insufficient Storage: full, or read-only

    async def queue_full(request: Request, exc: QueueFull) -> Response:
        return JSONResponse({"error": str(exc)}, 429, headers={"Retry-After": str(exc.retry_after)})

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        redact = getattr(request.app.state, "redact", str)  # no server paths (outside JSONErrors)
        return JSONResponse({"error": redact(f"internal error: {type(exc).__name__}: {exc}")}, 500)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(UserError, user_error)
    app.add_exception_handler(CacheUnwritable, cache_unwritable)
    app.add_exception_handler(QueueFull, queue_full)
    app.add_exception_handler(Exception, unexpected)
