"""RMVPE pitch, as RVC runs it with its `rmvpe.pt` (a bare state dict of the network below).

A log-mel spectrogram (128 HTK-mel bands, 30–8000 Hz, of the STFT magnitude every 10 ms) goes
through a U-Net (5 levels of residual conv blocks down, 4 at the bottom, 5 up), a conv to 3 maps
and a bidirectional GRU to 360 sigmoid outputs on CREPE's 20-cent grid. f0 is the salience-weighted
mean of the cents within ±4 bins of the peak; frames whose peak is at most 0.03 are unvoiced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.voice.rvc.f0 import CREPE_BINS, CREPE_CENTS0, CREPE_CENTS_STEP, HOP, SAMPLE_RATE
from ara_sidecar.weights import read_checkpoint

N_FFT = 1024
N_MELS = 128
MEL_FMIN, MEL_FMAX = 30.0, 8000.0
LOG_FLOOR = 1e-5
THRESHOLD = 0.03  # peak salience at or below which a frame is unvoiced
WINDOW = 4  # bins either side of the peak in the weighted mean
UNET_STEP = 32  # the U-Net halves time 5 times: frames are padded to a multiple of 2**5


def rmvpe_weights(models_dir: Path) -> Path:
    """`models/rmvpe/rmvpe.pt` (RVC keeps it in `assets/rmvpe/`), else `models/rvc/rmvpe.pt`."""
    candidates = (models_dir / "rmvpe" / "rmvpe.pt", models_dir / "rvc" / "rmvpe.pt")
    for path in candidates:
        if path.is_file():
            return path
    raise BackendUnavailable(
        f"RMVPE weights not found: put rmvpe.pt (from the lj1995/VoiceConversionWebUI Hugging Face "
        f"repository, about 181 MB) in {candidates[0].parent}/; see models/README.md"
    )


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """The HTK mel scale."""
    return 2595 * np.log10(1 + hz / 700)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700 * (10 ** (mel / 2595) - 1)


def mel_filterbank() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangles evenly spaced on the HTK mel scale, each scaled to unit area
    (2 / its width in Hz): librosa's `filters.mel(htk=True)` with its default Slaney norm, as RMVPE
    was trained with."""
    edges = mel_to_hz(np.linspace(hz_to_mel(MEL_FMIN), hz_to_mel(MEL_FMAX), N_MELS + 2))
    lo, centre, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    rising, falling = (freqs - lo) / (centre - lo), (hi - freqs) / (hi - centre)
    return np.maximum(0, np.minimum(rising, falling)) * (2 / (hi - lo))


def log_mel(x: torch.Tensor) -> torch.Tensor:
    """(samples,) audio → (N_MELS, 1 + samples // HOP): log mel-weighted STFT magnitude of Hann-windowed
    frames centred on multiples of HOP (the signal reflected at both ends)."""
    window = torch.hann_window(N_FFT, device=x.device)
    spectrum = torch.stft(x, N_FFT, HOP, window=window, center=True, pad_mode="reflect", return_complex=True)
    basis = torch.from_numpy(mel_filterbank()).to(x.device, torch.float32)
    return torch.log(torch.clamp(basis @ spectrum.abs(), min=LOG_FLOOR))


class ResBlock(nn.Module):
    """Two 3×3 conv + BatchNorm + ReLU, plus the input (through a 1×1 conv when the width changes)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class ResStack(nn.Module):
    """`blocks` ResBlocks, the first from `cin` to `cout` channels."""

    def __init__(self, cin: int, cout: int, blocks: int):
        super().__init__()
        self.conv = nn.Sequential(*(ResBlock(cin if i == 0 else cout, cout) for i in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UpStack(nn.Module):
    """Double time and frequency (transposed conv), join the encoder's map of that size, ResBlocks."""

    def __init__(self, cin: int, cout: int, blocks: int):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )
        self.conv2 = nn.Sequential(*(ResBlock(2 * cout if i == 0 else cout, cout) for i in range(blocks)))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.cat([self.conv1(x), skip], dim=1))


