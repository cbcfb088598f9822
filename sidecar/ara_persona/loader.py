"""Find personas on disk and load them with schema validation.

A persona is a folder holding `modes.yaml`. Every problem is reported with the file,
the line, the field and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ara_persona.model import MODE_NAMES, Mode, Persona, VoiceParams

MODES_FILE = "modes.yaml"

# (min, max) for each voice parameter, in its unit.
VOICE_RANGES = {
    "pitch_semitones": (-12.0, 12.0),
    "speed": (0.5, 2.0),
    "warmth_db": (-6.0, 12.0),
}


class PersonaError(ValueError):
    """A persona is missing or one of its files is malformed."""


class _Doc:
    """A parsed YAML document that remembers the line of every node."""

    def __init__(self, path: Path):
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PersonaError(f"{path}: cannot read file ({exc.strerror})") from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise PersonaError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        self.lines: dict[tuple, int] = {}
        self._scalars = yaml.SafeLoader("")
        self.data = self._convert(node, ()) if node is not None else None

    def _convert(self, node: yaml.Node, key: tuple) -> Any:
        self.lines[key] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out = {}
            for k_node, v_node in node.value:
                k = k_node.value
                out[k] = self._convert(v_node, (*key, k))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(v, (*key, i)) for i, v in enumerate(node.value)]
        return self._scalars.construct_object(node, deep=True)

    def error(self, key: tuple, expected: str) -> PersonaError:
        line = self.lines.get(key) or self.lines.get(key[:-1]) or 1
        field = ".".join(str(k) for k in key) or "(top level)"
        return PersonaError(f"{self.path}:{line}: field '{field}': expected {expected}")


def _get(doc: _Doc, node: dict, key: tuple, kind: type | tuple[type, ...], expected: str, default: Any = ...):
    value = node.get(key[-1], default)
    if value is ...:
        raise doc.error(key, f"{expected} (missing)")
    if value is default and default is not ...:
        return value
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise doc.error(key, expected)
    if not isinstance(value, kind):
        raise doc.error(key, expected)
    return value


def _strings(doc: _Doc, node: dict, key: tuple) -> tuple[str, ...]:
    items = _get(doc, node, key, list, "a list of strings", default=[])
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise doc.error((*key, i), "a non-empty string")
    return tuple(items)


def _voice(doc: _Doc, node: dict, key: tuple) -> VoiceParams:
    voice = _get(doc, node, key, dict, "a mapping of voice parameters")
    unknown = set(voice) - set(VOICE_RANGES)
    if unknown:
        raise doc.error((*key, sorted(unknown)[0]), f"one of {', '.join(VOICE_RANGES)}")
    values = {}
    for name, (lo, hi) in VOICE_RANGES.items():
        value = _get(doc, voice, (*key, name), (int, float), f"a number from {lo:g} to {hi:g}")
        if not lo <= value <= hi:
            raise doc.error((*key, name), f"a number from {lo:g} to {hi:g}, got {value}")
        values[name] = float(value)
    return VoiceParams(**values)


def _mode(doc: _Doc, name: str, node: Any) -> Mode:
    key = ("modes", name)
    if not isinstance(node, dict):
        raise doc.error(key, "a mapping with intensity_pct, voice, guidance, …")
    intensity = _get(doc, node, (*key, "intensity_pct"), int, "an integer percentage from 0 to 100")
    if not 0 <= intensity <= 100:
        raise doc.error((*key, "intensity_pct"), f"an integer percentage from 0 to 100, got {intensity}")
    return Mode(
        name=name,
        intensity_pct=intensity,
        voice=_voice(doc, node, (*key, "voice")),
        description=_get(doc, node, (*key, "description"), str, "a string", default=""),
        triggers=_strings(doc, node, (*key, "triggers")),
        scenarios=_strings(doc, node, (*key, "scenarios")),
        guidance=_get(doc, node, (*key, "guidance"), str, "a string of guidance text", default="").strip(),
    )


def load_persona(directory: Path) -> Persona:
    """Load and validate the persona in `directory`."""
    directory = Path(directory)
    path = directory / MODES_FILE
    if not path.is_file():
        raise PersonaError(f"{directory}: not a persona (no {MODES_FILE})")
    doc = _Doc(path)
    if not isinstance(doc.data, dict):
        raise doc.error((), "a mapping with display_name, default_mode and modes")
    data = doc.data
    display = _get(doc, data, ("display_name",), str, "a string", default=directory.name)
    modes_node = _get(doc, data, ("modes",), dict, f"a mapping of the six modes ({', '.join(MODE_NAMES)})")
    for name in modes_node:
        if name not in MODE_NAMES:
            raise doc.error(("modes", name), f"a mode name, one of {', '.join(MODE_NAMES)}")
    missing = [m for m in MODE_NAMES if m not in modes_node]
    if missing:
        raise doc.error(("modes",), f"all six modes; missing {', '.join(missing)}")
    modes = {name: _mode(doc, name, modes_node[name]) for name in MODE_NAMES}
    default = _get(doc, data, ("default_mode",), str, f"one of {', '.join(MODE_NAMES)}")
    if default not in modes:
        raise doc.error(("default_mode",), f"one of {', '.join(MODE_NAMES)}, got {default!r}")
    return Persona(name=directory.name, display_name=display, directory=directory, default_mode=default, modes=modes)


def discover(*roots: Path | None) -> dict[str, Path]:
    """Persona name → folder, over `roots` in order; a later root wins on a name clash."""
    found: dict[str, Path] = {}
    for root in roots:
        if root is None or not Path(root).is_dir():
            continue
        for child in sorted(Path(root).iterdir()):
            if (child / MODES_FILE).is_file():
                found[child.name] = child
    return found
