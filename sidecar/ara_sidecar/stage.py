"""What every model-backed pipeline stage (TTS, voice, lip-sync) has in common."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ara_sidecar.config import Settings
from ara_sidecar.registry import Readiness


class Stage(ABC):
    """Lifecycle: construct cheaply from the settings, `load()` the models once (idempotent),
    then use the stage's own method many times. `uses_device` marks backends that run on
    the configured GPU, so the pipeline probes the device only when one needs it."""

    name: str
    uses_device: bool = False

    def __init__(self, settings: Settings, device: str):
        self.settings = settings
        self.device = device

    @classmethod
    @abstractmethod
    def readiness(cls, settings: Settings) -> Readiness:
        """Cheap check (no model load) whether this backend can run, and why not."""

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load models; called once before first use."""

    def fingerprint(self) -> dict:
        """What identifies this backend's output (name, settings, weight digests): part of cache keys."""
        return {"backend": self.name}
