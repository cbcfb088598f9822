"""Benchmark: Ara's AllTalk backend against a running AllTalk server (issue 22).

    .venv/bin/python bench/alltalk.py --url http://127.0.0.1:7851 [--runs 3]

Meant for AllTalk v2 with its Piper engine and no AllTalk voice configured in Ara. Prints:
1. the symbol sentence's speech length through AllTalk as Ara sends it now (normalised,
   unfiltered) and as it sent it before (raw, text_filtering=html), and through the embedded Piper;
2. AllTalk's measured cost per request and the chunks a 3- and a 6-sentence reply become;
3. a 3-sentence reply rendered by the CLI as a whole process (`ara-sidecar render --tts alltalk
   --no-cache`): wall time / speech per run (the first may measure the cost), and the embedded
   Piper's for reference;
4. every mode and a 6-sentence reply rendered through AllTalk: chunks, speech, and the video's
   and the sound's lengths (in step).
Targets: (1) within 15 % of the embedded Piper; (3) ≤ 0.6 × speech.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
from record import machine, recorded

from ara_persona import load_persona
from ara_sidecar.config import load_settings
from ara_sidecar.pipeline import Pipeline, RenderRequest
from ara_sidecar.text import normalize_text
from ara_sidecar.tts import REGISTRY

SYMBOLS = "It costs 50% & takes 3/4 hour, e.g. C++ at 10:30, #1 on AT&T = win."
THREE = "Hello from the real AllTalk server. This is a check of the whole pipeline. It should not take long."
SIX = (
    f"{THREE} Every mode gets its own voice settings. The video and the sound stay in step. "
    "That is all for today."
)


def cli_render(text: str, tts: str, env: dict, out: Path) -> tuple[float, float]:
    """(wall seconds, speech seconds) of one `ara-sidecar render` process."""
    command = [str(Path(sys.executable).with_name("ara-sidecar")), "render", "--tts", tts]
    command += ["--text", text, "--no-cache", "-q", "-o", str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    speech = float(re.search(r"speech ([\d.]+) s", done.stdout).group(1))
    return wall, speech


def lengths(path: Path) -> tuple[float, float]:
    """(video, sound) seconds of an MP4."""
    with av.open(str(path)) as box:
        video, sound = box.streams.video[0], box.streams.audio[0]
        return float(video.duration * video.time_base), float(sound.duration * sound.time_base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7851", help="AllTalk's address")
    parser.add_argument("--runs", type=int, default=3, help="CLI renders of the 3-sentence reply")
    args = parser.parse_args()
    m = machine()
    print(f"machine: {m['cpu']}, {m['logical_cores']} logical cores, Python {m['python']}")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ARA_ALLTALK_URL": args.url, "ARA_CACHE_DIR": str(Path(tmp) / "cache")}
        env["ARA_OUTPUT_DIR"] = str(Path(tmp) / "outputs")
        settings = load_settings(env).with_overrides(lipsync="animator")
        alltalk = REGISTRY.load("alltalk")(settings.with_overrides(tts="alltalk"), "cpu")
        info = alltalk.server()
        print(info.describe(args.url), f"| voice: {alltalk.voice(None)}")

        spoken = normalize_text(SYMBOLS)
        now = alltalk.synthesize(spoken).duration_s
        before = alltalk.client.generate(
            {"text_input": SYMBOLS, "text_filtering": "html", "character_voice_gen": alltalk.voice(None)[0]}
        ).duration_s
        piper = REGISTRY.load("piper")(settings, "cpu")
        piper.load()
        embedded = piper.synthesize(spoken).duration_s
        print(f"symbols: {spoken!r}")
        print(
            f"symbols: AllTalk now {now:.2f} s, before (raw, html filtering) {before:.2f} s, "
            f"embedded Piper {embedded:.2f} s: now {100 * (now / embedded - 1):+.1f} % (target within 15 %)"
        )

        cost = alltalk.request_cost_s()
        print(f"cost per request: {cost:.3f} s")
        pipeline = Pipeline(settings.with_overrides(tts="alltalk"))
        for name, text in (("3 sentences", THREE), ("6 sentences", SIX)):
            chunks = [c.text for c in pipeline.plan(RenderRequest(text=text)).chunks]
            print(f"chunks of {name}: {len(chunks)} {[len(c) for c in chunks]} characters")

        out = Path(tmp) / "cli.mp4"
        for tts in ("alltalk", "piper"):
            for run in range(args.runs):
                wall, speech = cli_render(THREE, tts, env, out)
                print(
                    f"cli {tts:<7} run {run + 1}: wall {wall:.2f} s, speech {speech:.2f} s, "
                    f"{wall / speech:.3f} × speech (target ≤ 0.6 for alltalk)"
                )

        persona = load_persona(settings.path(settings.personas_dir) / settings.persona)
        jobs = [(mode, THREE) for mode in persona.modes] + [(persona.default_mode, SIX)]
        for mode, text in jobs:
            path = Path(tmp) / f"{mode}.mp4"
            result = pipeline.render(RenderRequest(text=text, mode=mode), path, use_cache=False)
            video_s, sound_s = lengths(path)
            print(
                f"render {mode:<10} {len(result.chunks)} chunks, speech {result.speech_s:5.2f} s, "
                f"video {video_s:5.2f} s, sound {sound_s:5.2f} s, wall {result.wall_s:5.2f} s "
                f"({result.real_time_factor:.3f} × speech)"
            )


if __name__ == "__main__":
    with recorded("alltalk"):
        main()
