"""Benchmark: does the animator's mouth follow the phonemes? Measured on decoded MP4 frames.

    .venv/bin/python bench/visemes.py [--sheet PATH]

Speaks bilabial-rich sentences with Piper, animates the shipped portrait (512×512) with the
phoneme timing, encodes an MP4 with the project's encoder, decodes it with PyAV and measures the
mouth on every frame with an image measure of its own (`mouth_measure`: dark or teeth-white
pixels inside the rest-pose mouth box, none of the animator's control values). The same speech
without its timing (the loudness-driven mouth, the path of uploaded audio) is the baseline; the
same speech with timing estimated from its text (`lipsync.align`, AllTalk's path) is in between.

Prints, for each path: the aperture at the centre of each /p b m/ relative to the median
aperture of open vowels (target ≤ 25 % in ≥ 90 % of cases), the share of rounded-vowel frames
(/u o w/) narrower than the median spread vowel (/i e/) (target ≥ 85 %) and with taller
(pushed-forward) lips (`lip_height`), the aperture at /f v/, the correlation between the
measured aperture and the openness the phoneme timing expects, over the frames of speech
(target ≥ 0.7), and the lip-sync stage's time as a fraction of the speech's duration (target
≤ 0.03). Then, per mode of the shipped persona: head-motion energy and blink rate
(`mode_motion`), and the smile (`smile_measure`: the corners' height against the mouth's
centre, on decoded frames); and the aligner's accuracy against Piper's own timing
(`aligner_accuracy`: boundary and centre errors, frames with the same viseme). Saves a contact
sheet of the mouth at the measured instants under bench/results/, and the figures as JSON
(bench/results/visemes-figures-DATE.json) beside the printed output (visemes-DATE.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "sidecar"))

from ara_sidecar.audio import Audio  # noqa: E402
from ara_sidecar.lipsync.animator import features  # noqa: E402
from ara_sidecar.lipsync.animator.face import Layout  # noqa: E402
from ara_sidecar.lipsync.animator.visemes import expected_openness, segments  # noqa: E402

TEXT = (
    "Maybe my mother bought a puppy. Bob, please pass me the map by the pump. "
    "Who would move the blue boat to the pool? We meet each week, and she sees the tree. "
    "Put my pen back in the box, Pam. Five of the vans arrived, full of fresh food."
)
OPEN_VISEMES = ("aa", "E", "oh")
ROUNDED, SPREAD = ("ou", "oh"), ("ih", "E")


@dataclass(frozen=True)
class Figures:
    closure_ratios: np.ndarray  # aperture at each bilabial / median open-vowel aperture
    rounded_narrower: float  # share of rounded cases narrower than the median spread width
    correlation: float  # measured aperture vs expected openness
    lipsync_rtf: float  # lip-sync stage seconds per second of speech
    rounded_fuller: float = 0.0  # share of rounded cases with taller lips than the median spread
    labiodental_ratios: np.ndarray = field(default_factory=lambda: np.zeros(0))  # f v vs open vowels

    @property
    def closed_share(self) -> float:
        return float(np.mean(self.closure_ratios <= 0.25)) if len(self.closure_ratios) else 0.0


def mouth_box(layout: Layout) -> tuple[slice, slice]:
    """The rows and columns the measure looks at: around the rest-pose mouth, with room for the
    jaw's drop."""
    fh, hw = layout.frame.h, layout.mouth_half_width
    y0 = round(layout.mouth_y - layout.smile - 0.1 * fh)
    y1 = round(layout.mouth_y + 0.2 * fh)
    return slice(max(0, y0), y1), slice(round(layout.mouth_x - 1.3 * hw), round(layout.mouth_x + 1.3 * hw))


