"""Browser-playable MP4: H.264 (yuv420p, High profile, libx264) + AAC, with the `moov` atom
at the front (`+faststart`) so playback starts before the download ends.

OpenCV's VideoWriter cannot write such H.264; PyAV ships FFmpeg with libx264 inside. Audio
is muxed chunk by chunk after each chunk's frames (so the file is interleaved) and padded
with silence at the end to exactly the video's duration.
"""

from __future__ import annotations

import contextlib
import errno
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from ara_sidecar.audio import Audio, resample
from ara_sidecar.config import EncoderSettings
from ara_sidecar.encode.base import Encoder, VideoWriter
from ara_sidecar.errors import UserError

AUDIO_BLOCK = 8192  # samples per AudioFrame handed to the AAC encoder


class Mp4Encoder(Encoder):
    name = "mp4"
    suffix = ".mp4"

    def open(self, out_path: Path, fps: int) -> VideoWriter:
        return Mp4Writer(Path(out_path), fps, self.settings.encoder)

    def fingerprint(self) -> dict:
        return {"backend": self.name, **self.settings.encoder.model_dump()}


class Mp4Writer(VideoWriter):
    def __init__(self, path: Path, fps: int, cfg: EncoderSettings):
        import av

        self.path, self.fps, self.cfg = path, fps, cfg
        self.frames = 0
        self.samples = 0  # audio samples written, at cfg.audio_sample_rate
        try:
            self._box = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
        except OSError as exc:
            raise _io_error(path, exc) from None
        self._video = None
        # FFmpeg's "fast" AAC coder is several times quicker than its default and transparent
        # for speech at these bit rates.
        self._audio = self._box.add_stream("aac", rate=cfg.audio_sample_rate, options={"aac_coder": "fast"})
        self._audio.bit_rate = cfg.audio_bitrate_kbps * 1000
        self._audio.layout = "mono"

    def write_frame(self, frame: np.ndarray) -> None:
        import av
        import cv2

        if self._video is None:
            self._video = self._open_video(frame.shape)
        yuv = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)
        self._mux(self._video.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")))
        self.frames += 1

    def write_audio(self, audio: Audio) -> None:
        self._write_pcm(resample(audio, self.cfg.audio_sample_rate).samples)

    def close(self) -> None:
        if self._video is None:
            self.abort()
            raise ValueError("no video frames were written")
        target = round(self.frames * self.cfg.audio_sample_rate / self.fps)
        if self.samples < target:
            self._write_pcm(np.zeros(target - self.samples, dtype=np.float32))
        try:
            self._mux(self._video.encode(None))
            self._mux(self._audio.encode(None))
            self._box.close()
        except OSError as exc:
            self.abort()
            raise _io_error(self.path, exc) from None

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the file is discarded; a second error adds nothing
            self._box.close()
        self.path.unlink(missing_ok=True)

    def _open_video(self, shape: tuple[int, ...]):
        height, width = shape[:2]
        options = {"crf": str(self.cfg.crf), "preset": self.cfg.preset, "profile": "high"}
        if self.cfg.x264_params:
            options["x264-params"] = self.cfg.x264_params
        stream = self._box.add_stream("libx264", rate=Fraction(self.fps, 1), options=options)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.thread_count = self.cfg.threads or min(4, os.cpu_count() or 1)
        return stream

    def _write_pcm(self, pcm: np.ndarray) -> None:
        import av

        rate = self.cfg.audio_sample_rate
        for start in range(0, len(pcm), AUDIO_BLOCK):
            block = np.ascontiguousarray(pcm[start : start + AUDIO_BLOCK].reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = self.samples
            frame.time_base = Fraction(1, rate)
            self._mux(self._audio.encode(frame))
            self.samples += block.shape[1]

    def _mux(self, packets) -> None:
        try:
            self._box.mux(packets)
        except OSError as exc:
            self.abort()
            raise _io_error(self.path, exc) from None


def _io_error(path: Path, exc: OSError) -> UserError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"disk full: cannot write {path}")
    return UserError(f"cannot write {path}: {exc.strerror or exc}")
