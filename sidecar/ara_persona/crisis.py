"""Crisis detection: the selector's first check, built for recall.

Two independent detectors; either one fires:

1. The patterns of `selector/crisis.yaml` (six languages), then its concept combinations
   ("no point" + "living", "without me" + "better", "pills" + "took" + "a whole box"…), then
   its mentions of the subject ("suicide", "overdose") unless a topic word makes the message
   one about a class, a book or the news (quotes that are someone else's words left out:
   `ara_persona.reported`), over
   the folded message and over a copy in which words one typo away from a `fuzzy` word are
   corrected ("sucide" → suicide, "wnat" → want) — only words that are not common words of
   the training corpus, so that "will" never becomes "kill".
2. The crisis head of the learned model (`ara_persona.classifier`): catches phrasings that no
   pattern names, at a threshold set by cross-validation on the training split.

A message is scanned up to `SCAN_CHARS` characters (its beginning and end beyond that).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache

from ara_persona.features import clip, fold, unaccented
from ara_persona.lexicon import CrisisPatterns
from ara_persona.reported import CLOSE, MARKED, OPEN, inside

SCAN_CHARS = 2000
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_UNMARK = str.maketrans("", "", OPEN + CLOSE)
_DROPPED = "'’‘`´ʼ\"“”„«»‹›\x00"  # what folding takes out of a word: apostrophes, quotation marks


@dataclass(frozen=True)
class CrisisHit:
    """Why a message counts as a crisis: the phrase found (as the user typed it), and by which detector."""

    phrase: str
    source: str  # "pattern", "combination", "mention" or "model"


def _near(word: str, target: str) -> bool:
    """Within one edit (insertion, deletion, substitution or swap of neighbours)."""
    if word == target or abs(len(word) - len(target)) > 1:
        return word == target
    if len(word) == len(target):
        diff = [i for i, (a, b) in enumerate(zip(word, target, strict=False)) if a != b]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and word[diff[0]] == target[diff[1]]
            and word[diff[1]] == target[diff[0]]
        )
    short, long_ = (word, target) if len(word) < len(target) else (target, word)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


@lru_cache(maxsize=8)
def _deletions(targets: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """Each target and each target less one letter → the targets it comes from (SymSpell's index)."""
    index: dict[str, list[str]] = {}
    for target in sorted(t for t in targets if len(t) >= 4):
        for variant in {target, *(target[:i] + target[i + 1 :] for i in range(len(target)))}:
            index.setdefault(variant, []).append(target)
    return {k: tuple(v) for k, v in index.items()}


def corrected(folded: str, targets: frozenset[str], known: Collection[str]) -> str:
    """`folded` with each unknown word one edit away from a target replaced by that target."""
    index = _deletions(targets)

    def fix(match: re.Match) -> str:
        word = match.group()
        if len(word) < 3 or word in known or word in targets:
            return word
        if any(word.startswith(t) for t in targets):  # an inflection ("overdosed"), not a typo
            return word
        variants = (word, *(word[:i] + word[i + 1 :] for i in range(len(word))))
        for variant in variants:
            for target in index.get(variant, ()):
                if _near(word, target):
                    return target
        return word

    return _WORD.sub(fix, folded)


def find_pattern(patterns: CrisisPatterns, text: str, known: Collection[str] = ()) -> CrisisHit | None:
    """The first crisis pattern found in `text`, typos allowed; None if none is."""
    text = typed = clip(text, SCAN_CHARS)
    if patterns.reported is not None:  # someone else's quoted words are not the writer's
        text = patterns.reported.mark(text)
    folded = _SPACE.sub(" ", fold(text)).strip()
    texts = [folded]
    fixed = corrected(folded, patterns.fuzzy, known)
    if fixed != folded:
        texts.append(fixed)
    for candidate in texts:
        match = _own_match(patterns, candidate)
        if match:
            return CrisisHit(as_written(typed, match.group().translate(_UNMARK).strip()), "pattern")
    texts = [MARKED.sub(lambda m: " " * len(m.group()), t) if OPEN in t else t for t in texts]
    for candidate in texts:
        words = patterns.combination(candidate)
        if words:
            return CrisisHit(" + ".join(as_written(typed, w) for w in words), "combination")
    for candidate in texts:
        word = patterns.mention(candidate)
        if word:
            return CrisisHit(as_written(typed, word), "mention")
    return None


def as_written(text: str, phrase: str) -> str:
    """The part of `text` that folds to `phrase` (a folded phrase found in it), as the user typed
    it ("Não sei se …", not "nao sei se …"); `phrase` itself where none does (a corrected typo)."""
    shadow = "".join((unaccented(ch) or "\x00")[0] for ch in text)  # one character per character
    gap = f"[{re.escape(_DROPPED)}]*"
    parts = []
    for char, run in itertools.groupby(phrase):
        n = len(list(run))
        if char.isspace():
            parts.append(rf"[\s{re.escape(_DROPPED)}]+")
        else:  # folding cut three or more repeats to two
            parts.append(re.escape(char) + ("{2,}" if n >= 2 else ""))
    match = re.search(gap.join(parts), shadow)
    return text[match.start() : match.end()] if match else phrase


def _own_match(patterns: CrisisPatterns, folded: str) -> re.Match | None:
    """The leftmost pattern match that is not wholly inside a marked quote (someone else's)."""
    spans = [m.span() for m in MARKED.finditer(folded)] if OPEN in folded else []
    match = patterns.search(folded)
    while match is not None and spans and inside(spans, match):
        match = patterns.search(folded, match.start() + 1)
    return match
