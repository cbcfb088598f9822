"""One portrait's prepared scene, and the frame loop that plays per-frame controls on it.

Controls are quantised; each distinct mouth, eyelid and head-turn state is rendered once per
utterance on its small region and reused, so a frame costs one copy of a cached (possibly
turned) portrait, a paste per changed region and, when the head is turned, a warp of just the
pasted rectangles."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

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
MAX_MOUTHS = 400  # mouth patches kept per portrait (about 0.1 MB each at 512×512)
BLINK_LEVELS = 4  # eyelid steps above open
SWAY_LEVELS = 8  # sway angle steps each side of upright


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


class Mouths:
    """The mouth patches of one scene, rendered on first use and kept (the most recently used
    `MAX_MOUTHS`), so that later utterances on the same portrait reuse them."""

    def __init__(self, scene: Scene):
        self.scene = scene
        self.renderer = MouthRenderer(scene.image, scene.mouth)
        self.patches: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def get(self, key: tuple[int, ...], scale: np.ndarray, max_drop: float) -> np.ndarray:
        full = (*key, max_drop)
        patch = self.patches.get(full)
        if patch is None:
            drop, width, close, tuck = (np.array(key) / scale + [0, 1, 0, 0]).tolist()
            patch = self.patches[full] = self.renderer.render(drop * max_drop, width, close, tuck)
            while len(self.patches) > MAX_MOUTHS:
                self.patches.popitem(last=False)
        else:
            self.patches.move_to_end(full)
        return patch


def frames(
    scene: Scene,
    audio: Audio,
    fps: int,
    n: int,
    cfg: AnimatorSettings,
    face: FaceParams | None = None,
    mouths: Mouths | None = None,
) -> Iterator[np.ndarray]:
    """Yield `n` fresh RGB frames of `scene` speaking `audio`, the face moving as `face` says
    (None: as the animator settings say, without nods or brow raises). `mouths`: the scene's
    mouth patches kept from earlier utterances."""
    rng = np.random.default_rng([scene.seed, n])
    poses = mouth_track(audio, fps, n, cfg)
    scale = np.array([MOUTH_LEVELS, 1 / WIDTH_STEP, CLOSE_LEVELS, CLOSE_LEVELS], np.float32)
    mouth_levels = np.round((poses - [0, 1, 0, 0]) * scale).astype(np.int64)
    moves = expression(audio, fps, n, face, cfg, scene.layout.frame.h, rng)
    blink_levels = np.round(moves.blink * BLINK_LEVELS).astype(np.int64) if scene.eyes else np.zeros(n, int)
    brow_levels = np.round(moves.brow).astype(np.int64) if scene.upper else np.zeros(n, int)
    swaying = scene.head is not None and cfg.sway_degrees > 0
    sway_levels = np.round(moves.sway * SWAY_LEVELS).astype(np.int64) if swaying else np.zeros(n, int)
    nod_levels = np.round(moves.nod).astype(np.int64) if swaying else np.zeros(n, int)
    max_drop = cfg.mouth_open_max * scene.layout.frame.h

    image = scene.image
    lids: dict[int, list[np.ndarray]] = {}
    uppers: dict[tuple[int, int], np.ndarray] = {}
    mouths = mouths if mouths is not None else Mouths(scene)
    head = _Sway(image, scene.head, np.radians(cfg.sway_degrees) / SWAY_LEVELS) if swaying else None
    for i in range(n):
        patches: list[tuple[Region, np.ndarray]] = []
        key = tuple(mouth_levels[i].tolist())
        if any(key):
            patches.append((scene.mouth.region, mouths.get(key, scale, max_drop)))
        closure, brow = int(blink_levels[i]), int(brow_levels[i])
        if brow and scene.upper is not None:
            if (closure, brow) not in uppers:
                lid = closure / BLINK_LEVELS
                uppers[closure, brow] = render_upper(image, scene.upper, scene.eyes, lid, brow)
            patches.append((scene.upper.region, uppers[closure, brow]))
        elif closure:
            if closure not in lids:
                lids[closure] = [render_eye(image, eye, closure / BLINK_LEVELS) for eye in scene.eyes]
            patches += zip((eye.region for eye in scene.eyes), lids[closure], strict=True)
        angle, nod = int(sway_levels[i]), int(nod_levels[i])
        if (angle or nod) and head is not None:
            yield head.frame(angle, nod, patches)
        else:
            frame = image.copy()
            for region, patch in patches:
                frame[region.slices] = patch
            yield frame


class _Sway:
    """Frames with the head turned by a quantised angle. The still portrait turned by each
    angle is warped once; per frame only the rectangles around pasted patches (grown by the
    warp's largest displacement) are warped again."""

    def __init__(self, image: np.ndarray, rig: HeadRig, radians_per_level: float):
        self.image, self.rig, self.step = image, rig, radians_per_level
        self.canvas = image[rig.region.slices].copy()  # the head region with the frame's patches
        self.turned: dict[tuple[int, int], tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]] = {}
        h, w = rig.mask.shape
        self.ys = np.arange(h, dtype=np.float32)[:, None]
        self.xs = np.arange(w, dtype=np.float32)[None, :]
        self.offset_x = rig.mask * (self.ys - rig.pivot_y)  # source offset per radian of turn
        self.offset_y = rig.mask * (rig.pivot_x - self.xs)

    def frame(self, angle: int, nod: int, patches: list[tuple[Region, np.ndarray]]) -> np.ndarray:
        """The frame with the head turned by `angle` steps and lowered by `nod` pixels."""
        rig = self.rig
        if (angle, nod) not in self.turned:
            k = np.float32(self.step * angle)  # small-angle rotation about the pivot
            map_y = self.ys + k * self.offset_y - np.float32(nod) * rig.mask
            maps = cv2.convertMaps(self.xs + k * self.offset_x, map_y, cv2.CV_16SC2)
            still = self.image.copy()
            still[rig.region.slices] = self._warp(self.image[rig.region.slices], maps)
            self.turned[angle, nod] = still, maps
        still, (map1, map2) = self.turned[angle, nod]
        frame = still.copy()
        for region, patch in patches:
            self.canvas[region.within(rig.region)] = patch
        margin = int(np.ceil(abs(self.step * angle) * rig.reach)) + abs(nod) + 2
        for region, _ in patches:
            out = region.grown(margin, rig.region)
            inner = out.within(rig.region)
            frame[out.slices] = self._warp(self.canvas, (map1[inner], map2[inner]))
        for region, _ in patches:
            self.canvas[region.within(rig.region)] = self.image[region.slices]
        return frame

    @staticmethod
    def _warp(source: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return cv2.remap(source, *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
