"""Every bad input gives a one-line reason, a non-zero exit and no traceback.

These run the installed `ara-sidecar` command as a user would."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(sys.executable).with_name("ara-sidecar")


def run(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def assert_user_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ara-sidecar: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "out.mp4"


def test_empty_text(out):
    assert_user_error(run("render", "--text", "", "-o", str(out)), "text is empty")


def test_whitespace_only_from_stdin(out):
    assert_user_error(run("render", "-o", str(out), stdin="  \n\t "), "text is empty")


def test_text_over_limit_names_the_limit(out):
    result = run("render", "--text", "a" * 200, "-o", str(out), env={"ARA_LIMITS_MAX_TEXT_CHARS": "100"})
    assert_user_error(result, "limit of 100", "limits.max_text_chars")


def test_missing_avatar(out, tmp_path):
    assert_user_error(
        run("render", "--text", "hi", "--avatar", str(tmp_path / "nope.png"), "-o", str(out)),
        "avatar not found",
        "nope.png",
    )


def test_avatar_not_an_image(out, tmp_path):
    bogus = tmp_path / "notes.png"
    bogus.write_text("this is not a picture")
    assert_user_error(
        run("render", "--text", "hi", "--avatar", str(bogus), "-o", str(out)),
        "notes.png",
        "not a readable image",
    )


def test_truncated_image(out, tmp_path):
    from ara_sidecar.config import project_root

    data = (project_root() / "personas" / "ara" / "avatar.png").read_bytes()
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[: len(data) // 3])
    assert_user_error(run("render", "--text", "hi", "--avatar", str(broken), "-o", str(out)), "broken.png")


def test_no_face(out, tmp_path):
    from PIL import Image

    y, x = np.mgrid[0:256, 0:256]
    flat = tmp_path / "gradient.png"
    Image.fromarray(np.dstack([x, y, (x + y) // 2]).astype(np.uint8)).save(flat)
    assert_user_error(
        run("render", "--text", "hi", "--avatar", str(flat), "-o", str(out)), "gradient.png", "--no-face-ok"
    )
    ok = run("render", "--text", "Hi there.", "--avatar", str(flat), "--no-face-ok", "-q", "-o", str(out))
    assert ok.returncode == 0, ok.stderr
    assert out.stat().st_size > 1000


def test_output_directory_missing(tmp_path):
    assert_user_error(
        run("render", "--text", "hi", "-o", str(tmp_path / "no" / "such" / "x.mp4")),
        "output directory does not exist",
    )


def test_unknown_mode_lists_valid(out):
    assert_user_error(
        run("render", "--text", "hi", "--mode", "disco", "-o", str(out)), "disco", "cathedral", "teaching"
    )


def test_unknown_persona_lists_valid(out):
    assert_user_error(run("render", "--text", "hi", "--persona", "nobody", "-o", str(out)), "nobody", "ara")


def test_corrupt_audio(out, tmp_path):
    bad = tmp_path / "speech.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    assert_user_error(run("render", "--audio", str(bad), "-o", str(out)), "speech.wav")


def test_unknown_backend(out):
    assert_user_error(
        run("render", "--text", "hi", "--lipsync", "magic", "-o", str(out)),
        "unknown lipsync backend 'magic'",
        "animator",
    )


def test_render_audio_file(out, tmp_path):
    """--audio lip-syncs given speech; durations follow the file."""
    rate = 16000
    t = np.arange(int(1.5 * rate)) / rate
    pcm = (0.4 * np.sin(2 * np.pi * 180 * t) * 32767).astype(np.int16)
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    result = run("render", "--audio", str(path), "--no-voice", "-q", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "speech 1.50 s" in result.stdout
