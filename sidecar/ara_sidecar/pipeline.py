"""The render pipeline: text → TTS → voice → lip-sync → encoder → MP4.

Backends are chosen by the settings and imported lazily through each stage's registry.
Construct a `Pipeline` once, `load()` it (models stay warm), then `render()` many times.
Lip-sync frames stream straight into the encoder, so memory stays flat for long replies.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ara_persona import Mode, Persona, PersonaError
from ara_sidecar import encode, lipsync, tts, voice
from ara_sidecar.audio import Audio, load_audio
from ara_sidecar.avatar import Avatar, load_avatar
from ara_sidecar.config import Settings
from ara_sidecar.device import resolve_device
from ara_sidecar.errors import UserError
from ara_sidecar.lipsync import frame_count
from ara_sidecar.personas import get_persona
from ara_sidecar.text import check_text

# Progress is reported per stage, in this order; "video" is lip-sync and encoding, which
# stream frame by frame. Timings split "video" into "lipsync" and "encode".
PROGRESS_STAGES = ("face", "tts", "voice", "video")

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
    speech_s: float  # length of the spoken audio
    duration_s: float  # length of the video (whole frames)
    frames: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return sum(self.timings.values())

    @property
    def real_time_factor(self) -> float:
        return self.total_s / self.speech_s if self.speech_s else 0.0


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

    def _speech(self, request: RenderRequest) -> Audio:
        if request.audio_path is not None:
            audio = load_audio(request.audio_path)
            if audio.duration_s > self.settings.limits.max_audio_s:
                raise UserError(
                    f"audio {request.audio_path} is {audio.duration_s:.0f} s long, over the limit of "
                    f"{self.settings.limits.max_audio_s:g} s (limits.max_audio_s)"
                )
            return audio
        return self.tts.synthesize(check_text(request.text, self.settings.limits.max_text_chars))

    # -- rendering ----------------------------------------------------------------------

    def render(
        self, request: RenderRequest, out_path: Path, progress: ProgressFn | None = None
    ) -> RenderResult:
        """Render `request` to `out_path` (written atomically: a failed render leaves nothing)."""
        report = progress or (lambda stage, fraction: None)
        out_path = Path(out_path)
        if not out_path.parent.is_dir():
            raise UserError(f"output directory does not exist: {out_path.parent}")
        if request.audio_path is None:
            check_text(request.text, self.settings.limits.max_text_chars)  # fail before any work
        persona = get_persona(self.settings, request.persona)
        mode = self.resolve_mode(persona, request.mode)
        avatar = self.avatar_for(persona, request.avatar_path)
        timings: dict[str, float] = {}

        def timed(stage: str, fn: Callable[[], Any]) -> Any:
            report(stage, 0.0)
            start = time.perf_counter()
            value = fn()
            timings[stage] = time.perf_counter() - start
            report(stage, 1.0)
            return value

        self.load()
        prepared = timed("face", lambda: self.prepare_avatar(avatar, request.no_face_ok))
        speech = timed("tts", lambda: self._speech(request))
        if request.apply_voice:
            speech = timed("voice", lambda: self.voice.convert(speech, mode.voice))
        fps = self.settings.fps
        n_frames = frame_count(speech.duration_s, fps)
        lipsync_time = [0.0]
        frames = _timed(self.lipsync.animate(prepared, speech, fps), lipsync_time)
        partial = out_path.with_name(f".{out_path.name}.{os.getpid()}.partial{self.encoder.suffix}")
        report("video", 0.0)
        start = time.perf_counter()
        try:
            self.encoder.encode(
                frames, n_frames, speech, fps, partial, on_frame=lambda i: report("video", (i + 1) / n_frames)
            )
            os.replace(partial, out_path)
        finally:
            partial.unlink(missing_ok=True)
        timings["lipsync"] = lipsync_time[0]
        timings["encode"] = time.perf_counter() - start - lipsync_time[0]
        return RenderResult(
            path=out_path,
            persona=persona.name,
            mode=mode.name,
            speech_s=speech.duration_s,
            duration_s=n_frames / fps,
            frames=n_frames,
            timings=timings,
        )


def _timed(frames: Iterator, total: list[float]) -> Iterator:
    """Pass `frames` through, adding the time spent producing them to total[0]."""
    while True:
        start = time.perf_counter()
        try:
            frame = next(frames)
        except StopIteration:
            return
        finally:
            total[0] += time.perf_counter() - start
        yield frame
