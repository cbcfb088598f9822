"""Benchmark: Wav2Lip's plain per-frame forward (the reference way) against the optimised path.

    .venv/bin/python bench/wav2lip.py [--device cpu|cuda] [--seconds 10]

A random-weight full-size generator in the official checkpoint format (no official weights
are needed; speed does not depend on the values), the shipped 512×512 avatar and ~10 s of
Piper speech, all in one run, each path timed `--rounds` times in turn (the best is reported:
the least disturbed by other load):
  plain  the whole fp32 model on every frame's (mel window, face) pair, batches of 64;
  torch  the fast engine in PyTorch: face features once, only the audio-dependent part per frame,
         only the face rows the paste-back blends in (channels-last fp32 on the CPU, fp16 on CUDA);
  whole  the torch engine computing the whole 96×96 face (what the row cut saves);
  onnx   the same per-frame network in ONNX Runtime (CPU only; the backend's choice there);
  stage  the whole lip-sync stage (face detection, mel, model, paste) with each fast engine, warm,
         model load (and the ONNX export into a temporary cache) excluded.
Every engine is first timed on the same work, every frame's mel window (windows/s, speed-ups of
the engines alone); then the fast engines as the stage runs them, on the distinct windows only
(a repeated window, as in silence, is computed once): frames of video per second, and the speed-up
over plain that the engine and the deduplication give together.
Targets (issue 7): fast ≥ 1.5× plain and a stage real-time factor ≤ 0.8 on a 2-core CPU;
stage ≤ 0.05 on an H100-class GPU.
"""

from __future__ import annotations

import argparse
import os
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
from ara_sidecar.lipsync.wav2lip.face import FIRST_BLENDED_ROW
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
    parser.add_argument("--rounds", type=int, default=3, help="timings of each path, best reported")
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
        overrides = {"wav2lip.checkpoint": str(ckpt), "lipsync": "wav2lip", "cache.dir": tmp}
        backend = Wav2Lip(settings.with_overrides(**overrides), args.device)
        start = time.perf_counter()
        backend.load()
        print(f"model load {time.perf_counter() - start:.2f} s (ONNX export included on the CPU)")
        prepared = backend.prepare(avatar)
        face = backend._face(prepared)
        windows = mel_windows(speech, n, fps)
        distinct = np.unique(windows.reshape(n, -1), axis=0).reshape(-1, 80, 16)
        engines = {"plain": Engine(backend.engine.model, args.device, "reference", 64)}
        engines["torch"] = Engine(backend.engine.model, args.device, "fast", first_row=FIRST_BLENDED_ROW)
        engines["whole"] = Engine(backend.engine.model, args.device, "fast")
        if backend.engine.session is not None:
            engines["onnx"] = backend.engine
        fast = [name for name in engines if name != "plain"]
        staged = [name for name in fast if name != "whole"]
        for engine in engines.values():  # warm-up: kernels, allocator, per-face tensors
            engine.run(face.key, face.model_input, windows[:8])

        def timed(run) -> float:
            _sync(args.device)
            start = time.perf_counter()
            run()
            _sync(args.device)
            return time.perf_counter() - start

        def stage(name: str) -> None:
            backend.engine = engines[name]
            list(backend.animate(backend.prepare(avatar), speech, fps))

        for name in staged:
            stage(name)  # warm the stage once
        work = {"every": windows, "distinct": distinct}
        best: dict[str, float] = {}
        for i in range(args.rounds):
            for name, engine in engines.items():
                for which, mels in work.items():
                    if name == "plain" and which == "distinct":
                        continue  # the reference computes every frame
                    best[f"{name} {which}"] = min(
                        best.get(f"{name} {which}", 1e9),
                        timed(lambda e=engine, m=mels: e.run(face.key, face.model_input, m)),
                    )
            for name in staged:
                best[f"stage {name}"] = min(best.get(f"stage {name}", 1e9), timed(lambda nm=name: stage(nm)))
            print(f"round {i + 1}: load average {os.getloadavg()[0]:.2f}")
    duration = speech.duration_s
    plain = best["plain every"]
    print(f"equal work: every frame's mel window ({n} windows)")
    for name, engine in engines.items():
        what = (
            "fp32, whole model per frame"
            if name == "plain"
            else f"{engine.precision}, batch {engine.batch}, face rows {engine.first_row}–95"
        )
        secs = best[f"{name} every"]
        print(f"  {name:6} {n / secs:7.1f} windows/s  RTF {secs / duration:.3f}  ({what})")
    for name in fast:
        print(f"  speed-up {name} / plain, engine alone: {plain / best[f'{name} every']:.2f}×")
    print(
        f"as the stage runs them: distinct windows only ({len(distinct)} of {n}: the deduplication "
        f"alone is worth {n / len(distinct):.2f}×), frames of video per second"
    )
    for name in fast:
        secs = best[f"{name} distinct"]
        print(
            f"  {name:6} {n / secs:7.1f} frames/s  RTF {secs / duration:.3f}; speed-up over plain "
            f"(every window) {plain / secs:.2f}× (target ≥ 1.5×)"
        )
    target = 0.05 if args.device == "cuda" else 0.8
    for name in staged:
        secs = best[f"stage {name}"]
        print(f"stage ({name}) {n / secs:7.1f} frames/s  RTF {secs / duration:.3f} (target ≤ {target})")


if __name__ == "__main__":
    from record import recorded

    with recorded("wav2lip"):
        main()
