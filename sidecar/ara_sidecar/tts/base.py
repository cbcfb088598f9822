"""The TTS stage interface: text in, mono audio out."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ara_sidecar.audio import Audio
from ara_sidecar.config import Settings
from ara_sidecar.registry import Readiness


class TTS(ABC):
    """Lifecycle: construct cheaply from settings, `load()` once (idempotent), then
    `synthesize()` many times."""

    name: str

    def __init__(self, settings: Settings, device: str):
        self.settings = settings
        self.device = device

    @classmethod
    @abstractmethod
    def readiness(cls, settings: Settings) -> Readiness:
        """Cheap check (no model load) whether this backend can run."""

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load models; called once before the first `synthesize`."""

    @abstractmethod
    def synthesize(self, text: str) -> Audio:
        """Speak `text` (already validated, non-empty) as mono float32 audio."""

    def fingerprint(self) -> dict:
        """What identifies this backend's output (name, voice, settings, weight digest)."""
        return {"backend": self.name}