def mouth_measure(frame: np.ndarray, still: np.ndarray, layout: Layout) -> tuple[float, float]:
    """(aperture, width) in pixels of a frame's mouth, by colour alone: interior pixels are dark
    (cavity, tongue) or bright and grey (teeth) against the skin and lips of the still portrait's
    same box. Aperture: interior pixels per column across the mouth's middle; width: the span of
    the columns holding any."""
    rows, cols = mouth_box(layout)
    box = frame[rows, cols].astype(np.float32)
    ref = still[rows, cols].astype(np.float32)
    value, ref_value = box.max(axis=2), ref.max(axis=2)
    saturation = (value - box.min(axis=2)) / np.maximum(value, 1)
    ref_saturation = (ref_value - ref.min(axis=2)) / np.maximum(ref_value, 1)
    v, s = float(np.median(ref_value)), float(np.median(ref_saturation))
    interior = (value < 0.7 * v) | ((saturation < 0.55 * s) & (value > 0.8 * v))
    middle = np.abs(np.arange(box.shape[1]) - box.shape[1] / 2) < 0.6 * layout.mouth_half_width
    aperture = float(interior[:, middle].sum() / middle.sum())
    columns = np.flatnonzero(interior.sum(axis=0) >= 2)
    width = float(columns[-1] - columns[0] + 1) if len(columns) else 0.0
    return aperture, width


def lip_height(frame: np.ndarray, still: np.ndarray, layout: Layout) -> float:
    """Rows of lip per column across the mouth's middle: pixels redder than half-way from the
    still portrait's skin to its lips (red minus green), not in shadow. Pushed-forward lips show
    taller from the front."""
    fh, hw = layout.frame.h, layout.mouth_half_width
    rows = slice(round(layout.mouth_y - 0.15 * fh), round(layout.mouth_y + 0.25 * fh))
    cols = slice(round(layout.mouth_x - 0.3 * hw), round(layout.mouth_x + 0.3 * hw))
    box, ref = frame[rows, cols].astype(np.float32), still[rows, cols].astype(np.float32)
    red, ref_red = box[..., 0] - box[..., 1], ref[..., 0] - ref[..., 1]
    skin, lip = np.percentile(ref_red, 20), np.percentile(ref_red, 97)
    lips = (red > skin + 0.5 * (lip - skin)) & (box.max(axis=2) > 0.55 * np.median(ref.max(axis=2)))
    return float(lips.sum() / lips.shape[1])


def decoded_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as box:
        return [f.to_ndarray(format="rgb24") for f in box.decode(box.streams.video[0])]


def render_mp4(animator, scene, audio: Audio, fps: int, encoder, path: Path) -> float:
    """Animate and encode `audio` to `path`; returns the seconds spent animating."""
    spent = 0.0
    frames = animator.animate(scene, audio, fps)
    with encoder.open(path, fps, streamable=True, speech_rate=audio.sample_rate) as writer:
        while True:
            start = time.perf_counter()
            frame = next(frames, None)
            spent += time.perf_counter() - start
            if frame is None:
                break
            writer.write_frame(frame)
        writer.write_audio(audio)
    return spent


def evaluate(
    measures: np.ndarray, phonemes, fps: int, lipsync_s: float, duration_s: float
) -> tuple[Figures, dict[str, list[int]]]:
    """Figures from per-frame (aperture, width) measures and the speech's phoneme timing; also the
    frames measured, by group, for the contact sheet."""
    n = len(measures)
    at = {name: [] for name in ("bilabial", "labiodental", "open", "rounded", "spread")}
    for seg in segments(phonemes):
        i = min(n - 1, round(seg.centre * fps))
        group = (
            "bilabial"
            if seg.viseme == "PP"
            else "labiodental"
            if seg.viseme == "FF"
            else "rounded"
            if seg.viseme in ROUNDED
            else "spread"
            if seg.viseme in SPREAD
            else None
        )
        if group:
            at[group].append(i)
        if seg.viseme in OPEN_VISEMES:
            at["open"].append(i)
    aperture, width, lips = measures[:, 0], measures[:, 1], measures[:, 2]
    open_median = float(np.median(aperture[at["open"]])) if at["open"] else 1.0
    ratios = aperture[at["bilabial"]] / max(open_median, 1e-6)
    spread_width = float(np.median(width[at["spread"]])) if at["spread"] else 0.0
    narrower = float(np.mean(width[at["rounded"]] < spread_width)) if at["rounded"] else 0.0
    spread_lips = float(np.median(lips[at["spread"]])) if at["spread"] else 0.0
    fuller = float(np.mean(lips[at["rounded"]] > spread_lips)) if at["rounded"] else 0.0
    expected = expected_openness(phonemes, np.arange(n) / fps)
    speaking = ~np.isnan(expected)  # silences rest in the portrait's own pose (teeth may show)
    pair = aperture[speaking], expected[speaking]
    correlation = float(np.corrcoef(*pair)[0, 1]) if pair[0].std() > 0 else 0.0
    labiodental = aperture[at["labiodental"]] / max(open_median, 1e-6)
    return Figures(ratios, narrower, correlation, lipsync_s / duration_s, fuller, labiodental), at


