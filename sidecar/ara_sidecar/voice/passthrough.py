"""The `none` voice stage: speech passes through unchanged."""

from ara_persona import VoiceParams
from ara_sidecar.audio import Audio
from ara_sidecar.registry import Readiness
from ara_sidecar.voice.base import VoiceStage


class Passthrough(VoiceStage):
    name = "none"

    @classmethod
    def readiness(cls, settings) -> Readiness:
        return Readiness(True, "speech is left unchanged")

    def convert(self, audio: Audio, params: VoiceParams) -> Audio:
        return audio