class UNet(nn.Module):
    def __init__(self, levels: int = 5, middle: int = 4, blocks: int = 4, width: int = 16):
        super().__init__()
        widths = [width * 2**i for i in range(levels + 1)]  # 16 … 512
        down = [ResStack(widths[i - 1] if i else 1, widths[i], blocks) for i in range(levels)]
        bottom = [ResStack(widths[-2] if i == 0 else widths[-1], widths[-1], blocks) for i in range(middle)]
        up = [UpStack(widths[i + 1], widths[i], blocks) for i in reversed(range(levels))]
        # containers named as in rmvpe.pt: encoder.{bn,layers}, intermediate.layers, decoder.layers
        self.encoder = nn.ModuleDict({"bn": nn.BatchNorm2d(1), "layers": nn.ModuleList(down)})
        self.intermediate = nn.ModuleDict({"layers": nn.Sequential(*bottom)})
        self.decoder = nn.ModuleDict({"layers": nn.ModuleList(up)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder["bn"](x)
        skips = []
        for stack in self.encoder["layers"]:
            x = stack(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.intermediate["layers"](x)
        for stack, skip in zip(self.decoder["layers"], reversed(skips), strict=True):
            x = stack(x, skip)
        return x


class BiGRU(nn.Module):
    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.gru = nn.GRU(inputs, hidden, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


class Rmvpe(nn.Module):
    def __init__(self):
        super().__init__()
        self.unet = UNet()
        self.cnn = nn.Conv2d(16, 3, 3, padding=1)
        self.fc = nn.Sequential(
            BiGRU(3 * N_MELS, 256), nn.Linear(512, CREPE_BINS), nn.Dropout(0.25), nn.Sigmoid()
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(batch, N_MELS, frames), frames a multiple of UNET_STEP → (batch, frames, CREPE_BINS) salience."""
        x = self.cnn(self.unet(mel.transpose(1, 2)[:, None]))  # (batch, 3, frames, N_MELS)
        return self.fc(x.transpose(1, 2).flatten(2))


def rmvpe_network() -> Rmvpe:
    """RMVPE in the layout of RVC's `rmvpe.pt` (its state-dict keys), freshly initialised."""
    return Rmvpe()


def _mismatches(state: object, expected: dict[str, torch.Tensor]) -> str:
    """'' when `state` has exactly `expected`'s keys and shapes, else in short what differs."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a state dict"
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    shapes = [
        f"{k} is {tuple(getattr(state[k], 'shape', ()))}, not {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and getattr(state[k], "shape", None) != v.shape
    ]
    groups = ((missing, "missing"), (extra, "unexpected"), (shapes, "of another shape"))
    return "; ".join(
        f"{len(items)} {what}: {', '.join(map(str, items[:2]))}{', …' if len(items) > 2 else ''}"
        for items, what in groups
        if items
    )


_CACHE: dict[tuple[str, str], Rmvpe] = {}


def load_rmvpe(path: Path, device: str) -> Rmvpe:
    """The network with `path`'s weights on `device`, loaded once per (path, device)."""
    key = (str(path), device)
    if key not in _CACHE:
        net = rmvpe_network()
        state = read_checkpoint(path)  # a file that is no readable checkpoint: says what it is
        problems = _mismatches(state, net.state_dict())
        if problems:
            raise BackendUnavailable(f"{path} is not RVC's RMVPE checkpoint (rmvpe.pt): {problems}")
        net.load_state_dict(state)
        _CACHE[key] = net.eval().requires_grad_(False).to(device)
    return _CACHE[key]


def decode(salience: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """(frames, CREPE_BINS) salience → Hz per frame: the salience-weighted mean of the cents within
    ±WINDOW bins of the peak, 0 where the peak is at most `threshold`."""
    bins = np.arange(salience.shape[1])
    peak = salience.argmax(axis=1)
    near = salience * (np.abs(bins - peak[:, None]) <= WINDOW)
    cents = (near * (CREPE_CENTS0 + CREPE_CENTS_STEP * bins)).sum(axis=1) / np.maximum(near.sum(axis=1), 1e-9)
    return np.where(salience.max(axis=1) > threshold, 10 * 2 ** (cents / 1200), 0.0)


def salience(x: np.ndarray, net: Rmvpe, device: str) -> np.ndarray:
    """(1 + len(x) // HOP, CREPE_BINS) salience of 16 kHz audio `x` (at least N_FFT // 2 + 1 samples),
    frames centred on multiples of HOP: the log-mel padded with zeros (a log-mel of 0) to a multiple of
    UNET_STEP frames, as RVC's RMVPE.mel2hidden pads it in its 2024-06 release and on main alike."""
    with torch.no_grad():
        mel = log_mel(torch.from_numpy(x.astype(np.float32)).to(device))
        frames, pad = mel.shape[1], -mel.shape[1] % UNET_STEP
        return net(F.pad(mel[None], (0, pad)))[0, :frames].cpu().numpy()


def rmvpe(x: np.ndarray, weights: Path, device: str) -> np.ndarray:
    """RMVPE f0 of 16 kHz audio (at least N_FFT // 2 + 1 samples) every HOP samples, frames centred on
    multiples of HOP. Like RVC, no range is imposed: a pitch outside 50–1100 Hz drives the NSF source
    as it is (its coarse pitch token is clamped to the table)."""
    return decode(salience(x, load_rmvpe(weights, device), device))
