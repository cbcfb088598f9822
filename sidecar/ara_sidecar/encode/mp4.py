"""Browser-playable MP4: H.264 (yuv420p, High profile via libx264) + AAC, with the
`moov` atom moved to the front (`+faststart`) so playback starts before the download ends.

OpenCV's VideoWriter cannot write such H.264; PyAV ships FFmpeg with libx264 inside.
The audio is padded with silence (or trimmed) to exactly n_frames / fps, so video and
audio durations agree to within one AAC frame.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ara_sidecar.audio import Audio, resample
from ara_sidecar.encode.base import Encoder
from ara_sidecar.errors import UserError


class Mp4Encoder(Encoder):
    name = "mp4"
    suffix = ".mp4"

    def encode(
        self,
        frames: Iterable[np.ndarray],
        n_frames: int,
        audio: Audio,
        fps: int,
        out_path: Path,
        on_frame: Callable[[int], None] | None = None,
    ) -> None:
        import av

        cfg = self.settings.encoder
        audio = resample(audio, cfg.audio_sample_rate)
        pcm = _fit_length(audio.samples, round(n_frames * cfg.audio_sample_rate / fps))
        out_path = Path(out_path)
        try:
            with av.open(str(out_path), mode="w", format="mp4", options={"movflags": "+faststart"}) as box:
                video = None
                astream = box.add_stream("aac", rate=cfg.audio_sample_rate)
                astream.bit_rate = cfg.audio_bitrate_kbps * 1000
                astream.layout = "mono"
                for i, frame in enumerate(frames):
                    if i >= n_frames:
                        raise ValueError(f"lip-sync stage produced more than the {n_frames} frames expected")
                    if video is None:
                        video = _video_stream(box, frame.shape, fps, cfg.crf, cfg.preset)
                    yuv = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)
                    box.mux(video.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")))
                    if on_frame is not None:
                        on_frame(i)
                if video is None or i + 1 != n_frames:
                    got = 0 if video is None else i + 1
                    raise ValueError(f"lip-sync stage produced {got} frames, expected {n_frames}")
                box.mux(video.encode(None))
                _write_audio(box, astream, pcm)
        except OSError as exc:
            out_path.unlink(missing_ok=True)
            raise UserError(f"cannot write {out_path}: {exc.strerror or exc}") from None
        except BaseException:
            out_path.unlink(missing_ok=True)
            raise


def _fit_length(samples: np.ndarray, n: int) -> np.ndarray:
    if len(samples) >= n:
        return samples[:n]
    return np.concatenate([samples, np.zeros(n - len(samples), dtype=np.float32)])


def _video_stream(box, shape: tuple[int, ...], fps: int, crf: int, preset: str):
    height, width = shape[:2]
    stream = box.add_stream(
        "libx264",
        rate=Fraction(fps, 1),
        options={"crf": str(crf), "preset": preset, "profile": "high", "tune": "stillimage"},
    )
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.thread_count = min(4, os.cpu_count() or 1)
    return stream


def _write_audio(box, stream, pcm: np.ndarray) -> None:
    import av

    block = 1024 * 8
    rate = stream.codec_context.sample_rate
    for start in range(0, len(pcm), block):
        chunk = pcm[start : start + block].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        box.mux(stream.encode(frame))
    box.mux(stream.encode(None))
