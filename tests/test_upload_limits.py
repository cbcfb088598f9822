"""Uploads cannot exhaust the server's memory: audio is checked by its header and decoded frame by
frame up to the length limit, never whole; images are checked by their header, decoded a few at a
time and scaled down before they are converted."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest

from ara_sidecar.audio import MAX_DECODE_RATE, check_audio, load_audio
from ara_sidecar.errors import UserError
from ara_sidecar.pipeline import Pipeline
from ara_sidecar.server.uploads import Uploads

MB = 2**20


def flac_silence(seconds: float, rate: int = 8000, declared: bool = True) -> bytes:
    """A FLAC file of digital silence (about 180 KB per 20 minutes). Without `declared` its header
    gives no length (STREAMINFO's total sample count 0, as a streamed FLAC has)."""
    import av

    out = io.BytesIO()
    with av.open(out, "w", format="flac") as box:
        stream = box.add_stream("flac", rate=rate, layout="mono")
        stream.format = "s16"
        block = np.zeros((1, 460_800), dtype=np.int16)
        done, total = 0, int(seconds * rate)
        while done < total:
            frame = av.AudioFrame.from_ndarray(block[:, : total - done], format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, done
            for packet in stream.encode(frame):
                box.mux(packet)
            done += frame.samples
        for packet in stream.encode(None):
            box.mux(packet)
    data = bytearray(out.getvalue())
    if not declared:  # STREAMINFO at byte 8: the 36-bit sample count ends its 18th byte
        fields = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)
        data[18:26] = fields.to_bytes(8, "big")
    return bytes(data)


def peak_traced_bytes(call) -> tuple[object, int]:
    """`call()`'s result (or the exception it raised) and the peak of Python and NumPy allocations."""
    tracemalloc.start()
    try:
        try:
            result = call()
        except Exception as exc:  # returned for the caller to check
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def uploads(settings, tmp_path) -> Uploads:
    return Uploads(Pipeline(settings.with_overrides(**{"cache.dir": str(tmp_path / "cache")})))


# -- audio ------------------------------------------------------------------------------------


def test_an_audio_upload_over_the_limit_is_refused_by_its_header_before_decoding(uploads):
    data = flac_silence(1200)  # 20 minutes, twice limits.max_audio_s (600): 38 MB as float32
    assert len(data) < 300_000
    error, peak = peak_traced_bytes(lambda: uploads.add_audio(data, "silence.flac"))
    assert isinstance(error, UserError)
    assert "'silence.flac' is 1200 s long, over the limit of 600 s (limits.max_audio_s)" in str(error)
    assert peak < 2 * MB  # nothing decoded (it was 40 MB)
    assert uploads.cache.stats()["entries"] == 0


def test_an_audio_upload_without_a_length_in_its_header_is_decoded_only_up_to_the_limit(uploads):
    data = flac_silence(1200, declared=False)
    error, peak = peak_traced_bytes(lambda: uploads.add_audio(data, "stream.flac"))
    assert isinstance(error, UserError)
    assert "'stream.flac' is longer than the limit of 600 s (limits.max_audio_s)" in str(error)
    assert peak < 2 * MB  # decoded frame by frame, nothing kept
    assert uploads.cache.stats()["entries"] == 0


def test_an_audio_upload_within_the_limit_is_stored(uploads):
    data = flac_silence(590, declared=False)
    audio_id = uploads.add_audio(data, "long.flac")
    assert uploads.audio_path(audio_id).read_bytes() == data


def test_the_worker_decodes_audio_only_up_to_the_limit(tmp_path):
    path = tmp_path / "stream.flac"
    path.write_bytes(flac_silence(1200, declared=False))
    error, peak = peak_traced_bytes(lambda: load_audio(path, max_s=10))
    assert isinstance(error, UserError) and "longer than the limit of 10 s" in str(error)
    assert peak < 2 * MB  # 10 s at 8 kHz, not the 38 MB of the whole file
    assert check_audio(tmp_path / "stream.flac", 1300) == pytest.approx(1200)


def test_speech_above_48_khz_is_decoded_at_48_khz(tmp_path):
    import wave

    path = tmp_path / "hi-res.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(192_000)
        w.writeframes(np.zeros(192_000, dtype="<i2").tobytes())
    audio = load_audio(path)
    assert audio.sample_rate == MAX_DECODE_RATE and audio.duration_s == pytest.approx(1.0, abs=0.01)
