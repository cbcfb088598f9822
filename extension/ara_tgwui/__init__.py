"""Helpers of Ara's text-generation-webui extension (`script.py` next to this package).

Standard library only (plus `ara_persona`, which needs PyYAML and numpy), so that the extension runs in
text-generation-webui's own environment; the rendering happens in the sidecar process.
"""
