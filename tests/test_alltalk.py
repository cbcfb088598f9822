"""The AllTalk TTS backend against a local AllTalk double (API v1 and v2), and a full render.
The double answers as the real servers do (see alltalk_double.py for the versions it mirrors);
test_double_answers_as_recorded holds it to answers recorded from a real AllTalk v2."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace

import numpy as np
import pytest
from alltalk_double import V1_REQUIRED, AllTalkDouble, spoken_seconds
from media import probe

from ara_persona import Mode, PersonaError, VoiceParams, load_persona
from ara_sidecar.audio import Audio
from ara_sidecar.config import load_settings, project_root
from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.pipeline import Pipeline, RenderRequest
from ara_sidecar.text import normalize_text
from ara_sidecar.tts import REGISTRY
from ara_sidecar.tts.alltalk import (
    COST_FILE,
    AllTalkClient,
    AllTalkTTS,
    join_audio,
    match_voice,
    pick_voice,
    split_text,
)

MODE = Mode("lab", 50, VoiceParams(pitch_semitones=-2.0, speed=0.8, warmth_db=3.0), guidance="g")
JOE = "en_US-joe-medium.onnx"
SYMBOLS = "It costs 50% & takes 3/4 hour, e.g. C++ at 10:30, #1 on AT&T = win."


@pytest.fixture
def v2(tmp_path):
    """AllTalk v2 with its Piper engine and the joe voice, as verified against the real server."""
    with AllTalkDouble(tmp_path / "v2", api=2) as double:
        yield double


@pytest.fixture
def xtts(tmp_path):
    with AllTalkDouble(tmp_path / "xtts", api=2, engine="xtts", rvc_voices=("ara/ara.pth",)) as double:
        yield double


@pytest.fixture
def v1(tmp_path):
    with AllTalkDouble(tmp_path / "v1", api=1) as double:
        yield double


def backend(settings, double: AllTalkDouble, **alltalk) -> AllTalkTTS:
    overrides = {f"alltalk.{k}": v for k, v in {"url": double.url, **alltalk}.items()}
    return REGISTRY.load("alltalk")(settings.with_overrides(tts="alltalk", **overrides), "cpu")


def test_v2_detected_and_mode_mapped(settings, xtts):
    tts = backend(settings, xtts, streaming=False)
    info = tts.server()
    assert (info.api, info.engine, info.voices, info.rvc_voices) == (
        2,
        "xtts",
        ("female_01.wav", "male_01.wav"),
        ("ara/ara.pth",),
    )
    text = "Hello there, this is a test."
    audio = tts.synthesize(text, replace(MODE, alltalk_voice="Male_01"))  # as a user may type it
    (form,) = xtts.generations()
    assert form["character_voice_gen"] == "male_01.wav" and form["speed"] == "0.8"
    assert form["text_filtering"] == "none" and form["rvccharacter_voice_gen"] == "Disabled"
    assert "pitch" not in form  # the xtts engine is not pitch-capable: the voice stage shifts it
    assert audio.sample_rate == 24000
    assert audio.duration_s == pytest.approx(spoken_seconds(text, 0.8), abs=0.01)
    assert not any(path.startswith("/audio") for _, path, _ in xtts.requests)  # the shared file was read
    left = tts.voice_stage_params(MODE.voice)
    assert (left.speed, left.pitch_semitones, left.warmth_db) == (1.0, -2.0, 3.0)


def test_streaming_engine_sends_the_speech_itself(settings, xtts, v2):
    tts = backend(settings, xtts)
    assert tts.streams() and tts.mode_inputs(MODE) == {
        "streaming": "true",
        "voice": "female_01.wav",
        "language": "en",
    }
    text = "Streamed speech needs no file."
    audio = tts.synthesize(text, MODE)
    assert xtts.generations() == [] and xtts.spoken == [(text, "female_01.wav", 1.0)]
    assert any(path.startswith("/api/tts-generate-streaming?text=Streamed") for _, path, _ in xtts.requests)
    assert audio.sample_rate == 24000 and audio.duration_s == pytest.approx(spoken_seconds(text), abs=0.01)
    assert (
        tts.voice_stage_params(MODE.voice) == MODE.voice
    )  # the route applies no speed: the voice stage does
    xtts.failure = True
    with pytest.raises(BackendUnavailable, match=r"broke off its answer to GET /api/tts-generate-streaming"):
        tts.synthesize("The engine fails mid-stream.", MODE)
    assert not backend(settings, xtts, rvc_voice="ara/ara.pth").streams()  # the route applies no RVC
    assert not backend(settings, v2).streams()  # AllTalk's Piper engine does not stream
    with pytest.raises(BackendUnavailable, match=r"HTTP 400\): Invalid value: Streaming not supported"):
        AllTalkClient(v2.url, 2, 10).stream("Hi.", JOE, "en")


def test_every_symbol_is_spoken(settings, v2):
    """Ara says symbols as words and AllTalk gets the text unfiltered; AllTalk's own filtering
    (what the client sent before) deletes them, as the real server did."""
    text = normalize_text(SYMBOLS)
    audio = backend(settings, v2).synthesize(text)
    assert v2.spoken[-1][0] == text and "percent and takes 3 quarters" in text
    assert audio.duration_s == pytest.approx(spoken_seconds(text), abs=0.01)
    client = AllTalkClient(v2.url, 2, 10)
    client.generate({"text_input": SYMBOLS, "text_filtering": "html", "character_voice_gen": JOE})
    assert v2.spoken[-1][0] == "It costs 50  takes 34 hour, e.g. C at 10:30, 1 on ATT  win."


def test_no_voice_configured_chooses_one_and_says_so(settings, tmp_path, caplog):
    voices = ("en_US-joe-medium.onnx", "en_US-amy-medium.onnx", "de_DE-thorsten-high.onnx")
    with AllTalkDouble(tmp_path / "p", voices=voices) as double, caplog.at_level(logging.WARNING):
        tts = backend(settings, double)
        assert tts.voice(MODE) == ("en_US-amy-medium.onnx", "chosen from the server's voices")
        tts.synthesize("Hello.", MODE)
        tts.synthesize("Again.", MODE)
        assert [f["character_voice_gen"] for f in double.generations()] == ["en_US-amy-medium.onnx"] * 2
    (record,) = [r for r in caplog.records if "no voice configured" in r.getMessage()]  # logged once
    assert "speaking with 'en_US-amy-medium.onnx' of its voices: en_US-joe-medium.onnx" in record.getMessage()
    assert pick_voice(("male_01.wav", "Ara_v2.wav", "female_01.wav"), "ara") == "Ara_v2.wav"
    assert pick_voice(("male_01.wav", "female_01.wav"), "ara") == "female_01.wav"
    assert pick_voice((JOE,), "ara") == JOE and pick_voice((), "ara") is None


def test_the_personas_alltalk_voice_serves_its_other_modes(settings, xtts, tmp_path):
    import shutil

    personas = tmp_path / "personas"
    shutil.copytree(project_root() / "personas" / "ara", personas / "ara")
    modes = personas / "ara" / "modes.yaml"
    text = modes.read_text(encoding="utf-8")
    modes.write_text(text.replace("  lab:\n", "  lab:\n    alltalk_voice: Male_01\n", 1), encoding="utf-8")
    tts = backend(settings.with_overrides(personas_dir=str(personas)), xtts, streaming=False)
    persona = load_persona(personas / "ara")
    assert tts.voice(persona.mode("comfort")) == ("male_01.wav", "alltalk_voice of persona ara (mode lab)")
    assert tts.voice(persona.mode("lab")) == ("male_01.wav", "alltalk_voice of mode lab")


def test_voice_names_match_as_typed(settings, v2):
    assert match_voice("en_US-joe-medium", (JOE,)) == JOE
    assert match_voice("EN_US-JOE-MEDIUM.ONNX", (JOE,)) == JOE
    assert match_voice("ara\\ara.pth", ("ara/ara.pth",)) == "ara/ara.pth"
    assert match_voice("joe", (JOE,)) is None
    tts = backend(settings, v2, voice="en_us-joe-medium")
    tts.synthesize("Joe speaks.", MODE)
    assert v2.generations()[0]["character_voice_gen"] == JOE
    with pytest.raises(
        BackendUnavailable, match=r"no voice 'ghost' \(alltalk.voice\); its voices: en_US-joe"
    ):
        backend(settings, v2, voice="ghost").synthesize("x", MODE)
    mode = replace(MODE, alltalk_voice="amy")
    with pytest.raises(BackendUnavailable, match=r"no voice 'amy' \(alltalk_voice of mode lab\)"):
        backend(settings, v2).synthesize("x", mode)


def test_failing_voice_is_named_with_the_voices_listed(settings, tmp_path):
    with AllTalkDouble(tmp_path / "none", voices=()) as double:  # "No Voices Found": AllTalk's default
        tts = backend(settings, double)
        assert tts.server().voices == ()
        with pytest.raises(
            BackendUnavailable,
            match=r"\(HTTP 500\): Model file not found. \(voice 'AllTalk default': AllTalk's default voice; "
            r"its voices: none\)",
        ):
            tts.synthesize("Hello.", MODE)


def test_unspeakable_text_is_a_pause(settings, v2):
    tts = backend(settings, v2)
    with pytest.raises(BackendUnavailable, match=r"HTTP 500\): Exception while running subprocess"):
        tts.client.generate({"text_input": "...", "text_filtering": "none", "character_voice_gen": JOE})
    count = len(v2.generations())
    pause = tts.synthesize("...", MODE)
    assert len(v2.generations()) == count and pause.duration_s == pytest.approx(0.3)
    assert not pause.samples.any()
    text = "Words. " + "." * 60 + " More words."  # cut at 50: "Words.", 50 dots, the rest
    audio = backend(settings, v2, max_chars=50).synthesize(text, MODE)
    said = ["Words.", "." * 10 + " More words."]
    assert [t for t, _, _ in v2.spoken[-2:]] == said
    assert audio.duration_s == pytest.approx(spoken_seconds("".join(said), 0.8) + 1.0, abs=0.01)


def test_v1_all_fields_and_absolute_url(settings, v1, caplog):
    v1.shared = False
    tts = backend(settings, v1, voice="female_01")
    assert tts.server().api == 1 and not tts.server().speed_capable
    audio = tts.synthesize("Version one speaks too.", MODE)
    (form,) = v1.generations()
    assert set(form) == set(V1_REQUIRED) and form["character_voice_gen"] == "female_01.wav"
    assert audio.duration_s == pytest.approx(spoken_seconds("Version one speaks too."), abs=0.01)
    assert tts.voice_stage_params(MODE.voice) == MODE.voice  # no speed in v1: the voice stage does it
    assert backend(settings, v1).voice(MODE)[0] == "female_01.wav"  # v1 needs a voice: one is chosen


def test_v1_validation_answers(v1):
    client = AllTalkClient(v1.url, 2, 2)
    with pytest.raises(
        BackendUnavailable,
        match=r"HTTP 422\): body.narrator_enabled: Field required; body.narrator_voice_gen: Field required",
    ):
        client.generate(
            {"text_input": "hi", "text_filtering": "none", "character_voice_gen": "female_01.wav"}
        )
    form = {name: "x" for name in V1_REQUIRED} | {
        "narrator_enabled": "false",
        "output_file_timestamp": "true",
    }
    form |= {"autoplay": "false", "autoplay_volume": "0.8", "text_filtering": "none", "language": "en"}
    form |= {"character_voice_gen": "female_01.wav", "narrator_voice_gen": "male_01.wav"}
    with pytest.raises(
        BackendUnavailable, match=r"HTTP 400\): 1 validation error for JSONInput\s+text_not_inside"
    ):
        client.generate(form)
    with pytest.raises(BackendUnavailable, match=r"HTTP 500\): An error occurred"):
        client.generate(form | {"text_not_inside": "character", "character_voice_gen": "ghost.wav"})


@pytest.mark.parametrize(
    ("switch", "value", "message"),
    [
        (
            "failure",
            True,
            r"could not generate speech \(HTTP 500\): TTS generation failed \(voice 'en_US-joe",
        ),
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
    assert (
        ready.ready
        and ready.detail == f"AllTalk API v2 at {v2.url}, engine piper, model piper; 1 voices: {JOE}"
    )


def test_long_text_is_chunked_and_joined_without_clicks(settings, v2):
    text = " ".join(f"Clause number {i} goes on, and on." for i in range(12))
    assert all(len(p) <= 100 for p in split_text(text, 100)) and " ".join(split_text(text, 100)) == text
    assert split_text("x" * 250, 100) == ["x" * 100, "x" * 100, "x" * 50]
    audio = backend(settings, v2, max_chars=100).synthesize(text, MODE)
    pieces = v2.generations()
    assert len(pieces) == len(split_text(text, 100)) == 4 and all(len(f["text_input"]) <= 100 for f in pieces)
    # A tone sampled at 22050 Hz moves at most 2π·220·0.5/22050 ≈ 0.031 per sample; a raw join jumps by ~1.
    assert np.abs(np.diff(audio.samples)).max() < 0.05
    joined = join_audio([Audio(np.ones(100, np.float32), 1000), Audio(np.ones(100, np.float32), 1000)])
    assert joined.samples[99] == 0 and joined.samples[100] == 0 and joined.samples[50] == 1


def test_request_cost_is_measured_once_and_remembered(settings, v2, tmp_path):
    cfg = settings.with_overrides(**{"cache.dir": str(tmp_path / "cache")})
    v2.cost_s = 0.6  # like AllTalk's Piper engine, which starts a process per request
    tts = backend(cfg, v2)
    long = "A long sentence takes its synthesis time on top of the cost."
    tts.synthesize(long, MODE)  # 4.6 s of speech: its time is not the cost
    cost = tts.request_cost_s()
    assert 0.6 <= cost < 0.9 and [f["text_input"] for f in v2.generations()] == [long, "Hello."]
    assert tts.request_cost_s() == cost and len(v2.generations()) == 2
    remembered = json.loads((tmp_path / "cache" / COST_FILE).read_text())
    assert remembered == {f"{v2.url} piper piper": round(cost, 3)}
    assert backend(cfg, v2).request_cost_s() == round(cost, 3) and len(v2.generations()) == 2
    assert backend(cfg, v2, request_cost_s=0).request_cost_s() == 0
    # the planner sends the costly backend fewer chunks: two sentences in one request
    text = "Hello from AllTalk. The pipeline renders every sentence."
    render = cfg.with_overrides(tts="alltalk", lipsync="animator", **{"alltalk.url": v2.url})
    assert [c.text for c in Pipeline(render).plan(RenderRequest(text=text)).chunks] == [text]
    cheap = render.with_overrides(**{"alltalk.request_cost_s": 0})
    assert len(Pipeline(cheap).plan(RenderRequest(text=text)).chunks) == 2


def test_planning_on_the_event_loop_never_waits_for_alltalk(settings, v2, tmp_path):
    """Inside `memoized_only` (the server plans there on its event loop) a plan that would need
    AllTalk — its facts, or a first measure of its cost — says so instead of asking it."""
    from ara_sidecar.digest import NotMemoized, memoized_only

    cfg = settings.with_overrides(**{"cache.dir": str(tmp_path / "cache")})
    render = cfg.with_overrides(tts="alltalk", lipsync="animator", **{"alltalk.url": v2.url})
    pipeline = Pipeline(render)
    asked = len(v2.requests)
    with memoized_only(), pytest.raises(NotMemoized):
        pipeline.plan(RenderRequest(text="Hello there."))
    assert len(v2.requests) == asked  # nothing was sent
    planned = pipeline.plan(RenderRequest(text="Hello there."))  # in the thread pool: it asks
    with memoized_only():  # known now: planned again without a request
        asked = len(v2.requests)
        assert pipeline.plan(RenderRequest(text="Hello there.")).key == planned.key
        assert len(v2.requests) == asked


def test_double_answers_as_recorded(v2):
    """Answers recorded from the real AllTalk v2 (alltalkbeta 7a59e9c, Piper engine, the joe voice)."""
    cases = [
        (
            {"text_input": ""},
            422,
            {
                "detail": [
                    {"type": "missing", "loc": ["body", "text_input"], "msg": "Field required", "input": None}
                ]
            },
        ),
        (
            {"text_input": "Hello."},
            500,
            {"detail": "Model file not found."},
        ),  # its default voice is not installed
        (
            {"text_input": "Hi.", "character_voice_gen": "ghost.onnx"},
            500,
            {"detail": "Model file not found."},
        ),
        (
            {"text_input": "...", "character_voice_gen": JOE, "text_filtering": "none"},
            500,
            {"detail": "Exception while running subprocess: 500: Subprocess failed with return code: 1"},
        ),
        (
            {"text_input": "♪♪♪", "character_voice_gen": JOE},
            500,
            {"detail": "Exception while running subprocess: 500: Subprocess failed with return code: 1"},
        ),
        (
            {"text_input": "word " * 420, "character_voice_gen": JOE},
            400,
            {"error": "text_input: text_input needs to be 2000 characters or less."},
        ),
        (
            {"text_input": "Hi.", "character_voice_gen": JOE, "speed": "fast"},
            422,
            {
                "detail": [
                    {
                        "type": "float_parsing",
                        "loc": ["body", "speed"],
                        "msg": "Input should be a valid number, unable to parse string as a number",
                        "input": "fast",
                    }
                ]
            },
        ),
        (
            {"text_input": "Hi.", "character_voice_gen": JOE, "speed": "3"},
            400,
            {"error": "speed: speed needs to be between 0.25 and 2.0."},
        ),
        (
            {"text_input": "Hi.", "character_voice_gen": JOE, "text_filtering": "bogus", "language": "xx"},
            400,
            {
                "error": "text_filtering: text_filtering needs to be 'none', 'standard' or 'html'.\n"
                "language: language needs to be one of the following: auto, ar, zh-cn, zh, cs, nl, en, fr, "
                "de, hu, hi, it, ja, ko, pl, pt, ru, es, tr."
            },
        ),
    ]
    for form, status, body in cases:
        assert v2.generate(form) == (status, body), form
    status, body = v2.generate(
        {"text_input": "Hi.", "character_voice_gen": "en_US-joe-medium"}
    )  # no output_file_name
    assert status == 200 and body["output_file_url"].startswith("/audio/myoutputfile_")
    assert len(v2.current_settings()) == 24 and v2.voice_list() == {"status": "success", "voices": [JOE]}


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


def test_full_render_with_no_voice_configured(settings, v2, tmp_path, private_dirs):
    cfg = settings.with_overrides(tts="alltalk", lipsync="animator", **{"alltalk.url": v2.url})
    assert cfg.alltalk.voice is None
    pipeline = Pipeline(cfg)
    text = "Hello from AllTalk. The pipeline renders every sentence."
    result = pipeline.render(
        RenderRequest(text=text, mode="cathedral"), tmp_path / "out.mp4", use_cache=False
    )
    forms = [f for f in v2.generations() if f["text_input"] != "Hello."]  # after the cost probe
    assert [f["text_input"] for f in forms] == ["Hello from AllTalk.", "The pipeline renders every sentence."]
    plan = pipeline.plan(RenderRequest(text=text, mode="cathedral"))
    speed = plan.mode.voice.speed
    assert {f["speed"] for f in forms} == {f"{speed:g}"}  # cathedral's speed, applied by AllTalk
    assert {f["character_voice_gen"] for f in forms} == {JOE}
    media = probe(result.path, decode_frames=False)
    assert media.video_codec == "h264" and media.audio_codec == "aac"
    speech_s = spoken_seconds("Hello from AllTalk.The pipeline renders every sentence.", speed)
    speech_s += sum(c.pause_s for c in plan.chunks)  # a pause after each sentence
    assert result.speech_s == pytest.approx(speech_s, abs=0.1) and media.video_s >= speech_s - 0.05

    before = len(v2.generations())
    cached = Pipeline(cfg).render(RenderRequest(text=text, mode="cathedral"), tmp_path / "again.mp4")
    again = Pipeline(cfg).render(RenderRequest(text=text, mode="cathedral"), tmp_path / "again.mp4")
    assert not cached.cached and again.cached and len(v2.generations()) == before + 2  # the cost remembered
    other = Pipeline(cfg).plan(RenderRequest(text=text, mode="lab"))
    assert other.key != Pipeline(cfg).plan(RenderRequest(text=text, mode="cathedral")).key


def test_rvc_render_skips_the_voice_stage(settings, xtts, tmp_path):
    cfg = settings.with_overrides(
        tts="alltalk", lipsync="animator", **{"alltalk.url": xtts.url, "alltalk.rvc_voice": "ara\\ara.pth"}
    )
    pipeline = Pipeline(cfg)

    def no_voice_stage(audio, params):
        raise AssertionError("the voice stage ran although AllTalk converted the voice")

    pipeline.voice.convert = no_voice_stage
    result = pipeline.render(
        RenderRequest(text="Only AllTalk shapes this voice."), tmp_path / "rvc.mp4", use_cache=False
    )
    assert result.frames > 0 and xtts.generations()[-1]["rvccharacter_voice_gen"] == "ara/ara.pth"
    with pytest.raises(BackendUnavailable, match=r"no RVC voice 'nope.pth'.*its RVC voices: ara/ara.pth"):
        backend(settings, xtts, rvc_voice="nope.pth").synthesize("x", MODE)


def test_the_aligner_phonemizes_in_alltalks_language(settings, v2, tmp_path, private_dirs, monkeypatch):
    """AllTalk gives no timing: the lip-sync's aligner reads the text in `alltalk.language`."""
    import ara_sidecar.pipeline as pipeline_module

    cfg = settings.with_overrides(
        tts="alltalk", lipsync="animator", **{"alltalk.url": v2.url, "alltalk.language": "de"}
    )
    seen: list[str | None] = []
    real = pipeline_module.estimate_phonemes

    def estimate(audio, text, language=None):
        seen.append(language)
        return real(audio, text, language)

    monkeypatch.setattr(pipeline_module, "estimate_phonemes", estimate)
    request = RenderRequest(text="Schöne Grüße aus München.")
    Pipeline(cfg).render(request, tmp_path / "de.mp4", use_cache=False)
    assert seen and set(seen) == {"de"}
