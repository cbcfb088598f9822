"""The HTTP API of `ara-sidecar serve` (FastAPI; interactive documentation at /docs).

Rendering runs in a separate worker process that keeps the models loaded (in a cluster, in
`ara-sidecar worker` processes on any machine: see ara_sidecar.cluster); the server itself
only validates, queues and serves files, so it answers (e.g. `GET /health`) while a render runs.
Bodies are JSON. Errors are `{"error": "message"}` with a 4xx or 5xx status, whoever answers
(a route, the router's 404 and 405, a Range check, CORS: see public.py; schema errors add
`detail`); a request that is well-formed but cannot be rendered (unknown persona, mode or
avatar, empty or too long text, an image without a face…) is a 422. Nothing sent over HTTP
names a path on the server (a file is named `…/name`; the CLI shows paths).
With a token (`--token`, `server.token`, `ARA_SERVER_TOKEN`) every endpoint but `GET /health`
and the static pages (`/`, `/docs`, `/openapi.json`) needs `Authorization: Bearer TOKEN`.

    GET    /health                 {"status": "ok"}, at once
    GET    /health/detailed        device; each backend, installed and loaded; queue length;
                                   worker pid, uptime and restarts; cache stats. In a cluster
                                   (cluster.url) also `workers`: each live worker's id, host, device,
                                   models, queue_depth, renders and last_seen_s
    POST   /v1/render              {text | audio_id, persona?, mode?, avatar_id?, user_message?,
                                    previous_mode?, voice?}
                                   waits, then {key, video_url, duration_s, mode, mode_reason, cached,
                                   timings, persona, chunks}. mode "auto": the persona's selector picks it
                                   from user_message and text. audio_id: lip-sync uploaded speech
                                   (no TTS; voice: false skips the voice stage too).
                                   429 with Retry-After when the queue is full; a render that fails
                                   for the input 422, times out 504, loses its worker 503,
                                   cannot be stored (the cache's disk full or folder read-only) 507.
    POST   /v1/jobs                the same body, 202 {job_id}; identical requests share one render
    GET    /v1/jobs/{id}           {job_id, status: queued|running|done|failed|cancelled, stage,
                                   progress 0–1, chunk_count, chunks (each ready chunk video: index,
                                   url, start_s, duration_s, mime), result (as /v1/render) or error}
    GET    /v1/jobs/{id}/events    Server-Sent Events: `event: chunk_ready` with the chunk (as in
                                   `chunks`) as soon as each chunk's video exists, and `data:` the
                                   job as above at every change, until it ends (comment lines
                                   keep an idle connection open)
    DELETE /v1/jobs/{id}           cancel; the render stops at the next frame or sentence (unless
                                   an identical job still waits for it). Unknown job ids are 404s.
    GET    /v1/videos/{key}.mp4    the video: Range requests (206; 416 with Content-Range: bytes */SIZE;
                                   a malformed Range 400), ETag = key, cached for a year
                                   (the key is the content hash); an unknown key is a 404
    POST   /v1/avatars             multipart `file`, an image; checked (format, pixel limit, a face)
                                   and stored, 201 {avatar_id} (its SHA-256)
    GET    /v1/avatars             the personas' avatars and the stored uploads
    POST   /v1/audio               multipart `file`, WAV/FLAC/OGG/MP3 speech, 201 {audio_id}
    GET    /v1/personas            each persona: name, display name, default mode, modes, avatar_id
    GET    /v1/personas/{name}     one persona, with each mode's voice parameters
    GET    /v1/cache/stats         entries, bytes and hits, by kind
    DELETE /v1/cache               remove every entry not being read; uploads too with ?uploads=true
    POST   /v1/audio/speech        OpenAI's speech body {model, input, voice, response_format?, speed?,
                                   instructions?}: the audio (mp3, opus, aac, flac, wav, pcm; 24 kHz
                                   mono), streamed as each chunk is spoken; errors in OpenAI's shape
    GET    /v1/models              OpenAI's model list; GET /v1/audio/models and /v1/audio/voices
                                   list models and voices as Open WebUI asks (see routes/speech.py)
    GET    /embed.js               the <ara-avatar> custom element for other sites' pages

Request bodies are capped (413): uploads at `server.max_upload_mb`, JSON at 1 MiB. CORS origins
come from `server.cors_origins`.

This module only builds the app (middleware, error handlers, routers). The routes are in
routes/ (one module per tag: health, render (render and jobs), videos, uploads (avatars and
audio), personas, cache, speech (the OpenAI-compatible routes); web: the page at `/` and
embed.js), the bodies in schemas.py, the service they use in dependencies.py, and the planning
of a render request in planning.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPBearer

from ara_sidecar import __version__
from ara_sidecar.config import Settings
from ara_sidecar.errors import UserError
from ara_sidecar.pipeline import Pipeline
from ara_sidecar.server.dependencies import Service
from ara_sidecar.server.guards import BearerAuth, BodyLimit, add_error_handlers
from ara_sidecar.server.jobs import open_jobs
from ara_sidecar.server.origin import HostOriginGuard
from ara_sidecar.server.public import JSONErrors, PathRedactor, server_roots
from ara_sidecar.server.routes import cache, health, personas, render, speech, uploads, videos, web
from ara_sidecar.server.serve import is_loopback
from ara_sidecar.server.uploads import Uploads

# the routes behind the token (if any), in the order of the endpoints above (and of /docs)
ROUTES = (web, health, render, videos, uploads, personas, cache, speech)


def create_app(settings: Settings, token: str | None = None, host: str | None = None) -> FastAPI:
    """The service for `settings`; with `token`, requests need it as a bearer token. `host` is the
    address it listens on (default `server.host`): on a loopback one it answers only loopback host
    names and `server.allowed_hosts` (see `origin`)."""
    # The server process validates requests and checks uploads but never runs a model: it stays
    # off the GPU. (Its plan keys only group identical requests; results carry the worker's keys.)
    pipeline = Pipeline(settings.with_overrides(device="cpu"))
    if pipeline.cache is None:
        raise UserError("the HTTP service keeps videos in the cache: set cache.enabled: true")
    # AllTalk's facts, part of each plan, come from its server (every 30 s), and a cluster's cache
    # index from Redis: not on the event loop
    plan_inline = pipeline.tts.name != "alltalk" and not settings.cluster.url
    redact = PathRedactor(server_roots(settings))
    service = Service(settings, pipeline, open_jobs(settings), Uploads(pipeline), plan_inline, redact)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.jobs.start()
        yield
        await service.jobs.stop()

    app = FastAPI(
        title="Ara sidecar",
        version=__version__,
        summary="Text (or speech) in, a lip-synced talking-avatar MP4 out.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.redact = redact  # for the error handlers (guards.py)
    app.include_router(health.open_router)  # no token needed
    app.include_router(speech.open_router)
    # the token's security scheme, documented on the routes that need it (and /docs "Authorize")
    bearer = [Depends(HTTPBearer(auto_error=False))] if token else []
    for routes in ROUTES:
        app.include_router(routes.router, dependencies=bearer)
    add_error_handlers(app)
    # The last added runs first: CORS (answers preflights), then the token, then the body limit.
    app.add_middleware(BodyLimit, upload_bytes=int(settings.server.max_upload_mb * 2**20))
    if token:
        app.add_middleware(BearerAuth, token=token)
    if settings.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.server.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Range"],
            expose_headers=["Content-Range", "Content-Length", "Accept-Ranges", "ETag", "Retry-After"],
        )
    if not token:  # (a token keeps other sites' pages out: a browser never sends it by itself)
        # Before all of them: the Host (DNS rebinding) and, for writes, the web page's origin.
        host = host or settings.server.host
        allowed = settings.server.allowed_hosts
        local = is_loopback(host)
        hosts = None if not local and not allowed else [*allowed, *([] if local else [host])]
        app.add_middleware(HostOriginGuard, hosts=hosts, cors_origins=settings.server.cors_origins)
    # Outermost of these: every error response, whoever made it, becomes {"error": …} without paths.
    app.add_middleware(JSONErrors, redact=redact)
    return app
