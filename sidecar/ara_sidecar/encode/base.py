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
    def open(
        self, out_path: Path, fps: int, *, streamable: bool = False, speech_rate: int | None = None
    ) -> VideoWriter:
        """A writer for `out_path`; the frame size is taken from the first frame. `streamable`
        files can be appended to a browser's Media Source buffer one after another;
        `speech_rate`, the sample rate of the audio to come, may set the file's."""

    @abstractmethod
    def join(self, parts: list[Path], audio: Audio, out_path: Path) -> None:
        """Write `out_path`: the video of `parts` played in order (not re-encoded), with `audio`,
        the whole sound track, encoded in one piece so the seams are silent and click-free."""

    @abstractmethod
    def mime_type(self, path: Path) -> str:
        """The file's MIME type with its codecs, as a browser's Media Source needs it."""

    def fingerprint(self) -> dict:
        return {"backend": self.name}