def closed_mouth(avatar, settings):
    """The shipped portrait with its lips pressed together by the animator: a portrait whose mouth
    is closed and shows no teeth (as many uploaded ones), to render from."""
    from ara_sidecar.avatar import Avatar
    from ara_sidecar.lipsync.animator import Animator
    from ara_sidecar.lipsync.animator.scene import Looks

    scene = Animator(settings, "cpu").prepare(avatar)
    image = avatar.image.copy()
    image[scene.mouth.region.slices] = Looks(scene).renderer.render(0.0, 0.98, close=1.0)
    return Avatar(image=image, digest=f"{avatar.digest}-closed", source="closed-mouth portrait")


def run(text: str = TEXT, sheet: Path | None = None, closed: bool = False) -> dict[str, Figures]:
    """Every path's figures for `text` (printed); a contact sheet of the phoneme path at `sheet`.
    `closed`: on the shipped portrait with its mouth closed (`closed_mouth`)."""
    from ara_sidecar.avatar import load_avatar
    from ara_sidecar.config import load_settings
    from ara_sidecar.encode import REGISTRY as ENCODERS
    from ara_sidecar.lipsync.align import estimate
    from ara_sidecar.lipsync.animator import Animator
    from ara_sidecar.tts.piper import PiperTTS

    settings = load_settings()
    fps = settings.fps
    tts = PiperTTS(settings, "cpu")
    speech = tts.synthesize(text)
    assert speech.phonemes, "Piper gave no phoneme timing (is the onnx package installed?)"
    avatar = load_avatar(ROOT / "personas" / "ara" / "avatar.png", max_pixels=10**7, max_side=512)
    if closed:
        avatar = closed_mouth(avatar, settings)
        print("on the shipped portrait with its mouth closed (no teeth showing):")
    animator = Animator(settings.with_overrides(**{"animator.sway_degrees": 0}), "cpu")
    scene = animator.prepare(avatar)
    encoder = ENCODERS.load("mp4")(settings)
    results: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory() as tmp:
        estimated = replace(speech, phonemes=estimate(speech, text))
        untimed = replace(speech, phonemes=None)
        paths = (("phonemes", speech), ("estimated", estimated), ("acoustic", untimed), ("loudness", untimed))
        for label, audio in paths:
            path = Path(tmp) / f"{label}.mp4"
            features.CLASSIFY = label != "loudness"  # the loudness-driven mouth: the old baseline
            spent = render_mp4(animator, scene, audio, fps, encoder, path)
            features.CLASSIFY = True
            frames = decoded_frames(path)
            measures = np.array(
                [
                    (*mouth_measure(f, avatar.image, scene.layout), lip_height(f, avatar.image, scene.layout))
                    for f in frames
                ]
            )
            figures, at = evaluate(measures, speech.phonemes, fps, spent, speech.duration_s)
            results[label] = figures
            print(
                f"{label:<10} bilabials closed (≤25 % of open) {figures.closed_share:6.1%} "
                f"of {len(figures.closure_ratios)} (median ratio {np.median(figures.closure_ratios):.2f})"
                f" | rounded narrower than spread {figures.rounded_narrower:6.1%} "
                f"| corr(aperture, expected) {figures.correlation:5.2f} "
                f"| lip-sync {figures.lipsync_rtf:.4f} × real time"
            )
            print(
                f"{'':<10} rounded lips taller (pushed forward) than spread {figures.rounded_fuller:6.1%} "
                f"| f v aperture (upper teeth on the lower lip) median "
                f"{np.median(figures.labiodental_ratios):.2f} of open vowels' "
                f"({len(figures.labiodental_ratios)} cases)"
            )
            if label == "phonemes" and sheet is not None:
                contact_sheet(frames, at, scene.layout, sheet)
    print(f"speech {speech.duration_s:.1f} s, {avatar.image.shape[1]}×{avatar.image.shape[0]}, {fps} fps")
    print(timing_error(speech.phonemes, estimated.phonemes))
    return results


