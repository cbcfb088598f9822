"""RVC voice conversion: community voice models (`models/rvc/NAME.pth`, optional `NAME.index`), one per mode.

The speech is resampled to 16 kHz and high-passed at 48 Hz; f0 is tracked once over the whole (padded)
utterance, moved to the persona's `target_f0_hz` (if set) with its excursions scaled by the mode's
`pitch_range`, as the DSP stage does, and shifted by the mode's semitones plus `rvc.transpose` (the
voice model itself sets the timbre: `formant_ratio` does not apply). Long speech is converted in
segments cut at the quietest 10 ms near every multiple of a segment length, each with context either
side, with RVC's per-device lengths (`segmenting`); neighbouring segments are crossfaded over FADE_S
around each cut. Per segment: HuBERT/ContentVec features (optionally blended towards the model's
index), doubled to 100 frames/s, `protect` mixing in unvoiced frames, then the generator. The result's
loudness envelope is mixed with the input's by `rms_mix_rate`, it is resampled to the input's rate, and
the mode's speed and warmth are applied with the DSP stage's WSOLA and tilt filter.

Which RVC this follows (see models/README.md): the classic pipeline of its 2024-06 release (f0 methods
pm, harvest, crepe and rmvpe; unvoiced frames keep f0 0, so `protect` applies), whose generator, RMVPE
and segmenting RVC's main branch shares; main's filling of unvoiced f0 by interpolation is
`fill_unvoiced` in f0.py.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections import OrderedDict
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.signal import butter, sosfilt, sosfiltfilt

from ara_persona import VoiceParams
from ara_sidecar.audio import Audio, resample
from ara_sidecar.config import Settings
from ara_sidecar.digest import file_digest
from ara_sidecar.errors import BackendUnavailable, UserError
from ara_sidecar.personas import get_persona
from ara_sidecar.registry import Readiness
from ara_sidecar.voice.base import VoiceStage
from ara_sidecar.voice.dsp import PEAK_LIMIT, tilt_sos, wsola
from ara_sidecar.voice.rvc import f0 as pitch
from ara_sidecar.voice.rvc.checkpoint import default_model, find_index, find_model
from ara_sidecar.voice.rvc.hubert import find_hubert
from ara_sidecar.voice.rvc.rmvpe import rmvpe_weights
from ara_sidecar.voice.world import contour

if TYPE_CHECKING:
    from ara_sidecar.voice.rvc.checkpoint import VoiceModel
    from ara_sidecar.voice.rvc.hubert import ContentEncoder
    from ara_sidecar.voice.rvc.index import FeatureIndex

RATE = pitch.SAMPLE_RATE
HOP = pitch.HOP
HIGHPASS = butter(5, 48, btype="high", fs=RATE, output="sos")
SEED = 0  # of the prior and excitation noise: the same speech converts to the same audio
MODELS_KEPT = 2  # voice models (with their indexes) kept loaded; the content encoder is shared
FADE_S = 0.02  # crossfade of neighbouring segments, centred on each cut


@dataclass(frozen=True)
class Segmenting:
    """RVC's x_pad, x_query, x_center and x_max in seconds: speech longer than `longest_s` is cut near
    every multiple of `centre_s`, at the quietest 10 ms within ±`query_s`; each segment is converted
    with `pad_s` of context either side."""

    pad_s: float
    query_s: float
    centre_s: float
    longest_s: float


# RVC's configs/config.py device_config, the same in its 2024-06 release and on main:
FP32_SEGMENTS = Segmenting(1, 6, 38, 41)  # the CPU, MPS, or a GPU running in fp32
FP16_SEGMENTS = Segmenting(3, 10, 60, 65)  # a CUDA GPU in half precision
SMALL_GPU_SEGMENTS = Segmenting(1, 5, 30, 32)  # a CUDA GPU of at most 4 GiB
SMALL_GPU_GIB = 4


def segmenting(half: bool, gpu_gib: int | None) -> Segmenting:
    """RVC's segment lengths for a run in half precision or not, on a CUDA GPU of `gpu_gib` GiB
    (RVC's rounding: int(bytes / 2**30 + 0.4)) or on no CUDA GPU (None)."""
    if gpu_gib is not None and gpu_gib <= SMALL_GPU_GIB:
        return SMALL_GPU_SEGMENTS
    return FP16_SEGMENTS if half else FP32_SEGMENTS


def gpu_gib(device: str) -> int | None:
    """The CUDA GPU's memory in GiB as RVC rounds it, None when `device` is not CUDA."""
    if not device.startswith("cuda"):
        return None
    import torch

    return int(torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30 + 0.4)


def fade_in(positions: np.ndarray, centre: int, half: int) -> np.ndarray:
    """Weights at sample `positions` rising from 0 to 1 as a raised cosine over [centre − half,
    centre + half): 0 before, 1 after; 1 minus them is the matching fade-out (they sum to 1)."""
    k = np.clip(positions - (centre - half), -1, 2 * half)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (k + 0.5) / (2 * half))
    return np.where(k < 0, 0.0, np.where(k >= 2 * half, 1.0, ramp))


