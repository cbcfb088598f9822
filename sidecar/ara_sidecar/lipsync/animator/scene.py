"""One portrait's prepared scene, and the frame loop that plays per-frame controls on it.

Controls are quantised; each distinct mouth, eyelid and head-turn state is rendered once per
portrait on its small region, cropped to the pixels it changes and kept across utterances
(`Looks`), so a frame costs one copy of a kept (possibly turned) portrait, a paste per changed
rectangle and, when the head is turned, a warp of just the pasted rectangles."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

from ara_persona import FaceParams
from ara_sidecar.audio import Audio
from ara_sidecar.avatar import Avatar
from ara_sidecar.config import AnimatorSettings
from ara_sidecar.lipsync.animator.expression import expression
from ara_sidecar.lipsync.animator.face import Layout, find_layout
from ara_sidecar.lipsync.animator.features import mouth_track
from ara_sidecar.lipsync.animator.render import (
    BrowRig,
    EyeRig,
    HeadRig,
    MouthRenderer,
    MouthRig,
    Region,
    brow_rig,
    eye_rig,
    head_rig,
    mouth_rig,
    render_eye,
    render_upper,
)

MOUTH_LEVELS = 16  # openness steps above closed
WIDTH_STEP = 0.04  # lip width quantum
CLOSE_LEVELS = 4  # lip closure (and lower-lip tuck) steps
POUT_LEVELS = 4  # lip protrusion steps
SMILE_STEP = 0.5  # smile quantum, pixels of corner lift
REST = np.array([0, 1, 0, 0, 0, 0], np.float32)  # the portrait's own mouth (`visemes.FIELDS`, smile)
MAX_MOUTHS = 400  # mouth patches kept per portrait (about 0.1 MB each at 512×512)
BLINK_LEVELS = 4  # eyelid steps above open
SWAY_LEVELS = 8  # sway angle steps each side of upright
EYE_LOOKS = 256  # eyelid and brow patches kept per portrait
TURNED_BYTES = 32 << 20  # turned portraits (and their maps) kept per scene
PARTS_MARGIN = 0.08  # room kept around the patched parts for the head's turn, × the face height


@dataclass(frozen=True)
class Scene:
    """Everything about one portrait that `frames` needs; plain data, picklable."""

    image: np.ndarray
    seed: int  # from the avatar digest: blink times and sway phases
    layout: Layout
    mouth: MouthRig
    eyes: tuple[EyeRig, ...]
    head: HeadRig | None
    upper: BrowRig | None = None  # eyes and brows (None without eyes)


def build_scene(avatar: Avatar, *, no_face_ok: bool) -> Scene:
    image = np.ascontiguousarray(avatar.image)
    layout = find_layout(image, avatar.source, no_face_ok=no_face_ok)
    mouth = mouth_rig(image, layout)
    eyes = tuple(eye_rig(image, eye) for eye in layout.eyes)
    upper = brow_rig(image, eyes) if eyes else None
    parts = (mouth.region, *(eye.region for eye in eyes), *((upper.region,) if upper else ()))
    return Scene(
        image=image,
        seed=int.from_bytes(hashlib.sha256(avatar.digest.encode()).digest()[:8], "little"),
        layout=layout,
        mouth=mouth,
        eyes=eyes,
        head=head_rig(image, layout.face, parts) if layout.face is not None else None,
        upper=upper,
    )


Patch = tuple[Region, np.ndarray]  # pixels that differ from the still portrait, and where
T = TypeVar("T")


def changed(region: Region, patch: np.ndarray, image: np.ndarray) -> Patch:
    """`patch` (rendered over `region` of `image`) cropped to the pixels where it differs."""
    h, w = patch.shape[:2]
    diff = cv2.absdiff(patch, image[region.slices]).reshape(h, w * 3)
    x0, y0, dx, dy = cv2.boundingRect(diff)  # of the non-zero bytes
    if not dx:
        return Region(region.x0, region.y0, region.x0, region.y0), patch[:0, :0]
    x0, x1, y1 = x0 // 3, (x0 + dx + 2) // 3, y0 + dy
    crop = Region(region.x0 + x0, region.y0 + y0, region.x0 + x1, region.y0 + y1)
    return crop, np.ascontiguousarray(patch[y0:y1, x0:x1])


class _Kept(OrderedDict):
    """A least-recently-used store of at most `size` items, safe for concurrent renders."""

    def __init__(self, size: int):
        super().__init__()
        self.size, self.lock = size, threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], T]) -> T:
        """The item kept under `key`, else `make()`'s, kept."""
        with self.lock:
            item = super().get(key)
            if item is not None:
                self.move_to_end(key)
                return item
        item = make()
        with self.lock:
            self[key] = item
            while len(self) > self.size:
                self.popitem(last=False)
        return item


