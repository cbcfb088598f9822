"""Speech without video, for the OpenAI-compatible `POST /v1/audio/speech`: the same chunks, TTS,
voice stage and cache entries as a video's speech, so a reply spoken first and rendered later (or
the other way round) is synthesised once.

A `SpeechRequest` is planned like a render (`Pipeline.plan`); each chunk's speech is cached under
the chunk's `speech_key`, as the video's is. `speed` other than 1 is a further tempo change by the
DSP voice stage's WSOLA (pitch kept), cached under a key derived from the chunk's. The worker
process makes missing chunks (`speak`, one message per chunk as it is stored); the server reads
them from the cache (`read_chunk`) and encodes them as they come.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from ara_persona import VoiceParams
from ara_sidecar.audio import Audio, decode_speech, resample, silence, with_timing
from ara_sidecar.cache import CacheStore, derived_key
from ara_sidecar.config import Settings
from ara_sidecar.pipeline import Pipeline, Plan, ProgressFn, RenderRequest, cached_speech
from ara_sidecar.timings import Timings
from ara_sidecar.voice.dsp import DspVoice


@dataclass(frozen=True)
class SpeechRequest:
    render: RenderRequest  # text, persona, mode (as planned by the server)
    speed: float = 1.0  # tempo factor on top of the mode's own speed (OpenAI's `speed`)


@dataclass(frozen=True)
class SpeechChunk:
    index: int
    key: str  # cache key of its speech (after the voice stage and the speed change)
    pause_s: float  # silence after it


def speed_fingerprint(settings: Settings) -> dict:
    return DspVoice(settings, "cpu").fingerprint()


def chunk_keys(
    pipeline: Pipeline, request: SpeechRequest, plan: Plan | None = None
) -> tuple[str, list[SpeechChunk]]:
    """The whole speech's key and each chunk's, from the request's `plan` (made here when not
    given: that validates the request, as `Pipeline.plan` does)."""
    plan = plan or pipeline.plan(request.render)
    chunks = []
    for i, chunk in enumerate(plan.chunks):
        key = chunk.speech_key
        if request.speed != 1.0:
            key = derived_key(
                "speech-speed", key, float(request.speed), repr(speed_fingerprint(pipeline.settings))
            )
        chunks.append(SpeechChunk(i, key, chunk.pause_s / request.speed))
    return derived_key("speech-reply", *(c.key for c in chunks)), chunks


def speak(
    pipeline: Pipeline, request: SpeechRequest, progress: ProgressFn, on_chunk: Callable[[dict], None]
) -> dict:
    """In the worker: make (or find) each chunk's speech in the cache, in order, telling
    `on_chunk` of each as soon as it is stored. Returns the speech's key, duration and timings."""
    cache = pipeline.cache
    assert cache is not None, "the HTTP service keeps speech in the cache"
    plan = pipeline.plan(request.render)
    key, chunks = chunk_keys(pipeline, request, plan)
    timings = Timings()
    mode = plan.mode if request.render.apply_voice else None
    speech_s = 0.0
    progress("tts", 0.0)
    for chunk, planned in zip(chunks, plan.chunks, strict=True):
        make = partial(pipeline.say, planned.text, mode, timings)
        if request.speed != 1.0:
            make = partial(
                _faster, cache, planned.speech_key, make, request.speed, pipeline.settings, timings
            )
        audio = cached_speech(cache, chunk.key, make)
        speech_s += audio.duration_s + chunk.pause_s
        on_chunk({"index": chunk.index, "key": chunk.key, "pause_s": chunk.pause_s})
        progress("tts", (chunk.index + 1) / len(chunks))
    return {"key": key, "speech_s": speech_s, "timings": dict(timings.seconds), "chunks": []}


def _faster(
    cache: CacheStore,
    speech_key: str,
    make: Callable[[], Audio],
    speed: float,
    settings: Settings,
    timings: Timings,
) -> Audio:
    """The chunk's speech (from the cache, else made and cached) at `speed` times its tempo."""
    audio = cached_speech(cache, speech_key, make)
    with timings.measure("voice"):
        return with_timing(DspVoice(settings, "cpu").convert(audio, VoiceParams(speed=speed)), audio)


def read_chunk(cache: CacheStore, chunk: SpeechChunk, rate: int) -> np.ndarray | None:
    """A chunk's speech from the cache at `rate`, with its pause; None if the cache lacks it."""
    data = cache.get_bytes(chunk.key)
    if data is None:
        return None
    audio = resample(decode_speech(data), rate)
    return np.concatenate([audio.samples, silence(chunk.pause_s, rate)])
