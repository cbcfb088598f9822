"""The TTS stage interface: text in, mono audio out."""

from __future__ import annotations

from abc import abstractmethod

from ara_sidecar.audio import Audio
from ara_sidecar.stage import Stage


class TTS(Stage):
    @abstractmethod
    def synthesize(self, text: str) -> Audio:
        """Speak `text` (already validated, non-empty) as mono float32 audio."""
