"""The embedded CPU animator: lip-sync, blinks and a slight head sway on a still portrait.

`prepare` finds the face once (OpenCV Haar cascades) and precomputes small rigs for the
mouth, eyes and head (`scene.Scene`); `animate` turns the speech into per-frame controls and
composites them (`scene.frames`). OpenCV is imported only when a portrait is prepared."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ara_persona import FaceParams
from ara_sidecar.audio import Audio
from ara_sidecar.avatar import Avatar
from ara_sidecar.config import Settings
from ara_sidecar.lipsync.base import LipSync, frame_count
from ara_sidecar.registry import Readiness

if TYPE_CHECKING:
    from ara_sidecar.lipsync.animator.scene import Looks, Scene


class Animator(LipSync):
    name = "animator"
    _looks: Looks | None = None

    @classmethod
    def readiness(cls, settings: Settings) -> Readiness:
        try:
            import cv2
        except ModuleNotFoundError:
            return Readiness(False, "package opencv-python-headless is not installed")
        return Readiness(True, f"OpenCV {cv2.__version__} Haar cascades, CPU")

    def prepare(self, avatar: Avatar, *, no_face_ok: bool = False) -> Scene:
        from ara_sidecar.lipsync.animator.scene import build_scene

        return build_scene(avatar, no_face_ok=no_face_ok)

    def animate(
        self, prepared: Scene, audio: Audio, fps: int, face: FaceParams | None = None
    ) -> Iterator[np.ndarray]:
        from ara_sidecar.lipsync.animator.scene import Looks, frames

        n = frame_count(audio.duration_s, fps)
        if self._looks is None or self._looks.scene is not prepared:  # the last portrait's are kept
            self._looks = Looks(prepared)
        return frames(prepared, audio, fps, n, self.settings.animator, face, self._looks)

    def fingerprint(self) -> dict:
        # "visemes": the renderer's version (2: smile, pout, teeth on f/v, visemes from the sound)
        return {"backend": self.name, **self.settings.animator.model_dump(), "visemes": 2}
