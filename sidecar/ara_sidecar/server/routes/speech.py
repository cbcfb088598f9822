"""OpenAI-compatible speech: `POST /v1/audio/speech`, `GET /v1/models`, `GET /v1/audio/models`
and `GET /v1/audio/voices`, so frontends that speak OpenAI's TTS protocol (SillyTavern, Open WebUI,
LibreChat, the `openai` package…) use Ara's voice without learning the job API.

`voice` names a persona and a mode: `PERSONA` lets the persona's selector pick the mode from the
input (and `instructions`, read as the user's turn), `PERSONA-MODE` forces one. OpenAI's own voice
names (alloy, nova…) stand for the default persona in auto mode, so a client's default works.
`model` is "ara", this server's TTS backend name, or one of OpenAI's TTS model names (all alike).
The speech streams as it is made (chunked transfer): each chunk's audio as soon as the worker has
it in the cache, the first sentence's first. Errors on these routes have OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}` (see public.JSONErrors), and a request OpenAI
would call invalid is a 400.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import suppress

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ara_persona import PersonaError, discover, select_mode
from ara_sidecar.cache import CacheUnwritable
from ara_sidecar.errors import UserError
from ara_sidecar.personas import get_persona, persona_roots
from ara_sidecar.pipeline import RenderRequest
from ara_sidecar.server.dependencies import Service, Svc
from ara_sidecar.server.jobs import Job
from ara_sidecar.server.routes.render import FAILURE_STATUS
from ara_sidecar.server.schemas import SpeechBody, openai_error_responses
from ara_sidecar.server.speech import SpeechChunk, SpeechRequest, chunk_keys, read_chunk
from ara_sidecar.server.speech_formats import FORMATS, RATE, StreamEncoder

OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
CREATED = 1_700_000_000  # the models' `created` (OpenAI's field; these have no date)
router = APIRouter(tags=["openai"])
open_router = APIRouter(tags=["openai"])  # no token needed: Open WebUI asks for these without its key


class OpenAIError(HTTPException):
    """An error with OpenAI's `param` and `code` (public.JSONErrors gives it OpenAI's shape)."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(status, message)
        self.param, self.code = param, code

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.detail, "param": self.param, "code": self.code}, self.status_code)


@router.get("/v1/models", responses=openai_error_responses())
def list_models(svc: Svc) -> dict:
    """The models a client may name (OpenAI's list shape); they all speak alike."""
    names = ["ara", svc.pipeline.tts.name, *OPENAI_MODELS]
    data = [{"id": n, "object": "model", "created": CREATED, "owned_by": "ara"} for n in names]
    return {"object": "list", "data": data}


@open_router.get("/v1/audio/models")
def list_audio_models(svc: Svc) -> dict:
    """The TTS models as Open WebUI asks for them: `{"models": [{"id"}]}`."""
    return {"models": [{"id": n} for n in ("ara", svc.pipeline.tts.name, *OPENAI_MODELS)]}


@open_router.get("/v1/audio/voices")
def list_voices(svc: Svc) -> dict:
    """Every voice: each persona (auto mode) and each of its modes, `{"voices": [{"id", "name"}]}`."""
    voices = []
    for name in discover(*persona_roots(svc.settings)):
        persona = get_persona(svc.settings, name)
        voices.append({"id": name, "name": f"{persona.display_name} (auto mode)"})
        voices += [
            {"id": f"{name}-{mode}", "name": f"{persona.display_name}: {mode}"} for mode in persona.modes
        ]
    return {"voices": voices}


@router.post(
    "/v1/audio/speech",
    response_class=StreamingResponse,
    responses={
        200: {"content": {f.media_type: {} for f in FORMATS.values()}, "description": "the audio"},
        **openai_error_responses(400, 409, 413, 429, 500, 503, 504, 507),
    },
)
async def create_speech(body: SpeechBody, svc: Svc) -> Response:
    """Speak `input` in Ara's voice (OpenAI's body); the audio streams as each sentence is ready."""
    try:
        if body.stream_format != "audio":
            raise OpenAIError(400, 'stream_format "sse" is not served; use "audio"', "stream_format")
        request, mode, key, chunks = await run_in_threadpool(_plan, svc, body)
        stream = _stream(svc, request, key, chunks, body.response_format)
        first = await anext(stream)  # errors before the first byte still get their status
    except OpenAIError as exc:
        return exc.response()
    except UserError as exc:
        if isinstance(exc, CacheUnwritable):
            raise  # a 507, as everywhere
        return OpenAIError(400, str(exc), "input").response()
    headers = {"X-Ara-Mode": mode, "Cache-Control": "no-store"}
    return StreamingResponse(
        _prepend(first, stream), media_type=FORMATS[body.response_format].media_type, headers=headers
    )


