"""Acknowledgements: messages that only acknowledge or ask to go on ("ok", "thanks!", "and then?").

`selector/acknowledgements.yaml` lists the phrases per language; a message made only of them,
one or more in a row (punctuation and emoji aside), keeps the previous mode (selector rule 4)
whatever the model makes of it. Entries and messages are folded and split into words alike
(`ara_persona.features`), so "D'accord !" matches the entry "d'accord". Errors name the file,
the line and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ara_persona.features import clip, fold, is_word, tokens
from ara_persona.model import file_version
from ara_persona.yamldoc import YamlDoc

ACKNOWLEDGEMENTS_FILE = "acknowledgements.yaml"
MAX_WORDS = 12  # longer messages are never only an acknowledgement


def _words(text: str) -> tuple[str, ...]:
    return tuple(t for t in tokens(fold(clip(text))) if is_word(t))


@dataclass(frozen=True)
class Acknowledgements:
    """The phrases, each as a tuple of folded words."""

    phrases: frozenset[tuple[str, ...]] = frozenset()
    longest: int = 0  # words in the longest phrase

    def match(self, text: str) -> str | None:
        """The message's words if they are only acknowledgement phrases, else None."""
        words = _words(text)
        if not words or len(words) > MAX_WORDS or not self.phrases:
            return None
        reached = [True] + [False] * len(words)  # reached[i]: words[:i] is a run of phrases
        for i in range(len(words)):
            if reached[i]:
                for n in range(1, min(self.longest, len(words) - i) + 1):
                    if words[i : i + n] in self.phrases:
                        reached[i + n] = True
        return " ".join(words) if reached[-1] else None


NONE = Acknowledgements()


@lru_cache(maxsize=16)
def _load(path: str, stamp: tuple[int, int]) -> Acknowledgements:
    doc = YamlDoc(Path(path))
    phrases = set()
    for lang, items in doc.string_lists("phrases", "languages").items():
        for n, item in enumerate(items):
            words = _words(item)
            if not words:
                raise doc.error(("phrases", lang, n), "a phrase with a word in it")
            phrases.add(words)
    return Acknowledgements(frozenset(phrases), max(len(p) for p in phrases))


def load_acknowledgements(path: Path) -> Acknowledgements:
    """The acknowledgements in `path`, loaded once per file version."""
    return _load(*file_version(path, "the acknowledgements"))