def segment_error(truth, estimated) -> np.ndarray | None:
    """Seconds between the centres of the viseme segments of two timings of one text (None when
    their segments differ)."""
    a = [s for s in segments(truth) if s.viseme != "sil"]
    b = [s for s in segments(estimated or ()) if s.viseme != "sil"]
    if [s.viseme for s in a] != [s.viseme for s in b]:
        return None
    return np.abs(np.array([s.centre for s in a]) - np.array([s.centre for s in b]))


def timing_error(truth, estimated) -> str:
    error = segment_error(truth, estimated)
    if error is None:
        return "estimated timing: its viseme segments differ from Piper's, not compared"
    ms = {"median": np.median(error), "mean": error.mean(), "90th percentile": np.percentile(error, 90)}
    figures = ", ".join(f"{name} {value * 1000:.0f} ms" for name, value in ms.items())
    return f"estimated timing vs Piper's, viseme segment centres: {figures} ({len(error)} segments)"


def viseme_at(phonemes, times: np.ndarray) -> np.ndarray:
    """The viseme sounding at each of `times` ("sil" between segments)."""
    out = np.full(len(times), "sil", dtype=object)
    for seg in segments(phonemes or ()):
        out[(times >= seg.start) & (times < seg.end)] = seg.viseme
    return out


def boundary_error(truth, estimated) -> np.ndarray | None:
    """Seconds between the boundaries (starts and ends) of the viseme segments of two timings of one
    text (None when their segments differ)."""
    a = [s for s in segments(truth) if s.viseme != "sil"]
    b = [s for s in segments(estimated or ()) if s.viseme != "sil"]
    if [s.viseme for s in a] != [s.viseme for s in b]:
        return None
    edges = lambda segs: np.array([t for s in segs for t in (s.start, s.end)])  # noqa: E731
    return np.abs(edges(a) - edges(b))


ALIGN_TEXTS = (
    TEXT,
    "Good evening. I looked at the build logs while you were away, and the failure is in the "
    "audio tests, not in the encoder. The fix is small. Shall I walk you through it?",
    "It is late, and the house is quiet. Tell me what you would like your life to look like "
    "a year from now, and we will see which small step comes first.",
    "Quick question: do you want the fast version or the thorough one? Either way, we start "
    "with the numbers from yesterday's run.",
)


