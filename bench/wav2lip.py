"""Benchmark: Wav2Lip's plain per-frame forward (the reference way) against the optimised path.

    .venv/bin/python bench/wav2lip.py [--device cpu|cuda] [--seconds 10]

A random-weight full-size generator in the official checkpoint format (no official weights
are needed; speed does not depend on the values), the shipped 512×512 avatar and ~10 s of
Piper speech, all in one run:
  plain  the whole fp32 model on every frame's (mel window, face) pair, batches of 64;
  fast   the backend's engine: face features once, only the audio-dependent part per frame,
         distinct mel windows only (channels-last fp32 on the CPU, fp16 on CUDA);
  stage  the whole lip-sync stage (face detection, mel, model, paste), warm, model load excluded.
Targets (issue 6): fast ≥ 1.5× plain and a stage real-time factor ≤ 0.8 on a 2-core CPU;
stage ≤ 0.05 on an H100-class GPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from render import REPLY, machine_line

from ara_sidecar.avatar import load_avatar
from ara_sidecar.config import load_settings
from ara_sidecar.lipsync import frame_count
from ara_sidecar.lipsync.wav2lip import Wav2Lip
from ara_sidecar.lipsync.wav2lip.audio import mel_windows
from ara_sidecar.lipsync.wav2lip.engine import Engine
from ara_sidecar.lipsync.wav2lip.model import Wav2LipGenerator
from ara_sidecar.personas import get_persona
from ara_sidecar.tts.piper import PiperTTS


def random_checkpoint(path: Path) -> None:
    """Random weights in the official layout, BatchNorm statistics calibrated on random input."""
    torch.manual_seed(0)
    model = Wav2LipGenerator()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        model.train()(torch.randn(16, 1, 80, 16) * 2, torch.rand(16, 6, 96, 96))
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--seconds", type=float, default=10.0, help="speech to use (at most the reply's)")
    args = parser.parse_args()
    print(machine_line() + (f", {torch.cuda.get_device_name(0)}" if args.device == "cuda" else ""))
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    settings = load_settings()
    tts = PiperTTS(settings, "cpu")
    tts.load()
    speech = tts.synthesize(REPLY)
    speech = type(speech)(speech.samples[: round(args.seconds * speech.sample_rate)], speech.sample_rate)
    avatar_path = get_persona(settings).avatar_path
    avatar = load_avatar(avatar_path, max_pixels=10**8, max_side=settings.video_max_side)
    fps = settings.fps
    n = frame_count(speech.duration_s, fps)
    print(
        f"speech {speech.duration_s:.2f} s, {n} frames at {fps} fps, avatar {avatar.image.shape[1]}×"
        f"{avatar.image.shape[0]}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "wav2lip_gan.pth"
        random_checkpoint(ckpt)
        cfg = settings.with_overrides(**{"wav2lip.checkpoint": str(ckpt), "lipsync": "wav2lip"})
        backend = Wav2Lip(cfg, args.device)
        start = time.perf_counter()
        backend.load()
        print(f"model load {time.perf_counter() - start:.2f} s")
        prepared = backend.prepare(avatar)
        face = backend._face(prepared)
        windows = mel_windows(speech, n, fps)
        distinct = np.unique(windows.reshape(n, -1), axis=0)
        plain = Engine(backend.engine.model, args.device, "reference", 64)
        fast = backend.engine
        for engine in (plain, fast):  # warm-up: kernels, allocator, per-face tensors
            engine.run(face.key, face.model_input, windows[:8])

        def timed(run) -> float:
            _sync(args.device)
            start = time.perf_counter()
            run()
            _sync(args.device)
            return time.perf_counter() - start

        plain_s = timed(lambda: plain.run(face.key, face.model_input, windows))
        fast_s = timed(lambda: fast.run(face.key, face.model_input, distinct.reshape(-1, 80, 16)))
        list(backend.animate(prepared, speech, fps))  # warm the stage once
        stage_s = timed(lambda: list(backend.animate(backend.prepare(avatar), speech, fps)))
    duration = speech.duration_s
    print(f"plain  {n / plain_s:7.1f} frames/s  RTF {plain_s / duration:.3f}  (fp32, whole model per frame)")
    print(
        f"fast   {n / fast_s:7.1f} frames/s  RTF {fast_s / duration:.3f}  ({fast.precision}, "
        f"{len(distinct)} distinct windows, batch {fast.batch})"
    )
    print(f"speed-up fast / plain: {plain_s / fast_s:.2f}× (target ≥ 1.5×)")
    target = 0.05 if args.device == "cuda" else 0.8
    print(
        f"stage  {n / stage_s:7.1f} frames/s  RTF {stage_s / duration:.3f} (target ≤ {target}; "
        "face detection, mel, model and paste)"
    )


if __name__ == "__main__":
    main()
