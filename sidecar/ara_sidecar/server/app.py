"""The HTTP API of `ara-sidecar serve` (FastAPI; interactive documentation at /docs).

Rendering runs in a separate worker process that keeps the models loaded; the server itself
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
                                   worker pid, uptime and restarts; cache stats
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

Request bodies are capped (413): uploads at `server.max_upload_mb`, JSON at 1 MiB. CORS origins
come from `server.cors_origins`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.security import HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from ara_persona import PersonaError, discover, select_mode
from ara_sidecar import __version__, encode
from ara_sidecar.cache import is_key
from ara_sidecar.cache.store import CacheBusy, without_waiting
from ara_sidecar.config import Settings
from ara_sidecar.digest import NotMemoized, file_digest, memoized_only
from ara_sidecar.errors import UserError
from ara_sidecar.personas import get_persona, persona_roots
from ara_sidecar.pipeline import Pipeline, RenderRequest
from ara_sidecar.server.guards import BearerAuth, BodyLimit, add_error_handlers
from ara_sidecar.server.jobs import Job, JobManager
from ara_sidecar.server.origin import HostOriginGuard
from ara_sidecar.server.public import JSONErrors, PathRedactor, public_stats, server_roots
from ara_sidecar.server.serve import is_loopback
from ara_sidecar.server.uploads import UPLOAD_KINDS, Uploads

FAILURE_STATUS = {"user": 422, "storage": 507, "timeout": 504, "worker": 503, "internal": 500}
INDEX_PAGE = Path(__file__).with_name("static") / "index.html"  # the web UI, one self-contained file
INLINE_PLAN_CHARS = 1000  # longer text is planned in the thread pool (about 1 µs a character)

Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="a SHA-256 hex digest")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


# -- request and response bodies ------------------------------------------------------------


class RenderBody(BaseModel):
    """What to render: `text`, or `audio_id` of uploaded speech (exactly one)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | None = Field(None, min_length=1, max_length=100_000, description="what to say")
    audio_id: Digest | None = Field(None, description="lip-sync this upload (POST /v1/audio) instead")
    persona: Name | None = Field(None, description="persona name (default: config persona)")
    mode: Name | None = Field(None, description="a mode of the persona, or auto (default: its default)")
    avatar_id: Digest | None = Field(None, description="an avatar from GET /v1/avatars (default: persona's)")
    user_message: str | None = Field(None, max_length=100_000, description="the user's turn, for mode auto")
    previous_mode: Name | None = Field(
        None, description="the mode of the previous turn, for mode auto (the selector's hysteresis)"
    )
    voice: bool = Field(True, description="false skips the voice stage")

    @model_validator(mode="after")
    def _one_source(self) -> RenderBody:
        if (self.text is None) == (self.audio_id is None):
            raise ValueError("give either text or audio_id")
        return self


class ErrorBody(BaseModel):
    error: str = Field(description="what went wrong, in words")
    detail: list[dict[str, Any]] | None = Field(None, description="schema errors (422 only)")


ERRORS = {
    400: "a malformed Range header",
    401: "missing or wrong token (a server started with one)",
    404: "no such item",
    409: "the render was cancelled",
    413: "request body over the limit",
    416: "range not satisfiable",
    422: "invalid request (schema, persona, mode, avatar, text, upload…)",
    429: "the render queue is full: see Retry-After",
    500: "the render failed unexpectedly",
    503: "the render worker died",
    504: "the render timed out",
    507: "the cache cannot store anything: its disk is full or its folder read-only (hits are still served)",
}


