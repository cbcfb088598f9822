"""RVC voice conversion: community voice models (`models/rvc/NAME.pth`, optional `NAME.index`).

The speech is resampled to 16 kHz and high-passed at 48 Hz; f0 is tracked once over the whole (padded)
utterance and shifted by the mode's semitones plus `rvc.transpose`. Long speech is converted in
segments of about SEGMENT_S cut at the quietest 10 ms within ±QUERY_S, each with PAD_S of context
either side. Per segment: HuBERT/ContentVec features (optionally blended towards the model's index),
doubled to 100 frames/s, `protect` mixing in unvoiced frames, then the generator. The result's loudness
envelope is mixed with the input's by `rms_mix_rate`, it is resampled to the input's rate, and the
mode's speed and warmth are applied with the DSP stage's WSOLA and tilt filter.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.signal import butter, sosfilt, sosfiltfilt

from ara_persona import VoiceParams
from ara_sidecar.audio import Audio, resample
from ara_sidecar.config import Settings
from ara_sidecar.digest import file_digest
from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.registry import Readiness
from ara_sidecar.voice.base import VoiceStage
from ara_sidecar.voice.dsp import PEAK_LIMIT, tilt_sos, wsola
from ara_sidecar.voice.rvc import f0 as pitch
from ara_sidecar.voice.rvc.checkpoint import find_index, find_model
from ara_sidecar.voice.rvc.hubert import find_hubert

if TYPE_CHECKING:
    from ara_sidecar.voice.rvc.checkpoint import VoiceModel
    from ara_sidecar.voice.rvc.hubert import ContentEncoder
    from ara_sidecar.voice.rvc.index import FeatureIndex

RATE = pitch.SAMPLE_RATE
HOP = pitch.HOP
PAD_S = 1.0  # context either side of a segment
SEGMENT_S, QUERY_S, MAX_S = 38.0, 6.0, 41.0  # RVC's CPU settings: cut about every 38 s, if over 41 s
HIGHPASS = butter(5, 48, btype="high", fs=RATE, output="sos")
SEED = 0  # of the prior and excitation noise: the same speech converts to the same audio


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


class RvcVoice(VoiceStage):
    name = "rvc"
    uses_device = True

    def __init__(self, settings: Settings, device: str):
        super().__init__(settings, device)
        self.model: VoiceModel | None = None
        self.hubert: ContentEncoder | None = None
        self.index: FeatureIndex | None = None

    @classmethod
    def readiness(cls, settings: Settings) -> Readiness:
        missing = [p for p in ("torch", "transformers") if importlib.util.find_spec(p) is None]
        if missing:
            return Readiness(
                False, f"needs the Python packages {', '.join(missing)} (pip install 'ara-avatar[rvc]')"
            )
        try:
            model = find_model(settings)
            hubert = find_hubert(settings.path(settings.models_dir), cls._hubert_setting(settings))
            index = find_index(settings, model)
        except BackendUnavailable as exc:
            return Readiness(False, str(exc))
        extra = f", index {index.name}" if index is not None and settings.rvc.index_rate > 0 else ""
        return Readiness(
            True, f"{model.name}{extra}, content encoder {hubert.name}, f0 {settings.rvc.f0_method}"
        )

    @staticmethod
    def _hubert_setting(settings: Settings) -> Path | None:
        return settings.path(settings.rvc.hubert) if settings.rvc.hubert is not None else None

    def _paths(self) -> tuple[Path, Path | None, Path]:
        model = find_model(self.settings)
        index = find_index(self.settings, model) if self.settings.rvc.index_rate > 0 else None
        hubert = find_hubert(
            self.settings.path(self.settings.models_dir), self._hubert_setting(self.settings)
        )
        return model, index, hubert

    def load(self) -> None:
        if self.model is not None:
            return
        import torch

        from ara_sidecar.voice.rvc.checkpoint import load_model
        from ara_sidecar.voice.rvc.hubert import load_hubert
        from ara_sidecar.voice.rvc.index import load_index

        model_path, index_path, hubert_path = self._paths()
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        model = load_model(model_path)
        hubert = load_hubert(hubert_path)
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
        model.synthesizer.to(self.device, dtype)
        hubert.to(self.device, dtype)
        self.model, self.hubert, self.index = model, hubert, index

    def fingerprint(self) -> dict:
        model, index, hubert = self._paths()
        hubert_files = (
            sorted(p for p in hubert.iterdir() if p.suffix in (".json", ".safetensors", ".bin"))
            if hubert.is_dir()
            else [hubert]
        )
        rvc = self.settings.rvc
        crepe = None
        if rvc.f0_method.startswith("crepe"):
            size = "tiny" if rvc.f0_method == "crepe-tiny" else "full"
            crepe = file_digest(pitch.crepe_weights(self.settings.path(self.settings.models_dir), size))
        return {
            "backend": self.name,
            "model": file_digest(model),
            "index": file_digest(index) if index is not None else None,
            "hubert": [file_digest(p) for p in hubert_files],
            "crepe": crepe,
            "settings": rvc.model_dump(
                include={"f0_method", "index_rate", "protect", "rms_mix_rate", "transpose", "speaker"}
            ),
            "fp16": self.device == "cuda",
            "warmth_pivot_hz": self.settings.dsp.warmth_pivot_hz,
        }

    def convert(self, audio: Audio, params: VoiceParams) -> Audio:
        length = round(len(audio.samples) / params.speed)
        if length == 0 or not np.any(audio.samples):
            return Audio(np.zeros(length, dtype=np.float32), audio.sample_rate)
        self.load()
        x = resample(audio, RATE).samples.astype(np.float64)
        x = sosfiltfilt(HIGHPASS, x / max(1.0, np.abs(x).max() / 0.95))
        converted = self.convert16(x, params.pitch_semitones + self.settings.rvc.transpose)
        y = resample(Audio(converted, self.model.sample_rate), audio.sample_rate).samples
        y = np.pad(y, (0, max(0, len(audio.samples) - len(y))))[: len(audio.samples)]
        if length != len(y):
            y = wsola(y, length, audio.sample_rate)
        if params.warmth_db != 0:
            y = sosfilt(tilt_sos(params.warmth_db, self.settings.dsp.warmth_pivot_hz, audio.sample_rate), y)
        peak = float(np.max(np.abs(y), initial=0.0))
        if peak > PEAK_LIMIT:
            y = y * (PEAK_LIMIT / peak)
        return Audio(np.asarray(y, dtype=np.float32), audio.sample_rate)

    def convert16(self, x: np.ndarray, semitones: float) -> np.ndarray:
        """High-passed 16 kHz speech → converted speech at the model's rate (len(x) / HOP frames)."""
        import torch

        model, rvc = self.model, self.settings.rvc
        pad = round(PAD_S * RATE)
        padded = np.pad(x, pad, mode="reflect")
        f0 = None
        if model.f0:
            frames = len(padded) // HOP
            f0 = pitch.estimate(
                padded, frames, rvc.f0_method, self.settings.path(self.settings.models_dir), self.device
            )
            f0 = f0 * 2 ** (semitones / 12)
        generator = torch.Generator(self.device).manual_seed(SEED)
        bounds = [
            0,
            *cut_points(x, round(SEGMENT_S * RATE), round(QUERY_S * RATE), round(MAX_S * RATE)),
            len(x),
        ]
        hop = model.synthesizer.cfg.hop
        trim = pad // HOP * hop
        out = []
        for start, end in itertools.pairwise(bounds):
            segment = padded[start : end + 2 * pad]
            part_f0 = f0[start // HOP : start // HOP + len(segment) // HOP] if f0 is not None else None
            y = self._segment(segment, part_f0, generator)
            out.append(y[trim : len(y) - trim])
        y = np.concatenate(out)
        if rvc.rms_mix_rate < 1:
            source = loudness_envelope(x, RATE, len(y))
            target = np.maximum(loudness_envelope(y, model.sample_rate, len(y)), 1e-6)
            y = y * source ** (1 - rvc.rms_mix_rate) * target ** (rvc.rms_mix_rate - 1)
        return y.astype(np.float32)

    def _segment(self, x: np.ndarray, f0: np.ndarray | None, generator) -> np.ndarray:
        import torch
        from torch.nn import functional as F

        model, rvc = self.model, self.settings.rvc
        synth = model.synthesizer
        dtype = next(synth.parameters()).dtype
        audio = torch.from_numpy(x).to(self.device, dtype)[None]
        feats = self.hubert(audio, model.version)
        original = feats
        if self.index is not None:
            blended = self.index.blend(feats[0].float().cpu().numpy(), rvc.index_rate)
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
