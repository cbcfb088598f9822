"""The TTS stage interface: text in, mono audio out."""

from __future__ import annotations

from abc import abstractmethod

from ara_persona import Mode, VoiceParams
from ara_sidecar.audio import Audio
from ara_sidecar.stage import Stage


class TTS(Stage):
    @abstractmethod
    def synthesize(self, text: str, mode: Mode | None = None) -> Audio:
        """Speak `text` (already validated, non-empty) as mono float32 audio. A backend that can
        shape the voice itself takes what it can from `mode` (None: its own neutral voice)."""

    def mode_inputs(self, mode: Mode | None) -> dict | None:
        """What `synthesize` takes from `mode` (part of the speech cache key); None = nothing."""
        return None

    def voice_stage_params(self, params: VoiceParams) -> VoiceParams | None:
        """What the voice stage still has to apply of a mode's `params` after this backend
        applied its share; None skips the voice stage (the backend converted the voice)."""
        return params
