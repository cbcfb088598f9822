"""The embedded DSP voice stage on real Piper speech: pitch, speed, warmth, levels, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from ara_persona import VoiceParams
from ara_sidecar.audio import Audio
from ara_sidecar.voice import REGISTRY
from ara_sidecar.voice.dsp import DspVoice


@pytest.fixture(scope="module")
def dsp(settings) -> DspVoice:
    return DspVoice(settings, "cpu")


def f0_track(audio: Audio) -> np.ndarray:
    """f0 of each 40 ms frame (10 ms hop) by normalised autocorrelation over 50–400 Hz; NaN where
    the frame is quiet or not clearly voiced."""
    x, rate = audio.samples.astype(np.float64), audio.sample_rate
    size, hop = round(0.04 * rate), round(0.01 * rate)
    min_lag, max_lag = int(rate / 400), int(np.ceil(rate / 50))
    f0s = []
    for start in range(0, len(x) - size - max_lag, hop):
        frame = x[start : start + size]
        f0s.append(np.nan)
        if np.sqrt(np.mean(frame**2)) < 0.01:
            continue
        segment = x[start : start + size + max_lag]
        energies = np.convolve(segment**2, np.ones(size), "valid")
        nacf = np.correlate(segment, frame, "valid") / np.sqrt(energies * energies[0] + 1e-12)
        lag = min_lag + int(np.argmax(nacf[min_lag : max_lag + 1]))
        if nacf[lag] < 0.7 or lag >= max_lag:
            continue
        a, b, c = nacf[lag - 1], nacf[lag], nacf[lag + 1]  # parabolic refinement of the peak
        f0s[-1] = rate / (lag + 0.5 * (a - c) / (a - 2 * b + c))
    return np.array(f0s)


def f0_ratio(out: Audio, source: Audio, speed: float = 1.0) -> float:
    """Median ratio of `out`'s f0 to `source`'s at the same instants of the speech (`out` frame i
    is source frame i·speed): frames voiced in both, so not thrown off by which frames count as
    voiced, as comparing two medians would be (Piper's speech varies from run to run)."""
    track_out, track_source = f0_track(out), f0_track(source)
    index = np.round(np.arange(len(track_out)) * speed).astype(int)
    inside = index < len(track_source)
    ratios = track_out[inside] / track_source[index[inside]]
    ratios = ratios[~np.isnan(ratios)]
    assert len(ratios) > 50, "too few frames voiced in both to compare"
    return float(np.median(ratios))


def centroid_hz(audio: Audio) -> float:
    power = np.abs(np.fft.rfft(audio.samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio.samples), 1 / audio.sample_rate)
    return float(np.sum(freqs * power) / np.sum(power))


def max_jump(samples: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(samples.astype(np.float64)))))


def test_registered_and_ready(settings):
    assert REGISTRY.load("dsp") is DspVoice
    assert DspVoice.readiness(settings).ready


def test_neutral_params_return_identical_samples(dsp, speech):
    out = dsp.convert(speech, VoiceParams(0.0, 1.0, 0.0))
    assert out.sample_rate == speech.sample_rate
    np.testing.assert_array_equal(out.samples, speech.samples)


@pytest.mark.parametrize("semitones", [3.0, -3.0])
def test_pitch_moves_f0_by_the_ratio_and_keeps_duration(dsp, speech, semitones):
    out = dsp.convert(speech, VoiceParams(pitch_semitones=semitones))
    assert len(out.samples) == len(speech.samples)
    assert f0_ratio(out, speech) == pytest.approx(2 ** (semitones / 12), rel=0.02)


@pytest.mark.parametrize("speed", [0.85, 1.15])
def test_speed_changes_length_but_not_f0(dsp, speech, speed):
    out = dsp.convert(speech, VoiceParams(speed=speed))
    assert len(out.samples) == round(len(speech.samples) / speed)
    assert f0_ratio(out, speech, speed) == pytest.approx(1.0, rel=0.02)


def test_warmth_tilts_the_spectrum(dsp, speech):
    neutral = centroid_hz(speech)
    warm = centroid_hz(dsp.convert(speech, VoiceParams(warmth_db=6.0)))
    bright = centroid_hz(dsp.convert(speech, VoiceParams(warmth_db=-4.0)))
    assert warm < 0.95 * neutral
    assert bright > 1.05 * neutral


@pytest.mark.parametrize(
    "params",
    [VoiceParams(-1.0, 0.88, 4.5), VoiceParams(3.0, 1.0, 0.0), VoiceParams(-3.0, 1.15, -4.0)],
    ids=["mode-like", "pitch-up", "pitch-down-fast-bright"],
)
def test_output_format_and_no_clicks(dsp, speech, params):
    out = dsp.convert(speech, params)
    assert out.samples.dtype == np.float32
    assert out.sample_rate == speech.sample_rate
    assert len(out.samples) == round(len(speech.samples) / params.speed)
    assert np.all(np.isfinite(out.samples))
    assert max_jump(out.samples) <= 2 * max_jump(speech.samples)


def test_loud_input_is_scaled_below_clipping(dsp, speech):
    loud = Audio(speech.samples / np.max(np.abs(speech.samples)), speech.sample_rate)
    out = dsp.convert(loud, VoiceParams(warmth_db=6.0))
    assert np.max(np.abs(out.samples)) <= 0.99


def test_quiet_input_is_not_normalised_up(dsp, speech):
    quiet = Audio(speech.samples * 0.1, speech.sample_rate)
    out = dsp.convert(quiet, VoiceParams(-1.0, 0.88, 4.5))
    assert np.max(np.abs(out.samples)) < 0.15 * np.max(np.abs(speech.samples))


@pytest.mark.parametrize("seconds", [0.0, 0.01, 1.0])
@pytest.mark.parametrize("params", [VoiceParams(-1.0, 0.88, 4.5), VoiceParams(2.0, 1.2, 0.0)])
def test_empty_short_and_silent_inputs(dsp, seconds, params):
    rate = 22050
    silent = Audio(np.zeros(round(seconds * rate), dtype=np.float32), rate)
    out = dsp.convert(silent, params)
    assert len(out.samples) == round(len(silent.samples) / params.speed)
    assert out.samples.dtype == np.float32
    assert np.all(out.samples == 0)


def test_short_tone_keeps_its_length_and_level(dsp):
    rate = 22050
    t = np.arange(round(0.01 * rate)) / rate
    tone = Audio((0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), rate)
    out = dsp.convert(tone, VoiceParams(-1.0, 0.88, 0.0))
    assert len(out.samples) == round(len(tone.samples) / 0.88)
    assert 0.1 < np.max(np.abs(out.samples)) <= 0.99