def aligner_accuracy(texts: tuple[str, ...] = ALIGN_TEXTS, fps: int = 25) -> dict:
    """The paths without timing measured against Piper's own timing as the truth: each text spoken
    by Piper, its timing thrown away and estimated from the text (`lipsync.align`, AllTalk's path)
    or classified from the sound alone (`lipsync.acoustic`, uploaded audio's path). Pools, over
    the texts: the boundary and centre errors of the viseme segments (where both timings have the
    same segments: the aligner's), the share of speech frames (`fps`) showing the same viseme, and
    how the frames of /p b m/ are found (recall; precision: the share of frames shown as /p b m/
    that are) (printed)."""
    from ara_sidecar.config import load_settings
    from ara_sidecar.lipsync import acoustic
    from ara_sidecar.lipsync.align import estimate
    from ara_sidecar.tts.piper import PiperTTS

    tts = PiperTTS(load_settings(), "cpu")
    speeches = [(text, tts.synthesize(text)) for text in texts]
    paths = {
        "aligner": lambda speech, text: estimate(replace(speech, phonemes=None), text),
        "acoustic": lambda speech, text: acoustic.phonemes(replace(speech, phonemes=None)),
    }
    out = {}
    for name, guessed in paths.items():
        bounds, centres, compared = [], [], 0
        counts = {"frames": 0, "match": 0, "pp": 0, "pp_found": 0, "pp_shown": 0}
        for text, speech in speeches:
            estimated = guessed(speech, text)
            times = np.arange(round(speech.duration_s * fps)) / fps
            truth, guess = viseme_at(speech.phonemes, times), viseme_at(estimated, times)
            speaking = truth != "sil"
            counts["frames"] += int(speaking.sum())
            counts["match"] += int((truth[speaking] == guess[speaking]).sum())
            counts["pp"] += int((truth == "PP").sum())
            counts["pp_found"] += int(((truth == "PP") & (guess == "PP")).sum())
            counts["pp_shown"] += int((guess == "PP").sum())
            edge, centre = (
                boundary_error(speech.phonemes, estimated),
                segment_error(speech.phonemes, estimated),
            )
            if edge is not None and centre is not None:
                bounds.append(edge)
                centres.append(centre)
                compared += 1
        edge = np.concatenate(bounds) if bounds else np.zeros(0)
        centre = np.concatenate(centres) if centres else np.zeros(0)
        ms = lambda x, q: float(np.percentile(x, q) * 1000) if len(x) else None  # noqa: E731
        figures = out[name] = {
            "texts": len(texts),
            "texts_with_the_same_segments": compared,
            "segments": len(centre),
            "boundary_ms_median": ms(edge, 50),
            "boundary_ms_p90": ms(edge, 90),
            "centre_ms_median": ms(centre, 50),
            "centre_ms_p90": ms(centre, 90),
            "frames": counts["frames"],
            "frame_viseme_match": counts["match"] / max(counts["frames"], 1),
            "bilabial_recall": counts["pp_found"] / max(counts["pp"], 1),
            "bilabial_precision": counts["pp_found"] / max(counts["pp_shown"], 1),
        }
        if len(edge):
            print(
                f"{name}: vs Piper's timing, {len(texts)} texts ({compared} with the same segments, "
                f"{len(centre)} segments): boundaries median {figures['boundary_ms_median']:.0f} ms, "
                f"90th percentile {figures['boundary_ms_p90']:.0f} ms; centres median "
                f"{figures['centre_ms_median']:.0f} ms, 90th percentile {figures['centre_ms_p90']:.0f} ms"
            )
        print(
            f"{name}: the same viseme as Piper's timing on {figures['frame_viseme_match']:.1%} of "
            f"{counts['frames']} speech frames at {fps} fps; /p b m/ frames found "
            f"{figures['bilabial_recall']:.0%}, frames shown as /p b m/ that are "
            f"{figures['bilabial_precision']:.0%}"
        )
    return out


