"""The encoder stage interface: frames plus audio in, a playable file out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ara_sidecar.audio import Audio
from ara_sidecar.config import Settings


class Encoder(ABC):
    name: str
    suffix: str  # output file extension, e.g. ".mp4"

    def __init__(self, settings: Settings):
        self.settings = settings

    @abstractmethod
    def encode(
        self,
        frames: Iterable[np.ndarray],
        n_frames: int,
        audio: Audio,
        fps: int,
        out_path: Path,
        on_frame: Callable[[int], None] | None = None,
    ) -> None:
        """Write `n_frames` RGB frames and `audio` (padded or trimmed to the same duration)
        to `out_path`, calling `on_frame(i)` after each frame is encoded."""

    def fingerprint(self) -> dict:
        return {"backend": self.name}
