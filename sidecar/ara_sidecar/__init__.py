"""Ara sidecar: text → speech → voice → lip-synced talking-avatar MP4."""

__version__ = "0.1.0"
