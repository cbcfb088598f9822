"""The lip-sync stage interface: a still portrait plus speech in, video frames out."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np

from ara_persona import FaceParams
from ara_sidecar.audio import Audio
from ara_sidecar.avatar import Avatar
from ara_sidecar.stage import Stage


def frame_count(duration_s: float, fps: int) -> int:
    """Frames needed to cover `duration_s`; the encoder pads the audio to match exactly."""
    return max(1, math.ceil(duration_s * fps - 1e-6))


class LipSync(Stage):
    """`prepare()` runs once per avatar (its result depends only on the image, so it can be
    cached by `avatar.digest`); `animate()` runs per utterance."""

    @abstractmethod
    def prepare(self, avatar: Avatar, *, no_face_ok: bool = False) -> Any:
        """Analyse the portrait (face, mouth, eyes…). Raises NoFaceError naming the
        avatar when no face is found, unless `no_face_ok` (then animate a centred mouth)."""

    @abstractmethod
    def animate(
        self, prepared: Any, audio: Audio, fps: int, face: FaceParams | None = None
    ) -> Iterator[np.ndarray]:
        """Yield exactly `frame_count(audio.duration_s, fps)` RGB uint8 frames, each the
        avatar's size, frame i showing the speech at time i / fps. `face` is the mode's face
        motion (a backend that moves only the mouth ignores it)."""
