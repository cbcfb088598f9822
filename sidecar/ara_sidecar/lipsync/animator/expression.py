"""The face around the mouth, per mode (`ara_persona.FaceParams`): head sway and nods, blinks,
eyebrow raises and the smile, each a per-frame track.

The mouth's corners are lifted by the mode's smile throughout. The head sways with the mode's
amplitude and tempo, at half amplitude while the avatar is silent (listening), and nods at the
end of each statement; the brows rise over a question's last words and flash on the most
stressed syllable of each sentence (emphasis). Questions, sentence ends and stress come from the
phoneme timing (Piper writes "?", "." and "ˈ"); without it, sentence ends are where the sound
stops for `PAUSE_S`, and the brows stay still."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ara_persona import FaceParams
from ara_sidecar.audio import Audio
from ara_sidecar.config import AnimatorSettings
from ara_sidecar.lipsync.animator.features import blink_track, sway_track

NOD_S = 0.5  # a nod's down-and-up, seconds
NOD_DEPTH = 0.012  # its depth at head_motion 1, fraction of the face height
BROW_RAISE = 0.022  # a full brow raise at brow 1, fraction of the face height
QUESTION_S = 0.7  # the brows rise over this much of a question's end …
EMPHASIS_S = 0.35  # … and flash this long on a sentence's most stressed syllable
PAUSE_S = 0.3  # silence that ends a sentence when there is no phoneme timing
LISTENING = 0.5  # sway amplitude while silent, relative to speaking
SMILE_LIFT = 0.03  # the mouth corners' lift at smile 1, fraction of the face height


@dataclass(frozen=True)
class Expression:
    sway: np.ndarray  # head roll, [-1, 1] × sway_degrees × head_motion
    nod: np.ndarray  # head drop, pixels
    blink: np.ndarray  # eyelid closure, [0, 1]
    brow: np.ndarray  # brow raise, pixels
    smile: np.ndarray  # mouth corners' lift, pixels (< 0: lowered)


def expression(
    audio: Audio, fps: int, n: int, face: FaceParams | None, cfg: AnimatorSettings, face_h: float, rng
) -> Expression:
    """The tracks for `n` frames of `audio` in the mode's `face` (None: the animator settings alone,
    no nods or brow raises)."""
    times = np.arange(n) / fps
    if face is None:
        blink = blink_track(n, fps, cfg.blink_interval_s, rng)
        still = np.zeros(n, np.float32)
        return Expression(sway_track(n, fps, rng), still, blink, still, still)
    rate = face.blink_rate_per_min if cfg.blink_interval_s > 0 else 0.0
    interval = 60 / rate if rate > 0 else 0.0
    blink = blink_track(n, fps, interval, rng)
    speaking, ends, questions, stresses = _events(audio, times)
    activity = LISTENING + (1 - LISTENING) * _smooth(speaking.astype(np.float32), fps, 0.4)
    sway = sway_track(n, fps, rng, face.motion_speed) * face.head_motion * activity
    nod = np.zeros(n, np.float32)
    for end in ends:
        nod = np.maximum(nod, _bump(times, end - 0.15, NOD_S))
    brow = np.zeros(n, np.float32)
    for end in questions:
        brow = np.maximum(brow, _plateau(times, end - QUESTION_S, end + 0.25))
    for at in stresses:
        brow = np.maximum(brow, 0.6 * _bump(times, at, EMPHASIS_S))
    return Expression(
        sway.astype(np.float32),
        (nod * NOD_DEPTH * face.head_motion * face_h).astype(np.float32),
        blink,
        (brow * BROW_RAISE * face.brow * face_h).astype(np.float32),
        np.full(n, SMILE_LIFT * face.smile * face_h, np.float32),
    )


def _events(audio: Audio, times: np.ndarray) -> tuple[np.ndarray, list[float], list[float], list[float]]:
    """Per frame whether speech sounds; the times statements end, questions end, and each
    sentence's most stressed syllable starts."""
    if not audio.phonemes:
        return _events_from_sound(audio, times)
    speaking = np.zeros(len(times), bool)
    ends: list[float] = []
    questions: list[float] = []
    stresses: list[float] = []
    best: tuple[float, float] | None = None  # (loudness, time) of this sentence's best stress
    phonemes = audio.phonemes
    for i, (symbol, start, end) in enumerate(phonemes):
        if symbol not in "^$.,;:!?… ":
            speaking |= (times >= start) & (times < end)
        if symbol == "ˈ" and i + 1 < len(phonemes):
            vowel_start, vowel_end = phonemes[i + 1][1], phonemes[i + 1][2]
            loudness = _rms(audio, vowel_start, vowel_end)
            if best is None or loudness > best[0]:
                best = (loudness, start)
        if symbol in ".!?":
            (questions if symbol == "?" else ends).append(start)
            if best is not None and symbol != "?":
                stresses.append(best[1])
            best = None
    return speaking, ends, questions, stresses


def _events_from_sound(audio: Audio, times: np.ndarray) -> tuple[np.ndarray, list[float], list, list]:
    rate = audio.sample_rate
    hop = max(1, rate // 100)
    frames = len(audio.samples) // hop
    power = np.square(audio.samples[: frames * hop].reshape(frames, hop)).mean(axis=1)
    voiced = 10 * np.log10(power + 1e-12) > -45
    speaking = np.zeros(len(times), bool)
    index = np.minimum((times * 100).astype(int), max(frames - 1, 0))
    if frames:
        speaking = voiced[index]
    ends = []
    quiet = round(PAUSE_S * 100)
    for i in np.flatnonzero(voiced[:-1] & ~voiced[1:]):
        if not voiced[i + 1 : i + 1 + quiet].any():
            ends.append((i + 1) / 100)
    return speaking, ends, [], []


def _rms(audio: Audio, start: float, end: float) -> float:
    part = audio.samples[int(start * audio.sample_rate) : int(end * audio.sample_rate)]
    return float(np.sqrt(np.mean(np.square(part)))) if len(part) else 0.0


def _bump(times: np.ndarray, start: float, length: float) -> np.ndarray:
    """A raised-cosine bump from `start`, `length` seconds long, peaking at 1 in its middle."""
    phase = np.clip((times - start) / length, 0, 1)
    return (0.5 - 0.5 * np.cos(2 * np.pi * phase)).astype(np.float32)


def _plateau(times: np.ndarray, start: float, end: float, ramp: float = 0.2) -> np.ndarray:
    up = np.clip((times - start) / ramp, 0, 1)
    down = np.clip((end - times) / ramp, 0, 1)
    x = np.minimum(up, down)
    return (x * x * (3 - 2 * x)).astype(np.float32)


def _smooth(x: np.ndarray, fps: int, seconds: float) -> np.ndarray:
    """Centred moving average over `seconds`."""
    size = max(1, round(seconds * fps))
    return np.convolve(np.pad(x, size, mode="edge"), np.ones(size) / size, mode="same")[size:-size]
