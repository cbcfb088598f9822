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

    def request_cost_s(self) -> float:
        """Seconds each `synthesize` call costs besides the speech itself (starting a process,
        loading a model, a round trip), as measured; the planner sends fewer, longer chunks to a
        backend whose cost is high. 0 = negligible (an embedded model kept loaded)."""
        return 0.0

    @property
    def language(self) -> str | None:
        """The language it speaks, as a code such as `de` (None or `auto`: guessed from the
        text); the lip-sync's aligner phonemizes the text in it when the backend gives no timing."""
        return None
