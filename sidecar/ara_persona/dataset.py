"""dataset.jsonl: example exchanges, one JSON object per line, for few-shot prompts and fine-tuning.

Schema of a line (blank lines are skipped):

    {"id": "lab-03",                      unique, letters/digits/._-
     "mode": "lab",                       one of the six mode names
     "context": {"time": "22:10",         local time of the exchange, HH:MM (required)
                 "previous_mode": "cockpit",  mode before this turn (optional)
                 "situation": "…"},       what is going on, in a sentence (optional)
     "user": "…",                         the user's message
     "reply": "…"}                        Ara's reply

Errors name the file, the line number and the field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ara_persona.model import MODE_NAMES, Example, PersonaError, parse_time
from ara_persona.prompt import MARKER_TAG

DATASET_FILE = "dataset.jsonl"

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_KEYS = ("id", "mode", "context", "user", "reply")
_CONTEXT_KEYS = ("time", "previous_mode", "situation")
_MODES = f"one of {', '.join(MODE_NAMES)}"


def _text(value: Any, fail, field: str, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise fail(field, "a non-empty string" if required else "a string")
    if MARKER_TAG in value:
        raise fail(field, f"text without the reserved prompt marker {MARKER_TAG!r}")
    return value.strip()


def _example(obj: Any, fail, seen: dict[str, int], number: int) -> Example:
    if not isinstance(obj, dict):
        raise fail("(line)", f"a JSON object with {', '.join(_KEYS)}")
    for key in obj:
        if key not in _KEYS:
            raise fail(key, f"one of the keys {', '.join(_KEYS)} (unknown key {key!r})")
    for key in _KEYS:
        if key not in obj:
            raise fail(key, "a value (missing)")
    ident = obj["id"]
    if not isinstance(ident, str) or not _ID.fullmatch(ident):
        raise fail("id", "a string of letters, digits, '.', '_' or '-'")
    if ident in seen:
        raise fail("id", f"a unique id ({ident!r} is already used on line {seen[ident]})")
    seen[ident] = number
    if obj["mode"] not in MODE_NAMES:
        raise fail("mode", f"{_MODES}, got {obj['mode']!r}")
    context = obj["context"]
    if not isinstance(context, dict):
        raise fail("context", "a JSON object with time (HH:MM) and optional previous_mode, situation")
    for key in context:
        if key not in _CONTEXT_KEYS:
            raise fail(f"context.{key}", f"one of the keys {', '.join(_CONTEXT_KEYS)} (unknown key {key!r})")
    if "time" not in context:
        raise fail("context.time", "a time as HH:MM (missing)")
    try:
        when = parse_time(context["time"])
    except ValueError:
        raise fail("context.time", f"a time as HH:MM (00:00–23:59), got {context['time']!r}") from None
    previous = context.get("previous_mode")
    if previous is not None and previous not in MODE_NAMES:
        raise fail("context.previous_mode", f"{_MODES}, got {previous!r}")
    return Example(
        id=ident,
        mode=obj["mode"],
        time=when,
        user=_text(obj["user"], fail, "user"),
        reply=_text(obj["reply"], fail, "reply"),
        situation=_text(context.get("situation", ""), fail, "context.situation", required=False),
        previous_mode=previous,
    )


def load_dataset(path: Path) -> tuple[Example, ...]:
    """Parse and validate a dataset.jsonl file."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PersonaError(f"{path}: cannot read file as UTF-8 text ({exc})") from None
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue

        def fail(field: str, expected: str, number: int = number) -> PersonaError:
            return PersonaError.at(path, number, field, expected)

        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PersonaError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        examples.append(_example(obj, fail, seen, number))
    return tuple(examples)
