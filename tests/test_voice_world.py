"""The WORLD voice transform (base voice, pitch, formants, pitch range, tempo), judged by Praat.

The measures come from bench/voice_measures.py (parselmouth), independent of the transform's own
f0 tracker and envelope; the tracker itself is compared with Praat's."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_bench_module

from ara_persona import VoiceParams
from ara_sidecar.audio import Audio
from ara_sidecar.voice.f0track import track

pytest.importorskip("parselmouth")  # the independent judge (the `rvc` extra)
vm = load_bench_module("voice_measures")

TEXT = (
    "I have been thinking about what you said yesterday. Maybe we should plant tomatoes "
    "in the garden this spring, and see what grows."
)


@pytest.fixture(scope="module")
def long_speech(piper_tts) -> Audio:
    return piper_tts.synthesize(TEXT)


@pytest.fixture(scope="module")
def dsp(settings):
    from ara_sidecar.voice.dsp import DspVoice

    return DspVoice(settings, "cpu")


def formants(audio: Audio, ceiling_hz: float) -> np.ndarray:
    found = vm.formants_hz(audio.samples, audio.sample_rate, max_formant_hz=ceiling_hz)
    return np.array([found["f1_hz"], found["f2_hz"], found["f3_hz"]])


def test_tracker_agrees_with_praat_on_a_voice_with_a_weak_fundamental(long_speech):
    """WORLD's DIO reports about twice the f0 of this voice on most frames; this tracker must not."""
    x, rate = long_speech.samples, long_speech.sample_rate
    ours = track(x, rate, hop_s=0.01)
    times, praat = vm.pitch_track(x, rate)
    ours_at = ours[np.minimum(np.rint(times / 0.01).astype(int), len(ours) - 1)]
    both = (ours_at > 0) & (praat > 0)
    assert both.sum() > 100
    ratio = ours_at[both] / praat[both]
    assert np.mean(np.abs(ratio - 1) < 0.05) > 0.95
    assert np.mean(np.abs(np.log2(ratio)) > 0.5) < 0.05  # octave disagreements (some are Praat's)
    assert np.mean((ours_at > 0) == (praat > 0)) > 0.85  # voicing decisions


def test_target_f0_sets_the_median_and_semitones_apply_on_top(dsp, long_speech):
    for semitones in (0.0, -2.0):
        out = dsp.convert(long_speech, VoiceParams(target_f0_hz=205.0, pitch_semitones=semitones))
        expected = 205.0 * 2 ** (semitones / 12)
        assert vm.median_f0_hz(out.samples, out.sample_rate) == pytest.approx(expected, rel=0.04)
        assert len(out.samples) == len(long_speech.samples)


def test_formant_ratio_moves_the_formants_and_keeps_f0(dsp, long_speech):
    out = dsp.convert(long_speech, VoiceParams(formant_ratio=1.15))
    source_f0 = vm.median_f0_hz(long_speech.samples, long_speech.sample_rate)
    assert vm.median_f0_hz(out.samples, out.sample_rate) == pytest.approx(source_f0, rel=0.03)
    ratios = formants(out, 5000) / formants(long_speech, 5000)
    # Piper's speech differs from run to run (its noise), and LPC's F1 with it: over six runs
    # each formant moved 1.07-1.16x, their mean 1.11-1.14x.
    assert np.all(ratios > 1.05) and ratios.mean() > 1.09, ratios
    assert np.all(ratios < 1.22), ratios


def test_pitch_shift_keeps_the_formants(dsp, long_speech):
    """Up a fifth with the envelope kept: a higher voice, not a chipmunk."""
    out = dsp.convert(long_speech, VoiceParams(pitch_semitones=7.0))
    source_f0 = vm.median_f0_hz(long_speech.samples, long_speech.sample_rate)
    assert vm.median_f0_hz(out.samples, out.sample_rate) == pytest.approx(source_f0 * 1.498, rel=0.04)
    ratios = formants(out, 5000) / formants(long_speech, 5000)
    assert np.all(np.abs(ratios - 1) < 0.08), ratios


def spread_semitones(audio: Audio) -> float:
    """The 5–95 % range of f0 in semitones (Praat's track): robust to its few octave errors."""
    _, f0 = vm.pitch_track(audio.samples, audio.sample_rate)
    semitones = 12 * np.log2(f0[f0 > 0] / np.median(f0[f0 > 0]))
    return float(np.subtract(*np.percentile(semitones, [95, 5])))


def test_pitch_range_scales_the_excursions(dsp, long_speech):
    spread = {
        r: spread_semitones(dsp.convert(long_speech, VoiceParams(pitch_range=r))) for r in (0.6, 1.0, 1.5)
    }
    # Praat finds less than the factor on the resynthesised speech, and Piper's speech differs
    # from run to run: over five runs 1.5 gave 1.10-1.32x (1.14-1.78x with one pass of Praat's
    # tracker), 0.6 gave 0.55-0.61x. The direction and a clear step each way are what is checked.
    assert 1.05 < spread[1.5] / spread[1.0] < 1.9, spread
    assert 0.4 < spread[0.6] / spread[1.0] < 0.75, spread


def test_speed_with_a_reshape_changes_the_length_not_the_pitch(dsp, long_speech):
    out = dsp.convert(long_speech, VoiceParams(target_f0_hz=200.0, speed=0.8))
    assert len(out.samples) == round(len(long_speech.samples) / 0.8)
    assert vm.median_f0_hz(out.samples, out.sample_rate) == pytest.approx(200.0, rel=0.04)
    spoken = vm.speech_and_pauses(out.samples, out.sample_rate)["speaking_s"]
    source = vm.speech_and_pauses(long_speech.samples, long_speech.sample_rate)["speaking_s"]
    assert spoken / source == pytest.approx(1 / 0.8, rel=0.08)


def test_quality_guard_hnr_and_no_clipping(dsp, long_speech):
    """Resynthesis must not make the voice noisier (nor far cleaner) than its source."""
    out = dsp.convert(long_speech, VoiceParams(target_f0_hz=205.0, formant_ratio=1.17))
    rate = long_speech.sample_rate
    assert abs(vm.hnr_db(out.samples, rate) - vm.hnr_db(long_speech.samples, rate)) < 3.5
    assert vm.clipped_fraction(out.samples) == 0.0
    assert np.max(np.abs(out.samples)) <= 0.99


def test_the_same_input_gives_the_same_output(dsp, long_speech):
    params = VoiceParams(target_f0_hz=205.0, formant_ratio=1.17, pitch_range=1.2)
    a, b = dsp.convert(long_speech, params), dsp.convert(long_speech, params)
    np.testing.assert_array_equal(a.samples, b.samples)


def test_a_tone_moves_to_the_shifted_frequency_at_its_level(dsp):
    rate, freq = 22050, 180.0
    t = np.arange(2 * rate) / rate
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)
    tone = Audio((0.5 * fade * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    for semitones in (3.0, -3.0):
        out = dsp.convert(tone, VoiceParams(pitch_semitones=semitones)).samples.astype(np.float64)
        middle = out[rate // 4 : -rate // 4]
        power = np.abs(np.fft.rfft(middle * np.hanning(len(middle)))) ** 2
        freqs = np.fft.rfftfreq(len(middle), 1 / rate)
        target = freq * 2 ** (semitones / 12)
        assert freqs[np.argmax(power)] == pytest.approx(target, rel=0.02)
        assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