class Looks:
    """Everything rendered for one scene, kept across utterances: mouth patches (the most recently
    used `MAX_MOUTHS`), eyelid and brow patches, and the portrait with its head turned (each
    turn up to `TURNED_BYTES` in all). Patches are cropped to the pixels they change."""

    def __init__(self, scene: Scene):
        self.scene = scene
        self.renderer = MouthRenderer(scene.image, scene.mouth)
        self.mouths = _Kept(MAX_MOUTHS)
        self.eyes = _Kept(EYE_LOOKS)
        # The parts patches cover (mouth, eyes, brows), with room for the head's turn around them.
        regions = (scene.mouth.region, *(eye.region for eye in scene.eyes))
        regions += (scene.upper.region,) if scene.upper is not None else ()
        self.parts = Region(
            min(r.x0 for r in regions),
            min(r.y0 for r in regions),
            max(r.x1 for r in regions),
            max(r.y1 for r in regions),
        ).grown(
            round(PARTS_MARGIN * scene.layout.frame.h),
            Region(0, 0, scene.image.shape[1], scene.image.shape[0]),
        )
        area = (self.parts.x1 - self.parts.x0) * (self.parts.y1 - self.parts.y0)
        turns = max(8, TURNED_BYTES // max(1, scene.image.nbytes + 6 * area))  # portrait and maps
        self.turned = _Kept(turns)

    def mouth(self, key: tuple[int, ...], scale: np.ndarray, max_drop: float) -> Patch:
        """The mouth posed as `key` says: quantised (`visemes.FIELDS`, smile) levels."""

        def make() -> Patch:
            drop, width, close, tuck, pout, smile = (np.array(key) / scale + REST).tolist()
            patch = self.renderer.render(drop * max_drop, width, close, tuck, pout, smile)
            return changed(self.scene.mouth.region, patch, self.scene.image)

        return self.mouths.get_or_make((*key, max_drop), make)

    def upper(self, closure: int, brow: int) -> list[Patch]:
        """The eyes closed `closure` steps and the brows raised `brow` pixels."""
        scene, image = self.scene, self.scene.image

        def make() -> list[Patch]:
            lid = closure / BLINK_LEVELS
            if brow and scene.upper is not None:
                patch = render_upper(image, scene.upper, scene.eyes, lid, brow)
                return [changed(scene.upper.region, patch, image)]
            return [changed(eye.region, render_eye(image, eye, lid), image) for eye in scene.eyes]

        return self.eyes.get_or_make((closure, brow), make)


def frames(
    scene: Scene,
    audio: Audio,
    fps: int,
    n: int,
    cfg: AnimatorSettings,
    face: FaceParams | None = None,
    looks: Looks | None = None,
) -> Iterator[np.ndarray]:
    """Yield `n` fresh RGB frames of `scene` speaking `audio`, the face moving as `face` says
    (None: as the animator settings say, without nods or brow raises). `looks`: what earlier
    utterances rendered for this scene."""
    rng = np.random.default_rng([scene.seed, n])
    poses = mouth_track(audio, fps, n, cfg)
    moves = expression(audio, fps, n, face, cfg, scene.layout.frame.h, rng)
    poses = np.column_stack([poses, moves.smile])
    scale = np.array(
        [MOUTH_LEVELS, 1 / WIDTH_STEP, CLOSE_LEVELS, CLOSE_LEVELS, POUT_LEVELS, 1 / SMILE_STEP], np.float32
    )
    mouth_levels = np.round((poses - REST) * scale).astype(np.int64)
    blink_levels = np.round(moves.blink * BLINK_LEVELS).astype(np.int64) if scene.eyes else np.zeros(n, int)
    brow_levels = np.round(moves.brow).astype(np.int64) if scene.upper else np.zeros(n, int)
    swaying = scene.head is not None and cfg.sway_degrees > 0
    sway_levels = np.round(moves.sway * SWAY_LEVELS).astype(np.int64) if swaying else np.zeros(n, int)
    nod_levels = np.round(moves.nod).astype(np.int64) if swaying else np.zeros(n, int)
    max_drop = cfg.mouth_open_max * scene.layout.frame.h

    image = scene.image
    looks = looks if looks is not None else Looks(scene)
    head = _Sway(looks, np.radians(cfg.sway_degrees) / SWAY_LEVELS) if swaying else None
    for i in range(n):
        patches: list[Patch] = []
        key = tuple(mouth_levels[i].tolist())
        if any(key):
            patches.append(looks.mouth(key, scale, max_drop))
        closure, brow = int(blink_levels[i]), int(brow_levels[i])
        if closure or brow:
            patches += looks.upper(closure, brow)
        angle, nod = int(sway_levels[i]), int(nod_levels[i])
        if (angle or nod) and head is not None:
            yield head.frame(angle, nod, patches)
        else:
            frame = image.copy()
            for region, patch in patches:
                frame[region.slices] = patch
            yield frame


class _Sway:
    """Frames with the head turned by a quantised angle and lowered by a nod. The still portrait
    so turned is warped once per scene and kept in `Looks`, with the warp's maps over the parts
    that patches cover; per frame only the rectangles around pasted patches (grown by the warp's
    largest displacement) are warped again."""

    def __init__(self, looks: Looks, radians_per_level: float):
        self.looks, self.step = looks, radians_per_level
        self.image, self.rig = looks.scene.image, looks.scene.head
        rig = self.rig
        self.canvas = self.image[rig.region.slices].copy()  # the head region with the frame's patches
        h, w = rig.mask.shape
        self.ys = np.arange(h, dtype=np.float32)[:, None]
        self.xs = np.arange(w, dtype=np.float32)[None, :]
        self.offset_x = rig.mask * (self.ys - rig.pivot_y)  # source offset per radian of turn
        self.offset_y = rig.mask * (rig.pivot_x - self.xs)
        self.parts = looks.parts.grown(0, rig.region)

    def _maps(self, angle: int, nod: int, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """Source coordinates (head-region pixels) of the turned head over `rows`, `cols`."""
        k = np.float32(self.step * angle)  # small-angle rotation about the pivot
        mask = self.rig.mask[rows, cols]
        map_x = self.xs[:, cols] + k * self.offset_x[rows, cols]
        map_y = self.ys[rows] + k * self.offset_y[rows, cols] - np.float32(nod) * mask
        return map_x, map_y

    def _turned(self, angle: int, nod: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """The portrait with the head turned, and the turn's fixed-point maps over `parts`."""

        def make() -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
            still = self.image.copy()
            maps = self._maps(angle, nod, slice(None), slice(None))
            still[self.rig.region.slices] = self._warp(self.image[self.rig.region.slices], maps)
            rows, cols = self.parts.within(self.rig.region)
            return still, cv2.convertMaps(maps[0][rows, cols], maps[1][rows, cols], cv2.CV_16SC2)

        return self.looks.turned.get_or_make((angle, nod, self.step), make)

    def frame(self, angle: int, nod: int, patches: list[Patch]) -> np.ndarray:
        """The frame with the head turned by `angle` steps and lowered by `nod` pixels."""
        rig = self.rig
        still, (map1, map2) = self._turned(angle, nod)
        frame = still.copy()
        patches = [(region, patch) for region, patch in patches if patch.size]
        for region, patch in patches:
            self.canvas[region.within(rig.region)] = patch
        margin = int(np.ceil(abs(self.step * angle) * rig.reach)) + abs(nod) + 2
        for region, _ in patches:
            out = region.grown(margin, rig.region)
            if out.grown(0, self.parts) == out:  # inside the kept maps
                inner = out.within(self.parts)
                maps = map1[inner], map2[inner]
            else:
                maps = self._maps(angle, nod, *out.within(rig.region))
            frame[out.slices] = self._warp(self.canvas, maps)
        for region, _ in patches:
            self.canvas[region.within(rig.region)] = self.image[region.slices]
        return frame

    @staticmethod
    def _warp(source: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return cv2.remap(source, *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
