"""Voice reshaping with the WORLD vocoder: f0 and formants moved together or apart.

Speech is analysed into f0 (`f0track`, refined by WORLD's StoneMask), the spectral envelope
(CheapTrick) and the aperiodicity (D4C), every `FRAME_MS`, with `pyworld`. Then:

- f0: the voiced frames' median is moved to `target_f0_hz` (or kept) and shifted by
  `pitch_semitones`; each frame's distance from the median, in semitones, is scaled by `pitch_range`.
- formants: the envelope and the aperiodicity are read at f / `formant_ratio` (a ratio of 1.15
  moves every formant up 15 %, as a shorter vocal tract does);
- tempo: frames are resampled in time by 1 / `speed` (pitch and formants unchanged);

and the waveform is resynthesised as WORLD composes it (`synthesize`: WORLD's own synthesis, in
numpy over frames rather than pulse by pulse, 3× faster), at the input's loudness.
Changing f0 alone keeps the envelope (a man's voice an octave up stays a man's, not a chipmunk's);
changing both makes a different speaker.
"""

from __future__ import annotations

import numpy as np

from ara_persona import VoiceParams
from ara_sidecar.voice.f0track import track

FRAME_MS = 10.0  # WORLD's frame period (the aperiodicity is analysed at twice it and interpolated)
F0_FLOOR_HZ, F0_CEILING_HZ = 60.0, 600.0
# Perfectly regular, noiseless pulses sound buzzy, and far cleaner than the source (harmonics-to-
# noise ratio +7 dB for the embedded voice raised to 205 Hz). So the resynthesis keeps the source's
# roughness: cycle-to-cycle jitter and shimmer (standard deviations, as fractions of the period and
# of the amplitude; 1.5 % and 6 % give the embedded Piper voice's own 2.8 % local jitter, as Praat
# measures it) and a floor on the aperiodicity (a little breath noise in every band; higher voices
# are breathier). Seeded, so the same input gives the same output.
JITTER = 0.015
SHIMMER = 0.06
BREATH = 0.3


def _pyworld():
    import warnings

    with warnings.catch_warnings():  # pyworld imports pkg_resources, which warns of its own end
        warnings.simplefilter("ignore")
        import pyworld
    return pyworld


def reshape(x: np.ndarray, rate: int, params: VoiceParams) -> np.ndarray:
    """`x` (mono float) with f0, formants and tempo changed as `params` say; length len(x) / speed."""
    length = round(len(x) / params.speed)
    pw = _pyworld()
    xd = np.ascontiguousarray(x, dtype=np.float64)
    hop_s = FRAME_MS / 1000
    f0 = track(xd, rate, hop_s=hop_s, floor_hz=F0_FLOOR_HZ, ceiling_hz=F0_CEILING_HZ)
    times = np.arange(len(f0)) * hop_s
    voiced = f0 > 0
    if not voiced.any():  # nothing voiced: only the tempo can change
        f0_out = f0
        sp = pw.cheaptrick(xd, np.full_like(f0, 100.0), times, rate)
        ap = np.ones_like(sp)
    else:
        f0 = pw.stonemask(xd, f0, times, rate)
        f0[voiced & (f0 <= 0)] = np.median(f0[voiced])
        sp = pw.cheaptrick(xd, f0, times, rate)
        ap = frames_at(pw.d4c(xd, f0[::2].copy(), times[::2].copy(), rate), np.arange(len(f0)) / 2)
        f0_out = contour(f0, params)
    if params.formant_ratio != 1:
        sp, ap = warp(sp, params.formant_ratio), warp(ap, params.formant_ratio)
    if length != len(x):
        f0_out, sp, ap = retime(f0_out, sp, ap, max(1, int(length / rate / hop_s) + 1))
    y = synthesize(f0_out, sp, ap, rate, FRAME_MS / 1000)
    y = np.pad(y, (0, max(0, length - len(y))))[:length]
    gain = loud_rms(xd, rate) / max(loud_rms(y, rate), 1e-9)
    return (y * gain).astype(np.float32)


def contour(f0: np.ndarray, params: VoiceParams) -> np.ndarray:
    """The output f0: median → target · 2^(semitones/12), excursions (semitones) × pitch_range."""
    voiced = f0 > 0
    median = float(np.median(f0[voiced]))
    target = (params.target_f0_hz or median) * 2 ** (params.pitch_semitones / 12)
    out = np.zeros_like(f0)
    out[voiced] = target * (f0[voiced] / median) ** params.pitch_range
    return out


def warp(envelope: np.ndarray, ratio: float) -> np.ndarray:
    """Each frame's spectrum read at f / ratio (linear interpolation between bins)."""
    bins = envelope.shape[1]
    source = np.minimum(np.arange(bins) / ratio, bins - 1)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, bins - 1)
    frac = source - low
    return envelope[:, low] * (1 - frac) + envelope[:, high] * frac


def retime(f0: np.ndarray, sp: np.ndarray, ap: np.ndarray, frames: int):
    """The frame sequences resampled to `frames` frames over the same span: f0 (and so voicing)
    from the nearest frame, envelope and aperiodicity interpolated."""
    positions = np.linspace(0, len(f0) - 1, frames)
    nearest = np.rint(positions).astype(np.int64)
    return f0[nearest], frames_at(sp, positions), frames_at(ap, positions)


