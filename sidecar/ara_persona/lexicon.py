"""Word lists of the selector, read from YAML: `selector/lexicon.yaml` (concepts and shapes) and
`selector/crisis.yaml` (crisis patterns). Both are matched against folded text
(`ara_persona.features.fold`), as whole words. Errors name the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from ara_persona.model import PersonaError, file_version

LEXICON_FILE = "lexicon.yaml"
END = r"(?=\s*(?:[.!?,;…]|$))"  # `<end>` in a crisis pattern: the end of a sentence or message


def _entry(word: str) -> str:
    """A lexicon entry as a regular expression: * = any ending, a space = one space."""
    parts = [re.escape(p) + (r"\w*" if p.endswith("*") else "") for p in word.strip().split()]
    return " ".join(p.replace(r"\*\w*", r"\w*") for p in parts)


def _read(path: Path) -> tuple[yaml.Node, dict]:
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise PersonaError(f"{path}: cannot read file as UTF-8 text ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise PersonaError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise PersonaError(f"{path}:1: expected a mapping")
    return node, data


def _lines(node: yaml.Node, key: str) -> list[int]:
    """The line of each item of the list under the top-level `key` (or of each list under it)."""
    for k, v in node.value:
        if k.value == key:
            if isinstance(v, yaml.SequenceNode):
                return [i.start_mark.line + 1 for i in v.value]
            return [i.start_mark.line + 1 for _, seq in v.value for i in getattr(seq, "value", [])]
    return []


def _strings(data: dict, key: str, path: Path, line: int) -> dict[str, list[str]]:
    groups = data.get(key)
    if not isinstance(groups, dict) or not groups:
        raise PersonaError(f"{path}:{line}: field '{key}': expected a mapping of names to lists of strings")
    for name, items in groups.items():
        if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
            raise PersonaError(f"{path}: field '{key}.{name}': expected a list of non-empty strings")
    return groups


@dataclass(frozen=True)
class Lexicon:
    """Concept name → one regular expression over folded text."""

    concepts: dict[str, re.Pattern]
    digest: str

    def hits(self, folded: str) -> dict[str, str]:
        """Concept → the first entry of it found in `folded` (tokens joined by spaces)."""
        found: dict[str, str] = {}
        for name, rx in self.concepts.items():
            match = rx.search(folded)
            if match:
                found[name] = match.group()
        return found


@lru_cache(maxsize=16)
def _lexicon(path: str, stamp: tuple[int, int]) -> Lexicon:
    file = Path(path)
    _node, data = _read(file)
    concepts = _concepts(_strings(data, "concepts", file, 1))
    shapes = data.get("shapes", {})
    if not isinstance(shapes, dict):
        raise PersonaError(f"{file}: field 'shapes': expected a mapping of names to regular expressions")
    for name, pattern in shapes.items():
        try:
            concepts[f"shape_{name}"] = re.compile(str(pattern))
        except re.error as exc:
            raise PersonaError(
                f"{file}: field 'shapes.{name}': expected a regular expression ({exc})"
            ) from None
    return Lexicon(concepts, hashlib.sha256(file.read_bytes()).hexdigest())


def load_lexicon(path: Path) -> Lexicon:
    """The lexicon in `path`, loaded once per file version."""
    return _lexicon(*file_version(path, "the lexicon"))


def _concepts(groups: dict[str, list[str]]) -> dict[str, re.Pattern]:
    """Concept name → one whole-word regular expression over its entries."""
    out = {}
    for name, words in groups.items():
        alternatives = sorted({_entry(w.casefold()) for w in words}, key=len, reverse=True)
        out[name] = re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)")
    return out


@dataclass(frozen=True)
class CrisisPatterns:
    """The crisis patterns of `crisis.yaml` (one regular expression), its typo targets, and its
    concept combinations (each a tuple of concept names that must all be found)."""

    rx: re.Pattern
    fuzzy: frozenset[str]
    digest: str
    concepts: dict[str, re.Pattern]
    combinations: tuple[tuple[str, ...], ...]

    def combination(self, folded: str) -> tuple[str, ...] | None:
        """The words of the first combination whose concepts are all in `folded`, else None."""
        found: dict[str, str] = {}
        for combo in self.combinations:
            words = []
            for name in combo:
                if name not in found:
                    match = self.concepts[name].search(folded)
                    found[name] = match.group() if match else ""
                if not found[name]:
                    break
                words.append(found[name])
            else:
                return tuple(words)
        return None


@lru_cache(maxsize=16)
def _crisis(path: str, stamp: tuple[int, int]) -> CrisisPatterns:
    file = Path(path)
    node, data = _read(file)
    groups = _strings(data, "patterns", file, 1)
    lines = _lines(node, "patterns")
    alternatives, i = [], 0
    for lang, patterns in groups.items():
        for pattern in patterns:
            line = lines[i] if i < len(lines) else 1
            i += 1
            expanded = pattern.replace("<end>", END)
            try:
                re.compile(expanded)
            except re.error as exc:
                raise PersonaError(
                    f"{file}:{line}: field 'patterns.{lang}': expected a regular expression ({exc})"
                ) from None
            alternatives.append(f"(?:{expanded})")
    fuzzy = data.get("fuzzy", [])
    if not isinstance(fuzzy, list) or not all(isinstance(w, str) for w in fuzzy):
        raise PersonaError(f"{file}: field 'fuzzy': expected a list of words")
    rx = re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)")
    concepts = _concepts(_strings(data, "concepts", file, 1)) if "concepts" in data else {}
    combos = data.get("combinations", [])
    if not isinstance(combos, list) or not all(isinstance(c, list) and c for c in combos):
        raise PersonaError(f"{file}: field 'combinations': expected a list of lists of concept names")
    for combo in combos:
        unknown = [name for name in combo if name not in concepts]
        if unknown:
            raise PersonaError(f"{file}: field 'combinations': unknown concept {unknown[0]!r}")
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    fuzzy_words = frozenset(w.casefold() for w in fuzzy)
    return CrisisPatterns(rx, fuzzy_words, digest, concepts, tuple(tuple(c) for c in combos))


def load_crisis(path: Path) -> CrisisPatterns:
    """The crisis patterns in `path`, loaded once per file version."""
    return _crisis(*file_version(path, "the crisis patterns"))
