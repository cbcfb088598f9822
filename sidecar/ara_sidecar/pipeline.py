"""The render pipeline: text → TTS → voice → lip-sync → encoder → MP4.

Backends are chosen by the settings and imported lazily through each stage's registry.
Construct a `Pipeline` once, `load()` it (models stay warm), then `render()` many times.

Text is cut into chunks (`text.split_chunks`, about a sentence each). Each chunk is rendered
into an MP4 of its own, cached under its own key (so replies that share sentences share their
videos) and announced through `on_chunk` as soon as it exists, so a player can start with the
first. Speech for the next chunk is made in a worker thread while this one is lip-synced and
encoded. At the end the chunk videos are joined, without re-encoding the picture, into the
whole reply's MP4, whose sound is encoded in one piece.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ara_persona import FaceParams, Mode, Persona, PersonaError
from ara_sidecar import encode, lipsync, tts, voice
from ara_sidecar.audio import Audio, decode_speech, encode_speech, load_audio, resample, silence, with_timing
from ara_sidecar.avatar import Avatar, load_avatar
from ara_sidecar.background import BackgroundIterator
from ara_sidecar.cache import CacheStore, cache_key, derived_key, open_cache
from ara_sidecar.config import Settings
from ara_sidecar.device import resolve_device
from ara_sidecar.digest import file_digest
from ara_sidecar.errors import UserError
from ara_sidecar.lipsync import frame_count
from ara_sidecar.lipsync.align import estimate as estimate_phonemes
from ara_sidecar.personas import get_persona
from ara_sidecar.text import ChunkLimits, check_text, limits_for_cost, split_chunks
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


@dataclass(frozen=True)
class ChunkVideo:
    """One chunk's video, ready to play: `start_s` into the whole reply, `duration_s` long."""

    index: int
    count: int  # chunks in the reply
    key: str  # its cache key (GET /v1/videos/KEY.mp4)
    path: Path
    start_s: float
    duration_s: float
    mime: str  # MIME type with codecs, for Media Source Extensions
    cached: bool

    def describe(self) -> dict:
        """Plain values (no path), as results and events carry them."""
        return {k: v for k, v in asdict(self).items() if k != "path"}


# on_chunk(chunk): a chunk's video exists (called in order, from the rendering thread).
ChunkFn = Callable[[ChunkVideo], None]


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
    chunks: list[dict] = field(default_factory=list)  # ChunkVideo.describe() of each chunk

    @property
    def real_time_factor(self) -> float:
        return self.wall_s / self.speech_s if self.speech_s else 0.0


@dataclass(frozen=True)
class _ChunkPlan:
    text: str | None  # what to say (None: the request's audio file)
    pause_s: float  # silence after it
    speech_key: str  # cache key of its speech
    key: str  # cache key of its video