def frames_at(a: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Rows of `a` linearly interpolated at fractional row `positions` (clamped to the last)."""
    positions = np.clip(positions, 0, len(a) - 1)
    low = np.floor(positions).astype(np.int64)
    high = np.minimum(low + 1, len(a) - 1)
    frac = (positions - low)[:, None]
    return a[low] * (1 - frac) + a[high] * frac


def loud_rms(x: np.ndarray, rate: int) -> float:
    """RMS over the 20 ms frames within 30 dB of the loudest (pauses do not count)."""
    size = max(1, rate // 50)
    frames = len(x) // size
    if frames == 0:
        return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0
    energy = np.mean(np.square(x[: frames * size].reshape(frames, size)), axis=1)
    loud = energy >= energy.max() * 1e-3
    return float(np.sqrt(np.mean(energy[loud])))


def synthesize(f0: np.ndarray, sp: np.ndarray, ap: np.ndarray, rate: int, hop_s: float) -> np.ndarray:
    """Speech from WORLD parameters, as WORLD's own synthesis composes it, vectorised over frames.

    Periodic part: at each glottal pulse (the integral of f0 crossing a whole number), the
    minimum-phase impulse response of the power spectrum sp·(1 − ap²), interpolated between the
    two nearest frames, scaled by √(rate/f0) so its power does not depend on f0. Aperiodic part:
    white noise shaped frame by frame (STFT, hop = the frame period) by sp·ap². Both have the
    power sp would give white noise of unit variance, as in WORLD."""
    from scipy import fft

    frames, bins = sp.shape
    nfft = 2 * (bins - 1)
    hop = hop_s * rate
    length = round((frames - 1) * hop) + 1
    voiced_frames = f0 > 0
    ap = np.where(voiced_frames[:, None], np.clip(ap, BREATH, 1.0), 1.0)
    power = np.maximum(sp, 1e-16)

    # periodic: minimum-phase responses per frame (real cepstrum folded onto positive quefrencies)
    log_amp = 0.5 * np.log(np.maximum(power * (1 - ap**2), 1e-16))
    cep = fft.irfft(log_amp, nfft, axis=1, workers=-1)
    cep[:, 1 : nfft // 2] *= 2
    cep[:, nfft // 2 + 1 :] = 0
    responses = fft.irfft(np.exp(fft.rfft(cep, nfft, axis=1, workers=-1)), nfft, axis=1, workers=-1)
    # a minimum-phase response has died away (< -30 dB) well within half the FFT: keep that half
    keep = nfft // 2
    fade = np.ones(keep)
    fade[-keep // 8 :] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, keep // 8))
    responses = responses[:, :keep] * fade

    samples = np.arange(length)
    position = samples / hop
    nearest = np.minimum(np.rint(position).astype(np.int64), frames - 1)
    voiced = voiced_frames[nearest]
    frame_times = np.flatnonzero(voiced_frames)
    y = np.zeros(length + nfft)
    if len(frame_times):
        f0_samples = np.interp(position, frame_times, f0[frame_times])
        phase = np.cumsum(np.where(voiced, f0_samples, 0.0) / rate)
        pulses = np.flatnonzero(np.diff(np.floor(phase), prepend=0.0) > 0)
        if len(pulses):
            periods = rate / f0_samples[pulses]
            rng = np.random.default_rng(len(pulses))
            jitter = np.rint(JITTER * periods * rng.standard_normal(len(pulses))).astype(np.int64)
            pulses = np.clip(pulses + jitter, 0, length - 1)
            shimmer = np.maximum(0.0, 1 + SHIMMER * rng.standard_normal(len(pulses)))
            scale = (np.sqrt(periods) * shimmer)[:, None]
            shaped = frames_at(responses, position[pulses]) * scale
            index = pulses[:, None] + np.arange(keep)[None, :]
            y += np.bincount(index.ravel(), weights=shaped.ravel(), minlength=len(y))[: len(y)]

    # aperiodic: shaped white noise, weighted overlap-add at the frame period
    window = np.hanning(nfft + 1)[:-1]
    starts = np.rint(np.arange(frames) * hop).astype(np.int64)
    noise = np.random.default_rng(frames).standard_normal((frames, nfft)) * window
    shaped = (
        fft.irfft(fft.rfft(noise, axis=1, workers=-1) * np.sqrt(power * ap**2), nfft, axis=1, workers=-1)
        * window
    )
    index = starts[:, None] + np.arange(nfft)[None, :]
    noisy = np.bincount(index.ravel(), weights=shaped.ravel(), minlength=len(y) + nfft)
    weights = np.broadcast_to(window**2, shaped.shape).ravel()
    norm = np.bincount(index.ravel(), weights=weights, minlength=len(y) + nfft)
    noisy = noisy / np.maximum(norm, 1e-3 * norm.max())
    centred = noisy[nfft // 2 : nfft // 2 + len(y)]
    return (y + centred)[:length]
