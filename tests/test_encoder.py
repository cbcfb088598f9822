"""The MP4 writer produces H.264 yuv420p + AAC with matching durations and a front-loaded moov."""

from pathlib import Path

import numpy as np
import pytest
from media import probe

from ara_sidecar.audio import Audio
from ara_sidecar.encode.mp4 import Mp4Encoder
from ara_sidecar.errors import UserError


def _frame(i, h=96, w=128):
    f = np.full((h, w, 3), 40, np.uint8)
    f[:, : (i * 7) % w] = 200  # a moving edge, so frames differ
    return f


def _tone(seconds, rate=22050, hz=220.0):
    t = np.arange(round(seconds * rate)) / rate
    return Audio((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate)


@pytest.mark.parametrize("chunks", [[0.5], [1.2, 0.44, 0.8]])
def test_streams_and_durations(settings, tmp_path, chunks):
    out = tmp_path / "x.mp4"
    n = 0
    with Mp4Encoder(settings).open(out, 25) as writer:
        for seconds in chunks:
            for _ in range(round(seconds * 25)):
                writer.write_frame(_frame(n))
                n += 1
            writer.write_audio(_tone(seconds))
    p = probe(out)
    assert (p.video_codec, p.audio_codec, p.pix_fmt) == ("h264", "aac", "yuv420p")
    assert len(p.frames) == n
    assert abs(p.video_s - n / 25) < 1e-6
    assert abs(p.video_s - p.audio_s) <= 0.04
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "faststart: moov must precede mdat"
    second = p.audio[: p.audio_rate]
    peak_hz = np.argmax(np.abs(np.fft.rfft(second))) * p.audio_rate / len(second)
    assert abs(peak_hz - 220) < 3, "the tone survives the round trip"


def test_short_audio_is_padded_to_the_video(settings, tmp_path):
    out = tmp_path / "pad.mp4"
    with Mp4Encoder(settings).open(out, 25) as writer:
        for i in range(50):
            writer.write_frame(_frame(i))
        writer.write_audio(_tone(0.5))
    p = probe(out, decode_frames=False)
    assert abs(p.audio_s - 2.0) <= 0.04


def test_error_inside_the_writer_leaves_nothing(settings, tmp_path):
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError), Mp4Encoder(settings).open(out, 25) as writer:
        writer.write_frame(_frame(0))
        raise RuntimeError("lip-sync failed")
    assert not out.exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_disk_full_is_a_clear_error(settings, tmp_path):
    """Writes to /dev/full fail with ENOSPC, as on a full disk (reached through a symlink,
    so that the writer's clean-up removes only the link)."""
    out = tmp_path / "full.mp4"
    out.symlink_to("/dev/full")
    with pytest.raises(UserError, match="disk full"), Mp4Encoder(settings).open(out, 25) as writer:
        for i in range(200):
            writer.write_frame(_frame(i))
        writer.write_audio(_tone(8.0))
    assert not out.exists() and not out.is_symlink()
    assert Path("/dev/full").exists()
