"""Rendering on small regions of the portrait: an open mouth (jaw drop + mouth cavity) and a
closing eyelid, plus the feathered head mask the sway turns. Every warp fades to zero
displacement at its region's edges, so a rendered region pastes into the frame without a seam."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ara_sidecar.lipsync.animator.face import Box, Layout

CLOSE_OVERSHOOT = 1.3  # closing lips move this many times the measured gap (its edges are soft)
UPPER_LIFT = 0.15  # the upper lip rises by this fraction of the jaw drop
CAVITY_DEEP = np.array([30, 10, 13], np.float32)  # RGB deep in the mouth
CAVITY_LIPS = np.array([160, 88, 80], np.float32)  # RGB of the inner lips at the gap's edges
TONGUE = np.array([140, 62, 56], np.float32)
TEETH = np.array([226, 218, 204], np.float32)
TOOTH_EDGES = (0.0, 0.3, 0.55, 0.75, 0.9)  # where upper teeth meet, × the mouth's half width from its centre
LIP_SEAM = np.array([120, 62, 60], np.float32)  # RGB where pressed lips meet
SMILE_OUT = 0.3  # a smiling corner moves out by this fraction of its lift
SMILE_ROUNDING = 3.0  # the smile fades by this fraction per unit of lip narrowing
ROUND_FLATTEN = 0.4  # the roundest lips (width 0.74) lower the portrait's own smiling corners this much
POUT_GAIN = 0.35  # pouted lips are this much taller (at pout 1) …
LIP_DEPTH = 0.06  # … than a lip's height, this fraction of the face height
BARE_GAP = 0.02  # a portrait whose lip gap is under this fraction of the face height shows no teeth …
BITE = 0.03  # … so a tucked lower lip shows the upper teeth's edge this tall (fraction, at tuck 1)


@dataclass(frozen=True)
class Region:
    """A rectangle of the image, clipped to it."""

    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def around(cls, x0: float, y0: float, x1: float, y1: float, shape: tuple[int, ...]) -> Region:
        h, w = shape[:2]
        return cls(max(0, int(x0)), max(0, int(y0)), min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1))))

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def grown(self, margin: int, outer: Region) -> Region:
        """This region grown by `margin` pixels each side, clipped to `outer`."""
        return Region(
            max(outer.x0, self.x0 - margin),
            max(outer.y0, self.y0 - margin),
            min(outer.x1, self.x1 + margin),
            min(outer.y1, self.y1 + margin),
        )

    def within(self, outer: Region) -> tuple[slice, slice]:
        """This region's slices relative to `outer`, which contains it."""
        return slice(self.y0 - outer.y0, self.y1 - outer.y0), slice(self.x0 - outer.x0, self.x1 - outer.x0)


@dataclass(frozen=True)
class MouthRig:
    region: Region
    cx: float  # mouth centre, region coordinates
    line: np.ndarray  # (1, w) parting line per column, region coordinates
    half_width: float
    face_w: float
    face_h: float
    teeth_visible: bool
    gap: float = 0.0  # the portrait's own lip gap above the parting line, pixels


@dataclass(frozen=True)
class EyeRig:
    region: Region
    cx: float  # eye centre, region coordinates
    cy: float
    size: float
    weight: np.ndarray  # (1, w) feather toward the eye's corners
    shut: np.ndarray  # the region with the eye opening inpainted (lid skin)
    lash: np.ndarray  # RGB of the lash line


@dataclass(frozen=True)
class BrowRig:
    """Both eyes and their brows: the region that eyebrow raises warp (blinks drawn first)."""

    region: Region
    mask: np.ndarray  # (h, w) how much of the raise each pixel follows


@dataclass(frozen=True)
class HeadRig:
    region: Region
    mask: np.ndarray  # (h, w) how much of the sway each pixel follows (feathered head ellipse)
    pivot_x: float  # the sway's centre of rotation, region coordinates
    pivot_y: float
    reach: float  # the largest displacement per radian of sway, pixels


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def mouth_rig(image: np.ndarray, layout: Layout) -> MouthRig:
    fw, fh = layout.frame.w, layout.frame.h
    mx, my = layout.mouth_x, layout.mouth_y
    region = Region.around(mx - 0.55 * fw, my - 0.22 * fh, mx + 0.55 * fw, my + 0.5 * fh, image.shape)
    cx, cy = mx - region.x0, my - region.y0
    dx = np.arange(region.x1 - region.x0, dtype=np.float32)[None, :] - cx
    u = np.minimum(np.abs(dx) / layout.mouth_half_width, 1.0)
    return MouthRig(
        region=region,
        cx=cx,
        line=(cy - layout.smile * u * u).astype(np.float32),
        half_width=layout.mouth_half_width,
        face_w=float(fw),
        face_h=float(fh),
        teeth_visible=layout.teeth_visible,
        gap=layout.lip_gap,
    )


