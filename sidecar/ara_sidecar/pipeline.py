"""The render pipeline: text → TTS → voice → lip-sync → encoder → MP4.

Backends are chosen by the settings and imported lazily through each stage's registry.
Construct a `Pipeline` once, `load()` it (models stay warm), then `render()` many times.
Speech is made per sentence in a worker thread; lip-sync frames stream straight into the
encoder, so the stages overlap and memory stays flat for long replies.
"""

from __future__ import annotations

import os
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
from ara_sidecar.config import Settings
from ara_sidecar.device import resolve_device
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


class Pipeline:
    def __init__(self, settings: Settings):
        self.settings = settings
        classes = {
            "tts": tts.REGISTRY.load(settings.tts),
            "voice": voice.REGISTRY.load(settings.voice),
            "lipsync": lipsync.REGISTRY.load(lipsync.resolve(settings.lipsync)),
        }
        uses_gpu = any(getattr(cls, "uses_device", False) for cls in classes.values())
        self.device = resolve_device(settings.device).device if uses_gpu else "cpu"
        self.tts = classes["tts"](settings, self.device)
        self.voice = classes["voice"](settings, self.device)
        self.lipsync = classes["lipsync"](settings, self.device)
        self.encoder = encode.REGISTRY.load("mp4")(settings)
        self._prepared: dict[tuple[str, bool], Any] = {}

    def load(self) -> None:
        """Load every stage's models (idempotent)."""
        for stage in (self.tts, self.voice, self.lipsync):
            stage.load()

    # -- inputs -------------------------------------------------------------------------

    def resolve_mode(self, persona: Persona, mode: str | None) -> Mode:
        try:
            return persona.mode(mode or self.settings.mode)
        except PersonaError as exc:
            raise UserError(str(exc)) from None

    def avatar_for(self, persona: Persona, path: Path | None) -> Avatar:
        limits = self.settings.limits
        return load_avatar(
            path or persona.avatar_path,
            max_pixels=limits.max_avatar_pixels,
            max_side=self.settings.video_max_side,
        )

    def prepare_avatar(self, avatar: Avatar, no_face_ok: bool = False) -> Any:
        """The lip-sync backend's per-avatar analysis, memoized by image digest."""
        key = (avatar.digest, no_face_ok)
        if key not in self._prepared:
            self._prepared[key] = self.lipsync.prepare(avatar, no_face_ok=no_face_ok)
        return self._prepared[key]

    def _speech_sources(self, request: RenderRequest) -> list[Callable[[], Audio]]:
        """One callable per chunk that makes its raw speech: a sentence each, or the given file."""
        if request.audio_path is None:
            text = check_text(request.text, self.settings.limits.max_text_chars)
            return [partial(self.tts.synthesize, sentence) for sentence in split_sentences(text)]
        audio = load_audio(request.audio_path)
        if audio.duration_s > self.settings.limits.max_audio_s:
            raise UserError(
                f"audio {request.audio_path} is {audio.duration_s:.0f} s long, over the limit of "
                f"{self.settings.limits.max_audio_s:g} s (limits.max_audio_s)"
            )
        return [lambda: audio]

    def _spoken_chunks(
        self,
        sources: list[Callable[[], Audio]],
        request: RenderRequest,
        mode: Mode,
        timings: Timings,
        report: ProgressFn,
    ) -> Iterator[tuple[Audio, float]]:
        """Speech chunks after the voice stage, each ending in silence padded to whole frames,
        with the seconds of speech (and sentence pause) each holds before that padding."""
        fps = self.settings.fps
        report("tts", 0.0)
        for i, make in enumerate(sources):
            with timings.measure("tts"):
                chunk = make()
            if request.apply_voice:
                with timings.measure("voice"):
                    chunk = self.voice.convert(chunk, mode.voice)
            pause = self.settings.sentence_pause_s if i + 1 < len(sources) else 0.0
            frames = frame_count(chunk.duration_s + pause, fps)
            padding = silence(frames / fps - chunk.duration_s, chunk.sample_rate)
            yield Audio(np.concatenate([chunk.samples, padding]), chunk.sample_rate), chunk.duration_s + pause
            report("tts", (i + 1) / len(sources))

    # -- rendering ----------------------------------------------------------------------

    def render(
        self, request: RenderRequest, out_path: Path, progress: ProgressFn | None = None
    ) -> RenderResult:
        """Render `request` to `out_path` (written atomically: a failed render leaves nothing).

        Speech is made sentence by sentence in a worker thread while this thread animates and
        encodes the sentences already spoken, so the stages overlap on a multi-core CPU.
        """
        report = progress or (lambda stage, fraction: None)
        started = time.perf_counter()
        out_path = Path(out_path)
        if not out_path.parent.is_dir():
            raise UserError(f"output directory does not exist: {out_path.parent}")
        persona = get_persona(self.settings, request.persona)
        mode = self.resolve_mode(persona, request.mode)
        sources = self._speech_sources(request)
        avatar = self.avatar_for(persona, request.avatar_path)
        self.load()
        timings = Timings()

        report("face", 0.0)
        with timings.measure("face"):
            prepared = self.prepare_avatar(avatar, request.no_face_ok)
        report("face", 1.0)

        fps = self.settings.fps
        speech_s = 0.0
        chunks = BackgroundIterator(self._spoken_chunks(sources, request, mode, timings, report))
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
            persona=persona.name,
            mode=mode.name,
            speech_s=speech_s,
            duration_s=writer.frames / fps,
            frames=writer.frames,
            timings=dict(timings.seconds),
            wall_s=time.perf_counter() - started,
        )