def motion_measures(
    frames: list[np.ndarray], still: np.ndarray, layout: Layout, fps: int
) -> tuple[float, float]:
    """(head-motion energy, blinks per minute) measured on frames: the mean absolute change
    between consecutive frames in a band of hair above the face (0–255 units), and the blinks
    counted where the dark pixels (pupil, iris, lashes) of a band across both eyes fall below
    half of the still portrait's."""
    face = layout.face
    hair = slice(face.y - face.h // 3, face.y - face.h // 6), slice(face.x, face.x + face.w)
    band = np.array([f[hair].astype(np.float32).mean(axis=2) for f in frames])
    energy = float(np.abs(np.diff(band, axis=0)).mean()) if len(band) > 1 else 0.0
    shut = np.ones(len(frames), bool)
    for eye in layout.eyes:
        cy, half = round(eye.cy), eye.h // 5
        box = slice(cy - half, cy + half), slice(eye.x, eye.x + eye.w)
        still_grey = still[box].astype(np.float32).mean(axis=2)
        dark = np.percentile(still_grey, 12)
        reference = (still_grey <= dark).sum()
        counts = np.array([(f[box].astype(np.float32).mean(axis=2) <= dark).sum() for f in frames])
        shut &= counts < 0.5 * reference
    blinks = int((shut[1:] & ~shut[:-1]).sum() + shut[0])
    return energy, blinks / (len(frames) / fps / 60)


def mode_motion(modes: tuple[str, ...] = ("cathedral", "cockpit", "playful"), repeat: int = 3) -> dict:
    """Per mode of the shipped persona: (head-motion energy, blinks per minute) on frames of
    `repeat` times the bench text, rendered with the mode's face (printed)."""
    from ara_persona import load_persona
    from ara_sidecar.avatar import load_avatar
    from ara_sidecar.config import load_settings
    from ara_sidecar.lipsync.animator import Animator
    from ara_sidecar.tts.piper import PiperTTS

    settings = load_settings()
    fps = settings.fps
    persona = load_persona(ROOT / "personas" / "ara")
    speech = PiperTTS(settings, "cpu").synthesize(TEXT)
    gap = np.zeros(speech.sample_rate // 2, np.float32)
    shift = speech.duration_s + 0.5
    phonemes = tuple((p, a + k * shift, b + k * shift) for k in range(repeat) for p, a, b in speech.phonemes)
    long = Audio(np.concatenate([speech.samples, gap] * repeat), speech.sample_rate, phonemes)
    avatar = load_avatar(ROOT / "personas" / "ara" / "avatar.png", max_pixels=10**7, max_side=512)
    animator = Animator(settings, "cpu")
    scene = animator.prepare(avatar)
    out = {}
    for name in modes:
        face = persona.mode(name).face
        frames = list(animator.animate(scene, long, fps, face))
        out[name] = motion_measures(frames, avatar.image, scene.layout, fps)
        print(f"{name:<9} head-motion energy {out[name][0]:5.2f}  blinks {out[name][1]:4.1f}/min  ({face})")
    return out


def smile_measure(frame: np.ndarray, still: np.ndarray, layout: Layout) -> float:
    """How much higher the mouth's corners sit relative to its centre than in the still portrait,
    pixels (> 0: a wider smile): the vertical shift of each corner and of the centre, found by
    matching the still portrait's patch around it in the frame (grey, sub-pixel)."""
    import cv2

    grey, still_grey = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in (frame, still))
    fh, hw = layout.frame.h, layout.mouth_half_width
    corner_y = layout.mouth_y - layout.smile
    half_w, half_h, reach = round(0.25 * hw), round(0.06 * fh), round(0.06 * fh)
    shifts = []
    for x, y in ((layout.mouth_x - 0.9 * hw, corner_y), (layout.mouth_x + 0.9 * hw, corner_y)):
        shifts.append(_shift(grey, still_grey, round(x), round(y), half_w, half_h, reach))
    centre = _shift(grey, still_grey, round(layout.mouth_x), round(layout.mouth_y), half_w, half_h, reach)
    return -(float(np.mean(shifts)) - centre)


def _shift(
    grey: np.ndarray, still: np.ndarray, x: int, y: int, half_w: int, half_h: int, reach: int
) -> float:
    """Rows by which the still's patch around (x, y) has moved in `grey` (> 0: down)."""
    import cv2

    template = still[y - half_h : y + half_h, x - half_w : x + half_w]
    area = grey[y - half_h - reach : y + half_h + reach, x - half_w - reach : x + half_w + reach]
    score = cv2.matchTemplate(area, template, cv2.TM_CCOEFF_NORMED)
    row, col = np.unravel_index(int(np.argmax(score)), score.shape)
    shift = float(row - reach)
    if 0 < row < score.shape[0] - 1:
        a, b, c = score[row - 1, col], score[row, col], score[row + 1, col]
        shift += float(0.5 * (a - c) / (a - 2 * b + c - 1e-9))
    return shift


def mode_smile(
    modes: tuple[str, ...] = ("lab", "teaching", "cockpit", "cathedral", "comfort", "playful"),
) -> dict:
    """Per mode of the shipped persona: the smile measured on decoded MP4 frames (`smile_measure`,
    median over the frames) while speaking a sentence and while listening after it (printed)."""
    from ara_persona import load_persona
    from ara_sidecar.avatar import load_avatar
    from ara_sidecar.config import load_settings
    from ara_sidecar.encode import REGISTRY as ENCODERS
    from ara_sidecar.lipsync.animator import Animator
    from ara_sidecar.tts.piper import PiperTTS

    settings = load_settings()
    fps = settings.fps
    persona = load_persona(ROOT / "personas" / "ara")
    speech = PiperTTS(settings, "cpu").synthesize(TEXT.split(". ")[0] + ".")
    listening = np.zeros(speech.sample_rate, np.float32)
    audio = Audio(np.concatenate([speech.samples, listening]), speech.sample_rate, speech.phonemes)
    spoken = round(speech.duration_s * fps)
    avatar = load_avatar(ROOT / "personas" / "ara" / "avatar.png", max_pixels=10**7, max_side=512)
    still = {"animator.sway_degrees": 0, "animator.blink_interval_s": 0}
    animator = Animator(settings.with_overrides(**still), "cpu")
    scene = animator.prepare(avatar)
    encoder = ENCODERS.load("mp4")(settings)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in modes:
            face = persona.mode(name).face
            path = Path(tmp) / f"{name}.mp4"
            with encoder.open(path, fps, speech_rate=audio.sample_rate) as writer:
                for frame in animator.animate(scene, audio, fps, face):
                    writer.write_frame(frame)
                writer.write_audio(audio)
            lifts = [smile_measure(f, avatar.image, scene.layout) for f in decoded_frames(path)]
            out[name] = (float(np.median(lifts[:spoken])), float(np.median(lifts[spoken:])))
            print(
                f"{name:<9} smile {face.smile:4.1f}: corners above the centre, relative to the portrait, "
                f"{out[name][0]:+5.2f} px speaking, {out[name][1]:+5.2f} px listening"
            )
    return out


def contact_sheet(frames: list[np.ndarray], at: dict[str, list[int]], layout: Layout, path: Path) -> None:
    """One row per group (bilabial, labiodental, open, rounded, spread): the mouth at up to 8
    instants."""
    from PIL import Image, ImageDraw

    fh = layout.frame.h
    y0 = round(layout.mouth_y - 0.3 * fh)
    x0 = round(layout.mouth_x - 0.3 * fh)
    side = round(0.6 * fh)  # the lower face around the mouth, shown 1.5 times as large
    cell = round(1.5 * side)
    label_w, cols = 90, 8
    sheet = Image.new("RGB", (label_w + cols * cell, len(at) * cell), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (group, indices) in enumerate(at.items()):
        draw.text((4, r * cell + cell // 2), group, fill="black")
        for c, i in enumerate(indices[:cols]):
            crop = Image.fromarray(
                np.ascontiguousarray(frames[i][max(0, y0) : y0 + side, max(0, x0) : x0 + side])
            )
            sheet.paste(crop.resize((cell, cell), Image.LANCZOS), (label_w + c * cell, r * cell))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    print(f"contact sheet: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--sheet", type=Path, default=ROOT / "bench" / "results" / "visemes-contact.png")
    args = parser.parse_args()
    from render import machine_line

    print(machine_line())
    paths = run(sheet=args.sheet)
    closed = run(sheet=args.sheet.with_name(args.sheet.stem + "-closed.png"), closed=True)
    figures = {
        "paths": {name: summary(f) for name, f in paths.items()},
        "paths_closed_mouth": {name: summary(f) for name, f in closed.items()},
        "modes_motion": mode_motion(),
        "modes_smile": mode_smile(),
        "untimed": aligner_accuracy(),
    }
    out = ROOT / "bench" / "results" / f"visemes-figures-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    print(f"figures: {out.relative_to(ROOT)}")


def summary(figures: Figures) -> dict:
    """A path's figures as plain numbers (for the raw JSON)."""
    return {
        "bilabials_closed_share": figures.closed_share,
        "bilabial_ratio_median": float(np.median(figures.closure_ratios)),
        "bilabial_cases": len(figures.closure_ratios),
        "rounded_narrower_share": figures.rounded_narrower,
        "rounded_fuller_share": figures.rounded_fuller,
        "labiodental_ratio_median": float(np.median(figures.labiodental_ratios)),
        "correlation": figures.correlation,
        "lipsync_rtf": figures.lipsync_rtf,
    }


if __name__ == "__main__":
    from record import recorded

    with recorded("visemes"):
        main()
