"""Find personas on disk and load them with schema validation.

A persona is a folder holding `modes.yaml` (required), and optionally `manifesto.md` and
`dataset.jsonl`; each file present is validated. Every problem is reported with the file,
the line, the field and what was expected. The schema is documented in personas/README.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ara_persona.dataset import DATASET_FILE, load_dataset
from ara_persona.model import (
    MODE_NAMES,
    FaceParams,
    Mode,
    Persona,
    PersonaError,
    PromptSettings,
    SelectorSettings,
    VoiceParams,
    parse_time,
)
from ara_persona.prompt import MARKER_TAG
from ara_persona.yamldoc import YamlDoc as _Doc

MODES_FILE = "modes.yaml"
MANIFESTO_FILE = "manifesto.md"

# (min, max) for each voice parameter, in its unit: required in every mode's voice …
VOICE_RANGES = {
    "pitch_semitones": (-12.0, 12.0),
    "speed": (0.5, 2.0),
    "warmth_db": (-6.0, 12.0),
}
# … optional in a mode's voice (absent: the VoiceParams default) …
OPTIONAL_VOICE_RANGES = {
    "pitch_range": (0.25, 3.0),
    "pause_s": (0.0, 3.0),
    "noise_scale": (0.0, 2.0),
    "noise_w_scale": (0.0, 2.0),
}
# … and the persona's base voice (`voice:` at the top), copied into every mode.
BASE_VOICE_RANGES = {
    "target_f0_hz": (50.0, 500.0),
    "formant_ratio": (0.7, 1.5),
}
# (min, max) for each optional key of a mode's face (absent: the FaceParams default).
FACE_RANGES = {
    "head_motion": (0.0, 3.0),
    "motion_speed": (0.25, 3.0),
    "blink_rate_per_min": (0.0, 60.0),
    "brow": (0.0, 3.0),
    "smile": (-0.5, 1.5),
}
TOP_KEYS = ("display_name", "default_mode", "rvc_model", "voice", "safety", "modes", "selector", "prompt")
MODE_KEYS = (
    "intensity_pct",
    "description",
    "voice",
    "triggers",
    "scenarios",
    "guidance",
    "alltalk_voice",
    "face",
)
# An AllTalk voice name: what AllTalk's API accepts as character_voice_gen.
_ALLTALK_VOICE = re.compile(r'[^<>"|?*\n]+')

__all__ = ["MANIFESTO_FILE", "MODES_FILE", "PersonaError", "discover", "load_persona"]


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


def _number(doc: _Doc, node: dict, key: tuple, kind: type, lo: float, hi: float, default: Any = ...):
    what = "an integer" if kind is int else "a number"
    expected = f"{what} from {lo:g} to {hi:g}"
    value = _get(doc, node, key, (int,) if kind is int else (int, float), expected, default)
    if value is default and default is not ...:
        return value
    if not lo <= value <= hi:
        raise doc.error(key, f"{expected}, got {value}")
    return value


def _known_keys(doc: _Doc, node: dict, key: tuple, allowed: tuple[str, ...]) -> None:
    for name in node:
        if name not in allowed:
            raise doc.error((*key, name), f"one of the keys {', '.join(allowed)} (unknown key {name!r})")


def _text(doc: _Doc, node: dict, key: tuple, expected: str, default: Any = ...) -> str:
    value = _get(doc, node, key, str, expected, default)
    if MARKER_TAG in value:
        raise doc.error(key, f"text without the reserved prompt marker {MARKER_TAG!r}")
    return value.strip()


def _strings(doc: _Doc, node: dict, key: tuple) -> tuple[str, ...]:
    items = _get(doc, node, key, list, "a list of strings", default=[])
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise doc.error((*key, i), "a non-empty string")
    return tuple(item.strip() for item in items)


def _rvc_model(doc: _Doc, node: dict, key: tuple, default: str | None) -> str | None:
    """An RVC model name or path; resolving it is the sidecar's job (it depends on models_dir)."""
    expected = "an RVC voice model as a non-empty string: NAME (models/rvc/NAME.pth) or a .pth path"
    value = _get(doc, node, key, str, expected, default=default)
    if value is default:
        return value
    if not value.strip():
        raise doc.error(key, expected)
    return value.strip()


