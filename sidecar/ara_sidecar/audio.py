"""The audio value passed between stages, plus decoding and resampling helpers."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from fractions import Fraction
from math import gcd
from pathlib import Path

import numpy as np

from ara_sidecar.errors import UserError

Phoneme = tuple[str, float, float]  # (IPA symbol, start s, end s)


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples in [-1, 1] at `sample_rate` Hz. `phonemes`, when the TTS knows them,
    times each phoneme in seconds from the start (what the lip-sync stage shows); None if unknown."""

    samples: np.ndarray
    sample_rate: int
    phonemes: tuple[Phoneme, ...] | None = None

    def __post_init__(self) -> None:
        if self.samples.ndim != 1:
            raise ValueError(f"audio must be mono (1-D), got shape {self.samples.shape}")
        if self.samples.dtype != np.float32:
            object.__setattr__(self, "samples", self.samples.astype(np.float32))

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def with_timing(out: Audio, source: Audio) -> Audio:
    """`out` (made from `source` by a uniform stretch, e.g. the voice stage's speed change) with
    `source`'s phoneme times scaled by the ratio of their durations."""
    if source.phonemes is None or out.phonemes is not None:
        return out
    k = out.duration_s / source.duration_s if source.duration_s > 0 else 1.0
    return replace(out, phonemes=tuple((p, a * k, b * k) for p, a, b in source.phonemes))


def resample(audio: Audio, sample_rate: int) -> Audio:
    """Band-limited polyphase resampling to `sample_rate` (phoneme times are unchanged)."""
    if audio.sample_rate == sample_rate:
        return audio
    from scipy.signal import resample_poly

    g = gcd(audio.sample_rate, sample_rate)
    out = resample_poly(audio.samples, sample_rate // g, audio.sample_rate // g)
    return Audio(np.clip(out, -1.0, 1.0).astype(np.float32), sample_rate, audio.phonemes)


SPEECH_MAGIC = b"ASP2"  # cached speech, version 2: magic, rate, metadata length, JSON metadata, PCM


def encode_speech(audio: Audio) -> bytes:
    """`audio` as cached speech bytes: a header (with the phoneme timing) and float32 PCM."""
    meta = json.dumps({"phonemes": audio.phonemes}, ensure_ascii=False).encode()
    meta += b" " * (-len(meta) % 4)  # keep the samples 4-byte aligned
    return SPEECH_MAGIC + struct.pack("<II", audio.sample_rate, len(meta)) + meta + audio.samples.tobytes()


def decode_speech(data: bytes) -> Audio:
    """The inverse of `encode_speech`; also reads version 1 (a sample-rate header, then PCM)."""
    if data[:4] != SPEECH_MAGIC:
        (rate,) = struct.unpack_from("<I", data)
        return Audio(np.frombuffer(data, dtype=np.float32, offset=4).copy(), rate)
    rate, length = struct.unpack_from("<II", data, 4)
    phonemes = json.loads(data[12 : 12 + length])["phonemes"]
    samples = np.frombuffer(data, dtype=np.float32, offset=12 + length).copy()
    return Audio(samples, rate, None if phonemes is None else tuple((p, a, b) for p, a, b in phonemes))


def silence(duration_s: float, sample_rate: int) -> np.ndarray:
    return np.zeros(round(duration_s * sample_rate), dtype=np.float32)


MAX_DECODE_RATE = 48_000  # Hz: decoded speech above this rate is resampled to it (bounds memory)


def load_audio(path: Path, max_s: float | None = None) -> Audio:
    """Decode any audio file FFmpeg reads (WAV, FLAC, OGG, MP3, …) to mono float32, at its own
    sample rate up to `MAX_DECODE_RATE`. With `max_s`, a file longer than that many seconds is
    refused (`limits.max_audio_s`): by its header before anything is decoded, else as soon as the
    decoded part passes the limit, so memory never grows beyond `max_s` of samples."""
    parts, rates = [], set()
    for samples, rate in _decoded(path, max_s, resampled=True):
        parts.append(samples)
        rates.add(rate)
    if not any(len(part) for part in parts):
        raise UserError(f"{path} contains no audio samples")
    samples = np.clip(np.concatenate(parts), -1.0, 1.0)
    return Audio(samples.astype(np.float32, copy=False), rates.pop())


def check_audio(path: Path, max_s: float, name: str | None = None) -> float:
    """Check that an audio file decodes, holds samples and is at most `max_s` seconds long, without
    keeping what it decodes (at most one compressed frame's samples are in memory at a time).
    Returns its duration in seconds. `name` is the file's name in messages (default: its path)."""
    seconds = 0.0
    for samples, rate in _decoded(path, max_s, resampled=False, name=name):
        seconds += samples / rate
    return seconds


def _decoded(path: Path, max_s: float | None, *, resampled: bool, name: str | None = None):
    """Yield (mono float32 samples at min(rate, MAX_DECODE_RATE), rate) per decoded frame, or with
    `resampled=False` (sample count, rate) without converting anything. Raises UserError for a file
    that is missing, not audio, empty, or longer than `max_s` (from its header, or while decoding)."""
    import av

    path = Path(path)
    what = name or str(path)
    if not path.is_file():
        raise UserError(f"audio file not found: {path}")
    seen = 0.0  # seconds decoded so far
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise UserError(f"{what} has no audio stream")
            stream = container.streams.audio[0]
            declared = _declared_s(container, stream)
            if max_s is not None and declared is not None and declared > max_s:
                raise _too_long(what, declared, max_s)
            rate = int(Fraction(stream.rate or stream.codec_context.sample_rate or 0))
            out_rate = min(rate, MAX_DECODE_RATE) or MAX_DECODE_RATE
            resampler = av.AudioResampler(format="flt", layout="mono", rate=out_rate) if resampled else None
            for frame in container.decode(stream):
                seen += frame.samples / (frame.sample_rate or rate or 1)
                if max_s is not None and seen > max_s:
                    raise _too_long(what, None, max_s)
                if resampler is None:
                    if frame.samples:
                        yield frame.samples, frame.sample_rate or rate
                    continue
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1), out_rate
            if resampler is not None:
                for out in resampler.resample(None):
                    yield out.to_ndarray().reshape(-1), out_rate
    except av.error.FFmpegError as exc:
        raise UserError(f"cannot decode audio file {what}: {exc}") from None
    if seen == 0:
        raise UserError(f"{what} contains no audio samples")


def _declared_s(container, stream) -> float | None:
    """The duration the file's header declares, in seconds (None where it declares none)."""
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _too_long(what: str, declared: float | None, max_s: float) -> UserError:
    length = f"{declared:.0f} s long, over" if declared is not None else "longer than"
    return UserError(f"audio {what} is {length} the limit of {max_s:g} s (limits.max_audio_s)")
