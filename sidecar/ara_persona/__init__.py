"""Ara's persona layer: personas on disk, their modes and voice parameters.

Pure Python (PyYAML only) so that the text-generation-webui extension can import it
without torch or OpenCV.
"""

from ara_persona.loader import PersonaError, discover, load_persona
from ara_persona.model import MODE_NAMES, Mode, Persona, VoiceParams

__all__ = ["MODE_NAMES", "Mode", "Persona", "PersonaError", "VoiceParams", "discover", "load_persona"]
