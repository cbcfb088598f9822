"""Voice stage backends."""

from ara_sidecar.registry import Registry
from ara_sidecar.voice.base import VoiceStage

REGISTRY: Registry[VoiceStage] = Registry("voice")
REGISTRY.add(
    "dsp",
    "ara_sidecar.voice.dsp:DspVoice",
    packages=("scipy",),
    summary="embedded DSP: pitch (semitones), speed and warmth (spectral tilt)",
)
REGISTRY.add(
    "rvc",
    "ara_sidecar.voice.rvc:RvcVoice",
    packages=("torch", "transformers", "praat-parselmouth", "pyworld", "faiss-cpu"),
    summary="RVC voice conversion with a community voice model (models/rvc/NAME.pth, optional NAME.index)",
)
REGISTRY.add("none", "ara_sidecar.voice.passthrough:Passthrough", summary="leave the speech as it is")

__all__ = ["REGISTRY", "VoiceStage"]
