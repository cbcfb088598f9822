"""The face Wav2Lip works on: detection (behind one small interface), the padded crop, and
the feathered lower-face mask its output is blended through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ara_sidecar.lipsync.animator.face import Box

if TYPE_CHECKING:
    from ara_sidecar.config import Settings

IMG_SIZE = 96  # the model's face resolution
# The generated face's rows from this one on are blended in (`blend_mask` is zero where the
# crop's resize would read above it), so the model need not compute the rows above.
FIRST_BLENDED_ROW = IMG_SIZE // 2 - 4


class FaceDetector(Protocol):
    def detect(self, image: np.ndarray, source: str, *, no_face_ok: bool) -> Box:
        """The face box in RGB `image`; NoFaceError (naming `source`) when there is none,
        unless `no_face_ok` (then a centred stand-in box)."""


class HaarDetector:
    """OpenCV's shipped frontal-face Haar cascade (the embedded animator's detector)."""

    def detect(self, image: np.ndarray, source: str, *, no_face_ok: bool) -> Box:
        from ara_sidecar.lipsync.animator.face import find_layout

        return find_layout(image, source, no_face_ok=no_face_ok).frame


def stand_in_box(image: np.ndarray) -> Box:
    """The centred pseudo face that stands in when no face is found (`no_face_ok`): the same box
    the Haar path returns, so both detectors animate the same region."""
    from ara_sidecar.lipsync.animator.face import centred_layout

    h, w = image.shape[:2]
    return centred_layout(w, h).frame


def _haar(settings: Settings, device: str) -> FaceDetector:
    return HaarDetector()


def _s3fd(settings: Settings, device: str) -> FaceDetector:
    from ara_sidecar.lipsync.wav2lip.s3fd import S3fdDetector  # imports torch: only when selected

    return S3fdDetector.from_settings(settings, device)


# wav2lip.detector → a factory given the settings and the backend's device
DETECTORS: dict[str, Callable[[Settings, str], FaceDetector]] = {"haar": _haar, "s3fd": _s3fd}


@dataclass(frozen=True)
class Crop:
    """The padded face region, image pixels: rows y1:y2, columns x1:x2."""

    y1: int
    y2: int
    x1: int
    x2: int

    @property
    def size(self) -> tuple[int, int]:
        return self.x2 - self.x1, self.y2 - self.y1


def padded_crop(box: Box, pads: tuple[int, int, int, int], shape: tuple[int, ...]) -> Crop:
    """The reference crop: the box grown by (top, bottom, left, right) pixels, inside the image."""
    top, bottom, left, right = pads
    h, w = shape[:2]
    y1, y2 = max(0, box.y - top), min(h, box.y + box.h + bottom)
    return Crop(y1, y2, max(0, box.x - left), min(w, box.x + box.w + right))


def model_input(crop: np.ndarray) -> np.ndarray:
    """(1, 6, 96, 96) float32: the BGR face with its lower half zeroed, then the whole face, /255."""
    import cv2

    face = cv2.resize(crop[..., ::-1], (IMG_SIZE, IMG_SIZE)).astype(np.float32) / 255.0
    masked = face.copy()
    masked[IMG_SIZE // 2 :] = 0.0
    return np.concatenate([masked, face], axis=2).transpose(2, 0, 1)[None].copy()


def blend_mask(width: int, height: int) -> np.ndarray:
    """(height, width, 1) float32 weights of the generated face: an ellipse over the lower face
    with edges feathered to exactly zero at the crop's border and above its middle, so no seam
    shows, and zero wherever the resized face would draw on its rows above FIRST_BLENDED_ROW."""
    import cv2

    margin = max(2, round(0.06 * min(width, height)))  # the feather's width
    mask = np.zeros((height, width), np.float32)
    centre = (round(width / 2), round(0.75 * height))
    axes = (max(1, round(width / 2) - margin), max(1, round(height / 4) - margin))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, thickness=-1)
    kernel = 2 * margin + 1
    mask = cv2.GaussianBlur(mask, (kernel, kernel), margin / 2.5)
    mask[mask < 1e-3] = 0.0
    # Only tiny crops reach this: rows whose linear resize reads rows above FIRST_BLENDED_ROW.
    source_row = np.floor((np.arange(height) + 0.5) * IMG_SIZE / height - 0.5)
    mask[source_row < FIRST_BLENDED_ROW] = 0.0
    return mask[..., None]
