"""Pitch (f0) tracking for the voice transform: Boersma's autocorrelation method with a Viterbi path.

WORLD's own trackers (DIO, Harvest) follow the second harmonic of voices with a weak fundamental,
such as the embedded Piper voice (harmonics every ~88 Hz, DIO reports ~165 Hz on most frames);
resynthesising at that f0 would drop every odd harmonic. This tracker, after Boersma (1993,
"Accurate short-term analysis of the fundamental frequency and the harmonics-to-noise ratio of a
sampled sound", as Praat's "To Pitch (ac)" does it), scores the period by the normalised
autocorrelation of the whole waveform, so a weak fundamental does not hide its period:

- frames of 3 periods of the floor pitch, Hann window, mean removed; the autocorrelation is divided
  by the window's own (Boersma's eq. 9), peaks refined by parabolic interpolation;
- candidate strength R − octave_cost·log2(floor·lag); the unvoiced candidate's strength grows as the
  frame gets quiet relative to the loudest one;
- a Viterbi path penalising octave jumps and voicing changes;
- two passes (Hirst 2011): the second searches only the speaker's own range, 0.75 × the first
  quartile to 2 × the third quartile of the first pass's f0, so that a strong first formant in a
  creaky or breathy frame is not taken for a 500 Hz voice.

Vectorised with numpy over frames; about 3 ms per second of speech.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import resample_poly

ANALYSIS_RATE = 11025  # Hz, at least: enough for pitch up to 1 kHz
SILENCE_THRESHOLD = 0.03  # of the loudest frame's peak: quieter frames lean to unvoiced
VOICING_THRESHOLD = 0.45  # autocorrelation a voiced candidate must beat
OCTAVE_COST = 0.01  # per octave below the ceiling: favours the higher of near-equal peaks
OCTAVE_JUMP_COST = 0.35  # per octave of change between frames (at 10 ms; scaled with the step)
VOICED_UNVOICED_COST = 0.14  # per voicing change (at 10 ms)
CANDIDATES = 8  # voiced candidates kept per frame


def track(
    x: np.ndarray, rate: int, hop_s: float = 0.005, floor_hz: float = 60.0, ceiling_hz: float = 600.0
) -> np.ndarray:
    """f0 in Hz every `hop_s` seconds (frame i centred at i·hop_s, as WORLD's frames), 0 where
    unvoiced."""
    frames = int(len(x) / rate / hop_s) + 1
    q = max(1, rate // ANALYSIS_RATE)
    y = resample_poly(np.asarray(x, np.float64), 1, q) if q > 1 else np.asarray(x, np.float64)
    sr = rate / q
    size = round(3 * sr / floor_hz) | 1
    half = size // 2
    centres = np.round(np.arange(frames) * hop_s * sr).astype(np.int64)
    padded = np.concatenate([np.zeros(half), y, np.zeros(half + 1)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, size)[centres]
    peaks = np.abs(windows - windows.mean(axis=1, keepdims=True)).max(axis=1)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(size) + 0.5) / size)
    segs = (windows - windows.mean(axis=1, keepdims=True)) * hann

    nfft = 1 << int(np.ceil(np.log2(2 * size)))
    r = np.fft.irfft(np.abs(np.fft.rfft(segs, nfft)) ** 2, nfft)[:, :size]
    rw = np.fft.irfft(np.abs(np.fft.rfft(hann, nfft)) ** 2, nfft)[:size]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = r / r[:, :1] / (rw / rw[0])
    r = np.nan_to_num(r)

    loudest = peaks.max(initial=0.0) or 1.0
    unvoiced = VOICING_THRESHOLD + np.maximum(
        0.0, 2 - (peaks / loudest) / (SILENCE_THRESHOLD / (1 + VOICING_THRESHOLD))
    )
    f0 = _path(r, sr, unvoiced, floor_hz, ceiling_hz, hop_s)
    voiced = f0[f0 > 0]
    if len(voiced) < 10:
        return f0
    # Hirst's two passes: the speaker's own range from the quartiles of the first
    q1, q3 = np.percentile(voiced, [25, 75])
    floor2, ceiling2 = max(floor_hz, 0.75 * q1), min(ceiling_hz, 2.0 * q3)
    return _path(r, sr, unvoiced, floor2, ceiling2, hop_s) if floor2 < ceiling2 else f0


def _path(
    r: np.ndarray, sr: float, unvoiced: np.ndarray, floor_hz: float, ceiling_hz: float, hop_s: float
) -> np.ndarray:
    """The best f0 path through the autocorrelation peaks between `floor_hz` and `ceiling_hz`."""
    size = r.shape[1]
    lo, hi = max(2, int(sr / ceiling_hz)), min(size // 2 - 1, int(np.ceil(sr / floor_hz)) + 1)
    mid = r[:, lo:hi]
    left, right = r[:, lo - 1 : hi - 1], r[:, lo + 1 : hi + 1]
    is_peak = (mid > left) & (mid >= right) & (mid > 0.5 * VOICING_THRESHOLD)
    denom = left - 2 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(denom < 0, 0.5 * (left - right) / denom, 0.0)
    lag = np.arange(lo, hi) + np.clip(shift, -0.5, 0.5)
    is_peak &= (lag >= sr / ceiling_hz) & (lag <= sr / floor_hz)
    height = np.minimum(mid - 0.25 * (left - right) * shift, 1.0)
    strength = np.where(is_peak, height - OCTAVE_COST * np.log2(floor_hz * lag / sr), -np.inf)

    k = min(CANDIDATES, strength.shape[1])
    best = np.argpartition(-strength, k - 1, axis=1)[:, :k]
    cand_strength = np.take_along_axis(strength, best, axis=1)
    cand_f0 = np.where(np.isfinite(cand_strength), sr / np.take_along_axis(lag, best, axis=1), 0.0)
    frames = len(r)
    f0 = np.concatenate([np.zeros((frames, 1)), cand_f0], axis=1)
    score = np.concatenate([unvoiced[:, None], np.where(np.isfinite(cand_strength), cand_strength, -9.0)], 1)
    return _viterbi(f0, score, hop_s)


def _viterbi(f0: np.ndarray, score: np.ndarray, hop_s: float) -> np.ndarray:
    """The path through each frame's candidates (column 0 = unvoiced) maximising strength minus
    transition costs."""
    scale = 0.01 / hop_s
    frames, n = f0.shape
    total = score[0].copy()
    back = np.zeros((frames, n), dtype=np.int64)
    log_f0 = np.log2(np.maximum(f0, 1e-9))
    voiced = f0 > 0
    for t in range(1, frames):
        jump = OCTAVE_JUMP_COST * np.abs(log_f0[t - 1][:, None] - log_f0[t][None, :])
        change = voiced[t - 1][:, None] != voiced[t][None, :]
        both = voiced[t - 1][:, None] & voiced[t][None, :]
        cost = np.where(both, jump, np.where(change, VOICED_UNVOICED_COST, 0.0)) * scale
        candidates = total[:, None] - cost
        back[t] = np.argmax(candidates, axis=0)
        total = candidates[back[t], np.arange(n)] + score[t]
    path = np.empty(frames, dtype=np.int64)
    path[-1] = int(np.argmax(total))
    for t in range(frames - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return f0[np.arange(frames), path]
