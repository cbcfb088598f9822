"""Text normalisation and the features of the mode and crisis models.

One function per step, shared by training (`ara_persona.training`) and selection, so that a
model sees at run time exactly the features it was fitted on:

- `fold`: lower case, compatibility forms, accents removed ("stressée" → "stressee"), English
  contractions joined ("Don't" → "dont", "I'm" → "im"), other apostrophes a space ("j'ai" →
  "j ai"), letters repeated three times or more cut to two ("soooo" → "soo").
- `tokens`: runs of letters and digits, and each other visible character (an emoji, "?", "!").
- `features`: word unigrams (`w:`), word bigrams (`b:`), character 3- to 5-grams inside words
  padded with spaces (`c:`), which carry typos, inflections and six languages; the concepts of
  the persona's lexicon found in the text (`lex:grief`, `lex:tech`…, and crisis.yaml's concepts
  as `lex:cc_blade`…: see `ara_persona.lexicon.model_lexicon`) and each pair of the lexicon's
  crisis concepts found together (`lex:crisis_means+crisis_decided`);
  the message's length (`ctx:short`, `ctx:long`). (No night feature: cathedral is masked
  outside the late-night window instead, and leans on a fixed bonus inside it.)
- `weight`: n-gram features share a message's unit length (each 1/sqrt(their number)), so a
  long message does not outvote a short one; a concept or context feature counts 1.

Standard library only; a message is cut to `MAX_CHARS` (its beginning and end) first.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ara_persona.lexicon import Lexicon

MAX_CHARS = 1000
CHAR_NGRAMS = (3, 4, 5)
SHORT_WORDS = 4
LONG_WORDS = 40

_APOSTROPHES = re.compile(r"['’‘`´ʼ]")
_CONTRACTION = re.compile(r"'(?=(?:t|s|m|d|re|ve|ll)\b)")  # English: don't → dont, I'm → im
_REPEATS = re.compile(r"(.)\1{2,}")
_TOKEN = re.compile(r"[^\W_]+|[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")


def clip(text: str, limit: int = MAX_CHARS) -> str:
    """At most `limit` characters: the beginning and the end of a longer text."""
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]} {text[-(limit // 2) :]}"


def unaccented(text: str) -> str:
    """Lower case without accents: "Été" → "ete", "Grüße" → "grusse"."""
    text = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def fold(text: str) -> str:
    """The text as the models read it (see the module docstring)."""
    text = _APOSTROPHES.sub("'", unaccented(text))
    text = _CONTRACTION.sub("", text).replace("'", " ").replace("ß", "ss")
    return _REPEATS.sub(r"\1\1", text)


def tokens(folded: str) -> list[str]:
    """Words (letters and digits) and single symbols of a folded text."""
    return _TOKEN.findall(folded)


def is_word(token: str) -> bool:
    return token[:1].isalnum()


def features(toks: list[str], *, concepts: dict[str, str] | None = None) -> dict[str, str]:
    """Feature name → the word it came from (the evidence a reason can quote), for `toks`."""
    out: dict[str, str] = {f"lex:{name}": word for name, word in (concepts or {}).items()}
    crisis = sorted(name for name in concepts or {} if name.startswith("crisis_"))
    for i, a in enumerate(crisis):  # pairs of crisis concepts: "pills" with "decided", "arms" with "hide"…
        for b in crisis[i + 1 :]:
            out[f"lex:{a}+{b}"] = f"{concepts[a]} + {concepts[b]}"
    words = [t for t in toks if is_word(t)]
    for tok in toks:
        out.setdefault(f"w:{tok}", tok)
    for a, b in itertools.pairwise(words):
        out.setdefault(f"b:{a} {b}", f"{a} {b}")
    for word in words:
        padded = f" {word} "
        for n in CHAR_NGRAMS:
            for i in range(len(padded) - n + 1):
                out.setdefault(f"c:{padded[i : i + n]}", word)
    if len(words) < SHORT_WORDS:
        out["ctx:short"] = ""
    elif len(words) > LONG_WORDS:
        out["ctx:long"] = ""
    return out


def message_features(text: str, *, lexicon: Lexicon | None = None) -> dict[str, str]:
    """`features` of a raw message."""
    folded = fold(clip(text))
    concepts = lexicon.hits(_SPACE.sub(" ", folded)) if lexicon is not None else None
    return features(tokens(folded), concepts=concepts)


def weight(name: str, ngram_scale: float) -> float:
    """The value of feature `name` in a message whose n-gram features are scaled by `ngram_scale`."""
    return 1.0 if name.startswith(("lex:", "ctx:")) else ngram_scale


def ngram_scale(feats: dict[str, str]) -> float:
    n = sum(1 for name in feats if not name.startswith(("lex:", "ctx:")))
    return 1.0 / math.sqrt(max(n, 1))


def word_count(text: str) -> int:
    return sum(1 for t in tokens(fold(clip(text))) if is_word(t))


def vocabulary(docs: Iterable[dict[str, str]], min_docs: int) -> list[str]:
    """The feature names found in at least `min_docs` documents, sorted."""
    counts: dict[str, int] = {}
    for doc in docs:
        for name in doc:
            counts[name] = counts.get(name, 0) + 1
    return sorted(name for name, n in counts.items() if n >= min_docs)