@dataclass(frozen=True)
class Plan:
    """A validated request: everything the render needs, and its cache keys."""

    request: RenderRequest
    persona: Persona
    mode: Mode
    text: str | None  # normalised text to speak (None for audio input)
    avatar_path: Path
    chunks: tuple[_ChunkPlan, ...]
    key: str  # the whole video's: derived from its chunks' keys


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

    def plan(self, request: RenderRequest) -> Plan:
        """Validate `request`, cut its text into chunks and compute the cache keys, without
        reading any pixels or audio."""
        persona = get_persona(self.settings, request.persona)
        try:
            mode = persona.mode(request.mode or self.settings.mode)
        except PersonaError as exc:
            raise UserError(str(exc)) from None
        avatar_path = Path(request.avatar_path or persona.avatar_path)
        if not avatar_path.is_file():
            raise UserError(f"avatar not found: {avatar_path}")
        video = {  # what shapes a chunk's picture besides its speech
            "avatar": file_digest(avatar_path),
            "no_face_ok": request.no_face_ok,
            "lipsync": self.lipsync.fingerprint(),
            "encoder": self.encoder.fingerprint(),
            "fps": self.settings.fps,
            "video_max_side": self.settings.video_max_side,
            "face": asdict(mode.face),  # the mode's face motion (the animator's)
        }
        if request.audio_path is None:
            text = check_text(request.text, self.settings.limits.max_text_chars)
            # The TTS backend may apply part of the mode's voice itself (or all: no voice stage).
            voiced = mode if request.apply_voice else None
            params = self.tts.voice_stage_params(mode.voice) if voiced else None
            speech = {
                "kind": "speech",
                "tts": self.tts.fingerprint(),
                "tts_inputs": self.tts.mode_inputs(voiced),
                "voice": self.voice.fingerprint() if params is not None else None,
                "voice_params": params,
                "voice_inputs": self.voice.mode_inputs(params) if params is not None else None,
            }
            cfg = self.settings.chunking
            # a backend with a high cost per request gets fewer, longer chunks
            limits = limits_for_cost(
                ChunkLimits(cfg.first_max_chars, cfg.max_chars, cfg.min_chars), self.tts.request_cost_s()
            )
            sentence_pause_s = self.settings.sentence_pause_s
            if voiced is not None and mode.voice.pause_s is not None:
                sentence_pause_s = mode.voice.pause_s  # the mode's own pace
            pauses = {"sentence": sentence_pause_s, "clause": cfg.clause_pause_s, "word": 0.0}
            pieces = [(c.text, pauses[c.end]) for c in split_chunks(text, limits)]
        else:
            text = None
            if not Path(request.audio_path).is_file():
                raise UserError(f"audio file not found: {request.audio_path}")
            voiced = request.apply_voice
            speech = {
                "kind": "speech-file",
                "audio": file_digest(request.audio_path),
                "voice": self.voice.fingerprint() if voiced else None,
                "voice_params": mode.voice if voiced else None,
                "voice_inputs": self.voice.mode_inputs(mode.voice) if voiced else None,
            }
            pieces = [(None, 0.0)]
        # the parts shared by every chunk are hashed once (planning is on the cache-hit path)
        speaker, picture = cache_key(speech), cache_key(video)
        chunks = []
        for piece, pause_s in pieces:
            speech_key = derived_key("speech", speaker, piece)
            key = derived_key("chunk", speech_key, pause_s, picture)
            chunks.append(_ChunkPlan(piece, pause_s, speech_key, key))
        whole = derived_key("video", *(c.key for c in chunks))
        return Plan(request, persona, mode, text, avatar_path, tuple(chunks), whole)

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

    def _speech(
        self, plan: Plan, chunk: _ChunkPlan, timings: Timings, cache: CacheStore | None
    ) -> tuple[Audio, float]:
        """A chunk's speech after the voice stage, padded with its pause and silence up to a whole
        frame, and the seconds of speech plus pause in it. Text speech is cached by its key."""
        request = plan.request
        if chunk.text is None:
            audio = load_audio(request.audio_path, max_s=self.settings.limits.max_audio_s)
            if request.apply_voice:
                with timings.measure("voice"):
                    audio = with_timing(self.voice.convert(audio, plan.mode.voice), audio)
        else:
            mode = plan.mode if request.apply_voice else None
            make = partial(self.say, chunk.text, mode, timings)
            audio = make() if cache is None else cached_speech(cache, chunk.speech_key, make)
        fps = self.settings.fps
        frames = frame_count(audio.duration_s + chunk.pause_s, fps)
        padding = silence(frames / fps - audio.duration_s, audio.sample_rate)
        padded = replace(audio, samples=np.concatenate([audio.samples, padding]))
        return padded, audio.duration_s + chunk.pause_s

    def say(self, text: str, mode: Mode | None, timings: Timings) -> Audio:
        """`text` spoken by the TTS and shaped by the voice stage for `mode` (None: the TTS's own
        voice, no voice stage); not cached (see `cached_speech`)."""
        with timings.measure("tts"):
            audio = self.tts.synthesize(text, mode)
            if audio.phonemes is None:  # a TTS without timing (AllTalk): estimated for the lip-sync
                audio = replace(audio, phonemes=estimate_phonemes(audio, text, self.tts.language))
        params = self.tts.voice_stage_params(mode.voice) if mode else None
        if params is None:
            return audio
        with timings.measure("voice"):
            return with_timing(self.voice.convert(audio, params), audio)

    def _spoken(
        self,
        plan: Plan,
        timings: Timings,
        cache: CacheStore | None,
        report: ProgressFn,
        first_out: threading.Event,
    ) -> Iterator[tuple[Audio, float]]:
        """Each chunk's speech (see `_speech`); the second waits for `first_out`, so that the
        first chunk's video, which playback waits for, has the CPU to itself."""
        report("tts", 0.0)
        for i, chunk in enumerate(plan.chunks):
            if i == 1:
                first_out.wait()
            yield self._speech(plan, chunk, timings, cache)
            report("tts", (i + 1) / len(plan.chunks))

    # -- rendering ----------------------------------------------------------------------

    def render(
        self,
        request: RenderRequest,
        out_path: Path | None = None,
        progress: ProgressFn | None = None,
        *,
        use_cache: bool = True,
        on_chunk: ChunkFn | None = None,
    ) -> RenderResult:
        """Render `request`, or return it from the cache when the same video was made before.

        With `out_path` the video is also written there (atomically: a failed render leaves
        nothing); without it, `result.path` is the cached file (or `output_dir/KEY.mp4` when
        the cache is off). `on_chunk` hears of each chunk's video as soon as it exists (with
        the cache off, chunk files are temporary and gone when this returns).
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
            result = self._render_file(plan, target, report, None, on_chunk)
            result.wall_s = time.perf_counter() - started
            return result

        made: list[RenderResult] = []
        entry = self.cache.get_or_create(
            plan.key,
            self.encoder.suffix,
            lambda tmp: made.append(self._render_file(plan, tmp, report, self.cache, on_chunk)),
        )
        meta_key = derived_key("meta", plan.key)
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
        self,
        plan: Plan,
        out_path: Path,
        report: ProgressFn,
        cache: CacheStore | None,
        on_chunk: ChunkFn | None,
    ) -> RenderResult:
        """The render itself: chunk videos (made, or found in `cache`), then the whole video."""
        started = time.perf_counter()
        timings = Timings()
        if not self._loaded:
            with timings.measure("load"):
                self.load()
        prepared: list[Any] = []  # the avatar's analysis, made when a chunk first needs it

        def avatar() -> Any:
            if not prepared:
                report("face", 0.0)
                with timings.measure("face"):
                    image = self.open_avatar(plan.avatar_path)
                    prepared.append(self.prepare_avatar(image, plan.request.no_face_ok, cache))
                report("face", 1.0)
            return prepared[0]

        fps, count = self.settings.fps, len(plan.chunks)
        speech: list[Audio] = []  # each chunk's, padded to whole frames: the whole sound track
        chunks: list[ChunkVideo] = []
        speech_s = start_s = 0.0
        mime = ""  # the same for every chunk of a render (one size, one encoder): read once
        first_out = threading.Event()
        if on_chunk is None:  # nobody plays chunks as they come: speak ahead at once
            first_out.set()
        spoken = BackgroundIterator(self._spoken(plan, timings, cache, report, first_out))
        with ExitStack() as stack:
            stack.callback(spoken.close)
            stack.callback(first_out.set)  # runs first: the producer must not wait when stopping
            for i, ((audio, spoken_s), chunk) in enumerate(zip(spoken, plan.chunks, strict=True)):
                encode = partial(
                    self._encode_chunk,
                    audio=audio,
                    face=plan.mode.face,
                    prepare=avatar,
                    timings=timings,
                    progress=lambda fraction, i=i: report("video", (i + fraction) / count),
                )
                near = out_path.with_suffix(f".chunk{i}")
                path, hit = self._chunk_file(chunk.key, encode, cache, stack, near)
                report("video", (i + 1) / count)
                mime = mime or self.encoder.mime_type(path)
                video = ChunkVideo(
                    index=i,
                    count=count,
                    key=chunk.key,
                    path=path,
                    start_s=round(start_s, 6),
                    duration_s=round(audio.duration_s, 6),
                    mime=mime,
                    cached=hit,
                )
                chunks.append(video)
                speech.append(audio)
                speech_s += spoken_s
                start_s += audio.duration_s
                if on_chunk is not None:
                    on_chunk(video)
                first_out.set()
            with timings.measure("encode"):
                whole = self._join([c.path for c in chunks], speech, out_path)
        frames = round(whole.duration_s * fps)
        report("video", 1.0)
        return RenderResult(
            path=out_path,
            key=plan.key,
            cached=False,
            persona=plan.persona.name,
            mode=plan.mode.name,
            speech_s=speech_s,
            duration_s=frames / fps,
            frames=frames,
            timings=dict(timings.seconds),
            wall_s=time.perf_counter() - started,
            chunks=[c.describe() for c in chunks],
        )

    def _chunk_file(
        self,
        key: str,
        encode: Callable[[Path], None],
        cache: CacheStore | None,
        stack: ExitStack,
        near: Path,
    ) -> tuple[Path, bool]:
        """A chunk's video and whether it was cached: from `cache` (encoded on a miss, and pinned
        until `stack` closes, so it lasts until the whole video is joined), or without a cache
        encoded into a temporary file beside `near` that `stack` removes."""
        if cache is None:
            path = near.with_name(f".{near.name}.{os.getpid()}{self.encoder.suffix}")
            stack.callback(path.unlink, missing_ok=True)
            encode(path)
            return path, False
        entry = stack.enter_context(cache.reading(key, encode, suffix=self.encoder.suffix, kind="chunk"))
        return entry.path, entry.hit

    def _join(self, chunk_paths: list[Path], speech: list[Audio], out_path: Path) -> Audio:
        """Write the whole video atomically from the chunk videos and their speech; returns the
        whole sound track (each chunk's speech at the first one's rate)."""
        rate = speech[0].sample_rate
        whole = Audio(np.concatenate([resample(a, rate).samples for a in speech]), rate)
        partial_path = out_path.with_name(f".{out_path.name}.{os.getpid()}.partial{self.encoder.suffix}")
        try:
            self.encoder.join(chunk_paths, whole, partial_path)
            os.replace(partial_path, out_path)
        finally:
            partial_path.unlink(missing_ok=True)
        return whole

    def _encode_chunk(
        self,
        path: Path,
        *,
        audio: Audio,
        face: FaceParams,
        prepare: Callable[[], Any],
        timings: Timings,
        progress: Callable[[float], None],
    ) -> None:
        """Lip-sync `audio` on the avatar (`prepare()` gives its analysis) into a streamable
        video file at `path`."""
        fps = self.settings.fps
        n = frame_count(audio.duration_s, fps)
        frames = self.lipsync.animate(prepare(), audio, fps, face)
        with self.encoder.open(path, fps, streamable=True, speech_rate=audio.sample_rate) as writer:
            for j, frame in enumerate(timings.timed_iter("lipsync", frames)):
                with timings.measure("encode"):
                    writer.write_frame(frame)
                progress((j + 1) / n)
            with timings.measure("encode"):
                writer.write_audio(audio)
            timings.start("encode")  # closing the writer flushes the encoder
        timings.stop("encode")


def cached_speech(cache: CacheStore, key: str, make: Callable[[], Audio]) -> Audio:
    """Speech from the stage cache, with its phoneme timing (`audio.encode_speech`)."""
    data = cache.get_or_create_bytes(key, lambda: encode_speech(make()), suffix=".pcm", kind="speech")
    return decode_speech(data)


def _meta(result: RenderResult) -> dict:
    return {
        "persona": result.persona,
        "mode": result.mode,
        "speech_s": result.speech_s,
        "duration_s": result.duration_s,
        "frames": result.frames,
        "chunks": result.chunks,
    }


def _probe_meta(path: Path, plan: Plan, fps: int) -> dict:
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
