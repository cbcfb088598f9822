"""Lip-sync backends."""

from __future__ import annotations

from ara_sidecar.config import Settings
from ara_sidecar.errors import BackendUnavailable
from ara_sidecar.lipsync.base import LipSync, frame_count
from ara_sidecar.registry import Registry

REGISTRY: Registry[LipSync] = Registry("lipsync")
REGISTRY.add(
    "animator",
    "ara_sidecar.lipsync.animator:Animator",
    packages=("opencv-python-headless",),
    summary="embedded CPU animator for a still portrait",
)
REGISTRY.add(
    "wav2lip",
    "ara_sidecar.lipsync.wav2lip:Wav2Lip",
    packages=("torch", "opencv-python-headless"),
    summary="Wav2Lip (official checkpoint under models/wav2lip/), GPU or CPU",
)


def resolve(name: str, settings: Settings) -> str:
    """`auto` → Wav2Lip when its checkpoint (and torch) is there, else the embedded animator."""
    if name != "auto":
        return name
    from ara_sidecar.lipsync.wav2lip.checkpoint import find_checkpoint

    if find_checkpoint(settings) is None:  # decided without importing torch (seconds of start-up)
        return "animator"
    try:
        ready = REGISTRY.load("wav2lip").readiness(settings).ready
    except BackendUnavailable:
        ready = False
    return "wav2lip" if ready else "animator"


__all__ = ["REGISTRY", "LipSync", "frame_count", "resolve"]
