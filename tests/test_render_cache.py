"""The pipeline answers repeated requests from the content-hash cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ara_sidecar.config import load_settings
from ara_sidecar.pipeline import Pipeline, RenderRequest

TEXT = "Caching makes this quick. The second time costs almost nothing."


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, private_dirs) -> Pipeline:
    settings = load_settings(environ={**private_dirs, "ARA_CACHE_DIR": str(tmp_path_factory.mktemp("c"))})
    return Pipeline(settings)


def test_repeat_is_a_hit_with_the_same_file(pipeline, tmp_path):
    first = pipeline.render(RenderRequest(text=TEXT), tmp_path / "a.mp4")
    second = pipeline.render(RenderRequest(text=TEXT), tmp_path / "b.mp4")
    assert (first.cached, second.cached) == (False, True)
    assert first.key == second.key
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert second.speech_s == pytest.approx(first.speech_s) and second.frames == first.frames
    assert second.wall_s < first.wall_s / 5
    # without out_path, the result is the cached file itself
    third = pipeline.render(RenderRequest(text=TEXT))
    assert third.cached and third.path.read_bytes() == (tmp_path / "a.mp4").read_bytes()


def test_any_change_renders_again(pipeline):
    base = pipeline.plan(RenderRequest(text=TEXT)).key
    assert pipeline.plan(RenderRequest(text=TEXT + " More.")).key != base
    assert pipeline.plan(RenderRequest(text=TEXT, mode="lab")).key != base
    assert pipeline.plan(RenderRequest(text=TEXT, apply_voice=False)).key != base
    # Markdown that is not spoken does not change the video
    assert pipeline.plan(RenderRequest(text=f"**{TEXT}**")).key == base


def test_sentences_are_reused_across_replies(pipeline):
    stats = lambda: pipeline.cache.stats()["by_kind"].get("speech", {"entries": 0, "hits": 0})  # noqa: E731
    before = stats()
    pipeline.render(RenderRequest(text="A brand new opening sentence. " + TEXT))
    after = stats()
    assert after["entries"] - before["entries"] == 1, "only the new sentence is spoken"
    assert after["hits"] > before["hits"]


def test_no_cache_renders_anyway(pipeline, tmp_path):
    result = pipeline.render(RenderRequest(text=TEXT), tmp_path / "n.mp4", use_cache=False)
    assert not result.cached and "tts" in result.timings


def test_cache_cli(tmp_path):
    script = str(Path(sys.executable).with_name("ara-sidecar"))
    env_dir = tmp_path / "cache"
    import os

    env = {**os.environ, "ARA_CACHE_DIR": str(env_dir)}
    run = lambda *a: subprocess.run([script, *a], capture_output=True, text=True, env=env, timeout=300)  # noqa: E731
    assert run("render", "-q", "--text", "Short one.", "-o", str(tmp_path / "x.mp4")).returncode == 0
    stats = run("cache", "stats")
    assert stats.returncode == 0 and "video" in stats.stdout and "entries" in stats.stdout
    summary = run("render", "-q", "--text", "Short one.", "-o", str(tmp_path / "y.mp4"))
    assert "| cached |" in summary.stdout
    verify = run("cache", "verify")
    assert verify.returncode == 0 and "corrupt 0" in verify.stdout
    video = next(p for p in env_dir.rglob("*.mp4"))
    video.write_bytes(b"\0" * video.stat().st_size)  # same size, wrong content
    assert run("cache", "verify").returncode == 1
    assert "removed" in run("cache", "clear").stdout
    assert (
        "| cached |" not in run("render", "-q", "--text", "Short one.", "-o", str(tmp_path / "z.mp4")).stdout
    )
