"""Streaming audio encoders for the OpenAI-compatible speech endpoint: float32 speech in, the
bytes of `mp3`, `opus` (in Ogg), `aac` (ADTS), `flac`, `wav` or `pcm` out, piece by piece.

Everything is 24 kHz mono, as OpenAI sends it; `pcm` is raw 16-bit little-endian samples, and
`wav` is that after a header whose sizes are unknown (0xFFFFFFFF: the stream's length is not known
when it starts). The others are encoded by PyAV's FFmpeg (libmp3lame, libopus, aac, flac), each
packet handed on as soon as it is muxed (`flush_packets`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import av
import numpy as np

RATE = 24_000  # Hz, every format


@dataclass(frozen=True)
class Format:
    media_type: str
    container: str | None = None  # PyAV's muxer (None: written here)
    codec: str | None = None
    bit_rate: int | None = None


FORMATS = {
    "mp3": Format("audio/mpeg", "mp3", "libmp3lame", 64_000),
    "opus": Format("audio/ogg", "ogg", "libopus", 32_000),
    "aac": Format("audio/aac", "adts", "aac", 64_000),
    "flac": Format("audio/flac", "flac", "flac"),
    "wav": Format("audio/wav"),
    "pcm": Format("audio/pcm"),
}


class _Sink:
    """A write-only file for PyAV's muxer: what it writes waits here until taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def _pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def wav_header() -> bytes:
    """A 24 kHz 16-bit mono WAV header for a stream of unknown length."""
    fmt = struct.pack("<HHIIHH", 1, 1, RATE, RATE * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + (b"data" + struct.pack("<I", 0xFFFFFFFF))
    )


class StreamEncoder:
    """Encodes 24 kHz float32 mono speech into `response_format`, a piece at a time: `encode`
    returns the bytes ready so far (maybe none), `close` the rest. Not thread-safe; one per stream."""

    def __init__(self, response_format: str):
        self.format = FORMATS[response_format]
        self._raw = self.format.container is None
        self._header = wav_header() if response_format == "wav" else b""
        if self._raw:
            return
        self._sink = _Sink()
        options = {"flush_packets": "1"}
        if self.format.container == "ogg":
            options["page_duration"] = "100000"  # µs: an Ogg page at least every 0.1 s of sound
        self._box = av.open(self._sink, "w", format=self.format.container, options=options)
        self._stream = self._box.add_stream(self.format.codec, rate=RATE, layout="mono")
        if self.format.bit_rate:
            self._stream.codec_context.bit_rate = self.format.bit_rate

    def encode(self, samples: np.ndarray) -> bytes:
        if self._raw:
            header, self._header = self._header, b""
            return header + _pcm16(samples)
        if len(samples):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples, dtype=np.float32)[None, :], format="flt", layout="mono"
            )
            frame.sample_rate = RATE
            for packet in self._stream.encode(frame):
                self._box.mux(packet)
        return self._sink.take()

    def close(self) -> bytes:
        if self._raw:
            header, self._header = self._header, b""
            return header
        for packet in self._stream.encode(None):
            self._box.mux(packet)
        self._box.close()
        return self._sink.take()

    def abort(self) -> None:
        """Release the encoder without finishing the stream."""
        if not self._raw:
            self._box.close()
