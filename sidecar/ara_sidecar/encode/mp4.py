"""Browser-playable MP4: H.264 (yuv420p, High profile, libx264) + AAC.

Whole videos have the `moov` atom at the front (`+faststart`) so playback starts before the
download ends; streamable chunk files are fragmented MP4 (an empty `moov`, then `moof`+`mdat`
per key frame), which a browser's Media Source Extensions accept. OpenCV's VideoWriter cannot
write such H.264; PyAV ships FFmpeg with libx264 inside. Audio is muxed after each piece's
frames (so the file is interleaved) and padded with silence to exactly the video's duration.
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
MOVFLAGS = {False: "+faststart", True: "+frag_keyframe+empty_moov+default_base_moof"}
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


class Mp4Encoder(Encoder):
    name = "mp4"
    suffix = ".mp4"

    def open(
        self, out_path: Path, fps: int, *, streamable: bool = False, speech_rate: int | None = None
    ) -> Mp4Writer:
        rate = self.audio_rate(speech_rate)
        return Mp4Writer(Path(out_path), fps, self.settings.encoder, rate, streamable=streamable)

    def audio_rate(self, speech_rate: int | None) -> int:
        """The AAC sample rate: `encoder.audio_sample_rate`, or else the speech's own (no
        resampling, and less to encode at a TTS's usual 22.05 or 24 kHz) when AAC allows it."""
        configured = self.settings.encoder.audio_sample_rate
        if configured is not None:
            return configured
        return speech_rate if speech_rate in AAC_RATES else 48000

    def join(self, parts: list[Path], audio: Audio, out_path: Path) -> None:
        import av

        rate = self.audio_rate(audio.sample_rate)
        pcm = resample(audio, rate).samples
        with Mp4Writer(Path(out_path), self.settings.fps, self.settings.encoder, rate) as writer:
            for part in parts:
                with av.open(str(part)) as box:
                    writer.copy_video(box.streams.video[0], box.demux(box.streams.video[0]))
                # the sound of this part's frames next to them, so the file is interleaved
                end = round(writer.frames * rate / writer.fps)
                writer.write_pcm(pcm[writer.samples : end])

    def mime_type(self, path: Path) -> str:
        import av

        with av.open(str(path)) as box:
            avcc = bytes(box.streams.video[0].codec_context.extradata or b"")
        # avc1.PPCCLL: profile, constraint flags and level from the avcC record (bytes 1-3)
        video = f"avc1.{avcc[1:4].hex()}" if len(avcc) >= 4 else "avc1.640028"
        return f'video/mp4; codecs="{video}, mp4a.40.2"'

    def fingerprint(self) -> dict:
        return {"backend": self.name, **self.settings.encoder.model_dump()}


class Mp4Writer(VideoWriter):
    def __init__(self, path: Path, fps: int, cfg: EncoderSettings, rate: int, *, streamable: bool = False):
        import av

        self.path, self.fps, self.cfg, self.rate, self.streamable = path, fps, cfg, rate, streamable
        self.frames = 0
        self.samples = 0  # audio samples written, at `rate`
        try:
            self._box = av.open(str(path), mode="w", format="mp4", options={"movflags": MOVFLAGS[streamable]})
        except OSError as exc:
            raise _io_error(path, exc) from None
        self._video = None
        # FFmpeg's "fast" AAC coder is several times quicker than its default and transparent
        # for speech at these bit rates.
        self._audio = self._box.add_stream("aac", rate=rate, options={"aac_coder": "fast"})
        self._audio.bit_rate = cfg.audio_bitrate_kbps * 1000
        self._audio.layout = "mono"

    def write_frame(self, frame: np.ndarray) -> None:
        import av
        import cv2

        if self._video is None:
            self._video = self._open_video(frame.shape)
        picture = av.VideoFrame.from_ndarray(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
        picture.pts = self.frames  # in the codec time base, 1 / fps: frame i shows at i / fps
        self._mux(self._video.encode(picture))
        self.frames += 1

    def copy_video(self, stream, packets) -> None:
        """Append the encoded frames of another file's video `stream` (made with the same size and
        settings), shifted to start where the frames written so far end."""
        if self._video is None:
            self._video = self._box.add_stream_from_template(stream)
        offset = round(Fraction(self.frames, self.fps) / stream.time_base)
        for packet in packets:
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            packet.pts += offset
            packet.dts += offset
            packet.stream = self._video
            self._mux(packet)
            self.frames += 1

    def write_audio(self, audio: Audio) -> None:
        self.write_pcm(resample(audio, self.rate).samples)

    def close(self) -> None:
        if self._video is None:
            self.abort()
            raise ValueError("no video frames were written")
        target = round(self.frames * self.rate / self.fps)
        if self.samples < target:
            self.write_pcm(np.zeros(target - self.samples, dtype=np.float32))
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
        params = [self.cfg.x264_params] if self.cfg.x264_params else []
        if self.streamable:
            # Fragmented MP4 has no edit list to hide B-frame reordering delay: without B-frames
            # the first frame shows at time 0, in step with the audio.
            params.append("bframes=0")
        if params:
            options["x264-params"] = ":".join(params)
        stream = self._box.add_stream("libx264", rate=Fraction(self.fps, 1), options=options)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.thread_count = self.cfg.threads or min(4, os.cpu_count() or 1)
        return stream

    def write_pcm(self, pcm: np.ndarray) -> None:
        """Append mono float PCM at the writer's `rate`."""
        import av

        rate = self.rate
        # AAC starts with a frame of encoder delay. A whole MP4 hides it with an edit list;
        # a fragmented one has none, and FFmpeg would shift the video to make room, so there the
        # audio starts one AAC frame (23 ms) late instead: imperceptible, and in step at the seams.
        delay = self._audio.codec_context.frame_size if self.streamable else 0
        for start in range(0, len(pcm), AUDIO_BLOCK):
            block = np.ascontiguousarray(pcm[start : start + AUDIO_BLOCK].reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
            frame.sample_rate = rate
            frame.pts = self.samples + delay
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