def _plan(svc: Service, body: SpeechBody) -> tuple[SpeechRequest, str, str, list[SpeechChunk]]:
    """The request for `body`, its mode, the speech's key and its chunks (UserError if invalid)."""
    tts = svc.pipeline.tts.name
    if body.model not in ("ara", tts, *OPENAI_MODELS):
        message = f'unknown model {body.model[:100]!r}: this server speaks with {tts!r} (or name "ara")'
        raise OpenAIError(400, message, "model", "model_not_found")
    persona, mode = _voice(svc, body.voice if isinstance(body.voice, str) else body.voice.id)
    if mode == "auto":
        try:
            mode = select_mode(persona, body.instructions or "", body.input).mode
        except PersonaError as exc:
            raise UserError(str(exc)) from None
    render = RenderRequest(text=body.input, persona=persona.name, mode=mode)
    request = SpeechRequest(render, speed=body.speed)
    key, chunks = chunk_keys(svc.pipeline, request)
    return request, mode, key, chunks


def _voice(svc: Service, voice: str):
    """(persona, mode or "auto") of a voice name."""
    if voice in OPENAI_VOICES:
        return get_persona(svc.settings), "auto"
    names = discover(*persona_roots(svc.settings))
    for name in sorted(names, key=len, reverse=True):  # the longest persona name that fits
        if voice == name:
            return get_persona(svc.settings, name), "auto"
        if voice.startswith(name + "-"):
            persona, mode = get_persona(svc.settings, name), voice[len(name) + 1 :]
            if mode in persona.modes:
                return persona, mode
            modes = ", ".join(persona.modes)
            raise OpenAIError(400, f"persona {name!r} has no mode {mode[:64]!r} (modes: {modes})", "voice")
    message = f"unknown voice {voice[:100]!r}: GET /v1/audio/voices lists them (PERSONA or PERSONA-MODE)"
    raise OpenAIError(400, message, "voice")


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for data in rest:
        yield data


async def _stream(
    svc: Service, request: SpeechRequest, key: str, chunks: list[SpeechChunk], response_format: str
) -> AsyncIterator[bytes]:
    """The encoded speech, chunk by chunk: from the cache, the missing chunks made by the worker.
    The first item is never empty (an error before it is raised to the route)."""
    cache = svc.pipeline.cache
    encoder = await run_in_threadpool(StreamEncoder, response_format)
    job: Job | None = None
    pending = b""
    try:
        present = await run_in_threadpool(lambda: [cache.get(c.key) is not None for c in chunks])
        if not all(present):
            job = await svc.jobs.asubmit(key, request, "requested", len(chunks))
        for chunk in chunks:
            samples = await run_in_threadpool(read_chunk, cache, chunk, RATE)
            if samples is None:
                await _made(job, chunk.index)
                samples = await run_in_threadpool(read_chunk, cache, chunk, RATE)
                if samples is None:
                    raise OpenAIError(500, "the speech of a chunk vanished from the cache", code="cache_miss")
            pending += await run_in_threadpool(encoder.encode, samples)
            if pending:
                yield pending
                pending = b""
        pending += await run_in_threadpool(encoder.close)
        encoder = None
        if pending:
            yield pending
    finally:
        if encoder is not None:
            encoder.abort()
        if job is not None and job.finished is None:
            with suppress(Exception):
                svc.jobs.cancel(job)


async def _made(job: Job | None, index: int) -> None:
    """Wait until the worker has stored chunk `index`; an OpenAIError if the job fails."""
    if job is None:
        raise OpenAIError(500, "the speech of a chunk vanished from the cache", code="cache_miss")
    async for _ in job.changes(keepalive_s=60):
        if any(c["index"] == index for c in job.render.chunks):
            return
        if job.finished is not None:
            break
    if job.status == "done":
        return
    render = job.render
    status = 409 if job.status == "cancelled" else FAILURE_STATUS[render.error_kind or "internal"]
    if status == 422:
        status = 400
    raise OpenAIError(status, render.error or "the speech was cancelled", code=render.error_kind)
