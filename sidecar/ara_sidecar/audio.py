"""The audio value passed between stages, plus decoding and resampling helpers."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from pathlib import Path

import numpy as np

from ara_sidecar.errors import UserError


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples in [-1, 1] at `sample_rate` Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 1:
            raise ValueError(f"audio must be mono (1-D), got shape {self.samples.shape}")
        if self.samples.dtype != np.float32:
            object.__setattr__(self, "samples", self.samples.astype(np.float32))

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def resample(audio: Audio, sample_rate: int) -> Audio:
    """Band-limited polyphase resampling to `sample_rate`."""
    if audio.sample_rate == sample_rate:
        return audio
    from scipy.signal import resample_poly

    g = gcd(audio.sample_rate, sample_rate)
    out = resample_poly(audio.samples, sample_rate // g, audio.sample_rate // g)
    return Audio(np.clip(out, -1.0, 1.0).astype(np.float32), sample_rate)


def silence(duration_s: float, sample_rate: int) -> np.ndarray:
    return np.zeros(round(duration_s * sample_rate), dtype=np.float32)


def load_audio(path: Path) -> Audio:
    """Decode any audio file FFmpeg reads (WAV, FLAC, OGG, MP3, …) to mono float32."""
    import av

    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise UserError(f"{path} has no audio stream")
            stream = container.streams.audio[0]
            rate = stream.rate or stream.codec_context.sample_rate
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            parts = [
                out.to_ndarray().reshape(-1)
                for frame in container.decode(stream)
                for out in resampler.resample(frame)
            ]
            parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except av.error.FFmpegError as exc:
        raise UserError(f"cannot decode audio file {path}: {exc}") from None
    if not parts or sum(len(p) for p in parts) == 0:
        raise UserError(f"{path} contains no audio samples")
    samples = np.clip(np.concatenate(parts), -1.0, 1.0)
    return Audio(samples.astype(np.float32), int(Fraction(rate)))
