"""Face layout of a portrait: face box (Haar cascade), eyes, and the mouth's parting line."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from ara_sidecar.errors import NoFaceError

DETECT_SIDE = 512  # detection runs on a copy scaled down to at most this many pixels a side


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass(frozen=True)
class Layout:
    """Where things are, in image pixels. `face` is None when no face was found and a centred
    pseudo face (`frame`) stands in for it; `eyes` is then empty."""

    frame: Box  # the face box, or the pseudo face that sizes the mouth
    face: Box | None
    eyes: tuple[Box, ...]  # (left, right) in image order
    mouth_x: float  # centre of the mouth
    mouth_y: float  # parting line at the centre (bottom of the upper teeth when they show)
    mouth_half_width: float
    smile: float  # how much higher the corners' parting line is than its centre, pixels
    teeth_visible: bool  # upper teeth already show in the rest pose
    lip_gap: float = 0.0  # rest-pose height of the gap (teeth, dark) above the parting line, pixels

    @property
    def mouth_box(self) -> Box:
        """The lips around the parting line."""
        lip = 0.07 * self.frame.h
        return Box(
            round(self.mouth_x - self.mouth_half_width),
            round(self.mouth_y - self.smile - lip),
            round(2 * self.mouth_half_width),
            round(self.smile + 2 * lip),
        )


@cache
def _cascade(name: str) -> cv2.CascadeClassifier:
    classifier = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if classifier.empty():
        raise RuntimeError(f"OpenCV Haar cascade {name} is missing from {cv2.data.haarcascades}")
    return classifier


def find_layout(image: np.ndarray, source: str, *, no_face_ok: bool) -> Layout:
    """Detect the largest frontal face; raise NoFaceError (or fall back to a centred mouth)."""
    h, w = image.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    min_side = max(24, min(gray.shape) // 10)
    faces = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
    )
    if len(faces) == 0:
        if not no_face_ok:
            raise NoFaceError(
                f"no face found in avatar {source}; use a front-facing portrait, or pass --no-face-ok "
                "to animate a mouth in the middle of the image anyway"
            )
        return centred_layout(w, h)
    fx, fy, fw, fh = max(faces, key=lambda f: int(f[2]) * int(f[3]))
    eyes = _find_eyes(gray[fy : fy + fh // 2, fx : fx + fw], fw)
    face = _scaled(Box(int(fx), int(fy), int(fw), int(fh)), 1 / scale)
    eyes = tuple(_scaled(Box(int(fx + ex), int(fy + ey), int(es), int(es)), 1 / scale) for ex, ey, es in eyes)
    return _mouth_layout(image, face, eyes)


def _scaled(box: Box, factor: float) -> Box:
    return Box(round(box.x * factor), round(box.y * factor), round(box.w * factor), round(box.h * factor))


def _find_eyes(upper_face: np.ndarray, fw: int) -> list[tuple[float, float, float]]:
    """Two eyes (x, y, size) in face coordinates: the cascade's largest eye-sized hit on each
    side of the face, else where a frontal face usually has that eye."""
    found = _cascade("haarcascade_eye.xml").detectMultiScale(
        upper_face, scaleFactor=1.1, minNeighbors=5, minSize=(fw // 8, fw // 8), maxSize=(fw // 3, fw // 3)
    )
    left = [e for e in found if e[0] + e[2] / 2 < fw * 0.5]
    right = [e for e in found if e[0] + e[2] / 2 >= fw * 0.5]
    eyes = []
    for side, default_cx in ((left, 0.3), (right, 0.7)):
        if side:
            ex, ey, es, _ = max(side, key=lambda e: e[2])
            eyes.append((float(ex), float(ey), float(es)))
        else:
            size = 0.2 * fw
            eyes.append((default_cx * fw - size / 2, 0.38 * fw - size / 2, size))
    return eyes


def centred_layout(w: int, h: int) -> Layout:
    """No face: a pseudo face sized from the image, placed so that its mouth is centred."""
    side = round(0.4 * min(w, h))
    frame = Box(round(w / 2 - side / 2), round(h / 2 - 0.8 * side), side, side)
    return Layout(frame, None, (), w / 2, h / 2, 0.2 * side, 0.0, False)


def _mouth_layout(image: np.ndarray, face: Box, eyes: tuple[Box, ...]) -> Layout:
    """Find the lips by their redness (red minus green) in the lower face: the parting line is the bottom
    of the least-red valley between the upper and the lower lip (teeth or the lips' seam)."""
    fy, fw, fh = face.y, face.w, face.h
    mx = face.cx
    half_width = 0.2 * fw
    y0, y1 = fy + round(0.68 * fh), min(image.shape[0], fy + round(0.98 * fh))
    x0, x1 = max(0, round(mx - half_width)), min(image.shape[1], round(mx + half_width))
    default = Layout(face, face, eyes, mx, fy + 0.8 * fh, half_width, 0.0, False)
    if y1 - y0 < 8 or x1 - x0 < 8:
        return default
    mouth = image[y0:y1, x0:x1].astype(np.float32)
    redness, light = mouth[..., 0] - mouth[..., 1], mouth.mean(axis=2)
    band = redness.shape[1] // 4
    centre = slice(band + band // 2, redness.shape[1] - band - band // 2)
    parting = _parting_row(redness[:, centre].mean(axis=1), fh)
    if parting is None:
        return default
    line, top = parting
    # Corners: the same search in columns half-way out; their rise gives the smile curve.
    side_rows = [
        _parting_row(redness[:, cols].mean(axis=1), fh) for cols in (slice(0, band), slice(-band, None))
    ]
    rises = [line - r[0] for r in side_rows if r is not None and 0 <= line - r[0] <= 0.08 * fh]
    if not rises and line - top <= 0.02 * fh:  # closed lips: the seam is the darkest row there
        for cols in (slice(0, band), slice(-band, None)):
            above = light[max(0, line - round(0.08 * fh)) : line + 2, cols].mean(axis=1)
            rises.append(line - (max(0, line - round(0.08 * fh)) + int(np.argmin(above))))
    smile = float(np.mean(rises)) / 0.6 if rises else 0.0  # sides sit at ±0.75 hw: (0.75)² ≈ 0.6
    # Teeth: the rows just above the line are whiter (less red, lighter) than the chin's skin.
    above = slice(max(0, line - round(0.03 * fh)), line), centre
    chin = slice(min(len(redness) - 1, line + round(0.1 * fh)), None), centre
    teeth_visible = line > 0 and bool(
        redness[above].mean() < redness[chin].mean() - 8 and light[above].mean() > light[chin].mean()
    )
    gap = float(min(line - top, 0.1 * fh))
    return Layout(
        face, face, eyes, mx, float(y0 + line), half_width, min(smile, 0.08 * fh), teeth_visible, gap
    )


def _parting_row(profile: np.ndarray, fh: int) -> tuple[int, int] | None:
    """Row indices of the parting line in a redness-per-row profile, the bottom of the least-red
    valley between the two reddest peaks (the lips), and of the valley's top (the upper lip's
    lower edge). None without two clear lips."""
    profile = np.convolve(np.pad(profile, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    inner = profile[1:-1]
    peaks = np.flatnonzero((inner >= profile[:-2]) & (inner > profile[2:])) + 1
    if len(peaks) < 2:
        return None
    first = int(peaks[np.argmax(profile[peaks])])
    near = [int(p) for p in peaks if 0.03 * fh <= abs(int(p) - first) <= 0.15 * fh]
    if not near:
        return None
    second = max(near, key=lambda p: profile[p])
    lo, hi = sorted((first, second))
    valley = lo + int(np.argmin(profile[lo : hi + 1]))
    depth = float(min(profile[lo], profile[hi]) - profile[valley])
    if depth < 4.0:  # no red lips around a less red gap: not a mouth
        return None
    threshold = profile[valley] + 0.3 * depth
    line, top = valley, valley
    while line + 1 < hi and profile[line + 1] <= threshold:
        line += 1
    while top - 1 > lo and profile[top - 1] <= profile[valley] + 0.6 * depth:  # to the lip's edge
        top -= 1
    return line, top
