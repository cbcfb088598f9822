"""Lip-sync backends."""

from ara_sidecar.lipsync.base import LipSync, frame_count
from ara_sidecar.registry import Registry

REGISTRY: Registry[LipSync] = Registry("lipsync")
REGISTRY.add(
    "animator",
    "ara_sidecar.lipsync.animator:Animator",
    packages=("opencv-python-headless",),
    summary="embedded CPU animator for a still portrait",
)


def resolve(name: str) -> str:
    """`auto` → the best backend that is ready (the embedded animator for now)."""
    return "animator" if name == "auto" else name


__all__ = ["REGISTRY", "LipSync", "frame_count", "resolve"]
