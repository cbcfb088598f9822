"""Test media: reading rendered MP4s back for assertions (PyAV), and a WAV file to upload."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Probe:
    video_codec: str
    audio_codec: str
    pix_fmt: str
    width: int
    height: int
    video_s: float
    audio_s: float
    frames: list[np.ndarray]  # decoded RGB frames
    audio: np.ndarray  # decoded mono float samples
    audio_rate: int


def probe(path: Path, decode_frames: bool = True) -> Probe:
    import av

    with av.open(str(path)) as box:
        v, a = box.streams.video[0], box.streams.audio[0]
        info = dict(
            video_codec=v.codec_context.name,
            audio_codec=a.codec_context.name,
            pix_fmt=v.codec_context.pix_fmt,
            width=v.codec_context.width,
            height=v.codec_context.height,
            audio_rate=a.codec_context.sample_rate,
        )
        frames = [f.to_ndarray(format="rgb24") for f in box.decode(v)] if decode_frames else []
    with av.open(str(path)) as box:
        a = box.streams.audio[0]
        samples = [f.to_ndarray().mean(axis=0) for f in box.decode(a)]
    audio = np.concatenate(samples).astype(np.float32)
    with av.open(str(path)) as box:
        v, a = box.streams.video[0], box.streams.audio[0]
        video_s = float(v.duration * v.time_base)
        audio_s = float(a.duration * a.time_base)
    return Probe(video_s=video_s, audio_s=audio_s, frames=frames, audio=audio, **info)


def wav(seconds: float = 1.5, rate: int = 16000) -> bytes:
    """A mono 16-bit WAV file: a 220 Hz tone switched on and off three times a second."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()
