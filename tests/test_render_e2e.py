"""End to end: real Piper speech → voice → animator → MP4, checked by decoding the file."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import with_silence
from media import probe

from ara_sidecar.audio import Audio
from ara_sidecar.errors import Cancelled
from ara_sidecar.pipeline import Pipeline, RenderRequest

FPS = 25


def write_wav(path: Path, audio: Audio) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(audio.sample_rate)
        w.writeframes((np.clip(audio.samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


@pytest.fixture(scope="module")
def silence_render(pipeline, speech, avatar, tmp_path_factory):
    """Speech with 1 s of silence inserted at 1.5 s, lip-synced without idle motion."""
    audio = with_silence(speech, 1.5, 1.0)
    folder = tmp_path_factory.mktemp("e2e")
    still = Pipeline(
        pipeline.settings.with_overrides(**{"animator.sway_degrees": 0, "animator.blink_interval_s": 0})
    )
    result = still.render(
        RenderRequest(audio_path=write_wav(folder / "speech.wav", audio), apply_voice=False),
        folder / "out.mp4",
    )
    return audio, result, probe(result.path), still.prepare_avatar(avatar)


def test_streams_and_durations(silence_render):
    audio, result, p, _ = silence_render
    assert (p.video_codec, p.audio_codec, p.pix_fmt) == ("h264", "aac", "yuv420p")
    assert len(p.frames) == result.frames == int(np.ceil(audio.duration_s * FPS - 1e-6))
    assert abs(p.video_s - p.audio_s) <= 0.04
    assert abs(p.video_s - audio.duration_s) <= 1 / FPS


def test_mouth_follows_energy_and_rests_in_silence(silence_render, avatar):
    audio, _, p, scene = silence_render
    box = scene.layout.mouth_box
    window = slice(box.y, box.y + box.h), slice(box.x, box.x + box.w)
    still = avatar.image[window].astype(np.int16)
    change = np.array([np.abs(f[window].astype(np.int16) - still).mean() for f in p.frames])
    hop = audio.sample_rate // FPS
    rms = np.array(
        [np.sqrt(np.mean(audio.samples[i * hop : (i + 1) * hop] ** 2)) for i in range(len(p.frames))]
    )
    assert np.corrcoef(change, rms)[0, 1] > 0.5
    silent = change[round(1.65 * FPS) : round(2.35 * FPS)]
    speaking = change[rms > np.percentile(rms, 75)]
    assert silent.mean() < 0.25 * speaking.mean(), "the mouth stays closed in the silence"
    floor = change.min()  # the rest pose after H.264 and 4:2:0 chroma: compression error only
    assert silent.max() - floor < 1.0, "the silent frames show the rest pose"


def test_background_stays_still(pipeline, tmp_path):
    """Far from the face (the corners) nothing moves: only compression noise between frames."""
    result = pipeline.render(RenderRequest(text="Hello there. This is a short test."), tmp_path / "bg.mp4")
    frames = probe(result.path).frames
    for corner in (np.s_[:48, :48], np.s_[:48, -48:], np.s_[-48:, :48], np.s_[-48:, -48:]):
        first = frames[0][corner].astype(np.int16)
        assert max(np.abs(f[corner].astype(np.int16) - first).mean() for f in frames) < 1.0


def test_mode_voice_parameters_reach_the_audio(pipeline, tmp_path):
    text = "Let me think about that for a moment, and then I will tell you what I found."
    slow = pipeline.render(RenderRequest(text=text, mode="cathedral"), tmp_path / "slow.mp4")
    fast = pipeline.render(RenderRequest(text=text, mode="playful"), tmp_path / "fast.mp4")
    # cathedral speaks at 0.84 with 0.85 s between sentences, playful at 1.1 with 0.25 s: the tempo
    # alone makes cathedral ~31 % longer, the pause (once here) a little more
    assert 1.25 < slow.speech_s / fast.speech_s < 1.8
    assert (slow.mode, fast.mode) == ("cathedral", "playful")


def test_sentences_render_in_order(pipeline, tmp_path):
    """Each sentence is a chunk; the video covers them all, in order (longest sentence last)."""
    text = "One. Two three four five six. " + "This last sentence is clearly the longest of all of them here."
    seen: list[tuple[str, float]] = []
    result = pipeline.render(
        RenderRequest(text=text), tmp_path / "o.mp4", progress=lambda s, f: seen.append((s, f))
    )
    tts = [f for s, f in seen if s == "tts"]
    video = [f for s, f in seen if s == "video"]
    assert tts == sorted(tts) and tts[-1] == 1.0
    assert video == sorted(video) and video[-1] == pytest.approx(1.0)
    p = probe(result.path, decode_frames=False)
    assert abs(p.video_s - p.audio_s) <= 0.04
    hop = p.audio_rate // FPS
    energy = np.array([np.abs(p.audio[i : i + hop]).mean() for i in range(0, len(p.audio) - hop, hop)])
    assert (energy[: len(energy) // 3] > 0.01).sum() < (energy[len(energy) // 3 :] > 0.01).sum()


def test_cancel_stops_and_leaves_no_file(pipeline, tmp_path):
    def cancel(stage: str, fraction: float) -> None:
        if stage == "video" and fraction > 0.2:
            raise Cancelled("stop")

    out = tmp_path / "cancelled.mp4"
    with pytest.raises(Cancelled):
        pipeline.render(
            RenderRequest(text="A sentence. And another one, a bit longer than that."), out, cancel
        )
    assert list(tmp_path.iterdir()) == []


def test_cli_render_prints_summary(tmp_path):
    out = tmp_path / "cli.mp4"
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("ara-sidecar")),
            "render",
            "--text",
            "Hi! Nice to see you.",
            "--mode",
            "teaching",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    for needle in ("speech", "tts", "voice", "lipsync", "encode", "real-time factor", "mode teaching"):
        assert needle in line
    assert out.stat().st_size > 1000
