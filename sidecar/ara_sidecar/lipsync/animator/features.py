"""Per-frame controls: the mouth's pose from the speech's phonemes (else from its sound), blink
and sway tracks."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ara_sidecar.audio import Audio
from ara_sidecar.config import AnimatorSettings
from ara_sidecar.lipsync.animator.visemes import FIELDS, pose_track

WIDE, NEUTRAL, ROUND = 0, 1, 2  # mouth shapes from the sound alone
SHAPES = np.array([(1.08, 0.75), (1.0, 1.0), (0.84, 0.95)], np.float32)  # (lip width, opening scale)
DYNAMIC_RANGE_DB = 30.0  # openness spans this many dB below the utterance's loud level
CLASSIFY = True  # speech without timing: visemes classified from its sound (False: loudness alone)


def _frames(samples: np.ndarray, centres: np.ndarray, size: int) -> np.ndarray:
    """Windows of `size` samples centred on `centres` (zero-padded at the ends), one a row."""
    padded = np.pad(samples, (size, size))
    return sliding_window_view(padded, size)[centres + size - size // 2]


def mouth_track(audio: Audio, fps: int, n: int, cfg: AnimatorSettings) -> np.ndarray:
    """(n, 5) mouth poses (open, width, close, tuck, pout: `visemes.FIELDS`): from the phoneme
    timing when the speech carries it, else from visemes classified from its sound
    (`lipsync.acoustic`), else (too short or silent; or CLASSIFY off) from loudness and spectral
    balance (`mouth_controls`)."""
    if audio.phonemes:
        return pose_track(audio.phonemes, fps, n)
    if CLASSIFY:
        from ara_sidecar.lipsync.acoustic import phonemes

        guessed = phonemes(audio)
        if guessed:
            track = pose_track(guessed, fps, n)
            # The spectral balance tells rounding better than the formants: where it says round,
            # the lips round (and push forward) at least as a rounded vowel's.
            openness, shapes = mouth_controls(audio, fps, n, cfg)
            rounded = (shapes == ROUND) & (openness > 0)
            track[rounded, 1] = np.minimum(track[rounded, 1], SHAPES[ROUND, 0])
            track[rounded, 4] = np.maximum(track[rounded, 4], 0.6)
            return track
    openness, shapes = mouth_controls(audio, fps, n, cfg)
    width, scale = SHAPES[shapes].T
    track = np.zeros((n, len(FIELDS)), np.float32)
    track[:, 0] = openness * scale
    track[:, 1] = np.where(openness > 0, width, 1.0)
    return track


def mouth_controls(audio: Audio, fps: int, n: int, cfg: AnimatorSettings) -> tuple[np.ndarray, np.ndarray]:
    """Openness in [0, 1] (exactly 0 on frames quieter than `silence_db`) and shape per frame.

    Loudness is the RMS over a window centred on each frame's time, mapped between the
    utterance's loud level and DYNAMIC_RANGE_DB below it, then smoothed with separate attack
    and release time constants. Shape comes from the spectral balance of the voiced frames:
    energy high above 1.2 kHz (an "ee", a fricative) widens the lips, energy low below
    900 Hz ("oo", "o") rounds them, relative to this utterance's own range."""
    rate = audio.sample_rate
    centres = np.minimum(np.round(np.arange(n) * rate / fps).astype(np.int64), len(audio.samples))
    window = max(16, round(rate * min(0.08, max(0.03, 1.5 / fps))))
    power = np.square(audio.samples, dtype=np.float64)
    cumulative = np.concatenate(([0.0], np.cumsum(power)))
    lo = np.clip(centres - window // 2, 0, len(power))
    hi = np.clip(centres + window - window // 2, 0, len(power))
    db = 10 * np.log10((cumulative[hi] - cumulative[lo]) / window + 1e-12)
    voiced = db >= cfg.silence_db
    if not voiced.any():
        return np.zeros(n, np.float32), np.full(n, NEUTRAL, np.int8)
    loud = float(np.percentile(db[voiced], 95))
    floor = max(cfg.silence_db, loud - DYNAMIC_RANGE_DB)
    target = np.clip((db - floor) / max(loud - floor, 1e-3), 0.0, 1.0)
    target[~voiced] = 0.0
    attack = 1 - np.exp(-1 / (fps * cfg.attack_s))
    release = 1 - np.exp(-1 / (fps * cfg.release_s))
    openness = np.empty(n, np.float32)
    level = 0.0
    for i, value in enumerate(target.tolist()):
        level += (attack if value > level else release) * (value - level)
        openness[i] = level
    openness[~voiced] = 0.0
    return openness, _shapes(audio, centres, voiced)


def _shapes(audio: Audio, centres: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    rate = audio.sample_rate
    size = 1 << int(np.ceil(np.log2(rate * 0.04)))
    spectra = np.abs(np.fft.rfft(_frames(audio.samples, centres, size) * np.hanning(size), axis=1)) ** 2
    freqs = np.fft.rfftfreq(size, 1 / rate)
    low = spectra[:, (freqs >= 150) & (freqs < 900)].sum(axis=1)
    high = spectra[:, (freqs >= 1200) & (freqs < 4000)].sum(axis=1)
    balance = 10 * np.log10((high + 1e-12) / (low + 1e-12))
    shapes = np.full(len(centres), NEUTRAL, np.int8)
    if voiced.sum() >= 3:
        round_below, wide_above = np.percentile(balance[voiced], [30, 70])
        shapes[balance <= round_below] = ROUND
        shapes[balance >= wide_above] = WIDE
    if len(shapes) >= 3:  # a 3-frame median removes one-frame flicker
        padded = np.pad(shapes, 1, mode="edge")
        shapes = np.median(sliding_window_view(padded, 3), axis=1).astype(np.int8)
    return shapes


def blink_track(n: int, fps: int, interval_s: float, rng: np.random.Generator) -> np.ndarray:
    """Eyelid closure in [0, 1] per frame: blinks about `interval_s` apart, each closing in
    75 ms and reopening in 110 ms, with the fully closed instant on a frame."""
    closure = np.zeros(n, np.float32)
    if interval_s <= 0 or n < 3:
        return closure
    times = np.arange(n) / fps
    t = interval_s * rng.uniform(0.3, 1.0)
    while t < times[-1] - 0.12:
        peak = round(t * fps) / fps
        dt = times - peak
        profile = np.where(dt < 0, 1 + dt / 0.075, 1 - dt / 0.11)
        closure = np.maximum(closure, np.clip(profile, 0, 1))
        t += interval_s * rng.uniform(0.6, 1.4)
    return closure


def sway_track(n: int, fps: int, rng: np.random.Generator, speed: float = 1.0) -> np.ndarray:
    """A slow, irregular sway in [-1, 1] per frame that starts and ends at rest (0); `speed`
    scales its tempo."""
    times = np.arange(n) / fps
    phases = rng.uniform(0, 2 * np.pi, 2)
    wave = 0.65 * np.sin(2 * np.pi * speed * times / 4.7 + phases[0]) + 0.35 * np.sin(
        2 * np.pi * speed * times / 2.9 + phases[1]
    )
    duration = n / fps
    ramp = np.clip(np.minimum(times, duration - times) / 0.6, 0, 1)
    envelope = ramp * ramp * (3 - 2 * ramp)
    return (wave * envelope).astype(np.float32)
