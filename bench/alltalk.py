"""Benchmark: Ara's AllTalk backend against a running AllTalk server (issue 22).

    .venv/bin/python bench/alltalk.py --url http://127.0.0.1:7851 [--runs 3]

Meant for AllTalk v2 with its Piper engine and no AllTalk voice configured in Ara. Prints:
1. the symbol sentence's speech length through AllTalk as Ara sends it now (normalised,
   unfiltered) and as it sent it before (raw, text_filtering=html), and through the embedded Piper;
2. AllTalk's measured cost per request and the chunks a 3- and a 6-sentence reply become;
3. a 3-sentence reply rendered by the CLI as a whole process (`ara-sidecar render --tts alltalk
   --no-cache`, lip-sync auto and animator): wall time / speech per run (the first may measure
   the cost), and the embedded Piper's for reference;
4. every mode and a 6-sentence reply rendered through AllTalk: chunks, speech, and the video's
   and the sound's lengths (in step).
Targets: (1) within 15 % of the embedded Piper; (3) ≤ 0.6 × speech.

    .venv/bin/python bench/alltalk.py --url URL --compare

sends the same requests to the server and to tests/alltalk_double.py and prints where their
answers differ (status, body, headers; file names and dates aside): run it against a new AllTalk
version to keep the double faithful (the Piper engine with the joe voice, en_US-joe-medium.onnx).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

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


JOE = "en_US-joe-medium.onnx"
COMPARED = [
    ("GET", "/api/ready", None),
    ("GET", "/api/currentsettings", None),
    ("GET", "/api/voices", None),
    ("GET", "/api/rvcvoices", None),
    ("GET", "/api/nothing", None),
    ("GET", "/api/tts-generate", None),
    ("GET", "/audio/nope.wav", None),
    ("GET", "/audiocache/nope.wav", None),
    (
        "POST",
        "/api/tts-generate",
        {"text_input": "Hello there.", "character_voice_gen": JOE, "text_filtering": "none"},
    ),
    ("POST", "/api/tts-generate", {"text_input": "Hello."}),
    ("POST", "/api/tts-generate", {"text_input": "", "character_voice_gen": JOE}),
    ("POST", "/api/tts-generate", {"character_voice_gen": JOE}),
    ("POST", "/api/tts-generate", {"text_input": "Hi.", "character_voice_gen": "ghost.onnx"}),
    ("POST", "/api/tts-generate", {"text_input": "Hi.", "character_voice_gen": "en_US-joe-medium"}),
    ("POST", "/api/tts-generate", {"text_input": "Hi.", "character_voice_gen": "EN_US-joe-medium.onnx"}),
    ("POST", "/api/tts-generate", {"text_input": "♪♪♪", "character_voice_gen": JOE}),
    (
        "POST",
        "/api/tts-generate",
        {"text_input": "♪♪♪", "character_voice_gen": JOE, "text_filtering": "none"},
    ),
    (
        "POST",
        "/api/tts-generate",
        {"text_input": "...", "character_voice_gen": JOE, "text_filtering": "none"},
    ),
    (
        "POST",
        "/api/tts-generate",
        {"text_input": "!!!", "character_voice_gen": JOE, "text_filtering": "none"},
    ),
    ("POST", "/api/tts-generate", {"text_input": "word " * 420, "character_voice_gen": JOE}),
    (
        "POST",
        "/api/tts-generate",
        {"text_input": "Hi.", "character_voice_gen": JOE, "speed": "x", "autoplay": "x"},
    ),
    ("POST", "/api/tts-generate", {"text_input": "Hi.", "character_voice_gen": JOE, "speed": "3"}),
    ("POST", "/api/tts-generate", {"text_input": "Hi.", "character_voice_gen": JOE, "language": "xx"}),
    ("POST", "/api/tts-generate", {"text_input": "Hi.", "character_voice_gen": JOE, "streaming": "true"}),
    (
        "POST",
        "/api/tts-generate",
        {"text_input": "Hi.", "character_voice_gen": JOE, "output_file_name": "a-b"},
    ),
    (
        "POST",
        "/api/tts-generate",
        {
            "text_input": "Hi.",
            "character_voice_gen": JOE,
            "output_file_name": "ara",
            "output_file_timestamp": "false",
        },
    ),
    ("GET", f"/api/tts-generate-streaming?text=Hi.&voice={JOE}&language=en&output_file=ara_stream", None),
    ("GET", "/api/tts-generate-streaming?text=Hi.", None),
    ("GET", "/audio/ara.wav", None),
    ("GET", "/audiocache/ara.wav", None),
]
_VARYING = {"date", "server", "etag", "last-modified", "content-disposition", "content-length"}


def answer(url: str, method: str, path: str, form: dict | None) -> tuple[int, dict, bytes]:
    """(status, headers but the varying ones, body with file names and folders masked)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    body = urlencode(form).encode() if form is not None else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if form is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    kept = {k.lower(): v for k, v in response.getheaders() if k.lower() not in _VARYING}
    if kept.get("content-type", "").startswith("audio"):
        data = b"<audio>"
    data = re.sub(rb"(myoutputfile|ara)_\w+\.wav", b"NAME.wav", data)
    return response.status, kept, re.sub(rb'"/[^"]*/([^"/]+\.wav)"', rb'"DIR/\1"', data)


def compare(url: str) -> int:
    """Print each request whose answers differ; returns how many did."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from alltalk_double import AllTalkDouble

    differ = 0
    with tempfile.TemporaryDirectory() as tmp, AllTalkDouble(Path(tmp)) as double:
        for method, path, form in COMPARED:
            real, stand_in = answer(url, method, path, form), answer(double.url, method, path, form)
            differ += real != stand_in
            shown = {k: v[:24] for k, v in (form or {}).items()}
            print(f"{'same' if real == stand_in else 'DIFFERS'}: {method} {path} {shown}")
            if real != stand_in:
                print(f"  AllTalk: {real}\n  double:  {stand_in}")
    print(f"{differ} of {len(COMPARED)} answers differ")
    return differ


def cli_render(text: str, tts: str, lipsync: str, env: dict, out: Path) -> tuple[float, float]:
    """(wall seconds, speech seconds) of one `ara-sidecar render` process."""
    command = [
        str(Path(sys.executable).with_name("ara-sidecar")),
        "render",
        "--tts",
        tts,
        "--lipsync",
        lipsync,
    ]
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


def main() -> int:
    """Prints the figures (or the comparison); returns how many answers differed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7851", help="AllTalk's address")
    parser.add_argument("--runs", type=int, default=3, help="CLI renders of the 3-sentence reply")
    parser.add_argument("--compare", action="store_true", help="compare the server with the test double")
    args = parser.parse_args()
    if args.compare:
        return compare(args.url)
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
        for lipsync in ("auto", "animator"):
            for tts in ("alltalk", "piper"):
                for run in range(args.runs):
                    wall, speech = cli_render(THREE, tts, lipsync, env, out)
                    print(
                        f"cli --tts {tts:<7} --lipsync {lipsync:<8} run {run + 1}: wall {wall:.2f} s, "
                        f"speech {speech:.2f} s, {wall / speech:.3f} × speech (target ≤ 0.6 for alltalk)"
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
    return 0


if __name__ == "__main__":
    with recorded("alltalk-compare" if "--compare" in sys.argv else "alltalk"):
        differ = main()
    sys.exit(1 if differ else 0)
