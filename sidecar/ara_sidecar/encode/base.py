"""The encoder stage interface: a writer that takes frames and audio as they are made."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType

import numpy as np

from ara_sidecar.audio import Audio
from ara_sidecar.config import Settings


class VideoWriter(ABC):
    """Receives RGB frames and the matching audio, in order, chunk by chunk.

    Use as a context manager: a clean exit finalises the file; an exception deletes it.
    """

    @abstractmethod
    def write_frame(self, frame: np.ndarray) -> None: ...

    @abstractmethod
    def write_audio(self, audio: Audio) -> None:
        """Append audio; over the whole file it should cover the frames written."""

    @abstractmethod
    def close(self) -> None:
        """Finish the file (audio padded to the video's duration)."""

    @abstractmethod
    def abort(self) -> None:
        """Stop and delete the partial file."""

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


class Encoder(ABC):
    name: str
    suffix: str  # output file extension, e.g. ".mp4"

    def __init__(self, settings: Settings):
        self.settings = settings

    @abstractmethod
    def open(self, out_path: Path, fps: int) -> VideoWriter:
        """A writer for `out_path`; the frame size is taken from the first frame."""

    def fingerprint(self) -> dict:
        return {"backend": self.name}
