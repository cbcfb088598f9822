"""The MP4 encoder writes H.264 yuv420p + AAC with matching durations, front-loaded moov."""

import numpy as np
import pytest
from media import probe

from ara_sidecar.audio import Audio
from ara_sidecar.encode.mp4 import Mp4Encoder


def _frames(n, h=96, w=128):
    for i in range(n):
        f = np.full((h, w, 3), 40, np.uint8)
        f[:, : (i * 7) % w] = 200  # a moving edge, so frames differ
        yield f


@pytest.mark.parametrize("seconds", [0.5, 2.37])
def test_streams_and_durations(settings, tmp_path, seconds):
    rate = 22050
    t = np.arange(int(seconds * rate)) / rate
    audio = Audio((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    n = int(np.ceil(seconds * 25))
    out = tmp_path / "x.mp4"
    Mp4Encoder(settings).encode(_frames(n), n, audio, 25, out)
    p = probe(out)
    assert (p.video_codec, p.audio_codec, p.pix_fmt) == ("h264", "aac", "yuv420p")
    assert len(p.frames) == n
    assert abs(p.video_s - n / 25) < 1e-6
    assert abs(p.video_s - p.audio_s) <= 0.04
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "faststart: moov must precede mdat"
    # the tone survives the round trip
    spectrum = np.abs(np.fft.rfft(p.audio[: p.audio_rate]))
    assert abs(np.argmax(spectrum) * p.audio_rate / len(p.audio[: p.audio_rate]) - 220) < 3


def test_wrong_frame_count_fails_and_leaves_nothing(settings, tmp_path):
    audio = Audio(np.zeros(22050, np.float32), 22050)
    out = tmp_path / "short.mp4"
    with pytest.raises(ValueError, match="expected 25"):
        Mp4Encoder(settings).encode(_frames(10), 25, audio, 25, out)
    assert not out.exists()
