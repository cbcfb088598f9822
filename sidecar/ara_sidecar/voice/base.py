"""The voice stage interface: speech in, shaped or converted speech out."""

from __future__ import annotations

from abc import abstractmethod

from ara_persona import VoiceParams
from ara_sidecar.audio import Audio
from ara_sidecar.stage import Stage


class VoiceStage(Stage):
    @abstractmethod
    def convert(self, audio: Audio, params: VoiceParams) -> Audio:
        """Apply the mode's voice parameters (and any voice model) to `audio`."""

    def mode_inputs(self, params: VoiceParams) -> dict | None:
        """What, beyond fingerprint() and `params`, shapes the conversion for these params (RVC: the
        digest of the model and index the mode selects); part of the speech cache key. None = nothing."""
        return None
