"""The voice stage interface: speech in, shaped/converted speech out."""

from __future__ import annotations

from abc import ABC, abstractmethod

from ara_persona import VoiceParams
from ara_sidecar.audio import Audio
from ara_sidecar.config import Settings
from ara_sidecar.registry import Readiness


class VoiceStage(ABC):
    name: str

    def __init__(self, settings: Settings, device: str):
        self.settings = settings
        self.device = device

    @classmethod
    @abstractmethod
    def readiness(cls, settings: Settings) -> Readiness: ...

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load models; called once before the first `convert`."""

    @abstractmethod
    def convert(self, audio: Audio, params: VoiceParams) -> Audio:
        """Apply the mode's voice parameters (and any voice model) to `audio`."""

    def fingerprint(self) -> dict:
        return {"backend": self.name}
