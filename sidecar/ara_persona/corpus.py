"""The selector's labelled corpus: `selector/train/*.jsonl` and `selector/heldout/*.jsonl`.

One JSON object per line (lines starting with `#` and blank lines are skipped):

    {"text": "…",            the user's message
     "mode": "lab",          the mode it should get (crisis messages: comfort)
     "time": "14:20",        local time, HH:MM
     "lang": "de",           en, de, es, fr, pt, it, …
     "previous": null,       the mode of the previous turn, or null
     "kind": "mode"}         mode | crisis (must reach comfort) | hard_negative (must not)

The split is by file: `train/` is fitted on and may be read to write patterns and lexicons;
`heldout/` is for evaluation only (never read it while writing rules, never fit on it). Ara's
first corpus was split by `heldout_text` (sha256 of the text, first 8 hex digits as an
integer, modulo 3 == 0); after that held-out part had been evaluated it joined the training
data (`train/*_v1heldout.jsonl`); so did the second held-out set after its evaluation
(`train/heldout_v2.jsonl`) and the third (`train/heldout_v3.jsonl`); `heldout/v4.jsonl` was
written last, by writers who had seen neither the rules nor the training data. Errors name the file, the line
and the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import time
from pathlib import Path

from ara_persona.model import MODE_NAMES, PersonaError, parse_time

SPLITS = ("train", "heldout")
KINDS = ("mode", "crisis", "hard_negative")
_KEYS = ("text", "mode", "time", "lang", "previous", "kind")


@dataclass(frozen=True)
class Sample:
    text: str
    mode: str
    time: time
    lang: str
    previous: str | None = None
    kind: str = "mode"
    where: str = ""  # file:line

    @property
    def crisis(self) -> bool:
        return self.kind == "crisis"


def heldout_text(text: str) -> bool:
    """Whether `text` belongs to the held-out split (the documented rule)."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 3 == 0


def _sample(obj: object, where: str) -> Sample:
    def fail(field: str, expected: str) -> PersonaError:
        return PersonaError(f"{where}: field '{field}': expected {expected}")

    if not isinstance(obj, dict):
        raise fail("(line)", f"a JSON object with {', '.join(_KEYS)}")
    for key in obj:
        if key not in _KEYS:
            raise fail(key, f"one of the keys {', '.join(_KEYS)} (unknown key {key!r})")
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise fail("text", "a non-empty string")
    mode = obj.get("mode")
    if mode not in MODE_NAMES:
        raise fail("mode", f"one of {', '.join(MODE_NAMES)}")
    previous = obj.get("previous")
    if previous is not None and previous not in MODE_NAMES:
        raise fail("previous", f"null or one of {', '.join(MODE_NAMES)}")
    kind = obj.get("kind", "mode")
    if kind not in KINDS:
        raise fail("kind", f"one of {', '.join(KINDS)}")
    if kind == "crisis" and mode != "comfort":
        raise fail("mode", "comfort for a crisis message")
    lang = obj.get("lang")
    if not isinstance(lang, str) or not 2 <= len(lang) <= 3:
        raise fail("lang", "a language code such as en")
    try:
        clock = parse_time(obj.get("time"))
    except ValueError as exc:
        raise fail("time", str(exc).removeprefix("expected ")) from None
    return Sample(text.strip(), mode, clock, lang, previous, kind, where)


def load_file(path: Path) -> list[Sample]:
    """The samples of one JSONL file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PersonaError(f"{path}: cannot read file as UTF-8 text ({exc})") from None
    samples = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PersonaError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        samples.append(_sample(obj, f"{path}:{number}"))
    return samples


def load_split(selector_dir: Path, split: str) -> list[Sample]:
    """Every sample of `split` ("train" or "heldout") under `selector_dir`, in file order."""
    if split not in SPLITS:
        raise PersonaError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    folder = Path(selector_dir) / split
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not files:
        raise PersonaError(f"{folder}: no {split} data (*.jsonl)")
    return [s for path in files for s in load_file(path)]
