"""Request and response bodies of the HTTP API, and the error body every error response has."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="a SHA-256 hex digest")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


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


def error_responses(*codes: int, stream: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (the token's 401 included). `stream`: for an
    event stream's route, where a `model` would be documented as a stream of events."""
    if stream:
        json = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        return {code: {"content": json, "description": ERRORS[code]} for code in (401, *codes)}
    return {code: {"model": ErrorBody, "description": ERRORS[code]} for code in (401, *codes)}


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, permission_error, rate_limit_error or server_error")
    param: str | None = Field(description="the body field at fault, if one is")
    code: str | None


class OpenAIErrorBody(BaseModel):
    """The error body of the OpenAI-compatible routes (OpenAI's own shape)."""

    error: OpenAIErrorDetail


def openai_error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAI-shaped `responses` for these statuses (the token's 401 included; 400: any invalid request)."""
    described = {**ERRORS, 400: "invalid request (schema, model, voice, input…)"}
    return {code: {"model": OpenAIErrorBody, "description": described[code]} for code in (401, *codes)}


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


class VoiceId(BaseModel):
    """OpenAI's form of a custom voice: `{"id": "…"}`."""

    id: str = Field(min_length=1, max_length=200)


class SpeechBody(BaseModel):
    """OpenAI's `POST /v1/audio/speech` body (unknown fields are ignored, as clients send their own)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200, description='"ara", the TTS backend\'s name, or tts-1…')
    input: str = Field(min_length=1, max_length=100_000, description="what to say")
    voice: str | VoiceId = Field(description='PERSONA (auto mode) or PERSONA-MODE, e.g. "ara-cathedral"')
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0, description="tempo factor on top of the mode's (pitch kept)")
    instructions: str | None = Field(
        None,
        max_length=10_000,
        description="with an auto-mode voice, what the selector reads besides the input",
    )
    stream_format: Literal["audio", "sse"] = Field("audio", description='only "audio" is served')
