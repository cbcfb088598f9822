"""Wav2Lip lip-sync: the official generator checkpoints on a still portrait.

`prepare` detects the face once (cached by the avatar's digest in the stage cache);
`animate` turns the speech into one mel window per frame, runs the generator on the
distinct windows only (silence repeats) in batches, and blends the predicted lower face
back into the portrait through a feathered mask. Torch is imported on first use.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ara_persona import FaceParams
from ara_sidecar.audio import Audio
from ara_sidecar.avatar import Avatar
from ara_sidecar.cache import open_cache
from ara_sidecar.config import Settings
from ara_sidecar.digest import file_digest
from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.lipsync.animator.face import Box
from ara_sidecar.lipsync.base import LipSync, frame_count
from ara_sidecar.lipsync.wav2lip.audio import mel_windows
from ara_sidecar.lipsync.wav2lip.checkpoint import find_checkpoint, missing_message
from ara_sidecar.lipsync.wav2lip.face import (
    DETECTORS,
    FIRST_BLENDED_ROW,
    FaceDetector,
    blend_mask,
    model_input,
    padded_crop,
)
from ara_sidecar.registry import Readiness

if TYPE_CHECKING:
    from ara_sidecar.lipsync.wav2lip.engine import Engine

FACES_KEPT = 8


@dataclass(frozen=True)
class Portrait:
    """`prepare`'s result (pickled into the stage cache): the image and its face box."""

    image: np.ndarray
    box: Box
    digest: str


@dataclass(frozen=True)
class _Face:
    """Per-portrait data for pasting: the crop, the rows the mask covers, and the blend."""

    key: str
    crop: tuple[int, int, int, int]  # y1, y2, x1, x2
    top: int  # first crop row the mask touches
    mask: np.ndarray  # (rows, w, 1) weights of the generated face
    base: np.ndarray  # (rows, w, 3) the portrait times (1 − mask)
    model_input: np.ndarray  # (1, 6, 96, 96)


class Wav2Lip(LipSync):
    name = "wav2lip"
    uses_device = True

    def __init__(self, settings: Settings, device: str):
        super().__init__(settings, device)
        self.engine: Engine | None = None
        self.detector: FaceDetector | None = None  # wav2lip.detector's, made on first use
        self._faces: OrderedDict[str, _Face] = OrderedDict()

    @classmethod
    def readiness(cls, settings: Settings) -> Readiness:
        path = find_checkpoint(settings)
        if path is None:
            return Readiness(False, missing_message(settings))
        try:
            import torch
        except ModuleNotFoundError:
            return Readiness(False, "package torch is not installed (pip install torch)")
        detail = f"{path.name}, PyTorch {torch.__version__}"
        if settings.wav2lip.detector == "s3fd":
            from ara_sidecar.lipsync.wav2lip import s3fd

            weights = s3fd.find_weights(settings)
            if weights is None:
                return Readiness(False, s3fd.missing_message(settings))
            detail += f", S3FD {weights.name}"
        return Readiness(True, detail)

    def _checkpoint(self) -> Path:
        path = find_checkpoint(self.settings)
        if path is None:
            raise BackendUnavailable(missing_message(self.settings))
        return path

    def load(self) -> None:
        if self.engine is not None:
            return
        from ara_sidecar.lipsync.wav2lip.checkpoint import load_generator
        from ara_sidecar.lipsync.wav2lip.engine import Engine

        cfg = self.settings.wav2lip
        path = self._checkpoint()
        self.engine = Engine(
            load_generator(path),
            self.device,
            cfg.engine,
            cfg.batch_size,
            onnx=True,
            cache=open_cache(self.settings) if self.settings.cache.enabled else None,
            checkpoint_digest=file_digest(path),
            first_row=FIRST_BLENDED_ROW,
        )

    def fingerprint(self) -> dict:
        cfg = self.settings.wav2lip
        return {
            "backend": self.name,
            "checkpoint": file_digest(self._checkpoint()),
            "detector": cfg.detector,
            "pads": list(cfg.pads),
            "engine": cfg.engine,
            "precision": "fp16" if self.device == "cuda" and cfg.engine == "fast" else "fp32",
        }

    def prepare(self, avatar: Avatar, *, no_face_ok: bool = False) -> Portrait:
        if self.detector is None:
            self.detector = DETECTORS[self.settings.wav2lip.detector](self.settings, self.device)
        box = self.detector.detect(avatar.image, avatar.source, no_face_ok=no_face_ok)
        return Portrait(avatar.image, box, avatar.digest)

    def _face(self, portrait: Portrait) -> _Face:
        pads = self.settings.wav2lip.pads
        key = f"{portrait.digest}:{portrait.box}:{pads}"
        if key not in self._faces:
            c = padded_crop(portrait.box, pads, portrait.image.shape)
            crop = portrait.image[c.y1 : c.y2, c.x1 : c.x2]
            mask = blend_mask(*c.size)
            top = int(np.argmax(mask.reshape(len(mask), -1).max(axis=1) > 0))
            mask = mask[top:]
            base = crop[top:].astype(np.float32) * (1.0 - mask)
            self._faces[key] = _Face(key, (c.y1, c.y2, c.x1, c.x2), top, mask, base, model_input(crop))
            if len(self._faces) > FACES_KEPT:
                self._faces.popitem(last=False)
        self._faces.move_to_end(key)
        return self._faces[key]

    def animate(
        self, prepared: Portrait, audio: Audio, fps: int, face: FaceParams | None = None
    ) -> Iterator[np.ndarray]:
        self.load()
        face = self._face(prepared)
        n = frame_count(audio.duration_s, fps)
        windows = mel_windows(audio, n, fps)
        # Distinct windows in order of first use; frame i shows distinct window ids[i].
        _, first, inverse = np.unique(windows.reshape(n, -1), axis=0, return_index=True, return_inverse=True)
        order = np.argsort(first)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        ids = rank[inverse.reshape(-1)]
        distinct = windows[first[order]]
        faces: list[np.ndarray] = []
        i = 0
        while len(faces) < len(distinct):
            batch = distinct[len(faces) : len(faces) + self.engine.batch]
            faces.extend(self.engine.run(face.key, face.model_input, batch))
            while i < n and ids[i] < len(faces):
                yield self._paste(prepared.image, face, faces[ids[i]])
                i += 1

    @staticmethod
    def _paste(image: np.ndarray, face: _Face, generated: np.ndarray) -> np.ndarray:
        """The portrait with the generated BGR face (96×96, [0, 1]) blended into the crop."""
        import cv2

        y1, y2, x1, x2 = face.crop
        rgb = cv2.resize(generated[..., ::-1] * 255.0, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
        frame = image.copy()
        blended = face.base + rgb[face.top :] * face.mask
        frame[y1 + face.top : y2, x1:x2] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return frame
