"""Evaluation: does Ara sound like Ara, and can you hear her modes? (#18)

    .venv/bin/python bench/voice_character.py [--runs 3] [--persona ara] [--text tuned|heldout]

Renders a fixed ~10 s text in each mode through the whole pipeline (TTS, voice stage, lip-sync,
MP4), decodes the sound back out of the MP4 as a user would hear it, and measures it with Praat
(bench/voice_measures.py, independent of the voice stage's own analysis): median f0, F1–F3 over
vowels (LPC), harmonics-to-noise ratio, pitch range (SD of f0 in semitones), speaking time without
pauses and the mean pause between sentences. The untransformed base voice (the same TTS, no voice
stage) is measured too. Piper's speech varies a little from run to run: each figure is the median
of `--runs` renders with different text (a name changes), nothing cached. Also times the voice
stage alone (its real-time factor, warm, median of 5).

Ara's mode settings were tuned while looking at the figures of the `tuned` text; the `heldout`
text was not used for that (it was first run after the settings were fixed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import voice_measures as vm
from render import machine_line

from ara_sidecar.audio import load_audio
from ara_sidecar.config import load_settings
from ara_sidecar.personas import get_persona
from ara_sidecar.pipeline import Pipeline, RenderRequest
from ara_sidecar.text import check_text, split_sentences

TEXT = (
    "Good morning, {name}. I checked the calendar while you were asleep, and the afternoon is "
    "quieter than you feared. The report is due on Friday, not tomorrow. Shall we start with the "
    "first section, or would you like a coffee before we begin?"
)
HELDOUT_TEXT = (
    "Hello {name}, the train to the coast leaves at nine, so we have time for breakfast. I packed "
    "the umbrella, because the forecast says rain after lunch. Would you rather walk along the "
    "harbour first, or visit the museum while the weather holds?"
)
TEXTS = {"tuned": TEXT, "heldout": HELDOUT_TEXT}
NAMES = ("Robin", "Sam", "Alex", "Jordan", "Maria", "Tom")
MODES = ("cathedral", "comfort", "lab", "playful", "cockpit", "teaching")

TARGETS = [  # (label, check(figures) -> (value text, passed))
    (
        "cockpit median f0 175–240 Hz",
        lambda f: (f"{f['cockpit']['f0']:.0f} Hz", 175 <= f["cockpit"]["f0"] <= 240),
    ),
    (
        "formants F1–F3 ≥ 1.10× the base voice's (LPC ceiling 5000 Hz × each voice's formant scale)",
        lambda f: (
            " ".join(f"{f['cockpit'][k] / f['source'][k]:.2f}" for k in ("f1", "f2", "f3")),
            all(f["cockpit"][k] / f["source"][k] >= 1.10 for k in ("f1", "f2", "f3")),
        ),
    ),
    (
        "  the same at Praat's usual ceilings (5000 Hz men, 5500 Hz women)",
        lambda f: (
            " ".join(
                f"{f['cockpit'][k + '_usual'] / f['source'][k + '_usual']:.2f}" for k in ("f1", "f2", "f3")
            ),
            all(f["cockpit"][k + "_usual"] / f["source"][k + "_usual"] >= 1.10 for k in ("f1", "f2", "f3")),
        ),
    ),
    (
        "cathedral speaking time ≥ 1.14× cockpit's",
        lambda f: (r := f["cathedral"]["speaking"] / f["cockpit"]["speaking"], r >= 1.14),
    ),
    (
        "cathedral mean pause between sentences ≥ 1.3× cockpit's",
        lambda f: (r := f["cathedral"]["sentence_pause"] / f["cockpit"]["sentence_pause"], r >= 1.3),
    ),
    (
        "  (every pause, commas' included: cathedral / cockpit)",
        lambda f: (f["cathedral"]["pause"] / f["cockpit"]["pause"], None),
    ),
    (
        "playful ≥ 5 % faster than cockpit",
        lambda f: (r := f["cockpit"]["speaking"] / f["playful"]["speaking"], r >= 1.05),
    ),
    (
        "playful pitch range ≥ 1.15× cathedral's",
        lambda f: (r := f["playful"]["range"] / f["cathedral"]["range"], r >= 1.15),
    ),
    (
        "HNR within 3 dB of the base voice's",
        lambda f: (d := f["cockpit"]["hnr"] - f["source"]["hnr"], abs(d) <= 3.0),
    ),
    (
        "no clipping",
        lambda f: (max(f[m]["clipped"] for m in MODES), max(f[m]["clipped"] for m in MODES) == 0),
    ),
]


def measured(samples: np.ndarray, rate: int, formant_scale: float, sentences: int) -> dict:
    """The figures of one rendering. LPC needs a formant ceiling that suits the vocal tract: Praat
    advises 5000 Hz for a man's, 5500 Hz for a woman's; a voice whose envelope was scaled by
    `formant_scale` gets 5000 × that (its formants all moved so), and the usual one is kept too.
    The pauses between the text's `sentences` are the longest (sentences − 1) pauses."""
    pauses = vm.speech_and_pauses(samples, rate)
    found = vm.formants_hz(samples, rate, max_formant_hz=5000 * formant_scale)
    usual = vm.formants_hz(samples, rate)
    return {
        "f0": vm.median_f0_hz(samples, rate),
        "range": vm.pitch_sd_semitones(samples, rate),
        "f1": found["f1_hz"],
        "f2": found["f2_hz"],
        "f3": found["f3_hz"],
        **{f"f{i}_usual": usual[f"f{i}_hz"] for i in (1, 2, 3)},
        "hnr": vm.hnr_db(samples, rate),
        "speaking": pauses["speaking_s"],
        "pause": pauses["mean_pause_s"],
        "sentence_pause": float(np.mean(sorted(pauses["pauses_s"])[-(sentences - 1) :] or [0.0])),
        "clipped": vm.clipped_fraction(samples),
    }


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def controls(pipeline: Pipeline, speech, params) -> None:
    """LPC's F1 of a high voice is pulled toward its harmonics: the same speech with only the
    formants moved (f0 kept), and with only f0 moved (envelope kept), at one ceiling (5000 Hz)."""
    from dataclasses import replace

    def ratios(changed) -> str:
        out = pipeline.voice.convert(speech, changed)
        before = vm.formants_hz(speech.samples, speech.sample_rate, max_formant_hz=5000)
        after = vm.formants_hz(out.samples, out.sample_rate, max_formant_hz=5000)
        return " ".join(f"{after[k] / before[k]:.2f}" for k in ("f1_hz", "f2_hz", "f3_hz"))

    neutral = replace(params, pitch_semitones=0.0, warmth_db=0.0, pitch_range=1.0)
    only_formants = replace(neutral, target_f0_hz=None)
    only_f0 = replace(neutral, formant_ratio=1.0)
    print(
        f"control, formants only (f0 kept): F1–F3 × {ratios(only_formants)} "
        f"(formant_ratio {params.formant_ratio})"
    )
    print(
        f"control, f0 only to {params.target_f0_hz:g} Hz (envelope kept): F1–F3 × {ratios(only_f0)} "
        "(1.00 if LPC were unbiased)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="renders per mode (medians reported)")
    parser.add_argument("--persona", default=None, help="persona (default: the configured one)")
    parser.add_argument("--text", choices=TEXTS, default="tuned", help="which fixed text to speak")
    args = parser.parse_args()
    settings = load_settings()
    persona = get_persona(settings, args.persona)
    pipeline = Pipeline(settings)
    pipeline.load()
    print(machine_line())
    print(
        f"persona {persona.name}; TTS {pipeline.tts.name}, voice stage {pipeline.voice.name}; "
        f"{args.runs} runs; the {args.text} text"
    )
    template = TEXTS[args.text]
    sentences = len(split_sentences(check_text(template.format(name=NAMES[0]), 10_000)))
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in MODES:
            runs = []
            for i in range(args.runs):
                text = template.format(name=NAMES[i % len(NAMES)])
                out = Path(tmp) / f"{mode}-{i}.mp4"
                pipeline.render(
                    RenderRequest(text=text, persona=persona.name, mode=mode), out, use_cache=False
                )
                audio = load_audio(out)
                scale = persona.mode(mode).voice.formant_ratio
                runs.append(measured(audio.samples, audio.sample_rate, scale, sentences))
            figures[mode] = median_of(runs)
        source = []
        for i in range(args.runs):
            audio = pipeline.tts.synthesize(template.format(name=NAMES[i % len(NAMES)]), None)
            source.append(measured(audio.samples, audio.sample_rate, 1.0, sentences))
        figures["source"] = median_of(source)

    columns = ("f0", "range", "f1", "f2", "f3", "hnr", "speaking", "pause", "clipped")
    units = ("Hz", "st", "Hz", "Hz", "Hz", "dB", "s", "s", "")
    print(
        f"{'':<10}"
        + "".join(f"{c + (' ' + u if u else ''):>12}" for c, u in zip(columns, units, strict=True))
    )
    for name in (*MODES, "source"):
        row = figures[name]
        cells = [f"{row[c]:12.0f}" if c in ("f0", "f1", "f2", "f3") else f"{row[c]:12.2f}" for c in columns]
        print(f"{name if name != 'source' else 'base voice':<10}" + "".join(cells))
    for label, check in TARGETS:
        value, passed = check(figures)
        verdict = "" if passed is None else f" — {'met' if passed else 'MISSED'}"  # None: for information
        print(f"{label}: {fmt(value)}{verdict}")

    cockpit = persona.mode("cockpit")
    speech = pipeline.tts.synthesize(template.format(name=NAMES[0]), cockpit)
    params = pipeline.tts.voice_stage_params(cockpit.voice)
    controls(pipeline, speech, params)
    times = []
    for _ in range(6):
        start = time.perf_counter()
        pipeline.voice.convert(speech, params)
        times.append(time.perf_counter() - start)
    rtf = statistics.median(times[1:]) / speech.duration_s
    print(
        f"voice stage ≤ 0.03 × real time: {rtf:.4f} — {'met' if rtf <= 0.03 else 'MISSED'} "
        f"({speech.duration_s:.1f} s of cockpit speech, median of 5 warm runs)"
    )


if __name__ == "__main__":
    from record import recorded

    with recorded("voice_character" + ("-heldout" if "heldout" in sys.argv else "")):
        main()
