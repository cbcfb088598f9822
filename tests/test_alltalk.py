"""The AllTalk TTS backend against a local AllTalk double (API v1 and v2), and a full render."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from alltalk_double import RATE, V1_REQUIRED, AllTalkDouble
from media import probe

from ara_persona import Mode, PersonaError, VoiceParams, load_persona
from ara_sidecar.audio import Audio
from ara_sidecar.config import load_settings, project_root
from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.pipeline import Pipeline, RenderRequest
from ara_sidecar.tts import REGISTRY
from ara_sidecar.tts.alltalk import AllTalkTTS, join_audio, split_text

MODE = Mode("lab", 50, VoiceParams(pitch_semitones=-2.0, speed=0.8, warmth_db=3.0), guidance="g")


@pytest.fixture
def v2(tmp_path):
    with AllTalkDouble(tmp_path / "v2", api=2) as double:
        yield double


@pytest.fixture
def v1(tmp_path):
    with AllTalkDouble(tmp_path / "v1", api=1) as double:
        yield double


def backend(settings, double: AllTalkDouble, **alltalk) -> AllTalkTTS:
    overrides = {f"alltalk.{k}": v for k, v in {"url": double.url, **alltalk}.items()}
    return REGISTRY.load("alltalk")(settings.with_overrides(tts="alltalk", **overrides), "cpu")


def test_v2_detected_and_mode_mapped(settings, v2):
    tts = backend(settings, v2)
    info = tts.server()
    assert (info.api, info.engine, info.voices, info.rvc_voices) == (
        2,
        "xtts",
        ("female_01.wav", "male_01.wav"),
        ("ara\\ara.pth",),
    )
    audio = tts.synthesize("Hello there, this is a test.", replace(MODE, alltalk_voice="male_01.wav"))
    (form,) = v2.generations()
    assert form["character_voice_gen"] == "male_01.wav" and form["speed"] == "0.8"
    assert form["text_filtering"] == "html" and form["rvccharacter_voice_gen"] == "Disabled"
    assert "pitch" not in form  # the xtts engine is not pitch-capable: the voice stage shifts it
    assert audio.sample_rate == RATE
    assert audio.duration_s == pytest.approx(0.06 * 28 / 0.8, abs=0.01)
    assert not any(path.startswith("/audio") for _, path, _ in v2.requests)  # the shared file was read
    left = tts.voice_stage_params(MODE.voice)
    assert (left.speed, left.pitch_semitones, left.warmth_db) == (1.0, -2.0, 3.0)


def test_v2_relative_url_and_pitch_capable(settings, tmp_path):
    with AllTalkDouble(tmp_path / "p", api=2, pitch_capable=True) as double:
        double.shared = False  # a remote AllTalk: the file comes from output_file_url
        tts = backend(settings, double, voice="female_01.wav")
        audio = tts.synthesize("Pitch and speed both go to AllTalk.", MODE)
        (form,) = double.generations()
        assert form["pitch"] == "-2" and form["character_voice_gen"] == "female_01.wav"
        assert any(path.startswith("/audio/ara_") for _, path, _ in double.requests)
        assert audio.duration_s > 1
        assert tts.voice_stage_params(MODE.voice) == VoiceParams(0.0, 1.0, 3.0)


def test_v2_rvc_skips_the_voice_stage(settings, v2):
    tts = backend(settings, v2, rvc_voice="ara\\ara.pth")
    tts.synthesize("Converted by AllTalk.", MODE)
    (form,) = v2.generations()
    assert form["rvccharacter_voice_gen"] == "ara\\ara.pth" and form["rvccharacter_pitch"] == "-2"
    assert tts.voice_stage_params(MODE.voice) is None
    bad = backend(settings, v2, rvc_voice="nope.pth")
    with pytest.raises(BackendUnavailable, match=r"no RVC voice 'nope.pth'.*ara\\ara.pth"):
        bad.synthesize("x", MODE)


def test_v1_all_fields_and_absolute_url(settings, v1):
    v1.shared = False
    tts = backend(settings, v1, voice="female_01.wav")
    assert tts.server().api == 1 and not tts.server().speed_capable
    audio = tts.synthesize("Version one speaks too.", MODE)
    (form,) = v1.generations()
    assert set(form) == set(V1_REQUIRED)
    assert audio.duration_s == pytest.approx(0.06 * 23, abs=0.01)  # no speed in v1: the voice stage does it
    assert tts.voice_stage_params(MODE.voice) == MODE.voice
    with pytest.raises(BackendUnavailable, match=r"v1 at .* needs a voice: set alltalk.voice"):
        backend(settings, v1).synthesize("x", MODE)


def test_v1_missing_field_is_a_422(v1):
    from ara_sidecar.tts.alltalk import AllTalkClient

    client = AllTalkClient(v1.url, 2, 2)
    with pytest.raises(
        BackendUnavailable,
        match=r"HTTP 422\): body.narrator_enabled: field required; body.narrator_voice_gen",
    ):
        client.generate(
            {"text_input": "hi", "text_filtering": "html", "character_voice_gen": "female_01.wav"}
        )


def test_unknown_voice_lists_the_voices(settings, v2):
    with pytest.raises(
        BackendUnavailable, match=r"no voice 'ghost.wav'; its voices: female_01.wav, male_01.wav"
    ):
        backend(settings, v2, voice="ghost.wav").synthesize("x", MODE)


@pytest.mark.parametrize(
    ("switch", "value", "message"),
    [
        ("failure", "CUDA out of memory", r"could not generate speech \(HTTP 400\): CUDA out of memory"),
        ("reject", "text_input is too long", r"\(HTTP 400\): text_input is too long"),
        ("missing", True, r"reported success but its file .*ara_\w+\.wav is missing \(HTTP 404\)"),
        ("empty", True, r"reported success but its file .*ara_\w+\.wav is empty"),
        ("ready", "Unloaded", r"is not ready \('Unloaded'\): load a TTS engine"),
    ],
)
def test_failures_name_the_server(settings, v2, switch, value, message):
    setattr(v2, switch, value)
    with pytest.raises(BackendUnavailable, match=f"AllTalk at {v2.url}.*{message}"):
        backend(settings, v2).synthesize("Speak.", MODE)


def test_slow_answer_times_out_without_retry(settings, v2):
    tts = backend(settings, v2, timeout_s=0.3)
    tts.server()
    v2.delay_s = 1.0
    started = time.monotonic()
    with pytest.raises(
        BackendUnavailable, match=r"did not answer POST /api/tts-generate in time.*timeout_s 0.3 s"
    ):
        tts.synthesize("Too slow.", MODE)
    assert time.monotonic() - started < 0.9 and len(v2.generations()) == 1


def test_dropped_connection_is_retried_once(settings, v2):
    tts = backend(settings, v2)
    tts.server()
    v2.drop = 1
    assert tts.synthesize("Dropped once.", MODE).duration_s > 0.5
    assert len(v2.generations()) == 2
    v2.drop = 2
    with pytest.raises(BackendUnavailable, match=r"cannot reach AllTalk at .*: is it running"):
        tts.synthesize("Dropped twice.", MODE)


def test_unreachable_server_readiness(settings):
    cfg = settings.with_overrides(**{"alltalk.url": "http://127.0.0.1:9", "alltalk.connect_timeout_s": 1})
    ready = AllTalkTTS.readiness(cfg)
    assert not ready.ready and "cannot reach AllTalk at http://127.0.0.1:9" in ready.detail


def test_readiness_reports_api_and_voices(settings, v2):
    ready = AllTalkTTS.readiness(settings.with_overrides(**{"alltalk.url": v2.url}))
    assert ready.ready and ready.detail.startswith(
        f"AllTalk API v2 at {v2.url}, engine xtts, model xttsv2_2.0.3; 2 voices"
    )


def test_long_text_is_chunked_and_joined_without_clicks(settings, v2):
    text = " ".join(f"Clause number {i} goes on, and on." for i in range(12))
    assert all(len(p) <= 100 for p in split_text(text, 100)) and " ".join(split_text(text, 100)) == text
    assert split_text("x" * 250, 100) == ["x" * 100, "x" * 100, "x" * 50]
    audio = backend(settings, v2, max_chars=100).synthesize(text, MODE)
    pieces = v2.generations()
    assert len(pieces) == len(split_text(text, 100)) == 4 and all(len(f["text_input"]) <= 100 for f in pieces)
    # A tone sampled at 24 kHz moves at most 2π·220·0.5/24000 ≈ 0.03 per sample; a raw join jumps by ~1.
    assert np.abs(np.diff(audio.samples)).max() < 0.05
    joined = join_audio([Audio(np.ones(100, np.float32), 1000), Audio(np.ones(100, np.float32), 1000)])
    assert joined.samples[99] == 0 and joined.samples[100] == 0 and joined.samples[50] == 1


def test_mode_alltalk_voice_is_validated(tmp_path):
    src = (project_root() / "personas" / "ara" / "modes.yaml").read_text(encoding="utf-8")
    persona = tmp_path / "p"
    persona.mkdir()
    good = src.replace("  lab:\n", "  lab:\n    alltalk_voice: male_01.wav\n", 1)
    (persona / "modes.yaml").write_text(good, encoding="utf-8")
    loaded = load_persona(persona)
    assert loaded.mode("lab").alltalk_voice == "male_01.wav" and loaded.mode("comfort").alltalk_voice is None
    (persona / "modes.yaml").write_text(good.replace("male_01.wav", '"a|b.wav"'), encoding="utf-8")
    with pytest.raises(
        PersonaError, match=r"modes.yaml:\d+: field 'modes.lab.alltalk_voice': expected the name"
    ):
        load_persona(persona)


def test_env_sets_the_url():
    assert load_settings({"ARA_ALLTALK_URL": "http://10.0.0.2:7851"}).alltalk.url == "http://10.0.0.2:7851"


def test_full_render_through_the_pipeline(settings, v2, tmp_path, private_dirs):
    cfg = settings.with_overrides(tts="alltalk", lipsync="animator", **{"alltalk.url": v2.url})
    pipeline = Pipeline(cfg)
    text = "Hello from AllTalk. The pipeline renders every sentence."
    result = pipeline.render(
        RenderRequest(text=text, mode="cathedral"), tmp_path / "out.mp4", use_cache=False
    )
    forms = v2.generations()
    assert [f["text_input"] for f in forms] == ["Hello from AllTalk.", "The pipeline renders every sentence."]
    assert {f["speed"] for f in forms} == {"0.85"}  # cathedral's speed, applied by AllTalk
    media = probe(result.path, decode_frames=False)
    assert media.video_codec == "h264" and media.audio_codec == "aac"
    speech_s = 0.06 * (19 + 36) / 0.85 + 2 * cfg.sentence_pause_s  # a pause after each sentence
    assert result.speech_s == pytest.approx(speech_s, abs=0.1) and media.video_s >= speech_s - 0.05

    cached = Pipeline(cfg).render(RenderRequest(text=text, mode="cathedral"), tmp_path / "again.mp4")
    again = Pipeline(cfg).render(RenderRequest(text=text, mode="cathedral"), tmp_path / "again.mp4")
    assert not cached.cached and again.cached and len(v2.generations()) == 4
    other = Pipeline(cfg).plan(RenderRequest(text=text, mode="lab"))
    assert other.key != Pipeline(cfg).plan(RenderRequest(text=text, mode="cathedral")).key


def test_rvc_render_skips_the_voice_stage(settings, v2, tmp_path):
    cfg = settings.with_overrides(
        tts="alltalk", lipsync="animator", **{"alltalk.url": v2.url, "alltalk.rvc_voice": "ara\\ara.pth"}
    )
    pipeline = Pipeline(cfg)

    def no_voice_stage(audio, params):
        raise AssertionError("the voice stage ran although AllTalk converted the voice")

    pipeline.voice.convert = no_voice_stage
    result = pipeline.render(
        RenderRequest(text="Only AllTalk shapes this voice."), tmp_path / "rvc.mp4", use_cache=False
    )
    assert result.frames > 0 and v2.generations()[0]["rvccharacter_voice_gen"] == "ara\\ara.pth"
