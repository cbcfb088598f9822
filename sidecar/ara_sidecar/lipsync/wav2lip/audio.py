"""Wav2Lip's audio front end: the mel spectrogram its models were trained on, and the
16-step mel window that conditions each video frame.

The reference (its `audio.py`/`hparams.py`) at 16 kHz: pre-emphasis 0.97, STFT with an
800-sample periodic Hann window, hop 200, centred with reflect padding, magnitude; 80
Slaney mel bands 55–7600 Hz (area-normalised, as librosa's default filter bank);
20·log10 with a floor at −100 dB, minus 20 dB reference, scaled symmetrically to [−4, 4]
and clipped. Mel frames run at 80 per second, so frame i at `fps` starts at mel index
int(i · 80 / fps).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from ara_sidecar.audio import Audio, resample

SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200
N_MELS = 80
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS = 4.0
MEL_STEP = 16  # mel frames per video frame's window


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


def mel_filterbank(
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    fmin: float = FMIN,
    fmax: float = FMAX,
) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters on the Slaney mel scale, each scaled to
    unit area per Hz (2 / bandwidth)."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (upper - lower))


_FILTERS = mel_filterbank()
_WINDOW = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann


def melspectrogram(samples: np.ndarray) -> np.ndarray:
    """(80, 1 + len // 200) normalised mel spectrogram of 16 kHz mono samples."""
    x = lfilter([1.0, -PREEMPHASIS], [1.0], np.asarray(samples, dtype=np.float64))
    if len(x) < N_FFT:
        x = np.pad(x, (0, N_FFT - len(x)))
    x = np.pad(x, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    magnitude = np.abs(np.fft.rfft(frames * _WINDOW, axis=1)).T
    db = 20.0 * np.log10(np.maximum(10.0 ** (MIN_LEVEL_DB / 20.0), _FILTERS @ magnitude)) - REF_LEVEL_DB
    normalised = 2 * MAX_ABS * (db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS
    return np.clip(normalised, -MAX_ABS, MAX_ABS).astype(np.float32)


def mel_windows(audio: Audio, n_frames: int, fps: float) -> np.ndarray:
    """(n_frames, 80, 16) mel windows, frame i's starting at int(i · 80 / fps) (the last
    16 mel frames once that runs past the end), as the reference inference does."""
    mel = melspectrogram(resample(audio, SAMPLE_RATE).samples)
    if mel.shape[1] < MEL_STEP:  # under 0.2 s of audio: pad with silence
        mel = np.pad(mel, ((0, 0), (0, MEL_STEP - mel.shape[1])), constant_values=-MAX_ABS)
    step = SAMPLE_RATE / HOP / fps
    starts = np.minimum([int(i * step) for i in range(n_frames)], mel.shape[1] - MEL_STEP)
    return np.stack([mel[:, s : s + MEL_STEP] for s in starts])
