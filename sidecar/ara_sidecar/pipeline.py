"""The render pipeline: text → TTS → voice → lip-sync → encoder → MP4.

Backends are chosen by the settings and imported lazily through each stage's registry.
Construct a `Pipeline` once, `load()` it (models stay warm), then `render()` many times.
Speech is made per sentence in a worker thread; lip-sync frames stream straight into the
encoder, so the stages overlap and memory stays flat for long replies.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ara_persona import Mode, Persona, PersonaError
from ara_sidecar import encode, lipsync, tts, voice
from ara_sidecar.audio import Audio, load_audio, silence
from ara_sidecar.avatar import Avatar, load_avatar
from ara_sidecar.background import BackgroundIterator
from ara_sidecar.cache import CacheStore, cache_key
from ara_sidecar.config import Settings
from ara_sidecar.device import resolve_device
from ara_sidecar.digest import file_digest
from ara_sidecar.errors import UserError
from ara_sidecar.lipsync import frame_count
from ara_sidecar.personas import get_persona
from ara_sidecar.text import check_text, split_sentences
from ara_sidecar.timings import Timings

# Progress is reported per stage: "tts" is speech (TTS and voice stage, per sentence) and
# "video" is lip-sync and encoding, frame by frame; the two overlap. Timings are finer:
# face, tts, voice, lipsync, encode.
PROGRESS_STAGES = ("face", "tts", "video")

# progress(stage, fraction 0..1); it may raise errors.Cancelled to stop the render.
ProgressFn = Callable[[str, float], None]


@dataclass(frozen=True)
class RenderRequest:
    text: str | None = None
    audio_path: Path | None = None  # speech to lip-sync instead of text (TTS skipped)
    persona: str | None = None
    mode: str | None = None
    avatar_path: Path | None = None  # None = the persona's avatar.png
    apply_voice: bool = True  # False skips the voice stage (useful with audio_path)
    no_face_ok: bool = False


@dataclass
class RenderResult:
    path: Path
    key: str  # content hash of everything that shaped the video (the cache key)
    cached: bool  # served from the cache without rendering
    persona: str
    mode: str
    speech_s: float  # length of the speech (with sentence pauses)
    duration_s: float  # length of the video (whole frames)
    frames: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (they overlap)
    wall_s: float = 0.0  # the whole render, start to finish

    @property
    def real_time_factor(self) -> float:
        return self.wall_s / self.speech_s if self.speech_s else 0.0


@dataclass(frozen=True)
class _Plan:
    """A validated request: everything the render needs, and its cache key."""

    request: RenderRequest
    persona: Persona
    mode: Mode
    text: str | None  # normalised text to speak (None for audio input)
    avatar_path: Path
    key: str


class Pipeline:
    def __init__(self, settings: Settings):
        self.settings = settings
        classes = {
            "tts": tts.REGISTRY.load(settings.tts),
            "voice": voice.REGISTRY.load(settings.voice),
            "lipsync": lipsync.REGISTRY.load(lipsync.resolve(settings.lipsync, settings)),
        }
        uses_gpu = any(getattr(cls, "uses_device", False) for cls in classes.values())
        self.device = resolve_device(settings.device).device if uses_gpu else "cpu"
        self.tts = classes["tts"](settings, self.device)
        self.voice = classes["voice"](settings, self.device)
        self.lipsync = classes["lipsync"](settings, self.device)
        self.encoder = encode.REGISTRY.load("mp4")(settings)
        self.cache = open_cache(settings) if settings.cache.enabled else None
        self._prepared: dict[str, Any] = {}
        self._loaded = False

    def load(self) -> None:
        """Load every stage's models (idempotent)."""
        for stage in (self.tts, self.voice, self.lipsync):
            stage.load()
        self._loaded = True

    # -- inputs -------------------------------------------------------------------------

    def plan(self, request: RenderRequest) -> _Plan:
        """Validate `request` and compute its cache key, without reading any pixels or audio."""
        persona = get_persona(self.settings, request.persona)
        try:
            mode = persona.mode(request.mode or self.settings.mode)
        except PersonaError as exc:
            raise UserError(str(exc)) from None
        if request.audio_path is None:
            text = check_text(request.text, self.settings.limits.max_text_chars)
            speech = {"text": text}
        else:
            text = None
            if not Path(request.audio_path).is_file():
                raise UserError(f"audio file not found: {request.audio_path}")
            speech = {"audio": file_digest(request.audio_path)}
        avatar_path = Path(request.avatar_path or persona.avatar_path)
        if not avatar_path.is_file():
            raise UserError(f"avatar not found: {avatar_path}")
        parts = {
            **speech,
            "kind": "video",
            "voice_params": mode.voice if request.apply_voice else None,
            "avatar": file_digest(avatar_path),
            "no_face_ok": request.no_face_ok,
            "tts": self.tts.fingerprint() if text is not None else None,
            "tts_inputs": self.tts.mode_inputs(mode if request.apply_voice else None) if text else None,
            "voice": self.voice.fingerprint() if request.apply_voice else None,
            "lipsync": self.lipsync.fingerprint(),
            "encoder": self.encoder.fingerprint(),
            "fps": self.settings.fps,
            "sentence_pause_s": self.settings.sentence_pause_s,
            "video_max_side": self.settings.video_max_side,
        }
        return _Plan(request, persona, mode, text, avatar_path, cache_key(parts))

    def prepare_avatar(
        self, avatar: Avatar, no_face_ok: bool = False, cache: CacheStore | None = None
    ) -> Any:
        """The lip-sync backend's per-avatar analysis: memoized in memory and in `cache`."""
        key = cache_key(
            {
                "kind": "avatar",
                "avatar": avatar.digest,
                "no_face_ok": no_face_ok,
                "lipsync": self.lipsync.fingerprint(),
            }
        )
        if key not in self._prepared:
            if cache is None:
                self._prepared[key] = self.lipsync.prepare(avatar, no_face_ok=no_face_ok)
            else:
                make = lambda: pickle.dumps(self.lipsync.prepare(avatar, no_face_ok=no_face_ok))  # noqa: E731
                self._prepared[key] = pickle.loads(cache.get_or_create_bytes(key, make, kind="avatar"))
        return self._prepared[key]

    def open_avatar(self, path: Path) -> Avatar:
        limits = self.settings.limits
        return load_avatar(path, max_pixels=limits.max_avatar_pixels, max_side=self.settings.video_max_side)

    def _speech_sources(
        self, plan: _Plan, timings: Timings, cache: CacheStore | None
    ) -> list[Callable[[], Audio]]:
        """One callable per chunk that makes its speech after the voice stage: one per sentence
        (each cached by sentence, voice parameters and backends), or the given audio file."""
        request, params = plan.request, plan.mode.voice
        if plan.text is None:
            audio = load_audio(request.audio_path)
            if audio.duration_s > self.settings.limits.max_audio_s:
                raise UserError(
                    f"audio {request.audio_path} is {audio.duration_s:.0f} s long, over the limit of "
                    f"{self.settings.limits.max_audio_s:g} s (limits.max_audio_s)"
                )
            return [lambda: self.voice.convert(audio, params) if request.apply_voice else audio]

        # The TTS backend may apply part of the mode's voice itself (or all of it: no voice stage).
        mode = plan.mode if request.apply_voice else None
        params = self.tts.voice_stage_params(params) if mode else None

        def speak(sentence: str) -> Audio:
            with timings.measure("tts"):
                audio = self.tts.synthesize(sentence, mode)
            if params is None:
                return audio
            with timings.measure("voice"):
                return self.voice.convert(audio, params)

        if cache is None:
            return [partial(speak, sentence) for sentence in split_sentences(plan.text)]
        tts_print, tts_inputs = self.tts.fingerprint(), self.tts.mode_inputs(mode)
        voice_print = self.voice.fingerprint() if params is not None else None
        return [
            partial(
                _cached_speech,
                cache,
                cache_key(
                    {
                        "kind": "speech",
                        "text": sentence,
                        "tts": tts_print,
                        "tts_inputs": tts_inputs,
                        "voice": voice_print,
                        "voice_params": params,
                    }
                ),
                partial(speak, sentence),
            )
            for sentence in split_sentences(plan.text)
        ]

    def _spoken_chunks(
        self, sources: list[Callable[[], Audio]], timings: Timings, report: ProgressFn
    ) -> Iterator[tuple[Audio, float]]:
        """Speech chunks, each ending in silence padded to whole frames, with the seconds of
        speech (and sentence pause) each holds before that padding."""
        fps = self.settings.fps
        report("tts", 0.0)
        for i, make in enumerate(sources):
            chunk = make()
            pause = self.settings.sentence_pause_s if i + 1 < len(sources) else 0.0
            frames = frame_count(chunk.duration_s + pause, fps)
            padding = silence(frames / fps - chunk.duration_s, chunk.sample_rate)
            yield Audio(np.concatenate([chunk.samples, padding]), chunk.sample_rate), chunk.duration_s + pause
            report("tts", (i + 1) / len(sources))

    # -- rendering ----------------------------------------------------------------------

    def render(
        self,
        request: RenderRequest,
        out_path: Path | None = None,
        progress: ProgressFn | None = None,
        *,
        use_cache: bool = True,
    ) -> RenderResult:
        """Render `request`, or return it from the cache when the same video was made before.

        With `out_path` the video is also written there (atomically: a failed render leaves
        nothing); without it, `result.path` is the cached file (or `output_dir/KEY.mp4` when
        the cache is off).
        """
        report = progress or (lambda stage, fraction: None)
        started = time.perf_counter()
        if out_path is not None and not Path(out_path).parent.is_dir():
            raise UserError(f"output directory does not exist: {Path(out_path).parent}")
        plan = self.plan(request)
        if self.cache is None or not use_cache:
            target = (
                Path(out_path)
                if out_path
                else self.settings.path(self.settings.output_dir) / f"{plan.key}.mp4"
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            result = self._render_file(plan, target, report, cache=None)
            result.wall_s = time.perf_counter() - started
            return result

        made: list[RenderResult] = []
        entry = self.cache.get_or_create(
            plan.key,
            self.encoder.suffix,
            lambda tmp: made.append(self._render_file(plan, tmp, report, self.cache)),
        )
        meta_key = cache_key({"kind": "meta", "video": plan.key})
        if made:
            result = made[0]
            self.cache.get_or_create_bytes(meta_key, lambda: json.dumps(_meta(result)).encode(), kind="meta")
        else:
            meta = self.cache.get_bytes(meta_key)
            result = RenderResult(
                path=entry.path,
                key=plan.key,
                cached=True,
                **(json.loads(meta) if meta else _probe_meta(entry.path, plan, self.settings.fps)),
            )
        result.path, result.cached = entry.path, entry.hit
        if out_path is not None:
            with self.cache.reading(plan.key):
                _copy_atomically(entry.path, Path(out_path))
            result.path = Path(out_path)
        result.wall_s = time.perf_counter() - started
        return result

    def _render_file(
        self, plan: _Plan, out_path: Path, report: ProgressFn, cache: CacheStore | None
    ) -> RenderResult:
        """The render itself. Speech is made sentence by sentence in a worker thread while this
        thread animates and encodes the sentences already spoken, so the stages overlap."""
        started = time.perf_counter()
        timings = Timings()
        sources = self._speech_sources(plan, timings, cache)
        if not self._loaded:
            with timings.measure("load"):
                self.load()
        report("face", 0.0)
        with timings.measure("face"):
            prepared = self.prepare_avatar(self.open_avatar(plan.avatar_path), plan.request.no_face_ok, cache)
        report("face", 1.0)

        fps = self.settings.fps
        speech_s = 0.0
        chunks = BackgroundIterator(self._spoken_chunks(sources, timings, report))
        partial_path = out_path.with_name(f".{out_path.name}.{os.getpid()}.partial{self.encoder.suffix}")
        try:
            with self.encoder.open(partial_path, fps) as writer:
                for i, (chunk, spoken_s) in enumerate(chunks):
                    n = frame_count(chunk.duration_s, fps)
                    frames = timings.timed_iter("lipsync", self.lipsync.animate(prepared, chunk, fps))
                    for j, frame in enumerate(frames):
                        with timings.measure("encode"):
                            writer.write_frame(frame)
                        report("video", (i + (j + 1) / n) / len(sources))
                    with timings.measure("encode"):
                        writer.write_audio(chunk)
                    speech_s += spoken_s
                timings.start("encode")  # closing the writer flushes the encoder
            timings.stop("encode")
            os.replace(partial_path, out_path)
        finally:
            chunks.close()
            partial_path.unlink(missing_ok=True)
        report("video", 1.0)
        return RenderResult(
            path=out_path,
            key=plan.key,
            cached=False,
            persona=plan.persona.name,
            mode=plan.mode.name,
            speech_s=speech_s,
            duration_s=writer.frames / fps,
            frames=writer.frames,
            timings=dict(timings.seconds),
            wall_s=time.perf_counter() - started,
        )


def open_cache(settings: Settings) -> CacheStore:
    cfg = settings.cache
    return CacheStore(
        settings.path(cfg.dir),
        max_bytes=int(cfg.max_mb * 2**20),
        ttl_s=None if cfg.ttl_hours is None else cfg.ttl_hours * 3600,
    )


def _cached_speech(cache: CacheStore, key: str, make: Callable[[], Audio]) -> Audio:
    """Speech from the stage cache (float32 PCM after a little-endian sample-rate header)."""

    def produce() -> bytes:
        audio = make()
        return struct.pack("<I", audio.sample_rate) + audio.samples.tobytes()

    data = cache.get_or_create_bytes(key, produce, suffix=".pcm", kind="speech")
    (rate,) = struct.unpack_from("<I", data)
    return Audio(np.frombuffer(data, dtype=np.float32, offset=4).copy(), rate)


def _meta(result: RenderResult) -> dict:
    return {
        "persona": result.persona,
        "mode": result.mode,
        "speech_s": result.speech_s,
        "duration_s": result.duration_s,
        "frames": result.frames,
    }


def _probe_meta(path: Path, plan: _Plan, fps: int) -> dict:
    """Describe a cached video whose metadata entry was evicted, from the file itself."""
    import av

    with av.open(str(path)) as box:
        stream = box.streams.video[0]
        duration = float(stream.duration * stream.time_base)
    return {
        "persona": plan.persona.name,
        "mode": plan.mode.name,
        "speech_s": duration,
        "duration_s": duration,
        "frames": round(duration * fps),
    }


def _copy_atomically(src: Path, dst: Path) -> None:
    partial_path = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    try:
        shutil.copyfile(src, partial_path)
        os.replace(partial_path, dst)
    except OSError as exc:
        raise UserError(f"cannot write {dst}: {exc.strerror or exc}") from None
    finally:
        partial_path.unlink(missing_ok=True)
