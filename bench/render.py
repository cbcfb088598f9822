"""Benchmark: render a fixed ~10 s reply on the embedded pipeline, cold and warm.

    .venv/bin/python bench/render.py [--runs 3] [--avatar PATH]

Cold = a new Pipeline's first render, reported twice: the render alone (its first-time work, such
as the face analysis, included) and with the model load before it; warm = further renders with
the models loaded. Prints seconds per stage and the real-time factor (render time / speech
duration). Target (issue 2): warm render of a 512×512 avatar ≤ 0.15 × speech.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from record import machine

from ara_sidecar.audio import Audio
from ara_sidecar.config import load_settings
from ara_sidecar.personas import get_persona
from ara_sidecar.pipeline import Pipeline, RenderRequest
from ara_sidecar.text import check_text, split_sentences

REPLY = (
    "Good evening. I looked at the build logs while you were away, and the failure is in the "
    "audio tests, not in the encoder. The fix is small. Shall I walk you through it?"
)


def machine_line() -> str:
    """The machine the figures come from, for the README."""
    m = machine()
    return f"machine: {m['cpu']}, {m['logical_cores']} logical cores, Python {m['python']}"


def _row(label: str, result, wall: float) -> str:
    stages = "  ".join(f"{k} {v:6.3f}" for k, v in result.timings.items())
    return f"{label:<6} wall {wall:6.3f} s  RTF {wall / result.speech_s:5.3f}  | {stages}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="warm renders to time (median reported)")
    parser.add_argument("--avatar", type=Path, help="portrait (default: the persona's 512×512 avatar)")
    args = parser.parse_args()
    settings = load_settings()
    request = RenderRequest(text=REPLY, avatar_path=args.avatar)
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.mp4"
        start = time.perf_counter()
        pipeline = Pipeline(settings)
        pipeline.load()
        loaded = time.perf_counter() - start
        cold = pipeline.render(request, out, use_cache=False)
        cold_wall = time.perf_counter() - start  # the model load included
        height, width = pipeline.open_avatar(args.avatar or get_persona(settings).avatar_path).image.shape[:2]
        print(f"speech {cold.speech_s:.2f} s, {cold.frames} frames, avatar {width}×{height}")
        print(f"model load {loaded:.3f} s")
        print(_row("cold", cold, cold_wall - loaded) + "  (first render, model load excluded)")
        print(
            f"cold with the model load: wall {cold_wall:6.3f} s  RTF {cold_wall / cold.speech_s:5.3f}  "
            f"(load {loaded:.3f} s + first render {cold_wall - loaded:.3f} s)"
        )
        walls = []
        for _ in range(args.runs):
            start = time.perf_counter()
            warm = pipeline.render(request, out, use_cache=False)
            walls.append(time.perf_counter() - start)
            print(_row("warm", warm, walls[-1]))
        median = statistics.median(walls)
        print(
            f"warm median: {median:.3f} s for {warm.speech_s:.2f} s of speech → real-time factor "
            f"{median / warm.speech_s:.3f} (target ≤ 0.150)"
        )
        tts_s, encode_s, frames = _stage_floor(pipeline, request, Path(tmp) / "floor.mp4")
        print(
            f"for scale, alone in this process: Piper {tts_s / warm.speech_s:.3f}× real time, libx264 "
            f"{encode_s / frames * 1e3:.2f} ms per frame; one after the other "
            f"{(tts_s + encode_s) / warm.speech_s:.3f}× real time"
        )


def _stage_floor(pipeline: Pipeline, request: RenderRequest, out: Path) -> tuple[float, float, int]:
    """Seconds of Piper alone (every sentence) and of the encoder alone (the same frames, made
    beforehand): the machine's speed for the two dominant stages, measured in the same run."""
    start = time.perf_counter()
    speech = [pipeline.tts.synthesize(sentence) for sentence in split_sentences(check_text(REPLY, 10_000))]
    tts_s = time.perf_counter() - start
    audio = Audio(np.concatenate([a.samples for a in speech]), speech[0].sample_rate)
    avatar = pipeline.open_avatar(request.avatar_path or get_persona(pipeline.settings).avatar_path)
    frames = list(pipeline.lipsync.animate(pipeline.prepare_avatar(avatar), audio, pipeline.settings.fps))
    start = time.perf_counter()
    with pipeline.encoder.open(out, pipeline.settings.fps) as writer:
        for frame in frames:
            writer.write_frame(frame)
        writer.write_audio(audio)
    return tts_s, time.perf_counter() - start, len(frames)


if __name__ == "__main__":
    from record import recorded

    with recorded("render"):
        main()