class MouthRenderer:
    """Renders mouth poses of one portrait; the fields that do not depend on the pose are
    computed once, here."""

    def __init__(self, image: np.ndarray, rig: MouthRig):
        self.rig = rig
        self.base = image[rig.region.slices]
        h, w = self.base.shape[:2]
        self.ys = np.arange(h, dtype=np.float32)[:, None]
        self.xs = np.arange(w, dtype=np.float32)[None, :]
        self.dx = self.xs - rig.cx
        # The portrait's own lip gap (teeth) per column, with some overshoot: pressed lips meet.
        u = np.clip(np.abs(self.dx) / (1.1 * rig.half_width), 0, 1)
        self.gap = CLOSE_OVERSHOOT * rig.gap * np.sqrt(1 - u**4)
        self.rest = self._fields(rig.line)
        self.rest_seam = _smoothstep((1 - np.abs(self.dx) / (1.05 * rig.half_width)) / 0.2) * 0.8
        # A smile lifts the corners (and draws them out a little): nothing at the centre, most at
        # the corners, fading out beyond them and away from the lips; source offset per pixel.
        along = np.abs(self.dx) / rig.half_width
        along = _smoothstep((along - 0.15) / 0.85) * (1 - _smoothstep((along - 1.0) / 0.9))
        near = 1 - _smoothstep((np.abs(self.ys - rig.line) - 0.04 * rig.face_h) / (0.14 * rig.face_h))
        self.smile_y = (along * near).astype(np.float32)
        self.corner_rise = float(rig.line.max() - rig.line.min())  # the portrait's own smile, pixels
        self.smile_x = (-SMILE_OUT * np.sign(self.dx) * self.smile_y).astype(np.float32)
        # A pout makes each lip taller, away from the teeth, most at the centre.
        self.pout_across = np.clip(1 - (self.dx / (1.1 * rig.half_width)) ** 2, 0, 1)
        self.teeth_gap = rig.gap * np.sqrt(1 - np.clip(np.abs(self.dx) / rig.half_width, 0, 1) ** 4)

    def _fields(self, line: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per-pixel fields around the parting line `line` (1, w): distance below it, the jaw's
        reach, the lower lip → chin profile, the upper lip's lift and the lips' pinch."""
        rig, fw, fh = self.rig, self.rig.face_w, self.rig.face_h
        rel = self.ys - line  # > 0 below the parting line
        # The jaw: as wide as the cheeks at the mouth, narrowing to the chin; below the chin the
        # drop fades out over the neck.
        jaw_half = fw * (0.5 - 0.22 * np.clip(rel / (0.24 * fh), 0, 1))
        jaw = (1 - _smoothstep((np.abs(self.dx) - 0.45 * jaw_half) / (0.55 * jaw_half))) * (
            1 - _smoothstep((rel - 0.24 * fh) / (0.26 * fh))
        )
        follow = _smoothstep(rel / (0.22 * fh))  # lower lip (lens) → chin (jaw) profile
        lifted = _smoothstep(1 + rel / (0.12 * fh))  # how much of the lip lift each pixel gets
        # Source x offset per unit of lip narrowing (round) or widening: the lips scale about the
        # centre up to the corners; beyond them the offset eases off over 1.5 half widths (the
        # cheeks stretch at most 1.5× for the roundest lips, no smear); strongest near the line.
        hw, ax = rig.half_width, np.abs(self.dx)
        reach = np.where(ax <= hw, ax, hw * (1 - _smoothstep((ax - hw) / (1.5 * hw))))
        pinch = np.sign(self.dx) * reach * (1 - _smoothstep((np.abs(rel) - 0.06 * fh) / (0.14 * fh)))
        return rel, jaw, follow, lifted, pinch

    def render(
        self,
        drop_px: float,
        width: float,
        close: float = 0.0,
        tuck: float = 0.0,
        pout: float = 0.0,
        smile_px: float = 0.0,
    ) -> np.ndarray:
        """The mouth region with the jaw dropped by `drop_px`, the lips `width` times as wide
        (narrower ones rounder), the portrait's own lip gap `close`d (both lips meet) or the
        lower lip `tuck`ed under the upper teeth (fractions of the gap; a portrait without a lip
        gap shows the teeth's edge above the lower lip), the lips `pout`ed (taller, pushed
        forward) and the corners lifted by `smile_px` pixels (less as the lips round)."""
        warped = self._mouth(drop_px, width, close, tuck, pout)
        # Rounding lips draw the corners in and level them: the smile fades, and the portrait's
        # own smile (its corners' rise) partly flattens.
        rounding = float(np.clip((1 - width) / 0.26, 0.0, 1.0))
        smile_px *= float(np.clip(1 - SMILE_ROUNDING * (1 - width), 0.2, 1.0))
        smile_px -= ROUND_FLATTEN * rounding * self.corner_rise
        if abs(smile_px) < 0.05:
            return warped
        map_x = self.xs + smile_px * self.smile_x
        map_y = self.ys + smile_px * self.smile_y
        return cv2.remap(warped, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _pouted(self, map_y: np.ndarray, pout: float) -> np.ndarray:
        """Source rows (of the portrait) with the lips pushed forward by `pout`: from the front,
        each lip grows taller away from the teeth, and the skin beyond it gives way."""
        rel = map_y - self.rig.line
        depth = LIP_DEPTH * self.rig.face_h
        upper = (-self.teeth_gap - rel) / depth  # 0 at the upper lip's inner edge, 1 at its outer
        lower = rel / depth  # the same for the lower lip

        def ramp(a: np.ndarray) -> np.ndarray:
            return np.where(a <= 1, _smoothstep(a), 1 - _smoothstep((a - 1) / 1.5))

        shift = POUT_GAIN * depth * pout * self.pout_across
        return map_y + shift * (ramp(upper) - ramp(lower))

    def _mouth(self, drop_px: float, width: float, close: float, tuck: float, pout: float) -> np.ndarray:
        rig, fh = self.rig, self.rig.face_h
        gap = self.gap
        lower_up = np.minimum((0.55 * close + 0.75 * tuck) * gap, gap)  # the lower lip rises …
        upper_down = np.minimum(0.45 * close * gap, gap - lower_up)  # … and the upper one falls
        closing = rig.gap > 0 and (close > 0 or tuck > 0)
        line = rig.line - lower_up if closing else rig.line
        rel, jaw, follow, lifted, pinch = self._fields(line) if closing else self.rest
        below = rel >= 0
        # Without a lip gap of its own the portrait shows no teeth: for a tuck the upper lip lifts
        # off the upper teeth, whose edge then rests on the lower lip.
        bare = rig.gap < BARE_GAP * fh and not rig.teeth_visible
        bite = BITE * fh * tuck if bare else 0.0
        lift = UPPER_LIFT * drop_px + bite
        lens = np.clip(1 - (self.dx / (rig.half_width * width)) ** 2, 0, 1) ** (0.7 if width >= 1 else 0.5)
        down = drop_px * (lens + (jaw - lens) * follow)
        up = lift * lens * lifted
        map_x = self.xs + pinch * (1 / width - 1)
        map_y = self.ys + np.where(below, -down, up)
        if closing:  # where the warped point lies in the closed mouth → where that came from
            r = map_y - line
            edge = lower_up + upper_down - gap  # upper lip's edge, closed
            lower = lower_up * (1 - _smoothstep((r - 0.08 * fh) / (0.14 * fh)))
            upper = upper_down * (1 - _smoothstep((edge - r - 0.05 * fh) / (0.12 * fh)))
            map_y = map_y + np.where(r >= 0, lower, -upper)
        if pout > 0:
            map_y = self._pouted(map_y, pout)
        warped = cv2.remap(
            self.base,
            map_x.astype(np.float32),
            map_y.astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        if closing and close > 0 and not bare:  # where pressed lips meet: their seam, not teeth
            seam = close * self.rest_seam * np.exp(-(((rel + 0.5) / max(1.0, 0.006 * fh)) ** 2))
            rows = np.flatnonzero(seam.max(axis=1) > 0.02)
            if len(rows):
                band = slice(rows[0], rows[-1] + 1)
                a = seam[band][..., None]
                warped[band] = (warped[band] * (1 - a) + LIP_SEAM * a + 0.5).astype(np.uint8)
        # The mouth cavity fills the gap between the lips: pixels whose source crossed the line.
        depth = np.where(below, down - rel, rel + up)
        alpha = np.clip(depth / max(1.5, 0.012 * fh), 0, 1) * _smoothstep(lens / 0.15)
        rows = np.flatnonzero(alpha.max(axis=1) > 0)
        cols = np.flatnonzero(alpha.max(axis=0) > 0)
        if not len(rows):
            return warped
        window = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        cavity = _cavity(rig, self.dx[:, window[1]], lens[:, window[1]], rel[window], drop_px, lift, bite)
        a = alpha[window][..., None]
        warped[window] = (warped[window] * (1 - a) + cavity * a + 0.5).astype(np.uint8)
        return warped


def _cavity(
    rig: MouthRig,
    dx: np.ndarray,
    lens: np.ndarray,
    rel: np.ndarray,
    drop: float,
    lift: float,
    bite: float = 0.0,
) -> np.ndarray:
    """Colours inside the open mouth: dark under the upper lip or teeth, the tongue catching
    some light low down, the inner lower lip's rim, and upper teeth if the portrait shows none
    (at least `bite` pixels of them: down to a tucked lower lip)."""
    gap = (drop + lift) * lens
    from_top = rel + lift * lens  # pixels below the upper lip's edge
    from_bottom = gap - from_top  # pixels above the lower lip's edge
    soft = max(1.0, 0.008 * rig.face_h)
    tongue = float(np.clip((drop + lift) / (0.08 * rig.face_h), 0.25, 0.75))
    low = _smoothstep((from_top / np.maximum(gap, 1e-3) - 0.3) / 0.7) * tongue
    colour = CAVITY_DEEP + (TONGUE - CAVITY_DEEP) * low[..., None]
    rim = np.exp(-np.maximum(from_bottom, 0) / (0.008 * rig.face_h))
    colour += (CAVITY_LIPS - colour) * (0.6 * rim)[..., None]
    shade = (0.45 + 0.55 * lens)[..., None]  # the corners are in shadow
    colour *= shade
    if not rig.teeth_visible:  # upper teeth just under the upper lip
        height = np.maximum(np.minimum(0.3 * gap, 0.045 * rig.face_h), bite * lens)
        # Each tooth's edge is rounded at its sides, and neighbours meet in a shadowed seam.
        seam = np.zeros_like(dx)
        for edge in TOOTH_EDGES:
            seam = np.maximum(seam, np.exp(-(((np.abs(dx) - edge * rig.half_width) / 0.9) ** 2)))
        height = height * (1 - 0.25 * seam)
        teeth = (1 - _smoothstep((from_top - height) / soft)) * _smoothstep((lens - 0.25) / 0.35)
        lit = 0.72 + 0.28 * _smoothstep(from_top / np.maximum(0.6 * height, 1.0))  # under the lip: shade
        tooth = TEETH * shade * (lit * (1 - 0.3 * seam))[..., None]
        colour += (tooth - colour) * teeth[..., None]
    return colour


def eye_rig(image: np.ndarray, eye: Box) -> EyeRig:
    """The eye's region plus a copy of it with the eye opening inpainted from the skin around
    it: the closed lid."""
    s = float(eye.w)
    region = Region.around(
        eye.cx - 0.75 * s, eye.cy - 0.5 * s, eye.cx + 0.75 * s, eye.cy + 0.45 * s, image.shape
    )
    cx, cy = eye.cx - region.x0, eye.cy - region.y0
    base = np.ascontiguousarray(image[region.slices])
    opening = np.zeros(base.shape[:2], np.uint8)
    centre = (round(cx * 4), round((cy - 0.02 * s) * 4))
    axes = (round(0.55 * s * 4), round(0.26 * s * 4))
    cv2.ellipse(opening, centre, axes, 0, 0, 360, 255, -1, cv2.LINE_AA, shift=2)
    shut = cv2.inpaint(base, opening, max(2.0, 0.08 * s), cv2.INPAINT_TELEA)
    dx = np.abs(np.arange(base.shape[1], dtype=np.float32) - cx)[None, :]
    weight = 1 - _smoothstep((dx - 0.5 * s) / (0.12 * s))
    lash = np.percentile(base[opening > 0].reshape(-1, 3), 5, axis=0).astype(np.float32)
    return EyeRig(region, cx, cy, s, weight.astype(np.float32), shut, lash)


def render_eye(image: np.ndarray, rig: EyeRig, closure: float) -> np.ndarray:
    """The eye region with the upper lid lowered by `closure` (1 = shut): above the lid's edge
    the inpainted skin shows, and a dark lash line follows the edge."""
    base = image[rig.region.slices].astype(np.float32)
    h, w = base.shape[:2]
    s = rig.size
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    arc = np.sqrt(np.clip(1 - ((xs - rig.cx) / (0.5 * s)) ** 2, 0, 1))
    edge = rig.cy - 0.17 * s * arc + closure * 0.36 * s * arc  # shut: meets the lower lid
    lid = np.clip(edge - ys + 0.5, 0, 1) * rig.weight
    out = base + (rig.shut.astype(np.float32) - base) * lid[..., None]
    line = np.exp(-(((ys - edge + 0.03 * s) / (0.035 * s)) ** 2)) * rig.weight * np.sqrt(arc)
    out += (rig.lash - out) * (0.85 * line)[..., None]
    return (out + 0.5).astype(np.uint8)


def brow_rig(image: np.ndarray, eyes: tuple[EyeRig, ...]) -> BrowRig:
    """The brows rise in a band from above the eyelid's crease to the forehead, over each eye's
    width, fading to zero displacement around it."""
    centres = [(e.region.x0 + e.cx, e.region.y0 + e.cy, e.size) for e in eyes]
    s = max(size for _, _, size in centres)
    region = Region.around(
        min(x for x, _, _ in centres) - 0.8 * s,
        min(y for _, y, _ in centres) - 1.5 * s,
        max(x for x, _, _ in centres) + 0.8 * s,
        max(y for _, y, _ in centres) + 0.5 * s,
        image.shape,
    )
    region = Region(
        min(region.x0, *(e.region.x0 for e in eyes)),
        region.y0,
        max(region.x1, *(e.region.x1 for e in eyes)),
        max(region.y1, *(e.region.y1 for e in eyes)),
    )
    ys = np.arange(region.y1 - region.y0, dtype=np.float32)[:, None]
    xs = np.arange(region.x1 - region.x0, dtype=np.float32)[None, :]
    mask = np.zeros(ys.shape[:1] + xs.shape[1:], np.float32)
    for x, y, size in centres:
        cx, cy = x - region.x0, y - region.y0
        across = 1 - _smoothstep((np.abs(xs - cx) - 0.5 * size) / (0.3 * size))
        rise = _smoothstep((cy - 0.2 * size - ys) / (0.3 * size))  # 0 at the lid's crease
        top = 1 - _smoothstep((cy - 1.05 * size - ys) / (0.4 * size))  # 0 up the forehead
        mask = np.maximum(mask, across * rise * top)
    return BrowRig(region, mask)


def render_upper(image: np.ndarray, rig: BrowRig, eyes: tuple[EyeRig, ...], closure: float, raise_px: float):
    """The eyes-and-brows region with the lids lowered by `closure` and the brows raised by
    `raise_px` pixels."""
    patch = image[rig.region.slices].copy()
    if closure > 0:
        for eye in eyes:
            patch[eye.region.within(rig.region)] = render_eye(image, eye, closure)
    h, w = patch.shape[:2]
    map_x = np.broadcast_to(np.arange(w, dtype=np.float32)[None, :], (h, w))
    map_y = np.arange(h, dtype=np.float32)[:, None] + raise_px * rig.mask
    map_y = map_y.astype(np.float32)
    return cv2.remap(patch, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def head_rig(image: np.ndarray, face: Box, parts: tuple[Region, ...]) -> HeadRig:
    """Sway rotates the head about the base of the neck inside a feathered ellipse around face
    and hair (zero displacement at the region's edges). The region also covers `parts`, the
    mouth and eye regions whose patches are pasted before the head turns."""
    fw, fh = face.w, face.h
    ellipse = Region.around(
        face.cx - 0.9 * fw, face.y - 0.65 * fh, face.cx + 0.9 * fw, face.y + 1.4 * fh, image.shape
    )
    region = Region(
        min(r.x0 for r in (ellipse, *parts)),
        min(r.y0 for r in (ellipse, *parts)),
        max(r.x1 for r in (ellipse, *parts)),
        max(r.y1 for r in (ellipse, *parts)),
    )
    ys = np.arange(region.y1 - region.y0, dtype=np.float32)[:, None]
    xs = np.arange(region.x1 - region.x0, dtype=np.float32)[None, :]
    cx, cy = face.cx - region.x0, face.y + 0.35 * fh - region.y0
    r = np.hypot((xs - cx) / (0.85 * fw), (ys - cy) / (0.95 * fh))
    mask = (1 - _smoothstep((r - 0.7) / 0.3)).astype(np.float32)
    px, py = cx, face.y + 1.35 * fh - region.y0
    return HeadRig(region, mask, px, py, float((mask * np.hypot(xs - px, ys - py)).max()))
