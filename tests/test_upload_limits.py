"""Uploads cannot exhaust the server's memory: audio is checked by its header and decoded frame by
frame up to the length limit, never whole; images are checked by their header, decoded a few at a
time and scaled down before they are converted."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from ara_sidecar.audio import MAX_DECODE_RATE, check_audio, load_audio
from ara_sidecar.errors import UserError
from ara_sidecar.pipeline import Pipeline
from ara_sidecar.server.uploads import CHECKS_AT_ONCE, Uploads

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


# -- images -----------------------------------------------------------------------------------


def png16(width: int, height: int) -> bytes:
    """A black 16-bit RGB PNG, compressed row by row (6300×6300 is 231 KB, 238 MB of pixel data)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(1 + width * 6)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


BOMB_SIDE = 6300  # 39.7 Mpixels: just under limits.max_avatar_pixels


@pytest.fixture(scope="module")
def bomb_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(png16(BOMB_SIDE, BOMB_SIDE))
    return path


def run_python(script: str, *args: str) -> dict:
    """Run `script` in a fresh interpreter (its own peak memory); it prints one JSON line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


PEAK_RSS = """
    import json, resource, sys
    from ara_sidecar.avatar import decode_avatar

    data = open(sys.argv[1], "rb").read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    avatar = decode_avatar(data, "bomb", max_pixels=40_000_000, max_side=1024)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"shape": avatar.image.shape, "peak_mb": peak / 1024}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_a_large_image_is_scaled_down_before_it_is_converted(bomb_png):
    out = run_python(PEAK_RSS, str(bomb_png))
    assert out["shape"] == [1024, 1024, 3]
    decoded_mb = BOMB_SIDE * BOMB_SIDE * 4 / MB  # one decoded copy: 151 MB
    assert out["peak_mb"] < 1.3 * decoded_mb  # it was 2.2 times (the RGB copy beside the decoded one)


def test_image_uploads_are_checked_a_few_at_a_time(settings, tmp_path, monkeypatch):
    import asyncio
    import threading
    import time

    import httpx

    from ara_sidecar.server import uploads as uploads_module
    from ara_sidecar.server.app import create_app

    running, most = 0, 0
    lock = threading.Lock()

    def slow_decode(*args, **kwargs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)
        with lock:
            running -= 1
        raise UserError("no face here")

    monkeypatch.setattr(uploads_module, "decode_avatar", slow_decode)
    app = create_app(settings.with_overrides(**{"cache.dir": str(tmp_path)}))

    async def upload_ten() -> list[int]:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7870") as client:
            uploads = [
                client.post("/v1/avatars", files={"file": (f"{i}.png", f"image {i}".encode(), "image/png")})
                for i in range(10)
            ]
            return [r.status_code for r in await asyncio.gather(*uploads)]

    assert asyncio.run(upload_ten()) == [422] * 10
    assert most == uploads_module.CHECKS_AT_ONCE


BURST = """
    import asyncio, io, json, resource, sys
    import httpx
    from PIL import Image
    from ara_sidecar.config import load_settings
    from ara_sidecar.server.app import create_app

    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

    app = create_app(load_settings().with_overrides(**{"cache.dir": sys.argv[2]}))
    bomb = open(sys.argv[1], "rb").read()

    async def upload(images):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7870") as c:
            files = [{"file": (f"{i}.png", data, "image/png")} for i, data in enumerate(images)]
            posts = [c.post("/v1/avatars", files=f) for f in files]
            return [r.status_code for r in await asyncio.gather(*posts)]

    grey = io.BytesIO()
    Image.new("RGB", (1024, 1024), (128, 128, 128)).save(grey, "PNG")
    asyncio.run(upload([grey.getvalue()]))  # loads the face detector
    before, peak_before = rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    statuses = asyncio.run(upload([bomb] * int(sys.argv[3])))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - peak_before
    print(json.dumps({"statuses": statuses, "peak_mb": peak, "kept_mb": rss_mb() - before}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; trims glibc's heap")
def test_a_burst_of_large_image_uploads_is_bounded_and_given_back(bomb_png, tmp_path):
    count = 6
    out = run_python(BURST, str(bomb_png), str(tmp_path / "cache"), str(count))
    assert out["statuses"] == [422] * count  # black: no face
    decoded_mb = BOMB_SIDE * BOMB_SIDE * 4 / MB
    assert out["peak_mb"] < (CHECKS_AT_ONCE + 1) * decoded_mb  # was about 2.2 × 6 of them
    assert out["kept_mb"] < 60  # the decoded images' memory went back to the system