def cut_points(x: np.ndarray, segment: int, query: int, longest: int) -> list[int]:
    """Where to cut 16 kHz audio longer than `longest` samples: near every multiple of `segment`,
    at the quietest HOP-long stretch within ±`query`, on a HOP boundary."""
    if len(x) + HOP <= longest:
        return []
    loudness = np.convolve(np.abs(np.pad(x, HOP // 2, mode="reflect")), np.ones(HOP), mode="valid")[: len(x)]
    cuts = []
    for t in range(segment, len(x), segment):
        lo = max(t - query, 0)
        cut = (lo + int(np.argmin(loudness[lo : t + query]))) // HOP * HOP
        if cut > (cuts[-1] if cuts else 0) and cut < len(x):
            cuts.append(cut)
    return cuts


def loudness_envelope(x: np.ndarray, rate: int, length: int) -> np.ndarray:
    """RMS over 1 s frames every 0.5 s (centred), linearly interpolated to `length` points."""
    frame, hop = rate // 2 * 2, rate // 2
    padded = np.pad(x, frame // 2)
    count = max(1, 1 + (len(padded) - frame) // hop)
    rms = np.array([np.sqrt(np.mean(np.square(padded[i * hop : i * hop + frame]))) for i in range(count)])
    positions = np.clip((np.arange(length) + 0.5) * count / length - 0.5, 0, count - 1)
    return np.interp(positions, np.arange(count), rms)


def _digests(model: Path, index: Path | None) -> tuple[str, str | None]:
    return file_digest(model), file_digest(index) if index is not None else None


@dataclass(frozen=True)
class LoadedModel:
    """A voice model on the stage's device, with its feature index (None: unused or absent)."""

    model: VoiceModel
    index: FeatureIndex | None


class RvcVoice(VoiceStage):
    """The model of each mode is loaded on first use (see find_model); the MODELS_KEPT most recently
    used stay loaded, keyed by the digests of their files, so a file replaced on disk is read again."""

    name = "rvc"
    uses_device = True

    def __init__(self, settings: Settings, device: str):
        super().__init__(settings, device)
        self.hubert: ContentEncoder | None = None
        self._models: OrderedDict[tuple[str, str | None], LoadedModel] = OrderedDict()  # oldest first

    @classmethod
    def readiness(cls, settings: Settings) -> Readiness:
        """Checks the models that the modes of the configured persona choose."""
        missing = [p for p in ("torch", "transformers") if importlib.util.find_spec(p) is None]
        if missing:
            return Readiness(
                False, f"needs the Python packages {', '.join(missing)} (pip install 'ara-avatar[rvc]')"
            )
        try:
            files = []
            for choice in cls._choices(settings):
                model = find_model(settings, choice)
                files.append((model, find_index(settings, model, choice)))
            hubert = find_hubert(settings.path(settings.models_dir), cls._hubert_setting(settings))
        except BackendUnavailable as exc:
            return Readiness(False, str(exc))
        use_index = settings.rvc.index_rate > 0
        models = "; ".join(
            f"{model.name}, index {index.name}" if index is not None and use_index else model.name
            for model, index in files
        )
        return Readiness(True, f"{models}, content encoder {hubert.name}, f0 {settings.rvc.f0_method}")

    @staticmethod
    def _choices(settings: Settings) -> list[str | None]:
        """The rvc_model of each mode of the configured persona, once each (None: the default model);
        just the default when rvc.model overrides them or the persona does not load (its own error
        shows where it is used)."""
        if settings.rvc.model is not None:
            return [None]
        try:
            persona = get_persona(settings)
        except UserError:
            return [None]
        return list(dict.fromkeys(mode.voice.rvc_model for mode in persona.modes.values()))

    @staticmethod
    def _hubert_setting(settings: Settings) -> Path | None:
        return settings.path(settings.rvc.hubert) if settings.rvc.hubert is not None else None

    def _hubert_path(self) -> Path:
        return find_hubert(self.settings.path(self.settings.models_dir), self._hubert_setting(self.settings))

    def _files(self, rvc_model: str | None) -> tuple[Path, Path | None]:
        """The model a mode's `rvc_model` selects and its index (None when unused or absent)."""
        model = find_model(self.settings, rvc_model)
        index = find_index(self.settings, model, rvc_model) if self.settings.rvc.index_rate > 0 else None
        return model, index

    def _dtype(self):
        import torch

        return torch.float16 if self.device == "cuda" else torch.float32

    def segmenting(self) -> Segmenting:
        """RVC's segment lengths for this stage's device and precision (fp16 on CUDA)."""
        return segmenting(self.device == "cuda", gpu_gib(self.device))

    def _unvoiced_f0(self) -> str:
        """`zero` (RVC's classic pipeline) or `interpolate` (RVC main's): rvc.unvoiced_f0 where the
        settings have it."""
        return self.settings.rvc.unvoiced_f0

    def load(self) -> None:
        """The content encoder and the default model. Without a default (no rvc.model and several
        models in models/rvc/) only modes that name their model can convert; each loads on first use."""
        if self.hubert is not None:
            return
        from ara_sidecar.voice.rvc.hubert import load_hubert

        has_default = default_model(self.settings) is not None  # first: a missing rvc.model is the error
        hubert = load_hubert(self._hubert_path())
        hubert.to(self.device, self._dtype())
        self.hubert = hubert
        if has_default:
            self._model_for(None)

    @property
    def model(self) -> VoiceModel:
        """The default model (of modes without rvc_model)."""
        return self._model_for(None).model

    @property
    def index(self) -> FeatureIndex | None:
        """The default model's index."""
        return self._model_for(None).index

    def _model_for(self, rvc_model: str | None) -> LoadedModel:
        """The model a mode's `rvc_model` selects, loaded if it is not (dropping the least recently used)."""
        model_path, index_path = self._files(rvc_model)
        key = _digests(model_path, index_path)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        while len(self._models) >= MODELS_KEPT:  # before loading: at most MODELS_KEPT in memory
            self._models.popitem(last=False)
        self._models[key] = loaded = self._load_model(model_path, index_path)
        return loaded

    def _load_model(self, model_path: Path, index_path: Path | None) -> LoadedModel:
        from ara_sidecar.voice.rvc.checkpoint import load_model
        from ara_sidecar.voice.rvc.index import load_index

        model = load_model(model_path)
        index = load_index(index_path) if index_path is not None else None
        speakers = model.synthesizer.cfg.spk_embed_dim
        if self.settings.rvc.speaker >= speakers:
            raise BackendUnavailable(
                f"rvc.speaker is {self.settings.rvc.speaker}, but {model_path.name} has {speakers} "
                f"speaker(s): 0 to {speakers - 1}"
            )
        width = 256 if model.version == "v1" else 768
        if index is not None and index.dim != width:
            raise BackendUnavailable(
                f"{index_path} holds {index.dim}-d features; "
                f"the {model.version} model {model_path.name} needs {width}-d"
            )
        model.synthesizer.to(self.device, self._dtype())
        return LoadedModel(model, index)

    def mode_inputs(self, params: VoiceParams) -> dict:
        """The digests of the model and index that `params` select (see find_model)."""
        model, index = _digests(*self._files(params.rvc_model))
        return {"model": model, "index": index}

    def fingerprint(self) -> dict:
        """Everything but the voice model and its index, which modes choose: see mode_inputs."""
        hubert = self._hubert_path()
        hubert_files = (
            sorted(p for p in hubert.iterdir() if p.suffix in (".json", ".safetensors", ".bin"))
            if hubert.is_dir()
            else [hubert]
        )
        rvc = self.settings.rvc
        models_dir = self.settings.path(self.settings.models_dir)
        crepe = rmvpe = None
        if rvc.f0_method.startswith("crepe"):
            size = "tiny" if rvc.f0_method == "crepe-tiny" else "full"
            crepe = file_digest(pitch.crepe_weights(models_dir, size))
        elif rvc.f0_method == "rmvpe":
            rmvpe = file_digest(rmvpe_weights(models_dir))
        return {
            "backend": self.name,
            "hubert": [file_digest(p) for p in hubert_files],
            "crepe": crepe,
            "rmvpe": rmvpe,
            "settings": rvc.model_dump(
                include={
                    "f0_method",
                    "index_rate",
                    "protect",
                    "rms_mix_rate",
                    "transpose",
                    "speaker",
                    "unvoiced_f0",
                }
            ),
            "fp16": self.device == "cuda",
            "segments": astuple(self.segmenting()),
            "warmth_pivot_hz": self.settings.dsp.warmth_pivot_hz,
        }

    def convert(self, audio: Audio, params: VoiceParams) -> Audio:
        length = round(len(audio.samples) / params.speed)
        if length == 0 or not np.any(audio.samples):
            return Audio(np.zeros(length, dtype=np.float32), audio.sample_rate)
        self.load()
        loaded = self._model_for(params.rvc_model)
        x = resample(audio, RATE).samples.astype(np.float64)
        x = sosfiltfilt(HIGHPASS, x / max(1.0, np.abs(x).max() / 0.95))
        shape = replace(params, pitch_semitones=params.pitch_semitones + self.settings.rvc.transpose)
        converted = self.convert16(x, shape.pitch_semitones, loaded, shape=shape)
        y = resample(Audio(converted, loaded.model.sample_rate), audio.sample_rate).samples
        y = np.pad(y, (0, max(0, len(audio.samples) - len(y))))[: len(audio.samples)]
        if length != len(y):
            y = wsola(y, length, audio.sample_rate)
        if params.warmth_db != 0:
            y = sosfilt(tilt_sos(params.warmth_db, self.settings.dsp.warmth_pivot_hz, audio.sample_rate), y)
        peak = float(np.max(np.abs(y), initial=0.0))
        if peak > PEAK_LIMIT:
            y = y * (PEAK_LIMIT / peak)
        return Audio(np.asarray(y, dtype=np.float32), audio.sample_rate)

    def convert16(
        self, x: np.ndarray, semitones: float, loaded: LoadedModel, shape: VoiceParams | None = None
    ) -> np.ndarray:
        """High-passed 16 kHz speech → converted speech at the model's rate, hop samples per HOP of `x`.
        f0 is shifted by `semitones`, or mapped as `shape` says (target median, range, semitones).

        Each segment's output is placed by its start (the generator can come out a frame or two short
        at the end of its context, never within the part kept), and neighbouring segments overlap by
        FADE_S around each cut, crossfaded, so no seam shows."""
        import torch

        model, rvc = loaded.model, self.settings.rvc
        seg = self.segmenting()
        pad = round(seg.pad_s * RATE)
        padded = np.pad(x, pad, mode="reflect")
        f0 = None
        if model.f0:
            frames = len(padded) // HOP
            f0 = pitch.estimate(
                padded, frames, rvc.f0_method, self.settings.path(self.settings.models_dir), self.device
            )
            if self._unvoiced_f0() == "interpolate":
                f0 = pitch.fill_unvoiced(f0)
            if shape is not None and (shape.target_f0_hz is not None or shape.pitch_range != 1) and f0.any():
                f0 = contour(f0, shape)
            else:
                f0 = f0 * 2 ** (semitones / 12)
        generator = torch.Generator(self.device).manual_seed(SEED)
        cuts = cut_points(
            x, round(seg.centre_s * RATE), round(seg.query_s * RATE), round(seg.longest_s * RATE)
        )
        bounds = [0, *cuts, len(x)]
        hop = model.synthesizer.cfg.hop
        trim = pad // HOP * hop
        total = len(x) // HOP * hop
        half_fade = max(1, round(FADE_S * model.sample_rate) // 2)
        y = np.zeros(total)
        last = len(bounds) - 2
        for i, (start, end) in enumerate(itertools.pairwise(bounds)):
            segment = padded[start : end + 2 * pad]
            part_f0 = f0[start // HOP : start // HOP + len(segment) // HOP] if f0 is not None else None
            part = self._segment(segment, part_f0, generator, loaded)
            first, stop = start // HOP * hop, end // HOP * hop  # part[trim] goes to `first`
            lo = first - (half_fade if i > 0 else 0)
            hi = min(total, stop + (half_fade if i < last else 0))
            piece = part[trim + lo - first : trim + hi - first]
            piece = np.pad(piece, (0, hi - lo - len(piece)))  # only if the context was too short
            positions = np.arange(lo, hi)
            if i > 0:
                piece = piece * fade_in(positions, first, half_fade)
            if i < last:
                piece = piece * (1 - fade_in(positions, stop, half_fade))
            y[lo:hi] += piece
        if rvc.rms_mix_rate < 1:
            source = loudness_envelope(x, RATE, len(y))
            target = np.maximum(loudness_envelope(y, model.sample_rate, len(y)), 1e-6)
            y = y * source ** (1 - rvc.rms_mix_rate) * target ** (rvc.rms_mix_rate - 1)
        return y.astype(np.float32)

    def _segment(self, x: np.ndarray, f0: np.ndarray | None, generator, loaded: LoadedModel) -> np.ndarray:
        import torch
        from torch.nn import functional as F

        model, rvc = loaded.model, self.settings.rvc
        synth = model.synthesizer
        dtype = next(synth.parameters()).dtype
        audio = torch.from_numpy(x).to(self.device, dtype)[None]
        feats = self.hubert(audio, model.version)
        original = feats
        if loaded.index is not None:
            blended = loaded.index.blend(feats[0].float().cpu().numpy(), rvc.index_rate)
            feats = torch.from_numpy(blended).to(self.device, dtype)[None]
        frames = min(len(x) // HOP, 2 * feats.shape[1])
        feats = F.interpolate(feats.transpose(1, 2), scale_factor=2).transpose(1, 2)[:, :frames]
        if f0 is None:
            return synth.infer(feats, None, None, rvc.speaker, generator).float().cpu().numpy()
        f0 = f0[:frames]
        if rvc.protect < 0.5:
            original = F.interpolate(original.transpose(1, 2), scale_factor=2).transpose(1, 2)[:, :frames]
            keep = torch.from_numpy(np.where(f0 > 0, 1.0, rvc.protect)).to(self.device, dtype)[None, :, None]
            feats = feats * keep + original * (1 - keep)
        coarse = torch.from_numpy(pitch.coarse(f0.copy())).to(self.device)[None]
        nsf = torch.from_numpy(f0).to(self.device, torch.float32)[None]
        return synth.infer(feats, coarse, nsf, rvc.speaker, generator).float().cpu().numpy()
