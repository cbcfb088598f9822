"""Phonemes to mouth poses: the Oculus/MPEG-4 viseme set, coarticulation and the per-frame track.

Each phoneme Piper times (espeak IPA) maps to one of 15 visemes (`PHONEME_VISEMES`); each viseme
is a mouth pose plus a dominance (`VISEMES`). A frame's pose blends the poses of the segments
around its time, each weighted by its dominance and by how far the frame is from the segment
(Cohen–Massaro coarticulation), looked up `LEAD_S` ahead, so that the lips anticipate the next
sound. Bilabials and labiodentals then take their own pose outright on the frame nearest their
centre (and on every frame within a bilabial's sound): the lips close fully at least once per /p b m/;
a vowel's jaw reaches at least `VOWEL_REACH` of its opening at its centre."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ara_sidecar.audio import Phoneme


@dataclass(frozen=True)
class Viseme:
    open: float  # jaw drop, as a fraction of the animator's largest (`mouth_open_max`)
    width: float  # lip width scale: < 1 rounded and narrowed, > 1 spread
    close: float  # fraction of the portrait's own lip gap closed (1: lips pressed together)
    tuck: float  # lower lip raised under the upper teeth (whose edge shows), fraction of the gap
    pout: float  # lips pushed forward: taller (fuller) from the front, 1 = `render.POUT_GAIN`
    dominance: float  # how strongly it imposes its pose on its neighbours


#                    open  width close tuck  pout  dominance
VISEMES: dict[str, Viseme] = {
    "sil": Viseme(0.00, 1.00, 0.0, 0.0, 0.0, 1.0),  # rest: the portrait's own mouth
    "PP": Viseme(0.00, 0.98, 1.0, 0.0, 0.0, 4.0),  # p b m: lips pressed
    "FF": Viseme(0.00, 1.00, 0.0, 0.8, 0.0, 3.0),  # f v: lower lip under the upper teeth
    "TH": Viseme(0.18, 1.00, 0.0, 0.0, 0.0, 1.0),  # θ ð: tongue between the teeth
    "DD": Viseme(0.24, 1.02, 0.0, 0.0, 0.0, 0.5),  # t d
    "kk": Viseme(0.30, 1.00, 0.0, 0.0, 0.0, 0.4),  # k g ŋ h
    "CH": Viseme(0.20, 0.88, 0.0, 0.0, 0.6, 1.5),  # ʃ ʒ tʃ dʒ: lips pushed forward
    "SS": Viseme(0.12, 1.05, 0.0, 0.0, 0.0, 1.2),  # s z: teeth nearly together
    "nn": Viseme(0.18, 1.00, 0.0, 0.0, 0.0, 0.5),  # n l
    "RR": Viseme(0.22, 0.88, 0.0, 0.0, 0.4, 1.0),  # ɹ ɚ ɝ
    "aa": Viseme(1.00, 1.02, 0.0, 0.0, 0.0, 1.0),  # a ɑ æ ʌ: jaw dropped
    "E": Viseme(0.62, 1.08, 0.0, 0.0, 0.0, 1.0),  # e ɛ
    "ih": Viseme(0.38, 1.10, 0.0, 0.0, 0.0, 0.9),  # i ɪ ə j
    "oh": Viseme(0.62, 0.84, 0.0, 0.0, 0.6, 1.3),  # o ɔ: rounded, pushed forward
    "ou": Viseme(0.30, 0.74, 0.0, 0.0, 1.0, 1.6),  # u ʊ w: rounded, narrow and protruded
}

# espeak IPA symbols (as Piper's phonemes list them, one code point each, English and the other
# languages espeak-ng speaks) → viseme. Front rounded vowels (y ø) round the lips.
PHONEME_VISEMES: dict[str, str] = {
    **dict.fromkeys("pbmβɱ", "PP"),
    **dict.fromkeys("fvʋ", "FF"),
    **dict.fromkeys("θð", "TH"),
    **dict.fromkeys("tdɾʈɖ", "DD"),
    **dict.fromkeys("kgɡŋhxʔcɟqɢɴχʁʀħɣɦ", "kk"),
    **dict.fromkeys("ʃʒɕʑʂʐ", "CH"),
    **dict.fromkeys("szçʝ", "SS"),
    **dict.fromkeys("nlɫɲʎɭ", "nn"),
    **dict.fromkeys("ɹrɚɝɻ", "RR"),
    **dict.fromkeys("aɑæɐʌɶ", "aa"),
    **dict.fromkeys("eɛɜɞ", "E"),
    **dict.fromkeys("iɪəᵻɨjɯɤɘɰ", "ih"),
    **dict.fromkeys("oɔɒøœ", "oh"),
    **dict.fromkeys("uʊwɵyʏɥɸ", "ou"),
    **dict.fromkeys("^$.,;:!?…—-¿¡", "sil"),
}
TO_NEXT = "ˈˌ"  # stress marks: their time belongs to the vowel after them
TO_PREVIOUS = "ːˑ"  # length marks: to the sound before
# Anything else (spaces, unknown symbols) shares its time between its neighbours.

VOWEL_REACH = 0.85
OPEN_PARTS = 2.0  # lips pressed or tucked while the jaw is open by 1 / this are fully parted
LEAD_S = 0.02  # the lips move this much ahead of the sound
REACH_S = (0.03, 0.06)  # how far a pose spreads beyond its segment (lips, rounding), seconds
FIELDS = ("open", "width", "close", "tuck", "pout")
OPEN, WIDTH, CLOSE, TUCK, POUT = range(5)


@dataclass(frozen=True)
class Segment:
    viseme: str
    start: float
    end: float

    @property
    def centre(self) -> float:
        return (self.start + self.end) / 2


def segments(phonemes: tuple[Phoneme, ...]) -> list[Segment]:
    """Viseme segments from timed phonemes: marks and spaces give their time to their neighbours,
    and consecutive phonemes of one viseme merge."""
    items: list[list] = []  # [viseme or None, start, end, kind]
    for symbol, start, end in phonemes:
        viseme = PHONEME_VISEMES.get(symbol)
        kind = "next" if symbol in TO_NEXT else "previous" if symbol in TO_PREVIOUS else "split"
        items.append([viseme, start, end, kind])
    timed = [i for i, item in enumerate(items) if item[0] is not None]
    for i, item in enumerate(items):
        if item[0] is not None:
            continue
        before = max((j for j in timed if j < i), default=None)
        after = min((j for j in timed if j > i), default=None)
        if after is not None and (item[3] == "next" or before is None):
            items[after][1] = min(items[after][1], item[1])
        elif before is not None and (item[3] == "previous" or after is None):
            items[before][2] = max(items[before][2], item[2])
        elif before is not None and after is not None:
            middle = (item[1] + item[2]) / 2
            items[before][2], items[after][1] = middle, middle
    out: list[Segment] = []
    for viseme, start, end, _ in (items[j] for j in timed):
        if out and out[-1].viseme == viseme and viseme != "PP":
            out[-1] = Segment(viseme, out[-1].start, end)
        else:
            out.append(Segment(viseme, start, end))
    return out


def pose_track(phonemes: tuple[Phoneme, ...], fps: int, n: int) -> np.ndarray:
    """(n, 5) poses (`FIELDS`) per frame for speech timed by `phonemes`."""
    rest = np.array([[getattr(VISEMES["sil"], f) for f in FIELDS]] * n, np.float32)
    segs = segments(phonemes)
    if not segs or n == 0:
        return rest
    poses = np.array([[getattr(VISEMES[s.viseme], f) for f in FIELDS] for s in segs], np.float64)
    dominance = np.array([VISEMES[s.viseme].dominance for s in segs])
    centres = np.array([s.centre for s in segs])
    halves = np.array([(s.end - s.start) / 2 for s in segs])
    reach = np.where(poses[:, WIDTH] < 0.95, REACH_S[1], REACH_S[0])  # rounding spreads further
    times = np.arange(n) / fps + LEAD_S
    outside = np.maximum(0.0, np.abs(times[:, None] - centres[None, :]) - halves[None, :])
    weights = dominance[None, :] * np.exp(-outside / reach[None, :])
    weights[outside > 4 * reach[None, :]] = 0.0
    total = weights.sum(axis=1, keepdims=True)
    track = np.where(total > 1e-6, weights @ poses / np.maximum(total, 1e-6), rest).astype(np.float32)
    # A dropping jaw parts the lips: blended closure fades as the blended opening grows.
    track[:, [CLOSE, TUCK]] *= np.clip(1 - OPEN_PARTS * track[:, [OPEN]], 0, 1)
    # Lip closures, lip-teeth contacts and open vowels are targets reached, not approached.
    for seg in segs:
        target = VISEMES[seg.viseme]
        frames = {min(n - 1, max(0, round(seg.centre * fps)))}
        if target.open >= 0.3:
            for i in frames:
                track[i, OPEN] = max(track[i, OPEN], VOWEL_REACH * target.open)
        if seg.viseme not in ("PP", "FF"):
            continue
        if seg.viseme == "PP":
            first, last = np.ceil(seg.start * fps), np.floor(seg.end * fps)
            frames |= {i for i in range(int(first), int(last) + 1) if 0 <= i < n}
        for i in frames:
            track[i, [OPEN, CLOSE, TUCK]] = target.open, target.close, target.tuck
    return track


def expected_openness(phonemes: tuple[Phoneme, ...], times: np.ndarray) -> np.ndarray:
    """The viseme openness of the segment sounding at each of `times` (NaN in silence, where the
    mouth rests as the portrait has it): what the mouth should show, to measure a renderer by."""
    out = np.full(len(times), np.nan, np.float32)
    for seg in segments(phonemes):
        if seg.viseme == "sil":
            continue
        viseme = VISEMES[seg.viseme]
        out[(times >= seg.start) & (times < seg.end)] = viseme.open * (1 - viseme.close)
    return out