def _errors(*codes: int, stream: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (the token's 401 included). `stream`: for an
    event stream's route, where a `model` would be documented as a stream of events."""
    if stream:
        json = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        return {code: {"content": json, "description": ERRORS[code]} for code in (401, *codes)}
    return {code: {"model": ErrorBody, "description": ERRORS[code]} for code in (401, *codes)}


class ChunkView(BaseModel):
    """One chunk of a reply, a streamable (fragmented) MP4 of its own. Played one after another
    (each appended to a Media Source buffer at `start_s`) they make the whole video."""

    index: int
    count: int = Field(description="chunks in the reply")
    key: str
    url: str
    start_s: float = Field(description="where the chunk starts in the whole video")
    duration_s: float
    mime: str = Field(description='MIME type with codecs, e.g. video/mp4; codecs="avc1.64001f, mp4a.40.2"')
    cached: bool


class ClearQuery(BaseModel):
    """DELETE /v1/cache's query; an unknown parameter (a typo) is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")
    uploads: bool = Field(False, description="also remove uploaded avatars and audio")


class RenderOutput(BaseModel):
    key: str
    video_url: str
    duration_s: float
    mode: str
    mode_reason: str
    cached: bool
    timings: dict[str, float]
    persona: str
    chunks: list[ChunkView] = Field(description="the chunk videos the whole video was joined from")


class JobView(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    stage: str | None
    progress: float
    chunk_count: int = Field(description="chunks the video is made of")
    chunks: list[ChunkView] = Field(description="the chunk videos ready so far, in order")
    created: float
    finished: float | None
    result: RenderOutput | None = None
    error: str | None = None


# -- the service behind the routes ----------------------------------------------------------


@dataclass
class Service:
    settings: Settings
    pipeline: Pipeline  # on the CPU, not loaded: plans requests, checks uploads, holds the cache
    jobs: JobManager
    uploads: Uploads
    plan_inline: bool  # plan on the event loop where that waits for nothing (see _plan_inline)
    redact: PathRedactor = dataclasses.field(default_factory=PathRedactor)  # no server paths over HTTP


async def _service(request: Request) -> Service:
    return request.app.state.service


Svc = Annotated[Service, Depends(_service)]
open_router = APIRouter()  # no token needed
router = APIRouter()


@open_router.get("/health", tags=["health"])
async def health() -> dict[str, str]:
    """Liveness: answers at once, whatever the worker is doing."""
    return {"status": "ok"}


@router.get("/", include_in_schema=False)
async def index() -> HTMLResponse:
    """The web UI: text, persona, mode and avatar in; progress and the video out."""
    return HTMLResponse(INDEX_PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-cache"})


@router.get("/health/detailed", tags=["health"], responses=_errors())
async def health_detailed(svc: Svc) -> dict[str, Any]:
    """Device, backends, queue, worker, cache, and how text is cut into chunks (so that a client
    that pre-renders a streaming reply cuts it the same way)."""
    jobs = svc.jobs.stats()
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


@router.post(
    "/v1/render",
    tags=["render"],
    response_model=RenderOutput,
    responses=_errors(409, 413, 422, 429, 500, 503, 504, 507),
)
async def render(body: RenderBody, svc: Svc) -> Response:
    """Render and wait for the video."""
    job = await _submit(svc, body)
    await job.wait()
    if job.status == "done":  # already a validated model: sent as is (the cache-hit path)
        return Response(_output(job).model_dump_json(), media_type="application/json")
    status = 409 if job.status == "cancelled" else FAILURE_STATUS[job.render.error_kind or "internal"]
    raise HTTPException(status, job.render.error or "the render was cancelled")


@router.post("/v1/jobs", tags=["jobs"], status_code=202, responses=_errors(413, 422, 429))
async def create_job(body: RenderBody, svc: Svc) -> dict[str, str]:
    """Queue a render; follow it with GET /v1/jobs/{id} or its events."""
    job = await _submit(svc, body)
    return {"job_id": job.id}


@router.get("/v1/jobs/{job_id}", tags=["jobs"], responses=_errors(404))
async def get_job(job_id: str, svc: Svc) -> JobView:
    return _view(_job(svc, job_id), svc)


async def _found_job(job_id: str, svc: Svc) -> Job:
    """The job as a dependency: an unknown id is a 404 before an event stream starts."""
    return _job(svc, job_id)


@router.get(
    "/v1/jobs/{job_id}/events",
    tags=["jobs"],
    response_class=EventSourceResponse,
    responses=_errors(404, stream=True),
)
async def job_events(job: Annotated[Job, Depends(_found_job)], svc: Svc) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: `chunk_ready` (a chunk as in `chunks`) as soon as each chunk's video
    exists, and the job (as GET /v1/jobs/{id}) at every change until it ends."""
    # FastAPI sends the headers, and a comment line whenever the stream has been quiet for 15 s;
    # a client that goes away cancels this generator.
    count = sent = 0
    async for changed in job.changes(keepalive_s=60):
        if not changed:  # (quiet for a minute: FastAPI's comment lines keep the connection open)
            continue
        view = _view(job, svc)
        for chunk in view.chunks[sent:]:
            count += 1
            yield ServerSentEvent(raw_data=chunk.model_dump_json(), event="chunk_ready", id=str(count))
        sent = len(view.chunks)
        count += 1
        yield ServerSentEvent(raw_data=view.model_dump_json(), id=str(count))


@router.delete("/v1/jobs/{job_id}", tags=["jobs"], responses=_errors(404))
async def cancel_job(job_id: str, svc: Svc) -> JobView:
    """Cancel a job (a finished job is left as it is)."""
    job = _job(svc, job_id)
    svc.jobs.cancel(job)
    return _view(job, svc)


VIDEO_ROUTE: dict[str, Any] = {
    "tags": ["videos"],
    "response_class": FileResponse,
    "responses": {206: {"description": "a Range"}, 304: {"description": "unchanged (If-None-Match)"}}
    | _errors(400, 404, 416),
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


@router.post("/v1/avatars", tags=["avatars"], status_code=201, responses=_errors(413, 422, 507))
async def upload_avatar(svc: Svc, file: Annotated[UploadFile, File(description="an image")]) -> dict:
    """Upload a portrait; it must decode, fit the pixel limit and show a face."""
    data = await file.read()
    return {"avatar_id": await svc.uploads.run(svc.uploads.add_avatar, data, _filename(file))}


@router.get("/v1/avatars", tags=["avatars"], responses=_errors())
def list_avatars(svc: Svc) -> list[dict]:
    return svc.uploads.avatars()


@router.post("/v1/audio", tags=["audio"], status_code=201, responses=_errors(413, 422, 507))
async def upload_audio(svc: Svc, file: Annotated[UploadFile, File(description="WAV/FLAC/OGG/MP3")]) -> dict:
    """Upload speech to lip-sync (render with audio_id instead of text)."""
    data = await file.read()
    return {"audio_id": await svc.uploads.run(svc.uploads.add_audio, data, _filename(file))}


@router.get("/v1/personas", tags=["personas"], responses=_errors())
def list_personas(svc: Svc) -> list[dict]:
    return [_persona(svc, name, detailed=False) for name in discover(*persona_roots(svc.settings))]


@router.get("/v1/personas/{name}", tags=["personas"], responses=_errors(404))
def persona_details(name: str, svc: Svc) -> dict:
    if name not in discover(*persona_roots(svc.settings)):
        raise HTTPException(404, f"unknown persona {name!r}; GET /v1/personas lists them")
    return _persona(svc, name, detailed=True)


@router.get("/v1/cache/stats", tags=["cache"], responses=_errors())
def cache_stats(svc: Svc) -> dict:
    return public_stats(svc.pipeline.cache.stats())


@router.delete("/v1/cache", tags=["cache"], responses=_errors(507))
def cache_clear(svc: Svc, query: Annotated[ClearQuery, Query()]) -> dict[str, int]:
    """Remove every cache entry that is not being read (renders; uploads only when asked)."""
    return {"removed": svc.pipeline.cache.clear(keep_kinds=() if query.uploads else UPLOAD_KINDS)}


# -- helpers --------------------------------------------------------------------------------


Planned = tuple[str, RenderRequest, str, int, dict | None]  # JobManager.submit's arguments


async def _submit(svc: Service, body: RenderBody) -> Job:
    planned = _plan_inline(svc, body) if svc.plan_inline else None
    if planned is None:
        planned = await run_in_threadpool(_plan, svc, body)
    return svc.jobs.submit(*planned)


def _plan_inline(svc: Service, body: RenderBody) -> Planned | None:
    """`_plan` on the event loop, None where it would wait: for a file digest not yet memoized or
    the cache index being written. A repeated request, such as a cache hit, so skips the thread pool.
    Only small, bounded work runs here: text over INLINE_PLAN_CHARS and mode auto (the selector
    takes milliseconds) are planned in the thread pool, whatever the cache holds."""
    if body.mode == "auto" or len(body.text or "") > INLINE_PLAN_CHARS:
        return None
    try:
        with memoized_only(), without_waiting():
            return _plan(svc, body)
    except (NotMemoized, CacheBusy):
        return None


def _plan(svc: Service, body: RenderBody) -> Planned:
    """Validate a body against the personas, uploads and limits: (cache key, request, mode reason,
    chunk count, the result if the worker rendered this before and the cache still holds it)."""
    persona = get_persona(svc.settings, body.persona)
    mode, reason = body.mode, "requested" if body.mode else "default mode"
    if mode == "auto":
        try:
            selection = select_mode(
                persona, body.user_message or "", body.text or "", previous=body.previous_mode
            )
        except PersonaError as exc:
            raise UserError(str(exc)) from None
        mode, reason = selection.mode, selection.reason
    request = RenderRequest(
        text=body.text,
        audio_path=svc.uploads.audio_path(body.audio_id) if body.audio_id else None,
        persona=persona.name,
        mode=mode,
        avatar_path=svc.uploads.avatar_path(body.avatar_id) if body.avatar_id else None,
        apply_voice=body.voice,
    )
    plan = svc.pipeline.plan(request)
    result = svc.jobs.rendered(plan.key)
    if result is None or svc.pipeline.cache.get(result["key"]) is None:
        return plan.key, request, reason, len(plan.chunks), None
    # as the worker answers a hit; the mode and persona names are this request's (a key has no names)
    cached = {**result, "cached": True, "timings": {}, "mode": plan.mode.name, "persona": plan.persona.name}
    return plan.key, request, reason, len(plan.chunks), cached


def _job(svc: Service, job_id: str) -> Job:
    job = svc.jobs.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no such job: {job_id[:64]!r} (unknown, or finished long ago)")
    return job


def _output(job: Job) -> RenderOutput:
    result = job.render.result
    assert result is not None
    return RenderOutput(
        key=result["key"],
        video_url=f"/v1/videos/{result['key']}.mp4",
        duration_s=result["duration_s"],
        mode=result["mode"],
        mode_reason=job.mode_reason,
        cached=result["cached"],
        timings=result["timings"],
        persona=result["persona"],
        chunks=[_chunk(c) for c in result.get("chunks", [])],
    )


def _chunk(chunk: dict[str, Any]) -> ChunkView:
    return ChunkView(**chunk, url=f"/v1/videos/{chunk['key']}.mp4")


def _view(job: Job, svc: Service) -> JobView:
    render = job.render
    return JobView(
        job_id=job.id,
        status=job.status,
        stage=render.stage,
        progress=render.progress,
        chunk_count=render.chunk_count,
        chunks=[_chunk(c) for c in render.chunks],
        created=job.created,
        finished=job.finished,
        result=_output(job) if job.status == "done" else None,
        error=svc.redact(render.error or "") if job.status == "failed" else None,
    )


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


def _persona(svc: Service, name: str, detailed: bool) -> dict:
    persona = get_persona(svc.settings, name)
    avatar = persona.avatar_path
    out: dict[str, Any] = {
        "name": persona.name,
        "display_name": persona.display_name,
        "default_mode": persona.default_mode,
        "avatar_id": file_digest(avatar) if avatar.is_file() else None,
    }
    if not detailed:
        return {**out, "modes": list(persona.modes)}
    modes = {
        mode.name: {
            "intensity_pct": mode.intensity_pct,
            "description": mode.description,
            "voice": dataclasses.asdict(mode.voice),
            "alltalk_voice": mode.alltalk_voice,
        }
        for mode in persona.modes.values()
    }
    return {**out, "modes": modes}


def _filename(file: UploadFile) -> str:
    return Path(file.filename or "upload").name[:128]


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


# -- the app ----------------------------------------------------------------------------------


def create_app(settings: Settings, token: str | None = None, host: str | None = None) -> FastAPI:
    """The service for `settings`; with `token`, requests need it as a bearer token. `host` is the
    address it listens on (default `server.host`): on a loopback one it answers only loopback host
    names and `server.allowed_hosts` (see `origin`)."""
    # The server process validates requests and checks uploads but never runs a model: it stays
    # off the GPU. (Its plan keys only group identical requests; results carry the worker's keys.)
    pipeline = Pipeline(settings.with_overrides(device="cpu"))
    if pipeline.cache is None:
        raise UserError("the HTTP service keeps videos in the cache: set cache.enabled: true")
    # AllTalk's facts, part of each plan, come from its server (every 30 s): not on the event loop
    plan_inline = pipeline.tts.name != "alltalk"
    redact = PathRedactor(server_roots(settings))
    service = Service(settings, pipeline, JobManager(settings), Uploads(pipeline), plan_inline, redact)

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
    app.include_router(open_router)
    # the token's security scheme, documented on the routes that need it (and /docs "Authorize")
    app.include_router(router, dependencies=[Depends(HTTPBearer(auto_error=False))] if token else [])
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