def _numbers(doc: _Doc, node: dict, key: tuple, ranges: dict, required: bool) -> dict[str, float]:
    """The numbers of `ranges` present in `node` (all of them when `required`), as floats."""
    values = {}
    for name, (lo, hi) in ranges.items():
        value = _number(doc, node, (*key, name), float, lo, hi, ... if required else None)
        if value is not None:
            values[name] = float(value)
    return values


def _base_voice(doc: _Doc, data: dict) -> dict:
    """The persona's base voice (`voice:`), as VoiceParams fields; {} when absent."""
    key = ("voice",)
    node = _get(doc, data, key, dict, "a mapping of base voice settings", default={})
    _known_keys(doc, node, key, ("piper_voice", *BASE_VOICE_RANGES))
    values: dict = _numbers(doc, node, key, BASE_VOICE_RANGES, required=False)
    expected = "a Piper voice name (models/piper/NAME.onnx)"
    piper_voice = _get(doc, node, (*key, "piper_voice"), str, expected, None)
    if piper_voice is not None:
        if not piper_voice.strip():
            raise doc.error((*key, "piper_voice"), expected)
        values["piper_voice"] = piper_voice.strip()
    return values


def _voice(doc: _Doc, node: dict, key: tuple, base: dict) -> VoiceParams:
    """A mode's voice; `base` holds the persona's base voice and RVC model."""
    voice = _get(doc, node, key, dict, "a mapping of voice parameters")
    _known_keys(doc, voice, key, (*VOICE_RANGES, *OPTIONAL_VOICE_RANGES, "rvc_model"))
    values = {
        **base,
        **_numbers(doc, voice, key, VOICE_RANGES, required=True),
        **_numbers(doc, voice, key, OPTIONAL_VOICE_RANGES, required=False),
    }
    values["rvc_model"] = _rvc_model(doc, voice, (*key, "rvc_model"), base.get("rvc_model"))
    return VoiceParams(**values)


def _face(doc: _Doc, node: dict, key: tuple) -> FaceParams:
    """A mode's face motion (`face:`, optional, every key optional)."""
    face = _get(doc, node, key, dict, "a mapping of face motion settings", default={})
    _known_keys(doc, face, key, tuple(FACE_RANGES))
    return FaceParams(**_numbers(doc, face, key, FACE_RANGES, required=False))


def _alltalk_voice(doc: _Doc, node: dict, key: tuple) -> str | None:
    expected = 'the name of a voice of the AllTalk server, e.g. "female_01.wav" (no <>"|?*)'
    value = _get(doc, node, key, str, expected, default=None)
    if value is not None and not _ALLTALK_VOICE.fullmatch(value.strip()):
        raise doc.error(key, f"{expected}, got {value!r}")
    return value.strip() if value is not None else None


def _mode(doc: _Doc, name: str, node: Any, base: dict) -> Mode:
    """The mode `name`; `base` is the persona's base voice and RVC model (see `_voice`)."""
    key = ("modes", name)
    if not isinstance(node, dict):
        raise doc.error(key, "a mapping with intensity_pct, voice, guidance, …")
    _known_keys(doc, node, key, MODE_KEYS)
    guidance = _text(doc, node, (*key, "guidance"), "a non-empty string of guidance text")
    if not guidance:
        raise doc.error((*key, "guidance"), "a non-empty string of guidance text")
    return Mode(
        name=name,
        intensity_pct=_number(doc, node, (*key, "intensity_pct"), int, 0, 100),
        voice=_voice(doc, node, (*key, "voice"), base),
        description=_text(doc, node, (*key, "description"), "a string", default=""),
        triggers=_strings(doc, node, (*key, "triggers")),
        scenarios=_strings(doc, node, (*key, "scenarios")),
        guidance=guidance,
        alltalk_voice=_alltalk_voice(doc, node, (*key, "alltalk_voice")),
        face=_face(doc, node, (*key, "face")),
    )


def _clock(doc: _Doc, node: dict, key: tuple, default):
    value = node.get(key[-1], default)
    if value is default:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 23:00 as the base-60 integer 1380.
        raise doc.error(key, 'a time as "HH:MM" in quotes (unquoted, YAML reads it as a number)')
    try:
        return parse_time(value)
    except ValueError:
        raise doc.error(key, f'a time as "HH:MM" (00:00–23:59), got {value!r}') from None


