"""The embedded voice stage: the persona's base voice and each mode's pitch, range, speed and warmth.

Where f0 or formants change (`VoiceParams.reshapes`: a target median f0, a formant ratio, a pitch
shift or a pitch range), speech is analysed and resynthesised with the WORLD vocoder (`world.py`):
f0 and the spectral envelope move independently, and the tempo changes on the same frames.
Where only the tempo changes, one WSOLA pass (30 ms Hann frames at 50 % overlap, each aligned
within ±10 ms to its predecessor's natural continuation by normalised cross-correlation) keeps
the waveform itself. Warmth is a tilt: RBJ low shelf +warmth_db/2 dB and high shelf -warmth_db/2
dB at `dsp.warmth_pivot_hz`.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft
from scipy.signal import sosfilt

from ara_persona import VoiceParams
from ara_sidecar.audio import Audio
from ara_sidecar.config import Settings
from ara_sidecar.registry import Readiness
from ara_sidecar.voice import world
from ara_sidecar.voice.base import VoiceStage

FRAME_S = 0.03  # WSOLA frame length; the hop is half of it
SEARCH_S = 0.01  # WSOLA alignment tolerance either side of the nominal frame position
PEAK_LIMIT = 0.99


class DspVoice(VoiceStage):
    name = "dsp"

    @classmethod
    def readiness(cls, settings: Settings) -> Readiness:
        return Readiness(True, "WORLD resynthesis (pitch, formants), WSOLA time-scaling, shelving tilt")

    def convert(self, audio: Audio, params: VoiceParams) -> Audio:
        x, rate = audio.samples, audio.sample_rate
        length = round(len(x) / params.speed)
        if not params.reshapes and length == len(x) and params.warmth_db == 0:
            return audio
        if length == 0:
            return Audio(np.zeros(0, dtype=np.float32), rate)
        if params.reshapes:
            y = world.reshape(x, rate, params)
        elif length != len(x):
            y = wsola(x, length, rate)
        else:
            y = x
        if params.warmth_db != 0:
            y = sosfilt(tilt_sos(params.warmth_db, self.settings.dsp.warmth_pivot_hz, rate), y)
        peak = float(np.max(np.abs(y), initial=0.0))
        if peak > PEAK_LIMIT:
            y = y * (PEAK_LIMIT / peak)
        return Audio(np.asarray(y, dtype=np.float32), rate)

    def fingerprint(self) -> dict:
        return {"backend": self.name, "warmth_pivot_hz": self.settings.dsp.warmth_pivot_hz, "version": 2}


def wsola(x: np.ndarray, length: int, rate: int) -> np.ndarray:
    """Time-scale `x` to exactly `length` samples without changing its pitch.

    Frame k's nominal start is k·Ha (Ha = hop / stretch); its offset d_k ∈ [-search, search] maximises
    the normalised correlation with the natural continuation of frame k-1. That correlation is
    precomputed for all frames at once around the nominal positions (lag = d_k - d_{k-1}, assuming
    local stationarity), so the sequential part is only an argmax per frame.
    """
    n = len(x)
    hop = max(1, round(FRAME_S * rate / 2))
    size, search = 2 * hop, round(SEARCH_S * rate)
    frames = -(-length // hop) + 1
    pad = hop + 2 * search
    starts = pad - hop + np.round(np.arange(frames) * (n / length * hop)).astype(np.int64)
    tail = max(0, starts[-1] + hop + 2 * search + size - (pad + n))
    xp = np.concatenate([np.zeros(pad, np.float32), x.astype(np.float32), np.zeros(tail, np.float32)])

    span = 4 * search + 1
    nfft = fft.next_fast_len(size + span - 1, real=True)
    templates = sliding_window_view(xp, size)[starts[:-1] + hop]
    regions = sliding_window_view(xp, size + span - 1)[starts[1:] - 2 * search]
    spec = np.conj(fft.rfft(templates, nfft, workers=-1)) * fft.rfft(regions, nfft, workers=-1)
    corr = fft.irfft(spec, nfft, workers=-1)[:, :span]
    cumulative = np.concatenate([[0.0], np.cumsum(np.square(xp, dtype=np.float64))])
    inv_norm = (1 / np.sqrt(cumulative[size:] - cumulative[:-size] + 1e-9)).astype(np.float32)
    ncc = corr * sliding_window_view(inv_norm, span)[starts[1:] - 2 * search]

    offsets = np.zeros(frames, dtype=np.int64)
    for k in range(1, frames):
        first = search - offsets[k - 1]
        offsets[k] = int(np.argmax(ncc[k - 1, first : first + 2 * search + 1])) - search

    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / size)).astype(np.float32)
    grains = sliding_window_view(xp, size)[starts + offsets] * window
    blocks = np.zeros((frames + 1, hop), dtype=np.float32)
    blocks[:-1] += grains[:, :hop]
    blocks[1:] += grains[:, hop:]
    return blocks.ravel()[hop : hop + length]


def tilt_sos(warmth_db: float, pivot_hz: float, rate: int) -> np.ndarray:
    """Second-order sections: RBJ low shelf +warmth_db/2 and high shelf -warmth_db/2 dB at `pivot_hz`."""
    w0 = 2 * np.pi * min(pivot_hz, 0.45 * rate) / rate
    cos, alpha = np.cos(w0), np.sin(w0) / np.sqrt(2)  # shelf slope S = 1
    a = 10 ** (warmth_db / 80)  # RBJ's A for a shelf gain of warmth_db/2 dB
    sa = 2 * np.sqrt(a) * alpha
    low = [
        a * ((a + 1) - (a - 1) * cos + sa),
        2 * a * ((a - 1) - (a + 1) * cos),
        a * ((a + 1) - (a - 1) * cos - sa),
        (a + 1) + (a - 1) * cos + sa,
        -2 * ((a - 1) + (a + 1) * cos),
        (a + 1) + (a - 1) * cos - sa,
    ]
    a = 1 / a  # the high shelf's gain is -warmth_db/2 dB
    sa = 2 * np.sqrt(a) * alpha
    high = [
        a * ((a + 1) + (a - 1) * cos + sa),
        -2 * a * ((a - 1) + (a + 1) * cos),
        a * ((a + 1) + (a - 1) * cos - sa),
        (a + 1) - (a - 1) * cos + sa,
        2 * ((a - 1) - (a + 1) * cos),
        (a + 1) - (a - 1) * cos - sa,
    ]
    sos = np.array([low, high])
    return sos / sos[:, 3:4]
