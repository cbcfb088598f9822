"""Encoders."""

from ara_sidecar.encode.base import Encoder
from ara_sidecar.registry import Registry

REGISTRY: Registry[Encoder] = Registry("encoder")
REGISTRY.add("mp4", "ara_sidecar.encode.mp4:Mp4Encoder", packages=("av",), summary="H.264 + AAC MP4 (PyAV)")

__all__ = ["REGISTRY", "Encoder"]