def _selector(doc: _Doc, data: dict) -> SelectorSettings:
    key = ("selector",)
    node = _get(doc, data, key, dict, "a mapping of selector settings", default={})
    d = SelectorSettings()
    _known_keys(doc, node, key, tuple(d.__dataclass_fields__))
    start = _clock(doc, node, (*key, "late_night_start"), d.late_night_start)
    end = _clock(doc, node, (*key, "late_night_end"), d.late_night_end)
    if start == end:
        raise doc.error((*key, "late_night_end"), "a time different from late_night_start")
    return SelectorSettings(
        late_night_start=start,
        late_night_end=end,
        min_confidence=float(_number(doc, node, (*key, "min_confidence"), float, 0, 1, d.min_confidence)),
        switch_margin=float(_number(doc, node, (*key, "switch_margin"), float, 0, 1, d.switch_margin)),
        follow_up_words=_number(doc, node, (*key, "follow_up_words"), int, 0, 100, d.follow_up_words),
        follow_up_confidence=float(
            _number(doc, node, (*key, "follow_up_confidence"), float, 0, 1, d.follow_up_confidence)
        ),
    )


def _prompt(doc: _Doc, data: dict) -> PromptSettings:
    key = ("prompt",)
    node = _get(doc, data, key, dict, "a mapping of prompt settings", default={})
    d = PromptSettings()
    _known_keys(doc, node, key, tuple(d.__dataclass_fields__))
    return PromptSettings(
        max_chars=_number(doc, node, (*key, "max_chars"), int, 500, 200_000, d.max_chars),
        examples=_number(doc, node, (*key, "examples"), int, 0, 50, d.examples),
    )


def _manifesto(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PersonaError(f"{path}: cannot read file as UTF-8 text ({exc})") from None
    if not text.strip():
        raise PersonaError(f"{path}: expected the persona's manifesto text, found an empty file")
    for number, line in enumerate(text.splitlines(), 1):
        if MARKER_TAG in line:
            raise PersonaError(
                f"{path}:{number}: expected text without the reserved prompt marker {MARKER_TAG!r}"
            )
    return text.strip()


def load_persona(directory: Path) -> Persona:
    """Load and validate the persona in `directory` (modes.yaml, manifesto.md, dataset.jsonl)."""
    directory = Path(directory)
    path = directory / MODES_FILE
    if not path.is_file():
        raise PersonaError(f"{directory}: not a persona (no {MODES_FILE})")
    doc = _Doc(path)
    if not isinstance(doc.data, dict):
        raise doc.error((), "a mapping with display_name, default_mode and modes")
    data = doc.data
    _known_keys(doc, data, (), TOP_KEYS)
    display = _get(doc, data, ("display_name",), str, "a string", default=directory.name)
    modes_node = _get(doc, data, ("modes",), dict, f"a mapping of the six modes ({', '.join(MODE_NAMES)})")
    for name in modes_node:
        if name not in MODE_NAMES:
            raise doc.error(("modes", name), f"a mode name, one of {', '.join(MODE_NAMES)}")
    missing = [m for m in MODE_NAMES if m not in modes_node]
    if missing:
        raise doc.error(("modes",), f"all six modes; missing {', '.join(missing)}")
    base = {**_base_voice(doc, data), "rvc_model": _rvc_model(doc, data, ("rvc_model",), None)}
    modes = {name: _mode(doc, name, modes_node[name], base) for name in MODE_NAMES}
    default = _get(doc, data, ("default_mode",), str, f"one of {', '.join(MODE_NAMES)}")
    if default not in modes:
        raise doc.error(("default_mode",), f"one of {', '.join(MODE_NAMES)}, got {default!r}")
    manifesto_path, dataset_path = directory / MANIFESTO_FILE, directory / DATASET_FILE
    return Persona(
        name=directory.name,
        display_name=display,
        directory=directory,
        default_mode=default,
        modes=modes,
        manifesto=_manifesto(manifesto_path) if manifesto_path.exists() else "",
        examples=load_dataset(dataset_path) if dataset_path.exists() else (),
        selector=_selector(doc, data),
        prompt=_prompt(doc, data),
        safety=_get(doc, data, ("safety",), str, "a text", default="").strip(),
    )


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
