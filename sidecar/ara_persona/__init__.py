"""Ara's persona layer: personas on disk, their modes, the mode selector and prompt assembly.

Pure Python (standard library, PyYAML and numpy) so that the text-generation-webui extension
can import it without torch or OpenCV.
"""

from ara_persona.dataset import load_dataset
from ara_persona.loader import PersonaError, discover, load_persona
from ara_persona.model import (
    MODE_NAMES,
    Example,
    FaceParams,
    Mode,
    Persona,
    PromptSettings,
    SelectorSettings,
    VoiceParams,
    parse_time,
)
from ara_persona.prompt import build_prompt, inject, strip_prompt
from ara_persona.selector import Selection, select_mode

__all__ = [
    "MODE_NAMES",
    "Example",
    "FaceParams",
    "Mode",
    "Persona",
    "PersonaError",
    "PromptSettings",
    "Selection",
    "SelectorSettings",
    "VoiceParams",
    "build_prompt",
    "discover",
    "inject",
    "load_dataset",
    "load_persona",
    "parse_time",
    "select_mode",
    "strip_prompt",
]
