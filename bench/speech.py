"""Benchmark: the OpenAI-compatible speech endpoint against the in-process voice path.

    .venv/bin/python bench/speech.py [--runs 5]

Starts `ara-sidecar serve` (a temporary cache, no token) and warms it up with a speech request
of other text. Then, `--runs` times, with another name in every sentence so no chunk is cached,
the six-sentence reply of bench/first_frame.py is spoken through `POST /v1/audio/speech`
(voice `ara-MODE`, the persona's default mode; `pcm`, then the same with `mp3` and another
name): the first audio byte after sending the request (t_first) and the whole speech
(t_whole), whose real-time factor is t_whole / the speech's duration. Alternating with those, the
same text is spoken in this process by the pipeline's TTS and voice stage, chunk by chunk, no
cache (the in-process voice path): its real-time factor is its wall time / the same duration.
Targets (issue #21): first audio byte ≤ 0.25 s through a warm server; the endpoint's real-time
factor within 5 % of the in-process one.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from first_frame import variant
from render import machine_line
from service import HOST, NAMES, start_server

from ara_sidecar.config import load_settings
from ara_sidecar.personas import get_persona
from ara_sidecar.pipeline import Pipeline, RenderRequest
from ara_sidecar.timings import Timings

FIRST_TARGET_S = 0.25
RTF_TOLERANCE = 0.05
WARM_UP = "A warm-up line, to load the voice. And a second one, for good measure."


def over_http(client: httpx.Client, text: str, voice: str, response_format: str) -> tuple[float, float, int]:
    """(seconds to the first audio byte, to the last, bytes) of one streamed speech request."""
    body = {"model": "ara", "voice": voice, "input": text, "response_format": response_format}
    first = None
    size = 0
    start = time.perf_counter()
    with client.stream("POST", "/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        for data in response.iter_raw():
            if data and first is None:
                first = time.perf_counter() - start
            size += len(data)
    return first, time.perf_counter() - start, size


def in_process(pipeline: Pipeline, text: str, mode: str) -> tuple[float, float]:
    """(wall seconds, seconds of speech with pauses) of the text's speech made chunk by chunk."""
    plan = pipeline.plan(RenderRequest(text=text, mode=mode))
    start = time.perf_counter()
    speech_s = 0.0
    for chunk in plan.chunks:
        audio = pipeline.say(chunk.text, plan.mode, Timings())
        speech_s += audio.duration_s + chunk.pause_s
    return time.perf_counter() - start, speech_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=5, help=f"measured requests per format (1–{len(NAMES) // 2})"
    )
    args = parser.parse_args()
    if not 1 <= args.runs <= len(NAMES) // 2:
        parser.error(f"--runs must be between 1 and {len(NAMES) // 2} (one name per request)")
    print(machine_line())
    settings = load_settings().with_overrides(device="cpu")
    mode = get_persona(settings).default_mode
    voice = f"{get_persona(settings).name}-{mode}"
    pipeline = Pipeline(settings)
    pipeline.cache = None  # the in-process path makes every chunk
    pipeline.load()
    in_process(pipeline, WARM_UP, mode)
    rows = []  # (format, t_first, t_whole, speech_s, rtf_http, rtf_local)
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp) / "cache", Path(tmp) / "server.log")
        try:
            with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=300) as client:
                over_http(client, WARM_UP, voice, "pcm")
                for i in range(args.runs):
                    for j, response_format in enumerate(("pcm", "mp3")):
                        text = variant(2 * i + j)
                        first, whole, size = over_http(client, text, voice, response_format)
                        local_s, speech_s = in_process(pipeline, text, mode)
                        if response_format == "pcm":  # (Piper's durations vary a little between runs)
                            assert abs(size / 48_000 / speech_s - 1) < 0.03, (size / 48_000, speech_s)
                        rows.append(
                            (response_format, first, whole, speech_s, whole / speech_s, local_s / speech_s)
                        )
        finally:
            proc.terminate()
            proc.wait(30)
    print(
        f"reply: six sentences of bench/first_frame.py, voice {voice!r}, {len(rows)} requests "
        "(each with another name: nothing cached), alternating with the in-process voice path"
    )
    print("format  first byte    whole   speech   RTF http  RTF in-process  difference")
    for fmt, first, whole, speech_s, rtf_http, rtf_local in rows:
        print(
            f"{fmt:<6} {first:9.3f} s {whole:7.3f} s {speech_s:6.2f} s {rtf_http:9.4f} {rtf_local:15.4f}"
            f" {100 * (rtf_http / rtf_local - 1):+10.1f} %"
        )
    for fmt in ("pcm", "mp3"):
        mine = [r for r in rows if r[0] == fmt]
        firsts = [r[1] for r in mine]
        print(
            f"{fmt}: first byte median {statistics.median(firsts):.3f} s "
            f"({min(firsts):.3f}–{max(firsts):.3f}); "
            f"RTF median {statistics.median(r[4] for r in mine):.4f} vs in-process "
            f"{statistics.median(r[5] for r in mine):.4f}"
        )
    first = statistics.median(r[1] for r in rows)
    ratio = statistics.median(r[4] for r in rows) / statistics.median(r[5] for r in rows)
    print(
        f"first audio byte ≤ {FIRST_TARGET_S:g} s: {'PASS' if first <= FIRST_TARGET_S else 'MISS'} "
        f"(median {first:.3f} s)"
    )
    print(
        f"RTF within {RTF_TOLERANCE * 100:g} % of in-process: "
        f"{'PASS' if abs(ratio - 1) <= RTF_TOLERANCE else 'MISS'} ({100 * (ratio - 1):+.1f} %, medians)"
    )


if __name__ == "__main__":
    from record import recorded

    with recorded("speech"):
        main()
